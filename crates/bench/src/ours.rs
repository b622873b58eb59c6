//! tcpshm's server and client as the benches use them: configurations, the echo and
//! sink handlers, the server role's busy-poll loop, and a client connected over a
//! chosen transport.

use super::child::{announce, Orphan};
use super::clock::Clock;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};

/// Message type of ordinary bench messages.
pub const DATA: u16 = 1;
/// Message type that asks the sink to answer (end of a stream).
pub const FINISH: u16 = 2;

/// The bench's server configuration: listen on an ephemeral loopback port, files in
/// `storage` and `/dev/shm/<shm_prefix>*`, queues of `queue_bytes`, messages up to
/// `max_message`.
pub fn server_config(storage: &Path, shm_prefix: &str, queue_bytes: usize, max_message: usize) -> ServerConfig {
    let mut cfg = ServerConfig::new("BenchServer".parse().expect("name"), storage);
    cfg.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    cfg.shm_prefix = shm_prefix.to_string();
    cfg.tcp_queue_bytes = queue_bytes;
    cfg.shm_queue_bytes = queue_bytes;
    cfg.max_message = max_message;
    cfg
}

/// The bench's client configuration (the same limits as the server's).
pub fn client_config(
    name: &str,
    storage: &Path,
    shm_prefix: &str,
    queue_bytes: usize,
    max_message: usize,
) -> ClientConfig {
    let mut cfg = ClientConfig::new(name.parse().expect("client name"), storage);
    cfg.shm_prefix = shm_prefix.to_string();
    cfg.queue_bytes = queue_bytes;
    cfg.max_message = max_message;
    cfg.connect_timeout = Duration::from_secs(10);
    cfg
}

/// Opens a client session and logs in over `kind`.
pub fn connect(cfg: ClientConfig, addr: SocketAddr, kind: TransportKind, clock: &Clock) -> Client {
    let mut c = Client::open(cfg, clock.now_ns()).expect("open client session");
    c.connect(addr, kind, clock.now_ns()).unwrap_or_else(|e| panic!("connect {kind:?} to {addr}: {e}"));
    c
}

/// Echoes every message back, zero-copy from the received message into the send
/// queue (the reference's echo server).
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl GroupHandler for Echo {
    #[inline]
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

/// Consumes a one-way stream: reads every byte of each message, checks its sequence
/// number (its first 8 bytes), and answers a `FINISH` message with the count received (so the
/// sender's clock stops when everything arrived and was consumed).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sink {
    received: u64,
}

impl GroupHandler for Sink {
    #[inline]
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        if msg.msg_type == FINISH {
            let Ok(Some(buf)) = conn.alloc(8) else { return Handled::Keep };
            buf.copy_from_slice(&self.received.to_le_bytes());
            conn.push(FINISH).expect("allocated");
            self.received = 0;
            return Handled::Pop;
        }
        let p = msg.payload;
        // Read every byte, as a consumer would (over shared memory, this is what
        // brings the payload across to this core).
        let mut fold = 0u64;
        for w in p.chunks(8) {
            let mut b = [0u8; 8];
            b[..w.len()].copy_from_slice(w);
            fold = fold.wrapping_add(u64::from_le_bytes(b));
        }
        std::hint::black_box(fold);
        let ok = if p.len() >= 8 {
            u64::from_le_bytes(p[..8].try_into().expect("8 bytes")) == self.received
        } else {
            p.first().is_none_or(|b| *b == self.received as u8)
        };
        if !ok {
            conn.close_with(format!("stream sink: message {} is out of order or corrupt", self.received));
            return Handled::Keep;
        }
        self.received += 1;
        Handled::Pop
    }
}

/// The server role: binds with `handlers` (one group each), announces
/// `ready <addr>`, then polls everything from this thread (one group) or from one
/// thread per group (the control part polled by the first group's thread) until the
/// parent is gone.
pub fn serve<H: GroupHandler + 'static>(cfg: ServerConfig, handlers: Vec<H>, clock: Clock) -> ! {
    let groups = handlers.len();
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), handlers).expect("bind server");
    let addr = server.local_addrs()[0];
    let orphan = Orphan::new();
    announce(&format!("ready {addr}"));
    if groups == 1 {
        let mut server = server;
        loop {
            for _ in 0..4096 {
                server.poll(clock.now_ns());
            }
            if orphan.orphaned() {
                std::process::exit(0);
            }
        }
    }
    let (mut control, gs) = server.split();
    let mut gs = gs.into_iter();
    let mut first = gs.next().expect("a group");
    for mut g in gs {
        std::thread::spawn(move || loop {
            g.poll(clock.now_ns());
        });
    }
    loop {
        for _ in 0..4096 {
            let now = clock.now_ns();
            control.poll(now);
            first.poll(now);
        }
        if orphan.orphaned() {
            std::process::exit(0);
        }
    }
}

/// Sends `msg` as one message and spins until its echo arrives; returns whether the
/// echo is byte-identical (type and payload).
#[inline]
pub fn ping<T: Transport>(t: &mut T, msg: &[u8], now: u64) -> bool {
    loop {
        match t.alloc(msg.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg);
                break;
            }
            Ok(None) => {
                t.poll(now);
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    t.push(DATA).expect("push");
    loop {
        if let Some(m) = t.front() {
            let ok = m.msg_type == DATA && m.payload == msg;
            t.pop();
            return ok;
        }
        if !t.poll(now) {
            panic!("connection lost during echo: {:?}", t.close_reason());
        }
    }
}

// ---- tcpshm over a Unix socket ---------------------------------------------------

/// The login numbers one side of the bench's Unix-socket session sends the other
/// (the real server/client speak TCP; a Unix-socket transport is a user's
/// `StreamConnection<UnixStream>` with a login of their own, as here).
fn exchange_login(
    s: &mut std::os::unix::net::UnixStream,
    me: tcpshm_transport_tcp::LoginInfo,
) -> tcpshm_transport_tcp::PeerLogin {
    use std::io::{Read, Write};
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&me.consumed.to_le_bytes());
    out[8..16].copy_from_slice(&me.send_range.first_unacked().to_le_bytes());
    out[16..24].copy_from_slice(&me.send_range.next().to_le_bytes());
    out[24..].copy_from_slice(&me.queue_capacity.to_le_bytes());
    s.write_all(&out).expect("write login");
    let mut inn = [0u8; 32];
    s.read_exact(&mut inn).expect("read login");
    let u = |i: usize| u64::from_le_bytes(inn[i..i + 8].try_into().expect("8 bytes"));
    tcpshm_transport_tcp::PeerLogin {
        consumed: u(0),
        send_range: tcpshm_proto::session::SeqRange::new(u(8), u(16)).expect("valid range"),
        queue_capacity: u(24),
    }
}

/// A `UnixConnection` on a fresh store in `dir`, logged in over `s`.
fn unix_session(
    dir: &Path,
    me: &str,
    peer: &str,
    queue_bytes: usize,
    mut s: std::os::unix::net::UnixStream,
    now: u64,
) -> tcpshm_transport_tcp::UnixConnection {
    let opts = tcpshm_persist::Options::new(queue_bytes);
    let (me, peer) = (me.parse().expect("name"), peer.parse().expect("name"));
    let store = tcpshm_persist::Store::open(dir, me, peer, &opts, None, now).expect("open store").0;
    let cfg = tcpshm_transport_tcp::StreamConfig { max_payload: 64 * 1024, ..Default::default() };
    let mut c = tcpshm_transport_tcp::UnixConnection::new(store, cfg);
    let peer_login = exchange_login(&mut s, c.login_state());
    s.set_nonblocking(true).expect("nonblocking");
    c.attach(mio::net::UnixStream::from_std(s), peer_login, now).expect("attach");
    c
}

/// Queue bytes of the Unix-socket sessions.
const UNIX_QUEUE: usize = 1 << 20;

/// The client side of tcpshm over a Unix socket: connects to `path`, store in `dir`.
pub fn unix_client(path: &str, dir: &Path, clock: &Clock) -> tcpshm_transport_tcp::UnixConnection {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect unix socket");
    unix_session(dir, "client", "server", UNIX_QUEUE, s, clock.now_ns())
}

/// The server role of tcpshm over a Unix socket: `--path SOCKET --storage DIR`;
/// echoes one session (zero-copy, as [`Echo`]) until it closes.
pub fn unix_server(args: &[String]) {
    use super::child::arg;
    let clock = Clock::calibrate(Duration::from_millis(5));
    let path = arg(args, "--path").expect("--path");
    let dir = Path::new(arg(args, "--storage").expect("--storage"));
    let l = std::os::unix::net::UnixListener::bind(path).expect("bind unix socket");
    announce("ready");
    let (s, _) = l.accept().expect("accept");
    let mut c = unix_session(dir, "server", "client", UNIX_QUEUE, s, clock.now_ns());
    let orphan = Orphan::new();
    let mut spins = 0u32;
    loop {
        let now = clock.now_ns();
        if !c.poll(now) {
            return;
        }
        while let Some((m, mut tx)) = c.front_split() {
            let Ok(Some(buf)) = tx.alloc(m.payload.len()) else { break };
            buf.copy_from_slice(m.payload);
            tx.push(m.msg_type).expect("allocated");
            c.pop();
        }
        if c.wants_write() {
            c.on_writable(now);
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 16) && orphan.orphaned() {
            return;
        }
    }
}
