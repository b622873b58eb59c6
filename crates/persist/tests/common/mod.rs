//! Helpers shared by the integration tests: a self-removing temporary directory and
//! short constructors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tcpshm_proto::Name;

/// A fresh directory under the system temp dir, removed (with its files) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir::under(&std::env::temp_dir(), tag)
    }

    /// In memory (`/dev/shm`, where a sync costs nothing) if there is one: for tests
    /// that model the disk themselves and only need the page cache.
    pub fn in_memory(tag: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        TempDir::under(&base, tag)
    }

    fn under(base: &Path, tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = base.join(format!("tcpshm-persist-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Names of the files in the directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// Deterministic message `seq` of a session: its type, ack and bytes (length 0..=300,
/// sometimes up to 2000), so any copy can be checked against its seq alone.
pub fn message(epoch_salt: u64, seq: u64) -> (u16, u64, Vec<u8>) {
    let mut rng = Rng::new(splitmix(epoch_salt ^ splitmix(seq)));
    let x = rng.next();
    let len = if x.is_multiple_of(16) { (x >> 8) % 2001 } else { (x >> 8) % 301 } as usize;
    let msg_type = (x >> 40) as u16 % 0xFF00;
    let ack = rng.next() >> 20;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let x = rng.next();
        bytes.extend_from_slice(&x.to_le_bytes()[..(len - bytes.len()).min(8)]);
    }
    (msg_type, ack, bytes)
}

/// SplitMix64: a counter stepped by the golden gamma, then mixed. (Iterating the
/// mixer on its own output would make a stream seeded from another stream's output
/// replay that stream.)
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform-ish in `0..m`.
    pub fn below(&mut self, m: u64) -> u64 {
        self.next() % m
    }
}

/// The SplitMix64 finaliser of `z + gamma` (a hash of `z`).
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(z)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
