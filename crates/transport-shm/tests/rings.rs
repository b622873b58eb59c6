//! The ring pair of a connection file as one side uses it (`Rings`), without a
//! session: wire frames of every size in order both ways and across wrap-around,
//! backpressure, the consumed counts (the commit point and the ack), persistence in
//! the file across both sides' drops, copies that keep their numbers, walks of the
//! outbound ring, corruption refused with a typed error naming the ring, the peer's
//! lock, and a producer and a consumer on two threads.

use std::os::unix::fs::FileExt;
use tcpshm_proto::frame::{msg_type, Header, HEADER_LEN};
use tcpshm_proto::Name;
use tcpshm_test_support::TempDir;
use tcpshm_transport_shm::{Capacities, Direction, RingError, Rings, ShmDir, ShmFile, Side};

const CAPS: Capacities = Capacities { server_to_client: 4096, client_to_server: 8192 };
/// Offsets in a file of `CAPS`: the client->server ring's region, and in a region the
/// write index, the read index and the data.
const C2S: u64 = 4096 + 8192;
const S2C: u64 = 4096;
const WRITE_IDX: u64 = 128;
const READ_IDX: u64 = 256;
const DATA: u64 = 384;

fn names() -> (Name, Name) {
    (Name::new("srv").unwrap(), Name::new("cli").unwrap())
}

struct Pair {
    t: TempDir,
    dir: ShmDir,
    srv: Rings,
    cli: Rings,
}

fn pair(tag: &str, caps: Capacities) -> Pair {
    let t = TempDir::new(tag);
    let dir = ShmDir::new("/dev/shm", t.shm_prefix()).unwrap();
    let (s, c) = names();
    let srv = Rings::new(ShmFile::create_or_open(&dir, &s, &c, caps).unwrap());
    let cli = Rings::new(ShmFile::open(&dir, &s, &c).unwrap());
    Pair { t, dir, srv, cli }
}

fn content(seq: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| (seq.wrapping_mul(0x9E37_79B9) ^ (i as u64).wrapping_mul(31)) as u8)
}

fn push(r: &mut Rings, seq: u64, len: usize) -> bool {
    match r.tx.alloc(len).unwrap() {
        Some(buf) => {
            buf.iter_mut().zip(content(seq, len)).for_each(|(b, x)| *b = x);
            r.tx.push_more((seq % 0xFEFF) as u16, seq, seq / 2).unwrap();
            r.tx.publish();
            true
        }
        None => false,
    }
}

fn expect(r: &mut Rings, seq: u64, len: usize) {
    let m = r.rx.front().unwrap().unwrap_or_else(|| panic!("message {seq} missing"));
    assert_eq!((m.msg_type, m.seq, m.ack, m.payload.len()), ((seq % 0xFEFF) as u16, seq, seq / 2, len));
    assert!(m.payload.iter().copied().eq(content(seq, len)), "content of {seq}");
    assert_eq!(m.frame_len, (HEADER_LEN + len).next_multiple_of(8));
    r.rx.pop(seq + 1).unwrap();
}

fn patch(path: &std::path::Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn every_size_in_order_both_ways_across_wrap_around() {
    let mut p = pair("sizes", CAPS);
    assert_eq!((p.srv.tx.max_message(), p.cli.tx.max_message()), (2048 - 8 - 16, 4096 - 8 - 16));
    for dir in 0..2 {
        let (from, to) = if dir == 0 { (&mut p.srv, &mut p.cli) } else { (&mut p.cli, &mut p.srv) };
        let max = from.tx.max_message();
        let mut seq = 0;
        for len in 0..=max {
            assert!(push(from, seq, len), "an empty ring refused {len} bytes");
            expect(to, seq, len);
            seq += 1;
        }
        let size = |k: u64| ((k * 7919) % (max as u64 / 3)) as usize;
        let mut popped = seq;
        while popped < 30_000 {
            while seq < popped + 50 && push(from, seq, size(seq)) {
                seq += 1;
            }
            while popped < seq && to.rx.front().unwrap().is_some() {
                expect(to, popped, size(popped));
                popped += 1;
            }
        }
        assert!(to.rx.front().unwrap().is_none() && to.rx.is_empty());
        assert_eq!(from.tx.peer_consumed(), popped, "the consumed count is the sender's ack");
    }
}

#[test]
fn limits_and_misuse_are_typed_errors() {
    let mut p = pair("limits", CAPS);
    let max = p.srv.tx.max_message();
    assert_eq!(p.srv.tx.alloc(max + 1).unwrap_err(), RingError::TooLarge { len: max + 1, max });
    assert!(matches!(p.srv.tx.alloc(usize::MAX), Err(RingError::TooLarge { .. })));
    assert_eq!(p.srv.tx.push_more(1, 0, 0), Err(RingError::NothingAllocated));
    // A second alloc replaces the first: one frame.
    p.srv.tx.alloc(10).unwrap().unwrap();
    p.srv.tx.alloc(3).unwrap().unwrap().copy_from_slice(b"abc");
    p.srv.tx.push_more(1, 0, 0).unwrap();
    assert_eq!(p.srv.tx.staged(), 1);
    assert!(p.cli.rx.front().unwrap().is_none(), "staged is not published");
    assert_eq!(p.srv.tx.publish(), 1);
    assert_eq!(p.srv.tx.publish(), 0);
    assert_eq!(p.cli.rx.front().unwrap().unwrap().payload, b"abc");
}

/// An aborted batch: staged frames are dropped, the peer never sees them, their room
/// is free again and the next frames (with the same seqs) follow the published ones.
#[test]
fn discarded_frames_never_reach_the_peer() {
    let mut p = pair("discard", CAPS);
    assert!(push(&mut p.srv, 0, 30));
    let free = p.srv.tx.free_bytes();
    for seq in 1..4 {
        p.srv.tx.alloc(500).unwrap().unwrap().fill(0xEE);
        p.srv.tx.push_more(1, seq, 0).unwrap();
    }
    p.srv.tx.alloc(7).unwrap().unwrap(); // allocated, not pushed: goes too
    assert_eq!(p.srv.tx.discard_staged(), 3);
    assert_eq!((p.srv.tx.staged(), p.srv.tx.free_bytes()), (0, free));
    assert_eq!(p.srv.tx.push_more(1, 1, 0), Err(RingError::NothingAllocated));
    assert_eq!(p.srv.tx.publish(), 0);
    for seq in 1..3 {
        assert!(push(&mut p.srv, seq, 40));
    }
    assert_eq!(p.srv.tx.end().unwrap(), Some(3), "three frames, numbered without a gap");
    for seq in 0..3 {
        expect(&mut p.cli, seq, if seq == 0 { 30 } else { 40 });
    }
    assert!(p.cli.rx.front().unwrap().is_none());
}

#[test]
fn a_full_ring_is_backpressure_and_pops_make_room() {
    let mut p = pair("full", CAPS);
    let free = p.srv.tx.free_bytes();
    assert_eq!(free, 4096);
    let mut seq = 0;
    while push(&mut p.srv, seq, 100) {
        seq += 1;
    }
    assert!(seq >= 25, "only {seq} frames of 128 bytes in 4 KiB");
    assert!(p.srv.tx.alloc(100).unwrap().is_none(), "still full");
    assert!(p.srv.tx.free_bytes() < 128);
    expect(&mut p.cli, 0, 100);
    assert!(push(&mut p.srv, seq, 100), "a pop made room");
}

#[test]
fn consumed_counts_are_the_commit_point_and_the_ack() {
    let mut p = pair("counts", CAPS);
    for seq in 0..5 {
        assert!(push(&mut p.cli, seq, 8));
    }
    expect(&mut p.srv, 0, 8);
    expect(&mut p.srv, 1, 8);
    assert_eq!((p.srv.rx.consumed(), p.cli.tx.peer_consumed()), (2, 2));
    // A stale copy (already consumed another way) is released without counting.
    p.srv.rx.raise_consumed(3);
    assert_eq!(p.srv.rx.front().unwrap().unwrap().seq, 2, "the ring still holds it");
    p.srv.rx.release_stale().unwrap();
    assert_eq!(p.srv.rx.consumed(), 3);
    // raise never lowers.
    p.srv.rx.raise_consumed(1);
    assert_eq!(p.srv.rx.consumed(), 3);
    expect(&mut p.srv, 3, 8);
    assert_eq!(p.cli.tx.peer_consumed(), 4);
    // Releasing an empty ring is nothing.
    expect(&mut p.srv, 4, 8);
    p.srv.rx.release_stale().unwrap();
    assert_eq!(p.srv.rx.consumed(), 5);
}

/// What a kill between the two halves of a pop leaves: the count stored, the frame
/// not released. Both survive the processes, in the file; the next consumer sees the
/// frame below its count (a stale copy) and the sender counts it as consumed.
#[test]
fn the_file_keeps_frames_and_counts_across_both_sides_drops() {
    let Pair { t, dir, mut srv, mut cli } = pair("persist", CAPS);
    let (s, c) = names();
    for seq in 0..6 {
        assert!(push(&mut cli, seq, 20));
    }
    // Staged but never published: gone with the process.
    cli.tx.alloc(5).unwrap().unwrap();
    cli.tx.push_more(1, 6, 0).unwrap();
    expect(&mut srv, 0, 20);
    expect(&mut srv, 1, 20);
    srv.rx.raise_consumed(3); // the count of a pop of seq 2 that was killed before the release
    let id = srv.file_id();
    assert_eq!(id, cli.file_id());
    drop((srv, cli));
    let mut srv = Rings::new(ShmFile::create_or_open(&dir, &s, &c, CAPS).unwrap());
    let cli = Rings::new(ShmFile::open(&dir, &s, &c).unwrap());
    assert_eq!(srv.file_id(), id, "the same file");
    assert_eq!((srv.rx.consumed(), cli.tx.peer_consumed()), (3, 3));
    assert_eq!(srv.rx.end().unwrap(), Some(6), "six published, the staged one lost");
    assert_eq!(cli.tx.end().unwrap(), Some(6));
    assert_eq!(srv.rx.front().unwrap().unwrap().seq, 2, "below the count: a stale copy");
    srv.rx.release_stale().unwrap();
    for seq in 3..6 {
        expect(&mut srv, seq, 20);
    }
    assert_eq!(srv.rx.end().unwrap(), None);
    drop(t);
}

#[test]
fn walks_of_the_outbound_ring_and_copies_keep_their_numbers() {
    let mut p = pair("walk", Capacities::symmetric(1024));
    let mut next = 0u64;
    for round in 0..60u64 {
        while push(&mut p.cli, next, ((round * 13) % 90) as usize) {
            next += 1;
        }
        assert_eq!(p.cli.tx.end().unwrap(), Some(next), "round {round}");
        let first = p.cli.tx.peer_consumed();
        let mut seqs = Vec::new();
        let mut largest = 0;
        p.cli
            .tx
            .for_each(|seq, bytes| {
                let h = Header::read(bytes.first_chunk().unwrap());
                assert_eq!((h.seq, bytes.len() % 8), (seq, 0), "a whole, padded wire frame");
                largest = largest.max(h.payload_len());
                seqs.push(seq);
                true
            })
            .unwrap();
        assert_eq!(seqs, (first..next).collect::<Vec<_>>(), "round {round}: every unreleased frame, in order");
        assert_eq!(p.cli.tx.largest_from(first).unwrap(), largest);
        assert_eq!(p.cli.tx.largest_from(next).unwrap(), 0);
        // A frame copied byte for byte into the other ring keeps type, seq and ack.
        let mut frame = Vec::new();
        p.cli
            .tx
            .for_each(|_, b| {
                frame = b.to_vec();
                false
            })
            .unwrap();
        if p.srv.tx.write_frame(&frame).unwrap() {
            p.srv.tx.publish();
            let h = Header::read(frame.first_chunk().unwrap());
            let m = p.cli.rx.front().unwrap().unwrap();
            assert_eq!(
                (m.msg_type, m.seq, m.ack, m.payload),
                (h.msg_type, h.seq, h.ack, &frame[HEADER_LEN..h.len as usize])
            );
            p.cli.rx.release_stale().unwrap();
        }
        // Pop a part, so the walks start anywhere in the ring.
        for _ in 0..(next - first).div_ceil(2) {
            let Some(m) = p.srv.rx.front().unwrap() else { break };
            let seq = m.seq;
            p.srv.rx.pop(seq + 1).unwrap();
        }
    }
    assert!(matches!(p.srv.tx.write_frame(&[0u8; 10]), Err(RingError::BadFrame { .. })));
}

fn ring_error(e: &RingError, direction: Direction) {
    match e {
        RingError::Corrupt { direction: d, .. } | RingError::BadFrame { direction: d, .. } => {
            assert_eq!(*d, direction, "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn corruption_is_a_typed_error_naming_the_ring() {
    // A write index beyond a whole ring.
    let mut p = pair("corrupt-write", CAPS);
    assert!(push(&mut p.cli, 0, 8));
    patch(p.srv.path(), C2S + WRITE_IDX, &(1u64 << 40).to_le_bytes());
    let e = p.srv.rx.front().unwrap_err();
    ring_error(&e, Direction::ClientToServer);
    assert!(e.to_string().contains("client->server ring of"), "{e}");
    assert!(p.srv.rx.end().is_err());
    // A read index beyond what was written (the peer's index of our outbound ring).
    let mut p = pair("corrupt-read", CAPS);
    patch(p.srv.path(), S2C + READ_IDX, &(1u64 << 20).to_le_bytes());
    let e = (0..1000).find_map(|k| match p.srv.tx.alloc(64) {
        Ok(Some(_)) => {
            p.srv.tx.push_more(1, k, 0).unwrap();
            p.srv.tx.publish();
            None
        }
        Ok(None) => panic!("full without noticing the impossible index"),
        Err(e) => Some(e),
    });
    ring_error(&e.expect("an error"), Direction::ServerToClient);
    assert!(p.srv.tx.for_each(|_, _| true).is_err());
    // A reserved type inside the ring.
    let mut p = pair("corrupt-type", CAPS);
    assert!(push(&mut p.cli, 0, 8));
    patch(p.srv.path(), C2S + DATA + 4, &msg_type::HEARTBEAT.to_le_bytes());
    ring_error(&p.srv.rx.front().unwrap_err(), Direction::ClientToServer);
    // A frame too short to hold the wire header's seq and ack.
    let mut p = pair("corrupt-short", CAPS);
    assert!(push(&mut p.cli, 0, 8));
    patch(p.srv.path(), C2S + DATA, &12u32.to_le_bytes());
    let e = p.srv.rx.front().unwrap_err();
    ring_error(&e, Direction::ClientToServer);
}

#[test]
fn sides_locks_and_identity() {
    let Pair { t, dir, srv, cli } = pair("sides", CAPS);
    assert_eq!((srv.side(), cli.side()), (Side::Server, Side::Client));
    assert_eq!((srv.capacities(), cli.capacities()), (CAPS, CAPS));
    assert_eq!(srv.path(), cli.path());
    assert!(srv.peer_alive().unwrap() && cli.peer_alive().unwrap());
    assert_eq!(srv.bump_epoch(), 1);
    let file = cli.into_file();
    assert_eq!(file.epoch(), 1, "one file, one epoch");
    let (s, c) = names();
    assert!(ShmFile::open(&dir, &s, &c).is_err(), "the client side is still held");
    drop(file);
    assert!(!srv.peer_alive().unwrap(), "the lock went with the last handle");
    drop(t);
}

#[test]
fn a_producer_and_a_consumer_on_two_threads() {
    const N: u64 = 300_000;
    let Pair { t, srv: mut rx_side, cli: mut tx_side, .. } = pair("threads", Capacities::symmetric(1 << 14));
    let producer = std::thread::spawn(move || {
        let mut seq = 0;
        while seq < N {
            if push(&mut tx_side, seq, (seq % 300) as usize) {
                seq += 1;
            } else {
                std::thread::yield_now();
            }
        }
        tx_side
    });
    let mut seq = 0;
    while seq < N {
        if rx_side.rx.front().unwrap().is_some() {
            expect(&mut rx_side, seq, (seq % 300) as usize);
            seq += 1;
        } else {
            std::thread::yield_now();
        }
    }
    let tx_side = producer.join().unwrap();
    assert_eq!(tx_side.tx.peer_consumed(), N);
    assert_eq!(tx_side.tx.end().unwrap(), None);
    drop(t);
}
