//! loom models of the many-to-one queue: every interleaving (up to the preemption
//! bound) of two producers claiming with compare-and-swap, writing in place and
//! committing by storing the length, against a consumer that reads, zeroes and
//! releases — over a tiny ring, so claims wrap (padding) and meet a full ring. Data
//! races on the payload bytes are caught through the crate's loom tracker, and the
//! record headers are loom atomics (`HeapRegion::headers`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p tcpshm-ring --all-features --lib loom_models::mpsc`

use crate::mpsc::{MpscQueue, Producer};
use loom::thread;

fn push(p: &mut Producer<'static>, ty: u16, len: usize) {
    loop {
        let ok = p
            .push_with(len, ty, |b| {
                // Claimed bytes are zero (released ones were zeroed before the head
                // moved); then the payload is written in place.
                assert!(b.iter().all(|x| *x == 0));
                b.fill(ty as u8);
            })
            .unwrap();
        if ok {
            return;
        }
        thread::yield_now();
    }
}

/// Two producers, one message each (24-byte records in a 64-byte ring): both arrive
/// intact, and the consumer never reads a record before its commit.
#[test]
fn two_producers_commit_and_the_consumer_reads_whole_records() {
    loom::model(|| {
        let (p, mut c) = MpscQueue::with_capacity(64);
        let handles: Vec<_> = (1..=2u16)
            .map(|t| {
                let mut p = p.clone();
                thread::spawn(move || push(&mut p, t, 16))
            })
            .collect();
        drop(p);
        let mut seen = [false; 3];
        let mut left = 2;
        while left > 0 {
            match c.front().unwrap() {
                Some(m) => {
                    let t = m.msg_type();
                    assert_eq!(m.payload().len(), 16);
                    assert!(m.payload().iter().all(|b| *b == t as u8));
                    assert!(!seen[t as usize]);
                    seen[t as usize] = true;
                    c.pop().unwrap();
                    left -= 1;
                }
                None => thread::yield_now(),
            }
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// One producer's three messages through a ring that holds two: the third claim
/// wraps (padding to the end) into bytes the consumer released and zeroed; order is
/// kept, and the zeroing happens before the producer's writes (tracker).
#[test]
fn a_claim_wraps_into_released_bytes_in_order() {
    loom::model(|| {
        let (mut p, mut c) = MpscQueue::with_capacity(64);
        let t = thread::spawn(move || {
            for ty in 1..=3u16 {
                push(&mut p, ty, 16);
            }
        });
        let mut next = 1u16;
        while next <= 3 {
            match c.front().unwrap() {
                Some(m) => {
                    assert_eq!(m.msg_type(), next);
                    assert!(m.payload().iter().all(|b| *b == next as u8));
                    c.pop().unwrap();
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        t.join().unwrap();
    });
}

/// Two producers racing for the last room of a nearly full ring while the consumer
/// releases the first record: exactly one claim fits (whatever the interleaving),
/// the loser is told so without writing anything, and the winner's record arrives
/// intact after the first.
#[test]
fn producers_race_for_the_last_room() {
    loom::model(|| {
        let (mut p, mut c) = MpscQueue::with_capacity(64);
        push(&mut p, 1, 16); // 24 of 64 bytes used
        let handles: Vec<_> = (2..=3u16)
            .map(|t| {
                let mut p = p.clone();
                // 32 bytes each: one fits at 24..56; the other would need 56..96.
                thread::spawn(move || p.push_with(24, t, |b| b.fill(t as u8)).unwrap())
            })
            .collect();
        let m = c.front().unwrap().unwrap();
        assert_eq!(m.msg_type(), 1);
        c.pop().unwrap();
        let won: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one claim fits: {won:?}");
        let m = c.front().unwrap().unwrap();
        let t = m.msg_type();
        assert_eq!(won[t as usize - 2], true);
        assert!(m.payload().iter().all(|b| *b == t as u8));
        c.pop().unwrap();
        assert!(c.front().unwrap().is_none());
    });
}
