//! `ShmFile`: one connection's file, created or validated, mapped, and locked for
//! one side.

use crate::dir::{self, ShmDir, ShmEntry, ATTEMPTS, TEMP_MARK};
use crate::error::{Direction, ShmError, Side};
use crate::layout::{self, Capacities, ControlBlock, Expect, Geometry, CONTROL_LEN, RING_ALIGN};
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tcpshm_proto::Name;
use tcpshm_ring::shm::lock;
use tcpshm_ring::var::{self, AttachError, Config, Consumer, Producer};

/// The mapping and the locked descriptor.
/// Field order is drop order: unregister the mapping from the truncation guard, unmap,
/// then close the descriptor (releasing the lock).
pub(crate) struct FileInner {
    pub(crate) guard: crate::guard::Mapping,
    pub(crate) map: MmapRaw,
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) side: Side,
    pub(crate) server: Name,
    pub(crate) client: Name,
    pub(crate) geo: Geometry,
}

impl FileInner {
    pub(crate) fn control(&self) -> ControlBlock {
        // SAFETY: the mapping starts with a validated control block (page-aligned,
        // CONTROL_LEN bytes) and lives as long as `self`, which every user of the
        // returned value borrows.
        unsafe { ControlBlock::new(self.map.as_mut_ptr()) }
    }

    /// Whether the peer side's lock is held (by a live open file description).
    pub(crate) fn peer_alive(&self) -> std::io::Result<bool> {
        lock::held_by_other(self.file.as_fd(), self.side.peer().lock_byte())
    }
}

impl Drop for FileInner {
    fn drop(&mut self) {
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        // Only clear the slot if it still names us (informational field).
        let _ = self.control().pid(self.side).compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Our two ring ends: the producer of the outbound ring, the consumer of the inbound.
#[derive(Debug)]
pub(crate) struct Ends {
    pub(crate) tx: Producer<'static>,
    pub(crate) rx: Consumer<'static>,
}

/// One connection's shared-memory file, validated, mapped (shared) and locked for one
/// [`Side`]: the server side creates it with [`create_or_open`](Self::create_or_open),
/// the client side opens it with [`open`](Self::open) after the login reply. Turn it
/// into the rings a connection uses with [`Rings::new`](crate::Rings::new).
///
/// While a `ShmFile` (or the connection made from it) exists, this process holds its
/// side's lock: no other process can attach as the same side, and the peer sees this
/// side alive. Dropping it unmaps the file and releases the lock; the file stays
/// (removal is explicit: [`ShmDir::remove`]).
///
/// ```
/// use tcpshm_proto::Name;
/// use tcpshm_transport_shm::{Capacities, ShmDir, ShmError, ShmFile, Side};
///
/// let dir = ShmDir::new("/dev/shm", &format!("doc-file-{}-", std::process::id())).unwrap();
/// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
/// let server = ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(4096)).unwrap();
/// let client = ShmFile::open(&dir, &s, &c).unwrap();
/// assert_eq!(client.capacities(), Capacities::symmetric(4096));
/// assert!(server.peer_alive().unwrap());
/// // A second attach as the same side is refused while the first is alive.
/// assert!(matches!(ShmFile::open(&dir, &s, &c), Err(ShmError::Busy { side: Side::Client, .. })));
/// drop(client);
/// assert!(!server.peer_alive().unwrap());
/// drop(server);
/// assert!(dir.remove(&s, &c).unwrap());
/// ```
pub struct ShmFile {
    pub(crate) ends: Ends,
    pub(crate) inner: Arc<FileInner>,
}

impl std::fmt::Debug for ShmFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmFile")
            .field("path", &self.inner.path)
            .field("side", &self.inner.side)
            .field("capacities", &self.inner.geo.caps)
            .finish_non_exhaustive()
    }
}

impl ShmFile {
    /// Server side: opens the file of `server`/`client` and validates it (magic,
    /// version, checksum, names, capacities, length, both rings), or creates it with
    /// `caps` if it does not exist. Takes the server lock ([`ShmError::Busy`] if
    /// another live process holds it).
    ///
    /// A file that exists but is not valid, or has other capacities, is refused with
    /// a typed error and left as it is; [`create_fresh`](Self::create_fresh) replaces it.
    ///
    /// Creation is crash-safe: the file is created under a temporary name with mode
    /// 0600 (whatever the umask), sized, initialised, then renamed into place, so no
    /// process ever maps a half-initialised file.
    pub fn create_or_open(dir: &ShmDir, server: &Name, client: &Name, caps: Capacities) -> Result<ShmFile, ShmError> {
        caps.validate()?;
        let dfd = dir.open_dir()?;
        for _ in 0..ATTEMPTS {
            match open_existing(dir, &dfd, Side::Server, server, client, Some(caps)) {
                Err(ShmError::NotFound(_)) => {}
                other => return other,
            }
            if let Some(f) = create_new(dir, &dfd, server, client, caps, false)? {
                return Ok(f);
            }
            // Another process created it first: open theirs.
        }
        Err(ShmError::Unstable(dir.path(server, client)))
    }

    /// Client side: opens the existing file of `server`/`client` (created by the
    /// server) and validates it; the capacities are the file's. Takes the client lock
    /// ([`ShmError::Busy`] if another live process holds it). [`ShmError::NotFound`]
    /// if there is no file.
    pub fn open(dir: &ShmDir, server: &Name, client: &Name) -> Result<ShmFile, ShmError> {
        let dfd = dir.open_dir()?;
        open_existing(dir, &dfd, Side::Client, server, client, None)
    }

    /// Either side: opens the existing file of `server`/`client` as `side` (the
    /// capacities are the file's), without ever creating one: how a restarted server
    /// finds the rings of a session before the client logs in again.
    /// [`ShmError::NotFound`] if there is no file; [`ShmError::Busy`] if another live
    /// process holds that side.
    ///
    /// ```
    /// use tcpshm_proto::Name;
    /// use tcpshm_transport_shm::{ShmDir, ShmError, ShmFile, Side};
    /// let dir = ShmDir::new("/dev/shm", &format!("doc-open-as-{}-", std::process::id())).unwrap();
    /// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
    /// assert!(matches!(ShmFile::open_as(&dir, &s, &c, Side::Server), Err(ShmError::NotFound(_))));
    /// ```
    pub fn open_as(dir: &ShmDir, server: &Name, client: &Name, side: Side) -> Result<ShmFile, ShmError> {
        let dfd = dir.open_dir()?;
        open_existing(dir, &dfd, side, server, client, None)
    }

    /// Server side: creates a fresh file (empty rings, epoch 0) for `server`/`client`,
    /// atomically replacing any file there, valid or not — the reset. Refused with
    /// [`ShmError::Busy`] while either side is attached (both locks are taken on the
    /// old file for the replacement, so nobody can attach to it meanwhile).
    ///
    /// ```
    /// use tcpshm_proto::Name;
    /// use tcpshm_transport_shm::{Capacities, ShmDir, ShmError, ShmFile};
    ///
    /// let dir = ShmDir::new("/dev/shm", &format!("doc-fresh-{}-", std::process::id())).unwrap();
    /// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
    /// drop(ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(4096)).unwrap());
    /// // Other capacities: refused, never misread...
    /// let other = Capacities::symmetric(8192);
    /// assert!(matches!(ShmFile::create_or_open(&dir, &s, &c, other), Err(ShmError::CapacityMismatch { .. })));
    /// // ...unless the caller asks for a fresh file.
    /// let f = ShmFile::create_fresh(&dir, &s, &c, other).unwrap();
    /// assert_eq!(f.capacities(), other);
    /// drop(f);
    /// dir.remove(&s, &c).unwrap();
    /// ```
    pub fn create_fresh(dir: &ShmDir, server: &Name, client: &Name, caps: Capacities) -> Result<ShmFile, ShmError> {
        caps.validate()?;
        let dfd = dir.open_dir()?;
        let name = dir.file_name(server, client);
        let path = dir.dir().join(&name);
        for _ in 0..ATTEMPTS {
            let Some(old) = dir::open_nofollow(&dfd, &name, &path)? else {
                match create_new(dir, &dfd, server, client, caps, false)? {
                    Some(f) => return Ok(f),
                    None => continue,
                }
            };
            let st = dir::check_regular_owned(&old, &path)?;
            dir::lock_both(&old, &path)?;
            if dir::same_inode(&dfd, &name, &path, &st)? != Some(true) {
                continue;
            }
            if let Some(f) = create_new(dir, &dfd, server, client, caps, true)? {
                return Ok(f);
            }
        }
        Err(ShmError::Unstable(path))
    }

    /// Server side: replaces this file by a fresh one with the same names and
    /// capacities (empty rings, epoch 0), e.g. after a
    /// [`CloseReason::Corrupt`](tcpshm_proto::CloseReason::Corrupt). Refused with
    /// [`ShmError::Busy`] while the client side is attached; on any error `self` is
    /// unchanged.
    pub fn reset(&mut self) -> Result<(), ShmError> {
        let inner = &self.inner;
        if inner.side != Side::Server {
            return Err(ShmError::WrongSide { expected: Side::Server, found: inner.side });
        }
        let path = &inner.path;
        let fd = inner.file.as_fd();
        if !lock::try_lock(fd, Side::Client.lock_byte()).map_err(|e| ShmError::io("lock", path, e))? {
            return Err(ShmError::Busy { path: path.clone(), side: Side::Client });
        }
        let result = (|| {
            let dir = ShmDir::new(path.parent().unwrap_or(Path::new("/")), "").expect("an empty prefix is valid");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let dfd = dir.open_dir()?;
            create_named(&dfd, &dir, &name, &inner.server, &inner.client, inner.geo.caps, true)
        })();
        // Let go of the client byte of the old file whatever happened (the new file
        // is a new inode with its own locks).
        let _ = lock::unlock(fd, Side::Client.lock_byte());
        match result? {
            Some(f) => {
                *self = f;
                Ok(())
            }
            None => Err(ShmError::Unstable(path.clone())),
        }
    }

    /// Removes the file of `server`/`client`; see [`ShmDir::remove`].
    pub fn remove(dir: &ShmDir, server: &Name, client: &Name) -> Result<bool, ShmError> {
        dir.remove(server, client)
    }

    /// The connection files in `dir`; see [`ShmDir::list`].
    pub fn list(dir: &ShmDir) -> Result<Vec<ShmEntry>, ShmError> {
        dir.list()
    }

    /// Whether the peer side is attached by a live process: its lock on the file is
    /// held. One `fcntl(F_OFD_GETLK)` system call. A peer killed by any signal is seen
    /// as not alive at once (the kernel released its lock when it died).
    pub fn peer_alive(&self) -> Result<bool, ShmError> {
        self.inner.peer_alive().map_err(|e| ShmError::io("fcntl(F_OFD_GETLK)", &self.inner.path, e))
    }

    /// This file's side.
    pub fn side(&self) -> Side {
        self.inner.side
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The server's name.
    pub fn server(&self) -> &Name {
        &self.inner.server
    }

    /// The client's name.
    pub fn client(&self) -> &Name {
        &self.inner.client
    }

    /// The ring capacities.
    pub fn capacities(&self) -> Capacities {
        self.inner.geo.caps
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.inner.geo.file_len as u64
    }

    /// Never true (a file holds at least its control block); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The file's identity: a random non-zero number written when the file was
    /// created. Two files of the same names (one replaced by the other) differ in it.
    pub fn file_id(&self) -> u64 {
        self.inner.control().file_id()
    }

    /// Adds 1 to the session epoch (the server does at each login on this file).
    pub fn bump_epoch(&self) -> u64 {
        self.inner.control().epoch().fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The session epoch: how many logins the server side has attached to this file.
    pub fn epoch(&self) -> u64 {
        self.inner.control().epoch().load(Ordering::Acquire)
    }

    /// The pid recorded by `side` when it attached (informational: a crashed
    /// process leaves its pid behind; liveness is the lock, see
    /// [`peer_alive`](Self::peer_alive)).
    pub fn pid(&self, side: Side) -> Option<u32> {
        match self.inner.control().pid(side).load(Ordering::Acquire) {
            0 => None,
            p => Some(p),
        }
    }
}

/// A random non-zero file id (the kernel's random source; if it is unavailable, a
/// value from the pid, a counter and an address, which still tells two files apart
/// in practice).
fn new_file_id() -> u64 {
    let mut b = [0u8; 8];
    let got = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap_or(0);
    let mut id = u64::from_le_bytes(b);
    if got < 8 {
        let here = &b as *const _ as u64;
        id ^= here.rotate_left(17) ^ (u64::from(my_pid()) << 32) ^ TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    id.max(1)
}

fn my_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Validates both rings of a mapped file and returns our ends.
fn attach_ends(map: &MmapRaw, geo: &Geometry, side: Side, path: &Path) -> Result<Ends, ShmError> {
    let ring = |direction: Direction| -> Result<(Producer<'static>, Consumer<'static>), ShmError> {
        let (off, len) = geo.ring(direction);
        let err = |error| ShmError::Ring { path: path.to_path_buf(), direction, error };
        // At most one end of each kind is live per ring across processes: each side
        // keeps one end of each ring and holds its side's exclusive lock; the other
        // end returned here is dropped at once, which does not touch the region.
        // SAFETY: `off + len <= file_len` (checked by `validate_control`), the mapping
        // outlives the ends (dropped first, next to an `Arc` of it), one end per kind.
        let (p, c) = unsafe { var::attach_raw(map.as_mut_ptr().add(off), len) }.map_err(err)?;
        let want = Config { capacity: geo.caps.of(direction), align: RING_ALIGN };
        if p.config() != want {
            let found = p.config();
            return Err(err(AttachError::ConfigMismatch {
                found: (found.capacity, found.align),
                expected: (want.capacity, want.align),
            }));
        }
        Ok((p, c))
    };
    let (s2c_p, s2c_c) = ring(Direction::ServerToClient)?;
    let (c2s_p, c2s_c) = ring(Direction::ClientToServer)?;
    Ok(match side {
        Side::Server => Ends { tx: s2c_p, rx: c2s_c },
        Side::Client => Ends { tx: c2s_p, rx: s2c_c },
    })
}

/// Opens, locks and validates an existing file.
fn open_existing(
    dir: &ShmDir,
    dfd: &OwnedFd,
    side: Side,
    server: &Name,
    client: &Name,
    caps: Option<Capacities>,
) -> Result<ShmFile, ShmError> {
    let name = dir.file_name(server, client);
    let path = dir.dir().join(&name);
    for _ in 0..ATTEMPTS {
        let Some(fd) = dir::open_nofollow(dfd, &name, &path)? else {
            return Err(ShmError::NotFound(path));
        };
        let st = dir::check_regular_owned(&fd, &path)?;
        let mode = st.st_mode & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ShmError::BadMode { path, mode });
        }
        if !lock::try_lock(fd.as_fd(), side.lock_byte()).map_err(|e| ShmError::io("lock", &path, e))? {
            return Err(ShmError::Busy { path, side });
        }
        // The name may have been replaced (reset) or removed between our open and our
        // lock: then we locked an orphan; start again.
        match dir::same_inode(dfd, &name, &path, &st)? {
            Some(true) => {}
            Some(false) => continue,
            None => return Err(ShmError::NotFound(path)),
        }
        let file = File::from(fd);
        let len = file.metadata().map_err(|e| ShmError::io("stat", &path, e))?.len();
        if len < CONTROL_LEN as u64 {
            return Err(ShmError::TooShort { path, len, need: CONTROL_LEN as u64 });
        }
        // Validate a private copy of the control block before mapping anything, so a
        // foreign file of any size is refused without being mapped.
        let mut copy = [0u8; CONTROL_LEN];
        file.read_exact_at(&mut copy, 0).map_err(|e| ShmError::io("read", &path, e))?;
        let geo = layout::validate_control(&copy, len, &path, &Expect { server, client, caps })?;
        let map = MmapOptions::new().len(geo.file_len).map_raw(&file).map_err(|e| ShmError::io("mmap", &path, e))?;
        // The immutable fields must still be the validated ones in the mapping.
        let cb = {
            // SAFETY: the mapping is `file_len >= CONTROL_LEN` bytes, page-aligned.
            unsafe { ControlBlock::new(map.as_mut_ptr()) }
        };
        let again = cb.snapshot();
        if again[..256] != copy[..256] {
            continue;
        }
        let ends = attach_ends(&map, &geo, side, &path)?;
        cb.pid(side).store(my_pid(), Ordering::Release);
        let guard = crate::guard::Mapping::register(map.as_mut_ptr(), geo.file_len);
        let inner = FileInner { guard, map, file, path, side, server: *server, client: *client, geo };
        return Ok(ShmFile { ends, inner: Arc::new(inner) });
    }
    Err(ShmError::Unstable(path))
}

/// Unlinks a temporary file unless disarmed.
struct TempGuard<'a> {
    dfd: &'a OwnedFd,
    name: String,
    armed: bool,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(self.dfd, &self.name, AtFlags::empty());
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a fresh file and renames it into place. `replace: false` refuses to
/// replace an existing file (then returns `Ok(None)`: someone else created it);
/// `true` replaces it (the caller holds both locks on the old one).
fn create_new(
    dir: &ShmDir,
    dfd: &OwnedFd,
    server: &Name,
    client: &Name,
    caps: Capacities,
    replace: bool,
) -> Result<Option<ShmFile>, ShmError> {
    let name = dir.file_name(server, client);
    create_named(dfd, dir, &name, server, client, caps, replace)
}

/// How a temporary file was put in place.
enum Placed {
    Renamed,
    Linked,
    Exists,
}

fn create_named(
    dfd: &OwnedFd,
    dir: &ShmDir,
    name: &str,
    server: &Name,
    client: &Name,
    caps: Capacities,
    replace: bool,
) -> Result<Option<ShmFile>, ShmError> {
    let path = dir.dir().join(name);
    let geo = Geometry::new(caps);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!("{name}{TEMP_MARK}{}.{n}", my_pid());
    let tmp_path = dir.dir().join(&tmp);
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dfd, &tmp, flags, Mode::from_raw_mode(0o600))
        .map_err(|e| ShmError::io("create", &tmp_path, e))?;
    let mut guard = TempGuard { dfd, name: tmp, armed: true };
    // The umask may have removed bits (e.g. 0400): set exactly 0600.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(|e| ShmError::io("chmod", &tmp_path, e))?;
    // Held from now on, through the rename, until the file is dropped; it also tells
    // `remove_stale_temps` that the creator is alive.
    if !lock::try_lock(fd.as_fd(), Side::Server.lock_byte()).map_err(|e| ShmError::io("lock", &tmp_path, e))? {
        return Err(ShmError::Busy { path: tmp_path, side: Side::Server });
    }
    // Reserve the memory now: on tmpfs a page first touched when the filesystem is
    // full is a SIGBUS, not an error; here it is an error at creation.
    match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, geo.file_len as u64) {
        Ok(()) => {}
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
            rustix::fs::ftruncate(&fd, geo.file_len as u64).map_err(|e| ShmError::io("truncate", &tmp_path, e))?
        }
        Err(e) => return Err(ShmError::io("allocate", &tmp_path, e)),
    }
    let file = File::from(fd);
    let map = MmapOptions::new().len(geo.file_len).map_raw(&file).map_err(|e| ShmError::io("mmap", &tmp_path, e))?;
    {
        // SAFETY: we created the file and hold the only mapping of it (its name is
        // private until the rename below); the mapping is `file_len` bytes.
        let all = unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr(), geo.file_len) };
        for direction in [Direction::ServerToClient, Direction::ClientToServer] {
            let (off, len) = geo.ring(direction);
            var::init(&mut all[off..off + len], Config { capacity: caps.of(direction), align: RING_ALIGN })
                .map_err(|error| ShmError::BadCapacity { direction, error })?;
        }
        layout::write_control(&mut all[..CONTROL_LEN], &geo, server, client, new_file_id());
    }
    let ends = attach_ends(&map, &geo, Side::Server, &path)?;
    let placed = if replace {
        rustix::fs::renameat(dfd, &guard.name, dfd, name).map(|()| Placed::Renamed)
    } else {
        match rustix::fs::renameat_with(dfd, &guard.name, dfd, name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(Placed::Renamed),
            Err(Errno::EXIST) => Ok(Placed::Exists),
            // A filesystem without RENAME_NOREPLACE: a hard link is just as atomic.
            Err(Errno::INVAL | Errno::NOSYS) => match rustix::fs::linkat(dfd, &guard.name, dfd, name, AtFlags::empty())
            {
                Ok(()) => Ok(Placed::Linked),
                Err(Errno::EXIST) => Ok(Placed::Exists),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    };
    match placed.map_err(|e| ShmError::io("rename", &path, e))? {
        // The temporary name is gone.
        Placed::Renamed => guard.armed = false,
        // The guard unlinks the temporary name.
        Placed::Linked => {}
        Placed::Exists => return Ok(None),
    }
    drop(guard);
    // SAFETY: as in `FileInner::control`.
    let cb = unsafe { ControlBlock::new(map.as_mut_ptr()) };
    cb.pid(Side::Server).store(my_pid(), Ordering::Release);
    let guard = crate::guard::Mapping::register(map.as_mut_ptr(), geo.file_len);
    let inner = FileInner { guard, map, file, path, side: Side::Server, server: *server, client: *client, geo };
    Ok(Some(ShmFile { ends, inner: Arc::new(inner) }))
}
