//! The file behind a region: created formatted under its final name in one step,
//! checked before it is trusted, and mapped shared.

use super::error::OpenError;
use crate::var::layout::{self, Geometry};
use crate::var::{region_size, AttachError, Config, InitError, HEADER_LEN};
use rustix::fs::{AtFlags, CWD};
use rustix::mm::{MapFlags, ProtFlags};
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A shared, writable mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub(super) struct Map {
    pub(super) base: *mut u8,
    pub(super) len: usize,
}

impl Map {
    /// Maps the first `len` bytes of `file` (`len > 0`) shared, readable and writable.
    fn new(file: &File, len: usize, path: &Path) -> Result<Map, OpenError> {
        // SAFETY: a fresh mapping chosen by the kernel (no address hint) aliases no
        // Rust object; the file is open for reading and writing.
        let base = unsafe {
            rustix::mm::mmap(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, file, 0)
        }
        .map_err(|e| io_err(path, "mmap", e.into()))?;
        Ok(Map { base: base.cast(), len })
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is the mapping made in `new`, unmapped only here;
        // nothing refers into it any more (the ends hold the `Arc` that owns us).
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.len) };
    }
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> OpenError {
    OpenError::Io { path: path.to_path_buf(), op, source }
}

/// Opens an existing file for reading and writing, without following a symbolic link
/// (someone else's link must not redirect us).
pub(super) fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)
}

/// Refuses a file that is not a regular file of this user with no group or other
/// permission bits, and returns its length.
fn check_private(file: &File, path: &Path) -> Result<u64, OpenError> {
    let meta = file.metadata().map_err(|e| io_err(path, "fstat", e))?;
    let uid = meta.uid();
    if !meta.file_type().is_file() || uid != rustix::process::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Err(OpenError::NotPrivate { path: path.to_path_buf(), uid, mode: meta.mode() });
    }
    Ok(meta.len())
}

/// A kind of region a file can hold: how big it is, how it is formatted and checked.
pub(super) trait Kind {
    /// What validation finds out about a region.
    type Geo: Copy;
    /// Bytes of the header (a shorter file is refused).
    const HEADER_LEN: usize;
    /// Bytes of a region of this configuration.
    fn len(&self) -> usize;
    /// Formats `base..base + len`.
    ///
    /// # Safety
    /// The memory is writable and nobody else's during the call.
    unsafe fn format(&self, base: *mut u8, len: usize) -> Result<Self::Geo, InitError>;
    /// Validates `base..base + len`.
    ///
    /// # Safety
    /// The memory is readable during the call.
    unsafe fn validate(base: *mut u8, len: usize) -> Result<Self::Geo, AttachError>;
    /// Whether a validated region has this configuration.
    fn check(&self, geo: Self::Geo) -> Result<(), AttachError>;
}

impl Kind for Config {
    type Geo = Geometry;
    const HEADER_LEN: usize = HEADER_LEN;
    fn len(&self) -> usize {
        region_size(self.capacity)
    }
    unsafe fn format(&self, base: *mut u8, len: usize) -> Result<Geometry, InitError> {
        // SAFETY: the caller's contract is `format`'s.
        unsafe { layout::format(base, len, *self) }
    }
    unsafe fn validate(base: *mut u8, len: usize) -> Result<Geometry, AttachError> {
        // SAFETY: the caller's contract is `validate`'s.
        unsafe { layout::validate(base, len) }
    }
    fn check(&self, geo: Geometry) -> Result<(), AttachError> {
        let found = geo.config();
        if found != *self {
            return Err(AttachError::ConfigMismatch {
                found: (found.capacity, found.align),
                expected: (self.capacity, self.align),
            });
        }
        Ok(())
    }
}

/// Checks, maps and validates an existing region; `expected` is the configuration the
/// caller asked for, if any.
pub(super) fn attach<K: Kind>(file: &File, path: &Path, expected: Option<&K>) -> Result<(Map, K::Geo), OpenError> {
    let len = check_private(file, path)?;
    if len == 0 {
        return Err(OpenError::Uninitialised(path.to_path_buf()));
    }
    let attach_err = |source| OpenError::Attach { path: path.to_path_buf(), source };
    if len < K::HEADER_LEN as u64 {
        return Err(attach_err(AttachError::TooShort(len as usize)));
    }
    let len = usize::try_from(len).map_err(|_| attach_err(AttachError::TooShort(usize::MAX)))?;
    let map = Map::new(file, len, path)?;
    // SAFETY: the mapping is `len` bytes, readable, and lives during the call.
    let geo = match unsafe { K::validate(map.base, map.len) } {
        Ok(geo) => geo,
        Err(AttachError::BadMagic(0)) => return Err(OpenError::Uninitialised(path.to_path_buf())),
        Err(e) => return Err(attach_err(e)),
    };
    if let Some(k) = expected {
        k.check(geo).map_err(attach_err)?;
    }
    Ok((map, geo))
}

/// Creates a formatted region at `path`: built in a file with no name (or, where the
/// file system cannot, a unique temporary name), then given its name with `link`, which
/// fails if the name exists. So a process never sees a half-made region under the name.
/// `Ok(None)`: another process created `path` first.
pub(super) fn create<K: Kind>(path: &Path, cfg: &K) -> Result<Option<(File, Map, K::Geo)>, OpenError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::TMPFILE.bits() as i32)
        .open(dir);
    match unnamed {
        Ok(file) => {
            let (map, geo) = format(&file, path, cfg)?;
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            match rustix::fs::linkat(CWD, proc_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
                Ok(()) => Ok(Some((file, map, geo))),
                Err(rustix::io::Errno::EXIST) => Ok(None),
                // No /proc: name it the portable way.
                Err(rustix::io::Errno::NOENT) => create_named(dir, path, cfg),
                Err(e) => Err(io_err(path, "link", e.into())),
            }
        }
        // The file system has no unnamed files (or the kernel predates them).
        Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR | nix::libc::EINVAL)) => {
            create_named(dir, path, cfg)
        }
        Err(e) => Err(io_err(dir, "create a file in", e)),
    }
}

/// [`create`] through a temporary name, removed afterwards. A process killed between
/// the two leaves the temporary file behind (`.<name>.<pid>.<n>.tmp`), never a
/// half-made region under `path`.
fn create_named<K: Kind>(dir: &Path, path: &Path, cfg: &K) -> Result<Option<(File, Map, K::Geo)>, OpenError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, "create", e))?;
    let made = format(&file, path, cfg).and_then(|(map, geo)| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(Some((map, geo))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io_err(path, "link", e)),
    });
    let _ = std::fs::remove_file(&tmp);
    Ok(made?.map(|(map, geo)| (file, map, geo)))
}

/// Sizes, maps and formats a new, still private file.
fn format<K: Kind>(file: &File, path: &Path, cfg: &K) -> Result<(Map, K::Geo), OpenError> {
    // Exactly 0600 whatever the umask (which could also have removed our own write bit).
    file.set_permissions(Permissions::from_mode(0o600)).map_err(|e| io_err(path, "chmod", e))?;
    let len = cfg.len();
    file.set_len(len as u64).map_err(|e| io_err(path, "size", e))?;
    let map = Map::new(file, len, path)?;
    // SAFETY: the file has no name yet (or a private temporary one nobody else opens),
    // so the fresh mapping of exactly `len` bytes is ours alone during the call.
    let geo = unsafe { cfg.format(map.base, map.len) }.map_err(OpenError::Config)?;
    Ok((map, geo))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The portable way (where the file system has no unnamed files, or there is no
    /// /proc): same result, nothing left behind, and a lost race is `None`.
    #[test]
    #[cfg_attr(miri, ignore = "mmap of a file")]
    fn creating_through_a_temporary_name() {
        let dir = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let path = dir.join(format!("tcpshm-ring-named-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (file, map, geo) = create_named(&dir, &path, &Config::new(4096)).unwrap().expect("created");
        assert_eq!(geo.config(), Config::new(4096));
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let again = open_existing(&path).unwrap();
        let (_, geo2) = attach(&again, &path, Some(&Config::new(4096))).unwrap();
        assert_eq!(geo2.config(), geo.config());
        assert!(create_named(&dir, &path, &Config::new(4096)).unwrap().is_none(), "the name exists: lost the race");
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name().to_string_lossy().starts_with(&format!(".tcpshm-ring-named-{}.", std::process::id()))
            })
            .count();
        assert_eq!(leftovers, 0);
        drop((file, map));
        std::fs::remove_file(&path).unwrap();
    }
}
