//! Helpers shared by the integration tests: unique directories under /dev/shm that
//! clean up after themselves, and socket pairs for the control channel.
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use tcpshm_proto::Name;
use tcpshm_transport_shm::ShmDir;

static N: AtomicU64 = AtomicU64::new(0);

/// A unique prefix under /dev/shm; every file with it is removed on drop.
pub struct TestDir {
    pub dir: ShmDir,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("tshm-test-{tag}-{}-{n}-", std::process::id());
        TestDir { dir: ShmDir::new("/dev/shm", &prefix).unwrap() }
    }

    /// Every file in /dev/shm with this prefix (connection files and temporaries).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(self.dir.prefix())))
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        for p in self.files() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// A connected pair of non-blocking Unix sockets.
pub fn socket_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}
