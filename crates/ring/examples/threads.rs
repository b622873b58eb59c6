//! Two threads: a typed queue of `u64`s and a zero-copy queue of variable-length
//! messages, each consumer stopping when its producer is gone (`is_abandoned`), not
//! after a count it was told in advance.
//!
//! `cargo run -p tcpshm-ring --example threads` (no features: the core queues only).

use tcpshm_ring::spsc;
use tcpshm_ring::var::VarQueue;

const N: u64 = 1_000_000;

fn main() {
    // Typed: push/pop by value.
    let (mut tx, mut rx) = spsc::channel::<u64>(1024);
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            let mut v = i;
            // Full: the value comes back; retry (a real program might do other work).
            while let Err(spsc::Full(back)) = tx.push(v) {
                v = back;
                std::hint::spin_loop();
            }
        }
    });
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        match rx.pop() {
            Some(v) => {
                assert_eq!(v, count, "in order");
                count += 1;
                sum += v;
            }
            // Empty and the producer is gone: everything it pushed was read.
            None if rx.is_abandoned() && rx.is_empty() => break,
            None => std::hint::spin_loop(),
        }
    }
    producer.join().unwrap();
    assert_eq!((count, sum), (N, N * (N - 1) / 2));
    println!("spsc: {count} u64 received in order, sum {sum}");

    // Variable length, zero-copy: the producer writes in place, the consumer reads in
    // place; lengths 0..=300.
    let (mut p, mut c) = VarQueue::with_capacity(1 << 16);
    let producer = std::thread::spawn(move || {
        for seq in 0..N {
            let len = (seq % 301) as usize;
            loop {
                if let Some(buf) = p.alloc(len).expect("fits the ring") {
                    for (k, b) in buf.iter_mut().enumerate() {
                        *b = (seq as u8).wrapping_add(k as u8);
                    }
                    p.push((seq % 7) as u16).expect("allocated");
                    break;
                }
                std::hint::spin_loop();
            }
        }
    });
    let (mut msgs, mut bytes) = (0u64, 0u64);
    loop {
        let Some(m) = c.front().expect("the queue is consistent") else {
            if c.is_abandoned() && c.is_empty() {
                break;
            }
            std::hint::spin_loop();
            continue;
        };
        let seq = msgs;
        assert_eq!(m.msg_type(), (seq % 7) as u16);
        assert_eq!(m.payload().len(), (seq % 301) as usize);
        assert!(m.payload().iter().enumerate().all(|(k, b)| *b == (seq as u8).wrapping_add(k as u8)));
        bytes += m.payload().len() as u64;
        c.pop().expect("front was Some");
        msgs += 1;
    }
    producer.join().unwrap();
    assert_eq!(msgs, N);
    println!("var: {msgs} messages ({bytes} payload bytes) received intact and in order");
}
