//! The frame reader over byte streams that deliver any chunking: frames are
//! reassembled whole and in order from pieces cut at every possible boundary, with
//! user frames kept unpopped while control frames behind them are handled and cut
//! out; bad bytes are refused as soon as they can be; `EINTR` is retried, the end of
//! the stream and `WouldBlock` are told apart; a buffer full of kept frames says
//! `Full` (or grows, up to the peer's queue) and never beyond its limits.

use proptest::prelude::*;
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read};
use tcpshm_proto::frame::{frame_len, msg_type};
use tcpshm_proto::{encode, FrameError, FrameKind};
use tcpshm_test_support::net::frame;
use tcpshm_transport_tcp::{Fill, FrameReader, InFrame};

/// A stream that hands out `wire` in the given chunk sizes, with a `WouldBlock`
/// (and, now and then, an `EINTR`) between chunks, then the end of the stream.
struct Chunked {
    wire: VecDeque<u8>,
    sizes: Vec<usize>,
    at: usize,
    turn: u64,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.turn += 1;
        if self.turn.is_multiple_of(3) {
            return Err(ErrorKind::WouldBlock.into());
        }
        if self.turn.is_multiple_of(7) {
            return Err(ErrorKind::Interrupted.into());
        }
        if self.wire.is_empty() {
            return Ok(0);
        }
        let size = self.sizes.get(self.at % self.sizes.len().max(1)).copied().unwrap_or(1).max(1);
        self.at += 1;
        let n = size.min(buf.len()).min(self.wire.len());
        for (d, s) in buf.iter_mut().zip(self.wire.drain(..n)) {
            *d = s;
        }
        Ok(n)
    }
}

#[derive(Debug, Clone)]
enum Item {
    User { ty: u16, seq: u64, payload: Vec<u8> },
    Heartbeat(u64),
    Ack(u64),
}

impl Item {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Item::User { ty, seq, payload } => frame(*ty, *seq, 0, payload),
            Item::Heartbeat(a) => encode::heartbeat(0, *a).to_vec(),
            Item::Ack(a) => encode::ack(0, *a).to_vec(),
        }
    }
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (0u16..=msg_type::MAX_USER, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(ty, seq, payload)| Item::User { ty, seq, payload }),
        1 => any::<u64>().prop_map(Item::Heartbeat),
        1 => any::<u64>().prop_map(Item::Ack),
    ]
}

/// Reads `items` through `r` from a stream chunked by `sizes`, keeping up to `keep`
/// user frames unpopped before popping them; returns what came out, in order.
fn read_all(items: &[Item], sizes: Vec<usize>, keep: usize, initial: usize) -> Vec<Item> {
    let wire: VecDeque<u8> = items.iter().flat_map(Item::bytes).collect();
    let mut s = Chunked { wire, sizes, at: 0, turn: 0 };
    // The peer's queue bounds what a reader must hold for kept frames.
    let mut r = FrameReader::new(initial, 4096);
    r.set_backlog(64 * 1024);
    let mut out = Vec::new();
    let mut kept = 0;
    let pop = |r: &mut FrameReader, out: &mut Vec<Item>| {
        let m = r.front().expect("a kept frame");
        out.push(Item::User { ty: m.msg_type, seq: m.seq, payload: m.payload.to_vec() });
        let len = m.payload.len();
        assert_eq!(r.pop(), Some(frame_len(len)));
    };
    let mut eof = false;
    let mut rounds = 0;
    while !eof || kept > 0 {
        rounds += 1;
        assert!(rounds < 1_000_000, "no progress");
        match r.fill(&mut s, usize::MAX).unwrap() {
            Fill::Bytes(_) | Fill::WouldBlock => {}
            Fill::Eof => eof = true,
            Fill::Full => {
                assert!(kept > 0, "full with nothing kept");
                pop(&mut r, &mut out);
                kept -= 1;
                continue;
            }
        }
        while let Some(f) = r.next_frame().unwrap() {
            match f.kind {
                FrameKind::User => kept += 1,
                FrameKind::Heartbeat => {
                    out.push(Item::Heartbeat(f.header.ack));
                    r.release_control(&f);
                }
                FrameKind::Ack => {
                    out.push(Item::Ack(f.header.ack));
                    r.release_control(&f);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        while kept > keep || (eof && kept > 0) {
            pop(&mut r, &mut out);
            kept -= 1;
        }
    }
    assert!(r.is_empty() && r.partial() == 0, "bytes left over");
    out
}

/// Control frames are handled as they are decoded, user frames when popped: the
/// order within each kind is the wire's.
fn same(items: &[Item], out: &[Item]) -> bool {
    let users =
        |v: &[Item]| v.iter().filter(|i| matches!(i, Item::User { .. })).map(|i| format!("{i:?}")).collect::<Vec<_>>();
    let ctl =
        |v: &[Item]| v.iter().filter(|i| !matches!(i, Item::User { .. })).map(|i| format!("{i:?}")).collect::<Vec<_>>();
    users(items) == users(out) && ctl(items) == ctl(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_are_reassembled_from_any_chunking(
        items in proptest::collection::vec(item(), 0..60),
        sizes in proptest::collection::vec(1usize..200, 1..20),
        keep in 0usize..8,
        initial in prop_oneof![Just(1024usize), Just(4096), Just(1 << 16)],
    ) {
        let out = read_all(&items, sizes, keep, initial);
        prop_assert!(same(&items, &out), "in {items:?}\nout {out:?}");
    }
}

#[test]
fn one_byte_at_a_time_and_all_at_once() {
    let items: Vec<Item> = (0..50)
        .map(|k| match k % 5 {
            0 => Item::Heartbeat(k),
            1 => Item::Ack(k),
            _ => Item::User { ty: (k % 7) as u16, seq: k, payload: vec![k as u8; (k as usize * 37) % 900] },
        })
        .collect();
    for (sizes, keep) in
        [(vec![1], 0), (vec![1], 5), (vec![1 << 20], 0), (vec![1 << 20], 40), (vec![3, 1, 4, 1, 5, 9], 3)]
    {
        let out = read_all(&items, sizes.clone(), keep, 1024);
        assert!(same(&items, &out), "sizes {sizes:?} keep {keep}");
    }
}

/// A reader fed `bytes` one at a time: the error, or `None` if all decoded.
fn first_error(bytes: &[u8], max_frame: u32) -> (Option<FrameError>, usize) {
    let mut r = FrameReader::new(1024, max_frame);
    for (i, b) in bytes.iter().enumerate() {
        let mut one = &[*b][..];
        assert!(matches!(r.fill(&mut one, usize::MAX).unwrap(), Fill::Bytes(1)));
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    if f.kind != FrameKind::User {
                        r.release_control(&f);
                    }
                }
                Ok(None) => break,
                Err(e) => return (Some(e), i + 1),
            }
        }
    }
    (None, bytes.len())
}

#[test]
fn bad_bytes_are_refused_as_soon_as_they_show() {
    // A length above the maximum: from its 4 bytes, not after a frame's worth.
    let (e, at) = first_error(&u32::MAX.to_le_bytes(), 4096);
    assert_eq!((e, at), (Some(FrameError::TooLong { len: u32::MAX, max: 4096 }), 4));
    let (e, at) = first_error(&[0u8; 24], 4096);
    assert_eq!((e, at), (Some(FrameError::TooShort { len: 0 }), 4));
    // Bad flags: once the header is whole.
    let mut b = frame(1, 0, 0, b"abc");
    b[6] = 1;
    assert_eq!(first_error(&b, 4096).0, Some(FrameError::BadFlags(1)));
    // After good frames, at the right place: the type is known from its 6th byte.
    let mut wire = frame(1, 0, 0, b"ok");
    let good = wire.len();
    wire.extend_from_slice(&frame(0xFF42, 0, 0, b""));
    assert_eq!(first_error(&wire, 4096), (Some(FrameError::UnknownControl(0xFF42)), good + 6));
}

#[test]
fn eof_wouldblock_and_interrupted_are_told_apart() {
    struct Script(VecDeque<io::Result<Vec<u8>>>);
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(Ok(b)) => {
                    buf[..b.len()].copy_from_slice(&b);
                    Ok(b.len())
                }
                Some(Err(e)) => Err(e),
            }
        }
    }
    let hb = encode::heartbeat(0, 1).to_vec();
    let mut s = Script(
        [
            Err(ErrorKind::Interrupted.into()),
            Ok(hb[..10].to_vec()),
            Err(ErrorKind::WouldBlock.into()),
            Ok(hb[10..].to_vec()),
            Err(io::Error::from_raw_os_error(104)),
        ]
        .into_iter()
        .collect(),
    );
    let mut r = FrameReader::new(1024, 4096);
    assert_eq!(r.fill(&mut s, usize::MAX).unwrap(), Fill::Bytes(10), "EINTR retried");
    assert_eq!(r.next_frame().unwrap(), None);
    assert_eq!(r.partial(), 10);
    assert_eq!(r.fill(&mut s, usize::MAX).unwrap(), Fill::WouldBlock);
    assert_eq!(r.fill(&mut s, usize::MAX).unwrap(), Fill::Bytes(14));
    let f: InFrame = r.next_frame().unwrap().unwrap();
    assert_eq!((f.kind, f.header.ack, r.frame_bytes(&f)), (FrameKind::Heartbeat, 1, &hb[..]));
    r.release_control(&f);
    assert_eq!(r.fill(&mut s, usize::MAX).unwrap_err().raw_os_error(), Some(104));
    assert_eq!(r.fill(&mut s, usize::MAX).unwrap(), Fill::Eof);
}

#[test]
fn the_budget_bounds_one_fill() {
    let wire: Vec<u8> = (0..10).flat_map(|k| frame(1, k, 0, &[k as u8; 100])).collect();
    let mut r = FrameReader::new(1 << 16, 4096);
    let mut s = &wire[..];
    assert_eq!(r.fill(&mut s, 300).unwrap(), Fill::Bytes(300));
    assert_eq!(r.fill(&mut s, 0).unwrap(), Fill::Bytes(1), "a budget of 0 still reads a byte");
}

#[test]
fn a_buffer_full_of_kept_frames_says_full_then_grows_up_to_the_backlog() {
    let wire: Vec<u8> = (0..40).flat_map(|k| frame(1, k, 0, &[k as u8; 100])).collect();
    // No backlog: the buffer stays at its size and says Full until a pop.
    let mut r = FrameReader::new(1024, 1024);
    r.set_backlog(0);
    let mut s = &wire[..];
    let mut fulls = 0;
    let mut popped = 0u64;
    while popped < 40 {
        match r.fill(&mut s, usize::MAX).unwrap() {
            Fill::Full => {
                fulls += 1;
                assert!(r.is_stuck() || fulls == 1);
                let m = r.front().unwrap();
                assert_eq!(m.seq, popped);
                r.pop();
                popped += 1;
            }
            Fill::Bytes(_) => while r.next_frame().unwrap().is_some() {},
            Fill::Eof => {
                while let Some(m) = r.front() {
                    assert_eq!(m.seq, popped);
                    r.pop();
                    popped += 1;
                }
            }
            Fill::WouldBlock => unreachable!(),
        }
        assert_eq!(r.capacity(), 1024, "never grows without a backlog");
    }
    assert!(fulls > 0);
    // With the peer's queue as backlog, kept frames make it grow (doubling), so the
    // frames behind them can be read, but not beyond the backlog.
    let mut r = FrameReader::new(1024, 1024);
    r.set_backlog(2000);
    let mut s = &wire[..];
    for _ in 0..100 {
        match r.fill(&mut s, usize::MAX).unwrap() {
            Fill::Bytes(_) => while r.next_frame().unwrap().is_some() {},
            Fill::Full | Fill::Eof => {}
            Fill::WouldBlock => unreachable!(),
        }
    }
    assert!(r.capacity() > 1024, "grew for the kept frames");
    assert!(r.capacity() <= 2000 + 64 * 1024, "{}", r.capacity());
}

#[test]
fn a_frame_larger_than_the_buffer_grows_it_once_up_to_the_limit() {
    let big = frame(1, 0, 0, &vec![7u8; 10_000]);
    let mut r = FrameReader::new(1024, 16 * 1024);
    assert_eq!(r.capacity(), 1024);
    let mut s = &big[..];
    let f = loop {
        r.fill(&mut s, usize::MAX).unwrap();
        if let Some(f) = r.next_frame().unwrap() {
            break f;
        }
    };
    assert_eq!((f.len, r.payload(&f).len()), (big.len(), 10_000));
    assert!(r.capacity() >= big.len() && r.capacity() <= 16 * 1024);
    let grown = r.capacity();
    r.pop();
    // The same size again: no growth.
    let mut s = &big[..];
    while r.next_frame().unwrap().is_none() {
        r.fill(&mut s, usize::MAX).unwrap();
    }
    assert_eq!(r.capacity(), grown);
    r.clear();
    assert!(r.is_empty());
}
