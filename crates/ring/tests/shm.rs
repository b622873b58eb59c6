//! Named shared-memory regions (feature `shm`): create-or-attach, the checks on an
//! existing file, claims and what they say about the peer, within one process and
//! across processes killed with SIGKILL.
#![cfg(all(feature = "shm", target_os = "linux", not(loom)))]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tcpshm_ring::shm::{ClaimError, OpenError, Region};
use tcpshm_ring::var::{AttachError, Config, Peer, Producer, Side};

const CHILD_ENV: &str = "TCPSHM_RING_SHM_CHILD";

/// A unique path under /dev/shm (or the temp dir), removed with its temporary
/// siblings when the test ends.
struct TestPath(PathBuf);

impl TestPath {
    fn new(name: &str) -> TestPath {
        let dir = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let p = dir.join(format!("tcpshm-ring-shm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TestPath(p)
    }

    /// Files in the directory whose names start with `.<our name>.`: leftover temporary
    /// files of the creation.
    fn leftovers(&self) -> Vec<String> {
        let prefix = format!(".{}.", self.0.file_name().unwrap().to_string_lossy());
        std::fs::read_dir(self.0.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }
}

impl Drop for TestPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn push(p: &mut Producer<'_>, ty: u16, bytes: &[u8]) {
    p.alloc(bytes.len()).unwrap().expect("room").copy_from_slice(bytes);
    p.push(ty).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn open_creates_a_private_region_and_a_second_open_attaches() {
    let t = TestPath::new("create");
    let a = Region::open(&t.0, Config::new(4096)).unwrap();
    let meta = std::fs::metadata(&t.0).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.len(), tcpshm_ring::var::region_size(4096) as u64);
    assert_eq!((a.config(), a.path()), (Config::new(4096), t.0.as_path()));
    let b = Region::open(&t.0, Config::new(4096)).unwrap();
    let mut p = a.producer().unwrap();
    let mut c = b.consumer().unwrap();
    push(&mut p, 3, b"via the file");
    let m = c.front().unwrap().unwrap();
    assert_eq!((m.msg_type(), m.payload()), (3, &b"via the file"[..]));
    // Another layout is refused, an invalid one too.
    match Region::open(&t.0, Config { capacity: 4096, align: 64 }) {
        Err(OpenError::Attach { source: AttachError::ConfigMismatch { found, expected }, .. }) => {
            assert_eq!((found, expected), ((4096, 8), (4096, 64)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Region::open(&t.0, Config::new(100)), Err(OpenError::Config(_))));
    assert!(t.leftovers().is_empty(), "{:?}", t.leftovers());
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn attach_waits_for_the_creator_only_as_long_as_the_caller_says() {
    let t = TestPath::new("attach");
    let e = Region::attach(&t.0).unwrap_err();
    assert!(matches!(e, OpenError::NotFound(_)) && e.is_not_ready(), "{e}");
    let mut pauses = 0;
    let e = Region::attach_with(&t.0, 5, || pauses += 1).unwrap_err();
    assert!(e.is_not_ready());
    assert_eq!(pauses, 4, "5 tries, a pause between each two");
    let mut pauses = 0;
    let r = Region::attach_with(&t.0, 100, || {
        pauses += 1;
        if pauses == 7 {
            Region::open(&t.0, Config::new(1 << 16)).unwrap();
        }
    })
    .unwrap();
    assert_eq!((pauses, r.config().capacity), (7, 1 << 16));
}

fn private_file(path: &Path, mode: u32) -> File {
    let f = OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(path).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn a_file_made_by_other_code_is_not_ready_until_formatted() {
    let t = TestPath::new("uninit");
    let f = private_file(&t.0, 0o600);
    // Empty: its creator has not sized it yet.
    assert!(matches!(Region::attach(&t.0), Err(OpenError::Uninitialised(_))));
    assert!(Region::open(&t.0, Config::new(4096)).unwrap_err().is_not_ready());
    // Sized but not formatted (no magic yet): the `BadMagic(0)` of a bare `var::attach`.
    f.set_len(tcpshm_ring::var::region_size(4096) as u64).unwrap();
    assert!(matches!(Region::attach(&t.0), Err(OpenError::Uninitialised(_))));
    // Formatted by the other code: now it attaches.
    let mut map = std::fs::read(&t.0).unwrap();
    // Format a copy in memory (8-aligned), then write it to the file.
    let mut words = vec![0u64; map.len() / 8];
    // SAFETY: u8 has no alignment or validity requirements; the borrow is unique.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), map.len()) };
    tcpshm_ring::var::init(bytes, Config::new(4096)).unwrap();
    map.copy_from_slice(bytes);
    (&f).write_all(&map).unwrap();
    assert_eq!(Region::attach(&t.0).unwrap().config(), Config::new(4096));
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn foreign_files_are_refused_with_a_reason() {
    // Readable by others: refused before it is read.
    let t = TestPath::new("mode");
    private_file(&t.0, 0o644).set_len(4480).unwrap();
    match Region::attach(&t.0) {
        Err(OpenError::NotPrivate { mode, .. }) => assert_eq!(mode & 0o777, 0o644),
        other => panic!("{other:?}"),
    }
    assert!(matches!(Region::open(&t.0, Config::new(4096)), Err(OpenError::NotPrivate { .. })));
    // Not a queue at all.
    let t = TestPath::new("foreign");
    let f = private_file(&t.0, 0o600);
    (&f).write_all(&[0xAB; 4480]).unwrap();
    match Region::attach(&t.0) {
        Err(OpenError::Attach { source: AttachError::BadMagic(m), .. }) => assert_eq!(m, 0xABAB_ABAB_ABAB_ABAB),
        other => panic!("{other:?}"),
    }
    // Too short to hold a header.
    let t = TestPath::new("short");
    private_file(&t.0, 0o600).set_len(100).unwrap();
    assert!(matches!(Region::attach(&t.0), Err(OpenError::Attach { source: AttachError::TooShort(100), .. })));
    // A symbolic link is not followed (someone else's link must not redirect us).
    let target = TestPath::new("target");
    Region::open(&target.0, Config::new(4096)).unwrap();
    let link = TestPath::new("link");
    std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
    assert!(matches!(Region::attach(&link.0), Err(OpenError::Io { op: "open", .. })));
    assert!(matches!(Region::open(&link.0, Config::new(4096)), Err(OpenError::Io { .. })));
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn one_live_end_per_side_and_the_peer_state_follows_the_claims() {
    let t = TestPath::new("claims");
    let a = Region::open(&t.0, Config::new(4096)).unwrap();
    let b = Region::open(&t.0, Config::new(4096)).unwrap();
    let c = a.consumer().unwrap();
    assert_eq!(c.peer(), Peer::NotYet, "no producer ever claimed the region");
    assert!(!c.is_abandoned());
    // Through another open of the file (as another process would): the lock query.
    let p = b.producer().unwrap();
    assert_eq!((c.peer(), p.peer()), (Peer::Alive, Peer::Alive));
    assert!(matches!(a.producer(), Err(ClaimError::Taken(Side::Producer))));
    assert!(matches!(b.producer(), Err(ClaimError::Taken(Side::Producer))));
    assert!(matches!(b.consumer(), Err(ClaimError::Taken(Side::Consumer))));
    drop(p);
    assert_eq!(c.peer(), Peer::Gone);
    assert!(c.is_abandoned());
    // A new producer may come; through the same open of the file as the consumer this
    // time (the in-process flag, since a lock never conflicts with its own open).
    let p = a.producer().unwrap();
    assert_eq!((c.peer(), p.peer()), (Peer::Alive, Peer::Alive));
    drop(c);
    assert_eq!(p.peer(), Peer::Gone);
    // The ends keep the mapping: dropping the regions first is fine.
    drop((a, b));
    assert!(p.is_abandoned());
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn a_new_producer_continues_after_the_last_published_message() {
    let t = TestPath::new("continue");
    let r = Region::open(&t.0, Config::new(4096)).unwrap();
    let mut c = r.consumer().unwrap();
    {
        let mut p = Region::open(&t.0, Config::new(4096)).unwrap().producer().unwrap();
        push(&mut p, 1, b"one");
        p.alloc(3).unwrap().unwrap().copy_from_slice(b"two");
        p.push_more(2).unwrap(); // staged, never published: never pushed
    }
    let mut p = Region::attach(&t.0).unwrap().producer().unwrap();
    push(&mut p, 3, b"three");
    let mut got = vec![];
    while let Some(m) = c.front().unwrap() {
        got.push((m.msg_type(), m.payload().to_vec()));
        c.pop().unwrap();
    }
    assert_eq!(got, [(1, b"one".to_vec()), (3, b"three".to_vec())]);
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn remove_unlinks_only_its_own_file() {
    let t = TestPath::new("remove");
    let old = Region::open(&t.0, Config::new(4096)).unwrap();
    let mut p = old.producer().unwrap();
    old.remove().unwrap();
    assert!(!t.0.exists());
    push(&mut p, 1, b"still mapped"); // the mapping outlives the name
    let new = Region::open(&t.0, Config::new(4096)).unwrap();
    old.remove().unwrap(); // the name is another file's now: left alone
    assert!(t.0.exists());
    assert!(new.consumer().unwrap().front().unwrap().is_none(), "a fresh region");
    new.remove().unwrap();
    new.remove().unwrap(); // already gone: fine
}

#[test]
#[cfg_attr(miri, ignore = "mmap of a file and fcntl locks")]
fn concurrent_opens_agree_on_one_region() {
    for round in 0..20 {
        let t = TestPath::new(&format!("race{round}"));
        let barrier = std::sync::Barrier::new(4);
        let inodes: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let r = Region::open(&t.0, Config::new(4096)).unwrap();
                        // Every opener got a formatted region: claimable at once.
                        drop(r.consumer().map(drop));
                        std::fs::metadata(&t.0).unwrap().ino()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(inodes.windows(2).all(|w| w[0] == w[1]), "{inodes:?}");
        assert!(t.leftovers().is_empty(), "{:?}", t.leftovers());
    }
}

// ---- across processes ----

/// The child roles, re-executed from this test binary.
#[test]
fn child_entry() {
    let Ok(arg) = std::env::var(CHILD_ENV) else { return };
    let (role, path) = arg.split_once(',').expect("role,path");
    match role {
        // Claim the producer, push 100 messages, then block until killed.
        "producer" => {
            let mut p = Region::open(path, Config::new(1 << 16)).unwrap().producer().unwrap();
            for i in 0..100u32 {
                push(&mut p, 1, &i.to_le_bytes());
            }
            loop {
                std::thread::park();
            }
        }
        // Create the region under a umask that would strip our own write bit.
        "umask" => {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o277));
            Region::open(path, Config::new(4096)).unwrap();
        }
        other => panic!("unknown child role {other}"),
    }
}

fn spawn_child(role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role},{}", path.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Kills the child on the way out, even if the test fails.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[cfg_attr(miri, ignore = "processes")]
fn the_mode_is_0600_whatever_the_creators_umask() {
    let t = TestPath::new("umask");
    assert!(spawn_child("umask", &t.0).wait().unwrap().success());
    assert_eq!(std::fs::metadata(&t.0).unwrap().mode() & 0o777, 0o600);
    Region::attach(&t.0).unwrap().producer().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "processes")]
fn a_sigkilled_producer_is_reported_gone_and_its_messages_kept() {
    let t = TestPath::new("sigkill");
    let r = Region::open(&t.0, Config::new(1 << 16)).unwrap();
    let mut c = r.consumer().unwrap();
    let mut child = Killer(spawn_child("producer", &t.0));
    // Wait (on observable state) for the child's 100 messages.
    let mut got = 0u32;
    while got < 100 {
        match c.front().unwrap() {
            Some(m) => {
                assert_eq!(m.payload(), got.to_le_bytes());
                c.pop().unwrap();
                got += 1;
            }
            None => {
                assert!(child.0.try_wait().unwrap().is_none(), "the child exited early");
                std::thread::yield_now();
            }
        }
    }
    assert_eq!(c.peer(), Peer::Alive);
    assert!(matches!(r.producer(), Err(ClaimError::Taken(Side::Producer))), "the live child holds it");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The kernel dropped the dead process's lock: gone, at once.
    assert_eq!(c.peer(), Peer::Gone);
    // Its side can be claimed again.
    let mut p = r.producer().unwrap();
    push(&mut p, 2, b"after");
    assert_eq!(c.front().unwrap().unwrap().payload(), b"after");
}

/// The waiting consumer is parked when the producer process dies: it notices within a
/// park round and reports it, instead of waiting forever.
#[cfg(feature = "wait")]
#[test]
#[cfg_attr(miri, ignore = "processes")]
fn a_parked_consumer_learns_that_the_producer_process_died() {
    use std::time::Duration;
    use tcpshm_ring::wait::{FrontWaitError, Wait, WaitError};

    let t = TestPath::new("parked");
    let r = Region::open(&t.0, Config::new(1 << 16)).unwrap();
    let mut c = r.consumer().unwrap();
    let mut child = Killer(spawn_child("producer", &t.0));
    // Parks of 10 ms; a lost death would end in `TimedOut` after 1000 empty parks.
    let w = Wait { spins: 0, yields: 0, park: Duration::from_millis(10), max_timeouts: Some(1000) };
    for i in 0..100u32 {
        assert_eq!(c.front_wait(&w).unwrap().payload(), i.to_le_bytes());
        c.pop_notify().unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tx.send(()).unwrap();
        c.front_wait(&w).map(|m| m.index())
    });
    rx.recv().unwrap();
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(waiter.join().unwrap(), Err(FrontWaitError::Wait(WaitError::Abandoned)));
}
