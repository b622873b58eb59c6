//! The file: creation, validation (every refusal), permissions, path safety, listing,
//! removal, replacement, concurrent creation.

mod common;

use common::{name, TestDir};
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::{Arc, Barrier, Mutex};
use tcpshm_ring::var::AttachError;
use tcpshm_transport_shm::{Capacities, Direction, Rings, ShmDir, ShmError, ShmFile, Side};

/// Tests that change the process umask take this, and so do tests that create files
/// by hand, so a changed umask never leaks into them.
static UMASK: Mutex<()> = Mutex::new(());

const CAPS: Capacities = Capacities { server_to_client: 4096, client_to_server: 8192 };

fn write_raw(path: &std::path::Path, bytes: &[u8], mode: u32) {
    let _g = UMASK.lock().unwrap();
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn patch(path: &std::path::Path, at: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn create_then_open_both_sides() {
    let t = TestDir::new("create");
    let (s, c) = (name("S1"), name("C1"));
    let srv = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    assert_eq!(srv.side(), Side::Server);
    assert_eq!(srv.path(), t.dir.path(&s, &c));
    assert_eq!(srv.capacities(), CAPS);
    // 4096 control + (384 + 4096 -> 8192) + (384 + 8192 -> 12288)
    assert_eq!(srv.len(), 4096 + 8192 + 12288);
    assert_eq!(fs::metadata(srv.path()).unwrap().len(), srv.len(), "sized exactly");
    assert_eq!(srv.epoch(), 0);
    assert_eq!(srv.pid(Side::Server), Some(std::process::id()));
    assert_eq!(srv.pid(Side::Client), None);

    let cli = ShmFile::open(&t.dir, &s, &c).unwrap();
    assert_eq!(cli.side(), Side::Client);
    assert_eq!(cli.capacities(), CAPS, "the client learns the capacities from the file");
    assert_eq!((cli.server(), cli.client()), (&s, &c));
    assert_eq!(srv.pid(Side::Client), Some(std::process::id()));
    drop(cli);
    assert_eq!(srv.pid(Side::Client), None, "a clean drop clears the pid");

    // Reopening as the server validates and keeps the file.
    drop(srv);
    let again = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    assert_eq!(again.capacities(), CAPS);
    assert_eq!(t.files(), vec![t.dir.path(&s, &c)], "no temporary file left behind");
}

#[test]
fn client_open_requires_the_file() {
    let t = TestDir::new("notfound");
    let e = ShmFile::open(&t.dir, &name("S"), &name("C")).unwrap_err();
    assert!(matches!(e, ShmError::NotFound(ref p) if *p == t.dir.path(&name("S"), &name("C"))), "{e}");
    assert!(t.files().is_empty(), "the client never creates");
}

#[test]
fn invalid_capacities_are_refused_before_any_file() {
    let t = TestDir::new("badcap");
    for caps in [
        Capacities { server_to_client: 1000, client_to_server: 4096 },
        Capacities { server_to_client: 4096, client_to_server: 16 },
        Capacities::symmetric(0),
    ] {
        let e = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), caps).unwrap_err();
        assert!(matches!(e, ShmError::BadCapacity { .. }), "{e}");
    }
    let e = ShmFile::create_or_open(
        &t.dir,
        &name("S"),
        &name("C"),
        Capacities { server_to_client: 64, client_to_server: 3 },
    )
    .unwrap_err();
    assert!(matches!(e, ShmError::BadCapacity { direction: Direction::ClientToServer, .. }), "{e}");
    assert!(t.files().is_empty());
}

#[test]
fn foreign_file_is_refused_and_left_alone() {
    let t = TestDir::new("foreign");
    let (s, c) = (name("S"), name("C"));
    let path = t.dir.path(&s, &c);
    let garbage: Vec<u8> = (0..20000u32).map(|i| (i * 7 + 3) as u8).collect();
    write_raw(&path, &garbage, 0o600);
    for r in [ShmFile::create_or_open(&t.dir, &s, &c, CAPS), ShmFile::open(&t.dir, &s, &c)] {
        let e = r.unwrap_err();
        assert!(matches!(e, ShmError::BadMagic { .. }), "{e}");
    }
    assert_eq!(fs::read(&path).unwrap(), garbage, "a refused file is not modified");
}

#[test]
fn other_version_is_refused() {
    let t = TestDir::new("version");
    let (s, c) = (name("S"), name("C"));
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    // A file of layout 1 (before the file id and the consumed counts) is refused by
    // name, not misread.
    patch(&t.dir.path(&s, &c), 8, &1u32.to_le_bytes());
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::BadVersion { found: 1, expected: 2, .. }), "{e}");
    let e = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap_err();
    assert!(matches!(e, ShmError::BadVersion { found: 1, .. }), "{e}");
}

#[test]
fn scribbled_header_fails_the_checksum() {
    let t = TestDir::new("checksum");
    let (s, c) = (name("S"), name("C"));
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    // The server name's first byte: 'S' -> 'T' (length unchanged).
    patch(&t.dir.path(&s, &c), 64, b"T");
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::BadChecksum { .. }), "{e}");
}

#[test]
fn file_of_other_names_is_refused() {
    let t = TestDir::new("names");
    let (s, c) = (name("S"), name("C"));
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    // Renamed files: the names inside are the key, not the path.
    fs::rename(t.dir.path(&s, &c), t.dir.path(&name("S2"), &c)).unwrap();
    let e = ShmFile::open(&t.dir, &name("S2"), &c).unwrap_err();
    assert!(matches!(e, ShmError::NameMismatch { side: Side::Server, ref found, .. } if found == "S"), "{e}");
    fs::rename(t.dir.path(&name("S2"), &c), t.dir.path(&s, &name("C2"))).unwrap();
    let e = ShmFile::create_or_open(&t.dir, &s, &name("C2"), CAPS).unwrap_err();
    assert!(matches!(e, ShmError::NameMismatch { side: Side::Client, .. }), "{e}");
}

#[test]
fn file_of_other_capacities_is_never_misread() {
    let t = TestDir::new("caps");
    let (s, c) = (name("S"), name("C"));
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    let want = Capacities { server_to_client: 8192, client_to_server: 4096 };
    let e = ShmFile::create_or_open(&t.dir, &s, &c, want).unwrap_err();
    assert!(
        matches!(e, ShmError::CapacityMismatch { found, expected, .. } if found == CAPS && expected == want),
        "{e}"
    );
    // The file is intact and still opens with its own capacities.
    assert_eq!(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap().capacities(), CAPS);
}

#[test]
fn truncated_or_extended_file_is_refused() {
    let t = TestDir::new("trunc");
    let (s, c) = (name("S"), name("C"));
    let len = {
        let f = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
        f.len()
    };
    let path = t.dir.path(&s, &c);
    let set_len = |n: u64| OpenOptions::new().write(true).open(&path).unwrap().set_len(n).unwrap();

    set_len(len - 4096);
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(
        matches!(e, ShmError::SizeMismatch { found, expected, .. } if found == len - 4096 && expected == len),
        "{e}"
    );
    set_len(len + 1);
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::SizeMismatch { .. }), "{e}");
    set_len(100);
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::TooShort { len: 100, need: 4096, .. }), "{e}");
    set_len(0);
    let e = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap_err();
    assert!(matches!(e, ShmError::TooShort { len: 0, .. }), "{e}");
}

#[test]
fn corrupt_ring_header_or_indices_are_refused() {
    let t = TestDir::new("ring");
    let (s, c) = (name("S"), name("C"));
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    let path = t.dir.path(&s, &c);
    // The client->server ring region starts at 4096 + 8192; its magic is at +0.
    patch(&path, 4096 + 8192, b"XXXXXXXX");
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(
        matches!(e, ShmError::Ring { direction: Direction::ClientToServer, error: AttachError::BadMagic(_), .. }),
        "{e}"
    );
    // Repair it with a fresh file, then make the server->client indices impossible:
    // read index (at +256) beyond the write index (at +128).
    drop(ShmFile::create_fresh(&t.dir, &s, &c, CAPS).unwrap());
    patch(&path, 4096 + 256, &64u64.to_le_bytes());
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(
        matches!(e, ShmError::Ring { direction: Direction::ServerToClient, error: AttachError::BadIndices { .. }, .. }),
        "{e}"
    );
}

#[test]
fn created_files_are_0600_whatever_the_umask() {
    let t = TestDir::new("mode");
    let _g = UMASK.lock().unwrap();
    for (i, umask) in [0o000, 0o022, 0o077, 0o277, 0o777].into_iter().enumerate() {
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
        let r = ShmFile::create_or_open(&t.dir, &name(&format!("S{i}")), &name("C"), CAPS);
        rustix::process::umask(old);
        let f = r.unwrap();
        let mode = fs::metadata(f.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "umask {umask:#o}");
        // And it is usable by the other side.
        drop(ShmFile::open(&t.dir, &name(&format!("S{i}")), &name("C")).unwrap());
    }
}

#[test]
fn group_or_world_accessible_file_is_refused() {
    let t = TestDir::new("badmode");
    let (s, c) = (name("S"), name("C"));
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    let path = t.dir.path(&s, &c);
    for mode in [0o644, 0o604, 0o640, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
        assert!(matches!(e, ShmError::BadMode { mode: m, .. } if m == mode), "{e}");
    }
}

#[test]
fn path_safety_symlinks_directories_fifos() {
    let t = TestDir::new("paths");
    let (s, c) = (name("S"), name("C"));
    let path = t.dir.path(&s, &c);

    // A symlink planted under our name, even to a valid connection file, is refused
    // and its target is not touched.
    let target = {
        let f = ShmFile::create_or_open(&t.dir, &name("Real"), &c, CAPS).unwrap();
        f.path().to_path_buf()
    };
    let before = fs::read(&target).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    for e in [
        ShmFile::open(&t.dir, &s, &c).unwrap_err(),
        ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap_err(),
        t.dir.remove(&s, &c).unwrap_err(),
        ShmFile::create_fresh(&t.dir, &s, &c, CAPS).unwrap_err(),
    ] {
        assert!(matches!(e, ShmError::NotRegularFile(_)), "{e}");
    }
    assert_eq!(fs::read(&target).unwrap(), before);
    fs::remove_file(&path).unwrap();

    fs::create_dir(&path).unwrap();
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::NotRegularFile(_)) || matches!(e, ShmError::Io { .. }), "{e}");
    fs::remove_dir(&path).unwrap();

    // A FIFO must not hang the opener.
    rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::NotRegularFile(_)), "{e}");
    fs::remove_file(&path).unwrap();

    // Prefixes are validated; names cannot contain a separator at all.
    for bad in ["../x", "a/b", ".hidden", "a b", "a@b", &"p".repeat(65)] {
        assert!(matches!(ShmDir::new("/dev/shm", bad), Err(ShmError::BadPrefix(_))), "{bad}");
    }
    assert!(ShmDir::new("/dev/shm", "").is_ok());
    assert!(tcpshm_proto::Name::new("a/b").is_err() && tcpshm_proto::Name::new("..").is_err());
    assert!(tcpshm_proto::Name::new("a@b").is_err());
}

#[test]
fn file_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let t = TestDir::new("owner");
    let (s, c) = (name("S"), name("C"));
    let path = {
        let f = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
        f.path().to_path_buf()
    };
    std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::NotOwner { owner: 65534, ours: 0, .. }), "{e}");
}

#[test]
fn second_open_of_a_side_is_busy_until_dropped() {
    let t = TestDir::new("busy");
    let (s, c) = (name("S"), name("C"));
    let srv = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    let e = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Server, .. }), "{e}");
    let cli = ShmFile::open(&t.dir, &s, &c).unwrap();
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Client, .. }), "{e}");
    assert!(srv.peer_alive().unwrap() && cli.peer_alive().unwrap());
    drop(cli);
    assert!(!srv.peer_alive().unwrap());
    let cli = ShmFile::open(&t.dir, &s, &c).unwrap();
    drop(srv);
    assert!(!cli.peer_alive().unwrap());
    drop(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
}

#[test]
fn list_finds_connection_files_only() {
    let t = TestDir::new("list");
    let mut want = Vec::new();
    for (s, c) in [("B", "x"), ("A", "y"), ("A.v2", "x-1")] {
        let f = ShmFile::create_or_open(&t.dir, &name(s), &name(c), CAPS).unwrap();
        want.push((f.path().to_path_buf(), name(s), name(c)));
    }
    want.sort();
    // Things that are not connection files of this prefix.
    let p = t.dir.prefix();
    for junk in [format!("{p}A@y.shm.tmp.1.2"), format!("{p}nonsense"), format!("{p}a@b@c.shm"), format!("{p}.x@y.shm")]
    {
        write_raw(&std::path::Path::new("/dev/shm").join(junk), b"junk", 0o600);
    }
    let got: Vec<_> = t.dir.list().unwrap().into_iter().map(|e| (e.path, e.server, e.client)).collect();
    assert_eq!(got, want);
    assert_eq!(ShmFile::list(&t.dir).unwrap().len(), 3);
}

#[test]
fn remove_is_explicit_and_refused_while_attached() {
    let t = TestDir::new("remove");
    let (s, c) = (name("S"), name("C"));
    assert!(!t.dir.remove(&s, &c).unwrap(), "nothing to remove");
    let srv = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    let e = t.dir.remove(&s, &c).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Server, .. }), "{e}");
    drop(srv);
    let cli = ShmFile::open(&t.dir, &s, &c).unwrap();
    let e = ShmFile::remove(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Client, .. }), "{e}");
    drop(cli);
    assert!(t.dir.remove(&s, &c).unwrap());
    assert!(!t.dir.path(&s, &c).exists());
    assert!(t.files().is_empty());
}

#[test]
fn create_fresh_replaces_an_invalid_or_old_file() {
    let t = TestDir::new("fresh");
    let (s, c) = (name("S"), name("C"));
    let path = t.dir.path(&s, &c);
    write_raw(&path, b"not a tcpshm file at all", 0o600);
    let f = ShmFile::create_fresh(&t.dir, &s, &c, CAPS).unwrap();
    assert_eq!(f.capacities(), CAPS);
    // Refused while attached, by either side.
    let e = ShmFile::create_fresh(&t.dir, &s, &c, CAPS).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Server, .. }), "{e}");
    drop(f);
    let cli = ShmFile::open(&t.dir, &s, &c).unwrap();
    let e = ShmFile::create_fresh(&t.dir, &s, &c, CAPS).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Client, .. }), "{e}");
    drop(cli);
    assert_eq!(t.files(), vec![path]);
}

#[test]
fn reset_gives_fresh_rings_and_needs_the_client_gone() {
    let t = TestDir::new("reset");
    let (s, c) = (name("S"), name("C"));
    let srv = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    let old_id = srv.file_id();
    assert_ne!(old_id, 0);
    // Leave a message in the server->client ring.
    let mut rings = Rings::new(srv);
    rings.tx.alloc(3).unwrap().unwrap().copy_from_slice(b"old");
    rings.tx.push_more(1, 0, 0).unwrap();
    rings.tx.publish();
    let srv = rings.into_file();
    assert_eq!(srv.bump_epoch(), 1);

    let mut srv = srv;
    let cli = ShmFile::open(&t.dir, &s, &c).unwrap();
    let e = srv.reset().unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Client, .. }), "{e}");
    assert_eq!(srv.epoch(), 1, "a failed reset changes nothing");
    // The client byte taken during the attempt was let go: the client still holds its own.
    assert!(srv.peer_alive().unwrap());
    drop(cli);
    srv.reset().unwrap();
    assert_eq!(srv.epoch(), 0);
    assert_ne!(srv.file_id(), old_id, "a new file, a new identity");
    let mut cli = Rings::new(ShmFile::open(&t.dir, &s, &c).unwrap());
    assert!(cli.rx.front().unwrap().is_none(), "the old message is gone after a reset");
    assert_eq!(cli.file_id(), srv.file_id());
    let e = ShmFile::open(&t.dir, &s, &c).unwrap_err();
    assert!(matches!(e, ShmError::Busy { side: Side::Client, .. }), "the new file is locked: {e}");
    drop(srv);
    assert_eq!(t.files().len(), 1);
}

#[test]
fn stale_temporary_files_are_cleaned_live_ones_kept() {
    let t = TestDir::new("temps");
    let p = t.dir.prefix();
    let dead = std::path::Path::new("/dev/shm").join(format!("{p}S@C.shm.tmp.999999.0"));
    write_raw(&dead, b"half-initialised", 0o600);
    let other = std::path::Path::new("/dev/shm").join(format!("{p}unrelated.tmp.1"));
    write_raw(&other, b"x", 0o600);
    // A live creator holds the server lock on its temporary file.
    let live = std::path::Path::new("/dev/shm").join(format!("{p}S@D.shm.tmp.1.0"));
    write_raw(&live, b"being created", 0o600);
    let holder = fs::File::options().read(true).write(true).open(&live).unwrap();
    nix_lock(&holder);
    assert_eq!(t.dir.remove_stale_temps().unwrap(), 1);
    assert!(!dead.exists() && live.exists() && other.exists());
    drop(holder);
    assert_eq!(t.dir.remove_stale_temps().unwrap(), 1);
    assert!(!live.exists());
}

/// Takes an OFD write lock on byte 0 of `f` (what a creator holds).
fn nix_lock(f: &fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: zeroed flock is valid.
    let mut fl: nix::libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = nix::libc::F_WRLCK as _;
    fl.l_whence = nix::libc::SEEK_SET as _;
    fl.l_len = 1;
    nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&fl)).unwrap();
}

#[test]
fn concurrent_creators_one_wins_nobody_misreads() {
    let t = TestDir::new("race");
    let (s, c) = (name("S"), name("C"));
    for round in 0..20 {
        let c = name(&format!("C{round}"));
        let n = 6;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (dir, barrier) = (t.dir.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    ShmFile::create_or_open(&dir, &s, &c, CAPS)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, ShmError::Busy { side: Side::Server, .. }), "round {round}: {e}");
            }
        }
    }
    let mut f = fs::File::open(t.dir.path(&s, &name("C0"))).unwrap();
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 4096 + 8192 + 12288);
    assert_eq!(t.files().len(), 20, "no temporary file left behind");
    let _ = c;
}

/// A same-user process truncates a live file: the next accesses to the lost pages do
/// not end the process (no SIGBUS death); they read zeros, the rings report errors,
/// and `truncated()` names it. Another file's rings keep working.
#[test]
fn truncation_under_a_live_mapping_is_a_typed_error_not_a_sigbus() {
    let t = TestDir::new("truncate");
    let (s, c, other) = (name("S"), name("C"), name("D"));
    let mut srv = Rings::new(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    let mut cli = Rings::new(ShmFile::open(&t.dir, &s, &c).unwrap());
    let mut ok_srv = Rings::new(ShmFile::create_or_open(&t.dir, &s, &other, CAPS).unwrap());
    cli.tx.alloc(3).unwrap().unwrap().copy_from_slice(b"abc");
    cli.tx.push_more(1, 0, 0).unwrap();
    cli.tx.publish();
    assert!(srv.truncated().is_none());
    // Another process would do this; a second descriptor of ours is the same to the kernel.
    let f = OpenOptions::new().write(true).open(t.dir.path(&s, &c)).unwrap();
    f.set_len(4096).unwrap();
    // Reads and writes of the lost pages: errors (or nothing), never a signal death.
    let front = srv.rx.front().map(|m| m.map(|m| m.payload.to_vec()));
    assert!(front.is_err() || front.as_ref().is_ok_and(|m| m.is_none()), "{front:?}");
    if let Ok(Some(buf)) = cli.tx.alloc(8) {
        buf.fill(9);
        let _ = cli.tx.push_more(1, 1, 0);
        cli.tx.publish();
    }
    assert!(srv.truncated().is_some(), "the server's mapping is marked");
    assert!(cli.truncated().is_some(), "the client's mapping is marked");
    let e = srv.truncated().unwrap().to_string();
    assert!(e.contains("truncated"), "{e}");
    // The other file is untouched.
    assert!(ok_srv.truncated().is_none());
    ok_srv.tx.alloc(1).unwrap().unwrap();
    ok_srv.tx.push_more(1, 0, 0).unwrap();
    assert_eq!(ok_srv.tx.publish(), 1);
}
