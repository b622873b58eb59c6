//! Temporary directories that clean up after themselves, shared-memory files included.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, and a shared-memory prefix unique to
/// it; on drop the directory and every `/dev/shm` file with the prefix are removed.
///
/// ```
/// let t = tcpshm_test_support::TempDir::new("doc");
/// std::fs::create_dir_all(t.path()).unwrap();
/// assert!(t.shm_prefix().starts_with("tcpshm-test-doc-"));
/// ```
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    prefix: String,
}

impl TempDir {
    /// A new directory name (not created: the code under test creates it, with its
    /// own mode) for the test `tag`.
    pub fn new(tag: &str) -> TempDir {
        TempDir::new_in(std::env::temp_dir(), tag)
    }

    /// The same under `base` (e.g. `/dev/shm`, for a test whose subject is not the
    /// disk: creating a store syncs it, which costs milliseconds on a real disk).
    ///
    /// ```
    /// let t = tcpshm_test_support::TempDir::new_in("/dev/shm", "doc-in");
    /// assert!(t.path().starts_with("/dev/shm"));
    /// ```
    pub fn new_in(base: impl AsRef<Path>, tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("tcpshm-test-{tag}-{}-{n}", std::process::id());
        let path = base.as_ref().join(&name);
        let _ = std::fs::remove_dir_all(&path);
        TempDir { path, prefix: format!("{name}-") }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// A shared-memory file prefix unique to this directory.
    pub fn shm_prefix(&self) -> &str {
        &self.prefix
    }

    /// The files under `/dev/shm` with this directory's prefix.
    pub fn shm_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&self.prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        for f in self.shm_files() {
            let _ = std::fs::remove_file(f);
        }
    }
}
