//! A session that changes medium with messages in flight, in one process: what a
//! ring holds after its messages were delivered over TCP is a set of stale copies,
//! released unread; what the store holds after a switch to shared memory is copied
//! into the ring with its numbers. Each message is delivered exactly once, in order,
//! both ways, whatever the sequence of media, cuts and restarts.

mod common;

use common::{link_unix, open_client, open_server};
use std::os::unix::net::UnixStream;
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Transport};
use tcpshm_test_support::{Rng, TempDir};

type Conn = Connection<UnixStream>;
const SHM: TransportKind = TransportKind::Shm;
const TCP: TransportKind = TransportKind::Tcp;

fn len_of(seq: u64, up: bool) -> usize {
    ((seq * 7 + u64::from(up) * 3) % 200) as usize
}

fn push(t: &mut Conn, up: bool) -> bool {
    let seq = t.counters().next_seq;
    match t.alloc(len_of(seq, up)).unwrap() {
        Some(buf) => {
            buf.copy_from_slice(&common::body(seq + u64::from(up), len_of(seq, up)));
            t.push(1).unwrap();
            true
        }
        None => false,
    }
}

/// Pops at most `n` messages, checking each is the next of the stream; returns how
/// many.
fn pop(t: &mut Conn, next: &mut u64, n: u64, up: bool) -> u64 {
    let mut k = 0;
    while k < n {
        let Some(m) = t.front() else { break };
        assert_eq!(m.seq, *next, "lost, repeated or reordered");
        assert_eq!(m.payload, &common::body(*next + u64::from(up), len_of(*next, up))[..], "message {next}");
        t.pop();
        *next += 1;
        k += 1;
    }
    k
}

fn cut(a: &mut Conn, b: &mut Conn) {
    drop(a.detach(CloseReason::RemoteClosed));
    drop(b.detach(CloseReason::RemoteClosed));
}

/// Polls both ends until neither receives anything new.
fn settle(a: &mut Conn, b: &mut Conn, now: &mut u64) {
    for _ in 0..50 {
        *now += 200_000;
        a.poll(*now);
        b.poll(*now);
    }
}

#[test]
fn shm_then_tcp_then_shm_skips_the_stale_copies() {
    let dir = TempDir::new("switch-exact");
    let cfg = common::config(&dir);
    let mut c: Conn = open_client(&dir, &cfg, SHM);
    let mut s: Conn = open_server(&dir, &cfg, SHM);
    let mut now = 1;
    link_unix(&mut c, &mut s, SHM, now);
    for _ in 0..10 {
        assert!(push(&mut c, true));
    }
    let mut next = 0;
    assert_eq!(pop(&mut s, &mut next, 4, true), 4);
    // Over TCP: 4..10 are resent from the client's store (copied from its ring).
    cut(&mut c, &mut s);
    let done = link_unix(&mut c, &mut s, TCP, now);
    assert_eq!(done.to_resend, 6);
    common::poll2_until(&mut c, &mut s, &mut now, 1000, "4..8 over TCP", |_, s| {
        let want = 8 - next;
        pop(s, &mut next, want, true);
        next == 8
    });
    // Two more pushed over TCP.
    assert!(push(&mut c, true) && push(&mut c, true));
    // Back to shared memory: the ring still holds 4..10 (never released: they were
    // consumed over TCP); 4..8 are stale, 8 and 9 are delivered from it, 10 and 11
    // were copied from the store.
    settle(&mut c, &mut s, &mut now);
    cut(&mut c, &mut s);
    link_unix(&mut c, &mut s, SHM, now);
    let received = s.counters().received;
    assert_eq!(pop(&mut s, &mut next, 100, true), 4);
    assert_eq!(next, 12);
    assert_eq!(s.counters().received - received, 4, "stale copies are not received twice");
    settle(&mut c, &mut s, &mut now);
    assert!(s.front().is_none());
    assert_eq!(c.counters().queued(), 0, "all acknowledged");
}

/// Random media, pushes, pops, cuts and restarts of either side, both ways.
#[test]
fn random_switches_cuts_and_restarts_deliver_each_message_once() {
    for seed in 1..=6u64 {
        let dir = TempDir::new("switch-random");
        let mut cfg: ConnectionConfig = common::config(&dir);
        cfg.queue_bytes = 1 << 15;
        cfg.shm.ring_bytes = 1 << 15;
        cfg.session.max_message = 1024;
        let mut rng = Rng::new(seed);
        let mut c: Conn = open_client(&dir, &cfg, SHM);
        let mut s: Conn = open_server(&dir, &cfg, SHM);
        let (mut up_next, mut down_next, mut now) = (0u64, 0u64, 1u64);
        let mut media = Vec::new();
        for _round in 0..40 {
            let medium = if rng.one_in(2) { SHM } else { TCP };
            media.push(medium);
            link_unix(&mut c, &mut s, medium, now);
            for _ in 0..rng.range(0, 60) {
                push(&mut c, true);
            }
            for _ in 0..rng.range(0, 60) {
                push(&mut s, false);
            }
            for _ in 0..rng.range(1, 20) {
                now += 100_000;
                c.poll(now);
                s.poll(now);
                pop(&mut s, &mut up_next, rng.range(0, 10), true);
                pop(&mut c, &mut down_next, rng.range(0, 10), false);
            }
            cut(&mut c, &mut s);
            // Pushes while down go wherever the medium of the last link puts them.
            for _ in 0..rng.range(0, 5) {
                push(&mut c, true);
            }
            match rng.range(0, 5) {
                0 => {
                    drop(c);
                    c = open_client(&dir, &cfg, if rng.one_in(2) { SHM } else { TCP });
                }
                1 => {
                    drop(s);
                    s = open_server(&dir, &cfg, if rng.one_in(2) { SHM } else { TCP });
                }
                _ => {}
            }
        }
        // Drain everything over one last link.
        link_unix(&mut c, &mut s, SHM, now);
        let (up_end, down_end) = (c.counters().next_seq, s.counters().next_seq);
        common::poll2_until(&mut c, &mut s, &mut now, 100_000, "the rest", |c, s| {
            pop(s, &mut up_next, u64::MAX, true);
            pop(c, &mut down_next, u64::MAX, false);
            up_next == up_end && down_next == down_end
        });
        settle(&mut c, &mut s, &mut now);
        assert!(c.front().is_none() && s.front().is_none(), "seed {seed}: a duplicate after the end");
        assert!(up_end > 100 && down_end > 100, "seed {seed}: too little traffic: {up_end} {down_end}");
        let _ = media;
    }
}
