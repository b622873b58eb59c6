//! Counters shared between processes: a child reports its progress around each step
//! it takes (a push, a pop) where a parent that kills it with SIGKILL can read it
//! afterwards — a test-side record, beside the state under test.

use memmap2::MmapRaw;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// How many counters a file holds.
pub const SLOTS: usize = 64;

/// `SLOTS` atomic `u64`s in a small file (each on its own cache line), mapped shared:
/// every process that opens the same path sees the same counters. Stores are visible
/// to the others at once and survive the death of the process that made them.
///
/// ```
/// use std::sync::atomic::Ordering;
/// use tcpshm_test_support::shared::Counters;
/// let path = std::env::temp_dir().join(format!("tcpshm-doc-counters-{}", std::process::id()));
/// let a = Counters::open(&path);
/// let b = Counters::open(&path);
/// a.at(3).store(7, Ordering::SeqCst);
/// assert_eq!(b.at(3).load(Ordering::SeqCst), 7);
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct Counters {
    map: MmapRaw,
    path: PathBuf,
}

const STRIDE: usize = 64;

impl Counters {
    /// Opens (creating, zeroed) the counters at `path`.
    pub fn open(path: &Path) -> Counters {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        f.set_len((SLOTS * STRIDE) as u64).expect("size the counters file");
        let map = MmapRaw::map_raw(&f).expect("map the counters file");
        Counters { map, path: path.to_path_buf() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counter `i` (below [`SLOTS`]).
    pub fn at(&self, i: usize) -> &AtomicU64 {
        assert!(i < SLOTS, "counter {i} of {SLOTS}");
        // SAFETY: the mapping is SLOTS * STRIDE bytes, page-aligned, so `i * STRIDE`
        // is in bounds and 8-aligned; it lives as long as `self`, and every process
        // accesses these words only atomically.
        unsafe { &*self.map.as_mut_ptr().add(i * STRIDE).cast::<AtomicU64>() }
    }
}
