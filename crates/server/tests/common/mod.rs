//! Shared helpers of the server's end-to-end tests (one process): configurations, an
//! echo handler and a recording one, a value polled on its own thread that the test
//! can still inspect, and a hand-made client speaking raw bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig};
use tcpshm_proto::frame::{frame_len, msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::{LoginReply, LoginStatus, MAGIC, VERSION};
use tcpshm_proto::{CloseReason, Msg, Name, Transport};
use tcpshm_server::{Conn, GroupHandler, Handled, ServerConfig};
pub use tcpshm_test_support::{now, wait_until, TempDir};

/// The largest message of the test configurations.
pub const MAX_MESSAGE: u32 = 4096;
/// The queues of the test configurations (small: backpressure and wrap-around happen).
pub const QUEUE: usize = 1 << 16;

/// A server configuration for tests: loopback, any port, small queues and rings,
/// `dir`'s shared-memory prefix, its store in `dir/server`.
pub fn server_config(name: &str, dir: &TempDir) -> ServerConfig {
    server_config_at(name, &dir.join("server"), dir.shm_prefix())
}

/// [`server_config`] with its store in `storage`.
pub fn server_config_at(name: &str, storage: &Path, shm_prefix: &str) -> ServerConfig {
    let mut cfg = ServerConfig::new(name.parse().unwrap(), storage);
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.connection.shm.prefix = shm_prefix.to_string();
    cfg.connection.queue_bytes = QUEUE;
    cfg.connection.shm.ring_bytes = QUEUE;
    cfg.connection.session.max_message = MAX_MESSAGE;
    cfg
}

/// A client configuration matching [`server_config`], its store in `dir/<sub>`.
pub fn client_config(name: &str, dir: &TempDir, sub: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(name.parse().unwrap(), dir.join(sub));
    cfg.connection.shm.prefix = dir.shm_prefix().to_string();
    cfg.connection.queue_bytes = QUEUE;
    cfg.connection.shm.ring_bytes = QUEUE;
    cfg.connection.session.max_message = MAX_MESSAGE;
    cfg.connect_timeout = Duration::from_secs(10);
    cfg
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

/// Pushes one message `payload` (type 42) and waits for its echo, checked.
pub fn echo_once<C: Transport>(c: &mut C, payload: &[u8]) {
    c.alloc(payload.len()).unwrap().expect("room in the queue").copy_from_slice(payload);
    c.push(42).unwrap();
    let got = wait_until("an echo", || {
        let up = c.poll(now());
        if let Some(m) = c.front() {
            let got = (m.msg_type, m.payload.to_vec());
            c.pop();
            return Some(got);
        }
        assert!(up, "disconnected while waiting for an echo: {:?}", c.close_reason());
        None
    });
    assert_eq!(got, (42, payload.to_vec()));
}

/// Polls `c` until a message is in front, and returns a copy (not popped).
pub fn next_message<C: Transport>(c: &mut C) -> (u16, u64, Vec<u8>) {
    wait_until("a message", || {
        let up = c.poll(now());
        if let Some(m) = c.front() {
            return Some((m.msg_type, m.seq, m.payload.to_vec()));
        }
        assert!(up, "disconnected while waiting for a message: {:?}", c.close_reason());
        None
    })
}

/// A client opened with `cfg` and logged in to `addr` over `kind`.
pub fn connect(cfg: &ClientConfig, addr: SocketAddr, kind: tcpshm_client::TransportKind) -> Client {
    let mut c = <Client>::open(cfg.clone(), now()).unwrap();
    c.connect(addr, kind, now()).unwrap_or_else(|e| panic!("{} cannot log in over {kind}: {e}", cfg.name));
    c
}

type Command<T> = Box<dyn FnOnce(&mut T) + Send>;

/// Something (a server, a control part, a group...) polled on its own thread, that
/// the test can still inspect and change between polls ([`Polled::with`]) and pause.
pub struct Polled<T: Send + 'static> {
    tx: Option<mpsc::Sender<Command<T>>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<T>>,
}

impl<T: Send + 'static> Polled<T> {
    /// Polls `t` with `poll` on a new thread until stopped.
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
                    // Paused: wait for the next command (or the stop) without spinning.
                    if let Ok(cmd) = rx.recv_timeout(Duration::from_millis(1)) {
                        cmd(&mut t);
                    }
                } else {
                    poll(&mut t);
                    std::thread::yield_now();
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

    /// Waits until `f` is true on the polled value; panics naming `what` otherwise.
    pub fn wait_for(&self, what: &str, f: impl Fn(&mut T) -> bool + Send + Clone + 'static) {
        wait_until(what, || self.with(f.clone()).then_some(()));
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

    /// Waits until `client` was reported disconnected `n` times.
    pub fn wait_disconnects(log: &EventLog, client: &str, n: usize) {
        wait_until(&format!("{n} disconnect(s) of {client}"), || {
            (Recorder::disconnects(log, client).len() >= n).then_some(())
        });
    }

    /// Waits until `client` was reported logged on `n` times.
    pub fn wait_logons(log: &EventLog, client: &str, n: usize) {
        wait_until(&format!("{n} logon(s) of {client}"), || (Recorder::logons(log, client).len() >= n).then_some(()));
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

/// A login request with every field settable, valid or not (names are raw bytes),
/// laid out by hand from the table in `tcpshm_proto::login` (not with its encoder).
#[derive(Debug, Clone)]
pub struct RawLogin {
    pub magic: u32,
    pub version: u16,
    pub transport: u8,
    pub client: Vec<u8>,
    pub last_server: Vec<u8>,
    pub consumed: u64,
    pub seen: u64,
    pub first_unacked: u64,
    pub next: u64,
    pub queue_capacity: u64,
    pub max_message: u32,
    pub largest_queued: u32,
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
            seen: 0,
            first_unacked: 0,
            next: 0,
            queue_capacity: QUEUE as u64,
            max_message: MAX_MESSAGE,
            largest_queued: 0,
            credential: Vec::new(),
        }
    }

    /// The login payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.magic.to_le_bytes());
        p.extend_from_slice(&self.version.to_le_bytes());
        p.push(self.transport);
        p.push(self.client.len() as u8);
        for n in [self.consumed, self.seen, self.first_unacked, self.next, self.queue_capacity] {
            p.extend_from_slice(&n.to_le_bytes());
        }
        p.extend_from_slice(&self.max_message.to_le_bytes());
        p.extend_from_slice(&self.largest_queued.to_le_bytes());
        p.extend_from_slice(&(self.credential.len() as u16).to_le_bytes());
        p.push(self.last_server.len() as u8);
        p.push(0);
        assert_eq!(p.len(), 60);
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
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
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

/// The next user message on a raw connection (heartbeats and acks skipped).
pub fn next_user_frame(s: &mut TcpStream) -> (Header, Vec<u8>) {
    loop {
        let (h, p) = read_frame(s).unwrap().expect("a frame, not EOF");
        if msg_type::is_user(h.msg_type) {
            return (h, p);
        }
    }
}

/// A login reply, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub status: LoginStatus,
    pub server: String,
    pub text: String,
    pub consumed: u64,
    pub max_message: u32,
}

/// Reads the login reply (the first frame) from a raw stream.
pub fn read_reply(s: &mut TcpStream) -> RawReply {
    let (h, payload) = read_frame(s).expect("read the login reply").expect("a login reply, not EOF");
    assert_eq!(h.msg_type, msg_type::LOGIN_REPLY, "the first frame from the server is the login reply");
    let r = LoginReply::parse(&payload).expect("a valid login reply");
    RawReply {
        status: r.status,
        server: r.server.to_string(),
        text: r.text.to_string(),
        consumed: r.numbers.consumed,
        max_message: r.limits.max_message,
    }
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

/// Every file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A TCP stream that says when a write went through: a test knows its login request
/// is in the server's socket (a client is blocked waiting for the reply meanwhile)
/// instead of sleeping and hoping.
pub struct Announcing {
    pub stream: TcpStream,
    pub written: Arc<std::sync::atomic::AtomicUsize>,
}

impl Announcing {
    /// A blocking connection to `addr` with read and write timeouts (for a login),
    /// and the count of bytes written through it.
    pub fn connect(addr: SocketAddr) -> (Announcing, Arc<std::sync::atomic::AtomicUsize>) {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Announcing { stream, written: written.clone() }, written)
    }
}

impl Read for Announcing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Announcing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.written.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

impl tcpshm_transport_tcp::ByteStream for Announcing {
    fn shutdown_write(&mut self) {
        self.stream.shutdown_write()
    }
    fn unread(&self) -> Option<usize> {
        self.stream.unread()
    }
    fn set_nonblocking(&self) -> std::io::Result<()> {
        tcpshm_transport_tcp::ByteStream::set_nonblocking(&self.stream)
    }
}
