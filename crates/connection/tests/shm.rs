//! Sessions carried by shared memory (the login's Unix socket kept as the control
//! stream), in one process: the data path (order, every size, limits, backpressure,
//! batches, counters, persistence across logins and restarts, zero-copy replies),
//! corrupt rings (a typed `Corrupt` close, told to the peer, sticky), and the control
//! stream (heartbeats, timeout, close frames, bad input, I/O errors, peer death, the
//! check interval, a close requested from another thread, a TCP control stream).

mod common;

use common::{link_unix, open_client, open_server, raw_client, unix_pair, RawLogin, HB, TIMEOUT};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::{LoginStatus, TransportKind};
use tcpshm_proto::{encode, CloseReason, Control, Limit, Nanos, ProtocolError, SendError, Transport};
use tcpshm_test_support::net::RawPeer;
use tcpshm_test_support::{wait_until, TempDir};
use tcpshm_transport_shm::{Direction, RingError, ShmDir, ShmFile};
use tcpshm_transport_tcp::ByteStream;

const SHM: TransportKind = TransportKind::Shm;

/// Ring bytes of [`small`]: each ring holds a few dozen small messages.
const RING: usize = 8192;
/// The client->server ring's region in a file of two `RING`-byte rings (the
/// server->client one starts at 4096), and in a ring region the write index, the
/// read index and the data.
const C2S: u64 = 4096 + 12288;
const S2C: u64 = 4096;
const WRITE_IDX: u64 = 128;
const READ_IDX: u64 = 256;
const DATA: u64 = 384;

type Conn = Connection<UnixStream>;

/// Small rings: 8 KiB each way, messages up to 2 KiB.
fn small(dir: &TempDir) -> ConnectionConfig {
    let mut cfg = common::config(dir);
    cfg.session.max_message = 2048;
    cfg.queue_bytes = RING;
    cfg.shm.ring_bytes = RING;
    cfg
}

struct Pair {
    dir: TempDir,
    cfg: ConnectionConfig,
    cli: Conn,
    srv: Conn,
    now: Nanos,
}

/// A client and a server logged in over shared memory at clock 1.
fn pair(tag: &str, cfg: impl FnOnce(&TempDir) -> ConnectionConfig) -> Pair {
    let dir = TempDir::new(tag);
    let cfg = cfg(&dir);
    let mut cli = open_client(&dir, &cfg, SHM);
    let mut srv = open_server(&dir, &cfg, SHM);
    let done = link_unix(&mut cli, &mut srv, SHM, 1);
    assert_eq!(done.transport, SHM);
    assert!(cli.rings().is_some() && srv.rings().is_some());
    Pair { dir, cfg, cli, srv, now: 1 }
}

fn content(k: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| (k.wrapping_mul(0x9E37_79B9) ^ (i as u64).wrapping_mul(31)) as u8)
}

fn push_k<T: Transport>(t: &mut T, k: u64, len: usize) -> bool {
    match t.alloc(len).unwrap() {
        Some(buf) => {
            buf.iter_mut().zip(content(k, len)).for_each(|(b, x)| *b = x);
            t.push((k % 0xFEFF) as u16).unwrap();
            true
        }
        None => false,
    }
}

fn expect_k<T: Transport>(t: &mut T, k: u64, len: usize) {
    let m = t.front().unwrap_or_else(|| panic!("message {k} missing"));
    assert_eq!(m.msg_type, (k % 0xFEFF) as u16, "type of {k}");
    assert_eq!(m.payload.len(), len, "length of {k}");
    assert!(m.payload.iter().copied().eq(content(k, len)), "content of {k}");
    t.pop();
}

fn patch(path: &std::path::Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn corrupt_ring(reason: Option<&CloseReason>, direction: Direction) {
    let Some(CloseReason::Corrupt(fault)) = reason else { panic!("not a corrupt close: {reason:?}") };
    match fault.downcast_ref::<RingError>() {
        Some(RingError::Corrupt { direction: d, .. } | RingError::BadFrame { direction: d, .. }) => {
            assert_eq!(*d, direction, "{fault}")
        }
        other => panic!("not a ring error: {other:?} ({fault})"),
    }
}

/// The close frame the raw peer got last, before the end of the stream.
fn close_frame_of<S: tcpshm_test_support::net::PeerStream>(peer: &mut RawPeer<S>) -> (CloseCode, String) {
    let frames = peer.frames_until_eof();
    let (h, p) = frames.last().unwrap_or_else(|| panic!("no frame before the end of the stream"));
    assert_eq!(h.msg_type, msg_type::CLOSE, "{frames:?}");
    let c = CloseFrame::parse(p).unwrap();
    (c.code, c.text.to_owned())
}

#[test]
fn every_size_up_to_the_maximum_in_order_both_ways() {
    let mut p = pair("sizes", small);
    assert_eq!((p.srv.max_payload(), p.cli.max_payload()), (2048, 2048));
    for dir in 0..2 {
        let (from, to) = if dir == 0 { (&mut p.srv, &mut p.cli) } else { (&mut p.cli, &mut p.srv) };
        let max = from.max_payload();
        let k0 = 1_000_000 * (dir + 1);
        for len in 0..=max {
            assert!(push_k(from, k0 + len as u64, len), "an empty ring refused {len} bytes");
            // No poll: a push is in the peer's ring at once.
            expect_k(to, k0 + len as u64, len);
        }
        // Bursts of pseudo-random sizes, wrapping the ring many times.
        let (mut k, mut popped) = (0u64, 0u64);
        let size = |k: u64| ((k * 7919) % (max as u64 / 3)) as usize;
        while popped < 20_000 {
            while k < popped + 50 && push_k(from, k, size(k)) {
                k += 1;
            }
            while popped < k && to.front().is_some() {
                expect_k(to, popped, size(popped));
                popped += 1;
            }
        }
        assert!(to.front().is_none());
        assert!(from.is_connected() && to.is_connected());
    }
}

#[test]
fn limits_and_reserved_types() {
    let mut p = pair("limits", small);
    let max = p.srv.max_payload();
    assert_eq!(p.srv.alloc(max + 1).unwrap_err(), SendError::TooLarge { len: max + 1, max, limit: Limit::Local });
    assert!(matches!(p.srv.alloc(usize::MAX), Err(SendError::TooLarge { .. })));
    assert_eq!(p.srv.push(1), Err(SendError::NothingAllocated));
    assert_eq!(p.srv.push_more(1), Err(SendError::NothingAllocated));
    for ty in [msg_type::FIRST_CONTROL, msg_type::CLOSE, 0xFFFF] {
        p.srv.alloc(1).unwrap().unwrap();
        assert_eq!(p.srv.push(ty), Err(SendError::ReservedType(ty)));
        assert_eq!(p.srv.push_more(ty), Err(SendError::ReservedType(ty)));
        p.srv.poll(1);
        assert!(p.cli.front().is_none(), "a refused push published something");
    }
    // The allocation survives a refused type: the same bytes go out with a user type.
    p.srv.alloc(2).unwrap().unwrap().copy_from_slice(b"ok");
    assert!(p.srv.push(0xFF00).is_err());
    p.srv.push(msg_type::MAX_USER).unwrap();
    assert_eq!(p.cli.front().unwrap().payload, b"ok");
    assert_eq!(p.srv.counters().pushed, 1);
}

#[test]
fn a_message_over_the_peers_limit_is_refused_at_alloc() {
    let dir = TempDir::new("peer-limit");
    let cfg = small(&dir);
    let mut srv_cfg = cfg.clone();
    srv_cfg.session.max_message = 100;
    let mut cli: Conn = open_client(&dir, &cfg, SHM);
    let mut srv: Conn = open_server(&dir, &srv_cfg, SHM);
    link_unix(&mut cli, &mut srv, SHM, 1);
    assert_eq!(cli.max_payload(), 100);
    assert_eq!(cli.alloc(101).unwrap_err(), SendError::TooLarge { len: 101, max: 100, limit: Limit::Peer });
    assert!(cli.alloc(100).unwrap().is_some());
}

#[test]
fn backpressure_when_the_peer_never_pops() {
    let mut p = pair("backpressure", small);
    let mut k = 0;
    while push_k(&mut p.srv, k, 100) {
        k += 1;
    }
    assert!(k > 10, "only {k} messages fit");
    // Full: stays full through polls over three timeouts (heartbeats flow; nobody is
    // disconnected).
    while p.now < 3 * TIMEOUT {
        p.now += HB / 4;
        assert!(p.srv.poll(p.now) && p.cli.poll(p.now), "{:?} {:?}", p.srv.close_reason(), p.cli.close_reason());
        assert!(p.srv.alloc(100).unwrap().is_none(), "room appeared from nowhere");
    }
    assert!(p.srv.counters().heartbeats_received > 0 && p.cli.counters().heartbeats_received > 0);
    let c = p.srv.counters();
    assert_eq!((c.pushed, c.acked, c.queued()), (k, 0, k));
    // Nothing lost: every message, in order; then sending resumes.
    for i in 0..k {
        expect_k(&mut p.cli, i, 100);
    }
    assert!(p.cli.front().is_none());
    p.now += HB;
    p.srv.poll(p.now);
    assert_eq!(p.srv.counters().acked, k, "the consumed count is the ack");
    for i in k..k + 1000 {
        assert!(push_k(&mut p.srv, i, 100));
        expect_k(&mut p.cli, i, 100);
    }
}

#[test]
fn push_more_is_visible_at_the_next_push_or_poll() {
    let mut p = pair("batch", small);
    for k in 0..3 {
        p.srv.alloc(1).unwrap().unwrap()[0] = k;
        p.srv.push_more(1).unwrap();
    }
    assert!(p.cli.front().is_none(), "staged messages are not published");
    assert_eq!(p.srv.counters().sent, 0);
    p.srv.poll(1);
    assert_eq!(p.srv.counters().sent, 3);
    for k in 0..3 {
        assert_eq!(p.cli.front().unwrap().payload, [k]);
        p.cli.pop();
    }
    p.srv.alloc(1).unwrap().unwrap()[0] = 7;
    p.srv.push_more(1).unwrap();
    p.srv.alloc(1).unwrap().unwrap()[0] = 8;
    p.srv.push(1).unwrap();
    assert_eq!(p.cli.front().unwrap().payload, [7]);
    assert_eq!(p.srv.counters().sent, 5, "a push publishes (and counts) what push_more staged before it");
    // The peer consumes all five: its consumed count is the ack, within what was sent.
    p.cli.pop();
    p.cli.pop();
    p.now += HB;
    assert!(p.srv.poll(p.now) && p.cli.poll(p.now), "{:?} {:?}", p.srv.close_reason(), p.cli.close_reason());
    assert_eq!(p.srv.counters().acked, 5);
    // The same through a Sender: a reply pushed behind a staged message.
    p.cli.alloc(1).unwrap().unwrap()[0] = 1;
    p.cli.push(1).unwrap();
    p.srv.alloc(1).unwrap().unwrap()[0] = 9;
    p.srv.push_more(1).unwrap();
    let (m, mut tx) = p.srv.front_split().unwrap();
    assert_eq!(m.payload, [1]);
    tx.alloc(1).unwrap().unwrap()[0] = 10;
    tx.push(1).unwrap();
    p.srv.pop();
    assert_eq!(p.srv.counters().sent, 7);
    for want in [9, 10] {
        assert_eq!(p.cli.front().unwrap().payload, [want]);
        p.cli.pop();
    }
    p.now += HB;
    assert!(p.srv.poll(p.now) && p.cli.poll(p.now), "{:?} {:?}", p.srv.close_reason(), p.cli.close_reason());
    assert_eq!(p.srv.counters().acked, 7);
}

#[test]
fn seq_front_pop_and_counters() {
    let mut p = pair("seq", small);
    p.cli.pop(); // nothing: no effect
    for k in 0..5 {
        push_k(&mut p.srv, k, 10);
    }
    let c = p.cli.counters();
    assert_eq!((c.received, c.popped), (0, 0));
    for seq in 0..5 {
        assert_eq!(p.cli.front().unwrap().seq, seq);
        assert_eq!(p.cli.front().unwrap().seq, seq, "front is stable");
        assert_eq!(p.cli.counters().received, seq + 1, "a message is received once");
        p.cli.pop();
    }
    // pop without front consumes and counts too.
    push_k(&mut p.srv, 5, 10);
    p.cli.pop();
    let c = p.cli.counters();
    assert_eq!((c.received, c.popped, c.consumed), (6, 6, 6));
    p.now += HB;
    p.srv.poll(p.now);
    let s = p.srv.counters();
    assert_eq!((s.pushed, s.sent, s.acked, s.queued(), s.resent, s.next_seq), (6, 6, 6, 0, 0, 6));
}

/// What is in the rings survives the processes: a client that dies (its connection
/// dropped) and comes back finds the server's messages it did not pop, and the
/// server gets the ones the dead client pushed; popped messages never come back.
#[test]
fn messages_survive_a_restart_of_either_side() {
    let mut p = pair("persist", small);
    for k in 0..10 {
        push_k(&mut p.srv, k, 20);
        push_k(&mut p.cli, 100 + k, 30);
    }
    for k in 0..3 {
        expect_k(&mut p.cli, k, 20);
    }
    // The client process dies: its socket and its lock go with it.
    let Pair { dir, cfg, cli, mut srv, mut now } = p;
    drop(cli);
    wait_until("the server to see the death", || {
        now += 200_000;
        (!srv.poll(now)).then_some(())
    });
    assert_eq!(srv.close_reason(), Some(&CloseReason::PeerDied));
    let mut cli: Conn = open_client(&dir, &cfg, SHM);
    assert_eq!(cli.counters().consumed, 3, "the commit point is in the file");
    assert_eq!(cli.counters().next_seq, 10, "the resume point of a restarted sender");
    assert!(cli.front().is_none(), "nothing is received outside a login");
    let done = link_unix(&mut cli, &mut srv, SHM, now);
    assert_eq!(done.to_resend, 10, "none of its messages were consumed yet");
    for k in 3..10 {
        expect_k(&mut cli, k, 20);
    }
    assert!(cli.front().is_none(), "popped messages never come back");
    for k in 0..5 {
        expect_k(&mut srv, 100 + k, 30);
    }
    // Now the server dies with five of the client's messages not popped, and one
    // more pushed while it is down.
    drop(srv);
    push_k(&mut cli, 110, 30);
    let mut srv: Conn = open_server(&dir, &cfg, SHM);
    link_unix(&mut cli, &mut srv, SHM, now + 1);
    for k in 5..11 {
        expect_k(&mut srv, 100 + k, 30);
    }
    assert!(srv.front().is_none());
}

#[test]
fn a_corrupt_inbound_index_closes_with_corrupt_tells_the_peer_and_stays_closed() {
    let mut p = pair("corrupt", small);
    push_k(&mut p.cli, 1, 8);
    let path = p.srv.rings().unwrap().path().to_path_buf();
    // The client's write index jumps beyond a whole ring.
    patch(&path, C2S + WRITE_IDX, &(1u64 << 40).to_le_bytes());
    assert!(p.srv.front().is_none());
    assert!(!p.srv.is_connected());
    corrupt_ring(p.srv.close_reason(), Direction::ClientToServer);
    p.srv.pop();
    assert!(p.srv.front().is_none(), "a corrupt ring is never read again");
    // The client is told why.
    wait_until("the client to be told", || {
        p.now += 200_000;
        (!p.cli.poll(p.now)).then_some(())
    });
    match p.cli.close_reason() {
        Some(CloseReason::RemoteRequested { code, text }) => {
            assert_eq!(*code, CloseCode::CORRUPT, "{text}");
            assert!(text.contains("client->server"), "{text}");
        }
        other => panic!("the client reports {other:?}"),
    }
    // A new login does not hide it: the server refuses it, naming the ring.
    match common::login(&mut p.cli, &mut p.srv, unix_pair(), SHM, p.now) {
        Err(tcpshm_connection::ConnectError::Refused { status: LoginStatus::StorageError, text }) => {
            assert!(text.contains("client->server ring") && text.contains("corrupt"), "{text}");
        }
        other => panic!("a login over a corrupt ring: {other:?}"),
    }
    assert!(!p.srv.is_connected() && p.srv.front().is_none());
}

#[test]
fn a_reserved_type_inside_the_ring_is_corruption() {
    let mut p = pair("reservedring", small);
    push_k(&mut p.cli, 0, 8);
    let path = p.srv.rings().unwrap().path().to_path_buf();
    // The ring frame's type field (after its 4-byte length).
    patch(&path, C2S + DATA + 4, &msg_type::HEARTBEAT.to_le_bytes());
    assert!(p.srv.front().is_none());
    corrupt_ring(p.srv.close_reason(), Direction::ClientToServer);
}

#[test]
fn a_corrupt_outbound_index_closes_with_corrupt() {
    let mut p = pair("corruptout", small);
    let path = p.srv.rings().unwrap().path().to_path_buf();
    // The client's read index of the server->client ring claims more than was written.
    patch(&path, S2C + READ_IDX, &(1u64 << 20).to_le_bytes());
    let mut k = 0;
    let err = loop {
        match p.srv.alloc(64) {
            Ok(Some(_)) => {
                p.srv.push(1).unwrap();
                k += 1;
                assert!(k < 1000);
            }
            Ok(None) => panic!("full without noticing the impossible index"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SendError::Storage(_)), "{err:?}");
    assert!(matches!(p.srv.alloc(1), Err(SendError::Storage(_)) | Ok(None)), "sticky");
    p.now += 200_000;
    p.srv.poll(p.now);
    corrupt_ring(p.srv.close_reason(), Direction::ServerToClient);
}

/// A server session over shared memory whose client is a raw control stream (and,
/// if `map`, the client's side of the file mapped here, holding its lock).
fn raw_shm(tag: &str, t0: Nanos, map: bool) -> (TempDir, Conn, RawPeer<UnixStream>, Option<ShmFile>) {
    let dir = TempDir::new(tag);
    let cfg = small(&dir);
    let mut srv: Conn = open_server(&dir, &cfg, SHM);
    let peer = raw_client(&mut srv, unix_pair(), RawLogin { transport: SHM, ..RawLogin::default() }, t0);
    let file = map.then(|| {
        let d = ShmDir::new("/dev/shm", dir.shm_prefix()).unwrap();
        ShmFile::open(&d, &common::server_name(), &common::client_name()).unwrap()
    });
    (dir, srv, peer, file)
}

#[test]
fn heartbeats_go_out_on_the_control_stream_and_keep_the_peer_alive() {
    const T0: Nanos = 1_000_000_000;
    let (_dir, mut srv, mut raw, _file) = raw_shm("hb", T0, true);
    let interval = srv.config().check_interval;
    // The control work runs once per check interval: the heartbeat leaves at the first
    // check at or after an interval of silence, not before.
    let mut now = T0;
    while now + interval <= T0 + HB {
        assert!(srv.poll(now));
        now += interval;
    }
    assert!(raw.frames().is_empty(), "a heartbeat before the interval");
    assert!(srv.poll(now));
    assert!(now >= T0 + HB);
    let f = raw.frames();
    assert_eq!(f.iter().map(|(h, _)| h.msg_type).collect::<Vec<_>>(), [msg_type::HEARTBEAT]);
    // The peer's heartbeats keep it alive; ours go out once per interval of our own
    // silence (every 4 polls here).
    for _ in 0..48 {
        now += HB / 4;
        raw.send(&encode::heartbeat(0, 0));
        assert!(srv.poll(now), "{:?}", srv.close_reason());
    }
    let hbs = raw.frames();
    assert_eq!(hbs.len(), 12, "{hbs:?}");
    assert!(hbs.iter().all(|(h, _)| h.msg_type == msg_type::HEARTBEAT), "{hbs:?}");
    assert_eq!(srv.counters().heartbeats_sent, 13);
    wait_until("the heartbeats to be read", || {
        now += 200_000;
        srv.poll(now);
        (srv.counters().heartbeats_received > 0).then_some(())
    });
}

#[test]
fn a_silent_peer_times_out_within_a_check_interval() {
    const T0: Nanos = 1_000_000_000;
    let (_dir, mut srv, mut raw, _file) = raw_shm("timeout", T0, true);
    let interval = srv.config().check_interval;
    assert!(srv.poll(T0 + TIMEOUT), "exactly the timeout is not yet longer than it");
    let mut now = T0 + TIMEOUT;
    while srv.poll(now) {
        now += 1_000;
        assert!(now <= T0 + TIMEOUT + interval + 1_000, "not closed within a check interval of the timeout");
    }
    let Some(CloseReason::Timeout { silent_ns }) = srv.close_reason().cloned() else {
        panic!("{:?}", srv.close_reason())
    };
    assert!(silent_ns > TIMEOUT && silent_ns <= TIMEOUT + interval + 1_000, "{silent_ns}");
    assert_eq!(close_frame_of(&mut raw).0, CloseCode::TIMEOUT);
    assert!(srv.stream().is_none(), "the stream was dropped");
}

#[test]
fn close_frame_end_of_stream_and_garbage_on_the_control_stream() {
    // An orderly close from the peer.
    let (_d, mut srv, mut raw, _f) = raw_shm("ctl-close", 1, true);
    let mut buf = [0u8; 512];
    let close = Control::Close(CloseFrame { code: CloseCode::REQUESTED, text: "end of day" });
    let n = encode::encode_control(&mut buf, &close, 0, 0).unwrap();
    raw.send(&buf[..n]);
    wait_until("the close", || (!srv.poll(2)).then_some(()));
    assert_eq!(
        srv.close_reason(),
        Some(&CloseReason::RemoteRequested { code: CloseCode::REQUESTED, text: "end of day".into() })
    );
    assert!(raw.frames_until_eof().iter().all(|(h, _)| h.msg_type != msg_type::CLOSE), "a remote close is echoed");

    // End of stream, the peer's lock still held: the peer closed, it did not die.
    let (_d, mut srv, raw, _f) = raw_shm("ctl-eof", 1, true);
    drop(raw);
    wait_until("the close", || (!srv.poll(2)).then_some(()));
    assert_eq!(srv.close_reason(), Some(&CloseReason::RemoteClosed));

    // Malformed frames and frames that do not belong on a control stream.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0u8; 24], "below the 24-byte header"),
        (u32::MAX.to_le_bytes().to_vec(), "exceeds the maximum"),
        (tcpshm_test_support::net::frame(7, 0, 0, b"x"), "user message"),
    ];
    for (bytes, why) in cases {
        let (_d, mut srv, mut raw, _f) = raw_shm("ctl-bad", 1, true);
        raw.send(&bytes);
        wait_until("the close", || (!srv.poll(2)).then_some(()));
        let r = srv.close_reason().cloned();
        assert!(matches!(r, Some(CloseReason::Protocol(_))) && r.as_ref().unwrap().to_string().contains(why), "{r:?}");
        assert_eq!(close_frame_of(&mut raw).0, CloseCode::PROTOCOL);
    }
    // An ack on the control stream is ignored, whatever it says: on shared memory the
    // ring's consumed count is the ack.
    let (_d, mut srv, mut raw, _f) = raw_shm("ctl-ack", 1, true);
    raw.send(&encode::ack(0, 999));
    raw.send(&encode::heartbeat(0, 0));
    wait_until("the heartbeat behind it", || {
        assert!(srv.poll(2), "{:?}", srv.close_reason());
        (srv.counters().heartbeats_received == 1).then_some(())
    });
    assert_eq!(srv.counters().acked, 0);
    // Login frames after the login (their payload is not even looked at).
    for ty in [msg_type::LOGIN, msg_type::LOGIN_REPLY] {
        let (_d, mut srv, mut raw, _f) = raw_shm("ctl-login", 1, true);
        raw.send(&tcpshm_test_support::net::frame(ty, 0, 0, &[0u8; 16]));
        wait_until("the close", || (!srv.poll(2)).then_some(()));
        let r = srv.close_reason().cloned();
        assert!(
            matches!(r, Some(CloseReason::Protocol(ProtocolError::UnexpectedControl { msg_type: t, .. })) if t == ty),
            "{r:?}"
        );
    }
}

/// A control stream whose reads fail with `ECONNRESET`, and that counts its reads.
#[derive(Debug, Clone, Default)]
struct Scripted {
    reads: Arc<AtomicU32>,
    fail: bool,
}

impl Read for Scripted {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            return Err(io::Error::from_raw_os_error(104));
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Scripted {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ByteStream for Scripted {}

/// A server session over shared memory on a scripted control stream, logged in at
/// `t0`; the client's side of the file mapped here if `map`.
fn scripted(tag: &str, stream: Scripted, t0: Nanos, map: bool) -> (TempDir, Connection<Scripted>, Option<ShmFile>) {
    let dir = TempDir::new(tag);
    let cfg = small(&dir);
    let mut srv: Connection<Scripted> = open_server(&dir, &cfg, SHM);
    let req = common::raw_request(RawLogin { transport: SHM, ..RawLogin::default() });
    let rules = common::rules(&srv);
    assert!(srv.accept(stream, &req, &rules, t0).is_ok());
    let file = map.then(|| {
        let d = ShmDir::new("/dev/shm", dir.shm_prefix()).unwrap();
        ShmFile::open(&d, &common::server_name(), &common::client_name()).unwrap()
    });
    (dir, srv, file)
}

#[test]
fn an_io_error_closes_with_its_errno_or_as_a_death() {
    // The peer's lock is held: the error is the reason.
    let (_d, mut srv, _file) = scripted("io", Scripted { fail: true, ..Scripted::default() }, 1, true);
    assert!(!srv.poll(1));
    assert_eq!(srv.close_reason(), Some(&CloseReason::Io { op: "read", errno: 104 }));
    // Nobody holds the peer's lock: its process is gone.
    let (_d, mut srv, _file) = scripted("io-dead", Scripted { fail: true, ..Scripted::default() }, 1, false);
    assert!(!srv.poll(1));
    assert_eq!(srv.close_reason(), Some(&CloseReason::PeerDied));
}

#[test]
fn control_work_is_rate_limited_by_the_check_interval() {
    const T0: Nanos = 1_000_000_000;
    let stream = Scripted::default();
    let reads = stream.reads.clone();
    let (_d, mut srv, _file) = scripted("gate", stream, T0, true);
    let interval = srv.config().check_interval;
    assert_eq!(srv.next_deadline(), Some(T0), "the control work is due at once after the login");
    for now in (T0..T0 + interval).step_by(1000) {
        assert!(srv.poll(now));
    }
    assert_eq!(reads.load(Ordering::Relaxed), 1, "one control check in the first interval");
    assert_eq!(srv.next_deadline(), Some(T0 + interval));
    assert!(srv.poll(T0 + interval));
    assert_eq!(reads.load(Ordering::Relaxed), 2);
    // A clock that jumps back does not suspend the checks until it catches up.
    assert!(srv.poll(10));
    assert_eq!(reads.load(Ordering::Relaxed), 3);
}

#[test]
fn peer_death_is_told_apart_by_its_lock() {
    const T0: Nanos = 1_000;
    // Stream and lock gone together (a process that died): PeerDied.
    let (_d, mut srv, raw, file) = raw_shm("dead", T0, true);
    assert!(srv.poll(T0));
    drop((raw, file));
    let mut now = T0;
    wait_until("the death", || {
        now += 200_000;
        (!srv.poll(now)).then_some(())
    });
    assert!(now < T0 + TIMEOUT, "seen by the stream's end, not by the timeout");
    assert_eq!(srv.close_reason(), Some(&CloseReason::PeerDied));
    // The lock gone but the stream open (another process holds the socket): the
    // session stays up until the peer's silence outlasts the timeout.
    let (_d, mut srv, _raw, file) = raw_shm("lockonly", T0, true);
    assert!(srv.rings().unwrap().peer_alive().unwrap());
    drop(file);
    assert!(!srv.rings().unwrap().peer_alive().unwrap(), "seen dead at once");
    let mut now = T0;
    while now < T0 + TIMEOUT {
        assert!(srv.poll(now), "closed before the timeout: {:?}", srv.close_reason());
        now += 200_000;
    }
    wait_until("the timeout", || {
        now += 200_000;
        (!srv.poll(now)).then_some(())
    });
    assert!(matches!(srv.close_reason(), Some(CloseReason::Timeout { .. })), "{:?}", srv.close_reason());
}

#[test]
fn a_close_from_another_thread_happens_in_the_owners_poll() {
    let mut p = pair("handle", small);
    let h = p.srv.close_handle();
    std::thread::spawn(move || h.close()).join().unwrap();
    assert!(p.srv.is_connected(), "the close happens in the owner's poll");
    // Not delayed by the check interval: the next poll carries it out.
    assert!(!p.srv.poll(p.now));
    assert_eq!(p.srv.close_reason(), Some(&CloseReason::Requested));
    wait_until("the client to be told", || {
        p.now += 200_000;
        (!p.cli.poll(p.now)).then_some(())
    });
    assert!(
        matches!(p.cli.close_reason(), Some(CloseReason::RemoteRequested { code: CloseCode::REQUESTED, .. })),
        "{:?}",
        p.cli.close_reason()
    );
    assert!(p.srv.front().is_none() && p.cli.front().is_none(), "nothing is received outside a login");
    // The next login goes on where the session was.
    push_k(&mut p.cli, 5, 5);
    link_unix(&mut p.cli, &mut p.srv, SHM, p.now);
    expect_k(&mut p.srv, 5, 5);
}

#[test]
fn a_tcp_control_stream_and_a_mio_server_end() {
    let dir = TempDir::new("mio");
    let cfg = small(&dir);
    let mut cli: Connection<std::net::TcpStream> = open_client(&dir, &cfg, SHM);
    let mut srv: Connection<mio::net::TcpStream> = open_server(&dir, &cfg, SHM);
    let (cs, ss) = common::tcp_pair();
    std::thread::scope(|scope| {
        let srv = &mut srv;
        scope.spawn(move || {
            // The request is read blocking on the std socket; the session runs on mio.
            let rules = common::rules(srv);
            let mut ss = ss;
            let mut reader = tcpshm_transport_tcp::FrameReader::new(4096, 1 << 16);
            let f = tcpshm_transport_tcp::exchange::recv_blocking(&mut ss, &mut reader).unwrap();
            let Ok(tcpshm_proto::Decoded::Frame { frame, .. }) = tcpshm_proto::decode(reader.frame_bytes(&f), u32::MAX)
            else {
                panic!()
            };
            let Ok(Some(Control::Login(req))) = frame.control() else { panic!() };
            let ss = tcpshm_transport_tcp::tcp::from_std(ss).unwrap();
            srv.accept(ss, &req, &rules, 1).map_err(|(r, _)| r).unwrap();
        });
        cli.login_client(cs, SHM, b"", 1).unwrap();
    });
    let mut now = 1;
    for k in 0..1000 {
        now += 100_000;
        assert!(srv.poll(now) && cli.poll(now), "{:?} {:?}", srv.close_reason(), cli.close_reason());
        push_k(&mut cli, k, 16);
        expect_k(&mut srv, k, 16);
    }
    srv.close(CloseReason::Requested);
    wait_until("the client to be told", || {
        now += 200_000;
        (!cli.poll(now)).then_some(())
    });
    assert!(matches!(cli.close_reason(), Some(CloseReason::RemoteRequested { .. })), "{:?}", cli.close_reason());
}

#[test]
fn front_split_echoes_in_place() {
    let mut p = pair("split-echo", small);
    assert!(p.srv.front_split().is_none());
    let (mut sent, mut got) = (0u64, 0u64);
    while got < 20_000 {
        while sent < got + 20 && push_k(&mut p.cli, sent, (sent % 200) as usize) {
            sent += 1;
        }
        while let Some((m, mut tx)) = p.srv.front_split() {
            let Some(buf) = tx.alloc(m.payload.len()).unwrap() else { break };
            buf.copy_from_slice(m.payload);
            tx.push(m.msg_type).unwrap();
            p.srv.pop();
        }
        p.srv.poll(p.now);
        while p.cli.front().is_some() {
            expect_k(&mut p.cli, got, (got % 200) as usize);
            got += 1;
        }
    }
    let c = p.srv.counters();
    assert!(c.pushed >= 20_000 && c.pushed == c.popped && c.sent == c.pushed, "{c}");
    let mut tx = p.srv.sender();
    assert_eq!(tx.push(1), Err(SendError::NothingAllocated));
    tx.alloc(1).unwrap().unwrap();
    assert_eq!(tx.push(0xFF00), Err(SendError::ReservedType(0xFF00)));
}

/// A client stream whose reads wait until a gate opens: the test decides when the
/// client reads the server's login reply.
struct Gated {
    inner: UnixStream,
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Read for Gated {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let (open, cv) = &*self.gate;
        let mut g = open.lock().unwrap();
        while !*g {
            g = cv.wait(g).unwrap();
        }
        drop(g);
        self.inner.read(b)
    }
}

impl Write for Gated {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ByteStream for Gated {
    fn set_nonblocking(&self) -> io::Result<()> {
        self.inner.set_nonblocking(true)
    }
}

/// A server that pushes as soon as it accepted a client's first shared-memory login
/// (a reply to a request, say) puts messages into the ring before the client mapped
/// it: those messages come after the numbers the reply carries, and the client must
/// take them as the first messages of the session, not as a sign that the server
/// lost its state.
#[test]
fn a_server_pushing_right_after_accepting_does_not_fail_a_first_shm_login() {
    let dir = TempDir::new("push-after-accept");
    let cfg = small(&dir);
    let mut cli: Connection<Gated> = open_client(&dir, &cfg, SHM);
    let mut srv: Conn = open_server(&dir, &cfg, SHM);
    let (cs, ss) = unix_pair();
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let cs = Gated { inner: cs, gate: gate.clone() };
    let r = std::thread::scope(|scope| {
        let srv = &mut srv;
        scope.spawn(move || {
            common::serve_login(srv, ss, 1);
            assert!(srv.is_connected(), "{:?}", srv.close_reason());
            for k in 0..5 {
                assert!(push_k(srv, k, 10));
            }
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        });
        cli.login_client(cs, SHM, b"", 1)
    });
    let done = r.unwrap_or_else(|e| panic!("the client's login: {e}"));
    assert_eq!(done.transport, SHM);
    for k in 0..5 {
        expect_k(&mut cli, k, 10);
    }
}
