//! Where connection files live: a directory and a file-name prefix, the naming rule
//! `<prefix><server>@<client>.shm`, listing and explicit removal.

use crate::error::{ShmError, Side};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use tcpshm_proto::Name;
use tcpshm_ring::shm::lock;

/// Longest prefix in bytes.
pub const MAX_PREFIX_LEN: usize = 64;
/// File-name suffix of a connection file.
pub const SUFFIX: &str = ".shm";
/// What follows `<prefix><server>@<client>.shm` in the name of a file being created
/// (`.tmp.<pid>.<n>`); such a file is never opened as a connection.
pub(crate) const TEMP_MARK: &str = ".tmp.";
/// Attempts before giving up on a file that keeps being replaced under us.
pub(crate) const ATTEMPTS: usize = 8;

/// A directory and a file-name prefix for connection files: the file of the
/// connection between `server` and `client` is `<dir>/<prefix><server>@<client>.shm`.
/// The default is `/dev/shm` (memory, not disk) with prefix `tcpshm-`.
///
/// Names are validated [`Name`]s (no `/`, no leading dot, no `@`), and the prefix is
/// validated here, so a file name can never escape the directory or be ambiguous.
///
/// ```
/// use tcpshm_proto::Name;
/// use tcpshm_transport_shm::ShmDir;
///
/// let d = ShmDir::default();
/// let (s, c) = (Name::new("Server1").unwrap(), Name::new("alice").unwrap());
/// assert_eq!(d.path(&s, &c).to_str(), Some("/dev/shm/tcpshm-Server1@alice.shm"));
/// assert!(ShmDir::new("/dev/shm", "../x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmDir {
    dir: PathBuf,
    prefix: String,
}

/// A connection file found by [`ShmDir::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmEntry {
    /// The server's name.
    pub server: Name,
    /// The client's name.
    pub client: Name,
    /// The file.
    pub path: PathBuf,
}

impl Default for ShmDir {
    fn default() -> Self {
        ShmDir { dir: PathBuf::from(Self::DEFAULT_DIR), prefix: Self::DEFAULT_PREFIX.to_owned() }
    }
}

/// Whether `p` is a valid file-name prefix for connection files (at most 64 bytes of
/// ASCII letters, digits, `_`, `-`, `.`, not starting with a dot; may be empty). The
/// one rule, used by [`ShmDir::new`] and by the server's and client's configurations.
///
/// ```
/// assert!(tcpshm_transport_shm::prefix_ok("tcpshm-"));
/// assert!(!tcpshm_transport_shm::prefix_ok(".hidden"));
/// assert!(!tcpshm_transport_shm::prefix_ok("a/b"));
/// ```
pub fn prefix_ok(p: &str) -> bool {
    p.len() <= MAX_PREFIX_LEN
        && !p.starts_with('.')
        && p.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

impl ShmDir {
    /// The default directory.
    pub const DEFAULT_DIR: &'static str = "/dev/shm";
    /// The default prefix.
    pub const DEFAULT_PREFIX: &'static str = "tcpshm-";

    /// A directory and a prefix (at most 64 bytes of ASCII letters, digits, `_`, `-`,
    /// `.`, not starting with a dot; may be empty).
    pub fn new(dir: impl Into<PathBuf>, prefix: &str) -> Result<ShmDir, ShmError> {
        if !prefix_ok(prefix) {
            return Err(ShmError::BadPrefix(prefix.to_owned()));
        }
        Ok(ShmDir { dir: dir.into(), prefix: prefix.to_owned() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The file name (no directory) of the connection `server`/`client`.
    pub fn file_name(&self, server: &Name, client: &Name) -> String {
        format!("{}{}@{}{}", self.prefix, server, client, SUFFIX)
    }

    /// The path of the connection `server`/`client`.
    pub fn path(&self, server: &Name, client: &Name) -> PathBuf {
        self.dir.join(self.file_name(server, client))
    }

    /// Parses a file name of this directory's naming rule; `None` for anything else
    /// (other prefixes, temporary files, invalid names).
    ///
    /// ```
    /// let d = tcpshm_transport_shm::ShmDir::default();
    /// let (s, c) = d.parse_file_name("tcpshm-a.b@c.shm").unwrap();
    /// assert_eq!((s.as_str(), c.as_str()), ("a.b", "c"));
    /// assert!(d.parse_file_name("tcpshm-a@b.shm.tmp.1.0").is_none());
    /// assert!(d.parse_file_name("tcpshm-a@b@c.shm").is_none());
    /// ```
    pub fn parse_file_name(&self, file_name: &str) -> Option<(Name, Name)> {
        let rest = file_name.strip_prefix(self.prefix.as_str())?.strip_suffix(SUFFIX)?;
        let (server, client) = rest.split_once('@')?;
        Some((Name::new(server).ok()?, Name::new(client).ok()?))
    }

    /// Every connection file in the directory with this prefix, sorted by path.
    /// Files being created (temporary names) and other files are skipped.
    pub fn list(&self) -> Result<Vec<ShmEntry>, ShmError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| ShmError::io("list", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| ShmError::io("list", &self.dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if let Some((server, client)) = self.parse_file_name(&name) {
                out.push(ShmEntry { server, client, path: entry.path() });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes the file of the connection `server`/`client`: the explicit removal
    /// (files are never removed implicitly). Returns whether a file was removed.
    ///
    /// Refused with [`ShmError::Busy`] while either side is attached (its lock is
    /// held, by another process or by another open in this one): drop the
    /// connection first. Both locks are held during the unlink, so no process can
    /// attach to the file being removed; one that opened it just before sees that
    /// its path is gone and reports [`ShmError::NotFound`].
    pub fn remove(&self, server: &Name, client: &Name) -> Result<bool, ShmError> {
        let dfd = self.open_dir()?;
        let name = self.file_name(server, client);
        let path = self.dir.join(&name);
        for _ in 0..ATTEMPTS {
            let fd = match open_nofollow(&dfd, &name, &path)? {
                Some(fd) => fd,
                None => return Ok(false),
            };
            let st = check_regular_owned(&fd, &path)?;
            lock_both(&fd, &path)?;
            match same_inode(&dfd, &name, &path, &st)? {
                Some(true) => {}
                Some(false) => continue,
                None => return Ok(false),
            }
            rustix::fs::unlinkat(&dfd, &name, AtFlags::empty()).map_err(|e| ShmError::io("unlink", &path, e))?;
            return Ok(true);
        }
        Err(ShmError::Unstable(path))
    }

    /// Removes temporary files left by a process that died while creating a
    /// connection file (`<prefix><server>@<client>.shm.tmp.<pid>.<n>`, never mapped
    /// by anyone else). A temporary file whose creator is alive is locked and kept.
    /// Returns how many were removed.
    pub fn remove_stale_temps(&self) -> Result<usize, ShmError> {
        let dfd = self.open_dir()?;
        let rd = std::fs::read_dir(&self.dir).map_err(|e| ShmError::io("list", &self.dir, e))?;
        let mut removed = 0;
        for entry in rd {
            let entry = entry.map_err(|e| ShmError::io("list", &self.dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let Some((base, _)) = name.split_once(TEMP_MARK) else { continue };
            if self.parse_file_name(base).is_none() {
                continue;
            }
            let path = entry.path();
            let Ok(Some(fd)) = open_nofollow(&dfd, &name, &path) else { continue };
            if check_regular_owned(&fd, &path).is_err() {
                continue;
            }
            // The creator holds the server lock from creation until it drops the file.
            if lock::try_lock(fd.as_fd(), Side::Server.lock_byte()).map_err(|e| ShmError::io("lock", &path, e))? {
                match rustix::fs::unlinkat(&dfd, &name, AtFlags::empty()) {
                    Ok(()) => removed += 1,
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(ShmError::io("unlink", &path, e)),
                }
            }
        }
        Ok(removed)
    }

    pub(crate) fn open_dir(&self) -> Result<OwnedFd, ShmError> {
        rustix::fs::open(&self.dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ShmError::io("open directory", &self.dir, e))
    }
}

/// Opens `name` in `dfd` read-write without following a symlink. `None` if it does
/// not exist.
pub(crate) fn open_nofollow(dfd: &OwnedFd, name: &str, path: &Path) -> Result<Option<OwnedFd>, ShmError> {
    // NONBLOCK: opening a FIFO planted under our name must not hang (it is then
    // refused as not a regular file).
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(dfd, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::LOOP) => Err(ShmError::NotRegularFile(path.to_path_buf())),
        Err(e) => Err(ShmError::io("open", path, e)),
    }
}

/// Checks that `fd` is a regular file owned by our effective uid; returns its stat.
pub(crate) fn check_regular_owned(fd: &OwnedFd, path: &Path) -> Result<rustix::fs::Stat, ShmError> {
    let st = rustix::fs::fstat(fd).map_err(|e| ShmError::io("stat", path, e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(ShmError::NotRegularFile(path.to_path_buf()));
    }
    let ours = rustix::process::geteuid().as_raw();
    if st.st_uid != ours {
        return Err(ShmError::NotOwner { path: path.to_path_buf(), owner: st.st_uid, ours });
    }
    Ok(st)
}

/// Whether `name` in `dfd` is still the inode `st` (`None`: the name is gone).
pub(crate) fn same_inode(
    dfd: &OwnedFd,
    name: &str,
    path: &Path,
    st: &rustix::fs::Stat,
) -> Result<Option<bool>, ShmError> {
    match rustix::fs::statat(dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now) => Ok(Some(now.st_dev == st.st_dev && now.st_ino == st.st_ino)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(ShmError::io("stat", path, e)),
    }
}

/// Takes both sides' locks on `fd` (for removal or replacement): `Busy` naming the
/// side that is attached.
pub(crate) fn lock_both(fd: &OwnedFd, path: &Path) -> Result<(), ShmError> {
    for side in [Side::Server, Side::Client] {
        if !lock::try_lock(fd.as_fd(), side.lock_byte()).map_err(|e| ShmError::io("lock", path, e))? {
            return Err(ShmError::Busy { path: path.to_path_buf(), side });
        }
    }
    Ok(())
}
