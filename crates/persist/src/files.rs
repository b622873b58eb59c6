//! The store directory: file names derived from validated names, opening with an
//! exclusive lock, building a file under a temporary name and renaming it into place.
//!
//! Why a temporary file and a rename: a store file is never visible under its real
//! name until it is complete and synced, so a crash while creating, migrating or
//! resetting leaves either the old file or the new one, never a half-written one.
//! The temporary name starts with a dot, which no valid [`Name`] does, so it cannot
//! collide with a store.

use crate::error::OpenError;
use rustix::fs::{self, AtFlags, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tcpshm_proto::Name;

/// Suffix of store files.
pub const FILE_SUFFIX: &str = ".tcpshm";

/// How many times an open retries when the file is replaced under it (a concurrent
/// reset or creation); each retry means another process made progress.
const RETRIES: usize = 64;

/// File name of the store of the pair: `<local>@<remote>.tcpshm`. Names cannot hold
/// `/`, `@` or a leading dot, so the name stays inside the directory and two pairs
/// never map to one file.
///
/// ```
/// use tcpshm_proto::Name;
/// let n = tcpshm_persist::file_name(&Name::new("c1").unwrap(), &Name::new("srv").unwrap());
/// assert_eq!(n, "c1@srv.tcpshm");
/// ```
pub fn file_name(local: &Name, remote: &Name) -> String {
    format!("{local}@{remote}{FILE_SUFFIX}")
}

pub(crate) fn temp_name(local: &Name, remote: &Name) -> String {
    format!(".{local}@{remote}{FILE_SUFFIX}.tmp")
}

/// Parses a store file name back into its pair (`local`, `remote`); `None` for any
/// other file (temporary files included).
///
/// ```
/// let (l, r) = tcpshm_persist::parse_file_name("c1@srv.tcpshm").unwrap();
/// assert_eq!((l.as_str(), r.as_str()), ("c1", "srv"));
/// assert!(tcpshm_persist::parse_file_name(".c1@srv.tcpshm.tmp").is_none());
/// ```
pub fn parse_file_name(s: &str) -> Option<(Name, Name)> {
    let stem = s.strip_suffix(FILE_SUFFIX)?;
    let (l, r) = stem.split_once('@')?;
    Some((Name::new(l).ok()?, Name::new(r).ok()?))
}

/// An open directory: every file operation is relative to this descriptor, so a
/// rename of the directory's path does not redirect a store half-way.
#[derive(Debug, Clone)]
pub(crate) struct Dir {
    fd: Arc<OwnedFd>,
    pub(crate) path: PathBuf,
}

pub(crate) fn io_err(path: &Path, op: &'static str, e: impl Into<std::io::Error>) -> OpenError {
    OpenError::Io { path: path.to_path_buf(), op, source: e.into() }
}

impl Dir {
    /// Opens `path`, creating it (mode 0700) if missing.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Dir, OpenError> {
        if create {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| io_err(path, "create directory", e))?;
        }
        let fd = fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err(path, "open directory", e))?;
        Ok(Dir { fd: Arc::new(fd), path: path.to_path_buf() })
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Makes renames and unlinks in the directory durable.
    pub(crate) fn sync(&self) -> Result<(), OpenError> {
        fs::fsync(&*self.fd).map_err(|e| io_err(&self.path, "fsync directory", e))
    }

    /// Opens `name` read-write without following a symlink, checks it is a regular
    /// file, takes the exclusive lock without waiting, and checks that `name` still
    /// names the locked file (a concurrent rename may have replaced it: then retry).
    /// `create` makes the file (mode 0600) if missing; otherwise a missing file is
    /// `Ok(None)`.
    pub(crate) fn open_locked(&self, name: &str, create: bool) -> Result<Option<File>, OpenError> {
        let path = self.join(name);
        let mut flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if create {
            flags |= OFlags::CREATE;
        }
        for _ in 0..RETRIES {
            let fd = match fs::openat(&*self.fd, name, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if !create => return Ok(None),
                Err(Errno::LOOP | Errno::ISDIR | Errno::NXIO) => return Err(OpenError::NotRegularFile { path }),
                Err(e) => return Err(io_err(&path, "open", e)),
            };
            let st = fs::fstat(&fd).map_err(|e| io_err(&path, "fstat", e))?;
            if fs::FileType::from_raw_mode(st.st_mode) != fs::FileType::RegularFile {
                return Err(OpenError::NotRegularFile { path });
            }
            match fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => return Err(OpenError::Locked { path }),
                Err(e) => return Err(io_err(&path, "flock", e)),
            }
            match fs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => return Ok(Some(File::from(fd))),
                Ok(_) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err(&path, "stat", e)),
            }
        }
        Err(OpenError::Locked { path })
    }

    /// Locks and empties the temporary file `name`, mode 0600 whatever the umask.
    pub(crate) fn create_temp(&self, name: &str) -> Result<File, OpenError> {
        let path = self.join(name);
        let file = self.open_locked(name, true)?.expect("created");
        fs::ftruncate(&file, 0).map_err(|e| io_err(&path, "truncate", e))?;
        fs::fchmod(&file, Mode::from_raw_mode(0o600)).map_err(|e| io_err(&path, "chmod 0600", e))?;
        Ok(file)
    }

    /// Gives `file` its length with the disk blocks reserved, so that writing through
    /// the mapping can never hit a full disk (which would be a SIGBUS, not an error).
    pub(crate) fn allocate(&self, name: &str, file: &File, len: u64) -> Result<(), OpenError> {
        let path = self.join(name);
        fs::ftruncate(file, len).map_err(|e| io_err(&path, "set length", e))?;
        match fs::fallocate(file, fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // A file system without fallocate: the file stays sparse (documented).
            Err(Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(io_err(&path, "reserve disk space (fallocate)", e)),
        }
    }

    /// Renames the synced temporary file over (or, with `no_replace`, to) `name` and
    /// makes the rename durable. `Ok(false)` when `no_replace` and `name` exists.
    pub(crate) fn commit(&self, temp: &str, name: &str, no_replace: bool, durable: bool) -> Result<bool, OpenError> {
        let path = self.join(name);
        let r = if no_replace {
            match fs::renameat_with(&*self.fd, temp, &*self.fd, name, RenameFlags::NOREPLACE) {
                // File systems without RENAME_NOREPLACE: the temporary file's lock
                // already keeps a second creator out, so a plain rename is safe.
                Err(Errno::INVAL | Errno::NOSYS) => fs::renameat(&*self.fd, temp, &*self.fd, name),
                r => r,
            }
        } else {
            fs::renameat(&*self.fd, temp, &*self.fd, name)
        };
        match r {
            Ok(()) => {}
            Err(Errno::EXIST) if no_replace => {
                let _ = fs::unlinkat(&*self.fd, temp, AtFlags::empty());
                return Ok(false);
            }
            Err(e) => return Err(io_err(&path, "rename into place", e)),
        }
        // The rename is atomic for every process at once; only power loss needs the
        // directory on disk, and only `Durability::Sync` promises to survive it.
        if durable {
            self.sync()?;
        }
        Ok(true)
    }

    /// Makes `name` also reachable as `keep` (a hard link; an older `keep` is
    /// replaced), so that a file about to be replaced by a rename stays on disk.
    pub(crate) fn keep_as(&self, name: &str, keep: &str) -> Result<(), OpenError> {
        let path = self.join(keep);
        match fs::unlinkat(&*self.fd, keep, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_err(&path, "remove the previous copy", e)),
        }
        fs::linkat(&*self.fd, name, &*self.fd, keep, AtFlags::empty()).map_err(|e| io_err(&path, "link", e))
    }

    /// Removes a temporary file after a failed build (best effort).
    pub(crate) fn discard(&self, temp: &str) {
        let _ = fs::unlinkat(&*self.fd, temp, AtFlags::empty());
    }

    /// Unlinks `name` and makes it durable.
    pub(crate) fn unlink(&self, name: &str) -> Result<(), OpenError> {
        fs::unlinkat(&*self.fd, name, AtFlags::empty()).map_err(|e| io_err(&self.join(name), "unlink", e))?;
        self.sync()
    }

    /// The store files in the directory, sorted by name.
    pub(crate) fn list(&self) -> Result<Vec<(Name, Name, PathBuf)>, OpenError> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.path).map_err(|e| io_err(&self.path, "read directory", e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&self.path, "read directory", e))?;
            if let Some((l, r)) = entry.file_name().to_str().and_then(parse_file_name) {
                out.push((l, r, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_others() {
        let (l, r) = (Name::new("a.b-c_1").unwrap(), Name::new("Server20180714").unwrap());
        assert_eq!(parse_file_name(&file_name(&l, &r)), Some((l, r)));
        for bad in [
            "a@b",
            "a@b.tcpshm.tmp",
            ".a@b.tcpshm",
            "a@.b.tcpshm",
            "ab.tcpshm",
            "a@b@c.tcpshm",
            "@b.tcpshm",
            "a@.tcpshm",
            "a/x@b.tcpshm",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        assert!(temp_name(&l, &r).starts_with('.'));
        assert_eq!(parse_file_name(&temp_name(&l, &r)), None);
    }
}
