//! Partial writes and backpressure over real TCP sockets with small kernel buffers:
//! a peer reading one byte at a time, an 8 MiB message, a socket buffer that fills
//! (backpressure, not a disconnect), then a full store (`alloc` returns `None`);
//! nothing lost, and sending resumes once the peer reads.

mod common;

use common::{body, frame, open_store, tcp_pair, TempDir};
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::session::SessionConfig;
use tcpshm_proto::{decode, encode, Decoded, Nanos, Transport};
use tcpshm_transport_tcp::{tcp, PeerLogin, StreamConfig, TcpConnection};

/// A TCP pair over the loopback with small kernel buffers (`bytes`, which the
/// kernel doubles) and an Ethernet-sized MSS, set before the handshake: without the
/// MSS the loopback's 64 KiB segments never fit such buffers and the kernel's
/// zero-window recovery stalls for seconds.
fn small_std_pair(bytes: usize) -> (std::net::TcpStream, std::net::TcpStream) {
    let shape = |s: &Socket| {
        s.set_mss(1400).unwrap();
        s.set_send_buffer_size(bytes).unwrap();
        s.set_recv_buffer_size(bytes).unwrap();
    };
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    shape(&l);
    l.bind(&any.into()).unwrap();
    l.listen(4).unwrap();
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    shape(&c);
    c.connect(&l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c.into(), s.into())
}

fn small_pair(bytes: usize) -> (mio::net::TcpStream, mio::net::TcpStream) {
    let (a, b) = small_std_pair(bytes);
    (tcp::from_std(a).unwrap(), tcp::from_std(b).unwrap())
}

/// A raw peer that reads one byte per `read` call, interleaved with the
/// connection's polls, and reassembles the frames: every frame arrives whole, in
/// order, with its content, although the writer's socket took them in pieces.
#[test]
fn peer_reading_one_byte_at_a_time() {
    let dir = TempDir::new("bytewise");
    let cfg = StreamConfig { max_payload: 8192, ..common::config() };
    let mut conn = TcpConnection::new(open_store(dir.path(), "w", "r", 1 << 16), cfg);
    let (a, b) = small_std_pair(4096);
    conn.login_state();
    conn.attach(tcp::from_std(a).unwrap(), PeerLogin::default(), 1).unwrap();
    let mut raw = b;
    raw.set_nonblocking(true).unwrap();

    const N: u64 = 120;
    let len = |k: u64| (k as usize * 613) % 5000;
    let (mut pushed, mut got) = (0u64, 0u64);
    let mut wire = Vec::new();
    let mut blocked_seen = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while got < N {
        assert!(Instant::now() < deadline, "stalled at {got} of {N} messages ({})", conn.counters());
        while pushed < N {
            let Some(buf) = conn.alloc(len(pushed)).unwrap() else { break };
            buf.copy_from_slice(&body(pushed, len(pushed)));
            conn.push(3).unwrap();
            pushed += 1;
        }
        assert!(conn.poll(1), "closed: {:?}", conn.close_reason());
        blocked_seen |= conn.write_blocked();
        let mut one = [0u8; 1];
        for _ in 0..64 {
            match raw.read(&mut one) {
                Ok(1) => wire.push(one[0]),
                Ok(_) => panic!("EOF"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        while let Decoded::Frame { frame, consumed } = decode(&wire, u32::MAX).unwrap() {
            if frame.is_user() {
                assert_eq!(frame.seq(), got, "out of order");
                assert_eq!(frame.msg_type(), 3);
                assert_eq!(frame.payload(), &body(got, len(got))[..], "message {got} corrupted");
                got += 1;
                if got % 8 == 0 {
                    // Acknowledge, so the 64 KiB queue keeps room.
                    raw.write_all(&encode::ack(0, got)).unwrap();
                }
            }
            wire.drain(..consumed);
        }
    }
    assert!(blocked_seen, "the 8 KiB socket buffer never filled: the test did not exercise partial writes");
    assert_eq!(conn.counters().sent, N);
}

/// Two connections, the receiver reading at most one byte per poll (read budget 1):
/// everything crosses intact both ways.
#[test]
fn stream_connection_reading_one_byte_per_poll() {
    let dir = TempDir::new("slow");
    let fast = StreamConfig { max_payload: 16 * 1024, ..common::config() };
    let slow = StreamConfig { read_budget: 1, ..fast };
    let mut a = TcpConnection::new(open_store(dir.path(), "a", "b", 1 << 16), fast);
    let mut b = TcpConnection::new(open_store(dir.path(), "b", "a", 1 << 16), slow);
    let (sa, sb) = small_pair(4096);
    common::link_with(&mut a, &mut b, sa, sb, 1);
    const N: u64 = 40;
    let len = |k: u64| (k as usize * 977) % 3000;
    let (mut pushed, mut popped, mut back) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(15);
    while popped < N || back < N {
        assert!(Instant::now() < deadline, "stalled: a {} b {}", a.counters(), b.counters());
        while pushed < N {
            let Some(buf) = a.alloc(len(pushed)).unwrap() else { break };
            buf.copy_from_slice(&body(pushed, len(pushed)));
            a.push(1).unwrap();
            pushed += 1;
        }
        // The clock stays: no heartbeat or timeout interferes.
        assert!(a.poll(1) && b.poll(1), "closed: a {:?} b {:?}", a.close_reason(), b.close_reason());
        while let Some(m) = b.front() {
            assert_eq!((m.seq, m.payload), (popped, &body(popped, len(popped))[..]));
            // Echo a short message back through the slow reader's own send path.
            let echo = (m.seq as u32).to_le_bytes();
            b.pop();
            common::push(&mut b, 2, &echo);
            popped += 1;
        }
        while let Some(m) = a.front() {
            assert_eq!(m.payload, &(back as u32).to_le_bytes()[..]);
            a.pop();
            back += 1;
        }
    }
}

/// An 8 MiB message (and a small one behind it) crosses intact both ways, through
/// small socket buffers: thousands of partial writes, a receive buffer that grows
/// once to the frame's size.
#[test]
fn eight_mib_message() {
    const BIG: usize = 8 << 20;
    let dir = TempDir::new("big");
    let cfg = StreamConfig { max_payload: BIG, ..common::config() };
    let mut a = TcpConnection::new(open_store(dir.path(), "a", "b", 32 << 20), cfg);
    let mut b = TcpConnection::new(open_store(dir.path(), "b", "a", 32 << 20), cfg);
    assert_eq!(a.max_payload(), BIG);
    let (sa, sb) = small_pair(64 * 1024);
    common::link_with(&mut a, &mut b, sa, sb, 1);
    let big = body(77, BIG);
    for t in [&mut a, &mut b] {
        t.alloc(BIG).unwrap().unwrap().copy_from_slice(&big);
        t.push(0xBEEF).unwrap();
        common::push(t, 1, b"after");
    }
    let mut got = [0usize; 2];
    let mut now: Nanos = 1;
    common::poll2_until(&mut a, &mut b, &mut now, 0, "both 8 MiB messages", |a, b| {
        for (i, t) in [a, b].into_iter().enumerate() {
            while let Some(m) = t.front() {
                match got[i] {
                    0 => {
                        assert_eq!((m.msg_type, m.payload.len()), (0xBEEF, BIG));
                        assert!(m.payload == &big[..], "the 8 MiB message is corrupted");
                    }
                    1 => assert_eq!((m.msg_type, m.payload), (1, &b"after"[..])),
                    _ => panic!("an extra message"),
                }
                t.pop();
                got[i] += 1;
            }
        }
        got == [2, 2]
    });
    // Acks flow back (the last one with a heartbeat): both queues empty.
    let step = common::session().heartbeat_interval;
    common::poll2_until(&mut a, &mut b, &mut now, step, "the acks", |a, b| {
        a.counters().queue_depth == 0 && b.counters().queue_depth == 0
    });
}

/// Timing for the tests where a direction is blocked: a link that carries data one
/// way only acknowledges the other way with delayed ACKs (40 ms and more of real
/// time), so the clock here is real time and the timeout generous.
fn realtime() -> (StreamConfig, impl Fn() -> Nanos) {
    let session = SessionConfig { heartbeat_interval: 50_000_000, timeout: 500_000_000, ..SessionConfig::default() };
    let start = Instant::now();
    (StreamConfig { session, ..common::config() }, move || start.elapsed().as_nanos() as Nanos + 1)
}

/// The receiver is polled (it answers heartbeats) but never pops: its buffer fills
/// (up to the sender's queue capacity), then the kernel buffers may too, then the
/// sender's store fills and `alloc` returns `None` (backpressure: both stay connected
/// over several timeouts). Once the receiver pops, every message arrives once, in
/// order, and sending resumes.
#[test]
fn full_socket_then_full_store_is_backpressure() {
    let dir = TempDir::new("backpressure");
    let (cfg, clock) = realtime();
    let cfg = StreamConfig { recv_buffer: 16 * 1024, ..cfg };
    // Default kernel buffers (tiny ones make the kernel's zero-window recovery
    // back off for seconds); an 8 MiB queue is more than they hold while the
    // receiver does not read.
    let mut a = TcpConnection::new(open_store(dir.path(), "a", "b", 8 << 20), cfg);
    let mut b = TcpConnection::new(open_store(dir.path(), "b", "a", 1 << 16), cfg);
    common::link(&mut a, &mut b, clock());
    let len = |k: u64| 200 + (k as usize * 31) % 800;
    let (mut pushed, mut blocked_seen, mut full_rounds) = (0u64, false, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    // Fill: push until alloc has said None for a while.
    while full_rounds < 50 {
        assert!(Instant::now() < deadline, "the queue never filled ({})", a.counters());
        match a.alloc(len(pushed)).unwrap() {
            Some(buf) => {
                buf.copy_from_slice(&body(pushed, len(pushed)));
                a.push(4).unwrap();
                pushed += 1;
                full_rounds = 0;
            }
            None => full_rounds += 1,
        }
        let now = clock();
        assert!(a.poll(now) && b.poll(now), "closed while filling: {:?} {:?}", a.close_reason(), b.close_reason());
        blocked_seen |= a.write_blocked();
    }
    // The receiver's buffer may absorb the sender's whole queue (it grows to the
    // peer's queue capacity while messages are kept, so acks behind them can always be
    // read); whether the socket also filled depends on that, so it is not asserted —
    // `a_peer_that_never_reads` covers a full socket.
    let _ = blocked_seen;
    // Three timeouts of backpressure: nobody is taken for dead, nothing gets in.
    let until = clock() + 3 * cfg.session.timeout;
    while clock() < until {
        let now = clock();
        assert!(
            a.poll(now) && b.poll(now),
            "backpressure closed the link: {:?} {:?}",
            a.close_reason(),
            b.close_reason()
        );
        assert!(a.alloc(len(pushed)).unwrap().is_none(), "room appeared while the peer popped nothing");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The receiver pops: all arrive once, in order; then sending resumes.
    let target = pushed + 500;
    let mut popped = 0u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while popped < target {
        assert!(Instant::now() < deadline, "stalled draining: a {} b {}", a.counters(), b.counters());
        while pushed < target {
            let Some(buf) = a.alloc(len(pushed)).unwrap() else { break };
            buf.copy_from_slice(&body(pushed, len(pushed)));
            a.push(4).unwrap();
            pushed += 1;
        }
        let now = clock();
        assert!(a.poll(now) && b.poll(now), "closed while draining: {:?} {:?}", a.close_reason(), b.close_reason());
        while let Some(m) = b.front() {
            assert_eq!(m.seq, popped, "lost or repeated");
            assert_eq!(m.payload, &body(popped, len(popped))[..]);
            b.pop();
            popped += 1;
        }
    }
    assert_eq!(a.counters().resent, 0);
}

/// A raw peer that never reads: the writer's socket fills and stays full across
/// several timeouts while the peer keeps sending heartbeats; the writer stays
/// connected and its queue holds every message; then the peer reads them all.
#[test]
fn peer_not_reading_at_all() {
    let dir = TempDir::new("noread");
    let (cfg, clock) = realtime();
    let mut conn = TcpConnection::new(open_store(dir.path(), "w", "r", 8 << 20), cfg);
    let (a, raw) = tcp_pair();
    conn.login_state();
    conn.attach(tcp::from_std(a).unwrap(), PeerLogin::default(), clock()).unwrap();
    // Each heartbeat leaves at once (no Nagle delay waiting for an ack).
    raw.set_nodelay(true).unwrap();
    let mut raw = raw;
    let mut pushed = 0u64;
    while let Some(buf) = conn.alloc(1000).unwrap() {
        buf.copy_from_slice(&body(pushed, 1000));
        conn.push(1).unwrap();
        pushed += 1;
    }
    assert!(conn.write_blocked(), "an 8 MiB queue fit into the socket buffers?");
    let until = clock() + 3 * cfg.session.timeout;
    let mut beat = 0;
    while clock() < until {
        if clock() >= beat {
            raw.write_all(&encode::heartbeat(0, 0)).unwrap();
            beat = clock() + cfg.session.heartbeat_interval;
        }
        assert!(conn.poll(clock()), "closed: {:?}", conn.close_reason());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(conn.counters().queue_depth, pushed);
    assert_eq!(conn.store().queue_depth(), pushed);
    // Now read everything: the frames are whole and in order (heartbeats may sit
    // between them, never inside one).
    raw.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut wire = Vec::new();
    let mut got = 0u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while got < pushed {
        assert!(Instant::now() < deadline, "only {got} of {pushed} arrived");
        assert!(conn.poll(clock()), "closed: {:?}", conn.close_reason());
        let mut buf = [0u8; 65536];
        match raw.read(&mut buf) {
            Ok(0) => panic!("EOF"),
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
        let before = got;
        while let Decoded::Frame { frame, consumed } = decode(&wire, u32::MAX).unwrap() {
            if frame.is_user() {
                assert_eq!((frame.seq(), frame.payload()), (got, &body(got, 1000)[..]));
                got += 1;
            } else {
                assert_eq!(frame.msg_type(), msg_type::HEARTBEAT);
            }
            wire.drain(..consumed);
        }
        if got > before {
            raw.write_all(&frame(msg_type::ACK, 0, got, b"")).unwrap();
        }
    }
    poll_until_acked(&mut conn, &clock);
}

fn poll_until_acked(conn: &mut TcpConnection, clock: &impl Fn() -> Nanos) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.store().queue_depth() > 0 {
        assert!(Instant::now() < deadline, "acks never applied");
        conn.poll(clock());
    }
}
