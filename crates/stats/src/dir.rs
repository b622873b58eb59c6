//! Where counters files live and how they are found: `<dir>/<prefix><server>.<pid>.<n>.stats`.

use crate::error::StatsError;
use crate::reader::StatsReader;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use tcpshm_proto::Name;
use tcpshm_ring::shm::lock;

/// Suffix of counters files.
pub const SUFFIX: &str = ".stats";

/// A directory and a file-name prefix for counters files. Default: `/dev/shm` (memory:
/// no disk writeback under the server's stores) and `tcpshm-stats-`.
///
/// ```
/// let d = tcpshm_stats::StatsDir::default();
/// assert_eq!((d.dir().to_str(), d.prefix()), (Some("/dev/shm"), "tcpshm-stats-"));
/// assert!(tcpshm_stats::StatsDir::new("/dev/shm", "../x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsDir {
    dir: PathBuf,
    prefix: String,
}

impl Default for StatsDir {
    fn default() -> Self {
        StatsDir { dir: PathBuf::from(Self::DEFAULT_DIR), prefix: Self::DEFAULT_PREFIX.to_owned() }
    }
}

impl StatsDir {
    /// The default directory.
    pub const DEFAULT_DIR: &'static str = "/dev/shm";
    /// The default prefix.
    pub const DEFAULT_PREFIX: &'static str = "tcpshm-stats-";

    /// A directory and a prefix (at most 64 bytes of ASCII letters, digits, `_`, `-`,
    /// `.`, not starting with a dot; may be empty).
    pub fn new(dir: impl Into<PathBuf>, prefix: &str) -> Result<StatsDir, StatsError> {
        let ok = prefix.len() <= 64
            && !prefix.starts_with('.')
            && prefix.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        if !ok {
            return Err(StatsError::BadPrefix(prefix.to_owned()));
        }
        Ok(StatsDir { dir: dir.into(), prefix: prefix.to_owned() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `file_name` is a counters file name of this directory (of `server`, if
    /// given).
    fn matches(&self, file_name: &str, server: Option<Name>) -> bool {
        let Some(rest) = file_name.strip_prefix(self.prefix.as_str()).and_then(|r| r.strip_suffix(SUFFIX)) else {
            return false;
        };
        // `<server>.<pid>.<n>`: a server name may hold dots, so count from the right.
        let mut parts = rest.rsplitn(3, '.');
        let (Some(n), Some(pid), Some(name)) = (parts.next(), parts.next(), parts.next()) else { return false };
        if n.parse::<u32>().is_err() || pid.parse::<u32>().is_err() || Name::new(name).is_err() {
            return false;
        }
        server.is_none_or(|s| s.as_str() == name)
    }

    /// The counters files in the directory, by name (none is opened), sorted.
    pub fn list(&self) -> Result<Vec<PathBuf>, StatsError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| StatsError::io(&self.dir, "read directory", e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StatsError::io(&self.dir, "read directory", e))?;
            if entry.file_name().to_str().is_some_and(|n| self.matches(n, None)) {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The counters files of live servers, opened, sorted by path; files that cannot
    /// be read (being created, foreign) are skipped.
    pub fn live(&self) -> Result<Vec<StatsReader>, StatsError> {
        let mut out = Vec::new();
        for path in self.list()? {
            if let Ok(r) = StatsReader::open(&path) {
                if r.is_live().unwrap_or(false) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Removes the counters files of dead servers (of `server` only, if given): files
    /// whose lock nobody holds. Returns the paths removed. A live server's file is
    /// never removed (the lock is taken before the unlink).
    pub fn remove_dead(&self, server: Option<Name>) -> Result<Vec<PathBuf>, StatsError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) => return Err(StatsError::io(&self.dir, "read directory", e)),
        };
        let mut removed = Vec::new();
        for entry in rd.flatten() {
            if entry.file_name().to_str().is_some_and(|n| self.matches(n, server)) {
                let path = entry.path();
                if remove_if_dead(&path)? {
                    removed.push(path);
                }
            }
        }
        removed.sort();
        Ok(removed)
    }
}

/// Removes the counters file at `path` if its server is gone (nobody holds its lock):
/// `Ok(true)` if removed, `Ok(false)` if a live server holds it or it is already gone.
pub fn remove_if_dead(path: &Path) -> Result<bool, StatsError> {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(StatsError::io(path, "open", e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| StatsError::io(path, "stat", e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(false);
    }
    if !lock::try_lock(fd.as_fd(), 0).map_err(|e| StatsError::io(path, "lock", e))? {
        return Ok(false);
    }
    // Still the file we locked under that name?
    match rustix::fs::lstat(path) {
        Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
        _ => return Ok(false),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StatsError::io(path, "unlink", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_from_the_right() {
        let d = StatsDir::new("/x", "p-").unwrap();
        let s = Name::new("Srv.2018-07-14").unwrap();
        assert!(d.matches("p-Srv.2018-07-14.123.0.stats", Some(s)));
        assert!(d.matches("p-Srv.2018-07-14.123.0.stats", None));
        assert!(!d.matches("p-Srv.2018-07-14.123.0.stats", Some(Name::new("Srv").unwrap())));
        for bad in
            ["p-Srv.1.stats", "p-.1.2.stats", "q-Srv.1.2.stats", "p-Srv.x.2.stats", "p-Srv.1.2.shm", ".p-S.1.2.stats"]
        {
            assert!(!d.matches(bad, None), "{bad}");
        }
    }
}
