//! The counters file across processes: a reader in another process sees a live
//! writer's records whole while it publishes flat out; a writer killed with SIGKILL
//! leaves a file that is known dead at once and removed by the next server of its
//! name (or `remove_dead`), while a live one's file is never removed; a full file
//! says how many sessions it could not hold.

use std::sync::{Arc, Mutex};
use tcpshm_stats::{SessionRecord, SessionState, StatsDir, StatsFile, StatsReader};
use tcpshm_test_support::child::{self, Proc};
use tcpshm_test_support::{wait_until, TempDir};

fn dir(t: &TempDir) -> StatsDir {
    std::fs::create_dir_all(t.path()).unwrap();
    StatsDir::new(t.path(), "s-").unwrap()
}

/// Child role: creates the file of server `Srv` in the directory given by the
/// environment, says its path, then publishes records whose counters all hold the
/// same value, as fast as it can, until killed.
#[test]
fn child_writer() {
    if child::role().as_deref() != Some("writer") {
        return;
    }
    let dir = StatsDir::new(std::env::var("STATS_DIR").unwrap(), "s-").unwrap();
    let (file, _server) = StatsFile::create(&dir, "Srv".parse().unwrap(), "/srv".as_ref(), 4).unwrap();
    let mut slots: Vec<_> = (0..2).map(|_| file.claim().unwrap()).collect();
    println!("{}", file.path().display());
    let mut n = 0u64;
    loop {
        n += 1;
        for (i, slot) in slots.iter_mut().enumerate() {
            let mut r = SessionRecord::new(format!("c{i}").parse().unwrap());
            r.state = SessionState::Up;
            (r.sent, r.acked, r.received, r.popped, r.queued) = (n, n, n, n, n);
            slot.publish(&r);
        }
    }
}

#[test]
fn a_live_writer_is_read_whole_and_a_killed_one_is_cleaned_up() {
    let t = TempDir::new_in("/dev/shm", "stats-procs");
    let d = dir(&t);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    let mut cmd = child::command("child_writer", "writer");
    cmd.env("STATS_DIR", t.path());
    let proc = Proc::spawn(cmd, move |line| l.lock().unwrap().push(line));
    let path = wait_until("the child's file", || lines.lock().unwrap().iter().find(|l| l.starts_with('/')).cloned());
    let reader = StatsReader::open(&path).unwrap();
    assert_eq!((reader.header().server.as_str(), reader.header().pid), ("Srv", proc.id()));
    assert!(reader.is_live().unwrap());
    // Many copies while the child rewrites both records flat out: never torn.
    let mut seen = 0u64;
    for _ in 0..20_000 {
        let snap = reader.read();
        for r in &snap.sessions {
            assert!([r.acked, r.received, r.popped, r.queued].iter().all(|&v| v == r.sent), "torn record {r:?}");
            seen = seen.max(r.sent);
        }
    }
    assert!(seen > 0);
    // A live server's file is never removed.
    assert_eq!(d.remove_dead(None).unwrap(), Vec::<std::path::PathBuf>::new());
    assert_eq!(d.live().unwrap().len(), 1);
    proc.kill();
    assert!(!reader.is_live().unwrap(), "the kernel released the dead writer's lock");
    assert!(d.live().unwrap().is_empty());
    // The next server of that name removes it when it starts.
    let (file, _s) = StatsFile::create(&d, "Srv".parse().unwrap(), "/srv".as_ref(), 1).unwrap();
    assert!(!std::path::Path::new(&path).exists());
    assert_eq!(d.list().unwrap(), vec![file.path().to_path_buf()]);
}

#[test]
fn a_full_file_counts_the_sessions_it_cannot_hold_and_reuses_freed_records() {
    let t = TempDir::new_in("/dev/shm", "stats-full");
    let d = dir(&t);
    let (file, _s) = StatsFile::create(&d, "Srv".parse().unwrap(), t.path(), 2).unwrap();
    let mut a = file.claim().unwrap();
    let b = file.claim().unwrap();
    assert!(file.claim().is_none());
    let mut r = SessionRecord::new("a".parse().unwrap());
    a.publish(&r);
    let reader = StatsReader::open(file.path()).unwrap();
    assert_eq!(reader.header().storage_dir, t.path());
    let snap = reader.read();
    assert_eq!((snap.sessions.len(), snap.without_record, snap.unreadable), (1, 1, 0));
    drop(b);
    let mut c = file.claim().expect("a freed record is reused");
    r.client = "c".parse().unwrap();
    c.publish(&r);
    let names: Vec<String> = reader.read().sessions.iter().map(|s| s.client.to_string()).collect();
    assert_eq!(names, ["a", "c"]);
    drop(a);
    assert_eq!(reader.read().sessions.len(), 1, "a dropped slot is no longer listed");
}

#[test]
fn other_files_are_refused_with_the_reason() {
    let t = TempDir::new_in("/dev/shm", "stats-bad");
    let _ = dir(&t);
    let p = t.join("s-Srv.1.2.stats");
    std::fs::write(&p, vec![0u8; 8192]).unwrap();
    let e = StatsReader::open(&p).unwrap_err().to_string();
    assert!(e.contains("not a tcpshm counters file") && e.contains(&p.display().to_string()), "{e}");
    std::fs::write(&p, b"short").unwrap();
    assert!(StatsReader::open(&p).unwrap_err().to_string().contains("shorter than"));
}
