//! The shared-memory tests' directory: `tcpshm_test_support::TempDir`'s unique prefix
//! as a `ShmDir` (its files are removed on drop, also when a test fails).
#![allow(dead_code)]

use tcpshm_proto::Name;
use tcpshm_test_support::TempDir;
use tcpshm_transport_shm::ShmDir;

/// A unique prefix under /dev/shm; every file with it is removed on drop.
pub struct TestDir {
    pub dir: ShmDir,
    temp: TempDir,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let temp = TempDir::new(tag);
        TestDir { dir: ShmDir::new("/dev/shm", temp.shm_prefix()).unwrap(), temp }
    }

    /// Every file in /dev/shm with this prefix (connection files and temporaries).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.temp.shm_files()
    }
}

pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}
