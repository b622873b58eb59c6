//! Plumbing of the root package's benches (echo, stream, scale) on top of
//! `common`: a cheap calibrated clock, HdrHistogram summaries, child processes (the
//! bench binary re-executes itself in a role, pinned to its own cpu), scratch
//! directories, the echo payloads and the server/client setup.
#![allow(dead_code)]

pub mod child;
pub mod clock;
pub mod floors;
pub mod hist;
pub mod ours;
pub mod payload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory under cargo's target tmp dir (or the system temp dir), removed
/// with its contents on drop.
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
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A prefix for shared-memory files of this bench process (`/dev/shm/<prefix>...`),
/// and removal of every such file at the end.
pub struct ShmPrefix(String);

impl ShmPrefix {
    /// `tb<pid>-<n>-` (short: the server limits prefixes to 32 characters).
    pub fn new() -> ShmPrefix {
        static N: AtomicUsize = AtomicUsize::new(0);
        ShmPrefix(format!("tb{}-{}-", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
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

/// The cpus online on this machine (not this process's affinity, which pinning
/// narrows): from `/sys/devices/system/cpu/online` (e.g. `0-1`), else `/proc/cpuinfo`.
pub fn online_cpus() -> Vec<usize> {
    let mut cpus = Vec::new();
    if let Ok(s) = std::fs::read_to_string("/sys/devices/system/cpu/online") {
        for part in s.trim().split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                cpus.extend(a..=b);
            }
        }
    }
    if cpus.is_empty() {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        cpus = (0..info.lines().filter(|l| l.starts_with("processor")).count().max(1)).collect();
    }
    cpus
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` descriptors (and the hard limit
/// too when allowed, e.g. as root). Returns the soft limit in force afterwards and,
/// if it is below `want`, why.
pub fn raise_nofile(want: u64) -> (u64, Option<String>) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let soft = cur.current.unwrap_or(u64::MAX);
    if soft >= want {
        return (soft, None);
    }
    let hard = cur.maximum.unwrap_or(u64::MAX);
    let mut why = None;
    if hard < want {
        let r = Rlimit { current: Some(want), maximum: Some(want) };
        match setrlimit(Resource::Nofile, r) {
            Ok(()) => return (want, None),
            Err(e) => {
                why = Some(format!("the hard RLIMIT_NOFILE is {hard} and raising it to {want} was refused ({e})"))
            }
        }
    }
    let target = want.min(hard);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: cur.maximum });
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < want && why.is_none() {
        why = Some(format!("RLIMIT_NOFILE could only be raised to {now}"));
    }
    (now, why)
}
