//! Helpers shared by the integration tests: temporary directories, stores, socket
//! pairs, the in-process login, a raw peer, and the conformance harness.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tcpshm_persist::{Options, Store};
use tcpshm_proto::session::SessionConfig;
use tcpshm_proto::testkit::Harness;
use tcpshm_proto::{Name, Nanos, Transport};
use tcpshm_transport_tcp::{ByteStream, PeerLogin, StreamConfig, StreamConnection};

/// A fresh directory under the system temp dir, removed (with its files) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tcpshm-tcp-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
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

pub fn open_store(dir: &Path, me: &str, peer: &str, capacity: usize) -> Store {
    Store::open(dir, name(me), name(peer), &Options::new(capacity), None, 0).unwrap().0
}

/// A connected pair of non-blocking streams of one kind, and how to cut one.
pub trait Link: ByteStream + Sized {
    fn pair() -> (Self, Self);

    /// Both directions shut: the peer reads EOF, writes fail.
    fn cut(&self) {
        let _ = socket2::SockRef::from(self).shutdown(std::net::Shutdown::Both);
    }
}

/// A TCP pair over the IPv4 loopback, both ends non-blocking with `TCP_NODELAY`.
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

impl Link for mio::net::TcpStream {
    fn pair() -> (Self, Self) {
        let (a, b) = tcp_pair();
        (tcpshm_transport_tcp::tcp::from_std(a).unwrap(), tcpshm_transport_tcp::tcp::from_std(b).unwrap())
    }
}

impl Link for mio::net::UnixStream {
    fn pair() -> (Self, Self) {
        mio::net::UnixStream::pair().unwrap()
    }
}

/// The in-process login: each side takes the other's numbers, then the new link.
pub fn link<S: Link>(a: &mut StreamConnection<S>, b: &mut StreamConnection<S>, now: Nanos) {
    let (sa, sb) = S::pair();
    link_with(a, b, sa, sb, now);
}

pub fn link_with<S: ByteStream>(a: &mut StreamConnection<S>, b: &mut StreamConnection<S>, sa: S, sb: S, now: Nanos) {
    let (la, lb) = (a.login_state(), b.login_state());
    a.attach(sa, PeerLogin::from(lb), now).unwrap();
    b.attach(sb, PeerLogin::from(la), now).unwrap();
}

/// Test session timing: heartbeat 1 ms, timeout 10 ms (fake clock).
pub fn session() -> SessionConfig {
    SessionConfig { heartbeat_interval: 1_000_000, timeout: 10_000_000, ..SessionConfig::default() }
}

pub fn config() -> StreamConfig {
    StreamConfig { max_payload: 64 * 1024, session: session(), ..StreamConfig::default() }
}

/// The conformance kit's harness for `StreamConnection<S>`: two stores in a temp
/// dir (fresh names per pair), a real socket pair, the login done in-process.
pub struct StreamHarness<S> {
    dir: TempDir,
    pub cfg: StreamConfig,
    pub capacity: usize,
    pairs: u64,
    _s: PhantomData<S>,
}

impl<S: Link> StreamHarness<S> {
    pub fn new() -> Self {
        StreamHarness { dir: TempDir::new("kit"), cfg: config(), capacity: 256 * 1024, pairs: 0, _s: PhantomData }
    }
}

impl<S: Link> Default for StreamHarness<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Link> Harness for StreamHarness<S> {
    type T = StreamConnection<S>;

    fn pair(&mut self, now: Nanos) -> (Self::T, Self::T) {
        self.pairs += 1;
        let (c, s) = (format!("kit-c{}", self.pairs), format!("kit-s{}", self.pairs));
        let mut a = StreamConnection::new(open_store(self.dir.path(), &c, &s, self.capacity), self.cfg);
        let mut b = StreamConnection::new(open_store(self.dir.path(), &s, &c, self.capacity), self.cfg);
        link(&mut a, &mut b, now);
        (a, b)
    }

    fn cut(&mut self, a: &mut Self::T, b: &mut Self::T) {
        for t in [a, b] {
            if let Some(s) = t.stream() {
                s.cut();
            }
        }
    }

    fn reconnect(&mut self, a: &mut Self::T, b: &mut Self::T, now: Nanos) {
        link(a, b, now);
    }

    fn timeout(&self) -> Nanos {
        self.cfg.session.timeout
    }

    fn heartbeat_interval(&self) -> Nanos {
        self.cfg.session.heartbeat_interval
    }

    fn max_rounds(&self) -> usize {
        20_000
    }

    fn idle(&mut self) {
        std::thread::yield_now();
    }
}

/// Polls `t` (clock fixed at `now`) until `done` or a real-time deadline.
pub fn poll_until<T: Transport>(t: &mut T, now: Nanos, what: &str, mut done: impl FnMut(&mut T) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(t) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        t.poll(now);
        std::thread::yield_now();
    }
}

/// Polls two ends in turn until `done` or a real-time deadline.
pub fn poll2_until<T: Transport>(
    a: &mut T,
    b: &mut T,
    now: &mut Nanos,
    step: Nanos,
    what: &str,
    mut done: impl FnMut(&mut T, &mut T) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(a, b) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: a {}, b {}", a.counters(), b.counters());
        *now += step;
        a.poll(*now);
        b.poll(*now);
        std::thread::yield_now();
    }
}

/// Pushes one message (panics if the queue is full).
pub fn push<T: Transport>(t: &mut T, ty: u16, body: &[u8]) {
    t.alloc(body.len()).unwrap().expect("room in the queue").copy_from_slice(body);
    t.push(ty).unwrap();
}

/// Deterministic payload of message `k` with length `len`.
pub fn body(k: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k as usize).wrapping_mul(131).wrapping_add(i.wrapping_mul(7)) as u8).collect()
}

/// A raw peer: a blocking std TCP stream with a read timeout, that reads and writes
/// frames by hand.
pub struct RawPeer {
    pub s: std::net::TcpStream,
    pub buf: Vec<u8>,
}

impl RawPeer {
    pub fn new(s: std::net::TcpStream) -> RawPeer {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        s.set_nodelay(true).unwrap();
        RawPeer { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads what is there within the read timeout; `Ok(false)` at EOF.
    pub fn fill(&mut self) -> io::Result<bool> {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The next whole frame in the buffer, removed: (header, payload).
    pub fn next_frame(&mut self) -> Option<(tcpshm_proto::frame::Header, Vec<u8>)> {
        match tcpshm_proto::decode(&self.buf, u32::MAX).unwrap() {
            tcpshm_proto::Decoded::Need(_) => None,
            tcpshm_proto::Decoded::Frame { frame, consumed } => {
                let out = (*frame.header(), frame.payload().to_vec());
                self.buf.drain(..consumed);
                Some(out)
            }
        }
    }
}

/// A raw frame's bytes.
pub fn frame(ty: u16, seq: u64, ack: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; tcpshm_proto::frame::frame_len(payload.len())];
    let n = tcpshm_proto::encode::encode_frame(&mut buf, ty, seq, ack, payload).unwrap();
    buf.truncate(n);
    buf
}
