//! The connection in one process: the data path (order, sizes, limits, backpressure,
//! batches, persistence across re-attach, corruption) and the control channel
//! (heartbeats, timeout, close frames, bad input, I/O errors, peer death, epochs,
//! split use from several threads, a mio stream).

mod common;

use common::{name, socket_pair, TestDir};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::{decode, encode, CloseReason, Control, Decoded, ProtocolError, SendError, Transport};
use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmError, ShmFile, Side};

const CAPS: Capacities = Capacities { server_to_client: 4096, client_to_server: 8192 };
/// Offsets in a file of `CAPS`: the client->server ring region, and in any ring
/// region the write index, the read index and the data area.
const C2S: u64 = 4096 + 8192;
const S2C: u64 = 4096;
const WRITE_IDX: u64 = 128;
const READ_IDX: u64 = 256;
const DATA: u64 = 384;

fn cfg() -> ShmConfig {
    ShmConfig { heartbeat_interval: 1_000, timeout: 10_000, check_interval: 0, max_payload: usize::MAX }
}

type Conn = ShmConnection<UnixStream>;

/// A connected server/client pair on a fresh file.
fn pair(t: &TestDir, caps: Capacities) -> (Conn, Conn) {
    pair_with(t, caps, cfg())
}

fn pair_with(t: &TestDir, caps: Capacities, cfg: ShmConfig) -> (Conn, Conn) {
    let (s, c) = (name("S"), name("C"));
    let sf = ShmFile::create_or_open(&t.dir, &s, &c, caps).unwrap();
    let cf = ShmFile::open(&t.dir, &s, &c).unwrap();
    let (x, y) = socket_pair();
    (ShmConnection::server(sf, x, cfg).unwrap(), ShmConnection::client(cf, y, cfg).unwrap())
}

/// A server on a fresh file whose control stream's other end is returned raw.
fn server_with_raw_peer(t: &TestDir) -> (Conn, UnixStream) {
    let sf = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let (x, y) = socket_pair();
    (ShmConnection::server(sf, x, cfg()).unwrap(), y)
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

/// Reads every whole control frame the raw end has; returns their kinds and texts.
fn read_control(raw: &mut UnixStream) -> Vec<(u16, String)> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    loop {
        match raw.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { frame, consumed }) = decode(&buf[at..n], 1 << 16) {
        let text = match frame.control() {
            Ok(Some(Control::Close(c))) => format!("{}: {}", c.code, c.text),
            _ => String::new(),
        };
        out.push((frame.msg_type(), text));
        at += consumed;
    }
    out
}

#[test]
fn every_size_up_to_max_in_order() {
    let t = TestDir::new("sizes");
    let (mut srv, mut cli) = pair(&t, CAPS);
    for dir in 0..2 {
        let (from, to) = if dir == 0 { (&mut srv, &mut cli) } else { (&mut cli, &mut srv) };
        let max = from.max_payload();
        let k0 = 1_000_000 * max as u64;
        for len in 0..=max {
            assert!(push_k(from, k0 + len as u64, len), "an empty ring refused {len} bytes");
            expect_k(to, k0 + len as u64, len);
        }
        // Bursts of random sizes, wrapping the ring many times.
        let mut k = 0u64;
        let mut popped = 0u64;
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
    }
    assert_eq!(srv.max_payload(), 2040);
    assert_eq!(cli.max_payload(), 4088);
}

#[test]
fn limits_and_reserved_types() {
    let t = TestDir::new("limits");
    let (mut srv, mut cli) = pair(&t, CAPS);
    let max = srv.max_payload();
    assert_eq!(srv.alloc(max + 1).unwrap_err(), SendError::TooLarge { len: max + 1, max });
    assert!(matches!(srv.alloc(usize::MAX), Err(SendError::TooLarge { .. })));
    assert_eq!(srv.push(1), Err(SendError::NothingAllocated));
    assert_eq!(srv.push_more(1), Err(SendError::NothingAllocated));
    for ty in [msg_type::FIRST_CONTROL, msg_type::CLOSE, 0xFFFF] {
        srv.alloc(1).unwrap().unwrap();
        assert_eq!(srv.push(ty), Err(SendError::ReservedType(ty)));
        assert_eq!(srv.push_more(ty), Err(SendError::ReservedType(ty)));
        srv.poll(1);
        assert!(cli.front().is_none(), "a refused push published something");
    }
    // The allocation survives a refused type: the same bytes go out with a user type.
    srv.alloc(2).unwrap().unwrap().copy_from_slice(b"ok");
    assert!(srv.push(0xFF00).is_err());
    srv.push(msg_type::MAX_USER).unwrap();
    assert_eq!(cli.front().unwrap().payload, b"ok");
    assert_eq!(srv.counters().pushed, 1);

    // A smaller configured limit.
    let t2 = TestDir::new("limits2");
    let sf = ShmFile::create_or_open(&t2.dir, &name("S"), &name("C"), CAPS).unwrap();
    let (x, _y) = socket_pair();
    let mut small = ShmConnection::server(sf, x, ShmConfig { max_payload: 100, ..cfg() }).unwrap();
    assert_eq!(small.max_payload(), 100);
    assert_eq!(small.alloc(101).unwrap_err(), SendError::TooLarge { len: 101, max: 100 });
    assert!(small.alloc(100).unwrap().is_some());
}

#[test]
fn backpressure_when_the_peer_never_pops() {
    let t = TestDir::new("backpressure");
    let (mut srv, mut cli) = pair(&t, CAPS);
    let mut now = 0;
    let mut k = 0;
    while push_k(&mut srv, k, 100) {
        k += 1;
    }
    assert!(k > 10, "only {k} messages fit");
    // Full: stays full through polls (heartbeats flow; nobody is disconnected).
    for _ in 0..100 {
        now += 500;
        assert!(srv.poll(now) && cli.poll(now));
        assert!(srv.alloc(100).unwrap().is_none(), "room appeared from nowhere");
        assert!(srv.alloc(0).unwrap().is_none() || srv.alloc(100).unwrap().is_none());
    }
    let c = srv.counters();
    assert_eq!((c.pushed, c.acked, c.queue_depth), (k, 0, k));
    // Nothing lost: every message, in order; then sending resumes.
    for i in 0..k {
        expect_k(&mut cli, i, 100);
    }
    assert!(cli.front().is_none());
    assert_eq!(srv.counters().acked, k);
    for i in k..k + 1000 {
        assert!(push_k(&mut srv, i, 100));
        expect_k(&mut cli, i, 100);
    }
}

#[test]
fn push_more_is_visible_at_the_next_push_or_poll() {
    let t = TestDir::new("batch");
    let (mut srv, mut cli) = pair(&t, CAPS);
    for k in 0..3 {
        srv.alloc(1).unwrap().unwrap()[0] = k;
        srv.push_more(1).unwrap();
    }
    assert!(cli.front().is_none(), "staged messages are not published");
    assert_eq!(srv.counters().sent, 0);
    srv.poll(1);
    assert_eq!(srv.counters().sent, 3);
    for k in 0..3 {
        assert_eq!(cli.front().unwrap().payload, [k]);
        cli.pop();
    }
    srv.alloc(1).unwrap().unwrap()[0] = 7;
    srv.push_more(1).unwrap();
    srv.alloc(1).unwrap().unwrap()[0] = 8;
    srv.push(1).unwrap();
    assert_eq!(cli.front().unwrap().payload, [7]);
    assert_eq!(srv.counters().sent, 5);
}

#[test]
fn seq_front_pop_and_counters() {
    let t = TestDir::new("seq");
    let (mut srv, mut cli) = pair(&t, CAPS);
    cli.pop(); // nothing: no effect
    for k in 0..5 {
        push_k(&mut srv, k, 10);
    }
    let c = cli.counters();
    assert_eq!((c.received, c.popped), (0, 0));
    for seq in 0..5 {
        assert_eq!(cli.front().unwrap().seq, seq);
        assert_eq!(cli.front().unwrap().seq, seq, "front is stable");
        assert_eq!(cli.counters().received, seq + 1, "a message is received once");
        cli.pop();
    }
    // pop without front consumes and counts too.
    push_k(&mut srv, 5, 10);
    cli.pop();
    let c = cli.counters();
    assert_eq!((c.received, c.popped), (6, 6));
    let s = srv.counters();
    assert_eq!((s.pushed, s.sent, s.acked, s.queue_depth, s.resent), (6, 6, 6, 0, 0));
}

#[test]
fn messages_survive_detach_and_a_new_attach() {
    let t = TestDir::new("persist");
    let (s, c) = (name("S"), name("C"));
    let (mut srv, mut cli) = pair(&t, CAPS);
    for k in 0..10 {
        push_k(&mut srv, k, 20);
        push_k(&mut cli, 100 + k, 30);
    }
    for k in 0..3 {
        expect_k(&mut cli, k, 20);
    }
    // The client goes away entirely (as a crashed process would: its lock is gone).
    drop(cli);
    let (x, y) = socket_pair();
    srv.reattach(x);
    let mut cli = ShmConnection::client(ShmFile::open(&t.dir, &s, &c).unwrap(), y, cfg()).unwrap();
    for k in 3..10 {
        expect_k(&mut cli, k, 20);
    }
    assert!(cli.front().is_none(), "popped messages never come back");
    // The server's view of what the old client left in its ring.
    let file = srv.detach();
    let (x, _y2) = socket_pair();
    let mut srv = ShmConnection::server(file, x, cfg()).unwrap();
    for k in 0..10 {
        expect_k(&mut srv, 100 + k, 30);
    }
    // A fresh client process sees an old unconsumed message in its queue depth.
    push_k(&mut cli, 200, 1);
    drop(cli);
    let (x, _y3) = socket_pair();
    let cli = ShmConnection::client(ShmFile::open(&t.dir, &s, &c).unwrap(), x, cfg()).unwrap();
    let k = cli.counters();
    assert_eq!((k.pushed, k.acked, k.queue_depth), (0, 0, 1));
}

#[test]
fn staged_messages_are_published_by_detach() {
    let t = TestDir::new("detach");
    let (mut srv, mut cli) = pair(&t, CAPS);
    srv.alloc(1).unwrap().unwrap()[0] = 42;
    srv.push_more(3).unwrap();
    let file = srv.detach();
    assert_eq!(cli.front().unwrap().payload, [42]);
    assert!(!cli.poll(1), "the client sees the detach as a remote close");
    assert!(matches!(cli.close_reason(), Some(CloseReason::RemoteRequested(_))), "{:?}", cli.close_reason());
    drop(file);
}

#[test]
fn corrupt_inbound_index_closes_with_corrupt_and_stays_closed() {
    let t = TestDir::new("corrupt");
    let (mut srv, mut cli) = pair(&t, CAPS);
    push_k(&mut cli, 1, 8);
    let raw = std::fs::OpenOptions::new().write(true).open(srv.path()).unwrap();
    // The client's write index jumps beyond a whole ring.
    raw.write_all_at(&(1u64 << 40).to_le_bytes(), C2S + WRITE_IDX).unwrap();
    assert!(srv.front().is_none());
    assert!(!srv.is_connected());
    let r = srv.close_reason().cloned();
    assert!(matches!(r, Some(CloseReason::Corrupt(ref s)) if s.contains("inbound")), "{r:?}");
    srv.pop();
    assert!(srv.front().is_none(), "a corrupt ring is never read again");
    // The server tells the client why at its next poll (front makes no system call).
    assert!(!srv.poll(1));
    assert!(!cli.poll(1));
    let r = cli.close_reason().cloned();
    assert!(matches!(r, Some(CloseReason::RemoteRequested(ref s)) if s.starts_with("corrupt state")), "{r:?}");
    // A reattach does not hide it: closed again at once with the same reason.
    let (x, _y) = socket_pair();
    srv.reattach(x);
    assert!(!srv.is_connected());
    assert!(matches!(srv.close_reason(), Some(CloseReason::Corrupt(_))));
    // Sending still works (the outbound ring is fine).
    assert!(push_k(&mut srv, 5, 5));
}

#[test]
fn reserved_type_inside_the_ring_is_corruption() {
    let t = TestDir::new("reservedring");
    let (mut srv, mut cli) = pair(&t, CAPS);
    push_k(&mut cli, 0, 8);
    let raw = std::fs::OpenOptions::new().write(true).open(srv.path()).unwrap();
    raw.write_all_at(&msg_type::HEARTBEAT.to_le_bytes(), C2S + DATA + 4).unwrap();
    assert!(srv.front().is_none());
    assert!(matches!(srv.close_reason(), Some(CloseReason::Corrupt(ref s)) if s.contains("reserved type")));
}

#[test]
fn corrupt_outbound_index_is_a_storage_error() {
    let t = TestDir::new("corruptout");
    let (mut srv, _cli) = pair(&t, CAPS);
    let raw = std::fs::OpenOptions::new().write(true).open(srv.path()).unwrap();
    // The client's read index of the server->client ring claims more than was written.
    raw.write_all_at(&(1u64 << 20).to_le_bytes(), S2C + READ_IDX).unwrap();
    let mut k = 0;
    let err = loop {
        match srv.alloc(64) {
            Ok(Some(_)) => {
                srv.push(1).unwrap();
                k += 1;
                assert!(k < 1000);
            }
            Ok(None) => panic!("full without noticing the impossible index"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SendError::Storage(_)), "{err:?}");
    assert!(matches!(srv.close_reason(), Some(CloseReason::Corrupt(ref s)) if s.contains("outbound")));
    assert!(matches!(srv.alloc(1), Err(SendError::Storage(_))), "sticky");
}

#[test]
fn heartbeats_go_out_and_keep_the_peer_alive() {
    let t = TestDir::new("hb");
    let (mut srv, mut raw) = server_with_raw_peer(&t);
    assert!(srv.poll(100));
    assert_eq!(read_control(&mut raw), vec![(msg_type::HEARTBEAT, String::new())], "one at the first poll");
    assert!(srv.poll(600));
    assert!(read_control(&mut raw).is_empty(), "none before the interval");
    let mut now = 600;
    for _ in 0..50 {
        now += 400;
        raw.write_all(&encode::heartbeat(0, 0)).unwrap();
        assert!(srv.poll(now), "{:?}", srv.close_reason());
    }
    let hbs = read_control(&mut raw);
    assert!(hbs.len() >= 15 && hbs.iter().all(|(t, _)| *t == msg_type::HEARTBEAT), "{hbs:?}");
    raw.write_all(&encode::ack(0, 0)).unwrap();
    assert!(srv.poll(now + 1));
}

#[test]
fn silent_peer_times_out() {
    let t = TestDir::new("timeout");
    let (mut srv, mut raw) = server_with_raw_peer(&t);
    assert!(srv.poll(1_000));
    assert!(srv.poll(11_000), "exactly the timeout is not yet longer than it");
    assert!(!srv.poll(11_001));
    assert_eq!(srv.close_reason(), Some(&CloseReason::Timeout { silent_ns: 10_001 }));
    let frames = read_control(&mut raw);
    assert!(frames.last().is_some_and(|(t, s)| *t == msg_type::CLOSE && s.starts_with("timeout")), "{frames:?}");
    assert!(!srv.poll(20_000));
    assert!(srv.control().stream().is_none(), "the stream was dropped");
}

#[test]
fn close_frame_eof_and_garbage_on_the_control_stream() {
    let t = TestDir::new("ctl");
    // An orderly close from the peer.
    let (mut srv, mut raw) = server_with_raw_peer(&t);
    let mut buf = [0u8; 512];
    let close = Control::Close(tcpshm_proto::close::CloseFrame {
        code: tcpshm_proto::close::CloseCode::REQUESTED,
        text: "end of day",
    });
    let n = encode::encode_control(&mut buf, &close, 0, 0).unwrap();
    raw.write_all(&buf[..n]).unwrap();
    assert!(!srv.poll(1));
    assert_eq!(srv.close_reason(), Some(&CloseReason::RemoteRequested("requested: end of day".into())));
    assert!(!read_control(&mut raw).iter().any(|(t, _)| *t == msg_type::CLOSE), "a remote close is not echoed");
    drop(srv);

    // End of stream.
    let (mut srv, raw) = server_with_raw_peer(&t);
    drop(raw);
    assert!(!srv.poll(1));
    assert_eq!(srv.close_reason(), Some(&CloseReason::RemoteClosed));
    drop(srv);

    // Malformed frames and frames that do not belong on a control channel.
    let mut user = [0u8; 32];
    let n_user = encode::encode_frame(&mut user, 7, 0, 0, b"x").unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0u8; 24], "below the 24-byte header"),
        (u32::MAX.to_le_bytes().to_vec(), "exceeds the maximum"),
        (user[..n_user].to_vec(), "user message"),
    ];
    for (bytes, why) in cases {
        let (mut srv, mut raw) = server_with_raw_peer(&t);
        raw.write_all(&bytes).unwrap();
        assert!(!srv.poll(1));
        let r = srv.close_reason().cloned();
        assert!(matches!(r, Some(CloseReason::Protocol(_))) && r.as_ref().unwrap().to_string().contains(why), "{r:?}");
        let frames = read_control(&mut raw);
        assert!(frames.last().is_some_and(|(t, s)| *t == msg_type::CLOSE && s.starts_with("protocol")), "{frames:?}");
    }
    // Login frames after the login (their payload is not even looked at).
    for ty in [msg_type::LOGIN, msg_type::LOGIN_REPLY] {
        let (mut srv, mut raw) = server_with_raw_peer(&t);
        let mut frame = [0u8; 64];
        let n = encode::encode_frame(&mut frame, ty, 0, 0, &[0u8; 16]).unwrap();
        raw.write_all(&frame[..n]).unwrap();
        assert!(!srv.poll(1));
        let r = srv.close_reason().cloned();
        assert!(
            matches!(r, Some(CloseReason::Protocol(ProtocolError::UnexpectedControl { msg_type: t, .. })) if t == ty),
            "{r:?}"
        );
    }
}

/// A stream whose reads fail: an I/O error closes with its errno.
struct Failing;
impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(104))
    }
}
impl Write for Failing {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn io_error_closes_with_its_errno() {
    let t = TestDir::new("io");
    let sf = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let mut srv = ShmConnection::server(sf, Failing, cfg()).unwrap();
    assert!(!srv.poll(1));
    assert_eq!(srv.close_reason(), Some(&CloseReason::Io { op: "read", errno: 104 }));
}

/// A stream that counts reads (and has nothing to read).
#[derive(Default)]
struct Counting {
    reads: std::rc::Rc<std::cell::Cell<u32>>,
}
impl Read for Counting {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.reads.set(self.reads.get() + 1);
        Err(io::ErrorKind::WouldBlock.into())
    }
}
impl Write for Counting {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn control_work_is_rate_limited_by_check_interval() {
    let t = TestDir::new("gate");
    let sf = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let s = Counting::default();
    let reads = s.reads.clone();
    let mut srv = ShmConnection::server(sf, s, ShmConfig { check_interval: 1_000, ..cfg() }).unwrap();
    for now in 0..1_000 {
        assert!(srv.poll(now));
    }
    assert_eq!(reads.get(), 1, "one control check in the first interval");
    assert!(srv.poll(1_000));
    assert_eq!(reads.get(), 2);
    // A clock that jumps back does not suspend the checks until it catches up.
    assert!(srv.poll(10));
    assert_eq!(reads.get(), 3);
}

#[test]
fn peer_death_is_seen_through_its_lock() {
    let t = TestDir::new("peerdied");
    // The control stream stays open (both ends here): only the lock tells.
    let (mut srv, _raw) = server_with_raw_peer(&t);
    assert!(srv.poll(1), "a peer that never attached is not dead");
    let cli = ShmFile::open(&t.dir, &name("S"), &name("C")).unwrap();
    assert!(srv.poll(2));
    assert!(srv.peer_alive().unwrap());
    drop(cli);
    assert!(!srv.poll(3));
    assert_eq!(srv.close_reason(), Some(&CloseReason::PeerDied));
}

#[test]
fn epoch_counts_server_logins() {
    let t = TestDir::new("epoch");
    let (mut srv, mut cli) = pair(&t, CAPS);
    assert_eq!((srv.epoch(), cli.epoch()), (1, 1));
    let (x, y) = socket_pair();
    srv.reattach(x);
    cli.reattach(y);
    assert_eq!((srv.epoch(), cli.epoch()), (2, 2), "only the server counts logins");
    let file = srv.detach();
    assert_eq!(file.epoch(), 2);
    let (x, _y) = socket_pair();
    let srv = ShmConnection::server(file, x, cfg()).unwrap();
    assert_eq!(srv.epoch(), 3);
    assert_eq!((srv.local_name(), srv.remote_name(), srv.side()), (&name("S"), &name("C"), Side::Server));
    assert_eq!((cli.local_name(), cli.remote_name(), cli.side()), (&name("C"), &name("S"), Side::Client));
}

#[test]
fn wrong_side_and_bad_config_are_refused() {
    let t = TestDir::new("side");
    let sf = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let (x, _y) = socket_pair();
    let e = ShmConnection::client(sf, x, cfg()).unwrap_err();
    assert!(matches!(e, ShmError::WrongSide { expected: Side::Client, found: Side::Server }), "{e}");
    let sf = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let (x, _y) = socket_pair();
    let e = ShmConnection::server(sf, x, ShmConfig { timeout: 1_000, ..cfg() }).unwrap_err();
    assert!(matches!(e, ShmError::Config(_)), "{e}");
}

#[test]
fn split_parts_on_three_threads_share_the_state() {
    let t = TestDir::new("split");
    // Two fake clocks that do not agree: a timeout far beyond both.
    let long = ShmConfig { timeout: u64::MAX / 2, ..cfg() };
    let (srv, mut cli) = pair_with(&t, Capacities::symmetric(1 << 16), long);
    let handle = srv.close_handle();
    let (mut data, mut control) = srv.split();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let control_thread = std::thread::spawn(move || {
        let mut now = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            now += 10;
            control.poll(now);
            std::thread::yield_now();
        }
        control
    });
    const N: u64 = 100_000;
    // The data thread echoes everything back.
    let data_thread = std::thread::spawn(move || {
        let mut echoed = 0;
        while echoed < N {
            data.poll(0);
            let Some(m) = data.front() else {
                std::thread::yield_now();
                continue;
            };
            let (ty, mut copy) = (m.msg_type, [0u8; 64]);
            let len = m.payload.len();
            copy[..len].copy_from_slice(m.payload);
            loop {
                if let Some(buf) = data.alloc(len).unwrap() {
                    buf.copy_from_slice(&copy[..len]);
                    data.push(ty).unwrap();
                    break;
                }
            }
            data.pop();
            echoed += 1;
        }
        // Wait for the close requested from another thread.
        while data.poll(0) {
            std::thread::yield_now();
        }
        data
    });
    let (mut sent, mut got) = (0u64, 0u64);
    let mut cli_now = 0;
    while got < N {
        cli_now += 10;
        assert!(cli.poll(cli_now), "{:?}", cli.close_reason());
        while sent < N && sent < got + 100 && push_k(&mut cli, sent, (sent % 64) as usize) {
            sent += 1;
        }
        while cli.front().is_some() {
            expect_k(&mut cli, got, (got % 64) as usize);
            got += 1;
        }
    }
    std::thread::spawn(move || handle.close()).join().unwrap();
    let mut data = data_thread.join().unwrap();
    assert_eq!(data.close_reason(), Some(&CloseReason::Requested));
    while cli.poll(cli_now) {
        cli_now += 10;
        std::thread::yield_now();
    }
    assert!(matches!(cli.close_reason(), Some(CloseReason::RemoteRequested(_))), "{:?}", cli.close_reason());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut control = control_thread.join().unwrap();
    assert_eq!(control.close_reason(), Some(&CloseReason::Requested));
    assert!(control.stream().is_none());
    // The control part reattaches; the data part sees it at its next poll.
    let (x, y) = socket_pair();
    control.reattach(x);
    cli.reattach(y);
    assert!(data.poll(0) && data.close_reason().is_none());
    assert_eq!(data.session(), 1);
    assert_eq!(data.counters().popped, N);
}

#[test]
fn data_part_close_is_sent_by_the_control_part() {
    let t = TestDir::new("dataclose");
    let (srv, mut raw) = server_with_raw_peer(&t);
    let (mut data, mut control) = srv.split();
    assert!(control.poll(1));
    let _ = read_control(&mut raw);
    data.close(CloseReason::Requested);
    assert!(!data.is_connected(), "at once on the part that closed");
    assert!(control.is_connected(), "the other part sees it at its poll");
    assert!(!control.poll(2));
    assert_eq!(control.close_reason(), Some(&CloseReason::Requested));
    let frames = read_control(&mut raw);
    assert!(frames.last().is_some_and(|(t, s)| *t == msg_type::CLOSE && s.starts_with("requested")), "{frames:?}");
}

#[test]
fn a_mio_tcp_stream_as_control_channel() {
    use mio::net::{TcpListener, TcpStream};
    let t = TestDir::new("mio");
    let (s, c) = (name("S"), name("C"));
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let client_sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let server_sock = loop {
        match listener.accept() {
            Ok((sock, _)) => break sock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    };
    let sf = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    let mut srv = ShmConnection::server(sf, server_sock, cfg()).unwrap();
    let mut cli = ShmConnection::client(ShmFile::open(&t.dir, &s, &c).unwrap(), client_sock, cfg()).unwrap();
    let mut now = 0;
    for k in 0..1000 {
        now += 100;
        assert!(srv.poll(now) && cli.poll(now), "{:?} {:?}", srv.close_reason(), cli.close_reason());
        push_k(&mut cli, k, 16);
        expect_k(&mut srv, k, 16);
        std::thread::sleep(std::time::Duration::from_micros(20));
    }
    srv.close(CloseReason::Requested);
    let mut rounds = 0;
    while cli.poll(now) {
        rounds += 1;
        assert!(rounds < 100_000);
        std::thread::yield_now();
    }
    assert!(matches!(cli.close_reason(), Some(CloseReason::RemoteRequested(_))));
}

#[test]
fn front_split_echoes_in_place() {
    let t = TestDir::new("split-echo");
    let (mut srv, mut cli) = pair(&t, CAPS);
    assert!(srv.front_split().is_none());
    let (mut sent, mut got) = (0u64, 0u64);
    while got < 20_000 {
        while sent < got + 20 && push_k(&mut cli, sent, (sent % 200) as usize) {
            sent += 1;
        }
        while let Some((m, mut tx)) = srv.front_split() {
            let Some(buf) = tx.alloc(m.payload.len()).unwrap() else { break };
            buf.copy_from_slice(m.payload);
            if m.seq % 2 == 0 {
                tx.push(m.msg_type).unwrap();
            } else {
                tx.push_more(m.msg_type).unwrap();
            }
            srv.pop();
        }
        srv.poll(0);
        while cli.front().is_some() {
            expect_k(&mut cli, got, (got % 200) as usize);
            got += 1;
        }
    }
    let c = srv.counters();
    assert!(c.pushed >= 20_000 && c.pushed == c.popped && c.sent == c.pushed, "{c}");
    let mut tx = srv.sender();
    assert_eq!(tx.push(1), Err(SendError::NothingAllocated));
    tx.alloc(1).unwrap().unwrap();
    assert_eq!(tx.push(0xFF00), Err(SendError::ReservedType(0xFF00)));
}
