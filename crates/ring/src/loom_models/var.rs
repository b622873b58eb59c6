//! loom models of the variable-length queue: every interleaving (up to the preemption
//! bound) of a producer and a consumer over a tiny ring, with wrap markers, batched
//! publish and release, and the cached indices. Data races on the frame bytes are
//! caught through the crate's loom tracker (each frame's bytes are a loom cell).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p tcpshm-ring --lib loom_models::var`

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
