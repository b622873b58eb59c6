//! Heartbeats, standalone acks, piggybacked acks and the timeout, on a fake clock,
//! against a raw peer that sees exactly which frames the connection writes and when.

mod common;

use common::{open_server, push, raw_client, tcp_pair, RawLogin, HB, TIMEOUT};
use std::net::TcpStream;
use tcpshm_connection::Connection;
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::frame::{msg_type, Header};
use tcpshm_proto::login::{Limits, TransportKind};
use tcpshm_proto::{encode, CloseReason, Nanos, Transport};
use tcpshm_test_support::net::{frame, RawPeer};
use tcpshm_test_support::{wait_until, TempDir};

const T0: Nanos = 5_000_000_000;

struct Fixture {
    _dir: TempDir,
    conn: Connection<TcpStream>,
    peer: RawPeer<TcpStream>,
}

/// A server connection logged in at `T0` with a raw client whose send queue holds
/// `peer_queue` bytes; standalone acks after `ack_every` pops.
fn fixture(ack_every: u64, peer_queue: u64) -> Fixture {
    let dir = TempDir::new("timers");
    let mut cfg = common::config(&dir);
    cfg.session.acks.every_msgs = ack_every;
    let mut conn = open_server(&dir, &cfg, TransportKind::Tcp);
    let login = RawLogin { limits: Limits { max_message: 1 << 16, queue_capacity: peer_queue }, ..RawLogin::default() };
    let peer = raw_client(&mut conn, tcp_pair(), login, T0);
    Fixture { _dir: dir, conn, peer }
}

impl Fixture {
    fn frames(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.peer.frames()
    }

    fn kinds(&mut self) -> Vec<u16> {
        self.frames().into_iter().map(|(h, _)| h.msg_type).collect()
    }

    fn types_and_acks(&mut self) -> Vec<(u16, u64)> {
        self.frames().iter().map(|(h, _)| (h.msg_type, h.ack)).collect()
    }

    /// Sends bytes and reads (clock at `now`) until the connection has read them.
    fn deliver(&mut self, bytes: &[u8], now: Nanos) {
        self.peer.send(bytes);
        wait_until("the connection to read the bytes", || {
            assert!(self.conn.on_readable(now), "closed: {:?}", self.conn.close_reason());
            (self.conn.session().liveness().last_received() == now).then_some(())
        });
    }

    /// Reads until `n` user messages were received (clock at `now`).
    fn receive(&mut self, n: u64, now: Nanos) {
        wait_until("the messages", || {
            assert!(self.conn.on_readable(now), "closed: {:?}", self.conn.close_reason());
            (self.conn.counters().received >= n).then_some(())
        });
    }
}

#[test]
fn heartbeat_after_an_interval_of_silence_and_not_before() {
    let mut f = fixture(64, 0);
    assert_eq!(f.conn.next_deadline(), Some(T0 + HB), "the next timer is the heartbeat");
    assert!(f.conn.poll(T0 + HB - 1));
    assert!(f.kinds().is_empty(), "a heartbeat before the interval");
    assert!(f.conn.poll(T0 + HB));
    let frames = f.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let (h, p) = &frames[0];
    assert_eq!((h.msg_type, h.seq, h.ack, p.len()), (msg_type::HEARTBEAT, 0, 0, 0));
    assert_eq!(f.conn.counters().heartbeats_sent, 1);
    assert_eq!(f.conn.next_deadline(), Some(T0 + 2 * HB));
    // A user message counts as traffic: the next heartbeat is an interval after it.
    // (`push` writes at once, at the clock of the last poll.)
    assert!(f.conn.poll(T0 + HB + HB / 2));
    push(&mut f.conn, 1, b"traffic");
    assert_eq!(f.kinds(), [1], "the message, no heartbeat");
    assert!(f.conn.poll(T0 + 2 * HB + HB / 4));
    assert!(f.kinds().is_empty(), "a heartbeat less than an interval after the message");
    // The readiness-driven timer check sends it too.
    assert!(f.conn.check_timers(T0 + 2 * HB + HB / 2));
    let frames = f.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!((frames[0].0.msg_type, frames[0].0.seq), (msg_type::HEARTBEAT, 1), "seq = our next seq");
}

#[test]
fn silent_peer_times_out_and_is_told() {
    let mut f = fixture(64, 0);
    // Heartbeats keep going out, but nothing comes in.
    for k in 1..=10 {
        assert!(f.conn.poll(T0 + k * HB), "closed before the timeout");
    }
    assert_eq!(f.conn.next_deadline(), Some(T0 + TIMEOUT + 1), "the timeout is the next timer");
    assert!(f.conn.check_timers(T0 + TIMEOUT), "exactly the timeout is not yet longer than it");
    assert!(!f.conn.check_timers(T0 + TIMEOUT + 1));
    assert_eq!(f.conn.close_reason(), Some(&CloseReason::Timeout { silent_ns: TIMEOUT + 1 }));
    assert_eq!(f.conn.next_deadline(), None, "no timer while down");
    let frames = f.peer.frames_until_eof();
    let (h, p) = frames.last().expect("a close frame");
    assert_eq!(h.msg_type, msg_type::CLOSE);
    assert_eq!(CloseFrame::parse(p).unwrap().code, CloseCode::TIMEOUT);
}

#[test]
fn anything_received_resets_the_timeout() {
    let mut f = fixture(64, 0);
    f.deliver(&encode::heartbeat(0, 0), T0 + TIMEOUT / 2);
    assert_eq!(f.conn.counters().heartbeats_received, 1);
    assert!(f.conn.poll(T0 + TIMEOUT + TIMEOUT / 4), "a heartbeat half-way did not count");
    f.deliver(&frame(3, 0, 0, b"hi"), T0 + TIMEOUT + TIMEOUT / 2);
    assert!(f.conn.poll(T0 + 2 * TIMEOUT + TIMEOUT / 4), "a user message did not count");
    f.deliver(&encode::ack(1, 0), T0 + 2 * TIMEOUT + TIMEOUT / 2);
    assert!(f.conn.poll(T0 + 3 * TIMEOUT + TIMEOUT / 4), "an ack did not count");
    assert!(!f.conn.poll(T0 + 3 * TIMEOUT + TIMEOUT / 2 + 1));
    assert!(matches!(f.conn.close_reason(), Some(CloseReason::Timeout { .. })));
}

/// A one-way stream: the receiver acks after `every_msgs` pops, at the pop that
/// reaches the count, without waiting for a heartbeat (the clock does not move).
#[test]
fn standalone_ack_after_a_number_of_pops() {
    let mut f = fixture(4, 0);
    let wire: Vec<u8> = (0..10).flat_map(|seq| frame(2, seq, 0, b"m")).collect();
    f.peer.send(&wire);
    f.receive(10, T0);
    for _ in 0..3 {
        f.conn.pop();
    }
    assert!(f.conn.poll(T0));
    assert!(f.kinds().is_empty(), "acked before 4 pops");
    f.conn.pop();
    assert_eq!(f.types_and_acks(), [(msg_type::ACK, 4)]);
    for _ in 0..4 {
        f.conn.pop();
    }
    assert_eq!(f.types_and_acks(), [(msg_type::ACK, 8)]);
    // The last two pops ride on the next frame: a heartbeat when the clock moves.
    f.conn.pop();
    f.conn.pop();
    assert!(f.conn.poll(T0));
    assert!(f.kinds().is_empty());
    assert!(f.conn.poll(T0 + HB));
    assert_eq!(f.types_and_acks(), [(msg_type::HEARTBEAT, 10)]);
    assert_eq!(f.conn.store().consumed(), 10, "every pop committed");
}

/// Large messages: an ack once a quarter of the peer's queue (told at login) is
/// popped, however few messages that is.
#[test]
fn standalone_ack_after_a_share_of_the_peers_queue() {
    let mut f = fixture(1000, 16 * 1024);
    let wire: Vec<u8> = (0..4).flat_map(|seq| frame(2, seq, 0, &[7u8; 1500])).collect();
    f.peer.send(&wire);
    f.receive(4, T0);
    f.conn.pop();
    f.conn.pop();
    assert!(f.kinds().is_empty(), "3 KiB popped is less than a quarter of 16 KiB");
    f.conn.pop();
    assert_eq!(f.types_and_acks(), [(msg_type::ACK, 3)]);
}

/// The piggybacked ack: a message pushed after pops carries the consumed count, and
/// then no standalone ack is needed.
#[test]
fn pushed_messages_carry_the_ack() {
    let mut f = fixture(2, 0);
    f.peer.send(&[frame(2, 0, 0, b"a"), frame(2, 1, 0, b"b")].concat());
    f.receive(2, T0);
    f.conn.pop();
    push(&mut f.conn, 5, b"reply");
    assert_eq!(f.types_and_acks(), [(5, 1)]);
    // Only one pop is unacknowledged after the second: under every_msgs = 2.
    f.conn.pop();
    assert!(f.conn.poll(T0));
    assert!(f.kinds().is_empty(), "a standalone ack although the reply carried the first");
}

/// Acks from the peer free the queue: each ack drops exactly the messages it covers
/// from the store, and never more than were sent.
#[test]
fn acks_from_the_peer_free_the_store() {
    let mut f = fixture(64, 0);
    for k in 0..5u64 {
        push(&mut f.conn, 1, &k.to_le_bytes());
    }
    assert_eq!(f.kinds(), [1, 1, 1, 1, 1]);
    f.deliver(&encode::ack(0, 2), T0 + 1);
    assert_eq!((f.conn.store().first_unacked(), f.conn.counters().acked), (2, 2));
    f.deliver(&encode::heartbeat(0, 5), T0 + 2);
    assert_eq!((f.conn.store().first_unacked(), f.conn.store().queue_depth()), (5, 0));
    assert_eq!(f.conn.counters().queued(), 0);
    // An old ack is ignored (acks never move back).
    f.deliver(&encode::ack(0, 3), T0 + 3);
    assert!(f.conn.is_connected());
    assert_eq!(f.conn.store().first_unacked(), 5);
}
