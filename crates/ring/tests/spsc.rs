//! Unit tests of the typed SPSC queue.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tcpshm_ring::spsc::{self, Full};

#[test]
fn capacity_is_rounded_up_to_a_power_of_two() {
    assert_eq!(spsc::channel::<u8>(0).0.capacity(), 1);
    assert_eq!(spsc::channel::<u8>(1).0.capacity(), 1);
    assert_eq!(spsc::channel::<u8>(3).0.capacity(), 4);
    assert_eq!(spsc::channel::<u8>(1024).1.capacity(), 1024);
}

#[test]
fn empty_and_full() {
    let (mut tx, mut rx) = spsc::channel::<u32>(4);
    assert!(rx.is_empty() && tx.is_empty());
    assert_eq!(rx.pop(), None);
    assert_eq!(rx.peek(), None);
    for i in 0..4 {
        tx.push(i).unwrap();
    }
    assert!(tx.is_full() && rx.is_full());
    assert_eq!(tx.push(9), Err(Full(9)));
    assert_eq!(rx.len(), 4);
    assert_eq!(rx.pop(), Some(0));
    tx.push(4).unwrap();
    assert_eq!((1..5).map(|_| rx.pop().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(rx.pop(), None);
}

#[test]
fn wraps_around_many_laps() {
    let (mut tx, mut rx) = spsc::channel::<u64>(8);
    let mut next_out = 0;
    for i in 0..10_000u64 {
        tx.push(i).unwrap();
        if i % 3 == 0 {
            continue; // let the queue fill unevenly
        }
        while rx.len() > 2 {
            assert_eq!(rx.pop(), Some(next_out));
            next_out += 1;
        }
    }
    while let Some(v) = rx.pop() {
        assert_eq!(v, next_out);
        next_out += 1;
    }
    assert_eq!(next_out, 10_000);
}

#[test]
fn batches_publish_at_once_and_respect_room() {
    let (mut tx, mut rx) = spsc::channel::<u16>(8);
    assert_eq!(tx.push_slice(&[1, 2, 3]), 3);
    assert_eq!(tx.push_slice(&[4, 5, 6, 7, 8, 9, 10]), 5);
    assert_eq!(tx.push_slice(&[11]), 0);
    let mut out = [0u16; 3];
    assert_eq!(rx.pop_slice(&mut out), 3);
    assert_eq!(out, [1, 2, 3]);
    let mut it = 100..;
    assert_eq!(tx.push_iter(&mut it), 3);
    assert_eq!(it.next(), Some(103));
    let mut got = vec![];
    assert_eq!(rx.pop_batch(4, |v| got.push(v)), 4);
    assert_eq!(got, [4, 5, 6, 7]);
    assert_eq!(rx.pop_batch(100, |v| got.push(v)), 4);
    assert_eq!(got, [4, 5, 6, 7, 8, 100, 101, 102]);
    assert_eq!(rx.pop_slice(&mut out), 0);
}

/// Counts drops, to check that every item is dropped exactly once.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn drop_drops_items_still_queued() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut tx, mut rx) = spsc::channel(8);
    for _ in 0..6 {
        assert!(tx.push(Tracked(drops.clone())).is_ok());
    }
    drop(rx.pop());
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    // A refused push hands the item back (dropped by us, not leaked or doubled).
    for _ in 0..3 {
        assert!(tx.push(Tracked(drops.clone())).is_ok());
    }
    let back = tx.push(Tracked(drops.clone())).unwrap_err();
    drop(back);
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    drop(tx);
    assert_eq!(drops.load(Ordering::Relaxed), 2, "queue still alive while the consumer is");
    drop(rx);
    assert_eq!(drops.load(Ordering::Relaxed), 10, "the 8 queued items are dropped once");
}

#[test]
fn peek_does_not_consume() {
    let (mut tx, mut rx) = spsc::channel(2);
    tx.push(String::from("a")).unwrap();
    assert_eq!(rx.peek().map(String::as_str), Some("a"));
    assert_eq!(rx.peek().map(String::as_str), Some("a"));
    assert_eq!(rx.pop().as_deref(), Some("a"));
}

#[test]
fn ends_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<spsc::Producer<String>>();
    assert_send::<spsc::Consumer<String>>();
}

#[test]
#[cfg_attr(miri, ignore = "millions of items across real threads")]
fn threads_exchange_millions_in_order() {
    const N: u64 = 5_000_000;
    let (mut tx, mut rx) = spsc::channel::<u64>(1024);
    let t = std::thread::spawn(move || {
        let mut i = 0;
        while i < N {
            // Mix single pushes and batches.
            if i % 5 == 0 {
                let batch: Vec<u64> = (i..(i + 37).min(N)).collect();
                i += tx.push_slice(&batch) as u64;
            } else if tx.push(i).is_ok() {
                i += 1;
            }
        }
    });
    let mut expect = 0;
    let mut buf = [0u64; 64];
    while expect < N {
        let n = rx.pop_slice(&mut buf[..(expect % 64 + 1) as usize]);
        for v in &buf[..n] {
            assert_eq!(*v, expect);
            expect += 1;
        }
    }
    t.join().unwrap();
    assert_eq!(rx.pop(), None);
}

#[test]
fn each_end_sees_the_other_dropped() {
    let (tx, rx) = spsc::channel::<u8>(4);
    assert!(!tx.is_abandoned() && !rx.is_abandoned());
    drop(rx);
    assert!(tx.is_abandoned());

    let (mut tx, mut rx) = spsc::channel::<String>(4);
    tx.push("a".into()).unwrap();
    tx.push("b".into()).unwrap();
    drop(tx);
    assert!(rx.is_abandoned());
    assert_eq!(rx.pop().as_deref(), Some("a"), "items pushed before the drop stay");
    assert_eq!(rx.pop().as_deref(), Some("b"));
    assert_eq!(rx.pop(), None);
}

#[test]
fn abandonment_is_seen_across_threads_after_every_push() {
    const N: u64 = if cfg!(miri) { 500 } else { 100_000 };
    let (mut tx, mut rx) = spsc::channel::<u64>(64);
    let t = std::thread::spawn(move || {
        for i in 0..N {
            while tx.push(i).is_err() {
                std::thread::yield_now();
            }
        }
    });
    let mut next = 0;
    loop {
        match rx.pop() {
            Some(v) => {
                assert_eq!(v, next);
                next += 1;
            }
            // Once the producer is seen gone, everything it pushed is visible.
            None if rx.is_abandoned() => match rx.pop() {
                Some(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                None => break,
            },
            None => std::thread::yield_now(),
        }
    }
    t.join().unwrap();
    assert_eq!(next, N);
}
