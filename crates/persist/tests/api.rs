//! The store's newer operations: `ack_beyond`, session words, durability switches,
//! what `Store::recovery` reports, and space held until the next sync.

mod common;

use common::{name, TempDir};
use std::path::{Path, PathBuf};
use tcpshm_persist::{
    Durability, EpochChange, OpenOutcome, Options, Recovery, SessionWord, Store, StoreError, HEADER_PAGE,
};
use tcpshm_proto::Name;

const CAP: usize = 4096;
/// File offset of the writer's boot id (crate docs, file layout).
const OFF_BOOT: usize = 320;

fn ab() -> (Name, Name) {
    (name("alice"), name("bob"))
}

fn open_with(dir: &Path, d: Durability) -> Store {
    let (a, b) = ab();
    Store::open(dir, a, b, &Options::new(CAP).durability(d), None, 0).expect("open").0
}

fn push(s: &mut Store, msg: &[u8]) -> u64 {
    s.alloc(msg.len()).unwrap().expect("room").copy_from_slice(msg);
    s.push(1, 0).unwrap()
}

fn seqs(s: &mut Store) -> Vec<u64> {
    let mut c = s.cursor_at(s.first_unacked()).unwrap();
    let mut out = vec![];
    while let Some((f, next)) = s.frame(c).unwrap() {
        out.push(f.seq);
        c = next;
    }
    out
}

/// A process dies with the store open: its page-cache image is what the next open
/// finds (in the same machine session). Copied to `into`, returned as its directory.
fn killed(s: &Store, into: &TempDir) -> PathBuf {
    let image = std::fs::read(s.path()).unwrap();
    std::fs::write(into.path().join("alice@bob.tcpshm"), image).unwrap();
    into.path().to_path_buf()
}

/// The machine restarted: the boot id in the file is no longer this session's.
fn restarted(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    for x in &mut b[OFF_BOOT..OFF_BOOT + 16] {
        *x = !*x;
    }
    std::fs::write(path, b).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn ack_beyond_drops_the_queue_and_continues_at_upto() {
    let d = TempDir::new("beyond");
    let mut s = open_with(d.path(), Durability::Process);
    for i in 0..4u8 {
        push(&mut s, &[i]);
    }
    // At or below next_seq: exactly `ack`.
    assert_eq!(s.ack_beyond(1).unwrap(), 1);
    assert_eq!(s.ack_beyond(1).unwrap(), 0);
    assert_eq!(s.ack_beyond(4).unwrap(), 3);
    assert_eq!((s.first_unacked(), s.next_seq()), (4, 4));
    push(&mut s, b"x");
    push(&mut s, b"y");
    // Beyond: the two queued are dropped, the queue continues at 20.
    assert_eq!(s.ack_beyond(20).unwrap(), 2);
    assert_eq!((s.first_unacked(), s.next_seq(), s.queue_depth(), s.queued_bytes()), (20, 20, 0, 0));
    assert_eq!(push(&mut s, b"z"), 20);
    // Staged messages hold seqs from next_seq: refused until published.
    s.alloc(1).unwrap().unwrap();
    s.push_more(1, 0).unwrap();
    assert!(matches!(s.ack_beyond(30), Err(StoreError::Staged { staged: 1 })));
    s.publish().unwrap();
    assert!(matches!(s.ack_beyond(1 << 63), Err(StoreError::SeqOutOfRange { .. })));
    assert_eq!(s.ack_beyond(30).unwrap(), 2);
    drop(s);
    let mut s = open_with(d.path(), Durability::Process);
    assert_eq!((s.first_unacked(), s.next_seq(), seqs(&mut s)), (30, 30, vec![]));
    assert_eq!(push(&mut s, b"after"), 30);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn ack_beyond_in_sync_mode_survives_a_kill_before_the_next_sync() {
    // Sync mode keeps the acknowledged frames' space until the next sync: a killed
    // process leaves them in the ring, below a jump of seqs to `acked`.
    let d = TempDir::new("beyond-sync");
    let mut s = open_with(d.path(), Durability::Sync { every: 100 });
    for i in 0..3u8 {
        push(&mut s, &[i; 40]);
    }
    s.ack(1).unwrap();
    assert_eq!(s.ack_beyond(10).unwrap(), 2);
    assert_eq!(push(&mut s, b"ten"), 10);
    s.ack_beyond(15).unwrap();
    assert_eq!(push(&mut s, b"fifteen"), 15);
    let copy = TempDir::new("beyond-sync-killed");
    let dir = killed(&s, &copy);
    let mut s2 = open_with(&dir, Durability::Sync { every: 100 });
    assert_eq!(s2.recovery(), Recovery::Resumed { acked_frames: 4 });
    assert_eq!((s2.first_unacked(), s2.next_seq(), seqs(&mut s2)), (15, 16, vec![15]));
    // The frames' space comes back at the first sync.
    let free = s2.free_bytes();
    s2.flush().unwrap();
    assert_eq!(s2.free_bytes(), free);
    assert_eq!(push(&mut s2, b"16"), 16);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn session_words_persist_across_reopen_migrate_and_adopt_and_reset_clears_them() {
    let d = TempDir::new("session");
    let (a, b) = ab();
    let mut s = open_with(d.path(), Durability::Process);
    for w in SessionWord::ALL {
        assert_eq!(s.session_word(w), 0);
    }
    s.set_session_word(SessionWord::PeerMaxMessage, 1 << 20);
    s.set_session_word(SessionWord::PeerQueueCapacity, 64 << 20);
    s.set_session_word(SessionWord::LastLogin, 7);
    let words = |s: &Store| SessionWord::ALL.map(|w| s.session_word(w));
    assert_eq!(words(&s), [1 << 20, 64 << 20, 0, 7]);
    drop(s);
    let s = open_with(d.path(), Durability::Process);
    assert_eq!(words(&s), [1 << 20, 64 << 20, 0, 7]);
    drop(s);
    let (s, _) = Store::migrate(d.path(), a, b, &Options::new(2 * CAP)).unwrap();
    assert_eq!(words(&s), [1 << 20, 64 << 20, 0, 7]);
    drop(s);
    let o = Options::new(2 * CAP);
    let (mut s, out) = Store::open(d.path(), a, b, &o, Some(name("day1")), 0).unwrap();
    assert_eq!(out, OpenOutcome::EpochAdopted);
    assert_eq!(words(&s), [1 << 20, 64 << 20, 0, 7]);
    assert!(matches!(s.switch_epoch(name("day2"), 0).unwrap(), EpochChange::Reset(_)));
    assert_eq!(words(&s), [0; 4]);
    drop(s);
    let (s, _) = Store::open(d.path(), a, b, &o, None, 0).unwrap();
    assert_eq!(words(&s), [0; 4]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn recovery_says_how_the_file_was_found() {
    let d = TempDir::new("recovery");
    let sync = Durability::Sync { every: 2 };
    let mut s = open_with(d.path(), sync);
    assert_eq!(s.recovery(), Recovery::Created);
    for i in 0..5u8 {
        push(&mut s, &[i; 10]);
    }
    s.set_session_word(SessionWord::Pushed, 42);
    s.set_consumed(3).unwrap();
    // Synced: 4 messages (every 2), plus the consumed change made the 6th op: synced.
    assert_eq!(s.unsynced(), 0);
    push(&mut s, b"unsynced");
    drop(s); // syncs what is left
    let mut s = open_with(d.path(), sync);
    assert_eq!(s.recovery(), Recovery::Resumed { acked_frames: 0 });
    assert_eq!(seqs(&mut s), [0, 1, 2, 3, 4, 5]);
    // A message and a session word after the last sync, then the machine stops.
    push(&mut s, b"lost");
    s.set_session_word(SessionWord::Pushed, 43);
    assert_eq!(s.unsynced(), 1);
    let copy = TempDir::new("recovery-restart");
    let dir = killed(&s, &copy);
    drop(s);
    restarted(&dir.join("alice@bob.tcpshm"));
    let mut s = open_with(&dir, sync);
    match s.recovery() {
        Recovery::RolledBack { cut_sync: false, dropped: 1, .. } => {}
        r => panic!("{r:?}"),
    }
    assert_eq!((seqs(&mut s), s.consumed(), s.session_word(SessionWord::Pushed)), ((0..6).collect(), 3, 42));
    drop(s);
    // A Process store after a restart: consistent, unverified.
    let d = TempDir::new("recovery-process");
    let mut s = open_with(d.path(), Durability::Process);
    push(&mut s, b"p");
    drop(s);
    restarted(&d.path().join("alice@bob.tcpshm"));
    let mut s = open_with(d.path(), Durability::Process);
    assert_eq!(s.recovery(), Recovery::Unverified { acked_frames: 0 });
    assert_eq!(seqs(&mut s), [0]);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn sync_mode_holds_acked_space_until_a_sync_and_alloc_reclaims_it() {
    let d = TempDir::new("reclaim");
    let mut s = open_with(d.path(), Durability::Sync { every: 0 });
    let mut n = 0;
    while s.alloc(100).unwrap().is_some() {
        s.push(1, 0).unwrap();
        n += 1;
    }
    assert_eq!(n, CAP / 128);
    let upto = s.next_seq();
    s.ack(upto).unwrap();
    // Counted as free, not released yet: the next alloc syncs to reclaim it.
    assert_eq!(s.free_bytes(), CAP as u64);
    assert_eq!(s.unsynced(), n as u64 + 1);
    assert!(s.alloc(100).unwrap().is_some());
    assert_eq!(s.unsynced(), 0);
    s.push(1, 0).unwrap();
    assert_eq!(s.queue_depth(), 1);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn switching_durability_both_ways() {
    let d = TempDir::new("switch");
    let mut s = open_with(d.path(), Durability::Process);
    push(&mut s, b"a");
    s.set_durability(Durability::Sync { every: 1 }).unwrap();
    assert_eq!(s.durability(), Durability::Sync { every: 1 });
    push(&mut s, b"b");
    assert_eq!(s.unsynced(), 0);
    s.ack(1).unwrap();
    // Leaving Sync syncs, so acknowledged space is free at once afterwards.
    s.set_durability(Durability::Process).unwrap();
    assert_eq!(s.unsynced(), 0);
    s.ack(2).unwrap();
    assert_eq!(s.free_bytes(), CAP as u64);
    drop(s);
    // After a restart, the Process record written by the switch says: no promise.
    restarted(&d.path().join("alice@bob.tcpshm"));
    let s = open_with(d.path(), Durability::Process);
    assert!(matches!(s.recovery(), Recovery::Unverified { .. }), "{:?}", s.recovery());
    assert_eq!((s.first_unacked(), s.next_seq()), (2, 2));
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn take_synced_ranges_reports_each_msync() {
    // The power-loss tests model the disk from these ranges.
    let d = TempDir::new("ranges");
    let data = HEADER_PAGE + 384;
    let mut s = open_with(d.path(), Durability::Sync { every: 1 });
    // A file just built is synced whole: its first sync covers the header page, the
    // ring header and the frame.
    assert_eq!(s.take_synced_ranges(), []);
    push(&mut s, b"x");
    assert_eq!(s.take_synced_ranges(), [(0, data + 32)]);
    drop(s);
    // Reopened: the handle's first sync makes the whole file durable, then the
    // header page with its record.
    let mut s = open_with(d.path(), Durability::Sync { every: 1 });
    push(&mut s, &[7; 100]);
    let len = tcpshm_persist::file_len(CAP);
    assert_eq!(s.take_synced_ranges(), [(0, len), (0, HEADER_PAGE)]);
    push(&mut s, &[7; 100]);
    assert_eq!(s.take_synced_ranges(), [(0, data + 32 + 2 * 128)]);
}
