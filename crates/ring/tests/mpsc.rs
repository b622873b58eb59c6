//! The many-to-one queue: claims, commits, padding at the wrap, backpressure, a
//! panicking producer, recovery after dead producers and an interrupted release,
//! validation of what another process wrote, and many producer threads.
#![cfg(not(loom))]

use tcpshm_ring::mpsc::{self, Consumer, MpscQueue, Producer, PushError, Recovered};
use tcpshm_ring::var::{Corrupt, PopError};

/// An 8-aligned region for `attach`, on the heap.
struct Mem(Vec<u64>);

impl Mem {
    fn new(cap: usize) -> Mem {
        Mem(vec![0; mpsc::region_size(cap) / 8])
    }
    fn bytes(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: u8 has no alignment or validity requirements; the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), len) }
    }
}

const TAIL: usize = 128;
const HEAD: usize = 256;
const RELEASING: usize = 272;
const DATA: usize = mpsc::HEADER_LEN;

fn get(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn put(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
/// A record header word: `len` (negative: being written), type, flags.
fn word(len: i32, ty: u16, flags: u16) -> u64 {
    (len as u32 as u64) | (u64::from(ty) << 32) | (u64::from(flags) << 48)
}

fn pop_all(c: &mut Consumer<'_>) -> Vec<(u16, Vec<u8>)> {
    let mut out = vec![];
    while let Some(m) = c.front().unwrap() {
        out.push((m.msg_type(), m.payload().to_vec()));
        c.pop().unwrap();
    }
    out
}

#[test]
fn empty_then_one_then_empty() {
    let (mut p, mut c) = MpscQueue::with_capacity(256);
    assert!(c.front().unwrap().is_none());
    assert!(c.is_empty());
    assert_eq!(c.pop(), Err(PopError::Empty));
    assert!(p.push(9, b"abc").unwrap());
    assert!(!c.is_empty());
    assert_eq!(c.claimed_bytes(), 16);
    assert_eq!(pop_all(&mut c), [(9, b"abc".to_vec())]);
    assert!(c.is_empty());
    assert_eq!((c.read_index(), c.released_index()), (16, 16));
}

#[test]
fn zero_length_and_largest_payloads() {
    let (mut p, mut c) = MpscQueue::with_capacity(256);
    assert_eq!(p.max_payload(), 120);
    assert!(p.push(1, &[]).unwrap());
    assert_eq!(p.push(1, &[0; 121]), Err(PushError::TooLarge { len: 121, max: 120 }));
    assert!(p.push(2, &[7; 120]).unwrap());
    assert_eq!(pop_all(&mut c), [(1, vec![]), (2, vec![7; 120])]);
}

/// Every wrap offset: records never wrap (the producer pads the end of the ring), and
/// the padding is skipped.
#[test]
fn wrap_around_at_every_offset() {
    let cap = 256;
    for first in (0..100).step_by(if cfg!(miri) { 24 } else { 4 }) {
        let (mut p, mut c) = MpscQueue::with_capacity(cap);
        let mut expect: std::collections::VecDeque<(u16, Vec<u8>)> = std::collections::VecDeque::new();
        for (seq, round) in (0..40u32).enumerate() {
            let len = if round == 0 { first } else { (round * 37 + first) % 100 };
            let payload: Vec<u8> = (0..len).map(|k| (k as u8).wrapping_add(seq as u8)).collect();
            while !p.push(seq as u16, &payload).unwrap() {
                let (t, b) = expect.pop_front().unwrap();
                let m = c.front().unwrap().unwrap();
                assert_eq!((m.msg_type(), m.payload()), (t, &b[..]));
                c.pop().unwrap();
            }
            expect.push_back((seq as u16, payload));
        }
        let rest: Vec<_> = expect.into_iter().collect();
        assert_eq!(pop_all(&mut c), rest);
    }
}

#[test]
fn full_is_a_value_and_room_comes_back_with_a_release() {
    let (mut p, mut c) = MpscQueue::with_capacity(64);
    assert!(p.push(1, &[1; 24]).unwrap());
    assert!(p.push(2, &[2; 24]).unwrap());
    let mut other = p.clone();
    assert!(!p.push(3, &[3]).unwrap());
    assert!(!other.push(3, &[3]).unwrap());
    let mut called = false;
    assert!(!p.push_with(1, 3, |_| called = true).unwrap());
    assert!(!called, "no room: the closure is not called");
    c.pop_more().unwrap();
    assert!(!other.push(3, &[3; 24]).unwrap(), "consumed, not released");
    c.release();
    assert!(other.push(3, &[3; 24]).unwrap());
    assert_eq!(pop_all(&mut c), [(2, vec![2; 24]), (3, vec![3; 24])]);
}

/// A consumer that reads a whole lap without releasing does not read the first record
/// again (its bytes are still there, and its header still says committed).
#[test]
fn a_whole_lap_read_without_release_ends_there() {
    let (mut p, mut c) = MpscQueue::with_capacity(64);
    for round in 0..3u8 {
        assert!(p.push(1, &[round; 24]).unwrap());
        assert!(p.push(2, &[round; 24]).unwrap());
        assert!(!p.push(3, &[]).unwrap(), "full");
        c.pop_more().unwrap();
        c.pop_more().unwrap();
        assert!(c.front().unwrap().is_none(), "round {round}: nothing new");
        assert_eq!(c.pop_more(), Err(PopError::Empty));
        c.release();
    }
}

/// The bytes a producer is handed are zero, whatever was there before.
#[test]
fn claimed_bytes_are_zero() {
    let (mut p, mut c) = MpscQueue::with_capacity(64);
    for _ in 0..8 {
        assert!(p.push(1, &[0xff; 20]).unwrap());
        c.pop().unwrap();
        p.push_with(20, 1, |b| assert!(b.iter().all(|x| *x == 0))).unwrap();
        c.pop().unwrap();
    }
}

#[test]
#[cfg_attr(miri, ignore = "unwinding through the guard is exercised the same way without miri")]
fn a_panicking_fill_becomes_padding_and_the_queue_goes_on() {
    let (mut p, mut c) = MpscQueue::with_capacity(256);
    p.push(1, b"before").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.push_with(10, 2, |b| {
            b[..5].copy_from_slice(b"half!");
            panic!("the producer's closure failed");
        })
    }));
    assert!(r.is_err());
    p.push(3, b"after").unwrap();
    assert_eq!(pop_all(&mut c), [(1, b"before".to_vec()), (3, b"after".to_vec())]);
    // The aborted record's bytes were zeroed with the release: handed out clean.
    for _ in 0..20 {
        p.push_with(10, 4, |b| assert!(b.iter().all(|x| *x == 0))).unwrap();
        c.pop().unwrap();
    }
}

/// An uncommitted claim holds the messages claimed after it back (claim order), and
/// they come as soon as it commits.
#[test]
fn a_claim_in_progress_blocks_later_ones_until_it_commits() {
    let (p, mut c) = MpscQueue::with_capacity(1024);
    let (mut slow, mut fast) = (p.clone(), p.clone());
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            slow.push_with(4, 1, |b| {
                b.copy_from_slice(b"slow");
                claimed_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
            .unwrap();
        });
        claimed_rx.recv().unwrap();
        fast.push(2, b"fast").unwrap();
        assert!(c.front().unwrap().is_none(), "the first claim is not committed");
        assert!(!c.is_empty());
        go_tx.send(()).unwrap();
    });
    assert_eq!(pop_all(&mut c), [(1, b"slow".to_vec()), (2, b"fast".to_vec())]);
}

/// The bytes of a region the ends also address: a test writes them by hand only
/// through [`Bytes::with`], between pushes (a `&mut [u8]` over the region must not be
/// alive while an end accesses it).
struct Bytes {
    base: *mut u8,
    len: usize,
}

impl Bytes {
    fn with<T>(&self, f: impl FnOnce(&mut [u8]) -> T) -> T {
        // SAFETY: the region outlives `self`; no end accesses it while `f` runs (the
        // tests are single-threaded and push only outside `with`).
        f(unsafe { std::slice::from_raw_parts_mut(self.base, self.len) })
    }
}

/// A region formatted, pushed into by hand the way a producer that was killed leaves
/// it, then recovered.
fn recovered_after(setup: impl FnOnce(&mut Producer<'_>, &Bytes)) -> (Recovered, Vec<(u16, Vec<u8>)>) {
    let mut mem = Mem::new(256);
    let bytes = mem.bytes();
    mpsc::init(bytes, 256).unwrap();
    let base = bytes.as_mut_ptr();
    let len = bytes.len();
    // SAFETY: `mem` outlives the ends; the hand-written states below are written
    // while no push is in progress (single thread).
    let (mut p, mut c) = unsafe { mpsc::attach_raw(base, len) }.unwrap();
    setup(&mut p, &Bytes { base, len });
    // SAFETY: no push is in progress.
    let r = unsafe { c.recover() }.unwrap();
    let msgs = pop_all(&mut c);
    // The queue works on after recovery, over the padded space and across the wrap.
    for i in 0..30u8 {
        assert!(p.push(100, &[i; 40]).unwrap());
        assert_eq!(pop_all(&mut c), [(100, vec![i; 40])]);
    }
    (r, msgs)
}

/// Claims `frame` bytes by hand (the compare-and-swap of a producer), returning the
/// record's data offset.
fn claim_by_hand(b: &mut [u8], frame: u64) -> usize {
    let tail = get(b, TAIL);
    put(b, TAIL, tail + frame);
    (tail % 256) as usize
}

#[test]
fn recovery_pads_a_dead_claim_whose_header_was_never_written() {
    let (r, msgs) = recovered_after(|p, b| {
        p.push(1, b"one").unwrap();
        b.with(|b| claim_by_hand(b, 48)); // killed right after its compare-and-swap
        p.push(2, b"two").unwrap();
    });
    assert_eq!(r, Recovered { released: 0, padded: 1, messages: 2 });
    assert_eq!(msgs, [(1, b"one".to_vec()), (2, b"two".to_vec())]);
}

#[test]
fn recovery_pads_a_dead_claim_with_its_length_and_half_a_payload() {
    let (r, msgs) = recovered_after(|p, b| {
        p.push(1, b"one").unwrap();
        let off = b.with(|b| claim_by_hand(b, 40));
        b.with(|b| put(b, DATA + off, word(-37, 0, 0)));
        b.with(|b| b[DATA + off + 8..DATA + off + 20].fill(0xee)); // part of the payload
        p.push(2, b"two").unwrap();
    });
    assert_eq!(r, Recovered { released: 0, padded: 1, messages: 2 });
    assert_eq!(msgs, [(1, b"one".to_vec()), (2, b"two".to_vec())]);
}

#[test]
fn recovery_pads_dead_claims_at_the_tail_and_across_the_wrap() {
    // Two dead claims in a row, the second one wrapping (its padding never written),
    // and nothing committed after them.
    let (r, msgs) = recovered_after(|p, b| {
        for i in 0..5u8 {
            p.push(1, &[i; 32]).unwrap(); // 40-byte records: 200 bytes
        }
        b.with(|b| put(b, HEAD, 200));
        b.with(|b| put(b, RELEASING, 200));
        b.with(|b| b[DATA..DATA + 200].fill(0)); // released and zeroed by a consumer
        b.with(|b| claim_by_hand(b, 32)); // 200..232, header never written
        b.with(|b| claim_by_hand(b, 24 + 48)); // 232..256 is padding, the record at 0..48
    });
    // 200..256 is zero to the end of the ring (both claims' first parts): one padding
    // record; then 0..48 up to the tail.
    assert_eq!(r, Recovered { released: 0, padded: 2, messages: 0 });
    assert!(msgs.is_empty());
}

#[test]
fn recovery_finishes_a_release_a_killed_consumer_left_half_done() {
    let (r, msgs) = recovered_after(|p, b| {
        p.push(1, &[1; 40]).unwrap(); // 0..48
        p.push(2, &[2; 40]).unwrap(); // 48..96
        p.push(3, b"three").unwrap(); // 96..112

        // The consumer read the first two, stored `releasing` and zeroed 0..60.
        b.with(|b| put(b, RELEASING, 96));
        b.with(|b| b[DATA..DATA + 60].fill(0));
    });
    assert_eq!(r, Recovered { released: 96, padded: 0, messages: 1 });
    assert_eq!(msgs, [(3, b"three".to_vec())]);
}

#[test]
fn recovery_refuses_impossible_indices_and_headers() {
    let corrupt = |setup: &dyn Fn(&mut [u8])| {
        let mut mem = Mem::new(256);
        let bytes = mem.bytes();
        mpsc::init(bytes, 256).unwrap();
        let (base, len) = (bytes.as_mut_ptr(), bytes.len());
        // SAFETY: `mem` outlives the ends.
        let (mut p, mut c) = unsafe { mpsc::attach_raw(base, len) }.unwrap();
        p.push(1, b"x").unwrap();
        // SAFETY: as above.
        setup(unsafe { std::slice::from_raw_parts_mut(base, len) });
        // SAFETY: no push is in progress.
        unsafe { c.recover() }.unwrap_err()
    };
    assert!(matches!(corrupt(&|b| put(b, TAIL, 1000)), Corrupt::WriteIndex { .. }));
    assert!(matches!(corrupt(&|b| put(b, RELEASING, 64)), Corrupt::ReadIndex { .. }));
    // A claim whose length runs past the tail.
    assert!(matches!(
        corrupt(&|b| {
            put(b, TAIL, 32);
            put(b, DATA + 16, word(-100, 0, 0));
        }),
        Corrupt::Frame { at: 16, .. }
    ));
    // A committed record with an unknown flag.
    assert!(matches!(corrupt(&|b| put(b, DATA, word(9, 1, 4))), Corrupt::Frame { at: 0, flags: 4, .. }));
}

/// What another process wrote is checked before use: no out-of-bounds read.
#[test]
fn the_consumer_refuses_impossible_records() {
    let refused = |w: u64| {
        let mut mem = Mem::new(256);
        let bytes = mem.bytes();
        mpsc::init(bytes, 256).unwrap();
        put(bytes, TAIL, 64);
        put(bytes, DATA, w);
        let (_p, mut c) = mpsc::attach(bytes).unwrap();
        c.front().unwrap_err()
    };
    assert_eq!(refused(word(7, 1, 0)), Corrupt::Frame { at: 0, len: 7, flags: 0 }); // shorter than a header
    assert!(matches!(refused(word(300, 1, 0)), Corrupt::Frame { .. })); // past the end of the ring
    assert!(matches!(refused(word(8 + 121, 1, 0)), Corrupt::Frame { .. })); // above max payload
    assert!(matches!(refused(word(16, 1, 2)), Corrupt::Frame { .. })); // unknown flag
}

#[test]
fn attach_validates_the_header() {
    let attach_after = |f: &dyn Fn(&mut [u8])| {
        let mut mem = Mem::new(256);
        let bytes = mem.bytes();
        mpsc::init(bytes, 256).unwrap();
        f(bytes);
        mpsc::attach(bytes).map(drop)
    };
    use tcpshm_ring::var::AttachError as E;
    assert_eq!(attach_after(&|_| {}), Ok(()));
    assert!(matches!(attach_after(&|b| put(b, 0, 1)), Err(E::BadMagic(1))));
    assert!(matches!(attach_after(&|b| put(b, 8, 2 | (8 << 32))), Err(E::BadVersion { found: 2, .. })));
    assert!(matches!(attach_after(&|b| put(b, 8, 1 | (16 << 32))), Err(E::BadAlign(16))));
    assert!(matches!(attach_after(&|b| put(b, 16, 100)), Err(E::BadCapacity(100))));
    assert!(matches!(attach_after(&|b| put(b, 16, 128)), Err(E::LengthMismatch { .. })));
    assert!(matches!(attach_after(&|b| put(b, 24, 0)), Err(E::BadDataOffset(0))));
    assert!(matches!(attach_after(&|b| put(b, HEAD, 8)), Err(E::BadIndices { read: 8, write: 0 })));
    assert!(matches!(attach_after(&|b| put(b, TAIL, 257)), Err(E::BadIndices { .. })));
    let mut mem = Mem::new(256);
    assert!(mpsc::init(&mut mem.bytes()[..100], 256).is_err());
    assert!(mpsc::init(mem.bytes(), 100).is_err());
}

#[test]
fn the_consumer_words_persist_in_the_region() {
    let mut mem = Mem::new(64);
    let bytes = mem.bytes();
    mpsc::init(bytes, 64).unwrap();
    {
        let (_p, mut c) = mpsc::attach(bytes).unwrap();
        for i in 0..4 {
            c.set_word(i, 100 + i as u64);
        }
    }
    let (_p, c) = mpsc::attach(bytes).unwrap();
    assert_eq!((0..4).map(|i| c.word(i)).collect::<Vec<_>>(), [100, 101, 102, 103]);
}

#[test]
fn ends_are_send_and_producers_clone() {
    fn send<T: Send>() {}
    fn clone<T: Clone>() {}
    send::<Producer<'static>>();
    send::<Consumer<'static>>();
    clone::<Producer<'static>>();
}

/// Four producer threads and a consumer thread: every message arrives once, intact,
/// and in order per producer; the ring wraps thousands of times.
#[test]
fn many_producer_threads_each_in_order() {
    const THREADS: u16 = 4;
    let per: u32 = if cfg!(miri) { 25 } else { 100_000 };
    let (p, mut c) = MpscQueue::with_capacity(if cfg!(miri) { 256 } else { 1 << 12 });
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let mut p = p.clone();
            s.spawn(move || {
                for i in 0..per {
                    let len = 4 + (i as usize * 7 + t as usize) % 60;
                    while !p
                        .push_with(len, t, |b| {
                            b[..4].copy_from_slice(&i.to_le_bytes());
                            b[4..].fill(t as u8 ^ i as u8);
                        })
                        .unwrap()
                    {
                        std::thread::yield_now();
                    }
                }
            });
        }
        let mut next = [0u32; THREADS as usize];
        let mut left = per * u32::from(THREADS);
        while left > 0 {
            match c.front().unwrap() {
                Some(m) => {
                    let t = m.msg_type() as usize;
                    let i = u32::from_le_bytes(m.payload()[..4].try_into().unwrap());
                    assert_eq!(i, next[t], "producer {t} out of order");
                    assert_eq!(m.payload().len(), 4 + (i as usize * 7 + t) % 60);
                    assert!(m.payload()[4..].iter().all(|b| *b == t as u8 ^ i as u8));
                    next[t] += 1;
                    left -= 1;
                    // Release in batches of 8 (pop_more), as a draining consumer does.
                    c.pop_more().unwrap();
                    if left.is_multiple_of(8) {
                        c.release();
                    }
                }
                None => {
                    c.release();
                    std::thread::yield_now();
                }
            }
        }
    });
    assert!(c.front().unwrap().is_none());
}

/// Four producer threads on a ring that holds a few records, always full: a producer
/// whose loads of the head and the tail are a lap apart (the consumer released and
/// the others claimed in between) is not told the ring is corrupt.
#[test]
fn a_full_tiny_ring_under_four_producers_is_never_reported_corrupt() {
    const THREADS: u16 = 4;
    let per: u32 = if cfg!(miri) { 3 } else { 200_000 };
    let (p, mut c) = MpscQueue::with_capacity(256);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (mut p, failed) = (p.clone(), &failed);
            s.spawn(move || {
                for i in 0..per {
                    let len = 4 + (i as usize * 7 + t as usize) % 60;
                    loop {
                        match p.push_with(len, t, |b| b[..4].copy_from_slice(&i.to_le_bytes())) {
                            Ok(true) => break,
                            Ok(false) if failed.load(std::sync::atomic::Ordering::SeqCst) => return,
                            Ok(false) => std::thread::yield_now(),
                            Err(e) => {
                                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                                panic!("producer {t}: {e}");
                            }
                        }
                    }
                }
            });
        }
        let mut next = [0u32; THREADS as usize];
        let mut left = per * u32::from(THREADS);
        while left > 0 {
            match c.front().unwrap() {
                Some(m) => {
                    let t = m.msg_type() as usize;
                    assert_eq!(m.payload()[..4], next[t].to_le_bytes(), "producer {t} in order");
                    next[t] += 1;
                    left -= 1;
                    // Released in batches: the head jumps.
                    c.pop_more().unwrap();
                    if left.is_multiple_of(8) {
                        c.release();
                    }
                }
                None => {
                    assert!(
                        !failed.load(std::sync::atomic::Ordering::SeqCst),
                        "a producer was told the ring is corrupt"
                    );
                    c.release();
                    std::thread::yield_now();
                }
            }
        }
    });
}
