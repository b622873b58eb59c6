//! Property tests: both queues against a `VecDeque` model, single-threaded, and a
//! producer and a consumer thread exchanging millions of checked messages.
#![cfg(not(loom))]

use proptest::prelude::*;
use std::collections::VecDeque;
use tcpshm_ring::spsc;
use tcpshm_ring::var::{Config, VarQueue};

#[derive(Debug, Clone)]
enum Op {
    Push(u16, usize),
    PushMore(u16, usize),
    Publish,
    Discard,
    Pop,
    PopMore,
    Release,
    Front,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u16>(), 0usize..300).prop_map(|(t, l)| Op::Push(t, l)),
        2 => (any::<u16>(), 0usize..300).prop_map(|(t, l)| Op::PushMore(t, l)),
        1 => Just(Op::Publish),
        1 => Just(Op::Discard),
        3 => Just(Op::Pop),
        2 => Just(Op::PopMore),
        1 => Just(Op::Release),
        1 => Just(Op::Front),
    ]
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    /// The var queue behaves like a deque of (type, bytes), with staged pushes
    /// invisible until published (or gone for good once discarded) and popped space
    /// returned only on release.
    #[test]
    fn var_queue_matches_model(
        cap_log in 7u32..11,
        align_log in 3u32..7,
        ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 400 }),
    ) {
        let align = 1usize << align_log;
        let cap = (1usize << cap_log).max(4 * align);
        let (mut p, mut c) = VarQueue::with_config(Config { capacity: cap, align }).unwrap();
        let max = p.max_payload();
        let mut published: VecDeque<(u16, Vec<u8>)> = VecDeque::new();
        let mut staged: Vec<(u16, Vec<u8>)> = Vec::new();
        let mut seed = 0u64;
        for op in ops {
            match op {
                Op::Push(t, len) | Op::PushMore(t, len) => {
                    let len = len % (max + 1);
                    seed += 1;
                    let bytes = content(seed, len);
                    match p.alloc(len).unwrap() {
                        Some(buf) => {
                            buf.copy_from_slice(&bytes);
                            staged.push((t, bytes));
                            if matches!(op, Op::Push(..)) {
                                p.push(t).unwrap();
                                published.extend(staged.drain(..));
                            } else {
                                p.push_more(t).unwrap();
                            }
                        }
                        None => {
                            // Full: the bytes in use (published + staged + popped but not
                            // released) leave no room for this frame anywhere.
                            prop_assert!(p.free_bytes() < 2 * p.frame_size(len));
                        }
                    }
                }
                Op::Publish => {
                    p.publish();
                    published.extend(staged.drain(..));
                }
                Op::Discard => {
                    // Staged frames vanish; the write index is the published one again.
                    let before = p.write_index();
                    let given_back = p.discard_staged();
                    prop_assert_eq!(p.write_index(), p.published_index());
                    prop_assert_eq!(before - given_back, p.published_index());
                    prop_assert_eq!(given_back == 0, staged.is_empty());
                    staged.clear();
                }
                Op::Pop | Op::PopMore => {
                    let want = published.front().cloned();
                    match c.front().unwrap() {
                        Some(m) => {
                            let (t, b) = want.expect("model has a message");
                            prop_assert_eq!(m.msg_type(), t);
                            prop_assert_eq!(m.payload(), &b[..]);
                            published.pop_front();
                            if matches!(op, Op::Pop) { c.pop().unwrap() } else { c.pop_more().unwrap() }
                        }
                        None => prop_assert!(want.is_none()),
                    }
                }
                Op::Release => c.release(),
                Op::Front => {
                    let got = c.front().unwrap().map(|m| (m.msg_type(), m.payload().to_vec()));
                    prop_assert_eq!(got, published.front().cloned());
                }
            }
        }
        p.publish();
        published.extend(staged.drain(..));
        while let Some((t, b)) = published.pop_front() {
            let m = c.front().unwrap().expect("message in the queue");
            prop_assert_eq!((m.msg_type(), m.payload()), (t, &b[..]));
            c.pop().unwrap();
        }
        prop_assert!(c.front().unwrap().is_none());
    }

    /// The typed queue behaves like a bounded deque.
    #[test]
    fn spsc_matches_model(
        cap in 1usize..20,
        ops in proptest::collection::vec((0u8..5, 0usize..10), 1..300),
    ) {
        let (mut tx, mut rx) = spsc::channel::<u32>(cap);
        let cap = tx.capacity();
        let mut model = VecDeque::new();
        let mut next = 0u32;
        for (kind, n) in ops {
            match kind {
                0 => {
                    let r = tx.push(next);
                    if model.len() < cap { prop_assert!(r.is_ok()); model.push_back(next); } else { prop_assert_eq!(r, Err(spsc::Full(next))); }
                    next += 1;
                }
                1 => prop_assert_eq!(rx.pop(), model.pop_front()),
                2 => {
                    let items: Vec<u32> = (next..next + n as u32).collect();
                    let k = tx.push_slice(&items);
                    prop_assert_eq!(k, n.min(cap - model.len()));
                    model.extend(&items[..k]);
                    next += n as u32;
                }
                3 => {
                    let mut out = vec![0; n];
                    let k = rx.pop_slice(&mut out);
                    prop_assert_eq!(k, n.min(model.len()));
                    for v in &out[..k] { prop_assert_eq!(Some(*v), model.pop_front()); }
                }
                _ => {
                    let mut got = vec![];
                    rx.pop_batch(n, |v| got.push(v));
                    for v in got { prop_assert_eq!(Some(v), model.pop_front()); }
                }
            }
            prop_assert_eq!(rx.len(), model.len());
        }
    }
}

/// A producer and a consumer thread exchange millions of variable-length messages;
/// every byte, type and the order are checked.
#[test]
#[cfg_attr(miri, ignore = "millions of messages across real threads")]
fn var_threads_exchange_millions_checked() {
    const N: u64 = 2_000_000;
    let (mut p, mut c) = VarQueue::with_capacity(1 << 14);
    let producer = std::thread::spawn(move || {
        let mut i = 0u64;
        let mut batch = 0;
        while i < N {
            let len = (i.wrapping_mul(2_654_435_761) % 200) as usize;
            match p.alloc(len).unwrap() {
                Some(buf) => {
                    for (k, b) in buf.iter_mut().enumerate() {
                        *b = (i as usize + k) as u8;
                    }
                    // Publish in batches of up to 8 frames.
                    batch += 1;
                    if batch == 8 {
                        p.push(i as u16).unwrap();
                        batch = 0;
                    } else {
                        p.push_more(i as u16).unwrap();
                    }
                    i += 1;
                }
                None => p.publish(),
            }
        }
        p.publish();
    });
    let mut i = 0u64;
    while i < N {
        let Some(m) = c.front().unwrap() else { continue };
        let len = (i.wrapping_mul(2_654_435_761) % 200) as usize;
        assert_eq!(m.msg_type(), i as u16);
        assert_eq!(m.payload().len(), len);
        for (k, b) in m.payload().iter().enumerate() {
            assert_eq!(*b, (i as usize + k) as u8, "message {i} byte {k}");
        }
        if i.is_multiple_of(3) {
            c.pop().unwrap();
        } else {
            c.pop_more().unwrap();
            if i % 3 == 2 {
                c.release();
            }
        }
        i += 1;
    }
    producer.join().unwrap();
}

/// Same for the typed queue with heap-owning items (checks no item is dropped twice
/// or lost under concurrency).
#[test]
#[cfg_attr(miri, ignore = "millions of items across real threads")]
fn spsc_threads_exchange_strings() {
    const N: usize = 1_000_000;
    let (mut tx, mut rx) = spsc::channel::<String>(256);
    let t = std::thread::spawn(move || {
        let mut i = 0;
        while i < N {
            match tx.push(i.to_string()) {
                Ok(()) => i += 1,
                Err(_) => std::hint::spin_loop(),
            }
        }
    });
    let mut i = 0;
    while i < N {
        if let Some(s) = rx.pop() {
            assert_eq!(s, i.to_string());
            i += 1;
        }
    }
    t.join().unwrap();
}
