//! The command's tests' deployment: a server polled on its own thread (this
//! process), clients, a traffic thread, and the built `tcpshm` binary run against
//! them with this test's directories.
#![allow(dead_code)]

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};
pub use tcpshm_test_support::{now, wait_until, TempDir};

pub const QUEUE: usize = 1 << 16;

/// A deployment's directories: storage under `dir/server` and `dir/clients`, the
/// shared-memory files with the directory's prefix, the counters files in `dir/stats`.
pub struct Env {
    pub t: TempDir,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let t = TempDir::new_in("/dev/shm", tag);
        std::fs::create_dir_all(t.join("stats")).unwrap();
        Env { t }
    }

    pub fn server_dir(&self) -> PathBuf {
        self.t.join("server")
    }

    pub fn client_dir(&self) -> PathBuf {
        self.t.join("clients")
    }

    pub fn stats_dir(&self) -> PathBuf {
        self.t.join("stats")
    }

    pub fn server_cfg(&self, name: &str) -> ServerConfig {
        let mut cfg = ServerConfig::new(name.parse().unwrap(), self.server_dir());
        cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.connection.shm.prefix = self.t.shm_prefix().to_string();
        cfg.connection.queue_bytes = QUEUE;
        cfg.connection.shm.ring_bytes = QUEUE;
        cfg.connection.session.max_message = 4096;
        cfg.stats.dir = self.stats_dir();
        cfg.stats.records = 16;
        cfg
    }

    pub fn client_cfg(&self, name: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new(name.parse().unwrap(), self.client_dir());
        cfg.connection.shm.prefix = self.t.shm_prefix().to_string();
        cfg.connection.queue_bytes = QUEUE;
        cfg.connection.shm.ring_bytes = QUEUE;
        cfg.connection.session.max_message = 4096;
        cfg.connect_timeout = std::time::Duration::from_secs(10);
        cfg
    }

    /// The built binary with this deployment's locations.
    pub fn tcpshm(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_tcpshm"))
            .args(args)
            .args(["--shm-prefix", self.t.shm_prefix()])
            .arg("--stats-dir")
            .arg(self.stats_dir())
            .output()
            .expect("run tcpshm");
        out
    }

    /// Runs `tcpshm ARGS --json`, expects exit status `code`, parses stdout.
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.tcpshm(&a);
        assert_eq!(out.status.code(), Some(code), "tcpshm {a:?}: {}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("tcpshm {a:?}: not JSON ({e}): {}", show(&out)))
    }

    /// Runs `tcpshm ARGS`, expects success, returns stdout.
    pub fn text(&self, args: &[&str]) -> String {
        let out = self.tcpshm(args);
        assert_eq!(out.status.code(), Some(0), "tcpshm {args:?}: {}", show(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `tcpshm ARGS`, expects exit status 1 and one line on stderr; returns it.
    pub fn error(&self, args: &[&str]) -> String {
        let out = self.tcpshm(args);
        assert_eq!(out.status.code(), Some(1), "tcpshm {args:?}: {}", show(&out));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("tcpshm: "), "{err:?}");
        err.trim_end().to_string()
    }
}

/// The built binary with exactly `args` (e.g. a command a message gave).
pub fn raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpshm")).args(args).output().expect("run tcpshm")
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Echoes every message back.
pub struct Echo;

impl GroupHandler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match conn.alloc(msg.payload.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg.payload);
                conn.push(msg.msg_type).expect("allocated");
                Handled::Pop
            }
            _ => Handled::Keep,
        }
    }
}

/// A server polled on its own thread until stopped (then dropped: its locks and its
/// counters file go).
pub struct Running {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start(cfg: ServerConfig) -> Running {
        let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
        let addr = server.local_addrs()[0];
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                server.poll(now());
                std::thread::yield_now();
            }
        });
        Running { addr, stop, thread: Some(thread) }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the server thread panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Opens `cfg`'s client and logs in over `kind`.
pub fn connect(cfg: &ClientConfig, addr: SocketAddr, kind: TransportKind) -> Client {
    let mut c = <Client>::open(cfg.clone(), now()).unwrap();
    c.connect(addr, kind, now()).unwrap_or_else(|e| panic!("{} cannot log in: {e}", cfg.name));
    c
}

/// Pushes `payload` and waits for its echo.
pub fn echo_once(c: &mut Client, payload: &[u8]) {
    c.alloc(payload.len()).unwrap().expect("room").copy_from_slice(payload);
    c.push(42).unwrap();
    wait_until("an echo", || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        let m = c.front()?;
        assert_eq!(m.payload, payload);
        c.pop();
        Some(())
    });
}

/// A client echoing round trips on its own thread until stopped; counts them.
pub struct Traffic {
    pub done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Client>>,
}

impl Traffic {
    pub fn start(mut c: Client) -> Traffic {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let payload = format!("message {n}");
                echo_once(&mut c, payload.as_bytes());
                n += 1;
                d.store(n, Ordering::Relaxed);
            }
            c
        });
        Traffic { done, stop, thread: Some(thread) }
    }

    pub fn stop(mut self) -> Client {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("the traffic thread panicked")
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
