//! Producer handles pushing from other threads into a session, in one process: over
//! TCP and shared memory, both directions; order per handle; backpressure from the
//! producers' queue and from the session's queue; limits; handles that outlive their
//! connection; a panicking producer; the drain at the next open after a restart.

mod common;

use common::{config, link_tcp, open_client, open_server};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tcpshm_connection::{Connection, ConnectionConfig, Producer, ProducerError};
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{Limit, Nanos, SendError, Transport};
use tcpshm_test_support::{wait_until, TempDir};

type Conn = Connection<TcpStream>;

/// Message `i` of producer `t`: 64 bytes, `[t, i (u32 LE), then bytes from both]`.
fn message(t: u8, i: u32) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[0] = t;
    m[1..5].copy_from_slice(&i.to_le_bytes());
    for (k, b) in m[5..].iter_mut().enumerate() {
        *b = t.wrapping_mul(31) ^ (i as u8).wrapping_add(k as u8);
    }
    m
}

fn decode(payload: &[u8]) -> (u8, u32) {
    assert_eq!(payload.len(), 64, "a 64-byte message");
    let (t, i) = (payload[0], u32::from_le_bytes(payload[1..5].try_into().unwrap()));
    assert_eq!(payload, message(t, i), "message {i} of producer {t} intact");
    (t, i)
}

/// `threads` threads, each with its own clone of `p`, push `per` messages each
/// (retrying while the producers' queue is full), while `poll` drives both ends.
fn push_from_threads(p: &Producer, threads: u8, per: u32, mut poll: impl FnMut() -> bool) {
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mut p = p.clone();
                s.spawn(move || {
                    for i in 0..per {
                        while !p.push(10 + u16::from(t), &message(t, i)).unwrap() {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let d = done.clone();
        s.spawn(move || {
            for h in handles {
                h.join().unwrap();
            }
            d.store(true, Ordering::Release);
        });
        wait_until("the producers and the receiver", || poll().then_some(()));
    });
    assert!(done.load(Ordering::Acquire));
}

struct Linked {
    _dir: TempDir,
    cli: Conn,
    srv: Conn,
    now: Nanos,
}

fn linked(tag: &str, medium: TransportKind, cfg: impl FnOnce(&mut ConnectionConfig)) -> Linked {
    let dir = TempDir::new(tag);
    let mut c = config(&dir);
    cfg(&mut c);
    let mut cli: Conn = open_client(&dir, &c, medium);
    let mut srv: Conn = open_server(&dir, &c, medium);
    link_tcp(&mut cli, &mut srv, medium, 1);
    Linked { _dir: dir, cli, srv, now: 1 }
}

/// Receives on `rx` (polling both ends) and checks order per producer; returns
/// whether all `threads * per` have arrived.
struct Receiver {
    next: Vec<u32>,
    per: u32,
    got: u64,
}

impl Receiver {
    fn new(threads: u8, per: u32) -> Receiver {
        Receiver { next: vec![0; threads as usize], per, got: 0 }
    }

    fn take<T: Transport>(&mut self, rx: &mut T) {
        while let Some(m) = rx.front() {
            let (t, i) = decode(m.payload);
            assert_eq!(m.msg_type, 10 + u16::from(t));
            assert_eq!(i, self.next[t as usize], "producer {t}: in order, once each");
            self.next[t as usize] += 1;
            self.got += 1;
            rx.pop();
        }
    }

    fn done(&self) -> bool {
        self.next.iter().all(|n| *n == self.per)
    }
}

fn many_threads_to_the_peer(medium: TransportKind, client_pushes: bool) {
    const THREADS: u8 = 4;
    let per = 5_000;
    let mut l = linked("producers-many", medium, |c| c.producer_queue_bytes = 1 << 14);
    let p = if client_pushes { l.cli.producer().unwrap() } else { l.srv.producer().unwrap() };
    let mut r = Receiver::new(THREADS, per);
    push_from_threads(&p, THREADS, per, || {
        l.now += 1_000;
        let (tx, rx) = if client_pushes { (&mut l.cli, &mut l.srv) } else { (&mut l.srv, &mut l.cli) };
        assert!(tx.poll(l.now), "{:?}", tx.close_reason());
        rx.poll(l.now);
        r.take(rx);
        r.done()
    });
    let tx = if client_pushes { &l.cli } else { &l.srv };
    assert_eq!(tx.counters().pushed, u64::from(THREADS) * u64::from(per));
    assert!(tx.producers_stuck().is_none());
}

#[test]
fn four_client_threads_over_tcp() {
    many_threads_to_the_peer(TransportKind::Tcp, true);
}

#[test]
fn four_client_threads_over_shm() {
    many_threads_to_the_peer(TransportKind::Shm, true);
}

#[test]
fn four_server_threads_over_tcp() {
    many_threads_to_the_peer(TransportKind::Tcp, false);
}

#[test]
fn four_server_threads_over_shm() {
    many_threads_to_the_peer(TransportKind::Shm, false);
}

/// The session's queue fills (the peer does not pop): the drain stops, the producers'
/// queue fills and says so with `Ok(false)`; everything moves on once the peer pops.
#[test]
fn backpressure_from_both_queues_is_a_value() {
    let mut l = linked("producers-full", TransportKind::Tcp, |c| {
        c.queue_bytes = 1 << 13;
        c.producer_queue_bytes = 1 << 12;
        c.session.max_message = 1024;
    });
    let mut p = l.cli.producer().unwrap();
    let mut pushed = 0u32;
    // Fill everything: the peer polls (reads) but never pops.
    wait_until("both queues full", || {
        while p.push(10, &message(0, pushed)).unwrap() {
            pushed += 1;
        }
        l.now += 1_000;
        l.cli.poll(l.now);
        l.srv.poll(l.now);
        // Full producers' queue and nothing more moves: the session's queue is full.
        let before = l.cli.counters().next_seq;
        l.cli.poll(l.now);
        if l.cli.counters().next_seq != before {
            return None;
        }
        if p.push(10, &message(0, pushed)).unwrap() {
            pushed += 1;
            return None;
        }
        Some(())
    });
    assert!(pushed > 64, "{pushed}: the session's queue and the producers' queue hold many");
    let mut r = Receiver::new(1, 0);
    wait_until("everything after the peer pops", || {
        while pushed < 2_000 && p.push(10, &message(0, pushed)).unwrap() {
            pushed += 1;
        }
        l.now += 1_000;
        l.cli.poll(l.now);
        l.srv.poll(l.now);
        r.take(&mut l.srv);
        (pushed == 2_000 && r.next[0] == pushed).then_some(())
    });
}

/// The producers' limit follows the session's: this side's maximum, then the peer's
/// after a login, and half the producers' queue.
#[test]
fn limits_and_reserved_types() {
    let dir = TempDir::new("producers-limits");
    let mut c = config(&dir);
    c.producer_queue_bytes = 1 << 20;
    c.session.max_message = 4096;
    let mut small = c.clone();
    small.session.max_message = 100;
    let mut cli: Conn = open_client(&dir, &c, TransportKind::Tcp);
    let mut p = cli.producer().unwrap();
    assert_eq!(p.max_payload(), 4096);
    assert_eq!(p.push(1, &[0; 4097]), Err(SendError::TooLarge { len: 4097, max: 4096, limit: Limit::Local }));
    assert_eq!(p.push(0xFF00, b""), Err(SendError::ReservedType(0xFF00)));
    let mut srv: Conn = open_server(&dir, &small, TransportKind::Tcp);
    link_tcp(&mut cli, &mut srv, TransportKind::Tcp, 1);
    cli.poll(2);
    assert_eq!(p.push(1, &[0; 101]), Err(SendError::TooLarge { len: 101, max: 100, limit: Limit::Peer }));
    assert!(p.push(1, &[0; 100]).unwrap());
    let mut tiny = c.clone();
    tiny.producer_queue_bytes = 256;
    let mut q = Producer::for_session(&dir.join("x"), "a".parse().unwrap(), "b".parse().unwrap(), &tiny).unwrap();
    assert_eq!(q.push(1, &[0; 121]), Err(SendError::TooLarge { len: 121, max: 120, limit: Limit::Queue }));
}

/// Handles outlive their connection: what they push after it is dropped is drained
/// by the next connection of the session in this process, in order, after what was
/// already moved.
#[test]
fn handles_outlive_the_connection_and_the_next_one_drains() {
    let dir = TempDir::new("producers-outlive");
    let cfg = config(&dir);
    let mut cli: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
    let mut p = cli.producer().unwrap();
    for i in 0..10 {
        assert!(p.push(10, &message(0, i)).unwrap());
    }
    assert_eq!(cli.drain_producers(), 10);
    for i in 10..15 {
        assert!(p.push(10, &message(0, i)).unwrap());
    }
    drop(cli);
    for i in 15..20 {
        assert!(p.push(10, &message(0, i)).unwrap());
    }
    let mut cli: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
    assert!(cli.has_producers());
    let mut srv: Conn = open_server(&dir, &cfg, TransportKind::Tcp);
    link_tcp(&mut cli, &mut srv, TransportKind::Tcp, 1);
    let mut r = Receiver::new(1, 20);
    let mut now = 1;
    wait_until("all twenty", || {
        now += 1_000;
        cli.poll(now);
        srv.poll(now);
        r.take(&mut srv);
        r.done().then_some(())
    });
    // A second handle for the same session is the same queue.
    let q = cli.producer().unwrap();
    assert_eq!(q.path(), p.path());
}

/// Messages pushed before a restart of the process (here: every handle and the
/// connection dropped, then the session opened again) drain at the next open.
#[test]
fn pushes_wait_in_the_file_for_the_next_open() {
    let dir = TempDir::new("producers-reopen");
    let cfg = config(&dir);
    let path = {
        let mut cli: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
        let mut p = cli.producer().unwrap();
        for i in 0..7 {
            assert!(p.push(10, &message(0, i)).unwrap());
        }
        p.path().to_path_buf()
    };
    assert!(path.exists());
    let mut cli: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
    assert!(cli.has_producers(), "the session's queue is taken at open");
    assert_eq!(cli.counters().next_seq, 0);
    cli.poll(1);
    assert_eq!(cli.counters().next_seq, 7);
}

/// A producer's closure that panics pushes nothing; the others go on.
#[test]
fn a_panicking_producer_pushes_nothing_and_blocks_nobody() {
    let mut l = linked("producers-panic", TransportKind::Shm, |_| {});
    let p = l.cli.producer().unwrap();
    let mut bad = p.clone();
    let r = std::thread::spawn(move || {
        bad.push_with(10, 64, |b| {
            b[0] = 9;
            panic!("a producer's bug");
        })
    })
    .join();
    assert!(r.is_err());
    let mut good = p.clone();
    assert!(good.push(10, &message(0, 0)).unwrap());
    let mut r = Receiver::new(1, 1);
    wait_until("the good message", || {
        l.now += 1_000;
        l.cli.poll(l.now);
        l.srv.poll(l.now);
        r.take(&mut l.srv);
        r.done().then_some(())
    });
    assert_eq!(l.srv.counters().popped, 1);
}

/// Another process owns the producers' queue: `Busy`, typed; the session opens and
/// works regardless.
#[test]
fn a_queue_owned_elsewhere_is_busy() {
    let dir = TempDir::new("producers-busy");
    let cfg = config(&dir);
    let mut cli: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
    let path = cli.producer().unwrap().path().to_path_buf();
    drop(cli);
    // Another owner: this process through the ring crate directly (another open of
    // the file, as another process would be).
    let other = tcpshm_ring::shm::MpscRegion::own(&path, 1 << 12).unwrap();
    let mut cli: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
    assert!(!cli.has_producers());
    assert!(matches!(cli.producer(), Err(ProducerError::Busy { .. })));
    drop(other);
    // Tried again from `poll` (at most once per check interval).
    let mut now = 0;
    wait_until("the queue taken over", || {
        now += 1_000_000;
        cli.poll(now);
        cli.has_producers().then_some(())
    });
}
