//! Shared helpers of the server's end-to-end tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tcpshm_proto::Msg;
use tcpshm_server::{Conn, GroupHandler, Handled};

/// Nanoseconds since the first call (the tests' clock; the library reads none).
pub fn now() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tcpshm-server-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
    /// A unique shared-memory prefix for this test.
    /// (The directory's own name: unique per process and per `TempDir`.)
    pub fn shm_prefix(&self) -> String {
        format!("{}-", self.0.file_name().unwrap().to_string_lossy())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // Also on a failed test: the shared-memory files made under this prefix.
        let prefix = self.shm_prefix();
        if let Ok(d) = std::fs::read_dir("/dev/shm") {
            for e in d.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Echoes every message back, zero-copy.
#[derive(Default)]
pub struct Echo;

impl GroupHandler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match conn.alloc(msg.payload.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg.payload);
                conn.push(msg.msg_type).expect("allocated");
                Handled::Pop
            }
            Ok(None) => Handled::Keep,
            Err(e) => {
                conn.close_with(e.to_string());
                Handled::Keep
            }
        }
    }
}

/// Runs `poll` in a thread until the returned flag is set.
pub fn spawn_poller<T: Send + 'static>(
    mut t: T,
    mut poll: impl FnMut(&mut T) + Send + 'static,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<T>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            poll(&mut t);
        }
        t
    });
    (stop, h)
}
