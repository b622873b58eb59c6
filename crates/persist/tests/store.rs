//! Every operation of the store, and every way `open` refuses a file.

mod common;

use common::{name, TempDir};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tcpshm_persist::{
    file_len, Durability, EpochChange, HeaderError, Inconsistency, OpenError, OpenOutcome, Options, Recovery, Store,
    StoreError, HEADER_PAGE,
};
use tcpshm_proto::frame::{Header, HEADER_LEN};
use tcpshm_proto::Name;

const CAP: usize = 4096;
/// File offset of the ring's data area (store header page + ring header).
const DATA: u64 = (HEADER_PAGE + tcpshm_ring::var::HEADER_LEN) as u64;
const OFF_ACKED: u64 = 256;
const OFF_CONSUMED: u64 = 264;
const OFF_SEND_CURSOR: u64 = 272;
const OFF_NEXT_SEQ: u64 = 280;

fn ab() -> (Name, Name) {
    (name("alice"), name("bob"))
}

fn open(dir: &Path) -> Result<(Store, OpenOutcome), OpenError> {
    let (a, b) = ab();
    Store::open(dir, a, b, &Options::new(CAP), None, 0)
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join("alice@bob.tcpshm")
}

fn push(s: &mut Store, msg: &[u8], msg_type: u16) -> u64 {
    s.alloc(msg.len()).unwrap().expect("room").copy_from_slice(msg);
    let ack = s.consumed();
    s.push(msg_type, ack).unwrap()
}

/// (seq, type, ack, payload) of every queued message.
fn queued(s: &mut Store) -> Vec<(u64, u16, u64, Vec<u8>)> {
    let mut c = s.cursor_at(s.first_unacked()).unwrap();
    let mut out = vec![];
    while let Some((f, next)) = s.frame(c).unwrap() {
        out.push((f.seq, f.msg_type, f.ack, f.payload.to_vec()));
        c = next;
    }
    out
}

fn patch(path: &Path, off: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn read_u64(path: &Path, off: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off).unwrap();
    u64::from_le_bytes(b)
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn create_then_reopen_keeps_everything() {
    let d = TempDir::new("reopen");
    let (mut s, o) = open(d.path()).unwrap();
    assert_eq!(o, OpenOutcome::Created);
    assert_eq!((s.first_unacked(), s.next_seq(), s.consumed(), s.send_cursor()), (0, 0, 0, 0));
    assert_eq!(s.capacity(), CAP);
    assert_eq!(s.max_payload(), CAP / 2 - HEADER_LEN);
    assert_eq!(std::fs::metadata(s.path()).unwrap().len(), file_len(CAP) as u64);
    for i in 0..5u8 {
        assert_eq!(push(&mut s, &vec![i; i as usize * 3], i as u16 + 10), i as u64);
    }
    assert_eq!(s.ack(2).unwrap(), 2);
    s.set_consumed(7).unwrap();
    s.set_send_cursor(4).unwrap();
    let before = queued(&mut s);
    drop(s);
    let (mut s, o) = open(d.path()).unwrap();
    assert_eq!(o, OpenOutcome::Opened);
    assert_eq!((s.first_unacked(), s.next_seq(), s.consumed(), s.send_cursor()), (2, 5, 7, 4));
    assert_eq!(queued(&mut s), before);
    assert_eq!(before.iter().map(|m| m.0).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(before[0], (2, 12, 0, vec![2; 6]));
    // Only the store file is in the directory (no temporary left behind).
    assert_eq!(d.files(), ["alice@bob.tcpshm"]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn file_is_mode_0600_and_directory_is_created_0700() {
    let d = TempDir::new("mode");
    let sub = d.path().join("nested/stores");
    let (s, _) = Store::open(&sub, name("a"), name("b"), &Options::new(CAP), None, 0).unwrap();
    assert_eq!(std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(s.path(), sub.join("a@b.tcpshm"));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn symlink_or_directory_at_the_store_path_is_refused() {
    let d = TempDir::new("symlink");
    let target = d.path().join("elsewhere");
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, store_path(d.path())).unwrap();
    assert!(matches!(open(d.path()), Err(OpenError::NotRegularFile { .. })));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    std::fs::remove_file(store_path(d.path())).unwrap();
    std::fs::create_dir(store_path(d.path())).unwrap();
    assert!(matches!(open(d.path()), Err(OpenError::NotRegularFile { .. })));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn names_cannot_escape_the_directory() {
    // Every way out is refused before a name exists; valid names give one file name.
    for bad in ["../x", "a/b", ".hidden", "a@b", "", "a\0b"] {
        assert!(Name::new(bad).is_err(), "{bad:?}");
    }
    let d = TempDir::new("escape");
    let (s, _) = Store::open(d.path(), name("a..b"), name("c-d_e.f"), &Options::new(CAP), None, 0).unwrap();
    assert_eq!(s.path().parent().unwrap(), d.path());
    assert_eq!(d.files(), ["a..b@c-d_e.f.tcpshm"]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn second_open_is_locked_out_until_the_first_is_dropped() {
    let d = TempDir::new("lock");
    let (s, _) = open(d.path()).unwrap();
    assert!(matches!(open(d.path()), Err(OpenError::Locked { .. })));
    let (a, b) = ab();
    assert!(matches!(Store::remove(d.path(), a, b), Err(OpenError::Locked { .. })));
    assert!(matches!(Store::migrate(d.path(), a, b, &Options::new(2 * CAP)), Err(OpenError::Locked { .. })));
    drop(s);
    let (_s, o) = open(d.path()).unwrap();
    assert_eq!(o, OpenOutcome::Opened);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn a_builder_holding_the_temporary_file_locks_creation_out() {
    let d = TempDir::new("templock");
    let tmp = d.path().join(".alice@bob.tcpshm.tmp");
    let f = std::fs::File::create(&tmp).unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
    assert!(matches!(open(d.path()), Err(OpenError::Locked { .. })));
    drop(f);
    // A stale temporary file (its builder died) is simply reused.
    std::fs::write(&tmp, b"half-written garbage").unwrap();
    let (_s, o) = open(d.path()).unwrap();
    assert_eq!(o, OpenOutcome::Created);
    assert_eq!(d.files(), ["alice@bob.tcpshm"]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn alloc_push_errors() {
    let d = TempDir::new("errors");
    let (mut s, _) = open(d.path()).unwrap();
    let max = s.max_payload();
    assert!(matches!(s.alloc(max + 1), Err(StoreError::TooLarge { len, max: m }) if len == max + 1 && m == max));
    assert!(matches!(s.push(1, 0), Err(StoreError::NothingAllocated)));
    s.alloc(1).unwrap().unwrap();
    assert!(matches!(s.push(0xFF00, 0), Err(StoreError::ReservedType(0xFF00))));
    // The allocation survives a refused type.
    assert_eq!(s.push(0xFEFF, 0).unwrap(), 0);
    assert!(matches!(s.push(1, 0), Err(StoreError::NothingAllocated)));
    // The largest message fits in an empty queue.
    s.ack(1).unwrap();
    assert!(s.alloc(max).unwrap().is_some());
    assert_eq!(s.push(1, 0).unwrap(), 1);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn full_queue_backpressure_then_ack_frees_room() {
    let d = TempDir::new("full");
    let (mut s, _) = open(d.path()).unwrap();
    let mut n = 0;
    while let Some(b) = s.alloc(100).unwrap() {
        b.fill(n as u8);
        s.push(1, 0).unwrap();
        n += 1;
    }
    assert_eq!(n, CAP as u64 / 128); // 24 + 100 -> 128-byte frames
    assert_eq!(s.queue_depth(), n);
    assert!(s.free_bytes() < 128);
    // A full queue reports no room and a later push has nothing to publish.
    assert!(matches!(s.push(1, 0), Err(StoreError::NothingAllocated)));
    assert_eq!(s.ack(3).unwrap(), 3);
    assert!(s.alloc(100).unwrap().is_some());
    assert_eq!(s.push(1, 0).unwrap(), n);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn ack_rules() {
    let d = TempDir::new("ack");
    let (mut s, _) = open(d.path()).unwrap();
    for _ in 0..4 {
        push(&mut s, b"x", 1);
    }
    assert!(matches!(s.ack(5), Err(StoreError::AckBeyondSent { upto: 5, next_seq: 4 })));
    assert_eq!((s.first_unacked(), s.queue_depth()), (0, 4)); // never applied
    assert_eq!(s.ack(0).unwrap(), 0);
    assert_eq!(s.ack(2).unwrap(), 2);
    assert_eq!(s.ack(1).unwrap(), 0); // behind: ignored
    assert_eq!(s.ack(2).unwrap(), 0);
    assert_eq!(s.ack(4).unwrap(), 2);
    assert_eq!((s.first_unacked(), s.queue_depth(), s.queued_bytes()), (4, 0, 0));
    assert_eq!(read_u64(s.path(), OFF_ACKED), 4);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn consumed_and_send_cursor() {
    let d = TempDir::new("consumed");
    let (mut s, _) = open(d.path()).unwrap();
    assert_eq!(s.bump_consumed().unwrap(), 1);
    s.set_consumed(10).unwrap();
    assert!(matches!(s.set_consumed(9), Err(StoreError::ConsumedBackwards { current: 10, requested: 9 })));
    s.set_consumed(10).unwrap();
    assert_eq!(read_u64(s.path(), OFF_CONSUMED), 10);
    assert!(matches!(s.set_send_cursor(1), Err(StoreError::SeqOutOfRange { .. })));
    push(&mut s, b"", 1);
    s.set_send_cursor(1).unwrap();
    s.set_send_cursor(0).unwrap(); // may go back: a reconnect resends
    assert_eq!(read_u64(s.path(), OFF_SEND_CURSOR), 0);
    assert_eq!(push(&mut s, b"", 1), 1);
    // The ack stamped into the frame is what push was given.
    let q = queued(&mut s);
    assert_eq!(q[1].2, 10);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn batches_are_published_at_once_and_lost_whole_if_unpublished() {
    let d = TempDir::new("batch");
    let (mut s, _) = open(d.path()).unwrap();
    for i in 0..3u8 {
        s.alloc(2).unwrap().unwrap().copy_from_slice(&[i, i]);
        assert_eq!(s.push_more(5, 0).unwrap(), i as u64);
    }
    assert_eq!((s.staged(), s.next_seq(), s.queue_depth()), (3, 0, 0));
    assert!(matches!(s.cursor_at(1), Err(StoreError::SeqOutOfRange { .. })));
    s.publish().unwrap();
    assert_eq!((s.staged(), s.next_seq()), (0, 3));
    // Staged but never published: gone after a reopen, and so is an alloc never pushed.
    s.alloc(1).unwrap().unwrap();
    s.push_more(5, 0).unwrap();
    s.alloc(1).unwrap().unwrap();
    drop(s);
    let (mut s, _) = open(d.path()).unwrap();
    assert_eq!(s.next_seq(), 3);
    assert_eq!(queued(&mut s).iter().map(|m| m.3.clone()).collect::<Vec<_>>(), [vec![0, 0], vec![1, 1], vec![2, 2]]);
    // The next push continues the sequence.
    assert_eq!(push(&mut s, b"z", 1), 3);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn send_runs_are_wire_frames_and_cursors_are_checked() {
    let d = TempDir::new("runs");
    let (mut s, _) = open(d.path()).unwrap();
    let sizes = [0usize, 1, 7, 8, 9, 100];
    for (i, &n) in sizes.iter().enumerate() {
        push(&mut s, &vec![0xA0 + i as u8; n], i as u16);
    }
    let c = s.cursor_at(0).unwrap();
    let run = s.send_run(c, usize::MAX).unwrap().unwrap();
    assert_eq!(run.count, sizes.len());
    assert_eq!(run.next.seq(), sizes.len() as u64);
    // Decode the run as the peer would.
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let h = Header::read(run.bytes[at..at + HEADER_LEN].try_into().unwrap());
        assert_eq!((h.len as usize, h.msg_type, h.flags, h.seq, h.ack), (HEADER_LEN + n, i as u16, 0, i as u64, 0));
        assert!(run.bytes[at + HEADER_LEN..at + HEADER_LEN + n].iter().all(|&b| b == 0xA0 + i as u8));
        assert!(run.bytes[at + HEADER_LEN + n..at + h.frame_len()].iter().all(|&b| b == 0));
        at += h.frame_len();
    }
    assert_eq!(at, run.bytes.len());
    // max_bytes limits the run but never below one frame.
    let run = s.send_run(c, 1).unwrap().unwrap();
    assert_eq!((run.count, run.bytes.len()), (1, 24));
    let run = s.send_run(c, 24 + 32 + 32).unwrap().unwrap();
    assert_eq!(run.count, 3);
    let next = run.next;
    assert_eq!(s.send_run(next, usize::MAX).unwrap().unwrap().count, 3);
    // At the end: nothing.
    let end = s.cursor_at(6).unwrap();
    assert!(s.send_run(end, usize::MAX).unwrap().is_none());
    // A cursor made before its frames were acked is stale; out-of-range seqs refused.
    s.ack(4).unwrap();
    assert!(matches!(s.send_run(c, 100), Err(StoreError::StaleCursor { seq: 0, acked: 4 })));
    assert!(matches!(s.cursor_at(3), Err(StoreError::SeqOutOfRange { seq: 3, acked: 4, next_seq: 6 })));
    assert!(matches!(s.cursor_at(7), Err(StoreError::SeqOutOfRange { .. })));
    let c4 = s.cursor_at(4).unwrap();
    assert_eq!(s.send_run(c4, usize::MAX).unwrap().unwrap().count, 2);
    // The end cursor sees frames pushed after it was made.
    push(&mut s, b"late", 9);
    let run = s.send_run(end, usize::MAX).unwrap().unwrap();
    assert_eq!((run.count, run.next.seq()), (1, 7));
    // A cursor from another store is refused.
    drop(s);
    let (mut s2, _) = open(d.path()).unwrap();
    assert!(matches!(s2.send_run(c4, 100), Err(StoreError::StaleCursor { .. })));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn runs_stop_at_the_ring_wrap_and_continue_after_it() {
    let d = TempDir::new("wrap");
    let (mut s, _) = open(d.path()).unwrap();
    let mut seq = 0;
    // Cycle many times around the ring; every message read back through runs.
    let mut next_to_send = s.cursor_at(0).unwrap();
    for round in 0..200u64 {
        let n = (round * 37 % 500) as usize;
        while s.alloc(n).unwrap().is_none() {
            let upto = s.first_unacked() + 1;
            s.ack(upto).unwrap();
        }
        s.push_more(1, 0).unwrap();
        s.publish().unwrap();
        seq += 1;
        while let Some(run) = s.send_run(next_to_send, usize::MAX).unwrap() {
            let mut at = 0;
            for k in 0..run.count {
                let h = Header::read(run.bytes[at..at + 24].try_into().unwrap());
                assert_eq!(h.seq, next_to_send.seq() + k as u64);
                at += h.frame_len();
            }
            assert_eq!(at, run.bytes.len());
            next_to_send = run.next;
        }
    }
    assert_eq!(next_to_send.seq(), seq);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn interrupted_ack_is_finished_on_open() {
    let d = TempDir::new("interrupted");
    let (mut s, _) = open(d.path()).unwrap();
    for i in 0..5u8 {
        push(&mut s, &[i], 1);
    }
    drop(s);
    // A crash between the `acked` store and the release leaves acked ahead of the ring.
    patch(&store_path(d.path()), OFF_ACKED, &3u64.to_le_bytes());
    let (mut s, _) = open(d.path()).unwrap();
    assert_eq!((s.first_unacked(), s.next_seq(), s.queue_depth()), (3, 5, 2));
    assert_eq!(queued(&mut s).iter().map(|m| m.0).collect::<Vec<_>>(), [3, 4]);
    // acked == next_seq: everything released.
    drop(s);
    patch(&store_path(d.path()), OFF_ACKED, &5u64.to_le_bytes());
    let (s, _) = open(d.path()).unwrap();
    assert_eq!((s.first_unacked(), s.next_seq(), s.queued_bytes()), (5, 5, 0));
}

/// A store with messages 0..5 queued, 2 of them acked, then closed. Frame `k`
/// (k = 2, 3, 4) is 32 bytes at ring offset 32 * k.
fn sample(d: &TempDir) -> PathBuf {
    let (mut s, _) = open(d.path()).unwrap();
    for i in 0..5u8 {
        push(&mut s, &[i; 5], 1);
    }
    s.ack(2).unwrap();
    s.set_consumed(9).unwrap();
    store_path(d.path())
}

/// Opens a bad store and returns the error, checking that the refused file was not
/// changed (a refused file is never "repaired" half-way).
fn open_err(d: &TempDir) -> OpenError {
    let before = std::fs::read(store_path(d.path())).ok();
    let e = match open(d.path()) {
        Err(e) => e,
        Ok(_) => panic!("opened a bad file"),
    };
    assert!(std::fs::read(store_path(d.path())).ok() == before, "a refused file was modified");
    e
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn foreign_truncated_and_resized_files_are_refused() {
    let d = TempDir::new("foreign");
    std::fs::write(store_path(d.path()), vec![b'#'; 10_000]).unwrap();
    assert!(matches!(open_err(&d), OpenError::Header { source: HeaderError::NotOurs { .. }, .. }));
    std::fs::write(store_path(d.path()), b"short").unwrap();
    assert!(matches!(open_err(&d), OpenError::Truncated { len: 5, .. }));
    std::fs::write(store_path(d.path()), b"").unwrap();
    assert!(matches!(open_err(&d), OpenError::Truncated { len: 0, .. }));
    std::fs::remove_file(store_path(d.path())).unwrap();

    let p = sample(&d);
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(file_len(CAP) as u64 - 1).unwrap();
    assert!(matches!(open_err(&d), OpenError::LengthMismatch { .. }));
    f.set_len(HEADER_PAGE as u64 + 100).unwrap();
    assert!(matches!(open_err(&d), OpenError::LengthMismatch { .. }));
    f.set_len(file_len(CAP) as u64 + 4096).unwrap();
    let e = open_err(&d);
    assert!(matches!(e, OpenError::LengthMismatch { .. }), "{e}");
    // The message says which file and what is wrong.
    assert!(e.to_string().contains("alice@bob.tcpshm") && e.to_string().contains("truncated or extended"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn every_header_field_is_checked() {
    let d = TempDir::new("header");
    let p = sample(&d);
    let good = std::fs::read(&p).unwrap();
    // Version.
    patch(&p, 8, &3u32.to_le_bytes());
    assert!(matches!(open_err(&d), OpenError::Header { source: HeaderError::Version { found: 3, expected: 2 }, .. }));
    // Any other byte of the immutable header: the checksum.
    for off in (12..244).step_by(3) {
        std::fs::write(&p, &good).unwrap();
        patch(&p, off, &[good[off as usize] ^ 0x01]);
        match open_err(&d) {
            OpenError::Header { source: HeaderError::Checksum { .. }, .. } => {}
            e => panic!("byte {off}: {e}"),
        }
    }
    std::fs::write(&p, &good).unwrap();
    let (s, _) = open(d.path()).unwrap();
    assert_eq!(s.consumed(), 9);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn other_names_and_other_capacity_are_refused() {
    let d = TempDir::new("names");
    let p = sample(&d);
    std::fs::copy(&p, d.path().join("carol@bob.tcpshm")).unwrap();
    match Store::open(d.path(), name("carol"), name("bob"), &Options::new(CAP), None, 0) {
        Err(OpenError::NamesDiffer { found, expected, .. }) => {
            assert_eq!((*found, *expected), ((name("alice"), name("bob")), (name("carol"), name("bob"))))
        }
        r => panic!("{:?}", r.map(|_| ())),
    }
    match Store::open(d.path(), name("alice"), name("bob"), &Options::new(2 * CAP), None, 0) {
        Err(OpenError::CapacityDiffers { found: CAP, expected, .. }) => assert_eq!(expected, 2 * CAP),
        r => panic!("{:?}", r.map(|_| ())),
    }
    assert!(matches!(
        Store::open(d.path(), name("alice"), name("bob"), &Options::new(1000), None, 0),
        Err(OpenError::Config { capacity: 1000, .. })
    ));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn ring_header_damage_is_refused() {
    let d = TempDir::new("ring");
    let p = sample(&d);
    patch(&p, HEADER_PAGE as u64, b"NOTARING");
    assert!(matches!(open_err(&d), OpenError::Ring { .. }));
    let d = TempDir::new("ring2");
    let p = sample(&d);
    // Ring capacity field (offset 16 of the ring header) disagreeing with the file.
    patch(&p, HEADER_PAGE as u64 + 16, &(CAP as u64 * 2).to_le_bytes());
    assert!(matches!(open_err(&d), OpenError::Ring { .. }));
    let d = TempDir::new("ring3");
    let p = sample(&d);
    // Write index (ring offset 128) beyond a full ring.
    patch(&p, HEADER_PAGE as u64 + 128, &(CAP as u64 * 3).to_le_bytes());
    assert_eq!(inconsistency(&d), Inconsistency::RingIndices { read: 64, write: CAP as u64 * 3 });
}

fn inconsistency(d: &TempDir) -> Inconsistency {
    match open_err(d) {
        OpenError::Inconsistent { source, .. } => source,
        e => panic!("{e}"),
    }
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn inconsistent_counters_are_refused() {
    let cases: [(u64, u64, Inconsistency); 5] = [
        (OFF_ACKED, 1 << 63, Inconsistency::CounterRange { field: "acked", value: 1 << 63 }),
        (OFF_CONSUMED, u64::MAX, Inconsistency::CounterRange { field: "consumed", value: u64::MAX }),
        (OFF_ACKED, 1, Inconsistency::Gap { acked: 1, oldest: 2 }),
        // Beyond the queue without the hint raised first (as `ack_beyond` does).
        (OFF_ACKED, 6, Inconsistency::Ahead { field: "acked", value: 6, next_seq: 5 }),
        (OFF_SEND_CURSOR, 6, Inconsistency::Ahead { field: "send_cursor", value: 6, next_seq: 5 }),
    ];
    for (off, value, expected) in cases {
        let d = TempDir::new("counters");
        let p = sample(&d);
        patch(&p, off, &value.to_le_bytes());
        assert_eq!(inconsistency(&d), expected);
    }
    // With an empty queue, next_seq is acked: acked beyond the hint is caught too.
    let d = TempDir::new("counters-empty");
    let (mut s, _) = open(d.path()).unwrap();
    push(&mut s, b"a", 1);
    s.ack(1).unwrap();
    drop(s);
    patch(&store_path(d.path()), OFF_ACKED, &2u64.to_le_bytes());
    assert_eq!(inconsistency(&d), Inconsistency::Ahead { field: "acked", value: 2, next_seq: 1 });
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn the_next_seq_hint_is_repaired_not_trusted() {
    // The hint leads only inside an `ack_beyond` cut before its commit point, or in a
    // damaged word: either way the queue decides, and the hint is rewritten.
    let d = TempDir::new("hint");
    let p = sample(&d);
    patch(&p, OFF_NEXT_SEQ, &9u64.to_le_bytes());
    let (mut s, _) = open(d.path()).unwrap();
    assert_eq!((s.first_unacked(), s.next_seq()), (2, 5));
    assert_eq!(queued(&mut s).iter().map(|m| m.0).collect::<Vec<_>>(), [2, 3, 4]);
    drop(s);
    assert_eq!(read_u64(&p, OFF_NEXT_SEQ), 5);
    // An interrupted ack to finish and a hint ahead: both repaired.
    patch(&p, OFF_ACKED, &4u64.to_le_bytes());
    patch(&p, OFF_NEXT_SEQ, &9u64.to_le_bytes());
    let (s, _) = open(d.path()).unwrap();
    assert_eq!((s.first_unacked(), s.next_seq(), s.recovery()), (4, 5, Recovery::Resumed { acked_frames: 2 }));
    // `acked` beyond the queue with the hint raised first: an `ack_beyond` that reached
    // its commit point before a crash. It is finished.
    drop(s);
    patch(&p, OFF_NEXT_SEQ, &9u64.to_le_bytes());
    patch(&p, OFF_ACKED, &9u64.to_le_bytes());
    let (s, _) = open(d.path()).unwrap();
    assert_eq!((s.first_unacked(), s.next_seq(), s.queue_depth()), (9, 9, 0));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn damaged_frames_are_refused() {
    let frame = |k: u64| DATA + 32 * k;
    // Seq of frame 3 changed: the sequence breaks.
    let d = TempDir::new("frames");
    let p = sample(&d);
    patch(&p, frame(3) + 8, &7u64.to_le_bytes());
    assert_eq!(inconsistency(&d), Inconsistency::SeqBroken { index: 96, expected: 3, found: 7 });
    // Control type in the queue.
    let d = TempDir::new("frames");
    let p = sample(&d);
    patch(&p, frame(4) + 4, &0xFF00u16.to_le_bytes());
    assert!(matches!(inconsistency(&d), Inconsistency::BadFrame { index: 128, .. }));
    // Non-zero padding (frame is 24 + 5 = 29 bytes, padded to 32).
    let d = TempDir::new("frames");
    let p = sample(&d);
    patch(&p, frame(2) + 30, &[1]);
    assert!(matches!(inconsistency(&d), Inconsistency::BadFrame { index: 64, reason: "non-zero padding" }));
    // Frame shorter than a wire header.
    let d = TempDir::new("frames");
    let p = sample(&d);
    patch(&p, frame(2), &16u32.to_le_bytes());
    assert!(matches!(inconsistency(&d), Inconsistency::BadFrame { index: 64, .. }));
    // Frame length running past the published data: the ring refuses it.
    let d = TempDir::new("frames");
    let p = sample(&d);
    patch(&p, frame(4), &1000u32.to_le_bytes());
    assert!(matches!(inconsistency(&d), Inconsistency::Ring(_)));
    // First queued seq is not `acked`.
    let d = TempDir::new("frames");
    let p = sample(&d);
    for k in 2..5 {
        patch(&p, frame(k) + 8, &(k + 10).to_le_bytes());
    }
    assert_eq!(inconsistency(&d), Inconsistency::Gap { acked: 2, oldest: 12 });
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn epoch_adopted_kept_or_reset() {
    let d = TempDir::new("epoch");
    let (a, b) = ab();
    let o = Options::new(CAP);
    let (mut s, out) = Store::open(d.path(), a, b, &o, None, 11).unwrap();
    assert_eq!((out, s.epoch(), s.created_unix_ns()), (OpenOutcome::Created, None, 11));
    push(&mut s, b"before login", 1);
    s.set_consumed(3).unwrap();
    drop(s);
    // First login: the epoch is adopted, the queue kept.
    let day1 = name("Server20180713");
    let (mut s, out) = Store::open(d.path(), a, b, &o, Some(day1), 22).unwrap();
    assert_eq!((out, s.epoch(), s.created_unix_ns()), (OpenOutcome::EpochAdopted, Some(day1), 11));
    assert_eq!((s.next_seq(), s.consumed()), (1, 3));
    assert_eq!(queued(&mut s)[0].3, b"before login");
    drop(s);
    let (mut s, out) = Store::open(d.path(), a, b, &o, Some(day1), 33).unwrap();
    assert_eq!(out, OpenOutcome::Opened);
    assert_eq!(s.switch_epoch(day1, 0).unwrap(), EpochChange::Unchanged);
    push(&mut s, b"day 1", 1);
    drop(s);
    // The server is renamed: everything is dropped, and reported.
    let day2 = name("Server20180714");
    let (mut s, out) = Store::open(d.path(), a, b, &o, Some(day2), 44).unwrap();
    match out {
        OpenOutcome::Reset(r) => {
            assert_eq!(r.previous_epoch, Some(day1));
            assert_eq!((r.dropped, r.previous_next_seq, r.previous_consumed), (2, 2, 3));
        }
        o => panic!("{o:?}"),
    }
    assert_eq!((s.next_seq(), s.first_unacked(), s.consumed(), s.created_unix_ns()), (0, 0, 0, 44));
    assert_eq!(push(&mut s, b"day 2", 1), 0);
    // Opening without an epoch keeps the one in the file.
    drop(s);
    let (s, out) = Store::open(d.path(), a, b, &o, None, 0).unwrap();
    assert_eq!((out, s.epoch()), (OpenOutcome::Opened, Some(day2)));
    assert_eq!(d.files(), ["alice@bob.tcpshm"]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn reset_and_adopt_on_an_open_store() {
    let d = TempDir::new("reset-open");
    let (mut s, _) = open(d.path()).unwrap();
    push(&mut s, b"one", 1);
    s.alloc(3).unwrap().unwrap().copy_from_slice(b"two");
    s.push_more(1, 0).unwrap();
    // Adopting publishes the staged message rather than losing it.
    assert_eq!(s.switch_epoch(name("e1"), 0).unwrap(), EpochChange::Adopted);
    assert_eq!((s.next_seq(), s.staged()), (2, 0));
    assert_eq!(queued(&mut s).iter().map(|m| m.3.clone()).collect::<Vec<_>>(), [b"one".to_vec(), b"two".to_vec()]);
    let old_cursor = s.cursor_at(0).unwrap();
    let r = match s.switch_epoch(name("e2"), 5).unwrap() {
        EpochChange::Reset(r) => r,
        c => panic!("{c:?}"),
    };
    assert_eq!(r.dropped, 2);
    assert!(matches!(s.send_run(old_cursor, 100), Err(StoreError::StaleCursor { .. })));
    // Still locked after the rebuild; and the new file reopens as it is.
    assert!(matches!(open(d.path()), Err(OpenError::Locked { .. })));
    push(&mut s, b"fresh", 2);
    drop(s);
    let (mut s, _) = open(d.path()).unwrap();
    assert_eq!((s.epoch(), s.created_unix_ns()), (Some(name("e2")), 5));
    assert_eq!(queued(&mut s), [(0, 2, 0, b"fresh".to_vec())]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn migrate_moves_queue_and_counters() {
    let d = TempDir::new("migrate");
    let (a, b) = ab();
    let (mut s, _) = open(d.path()).unwrap();
    // Wrap the ring once so the queue starts mid-ring.
    for i in 0..40u64 {
        push(&mut s, &[i as u8; 90], 3);
        if i >= 10 {
            s.ack(i - 9).unwrap();
        }
    }
    s.set_consumed(77).unwrap();
    s.set_send_cursor(35).unwrap();
    let before = queued(&mut s);
    let (acked, next) = (s.first_unacked(), s.next_seq());
    drop(s);
    // Too small for what is queued: refused, nothing changed.
    let small = Options::new(256);
    assert!(matches!(Store::migrate(d.path(), a, b, &small), Err(OpenError::DoesNotFit { queued: 10, .. })));
    // Bigger.
    let big = Options::new(4 * CAP);
    let (mut s, m) = Store::migrate(d.path(), a, b, &big).unwrap();
    assert_eq!((m.from_capacity, m.to_capacity, m.moved), (CAP, 4 * CAP, 10));
    assert_eq!((s.first_unacked(), s.next_seq(), s.consumed(), s.send_cursor()), (acked, next, 77, 35));
    assert_eq!(queued(&mut s), before);
    drop(s);
    let (mut s, out) = Store::open(d.path(), a, b, &big, None, 0).unwrap();
    assert_eq!(out, OpenOutcome::Opened);
    assert_eq!(queued(&mut s), before);
    drop(s);
    // Smaller again (fits), and a no-op migration.
    let (s, m) = Store::migrate(d.path(), a, b, &Options::new(2048)).unwrap();
    assert_eq!(m.moved, 10);
    drop(s);
    let (mut s, m) = Store::migrate(d.path(), a, b, &Options::new(2048)).unwrap();
    assert_eq!(m.moved, 0);
    assert_eq!(queued(&mut s), before);
    drop(s);
    assert_eq!(d.files(), ["alice@bob.tcpshm"]);
    // Nothing to migrate.
    assert!(matches!(Store::migrate(d.path(), b, a, &big), Err(OpenError::Io { .. })));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn list_and_remove() {
    let d = TempDir::new("list");
    let o = Options::new(CAP);
    for (l, r) in [("b", "x"), ("a", "y"), ("a", "x")] {
        Store::open(d.path(), name(l), name(r), &o, None, 0).unwrap();
    }
    std::fs::write(d.path().join("notes.txt"), b"").unwrap();
    std::fs::write(d.path().join(".a@z.tcpshm.tmp"), b"").unwrap();
    let l = Store::list(d.path()).unwrap();
    let pairs: Vec<(String, String)> = l.iter().map(|e| (e.local.to_string(), e.remote.to_string())).collect();
    assert_eq!(pairs, [("a".into(), "x".into()), ("a".into(), "y".into()), ("b".into(), "x".into())]);
    assert_eq!(l[0].path, d.path().join("a@x.tcpshm"));
    assert!(Store::remove(d.path(), name("a"), name("y")).unwrap());
    assert!(!Store::remove(d.path(), name("a"), name("y")).unwrap());
    assert!(!Store::remove(d.path().join("missing"), name("a"), name("y")).unwrap());
    assert_eq!(Store::list(d.path()).unwrap().len(), 2);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn group_commit_counts_operations() {
    let d = TempDir::new("sync");
    let (a, b) = ab();
    let o = Options::new(CAP).durability(Durability::Sync { every: 3 });
    let (mut s, _) = Store::open(d.path(), a, b, &o, None, 0).unwrap();
    push(&mut s, b"1", 1);
    push(&mut s, b"2", 1);
    assert_eq!(s.unsynced(), 2);
    s.ack(1).unwrap(); // third operation: synced
    assert_eq!(s.unsynced(), 0);
    for _ in 0..4 {
        s.alloc(1).unwrap().unwrap();
        s.push_more(1, 0).unwrap();
    }
    assert_eq!(s.unsynced(), 0);
    s.publish().unwrap(); // a batch of 4 counts 4
    assert_eq!(s.unsynced(), 0);
    s.bump_consumed().unwrap();
    assert_eq!(s.unsynced(), 1);
    s.flush().unwrap();
    assert_eq!(s.unsynced(), 0);
    // every: 0 syncs only on flush.
    s.set_durability(Durability::Sync { every: 0 }).unwrap();
    for _ in 0..10 {
        push(&mut s, b"x", 1);
    }
    assert_eq!(s.unsynced(), 10);
    s.flush().unwrap();
    assert_eq!(s.unsynced(), 0);
    // Process mode counts too (flush is available in every mode).
    s.set_durability(Durability::Process).unwrap();
    push(&mut s, b"y", 1);
    assert_eq!(s.unsynced(), 1);
    s.flush().unwrap();
    assert_eq!(s.unsynced(), 0);
    drop(s);
    let (s, _) = Store::open(d.path(), a, b, &o, None, 0).unwrap();
    assert_eq!((s.first_unacked(), s.next_seq(), s.consumed()), (1, 17, 1));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn the_store_moves_between_threads() {
    let d = TempDir::new("send");
    let (mut s, _) = open(d.path()).unwrap();
    push(&mut s, b"from main", 1);
    let s = std::thread::spawn(move || {
        push(&mut s, b"from thread", 1);
        s
    })
    .join()
    .unwrap();
    assert_eq!(s.next_seq(), 2);
    assert_eq!(std::fs::metadata(s.path()).unwrap().ino(), std::fs::metadata(store_path(d.path())).unwrap().ino());
}
