//! Unit tests of the variable-length queue: every operation and edge.
#![cfg(not(loom))]

use tcpshm_ring::var::{
    self, AllocError, AttachError, Config, Consumer, Corrupt, InitError, Peer, PopError, Producer, VarQueue, HEADER_LEN,
};

fn push_bytes(p: &mut Producer<'_>, ty: u16, bytes: &[u8]) -> bool {
    match p.alloc(bytes.len()).unwrap() {
        Some(buf) => {
            buf.copy_from_slice(bytes);
            p.push(ty).unwrap();
            true
        }
        None => false,
    }
}

fn pop_bytes(c: &mut Consumer<'_>) -> Option<(u16, Vec<u8>)> {
    let m = c.front().unwrap()?;
    let out = (m.msg_type(), m.payload().to_vec());
    c.pop().unwrap();
    Some(out)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8).collect()
}

/// A heap region as an 8-aligned byte vector we can corrupt by hand.
struct Mem(Vec<u64>);

impl Mem {
    fn new(cap: usize) -> Mem {
        Mem(vec![0u64; var::region_size(cap) / 8])
    }
    fn bytes(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: u8 has no alignment or validity requirements; the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), len) }
    }
}

#[test]
fn empty_queue() {
    let (p, mut c) = VarQueue::with_capacity(256);
    assert!(c.front().unwrap().is_none());
    assert_eq!(c.pop(), Err(PopError::Empty));
    assert_eq!(c.pop_more(), Err(PopError::Empty));
    assert!(c.is_empty());
    assert_eq!(c.len_bytes(), 0);
    assert_eq!(p.free_bytes(), 256);
}

#[test]
fn push_without_alloc_is_an_error() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    assert!(p.push(1).is_err());
    assert!(p.push_more(1).is_err());
    p.alloc(1).unwrap().unwrap();
    p.push(1).unwrap();
    // The allocation is consumed by the push.
    assert!(p.push(1).is_err());
    assert_eq!(pop_bytes(&mut c).unwrap().0, 1);
    assert!(c.front().unwrap().is_none());
}

#[test]
fn zero_length_payload() {
    let (mut p, mut c) = VarQueue::with_capacity(64);
    for i in 0..100u16 {
        assert!(push_bytes(&mut p, i, &[]));
        assert_eq!(pop_bytes(&mut c), Some((i, vec![])));
    }
}

#[test]
fn fills_exactly_then_full_then_resumes() {
    // 256 bytes = 16 frames of 16 bytes (8 header + 8 payload).
    let (mut p, mut c) = VarQueue::with_capacity(256);
    for i in 0..16u16 {
        assert!(push_bytes(&mut p, i, &i.to_le_bytes().repeat(4)), "frame {i} should fit");
    }
    assert_eq!(p.free_bytes(), 0);
    assert!(p.alloc(0).unwrap().is_none(), "full queue returns None, not an error");
    assert_eq!(pop_bytes(&mut c).unwrap().0, 0);
    assert!(push_bytes(&mut p, 16, &[1; 8]));
    assert!(p.alloc(0).unwrap().is_none());
    for i in 1..=16u16 {
        assert_eq!(pop_bytes(&mut c).unwrap().0, i);
    }
    assert!(c.front().unwrap().is_none());
}

#[test]
fn max_size_message_and_oversize() {
    let cap = if cfg!(miri) { 1 << 12 } else { 1 << 16 };
    let (mut p, mut c) = VarQueue::with_capacity(cap);
    let max = p.max_payload();
    assert_eq!(max, cap / 2 - 8);
    assert_eq!(p.alloc(max + 1), Err(AllocError::TooLarge { len: max + 1, max }));
    assert!(matches!(p.alloc(usize::MAX), Err(AllocError::TooLarge { .. })), "never a wrapped length");
    assert!(matches!(p.alloc(u32::MAX as usize + 9), Err(AllocError::TooLarge { .. })));
    // A max-size message fits from every starting offset, wrapping as needed.
    for round in 0..20u64 {
        let filler = (round as usize * 1700) % (cap / 16);
        assert!(push_bytes(&mut p, 1, &vec![0; filler]));
        pop_bytes(&mut c).unwrap();
        let msg = pattern(round, max);
        assert!(push_bytes(&mut p, 2, &msg), "max message fits an empty ring (round {round})");
        assert_eq!(pop_bytes(&mut c), Some((2, msg)));
    }
}

#[test]
#[cfg_attr(miri, ignore = "megabytes under the interpreter take minutes; the logic is the same as max_size_message")]
fn large_messages_beyond_64k() {
    let (mut p, mut c) = VarQueue::with_capacity(8 << 20);
    let big = pattern(3, 3 << 20);
    assert!(push_bytes(&mut p, 9, &big));
    assert_eq!(pop_bytes(&mut c), Some((9, big)));
}

#[test]
fn wrap_around_at_every_offset() {
    // For every 8-aligned starting offset in the ring and a range of message sizes,
    // the message comes out intact (contiguous, after a wrap marker if needed).
    let cap = 512;
    let step = if cfg!(miri) { 40 } else { 8 };
    for start in (0..cap).step_by(step) {
        for len in [0usize, 1, 7, 8, 9, 24, 100, 200, 248] {
            let (mut p, mut c) = VarQueue::with_capacity(cap);
            // Move both indices to `start` with filler frames of 16 or 8 bytes.
            let mut at = 0;
            while at < start {
                let l = if start - at >= 16 { 8 } else { 0 };
                assert!(push_bytes(&mut p, 0, &vec![0xAA; l]));
                pop_bytes(&mut c).unwrap();
                at += 8 + l;
            }
            assert_eq!(c.read_index(), start as u64);
            for k in 0..3u64 {
                let msg = pattern(start as u64 * 1000 + len as u64 + k, len);
                assert!(push_bytes(&mut p, 7, &msg), "start {start} len {len}");
                assert_eq!(pop_bytes(&mut c), Some((7, msg)), "start {start} len {len}");
            }
        }
    }
}

#[test]
fn pop_front_pops_what_front_returned_across_wraps() {
    // The same traffic as pop, through pop_front with the front's end, over many wraps.
    let (mut p, mut c) = VarQueue::with_capacity(256);
    for k in 0..200u64 {
        let msg = pattern(k, (k as usize * 7) % 90);
        assert!(push_bytes(&mut p, 3, &msg));
        let m = c.front().unwrap().unwrap();
        assert_eq!(m.payload(), &msg[..]);
        let end = m.end();
        c.pop_front(end).unwrap();
        assert_eq!((c.read_index(), c.released_index()), (end, end), "released at once");
        assert!(c.front().unwrap().is_none());
    }
}

#[test]
fn pop_front_refuses_an_end_that_is_not_the_fronts() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    assert!(c.pop_front(16).is_err(), "nothing published");
    assert!(push_bytes(&mut p, 1, &[1; 8]));
    let end = c.front().unwrap().unwrap().end();
    for bad in [0, end + 8, end - 3, end + 1000] {
        assert!(matches!(c.pop_front(bad), Err(PopError::Corrupt(_))), "end {bad}");
        assert_eq!(c.read_index(), 0, "nothing consumed by a refused pop_front({bad})");
    }
    c.pop_front(end).unwrap();
    assert!(c.is_empty());
}

#[test]
fn wrap_marker_space_is_accounted() {
    // 128-byte ring; put the indices at 104, so a 32-byte frame must wrap: it needs
    // 24 (marker + rest) + 32 bytes.
    let (mut p, mut c) = VarQueue::with_capacity(128);
    assert_eq!(p.max_payload(), 56);
    assert!(push_bytes(&mut p, 0, &[0; 48])); // 56-byte frame
    assert!(push_bytes(&mut p, 0, &[0; 40])); // 48-byte frame
    pop_bytes(&mut c).unwrap();
    pop_bytes(&mut c).unwrap();
    assert_eq!(p.write_index(), 104);
    assert!(push_bytes(&mut p, 1, &[1; 24])); // 24 bytes skipped, frame at 0..32: 104 -> 160
    assert_eq!(p.write_index(), 160);
    // 128 - (160 - 104) = 72 bytes are free, contiguous at 32..104.
    assert!(push_bytes(&mut p, 2, &[2; 56])); // 64-byte frame at 32..96
    assert!(push_bytes(&mut p, 3, &[])); // 8-byte frame at 96..104
    assert!(p.alloc(0).unwrap().is_none());
    assert_eq!(pop_bytes(&mut c), Some((1, vec![1; 24])));
    assert_eq!(pop_bytes(&mut c), Some((2, vec![2; 56])));
    assert_eq!(pop_bytes(&mut c), Some((3, vec![])));
}

#[test]
fn padding_is_zeroed() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    // Dirty the ring with 0xFF.
    assert!(push_bytes(&mut p, 0, &[0xFF; 120]));
    pop_bytes(&mut c).unwrap();
    assert!(push_bytes(&mut p, 0, &[0xFF; 120]));
    pop_bytes(&mut c).unwrap();
    // Now a 1-byte message: 7 bytes of padding must be zero, not stale 0xFF.
    assert!(push_bytes(&mut p, 3, &[9]));
    let m = c.front().unwrap().unwrap();
    assert_eq!(m.bytes().len(), 16);
    assert_eq!(&m.bytes()[9..], &[0; 7]);
}

#[test]
fn alignment_64() {
    let (mut p, mut c) = VarQueue::with_config(Config { capacity: 4096, align: 64 }).unwrap();
    for i in 0..500u64 {
        let msg = pattern(i, (i as usize * 13) % 300);
        assert!(push_bytes(&mut p, i as u16, &msg));
        let m = c.front().unwrap().unwrap();
        assert_eq!(m.index() % 64, 0);
        assert_eq!(m.bytes().len() % 64, 0);
        assert_eq!(m.payload(), &msg[..]);
        c.pop().unwrap();
    }
}

#[test]
fn batch_publish_and_release() {
    let (mut p, mut c) = VarQueue::with_capacity(1024);
    for i in 0..10u16 {
        p.alloc(4).unwrap().unwrap().copy_from_slice(&u32::from(i).to_le_bytes());
        p.push_more(i).unwrap();
    }
    assert!(c.front().unwrap().is_none(), "nothing visible before publish");
    assert_eq!(p.published_index(), 0);
    p.publish();
    assert_eq!(p.published_index(), 160);
    for i in 0..10u16 {
        assert_eq!(c.front().unwrap().unwrap().msg_type(), i);
        c.pop_more().unwrap();
    }
    assert_eq!(c.released_index(), 0);
    assert_eq!(p.free_bytes(), 1024 - 160, "space comes back only on release");
    c.release();
    assert_eq!(p.free_bytes(), 1024);
}

#[test]
fn realloc_replaces_pending() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    p.alloc(100).unwrap().unwrap();
    p.alloc(2).unwrap().unwrap().copy_from_slice(b"ok");
    p.push(5).unwrap();
    assert_eq!(pop_bytes(&mut c), Some((5, b"ok".to_vec())));
    assert!(c.front().unwrap().is_none());
}

#[test]
fn peek_and_contiguous_walk_without_consuming() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    // Put the write index near the end so the run wraps.
    assert!(push_bytes(&mut p, 0, &[0; 112])); // 120-byte frame
    assert!(push_bytes(&mut p, 0, &[0; 56])); // 64-byte frame
    pop_bytes(&mut c).unwrap();
    pop_bytes(&mut c).unwrap(); // indices at 184
    for i in 1..=5u16 {
        assert!(push_bytes(&mut p, i, &[i as u8; 8])); // 16-byte frames
    }
    // 184..200, 200..216, 216..232, 232..248, then 248 cannot hold 16: marker, 256..272.
    let r = c.contiguous(c.read_index(), usize::MAX).unwrap().unwrap();
    assert_eq!((r.bytes.len(), r.end, r.count), (64, 248, 4));
    let r = c.contiguous(248, usize::MAX).unwrap().unwrap();
    assert_eq!((r.bytes.len(), r.end, r.count), (16, 272, 1), "the wrap marker is skipped, never returned");
    assert_eq!(r.bytes[6..8], [0, 0], "flags of a real frame");
    assert_eq!(r.start, 256);
    // max_bytes limits the run but always returns at least one frame.
    let r = c.contiguous(184, 40).unwrap().unwrap();
    assert_eq!((r.bytes.len(), r.end, r.count), (32, 216, 2));
    let r = c.contiguous(184, 1).unwrap().unwrap();
    assert_eq!((r.bytes.len(), r.count), (16, 1));
    assert!(c.contiguous(272, usize::MAX).unwrap().is_none());
    let mut i = c.read_index();
    let mut types = vec![];
    while let Some(m) = c.peek(i).unwrap() {
        types.push(m.msg_type());
        i = m.end();
    }
    assert_eq!(types, [1, 2, 3, 4, 5]);
    assert_eq!(c.read_index(), 184, "peek consumes nothing");
}

#[test]
fn init_refuses_bad_configs() {
    let mut m = Mem::new(256);
    let b = m.bytes();
    assert_eq!(var::init(b, Config::new(100)), Err(InitError::BadCapacity(100)));
    assert_eq!(var::init(b, Config::new(16)), Err(InitError::BadCapacity(16)));
    assert_eq!(var::init(b, Config { capacity: 256, align: 4 }), Err(InitError::BadAlign(4)));
    assert_eq!(var::init(b, Config { capacity: 256, align: 24 }), Err(InitError::BadAlign(24)));
    assert_eq!(var::init(b, Config { capacity: 256, align: 8192 }), Err(InitError::BadAlign(8192)));
    assert_eq!(var::init(b, Config { capacity: 256, align: 128 }), Err(InitError::BadCapacity(256)));
    assert_eq!(var::init(b, Config::new(512)), Err(InitError::RegionSize { need: HEADER_LEN + 512, have: b.len() }));
    assert_eq!(var::init(&mut b[1..], Config::new(256)).unwrap_err(), InitError::Misaligned(b.as_ptr() as usize + 1));
    assert!(var::init(b, Config::new(256)).is_ok());
}

/// Formats a region, pushes a few messages, then corrupts one header field and checks
/// that attach names what is wrong.
fn attach_after(corrupt: impl FnOnce(&mut [u8])) -> Result<(), AttachError> {
    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    {
        let (mut p, mut c) = var::attach(b).unwrap();
        assert!(push_bytes(&mut p, 1, b"abc"));
        assert!(push_bytes(&mut p, 2, b"defgh"));
        pop_bytes(&mut c).unwrap();
    }
    corrupt(b);
    var::attach(b).map(drop)
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn attach_validates_every_header_field() {
    assert_eq!(attach_after(|_| {}), Ok(()));
    assert_eq!(attach_after(|b| put_u64(b, 0, 0x1234)), Err(AttachError::BadMagic(0x1234)));
    assert_eq!(attach_after(|b| b[0] ^= 1), Err(AttachError::BadMagic(var::MAGIC ^ 1)));
    assert_eq!(attach_after(|b| put_u32(b, 8, 1)), Err(AttachError::BadVersion { found: 1, expected: 2 }));
    assert_eq!(attach_after(|b| put_u32(b, 8, 3)), Err(AttachError::BadVersion { found: 3, expected: 2 }));
    assert_eq!(attach_after(|b| put_u32(b, 12, 12)), Err(AttachError::BadAlign(12)));
    assert_eq!(attach_after(|b| put_u32(b, 12, 0)), Err(AttachError::BadAlign(0)));
    assert_eq!(attach_after(|b| put_u32(b, 12, 1 << 20)), Err(AttachError::BadAlign(1 << 20)));
    assert_eq!(attach_after(|b| put_u64(b, 16, 300)), Err(AttachError::BadCapacity(300)));
    assert_eq!(attach_after(|b| put_u64(b, 16, 0)), Err(AttachError::BadCapacity(0)));
    assert_eq!(attach_after(|b| put_u64(b, 16, 1 << 60)), Err(AttachError::BadCapacity(1 << 60)));
    // A capacity that is valid but not this region's size: never trust it for bounds.
    assert_eq!(
        attach_after(|b| put_u64(b, 16, 512)),
        Err(AttachError::LengthMismatch { header: (HEADER_LEN + 512) as u64, region: HEADER_LEN + 256 })
    );
    assert_eq!(attach_after(|b| put_u64(b, 24, 128)), Err(AttachError::BadDataOffset(128)));
    // Indices: write < read, write beyond read + capacity, misaligned.
    assert_eq!(attach_after(|b| put_u64(b, 256, 40)), Err(AttachError::BadIndices { read: 40, write: 32 }));
    assert_eq!(attach_after(|b| put_u64(b, 128, 16 + 264)), Err(AttachError::BadIndices { read: 16, write: 280 }));
    assert_eq!(attach_after(|b| put_u64(b, 128, 33)), Err(AttachError::BadIndices { read: 16, write: 33 }));
    assert_eq!(attach_after(|b| put_u64(b, 256, 17)), Err(AttachError::BadIndices { read: 17, write: 32 }));
}

#[test]
fn attach_refuses_short_misaligned_and_wrong_capacity_regions() {
    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    assert_eq!(var::attach(&mut b[..100]).map(drop), Err(AttachError::TooShort(100)));
    let len = b.len();
    assert_eq!(
        var::attach(&mut b[..len - 8]).map(drop),
        Err(AttachError::LengthMismatch { header: len as u64, region: len - 8 })
    );
    let addr = b.as_ptr() as usize + 1;
    assert_eq!(var::attach(&mut b[1..]).map(drop), Err(AttachError::Misaligned(addr)));
    // A never-formatted (zeroed) region is not a queue.
    let mut z = Mem::new(256);
    assert_eq!(var::attach(z.bytes()).map(drop), Err(AttachError::BadMagic(0)));
}

#[test]
fn reattach_keeps_published_messages_and_drops_unpublished() {
    let mut m = Mem::new(1024);
    let b = m.bytes();
    var::init(b, Config::new(1024)).unwrap();
    {
        let (mut p, _c) = var::attach(b).unwrap();
        assert!(push_bytes(&mut p, 1, b"kept"));
        p.alloc(4).unwrap().unwrap().copy_from_slice(b"lost");
        p.push_more(2).unwrap(); // staged, never published: a crash here loses nothing pushed
    }
    let (_p, mut c) = var::attach(b).unwrap();
    assert_eq!(pop_bytes(&mut c), Some((1, b"kept".to_vec())));
    assert!(c.front().unwrap().is_none());
}

/// Runs `f` against a consumer after the producer side's memory was overwritten.
fn consumer_sees(corrupt: impl FnOnce(&mut [u8])) -> Corrupt {
    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    {
        let (mut p, _c) = var::attach(b).unwrap();
        assert!(push_bytes(&mut p, 1, b"abc")); // frame at data 0..16
    }
    corrupt(b);
    // Attach validated the indices at attach time; corruption of frames is found on read.
    let (_p, mut c) = var::attach(b).unwrap();
    c.front().unwrap_err()
}

#[test]
fn consumer_refuses_corrupt_frames() {
    let d = HEADER_LEN;
    // len below the frame header
    assert_eq!(consumer_sees(|b| put_u32(b, d, 3)), Corrupt::Frame { at: 0, len: 3, flags: 0 });
    // len running past the write index
    assert_eq!(consumer_sees(|b| put_u32(b, d, 100)), Corrupt::Frame { at: 0, len: 100, flags: 0 });
    // len above any possible frame
    assert_eq!(consumer_sees(|b| put_u32(b, d, u32::MAX)), Corrupt::Frame { at: 0, len: u32::MAX, flags: 0 });
    // unknown flag bits
    assert_eq!(consumer_sees(|b| b[d + 6] = 0x80), Corrupt::Frame { at: 0, len: 11, flags: 0x80 });
}

#[test]
fn consumer_refuses_wrap_marker_beyond_write() {
    let c = consumer_sees(|b| {
        // Turn the frame into a wrap marker: it would skip 256 bytes, past write (16).
        b[HEADER_LEN + 6] = 1;
    });
    assert_eq!(c, Corrupt::Frame { at: 0, len: 11, flags: 1 });
}

#[test]
fn runtime_index_corruption_is_detected() {
    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    let base = b.as_mut_ptr();
    let len = b.len();
    // SAFETY: `m` outlives both ends; we poke the indices only between their calls,
    // from this thread, to play a hostile peer.
    let (mut p, mut c) = unsafe { var::attach_raw(base, len) }.unwrap();
    assert!(push_bytes(&mut p, 1, b"x"));
    let poke = |off: usize, v: u64| {
        // SAFETY: the offsets are the header's index slots, inside the region.
        unsafe { base.add(off).cast::<u64>().write(v) }
    };
    // The consumer's index moves beyond what was published: the producer refuses it
    // (when it next needs to reread it, i.e. when the ring looks full).
    poke(256, 1000);
    for _ in 0..20 {
        match p.alloc(8) {
            Ok(Some(_)) => p.push(1).unwrap(),
            Ok(None) => panic!("full without noticing the bad index"),
            Err(e) => {
                assert!(matches!(e, AllocError::Corrupt(Corrupt::ReadIndex { read: 1000, .. })), "{e}");
                break;
            }
        }
    }
    poke(256, 0);
    // The producer's index jumps beyond a full ring: the consumer refuses it.
    poke(128, 10_000);
    // Drain what the consumer already knows about, then it rereads the index.
    let err = loop {
        match c.pop() {
            Ok(()) => continue,
            Err(PopError::Corrupt(e)) => break e,
            Err(PopError::Empty) => panic!("empty without noticing the bad index"),
        }
    };
    assert!(matches!(err, Corrupt::WriteIndex { write: 10_000, .. }), "{err}");
    // Misaligned write index.
    poke(128, c.read_index() + 3);
    assert!(matches!(c.front(), Err(Corrupt::WriteIndex { .. })));
}

#[test]
fn ends_are_send_and_work_across_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Producer<'static>>();
    assert_send::<Consumer<'static>>();
    let (mut p, mut c) = VarQueue::with_capacity(1 << 12);
    const N: u64 = if cfg!(miri) { 3_000 } else { 200_000 };
    let t = std::thread::spawn(move || {
        for i in 0..N {
            let msg = pattern(i, (i % 97) as usize);
            loop {
                if let Some(buf) = p.alloc(msg.len()).unwrap() {
                    buf.copy_from_slice(&msg);
                    p.push((i % 65536) as u16).unwrap();
                    break;
                }
                std::hint::spin_loop();
            }
        }
    });
    let mut i = 0;
    while i < N {
        if let Some(m) = c.front().unwrap() {
            assert_eq!(m.msg_type(), (i % 65536) as u16);
            assert_eq!(m.payload(), &pattern(i, (i % 97) as usize)[..]);
            c.pop().unwrap();
            i += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    t.join().unwrap();
}

/// Collects `(type, payload)` of every frame the producer can still peek from `from`.
fn producer_walk(p: &Producer<'_>, from: u64) -> Vec<(u16, Vec<u8>)> {
    let mut out = vec![];
    let mut i = from;
    while let Some(m) = p.peek(i).unwrap() {
        assert!(m.index() >= i && m.end() > m.index());
        out.push((m.msg_type(), m.payload().to_vec()));
        i = m.end();
    }
    assert_eq!(i, p.published_index(), "the walk ends at the published index");
    out
}

#[test]
fn producer_peeks_its_unconsumed_frames_across_a_wrap() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    assert!(push_bytes(&mut p, 0, &[0; 112])); // 120-byte frame
    assert!(push_bytes(&mut p, 0, &[0; 56])); // 64-byte frame: indices at 184
    pop_bytes(&mut c).unwrap();
    pop_bytes(&mut c).unwrap();
    assert_eq!(p.released_index(), 184);
    assert!(producer_walk(&p, p.released_index()).is_empty());
    for i in 1..=5u16 {
        assert!(push_bytes(&mut p, i, &pattern(i as u64, 8)));
    }
    // Frame 5 sits after a wrap marker at 248: the walk skips it.
    let all: Vec<(u16, Vec<u8>)> = (1..=5u16).map(|i| (i, pattern(i as u64, 8))).collect();
    assert_eq!(producer_walk(&p, p.released_index()), all);
    // The consumer takes two: the producer now sees three unconsumed.
    pop_bytes(&mut c).unwrap();
    pop_bytes(&mut c).unwrap();
    assert_eq!(p.released_index(), 216);
    assert_eq!(producer_walk(&p, p.released_index()), all[2..]);
    // A frame the consumer released after we read the index is still intact: only our
    // own later alloc reuses it.
    let stale = 184;
    pop_bytes(&mut c).unwrap();
    assert_eq!(producer_walk(&p, stale), all);
    // Staged (push_more) frames are not published yet: not peekable.
    p.alloc(1).unwrap().unwrap()[0] = 9;
    p.push_more(6).unwrap();
    assert_eq!(producer_walk(&p, p.released_index()), all[3..]);
    p.publish();
    assert_eq!(producer_walk(&p, p.released_index()).len(), 3);
    // At the end: nothing; a misaligned index: refused, never read.
    assert!(p.peek(p.published_index()).unwrap().is_none());
    assert!(matches!(p.peek(217), Err(Corrupt::Frame { at: 217, .. })));
    assert!(matches!(c.peek(217), Err(Corrupt::Frame { at: 217, .. })));
    assert!(matches!(c.contiguous(3, 100), Err(Corrupt::Frame { at: 3, .. })));
}

#[test]
fn producer_peek_validates_what_a_peer_may_have_written() {
    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    let base = b.as_mut_ptr();
    let len = b.len();
    // SAFETY: `m` outlives the producer; we scribble on a frame between its calls,
    // from this thread, as a hostile consumer process could.
    let (mut p, _c) = unsafe { var::attach_raw(base, len) }.unwrap();
    assert!(push_bytes(&mut p, 1, b"abc")); // frame at data 0..16
    assert!(push_bytes(&mut p, 2, b"de")); // 16..32
                                           // SAFETY: the first frame's length field, inside the data area.
    unsafe { base.add(HEADER_LEN).cast::<u32>().write(200u32.to_le()) };
    assert_eq!(p.peek(0).unwrap_err(), Corrupt::Frame { at: 0, len: 200, flags: 0 });
    // The second frame is intact and still readable on its own.
    assert_eq!(p.peek(16).unwrap().unwrap().payload(), b"de");
    // SAFETY: as above: flags of the second frame.
    unsafe { base.add(HEADER_LEN + 16 + 6).write(0x40) };
    assert!(matches!(p.peek(16), Err(Corrupt::Frame { at: 16, flags: 0x40, .. })));
}

#[test]
fn producer_peek_while_the_consumer_pops_concurrently() {
    const ROUNDS: u64 = if cfg!(miri) { 20 } else { 2_000 };
    let (mut p, mut c) = VarQueue::with_capacity(1 << 10);
    let consumer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < ROUNDS * 8 {
            match c.front().unwrap() {
                Some(m) => {
                    assert_eq!(m.payload(), &pattern(next, (next % 40) as usize)[..]);
                    c.pop().unwrap();
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
    });
    let mut seq = 0u64;
    for _ in 0..ROUNDS {
        for _ in 0..8 {
            while !push_bytes(&mut p, 0, &pattern(seq, (seq % 40) as usize)) {
                std::thread::yield_now();
            }
            seq += 1;
        }
        // Walk what the consumer has not released: a contiguous run of our messages
        // ending at the last one pushed, each intact.
        let walked = producer_walk(&p, p.released_index());
        let first = seq - walked.len() as u64;
        for (k, (_, payload)) in walked.iter().enumerate() {
            let s = first + k as u64;
            assert_eq!(payload, &pattern(s, (s % 40) as usize));
        }
    }
    consumer.join().unwrap();
}

#[test]
fn peers_made_together_see_each_other_leave() {
    let (p, c) = VarQueue::with_capacity(256);
    assert_eq!((p.peer(), c.peer()), (Peer::Alive, Peer::Alive));
    assert!(!p.is_abandoned() && !c.is_abandoned());
    drop(c);
    assert_eq!(p.peer(), Peer::Gone);
    assert!(p.is_abandoned());

    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    let (mut p, mut c) = var::attach(b).unwrap();
    assert!(push_bytes(&mut p, 3, b"last"));
    drop(p);
    assert!(c.is_abandoned());
    assert_eq!(pop_bytes(&mut c), Some((3, b"last".to_vec())), "published before leaving: kept");
}

#[test]
fn raw_ends_track_nothing_and_dropping_one_writes_nothing() {
    let mut m = Mem::new(256);
    let b = m.bytes();
    var::init(b, Config::new(256)).unwrap();
    let before = b.to_vec();
    let (base, len) = (b.as_mut_ptr(), b.len());
    // SAFETY: `m` outlives both ends.
    let (p, c) = unsafe { var::attach_raw(base, len) }.unwrap();
    assert_eq!((p.peer(), c.peer()), (Peer::Untracked, Peer::Untracked));
    drop(c);
    assert_eq!(p.peer(), Peer::Untracked);
    assert!(!p.is_abandoned());
    drop(p);
    assert_eq!(m.bytes().to_vec(), before, "dropping raw ends left the region as it was");
}
