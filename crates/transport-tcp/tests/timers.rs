//! Heartbeats, standalone acks and the timeout, driven by a fake clock against a raw
//! peer that sees exactly which frames the connection writes, and when.

mod common;

use common::{frame, open_store, tcp_pair, RawPeer, TempDir};
use std::time::{Duration, Instant};
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::frame::{msg_type, Header};
use tcpshm_proto::session::{SeqRange, SessionConfig};
use tcpshm_proto::{encode, CloseReason, Nanos, Transport};
use tcpshm_transport_tcp::{tcp, PeerLogin, StreamConfig, TcpConnection};

const HB: Nanos = 1_000_000;
const TIMEOUT: Nanos = 10_000_000;
const T0: Nanos = 5_000_000_000;

struct Fixture {
    _dir: TempDir,
    conn: TcpConnection,
    peer: RawPeer,
}

fn fixture(cfg: StreamConfig, peer_queue: u64) -> Fixture {
    let dir = TempDir::new("timers");
    let mut conn = TcpConnection::new(open_store(dir.path(), "me", "peer", 1 << 16), cfg);
    let (a, b) = tcp_pair();
    conn.login_state();
    let peer = PeerLogin { consumed: 0, send_range: SeqRange::default(), queue_capacity: peer_queue };
    conn.attach(tcp::from_std(a).unwrap(), peer, T0).unwrap();
    Fixture { _dir: dir, conn, peer: RawPeer::new(b) }
}

fn config(ack_every_msgs: u64) -> StreamConfig {
    let session =
        SessionConfig { ack_every_msgs, heartbeat_interval: HB, timeout: TIMEOUT, ..SessionConfig::default() };
    StreamConfig { session, ..common::config() }
}

impl Fixture {
    /// Every frame the peer receives within a short real-time window.
    fn frames(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..3 {
            self.peer.fill().unwrap();
            while let Some(f) = self.peer.next_frame() {
                out.push(f);
            }
        }
        out
    }

    fn kinds(&mut self) -> Vec<u16> {
        self.frames().into_iter().map(|(h, _)| h.msg_type).collect()
    }

    /// Sends bytes and polls (clock at `now`) until the connection has read them.
    fn deliver(&mut self, bytes: &[u8], now: Nanos) {
        let before = self.conn.session().last_recv_at();
        self.peer.send(bytes);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.conn.session().last_recv_at() == before && before != now {
            assert!(Instant::now() < deadline, "the connection never read the bytes");
            assert!(self.conn.on_readable(now), "closed: {:?}", self.conn.close_reason());
        }
    }
}

#[test]
fn heartbeat_after_an_interval_of_silence_and_not_before() {
    let mut f = fixture(config(64), 0);
    assert!(f.conn.poll(T0 + HB - 1));
    assert!(f.kinds().is_empty(), "a heartbeat before the interval");
    assert!(f.conn.poll(T0 + HB));
    let frames = f.frames();
    assert_eq!(frames.len(), 1);
    let (h, p) = &frames[0];
    assert_eq!((h.msg_type, h.seq, h.ack, p.len()), (msg_type::HEARTBEAT, 0, 0, 0));
    // A user message counts as traffic: the next heartbeat is an interval after it.
    // (`push` writes at once, at the clock of the last poll.)
    assert!(f.conn.poll(T0 + HB + HB / 2));
    common::push(&mut f.conn, 1, b"traffic");
    assert_eq!(f.kinds(), [1], "the message, no heartbeat");
    assert!(f.conn.poll(T0 + 2 * HB + HB / 4));
    assert!(f.kinds().is_empty(), "a heartbeat less than an interval after the message");
    // The readiness-driven timer check sends it too.
    assert!(f.conn.check_timers(T0 + 2 * HB + HB / 2));
    let frames = f.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].0.msg_type, frames[0].0.seq), (msg_type::HEARTBEAT, 1), "seq = our next seq");
}

#[test]
fn silent_peer_times_out_and_is_told() {
    let mut f = fixture(config(64), 0);
    // Heartbeats keep going out, but nothing comes in.
    for k in 1..=10 {
        assert!(f.conn.poll(T0 + k * HB), "closed before the timeout");
    }
    assert!(f.conn.check_timers(T0 + TIMEOUT), "exactly the timeout is not yet longer than it");
    assert!(!f.conn.check_timers(T0 + TIMEOUT + 1));
    assert_eq!(f.conn.close_reason(), Some(&CloseReason::Timeout { silent_ns: TIMEOUT + 1 }));
    let frames = f.frames();
    let (h, p) = frames.last().expect("a close frame");
    assert_eq!(h.msg_type, msg_type::CLOSE);
    assert_eq!(CloseFrame::parse(p).unwrap().code, CloseCode::TIMEOUT);
}

#[test]
fn anything_received_resets_the_timeout() {
    let mut f = fixture(config(64), 0);
    f.deliver(&encode::heartbeat(0, 0), T0 + TIMEOUT / 2);
    assert!(f.conn.poll(T0 + TIMEOUT + TIMEOUT / 4), "a heartbeat half-way did not count");
    f.deliver(&frame(3, 0, 0, b"hi"), T0 + TIMEOUT + TIMEOUT / 2);
    assert!(f.conn.poll(T0 + 2 * TIMEOUT + TIMEOUT / 4), "a user message did not count");
    f.deliver(&encode::ack(0, 0), T0 + 2 * TIMEOUT + TIMEOUT / 2);
    assert!(f.conn.poll(T0 + 3 * TIMEOUT + TIMEOUT / 4), "an ack did not count");
    assert!(!f.conn.poll(T0 + 3 * TIMEOUT + TIMEOUT / 2 + 1));
    assert!(matches!(f.conn.close_reason(), Some(CloseReason::Timeout { .. })));
}

/// A one-way stream: the receiver acks after `ack_every_msgs` pops, at the pop that
/// reaches the count, without waiting for a heartbeat (the clock does not move).
#[test]
fn standalone_ack_after_a_number_of_pops() {
    let mut f = fixture(config(4), 0);
    let mut wire = Vec::new();
    for seq in 0..10 {
        wire.extend_from_slice(&frame(2, seq, 0, b"m"));
    }
    f.peer.send(&wire);
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.conn.counters().received < 10 {
        assert!(Instant::now() < deadline);
        f.conn.on_readable(T0);
    }
    for _ in 0..3 {
        f.conn.pop();
    }
    assert!(f.conn.poll(T0));
    assert!(f.kinds().is_empty(), "acked before 4 pops");
    f.conn.pop();
    let frames = f.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!((frames[0].0.msg_type, frames[0].0.ack), (msg_type::ACK, 4));
    for _ in 0..4 {
        f.conn.pop();
    }
    assert_eq!(f.frames().iter().map(|(h, _)| (h.msg_type, h.ack)).collect::<Vec<_>>(), [(msg_type::ACK, 8)]);
    // The last two pops ride on the next frame: a heartbeat when the clock moves.
    f.conn.pop();
    f.conn.pop();
    assert!(f.conn.poll(T0));
    assert!(f.kinds().is_empty());
    assert!(f.conn.poll(T0 + HB));
    assert_eq!(f.frames().iter().map(|(h, _)| (h.msg_type, h.ack)).collect::<Vec<_>>(), [(msg_type::HEARTBEAT, 10)]);
}

/// Large messages: an ack once a quarter of the peer's queue (told at login) is
/// popped, however few messages that is.
#[test]
fn standalone_ack_after_a_share_of_the_peers_queue() {
    let mut f = fixture(config(1000), 16 * 1024);
    let mut wire = Vec::new();
    for seq in 0..4 {
        wire.extend_from_slice(&frame(2, seq, 0, &[7u8; 1500]));
    }
    f.peer.send(&wire);
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.conn.counters().received < 4 {
        assert!(Instant::now() < deadline);
        f.conn.on_readable(T0);
    }
    f.conn.pop();
    f.conn.pop();
    assert!(f.kinds().is_empty(), "3 KiB popped is less than a quarter of 16 KiB");
    f.conn.pop();
    assert_eq!(f.frames().iter().map(|(h, _)| (h.msg_type, h.ack)).collect::<Vec<_>>(), [(msg_type::ACK, 3)]);
}

/// The piggybacked ack: a message pushed after pops carries the consumed count, and
/// then no standalone ack is needed.
#[test]
fn pushed_messages_carry_the_ack() {
    let mut f = fixture(config(2), 0);
    f.peer.send(&[frame(2, 0, 0, b"a"), frame(2, 1, 0, b"b")].concat());
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.conn.counters().received < 2 {
        assert!(Instant::now() < deadline);
        f.conn.on_readable(T0);
    }
    f.conn.pop();
    common::push(&mut f.conn, 5, b"reply");
    let frames = f.frames();
    assert_eq!(frames.iter().map(|(h, _)| (h.msg_type, h.ack)).collect::<Vec<_>>(), [(5, 1)]);
    // Only one pop is unacknowledged after the second: under ack_every_msgs = 2.
    f.conn.pop();
    assert!(f.conn.poll(T0));
    assert!(f.kinds().is_empty(), "a standalone ack although the reply carried the first");
}
