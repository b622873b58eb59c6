//! No heap allocation per message in steady state, through `Connection`, over TCP
//! (and a Unix socket) and over shared memory: a counting global allocator (this
//! binary's own) counts every allocation the measuring thread makes during
//! thousands of round trips after a warm-up — alloc/push/push_more/poll/front/pop,
//! zero-copy replies through `front_split`, heartbeats and acks in the mix — and through
//! producer handles: neither the pushing threads nor the polling thread that drains them.

mod common;

use common::{link_tcp, link_unix, open_client, open_server};
use std::time::{Duration, Instant};
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{Nanos, Transport};
use tcpshm_test_support::alloc::{count, Counting};
use tcpshm_test_support::TempDir;
use tcpshm_transport_tcp::ByteStream;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One echo round trip of a `len`-byte message plus, every 8th round, a batch of
/// three `push_more` messages one way, polled to completion; the clock moves 0.1 ms
/// per poll, and every 100th round has a quiet moment in which heartbeats go out.
/// Returns whether it completed (no
/// allocation on this path, not even for a failure message).
fn round<S: ByteStream>(a: &mut Connection<S>, b: &mut Connection<S>, k: u64, now: &mut Nanos) -> bool {
    let len = 16 + (k as usize * 53) % 400;
    let Ok(Some(buf)) = a.alloc(len) else { return false };
    buf.fill(k as u8);
    if a.push(1).is_err() {
        return false;
    }
    let batch = if k.is_multiple_of(8) { 3 } else { 0 };
    for i in 0..batch {
        let Ok(Some(buf)) = a.alloc(8) else { return false };
        buf.fill(i);
        if a.push_more(2).is_err() {
            return false;
        }
    }
    let (mut echoed, mut got) = (false, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(echoed && got == 1 + batch) {
        if Instant::now() > deadline {
            return false;
        }
        *now += 100_000;
        a.poll(*now);
        b.poll(*now);
        // Zero-copy echo: the reply is written in place from the request in place.
        while let Some((m, mut tx)) = b.front_split() {
            if m.msg_type == 1 {
                let Ok(Some(buf)) = tx.alloc(m.payload.len()) else { return false };
                buf.copy_from_slice(m.payload);
                if tx.push(3).is_err() {
                    return false;
                }
            }
            b.pop();
            got += 1;
        }
        if let Some(m) = a.front() {
            if m.msg_type != 3 || m.payload.len() != len || m.payload.iter().any(|&x| x != k as u8) {
                return false;
            }
            a.pop();
            echoed = true;
        }
        if !a.is_connected() || !b.is_connected() {
            return false;
        }
    }
    // Every 100th round, a quiet moment: heartbeats both ways.
    if k.is_multiple_of(100) {
        for _ in 0..3 {
            *now += common::HB / 2;
            a.poll(*now);
            b.poll(*now);
        }
    }
    true
}

fn cfg(dir: &TempDir) -> ConnectionConfig {
    let mut cfg = common::config(dir);
    // Control work at most every 0.5 ms of the fake clock: every few rounds over
    // shared memory, heartbeats every 10 polls.
    cfg.check_interval = 500_000;
    cfg.session.liveness.timeout = 1 << 40;
    cfg
}

/// Warms up (every buffer reaches its working size, the queues wrap around), then
/// counts the allocations of 10,000 round trips.
fn measure<S: ByteStream>(what: &str, a: &mut Connection<S>, b: &mut Connection<S>) {
    // The counter counts (the test could fail).
    let (n, v) = count(|| vec![1u8; 100]);
    assert!(n >= 1 && v.len() == 100, "the counting allocator does not count");
    let mut now = 1;
    for k in 0..2_000 {
        assert!(round(a, b, k, &mut now), "{what}: warm-up round {k} failed: a {} b {}", a.counters(), b.counters());
    }
    let before = (a.counters(), b.counters());
    let (allocations, ok) = count(|| {
        for k in 2_000..12_000 {
            if !round(a, b, k, &mut now) {
                return false;
            }
        }
        true
    });
    assert!(ok, "{what}: a measured round failed: a {} b {}", a.counters(), b.counters());
    let (ca, cb) = (a.counters(), b.counters());
    assert_eq!(ca.popped - before.0.popped, 10_000, "{what}");
    assert!(cb.popped >= before.1.popped + 10_000, "{what}");
    assert!(ca.heartbeats_sent > before.0.heartbeats_sent, "{what}: heartbeats were in the mix");
    assert!(
        ca.peer_consumed > before.0.peer_consumed && cb.peer_consumed > before.1.peer_consumed,
        "{what}: acks flowed"
    );
    assert_eq!(allocations, 0, "{what}: heap allocations during 10,000 round trips (must be none)");
}

#[test]
fn no_allocation_per_message_over_tcp() {
    let dir = TempDir::new("noalloc-tcp");
    let cfg = cfg(&dir);
    let mut a: Connection<std::net::TcpStream> = open_client(&dir, &cfg, TransportKind::Tcp);
    let mut b = open_server(&dir, &cfg, TransportKind::Tcp);
    link_tcp(&mut a, &mut b, TransportKind::Tcp, 1);
    measure("tcp", &mut a, &mut b);
}

#[test]
fn no_allocation_per_message_over_a_unix_socket() {
    let dir = TempDir::new("noalloc-unix");
    let cfg = cfg(&dir);
    let mut a = open_client(&dir, &cfg, TransportKind::Tcp);
    let mut b = open_server(&dir, &cfg, TransportKind::Tcp);
    link_unix(&mut a, &mut b, TransportKind::Tcp, 1);
    measure("unix", &mut a, &mut b);
}

#[test]
fn no_allocation_per_message_over_shared_memory() {
    let dir = TempDir::new("noalloc-shm");
    let cfg = cfg(&dir);
    let mut a = open_client(&dir, &cfg, TransportKind::Shm);
    let mut b = open_server(&dir, &cfg, TransportKind::Shm);
    link_unix(&mut a, &mut b, TransportKind::Shm, 1);
    measure("shm", &mut a, &mut b);
    // The data path alone (no poll at all): 100,000 zero-copy echoes.
    let (allocations, ok) = count(|| {
        for k in 0..100_000u64 {
            let Ok(Some(buf)) = a.alloc(16) else { return false };
            buf.fill(k as u8);
            if a.push(4).is_err() {
                return false;
            }
            let Some((m, mut tx)) = b.front_split() else { return false };
            let Ok(Some(buf)) = tx.alloc(m.payload.len()) else { return false };
            buf.copy_from_slice(m.payload);
            if tx.push(m.msg_type).is_err() {
                return false;
            }
            b.pop();
            if a.front().map(|m| m.payload) != Some(&[k as u8; 16][..]) {
                return false;
            }
            a.pop();
        }
        true
    });
    assert!(ok, "a zero-copy echo failed: a {} b {}", a.counters(), b.counters());
    assert_eq!(allocations, 0, "heap allocations during 100,000 zero-copy echoes over shared memory");
}

/// Two threads push 64-byte messages through producer handles while the polling
/// thread drains them into the session and the peer receives them: after a warm-up,
/// no allocation in the pushing threads nor in the polling thread (each counts its
/// own), over TCP and shared memory.
fn producers_without_allocating(medium: TransportKind, tag: &str) {
    const THREADS: u8 = 2;
    const PER: u64 = 20_000;
    const WARM: u64 = 2_000;
    let dir = TempDir::new(tag);
    let mut c = cfg(&dir);
    // The producers' queue wraps many times.
    c.producer_queue_bytes = 1 << 14;
    let mut a: Connection<std::net::TcpStream> = open_client(&dir, &c, medium);
    let mut b = open_server(&dir, &c, medium);
    link_tcp(&mut a, &mut b, medium, 1);
    let producer = a.producer().unwrap();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let mut p = producer.clone();
                s.spawn(move || {
                    let mut push = |i: u64| {
                        let mut m = [t; 64];
                        m[8..16].copy_from_slice(&i.to_le_bytes());
                        while !p.push(10 + u16::from(t), &m).unwrap() {
                            std::thread::yield_now();
                        }
                    };
                    (0..WARM).for_each(&mut push);
                    count(|| (WARM..PER).for_each(&mut push)).0
                })
            })
            .collect();
        let mut now = 1;
        let mut next = [0u64; THREADS as usize];
        let mut receive = |a: &mut Connection<_>, b: &mut Connection<_>| {
            now += 100_000;
            a.poll(now);
            b.poll(now);
            while let Some(m) = b.front() {
                let t = usize::from(m.payload[0]);
                if t >= next.len() || m.payload[8..16] != next[t].to_le_bytes() {
                    return None;
                }
                next[t] += 1;
                b.pop();
            }
            Some(next.iter().sum::<u64>())
        };
        let deadline = Instant::now() + tcpshm_test_support::WAIT;
        while receive(&mut a, &mut b).expect("in order") < u64::from(THREADS) * WARM {
            assert!(Instant::now() < deadline, "{tag}: the warm-up did not complete");
        }
        let (allocations, ok) = count(|| loop {
            match receive(&mut a, &mut b) {
                None => return false,
                Some(n) if n == u64::from(THREADS) * PER => return true,
                Some(_) if Instant::now() > deadline => return false,
                Some(_) => {}
            }
        });
        assert!(ok, "{tag}: the messages did not all arrive in order: a {} b {}", a.counters(), b.counters());
        assert_eq!(allocations, 0, "{tag}: heap allocations in the polling thread while it drained the producers");
        for (t, h) in threads.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), 0, "{tag}: heap allocations in producer thread {t}'s pushes");
        }
    });
    assert_eq!(a.counters().pushed, u64::from(THREADS) * PER);
}

#[test]
fn no_allocation_per_message_through_producers_over_tcp() {
    producers_without_allocating(TransportKind::Tcp, "noalloc-producers-tcp");
}

#[test]
fn no_allocation_per_message_through_producers_over_shared_memory() {
    producers_without_allocating(TransportKind::Shm, "noalloc-producers-shm");
}
