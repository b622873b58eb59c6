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

// ---- Added by the login / bad-input / backpressure / scale tests ----------------
// (additions only: the helpers above are shared and stay as they are)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;
use tcpshm_proto::frame::{frame_len, msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::{LoginReply, LoginStatus, MAGIC, VERSION};
use tcpshm_proto::{CloseReason, Name};

/// A shared-memory prefix unique to this process and call (the tests of one binary
/// run in parallel and may use the same server and client names).
pub fn unique_shm_prefix() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!("t{}x{}-", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The files under /dev/shm whose names start with `prefix`.
pub fn shm_files(prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir("/dev/shm") {
        for e in d.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            }
        }
    }
    out
}

/// Removes the /dev/shm files of a prefix when dropped (also when a test fails).
pub struct ShmCleanup(pub String);

impl Drop for ShmCleanup {
    fn drop(&mut self) {
        for p in shm_files(&self.0) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A server configuration for tests: loopback, any port, small queues, its own
/// shared-memory prefix.
pub fn server_config(name: &str, storage: &std::path::Path, shm_prefix: &str) -> tcpshm_server::ServerConfig {
    let mut cfg = tcpshm_server::ServerConfig::new(name.parse().unwrap(), storage);
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.shm_prefix = shm_prefix.to_string();
    cfg.tcp_queue_bytes = 1 << 16;
    cfg.shm_queue_bytes = 1 << 16;
    cfg.max_message = 4096;
    cfg
}

/// A client configuration matching [`server_config`].
pub fn client_config(name: &str, storage: &std::path::Path, shm_prefix: &str) -> tcpshm_client::ClientConfig {
    let mut cfg = tcpshm_client::ClientConfig::new(name.parse().unwrap(), storage);
    cfg.shm_prefix = shm_prefix.to_string();
    cfg.queue_bytes = 1 << 16;
    cfg.max_message = 4096;
    cfg.connect_timeout = Duration::from_secs(10);
    cfg
}

type Command<T> = Box<dyn FnOnce(&mut T) + Send>;

/// Something (a server, a control part, groups...) polled in its own thread, that the
/// test can still inspect and change between polls ([`Polled::with`]) and pause.
pub struct Polled<T: Send + 'static> {
    tx: Option<mpsc::Sender<Command<T>>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<T>>,
}

impl<T: Send + 'static> Polled<T> {
    /// Polls `t` with `poll` in a new thread until stopped.
    pub fn spawn(mut t: T, mut poll: impl FnMut(&mut T) + Send + 'static) -> Polled<T> {
        let (tx, rx) = mpsc::channel::<Command<T>>();
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (s, p) = (stop.clone(), paused.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                while let Ok(cmd) = rx.try_recv() {
                    cmd(&mut t);
                }
                if p.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(200));
                } else {
                    poll(&mut t);
                }
            }
            t
        });
        Polled { tx: Some(tx), stop, paused, handle: Some(handle) }
    }

    /// Runs `f` on the polling thread between two polls and returns its result.
    pub fn with<R: Send + 'static>(&self, f: impl FnOnce(&mut T) -> R + Send + 'static) -> R {
        let (rtx, rrx) = mpsc::channel();
        let cmd: Command<T> = Box::new(move |t| {
            let _ = rtx.send(f(t));
        });
        self.tx.as_ref().unwrap().send(cmd).expect("the polling thread died (a panic in the library?)");
        rrx.recv().expect("the polling thread died (a panic in the library?)")
    }

    /// Stops polling (commands still run); when this returns, no poll is running.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.with(|_| ());
    }

    /// Polls again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Waits (up to `timeout`) until `f` is true on the polled value; panics naming
    /// `what` otherwise.
    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&mut T) -> bool + Send + Clone + 'static) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.with(f.clone()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the thread and gives the value back.
    pub fn stop(mut self) -> T {
        self.stop.store(true, Ordering::SeqCst);
        self.tx = None;
        self.handle.take().unwrap().join().expect("the polling thread panicked")
    }
}

impl<T: Send + 'static> Drop for Polled<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Waits (up to `timeout`) until `f` is true; panics naming `what` otherwise.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a [`Recorder`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `on_logged_on(client)` in group `group`.
    LoggedOn(Name, usize),
    /// `on_disconnected(client, reason)`.
    Disconnected(Name, CloseReason),
}

/// The events seen by the handlers of a server, shared with the test.
pub type EventLog = Arc<Mutex<Vec<Event>>>;

/// Echoes like [`Echo`] and records logons and disconnects.
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: EventLog,
}

impl Recorder {
    /// The disconnect reasons of `client`, in order.
    pub fn disconnects(log: &EventLog, client: &str) -> Vec<CloseReason> {
        log.lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Disconnected(n, r) if n.as_str() == client => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The groups `client` logged on to, in order.
    pub fn logons(log: &EventLog, client: &str) -> Vec<usize> {
        log.lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::LoggedOn(n, g) if n.as_str() == client => Some(*g),
                _ => None,
            })
            .collect()
    }
}

impl GroupHandler for Recorder {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        self.log.lock().unwrap().push(Event::LoggedOn(*conn.client(), conn.group()));
    }
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        Echo.on_message(conn, msg)
    }
    fn on_disconnected(&mut self, client: &Name, reason: &CloseReason) {
        self.log.lock().unwrap().push(Event::Disconnected(*client, reason.clone()));
    }
}

// ---- a hand-made client: raw bytes on a std TcpStream ---------------------------

/// A login request with every field settable, valid or not (names are raw bytes).
#[derive(Debug, Clone)]
pub struct RawLogin {
    pub magic: u32,
    pub version: u16,
    pub transport: u8,
    pub client: Vec<u8>,
    pub last_server: Vec<u8>,
    pub consumed: u64,
    pub first_unacked: u64,
    pub next: u64,
    pub queue_capacity: u64,
    pub credential: Vec<u8>,
}

impl RawLogin {
    /// A valid TCP login of a fresh client.
    pub fn new(client: &str) -> RawLogin {
        RawLogin {
            magic: MAGIC,
            version: VERSION,
            transport: 0,
            client: client.as_bytes().to_vec(),
            last_server: Vec::new(),
            consumed: 0,
            first_unacked: 0,
            next: 0,
            queue_capacity: 1 << 16,
            credential: Vec::new(),
        }
    }

    /// The login payload, laid out by hand (see `tcpshm_proto::login`).
    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.magic.to_le_bytes());
        p.extend_from_slice(&self.version.to_le_bytes());
        p.push(self.transport);
        p.push(self.client.len() as u8);
        for n in [self.consumed, self.first_unacked, self.next, self.queue_capacity] {
            p.extend_from_slice(&n.to_le_bytes());
        }
        p.extend_from_slice(&(self.credential.len() as u16).to_le_bytes());
        p.push(self.last_server.len() as u8);
        p.extend_from_slice(&self.client);
        p.extend_from_slice(&self.last_server);
        p.extend_from_slice(&self.credential);
        p
    }

    /// The whole login frame.
    pub fn frame(&self) -> Vec<u8> {
        raw_frame(msg_type::LOGIN, self.next, self.consumed, &self.payload())
    }
}

/// A frame of any type with `payload`, padded (no validation at all).
pub fn raw_frame(msg_type: u16, seq: u64, ack: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; frame_len(payload.len())];
    let head = Header { len: (HEADER_LEN + payload.len()) as u32, msg_type, flags: 0, seq, ack };
    head.write((&mut buf[..HEADER_LEN]).try_into().unwrap());
    buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    buf
}

/// A blocking loopback connection with a read timeout (a test never hangs).
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One frame read from a raw stream: its header and payload (padding dropped).
/// `Ok(None)`: the peer closed the stream at a frame boundary.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<Option<(Header, Vec<u8>)>> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match s.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let h = Header::read(&head);
    assert!(h.len as usize >= HEADER_LEN && h.len < 1 << 24, "the server sent a bad frame header {h:?}");
    let mut rest = vec![0u8; h.frame_len() - HEADER_LEN];
    s.read_exact(&mut rest)?;
    rest.truncate(h.len as usize - HEADER_LEN);
    Ok(Some((h, rest)))
}

/// A login reply, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub status: LoginStatus,
    pub server: String,
    pub text: String,
    pub consumed: u64,
}

/// Reads the login reply (the first frame) from a raw stream.
pub fn read_reply(s: &mut TcpStream) -> RawReply {
    let (h, payload) = read_frame(s).expect("read the login reply").expect("a login reply, not EOF");
    assert_eq!(h.msg_type, msg_type::LOGIN_REPLY, "the first frame from the server is the login reply");
    let r = LoginReply::parse(&payload).expect("a valid login reply");
    RawReply { status: r.status, server: r.server.to_string(), text: r.text.to_string(), consumed: r.consumed }
}

/// Sends `bytes` and reads the server's reply.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (RawReply, TcpStream) {
    let mut s = raw_connect(addr);
    s.write_all(bytes).unwrap();
    let r = read_reply(&mut s);
    (r, s)
}

/// Reads until the server ends the stream (EOF or reset), returning the frames it
/// sent before; panics if it does not within the read timeout.
pub fn frames_until_closed(s: &mut TcpStream) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        match read_frame(s) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => return out,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof) => {
                return out
            }
            Err(e) => panic!("the server did not close the connection: {e} (frames so far: {out:?})"),
        }
    }
}

/// Raises the soft limit of open files to at least `want` (up to the hard limit).
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut r = getrlimit(Resource::Nofile);
    let cur = r.current.unwrap_or(u64::MAX);
    if cur >= want {
        return cur;
    }
    let target = r.maximum.map_or(want, |m| m.min(want));
    r.current = Some(target);
    setrlimit(Resource::Nofile, r).expect("raise RLIMIT_NOFILE");
    target
}

/// A fresh directory on tmpfs (`/dev/shm`), removed on drop: for tests whose subject
/// is not the disk (creating a store syncs it, which costs milliseconds on a disk).
pub fn tmpfs_dir(tag: &str) -> TempDir {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = PathBuf::from("/dev/shm").join(format!("tcpshm-server-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    TempDir(p)
}
