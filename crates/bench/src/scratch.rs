//! Scratch space of a bench process: directories and shared-memory file names that
//! are its own, removed when it is done.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory under cargo's target tmp dir (or the system temp dir), removed
/// with its contents on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh, empty directory named after `tag`, this process and a counter.
    pub fn new(tag: &str) -> Scratch {
        let base = option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        Scratch::in_dir(&base, tag)
    }

    /// A fresh directory under `base` (e.g. `/dev/shm`, where creating thousands of
    /// crash-safe stores costs no disk syncs).
    pub fn in_dir(base: &Path, tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = base.join(format!("bench-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside it, as a string (for a child's arguments).
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A prefix for shared-memory files of this bench process (`/dev/shm/<prefix>...`),
/// and removal of every such file at the end.
#[derive(Debug)]
pub struct ShmPrefix(String);

impl ShmPrefix {
    /// `tb<pid>-<n>-` (short: the server limits prefixes).
    pub fn new() -> ShmPrefix {
        static N: AtomicUsize = AtomicUsize::new(0);
        ShmPrefix(format!("tb{}-{}-", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path of a file `name` with this prefix in `/dev/shm`.
    pub fn file(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/dev/shm/{}{name}", self.0))
    }
}

impl Default for ShmPrefix {
    fn default() -> Self {
        ShmPrefix::new()
    }
}

impl Drop for ShmPrefix {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir("/dev/shm") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.0) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
