//! loom models of the variable-length queue: every interleaving (up to the preemption
//! bound) of a producer and a consumer over a tiny ring, with wrap markers, batched
//! publish and release, the cached indices, the producer's `peek` and (feature
//! `wait`) parking. Data races on the frame bytes are
//! caught through the crate's loom tracker (each frame's bytes are a loom cell).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p tcpshm-ring --all-features --lib loom_models::var`

use crate::var::VarQueue;
use loom::thread;

fn produce(p: &mut crate::var::Producer<'static>, i: u8, len: usize, publish: bool) {
    loop {
        match p.alloc(len).unwrap() {
            Some(buf) => {
                buf.fill(i);
                if publish {
                    p.push(u16::from(i)).unwrap();
                } else {
                    p.push_more(u16::from(i)).unwrap();
                }
                return;
            }
            None => {
                p.publish();
                thread::yield_now();
            }
        }
    }
}

/// A 32-byte ring (max payload 8); frames of 16 and 8 bytes force wrap markers and a
/// full ring; every message arrives intact and in order.
#[test]
fn push_pop_with_wrap_markers() {
    loom::model(|| {
        let (mut p, mut c) = VarQueue::with_capacity(32);
        let lens = [8usize, 0, 8, 4];
        let t = thread::spawn(move || {
            for (i, len) in lens.iter().enumerate() {
                produce(&mut p, i as u8, *len, true);
            }
        });
        let mut next = 0;
        while next < lens.len() {
            let Some(m) = c.front().unwrap() else {
                thread::yield_now();
                continue;
            };
            assert_eq!(m.msg_type(), next as u16);
            assert_eq!(m.payload().len(), lens[next]);
            assert!(m.payload().iter().all(|b| *b == next as u8));
            c.pop().unwrap();
            next += 1;
        }
        t.join().unwrap();
    });
}

/// Deferred publish (push_more + publish) and deferred release (pop_more + release).
#[test]
fn batched_publish_and_release() {
    loom::model(|| {
        let (mut p, mut c) = VarQueue::with_capacity(32);
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                produce(&mut p, i, 0, false);
            }
            p.publish();
        });
        let mut next = 0u16;
        while next < 3 {
            match c.front().unwrap() {
                Some(m) => {
                    assert_eq!(m.msg_type(), next);
                    c.pop_more().unwrap();
                    next += 1;
                    if next == 2 {
                        c.release();
                    }
                }
                None => {
                    c.release();
                    thread::yield_now();
                }
            }
        }
        c.release();
        t.join().unwrap();
    });
}

/// The producer walks its unreleased frames with `peek` while the consumer pops them,
/// then allocates over the space the consumer released: the peeked bytes are only read
/// by both sides (no race), and the new writes happen after the consumer's reads (the
/// tracker checks both).
#[test]
fn producer_peeks_while_the_consumer_pops() {
    loom::model(|| {
        let (mut p, mut c) = VarQueue::with_capacity(32);
        produce(&mut p, 1, 8, true); // 16-byte frames: the ring holds two
        produce(&mut p, 2, 8, true);
        let t = thread::spawn(move || {
            let mut next = 1u8;
            while next <= 3 {
                let Some(m) = c.front().unwrap() else {
                    thread::yield_now();
                    continue;
                };
                assert!(m.payload().iter().all(|b| *b == next));
                c.pop().unwrap();
                next += 1;
            }
        });
        let mut i = p.released_index();
        while let Some(m) = p.peek(i).unwrap() {
            let t = m.msg_type() as u8;
            assert!(t == 1 || t == 2);
            assert!(m.payload().iter().all(|b| *b == t));
            i = m.end();
        }
        assert_eq!(i, p.published_index());
        produce(&mut p, 3, 8, true); // reuses the space of frame 1 once released
        t.join().unwrap();
    });
}

/// Zero-copy waiting: both ends park at once on a ring that holds one message; the
/// consumer drains everything, then learns that the producer left.
#[cfg(feature = "wait")]
#[test]
fn parked_var_ends_are_woken_by_notify_and_by_drop() {
    use crate::wait::{FrontWaitError, Wait, WaitError};
    const W: Wait = Wait { spins: 0, yields: 0, park: core::time::Duration::from_secs(1), max_timeouts: None };
    loom::model(|| {
        let (mut p, mut c) = VarQueue::with_capacity(32);
        let t = thread::spawn(move || {
            for i in 1..=2u8 {
                p.alloc_wait(8, &W).unwrap().fill(i); // a 16-byte frame: two fill the ring
                p.push_notify(u16::from(i)).unwrap();
            }
        });
        for i in 1..=2u8 {
            let m = c.front_wait(&W).unwrap();
            assert!(m.payload().iter().all(|b| *b == i));
            c.pop_notify().unwrap();
        }
        assert_eq!(c.front_wait(&W).unwrap_err(), FrontWaitError::Wait(WaitError::Abandoned));
        t.join().unwrap();
    });
}
