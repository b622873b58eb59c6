//! Partial writes and backpressure over real TCP sockets with small kernel buffers:
//! a peer reading one byte at a time, a connection reading one byte per poll, an
//! 8 MiB message, a full socket then a full store (`alloc` says `None`: backpressure,
//! not a disconnect), a peer that does not read at all. Nothing is lost, no frame is
//! ever interleaved with another, and sending resumes at the byte where it stopped.

mod common;

use common::{body, open_client, open_server, poll2_until, push, raw_client, RawLogin, HB, TIMEOUT};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{decode, encode, Decoded, Nanos, Transport};
use tcpshm_test_support::net::small_tcp_pair;
use tcpshm_test_support::{wait_until, TempDir};

fn with_timeouts((a, b): (TcpStream, TcpStream)) -> (TcpStream, TcpStream) {
    for s in [&a, &b] {
        s.set_read_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
        s.set_write_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
    }
    (a, b)
}

fn config(dir: &TempDir, max_message: u32, queue_bytes: usize) -> ConnectionConfig {
    let mut cfg = common::config(dir);
    cfg.session.max_message = max_message;
    cfg.queue_bytes = queue_bytes;
    cfg.shm.ring_bytes = queue_bytes;
    cfg
}

/// Decodes whole frames from the front of `wire`, handing each user frame to `f`
/// and checking the others are heartbeats or acks (never inside a user frame: a
/// control frame there would not decode as one).
fn take_frames(wire: &mut Vec<u8>, mut f: impl FnMut(u64, u16, &[u8])) {
    while let Decoded::Frame { frame, consumed } = decode(wire, u32::MAX).expect("frames are never interleaved") {
        if frame.is_user() {
            f(frame.seq(), frame.msg_type(), frame.payload());
        } else {
            assert!(
                matches!(frame.msg_type(), msg_type::HEARTBEAT | msg_type::ACK),
                "unexpected control frame {:#x}",
                frame.msg_type()
            );
        }
        wire.drain(..consumed);
    }
}

/// A raw peer that reads one byte per `read` call, interleaved with the
/// connection's polls, and reassembles the frames: every frame arrives whole, in
/// order, with its content, although the writer's socket took them in pieces.
#[test]
fn peer_reading_one_byte_at_a_time() {
    let dir = TempDir::new("bytewise");
    let mut conn: Connection<TcpStream> = open_server(&dir, &config(&dir, 8192, 1 << 16), TransportKind::Tcp);
    let (raw, ss) = small_tcp_pair(4096);
    let mut raw = raw_client(&mut conn, (raw, ss), RawLogin::default(), 1).s;
    raw.set_nonblocking(true).unwrap();

    const N: u64 = 120;
    let len = |k: u64| (k as usize * 613) % 5000;
    let (mut pushed, mut got) = (0u64, 0u64);
    let mut wire = Vec::new();
    let mut blocked_seen = false;
    wait_until("every message, byte by byte", || {
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
        let before = got;
        take_frames(&mut wire, |seq, ty, payload| {
            assert_eq!(seq, got, "out of order");
            assert_eq!(ty, 3);
            assert_eq!(payload, &body(got, len(got))[..], "message {got} corrupted");
            got += 1;
        });
        if got / 8 > before / 8 {
            // Acknowledge, so the 64 KiB queue keeps room.
            raw.write_all(&encode::ack(0, got)).unwrap();
        }
        (got == N).then_some(())
    });
    assert!(blocked_seen, "the small socket buffer never filled: partial writes were not exercised");
    assert_eq!(conn.counters().sent, N);
}

/// Two connections, the receiver reading at most one byte per poll (read budget 1):
/// everything crosses intact both ways.
#[test]
fn a_connection_reading_one_byte_per_poll() {
    let dir = TempDir::new("slow");
    let fast = config(&dir, 16 * 1024, 1 << 16);
    let mut slow = fast.clone();
    slow.stream.read_budget = 1;
    let mut a: Connection<TcpStream> = open_client(&dir, &fast, TransportKind::Tcp);
    let mut b: Connection<TcpStream> = open_server(&dir, &slow, TransportKind::Tcp);
    common::login(&mut a, &mut b, with_timeouts(small_tcp_pair(4096)), TransportKind::Tcp, 1).unwrap();
    const N: u64 = 40;
    let len = |k: u64| (k as usize * 977) % 3000;
    let (mut pushed, mut popped, mut back) = (0u64, 0u64, 0u64);
    wait_until("both ways", || {
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
            push(&mut b, 2, &echo);
            popped += 1;
        }
        while let Some(m) = a.front() {
            assert_eq!(m.payload, &(back as u32).to_le_bytes()[..]);
            a.pop();
            back += 1;
        }
        (popped == N && back == N).then_some(())
    });
}

/// An 8 MiB message (and a small one behind it) crosses intact both ways, through
/// small socket buffers: thousands of partial writes, a receive buffer that grows
/// once to the frame's size.
#[test]
fn eight_mib_message() {
    const BIG: usize = 8 << 20;
    let dir = TempDir::new("big");
    let cfg = config(&dir, BIG as u32, 32 << 20);
    let mut a: Connection<TcpStream> = open_client(&dir, &cfg, TransportKind::Tcp);
    let mut b: Connection<TcpStream> = open_server(&dir, &cfg, TransportKind::Tcp);
    assert_eq!(a.max_payload(), BIG);
    common::login(&mut a, &mut b, with_timeouts(small_tcp_pair(64 * 1024)), TransportKind::Tcp, 1).unwrap();
    let big = body(77, BIG);
    for t in [&mut a, &mut b] {
        t.alloc(BIG).unwrap().unwrap().copy_from_slice(&big);
        t.push(0xBEEF).unwrap();
        push(t, 1, b"after");
    }
    let mut got = [0usize; 2];
    let mut now: Nanos = 1;
    poll2_until(&mut a, &mut b, &mut now, 0, "both 8 MiB messages", |a, b| {
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
    poll2_until(&mut a, &mut b, &mut now, HB, "the acks", |a, b| {
        a.counters().queued() == 0 && b.counters().queued() == 0
    });
}

/// The receiver is polled (it answers heartbeats) but never pops: its buffer fills
/// (up to the sender's queue), then the kernel buffers may too, then the sender's
/// store fills and `alloc` returns `None` (backpressure: both stay connected over
/// several timeouts of the fake clock). Once the receiver pops, every message
/// arrives once, in order, and sending resumes.
#[test]
fn full_socket_then_full_store_is_backpressure() {
    let dir = TempDir::new("backpressure");
    let mut cfg_a = config(&dir, 64 * 1024, 8 << 20);
    cfg_a.stream.recv_buffer = 16 * 1024;
    let cfg_b = cfg_a.clone();
    let mut a: Connection<TcpStream> = open_client(&dir, &cfg_a, TransportKind::Tcp);
    let mut b: Connection<TcpStream> = open_server(&dir, &cfg_b, TransportKind::Tcp);
    let mut now: Nanos = 1;
    common::link_tcp(&mut a, &mut b, TransportKind::Tcp, now);
    let len = |k: u64| 200 + (k as usize * 31) % 800;
    let step = HB / 10;
    let (mut pushed, mut full_rounds) = (0u64, 0);
    // Fill: push until alloc has said None for a while.
    wait_until("the queue to fill", || {
        match a.alloc(len(pushed)).unwrap() {
            Some(buf) => {
                buf.copy_from_slice(&body(pushed, len(pushed)));
                a.push(4).unwrap();
                pushed += 1;
                full_rounds = 0;
            }
            None => full_rounds += 1,
        }
        now += step;
        assert!(a.poll(now) && b.poll(now), "closed while filling: {:?} {:?}", a.close_reason(), b.close_reason());
        (full_rounds >= 50).then_some(())
    });
    // Three timeouts of backpressure: nobody is taken for dead, nothing gets in.
    let until = now + 3 * TIMEOUT;
    while now < until {
        now += step;
        assert!(
            a.poll(now) && b.poll(now),
            "backpressure closed the link: {:?} {:?}",
            a.close_reason(),
            b.close_reason()
        );
        assert!(a.alloc(len(pushed)).unwrap().is_none(), "room appeared while the peer popped nothing");
        // Pacing only (the kernel moves heartbeats between the polls); nothing waits on it.
        std::thread::sleep(Duration::from_micros(200));
    }
    // The receiver pops: all arrive once, in order; then sending resumes.
    let target = pushed + 500;
    let mut popped = 0u64;
    wait_until("the backlog and 500 more", || {
        while pushed < target {
            let Some(buf) = a.alloc(len(pushed)).unwrap() else { break };
            buf.copy_from_slice(&body(pushed, len(pushed)));
            a.push(4).unwrap();
            pushed += 1;
        }
        now += step;
        assert!(a.poll(now) && b.poll(now), "closed while draining: {:?} {:?}", a.close_reason(), b.close_reason());
        while let Some(m) = b.front() {
            assert_eq!(m.seq, popped, "lost or repeated");
            assert_eq!(m.payload, &body(popped, len(popped))[..]);
            b.pop();
            popped += 1;
        }
        (popped == target).then_some(())
    });
    assert_eq!(a.counters().resent, 0);
}

/// A raw peer that never reads: the writer's socket fills and stays full across
/// several timeouts while the peer keeps sending heartbeats; the writer stays
/// connected and its queue holds every message; then the peer reads them all, whole
/// and in order (heartbeats may sit between them, never inside one).
#[test]
fn peer_not_reading_at_all() {
    let dir = TempDir::new("noread");
    let cfg = config(&dir, 64 * 1024, 8 << 20);
    let mut conn: Connection<TcpStream> = open_server(&dir, &cfg, TransportKind::Tcp);
    let mut now: Nanos = 1;
    let mut raw = raw_client(&mut conn, common::tcp_pair(), RawLogin::default(), now).s;
    let mut pushed = 0u64;
    while let Some(buf) = conn.alloc(1000).unwrap() {
        buf.copy_from_slice(&body(pushed, 1000));
        conn.push(1).unwrap();
        pushed += 1;
    }
    assert!(conn.write_blocked(), "an 8 MiB queue fit into the socket buffers?");
    let until = now + 3 * TIMEOUT;
    while now < until {
        now += HB / 2;
        if (now / (HB / 2)).is_multiple_of(2) {
            raw.write_all(&encode::heartbeat(0, 0)).unwrap();
            // The connection reads it at this poll or the next: wait for it.
            let seen = conn.counters().heartbeats_received;
            wait_until("the heartbeat", || {
                assert!(conn.poll(now), "closed: {:?}", conn.close_reason());
                (conn.counters().heartbeats_received > seen).then_some(())
            });
        }
        assert!(conn.poll(now), "closed: {:?}", conn.close_reason());
    }
    assert!(conn.write_blocked());
    assert_eq!(conn.counters().queued(), pushed);
    assert_eq!(conn.store().queue_depth(), pushed);
    // Now read everything.
    raw.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut wire = Vec::new();
    let mut got = 0u64;
    wait_until("every message", || {
        assert!(conn.poll(now), "closed: {:?}", conn.close_reason());
        let mut buf = [0u8; 65536];
        match raw.read(&mut buf) {
            Ok(0) => panic!("EOF"),
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
        let before = got;
        take_frames(&mut wire, |seq, _, payload| {
            assert_eq!((seq, payload), (got, &body(got, 1000)[..]));
            got += 1;
        });
        if got > before {
            raw.write_all(&encode::ack(0, got)).unwrap();
        }
        (got == pushed).then_some(())
    });
    wait_until("the acks to be applied", || {
        conn.poll(now);
        (conn.store().queue_depth() == 0).then_some(())
    });
}
