//! The tools' entry points: `Store::inspect` (read-only, safe on a live store),
//! `Store::check` (typed findings) and `Store::salvage` (the valid prefix of a refused
//! file).

mod common;

use common::{message, name, TempDir};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tcpshm_persist::{
    Durability, Finding, Inconsistency, InspectError, OpenError, Options, Recovery, SalvageSource, SessionWord, Store,
    Verdict, DAMAGED_SUFFIX,
};
use tcpshm_proto::Name;

const CAP: usize = 4096;
const OFF_BOOT: u64 = 320;
const OFF_ACKED: u64 = 256;
const OFF_NEXT_SEQ: u64 = 280;
const OFF_COMMIT: [u64; 2] = [512, 1024];
/// File offset of the ring's data area.
const DATA: u64 = 4096 + 384;

fn ab() -> (Name, Name) {
    (name("alice"), name("bob"))
}

fn opts(d: Durability) -> Options {
    Options::new(CAP).durability(d)
}

fn open(dir: &Path, d: Durability) -> Store {
    let (a, b) = ab();
    Store::open(dir, a, b, &opts(d), None, 0).expect("open").0
}

fn path(dir: &Path) -> PathBuf {
    dir.join("alice@bob.tcpshm")
}

fn patch(p: &Path, off: u64, bytes: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(bytes, off).unwrap();
}

fn restarted(p: &Path) {
    let mut id = [0u8; 16];
    std::fs::File::open(p).unwrap().read_exact_at(&mut id, OFF_BOOT).unwrap();
    patch(p, OFF_BOOT, &id.map(|x| !x));
}

/// Messages 0..5 of 24 bytes (32-byte frames at ring offset 32 * k), 2 acked.
fn sample(dir: &Path, d: Durability) {
    let mut s = open(dir, d);
    for i in 0..5u8 {
        s.alloc(8).unwrap().unwrap().fill(i);
        s.push(i as u16 + 1, 0).unwrap();
    }
    s.ack(2).unwrap();
    s.set_session_word(SessionWord::PeerMaxMessage, 99);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn inspect_reads_a_live_store_without_disturbing_it() {
    let d = TempDir::new("inspect");
    sample(d.path(), Durability::Process);
    let mut s = open(d.path(), Durability::Process);
    let before = std::fs::read(s.path()).unwrap();
    let i = Store::inspect(s.path()).unwrap();
    assert_eq!(std::fs::read(s.path()).unwrap(), before, "inspection wrote to the file");
    assert!(i.same_session);
    assert_eq!((i.header.local, i.header.remote, i.header.capacity), (name("alice"), name("bob"), CAP));
    let st = i.state.unwrap();
    assert_eq!((st.first_unacked, st.next_seq, st.session[0]), (2, 5, 99));
    assert_eq!(i.check.verdict, Verdict::Opens(Recovery::Resumed { acked_frames: 0 }));
    let got: Vec<(u64, u16, Vec<u8>)> = i.frames.iter().map(|f| (f.seq, f.msg_type, f.payload.clone())).collect();
    assert_eq!(got, [(2, 3, vec![2; 8]), (3, 4, vec![3; 8]), (4, 5, vec![4; 8])]);
    assert_eq!((i.live.acked, i.live.next_seq_hint, i.live.ring_read), (2, 5, 64));
    assert!(i.commits[0].is_some());
    // The owner goes on as if nothing happened.
    s.alloc(1).unwrap().unwrap();
    assert_eq!(s.push(1, 0).unwrap(), 5);
    // Not a store, too short, missing: typed errors.
    let junk = d.path().join("junk");
    std::fs::write(&junk, vec![7u8; 5000]).unwrap();
    assert!(matches!(Store::inspect(&junk), Err(InspectError::Header { .. })));
    std::fs::write(&junk, b"x").unwrap();
    assert!(matches!(Store::inspect(&junk), Err(InspectError::Truncated { len: 1, .. })));
    assert!(matches!(Store::inspect(d.path().join("none")), Err(InspectError::Io { .. })));
}

/// An owner thread pushes and acks while inspections run: every inspection is either
/// exactly consistent (each message the one the generator gave its seq) or says the
/// file changed while it was read; and while the owner pauses, one must succeed.
#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn inspecting_a_busy_store_never_misreads() {
    let d = TempDir::new("inspect-busy");
    let dir = d.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    // Round handshake: the owner parks after each burst until the reader moves on.
    let bursts = Arc::new(AtomicU64::new(0));
    let resume = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let owner = {
        let (stop, bursts, resume, dir, ready) =
            (stop.clone(), bursts.clone(), resume.clone(), dir.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut s = open(&dir, Durability::Process);
            ready.store(true, Ordering::Release);
            let mut round = 0u64;
            while !stop.load(Ordering::Acquire) {
                for _ in 0..200 {
                    let seq = s.next_seq();
                    let (t, ack, bytes) = message(1, seq);
                    match s.alloc(bytes.len()).unwrap() {
                        Some(buf) => {
                            buf.copy_from_slice(&bytes);
                            s.push(t, ack).unwrap();
                        }
                        None => {
                            let upto = s.first_unacked() + s.queue_depth().div_ceil(2);
                            s.ack(upto).unwrap();
                        }
                    }
                }
                round += 1;
                bursts.store(round, Ordering::Release);
                while resume.load(Ordering::Acquire) < round && !stop.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            }
        })
    };
    while !ready.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let (mut ok, mut changed) = (0, 0);
    let check = |i: &tcpshm_persist::Inspection| {
        let st = i.state.expect("opens");
        assert_eq!(i.frames.len() as u64, st.next_seq - st.first_unacked);
        for (k, f) in i.frames.iter().enumerate() {
            let (t, ack, bytes) = message(1, st.first_unacked + k as u64);
            assert_eq!((f.seq, f.msg_type, f.ack), (st.first_unacked + k as u64, t, ack));
            assert!(f.payload == bytes, "payload of {}", f.seq);
        }
    };
    for round in 1..=30u64 {
        while bursts.load(Ordering::Acquire) < round {
            // Inspect while the owner writes.
            match Store::inspect(path(&dir)) {
                Ok(i) => {
                    check(&i);
                    ok += 1;
                }
                Err(InspectError::ChangedWhileReading { .. }) => changed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        // The owner is parked: the snapshot must succeed and be exact.
        let i = Store::inspect(path(&dir)).unwrap();
        check(&i);
        resume.store(round, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    owner.join().unwrap();
    eprintln!("inspections during writes: {ok} consistent, {changed} changed while reading");
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn check_reports_typed_findings() {
    // Clean.
    let d = TempDir::new("check");
    sample(d.path(), Durability::Process);
    let r = Store::check(path(d.path())).unwrap();
    assert_eq!((r.verdict, r.findings), (Verdict::Opens(Recovery::Resumed { acked_frames: 0 }), vec![]));
    // An interrupted ack and a hint ahead.
    patch(&path(d.path()), OFF_ACKED, &4u64.to_le_bytes());
    patch(&path(d.path()), OFF_NEXT_SEQ, &8u64.to_le_bytes());
    let r = Store::check(path(d.path())).unwrap();
    assert_eq!(r.verdict, Verdict::Opens(Recovery::Resumed { acked_frames: 2 }));
    assert!(r.findings.contains(&Finding::AckedFramesQueued { count: 2 }), "{:?}", r.findings);
    assert!(r.findings.contains(&Finding::CounterRepaired { field: "next_seq", found: 8, repaired: 5 }));
    // Damaged: a control type in the queue.
    patch(&path(d.path()), DATA + 32 * 4 + 4, &0xFF00u16.to_le_bytes());
    let r = Store::check(path(d.path())).unwrap();
    assert!(matches!(r.verdict, Verdict::Damaged(Inconsistency::BadFrame { index: 128, .. })), "{:?}", r.verdict);
    // After a restart, a Sync store: rolled back, unsynced messages named.
    let d = TempDir::new("check-sync");
    sample(d.path(), Durability::Sync { every: 0 });
    let mut s = open(d.path(), Durability::Sync { every: 0 });
    s.alloc(3).unwrap().unwrap();
    s.push(1, 0).unwrap();
    let image = std::fs::read(s.path()).unwrap();
    drop(s);
    std::fs::write(path(d.path()), image).unwrap();
    restarted(&path(d.path()));
    let r = Store::check(path(d.path())).unwrap();
    assert!(matches!(r.verdict, Verdict::Opens(Recovery::RolledBack { dropped: 1, cut_sync: false, .. })), "{r:?}");
    assert!(matches!(r.findings[0], Finding::MachineRestarted { .. }));
    assert!(r.findings.contains(&Finding::UnsyncedDropped { from_seq: 5, count: 1 }), "{:?}", r.findings);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn salvage_keeps_the_valid_prefix_and_the_original() {
    let (a, b) = ab();
    // Refused on a live store.
    let d = TempDir::new("salvage");
    sample(d.path(), Durability::Process);
    let s = open(d.path(), Durability::Process);
    assert!(matches!(Store::salvage(d.path(), a, b, &opts(Durability::Process)), Err(OpenError::Locked { .. })));
    drop(s);
    // Same session, frame 4 damaged: messages 2 and 3 kept.
    patch(&path(d.path()), DATA + 32 * 4 + 4, &0xFF00u16.to_le_bytes());
    let damaged = std::fs::read(path(d.path())).unwrap();
    let (mut s, r) = Store::salvage(d.path(), a, b, &opts(Durability::Process)).unwrap();
    assert!(matches!(r.verdict, Verdict::Damaged(Inconsistency::BadFrame { .. })));
    assert_eq!(
        (r.source, r.verified, r.first_unacked, r.next_seq, r.lost_front, r.dropped),
        (SalvageSource::Live, true, 2, 4, 0, 1)
    );
    assert_eq!(std::fs::read(&r.original).unwrap(), damaged);
    assert_eq!(r.original, d.path().join(format!("alice@bob.tcpshm{DAMAGED_SUFFIX}")));
    let mut c = s.cursor_at(2).unwrap();
    let mut kept = vec![];
    while let Some((f, next)) = s.frame(c).unwrap() {
        kept.push((f.seq, f.payload.to_vec()));
        c = next;
    }
    assert_eq!(kept, [(2, vec![2; 8]), (3, vec![3; 8])]);
    assert_eq!((s.session_word(SessionWord::PeerMaxMessage), s.recovery()), (99, Recovery::Created));
    drop(s);
    // The salvaged file opens normally, and is listed; the .damaged copy is not.
    let s = open(d.path(), Durability::Process);
    assert_eq!((s.first_unacked(), s.next_seq()), (2, 4));
    assert_eq!(Store::list(d.path()).unwrap().len(), 1);
}

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn salvage_after_a_restart_keeps_what_syncs_vouch_for() {
    let (a, b) = ab();
    let sync = Durability::Sync { every: 0 };
    let d = TempDir::new("salvage-sync");
    {
        // Syncs: frames 0..3 (then acked to 2), frame 3 alone, frame 4 alone.
        let mut s = open(d.path(), sync);
        for i in 0..5u8 {
            s.alloc(8).unwrap().unwrap().fill(i);
            s.push(1, 0).unwrap();
            if i == 2 {
                s.flush().unwrap();
                s.ack(2).unwrap();
            }
            if i >= 3 {
                s.flush().unwrap();
            }
        }
    }
    // Damage what the two remaining records' batches hold (frames 3 and 4): neither
    // can vouch for its sync any more.
    let p = path(d.path());
    patch(&p, DATA + 32 * 4 + 24, &[0xAA]);
    patch(&p, DATA + 32 * 3 + 24, &[0xAA]);
    restarted(&p);
    match Store::open(d.path(), a, b, &opts(sync), None, 0) {
        Err(OpenError::Inconsistent { source: Inconsistency::SyncedBatch { .. }, .. }) => {}
        r => panic!("{:?}", r.map(|s| s.0.recovery())),
    }
    let (s, r) = Store::salvage(d.path(), a, b, &opts(sync)).unwrap();
    // Message 2, synced before both damaged batches, is all that is vouched for.
    assert!(matches!(r.source, SalvageSource::Commit { .. }), "{r:?}");
    assert!(r.verified);
    assert_eq!((r.first_unacked, r.next_seq, r.dropped, s.first_unacked(), s.next_seq()), (2, 3, 2, 2, 3));
    drop(s);
    // Both commit records damaged: nothing vouches; the live queue, unverified.
    let d = TempDir::new("salvage-nocommit");
    sample(d.path(), sync);
    let p = path(d.path());
    for off in OFF_COMMIT {
        patch(&p, off, &[0; 8]);
    }
    restarted(&p);
    assert!(matches!(
        Store::open(d.path(), a, b, &opts(sync), None, 0),
        Err(OpenError::Inconsistent { source: Inconsistency::NoCommit, .. })
    ));
    let (s, r) = Store::salvage(d.path(), a, b, &opts(sync)).unwrap();
    assert_eq!((r.source, r.verified, r.first_unacked, r.next_seq), (SalvageSource::Live, false, 2, 5));
    assert_eq!(s.queue_depth(), 3);
    drop(s);
    // A file that opens: salvage keeps exactly what open keeps.
    let (s, r) = Store::salvage(d.path(), a, b, &opts(sync)).unwrap();
    assert!(matches!(r.source, SalvageSource::Recovered(Recovery::Resumed { .. })), "{r:?}");
    assert_eq!((s.first_unacked(), s.next_seq(), r.dropped), (2, 5, 0));
}
