//! loom models of the typed queue: every interleaving (up to the preemption bound) of
//! a producer and a consumer, including wrap-around, the cached indices, the
//! abandonment flag and (feature `wait`) parking.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p tcpshm-ring --all-features --lib loom_models::spsc`

use crate::spsc;
use loom::thread;

/// Capacity 2, three items: the producer must wrap and must reread the consumer's
/// index (its cached copy says full); values arrive in order, none lost or doubled.
#[test]
fn push_pop_with_wrap() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<u32>(2);
        let t = thread::spawn(move || {
            let mut i = 0;
            while i < 3 {
                if tx.push(i).is_ok() {
                    i += 1;
                } else {
                    thread::yield_now();
                }
            }
        });
        let mut next = 0;
        while next < 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        t.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

/// Batches publish with one store: the consumer never sees a partial batch's slots
/// uninitialised, and heap items (String) move across intact.
#[test]
fn batches_and_owned_items() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<String>(2);
        let t = thread::spawn(move || {
            let mut items = (0..3).map(|i| i.to_string()).peekable();
            while items.peek().is_some() {
                if tx.push_iter(&mut items) == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if rx.pop_batch(2, |s| got.push(s)) == 0 {
                thread::yield_now();
            }
        }
        t.join().unwrap();
        assert_eq!(got, ["0", "1", "2"]);
    });
}

/// Dropping the queue with items inside, after both threads are done, drops them
/// (loom checks the `Arc` and cell accesses).
#[test]
fn drop_with_items_inside() {
    loom::model(|| {
        let (mut tx, rx) = spsc::channel::<String>(2);
        let t = thread::spawn(move || {
            let _ = tx.push("a".into());
            let _ = tx.push("b".into());
        });
        drop(rx);
        t.join().unwrap();
    });
}

/// The producer pushes, then drops: once the consumer sees it gone, every push is
/// visible (the flag's release/acquire orders them), so nothing is left behind.
#[test]
fn abandonment_follows_every_push() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<u32>(2);
        let t = thread::spawn(move || {
            tx.push(1).unwrap();
            tx.push(2).unwrap();
        });
        let mut got = vec![];
        loop {
            if let Some(v) = rx.pop() {
                got.push(v);
            } else if rx.is_abandoned() {
                while let Some(v) = rx.pop() {
                    got.push(v);
                }
                break;
            } else {
                thread::yield_now();
            }
        }
        t.join().unwrap();
        assert_eq!(got, [1, 2]);
    });
}

/// Both ends park at once (no spinning): a full queue parks the producer, an empty
/// one the consumer, and the other end's notify (or drop) must wake it. A lost wake-up
/// is a deadlock, which loom reports.
#[cfg(feature = "wait")]
#[test]
fn parked_ends_are_woken_by_notify_and_by_drop() {
    use crate::wait::{Wait, WaitError};
    const W: Wait = Wait { spins: 0, yields: 0, park: core::time::Duration::from_secs(1), max_timeouts: None };
    loom::model(|| {
        let (mut tx, mut rx) = spsc::channel::<u32>(1);
        let t = thread::spawn(move || {
            tx.push_wait(1, &W).unwrap();
            tx.push_wait(2, &W).unwrap();
        });
        assert_eq!(rx.pop_wait(&W), Ok(1));
        assert_eq!(rx.pop_wait(&W), Ok(2));
        assert_eq!(rx.pop_wait(&W), Err(WaitError::Abandoned));
        t.join().unwrap();
    });
}
