//! What the connection tests share: a configuration on a fake clock, both sides of a
//! session opened from a private directory, the login of two connections over a
//! stream pair, and the login of one connection with a raw peer that speaks bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use tcpshm_connection::{ConnectError, Connected, Connection, ConnectionConfig};
use tcpshm_proto::decode::frame_limit;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::handshake::ServerRules;
use tcpshm_proto::login::{
    Limits, LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind, MAX_REQUEST_LEN,
};
use tcpshm_proto::session::{LivenessConfig, SeqRange};
use tcpshm_proto::{encode, Control, Decoded, Name, Nanos, Transport};
use tcpshm_test_support::net::{PeerStream, RawPeer};
use tcpshm_test_support::{wait_until, TempDir};
use tcpshm_transport_shm::Side;
use tcpshm_transport_tcp::{exchange, ByteStream, FrameReader};

/// Heartbeat interval and timeout of [`config`], on the tests' fake clocks.
pub const HB: Nanos = 1_000_000;
pub const TIMEOUT: Nanos = 10_000_000;

/// How long a blocking login exchange waits (only a hang reaches it).
pub const EXCHANGE_WAIT: Duration = Duration::from_secs(30);

pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// The server's name, the client's, and the client's label for the service.
pub fn server_name() -> Name {
    name("srv")
}
pub fn client_name() -> Name {
    name("cli")
}

/// Messages up to 64 KiB, 256 KiB queues and rings, heartbeat 1 ms, timeout 10 ms,
/// shared-memory control work every 0.1 ms.
pub fn config(dir: &TempDir) -> ConnectionConfig {
    config_for(dir.shm_prefix())
}

/// [`config`] with the shared-memory prefix `prefix` (a child process's, given by its
/// parent).
pub fn config_for(prefix: &str) -> ConnectionConfig {
    let mut cfg = ConnectionConfig::default();
    cfg.session.max_message = 64 * 1024;
    cfg.session.liveness = LivenessConfig { heartbeat_interval: HB, timeout: TIMEOUT };
    cfg.queue_bytes = 256 * 1024;
    cfg.shm.ring_bytes = 256 * 1024;
    cfg.shm.prefix = prefix.to_owned();
    cfg.check_interval = 100_000;
    cfg.stream.recv_buffer = 16 * 1024;
    cfg
}

/// The client's end of the session `cli` -> `srv`, from `dir/client`.
pub fn open_client<S: ByteStream>(dir: &TempDir, cfg: &ConnectionConfig, medium: TransportKind) -> Connection<S> {
    open_client_at(dir.path(), cfg, medium)
}

/// The server's end of the session `cli` -> `srv`, from `dir/server`.
pub fn open_server<S: ByteStream>(dir: &TempDir, cfg: &ConnectionConfig, medium: TransportKind) -> Connection<S> {
    open_server_at(dir.path(), cfg, medium)
}

/// [`open_client`] under `dir` (a child process's, given by its parent).
pub fn open_client_at<S: ByteStream>(dir: &Path, cfg: &ConnectionConfig, medium: TransportKind) -> Connection<S> {
    Connection::open_session(&dir.join("client"), client_name(), name("svc"), Side::Client, medium, cfg.clone(), 0)
        .unwrap_or_else(|e| panic!("open the client: {e}"))
}

/// [`open_server`] under `dir`.
pub fn open_server_at<S: ByteStream>(dir: &Path, cfg: &ConnectionConfig, medium: TransportKind) -> Connection<S> {
    Connection::open_session(&dir.join("server"), server_name(), client_name(), Side::Server, medium, cfg.clone(), 0)
        .unwrap_or_else(|e| panic!("open the server: {e}"))
}

/// The server's rules (both transports served, its own limits).
pub fn rules<S: ByteStream>(server: &Connection<S>) -> ServerRules {
    ServerRules { name: server_name(), tcp: true, shm: true, limits: server.limits() }
}

/// A Unix socket pair, blocking with timeouts (what a login exchange needs).
pub fn unix_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(EXCHANGE_WAIT)).unwrap();
        s.set_write_timeout(Some(EXCHANGE_WAIT)).unwrap();
    }
    (a, b)
}

/// A TCP pair over the loopback, blocking with timeouts.
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let (a, b) = tcpshm_test_support::net::tcp_pair();
    for s in [&a, &b] {
        s.set_read_timeout(Some(EXCHANGE_WAIT)).unwrap();
        s.set_write_timeout(Some(EXCHANGE_WAIT)).unwrap();
    }
    (a, b)
}

/// The server's side of a login: reads the request on `ss` and accepts it (or
/// writes the refusal).
pub fn serve_login<S: ByteStream>(server: &mut Connection<S>, mut ss: S, now: Nanos) {
    let rules = rules(server);
    let mut reader = FrameReader::new(4096, frame_limit(MAX_REQUEST_LEN));
    let f = exchange::recv_blocking(&mut ss, &mut reader).expect("the login request");
    let Ok(Decoded::Frame { frame, .. }) = tcpshm_proto::decode(reader.frame_bytes(&f), u32::MAX) else {
        panic!("a login request that does not decode")
    };
    let Ok(Some(Control::Login(req))) = frame.control() else { panic!("not a login request") };
    if let Err((refusal, mut ss)) = server.accept(ss, &req, &rules, now) {
        tcpshm_connection::write_refusal(&mut ss, rules.name, &refusal);
    }
}

/// Logs `client` in to `server` over the connected pair `(cs, ss)` asking for
/// `transport` (the server's side on a scoped thread).
pub fn login<C: ByteStream + Send, S: ByteStream + Send>(
    client: &mut Connection<C>,
    server: &mut Connection<S>,
    (cs, ss): (C, S),
    transport: TransportKind,
    now: Nanos,
) -> Result<Connected, ConnectError> {
    std::thread::scope(|scope| {
        let srv = scope.spawn(move || serve_login(server, ss, now));
        let r = client.login_client(cs, transport, b"", now);
        srv.join().expect("the server's login thread");
        r
    })
}

/// [`login`] over a fresh Unix socket pair, which must succeed.
pub fn link_unix(
    client: &mut Connection<UnixStream>,
    server: &mut Connection<UnixStream>,
    transport: TransportKind,
    now: Nanos,
) -> Connected {
    login(client, server, unix_pair(), transport, now).unwrap_or_else(|e| panic!("login: {e}"))
}

/// [`login`] over a fresh TCP pair, which must succeed.
pub fn link_tcp(
    client: &mut Connection<std::net::TcpStream>,
    server: &mut Connection<std::net::TcpStream>,
    transport: TransportKind,
    now: Nanos,
) -> Connected {
    login(client, server, tcp_pair(), transport, now).unwrap_or_else(|e| panic!("login: {e}"))
}

/// The payload of message `k` of length `len`.
pub fn body(k: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k as usize).wrapping_mul(131).wrapping_add(i.wrapping_mul(7)) as u8).collect()
}

/// Pushes one message (the queue must have room).
pub fn push<T: Transport>(t: &mut T, ty: u16, payload: &[u8]) {
    t.alloc(payload.len()).unwrap().expect("room in the queue").copy_from_slice(payload);
    t.push(ty).unwrap();
}

/// Polls both ends in turn, the fake clock moving by `step` each round, until `done`.
pub fn poll2_until<A: Transport, B: Transport>(
    a: &mut A,
    b: &mut B,
    now: &mut Nanos,
    step: Nanos,
    what: &str,
    mut done: impl FnMut(&mut A, &mut B) -> bool,
) {
    wait_until(what, || {
        if done(a, b) {
            return Some(());
        }
        *now += step;
        a.poll(*now);
        b.poll(*now);
        None
    })
}

/// What a raw peer says about itself at login: it consumed `consumed` of our
/// messages and has pushed `next` of its own, all of them consumed by us
/// (`first_unacked == next`) unless `send_range` says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RawLogin {
    pub transport: TransportKind,
    pub consumed: u64,
    pub send_range: SeqRange,
    pub limits: Limits,
}

impl Default for RawLogin {
    fn default() -> Self {
        RawLogin {
            transport: TransportKind::Tcp,
            consumed: 0,
            send_range: SeqRange::default(),
            limits: Limits { max_message: 64 * 1024, queue_capacity: 0 },
        }
    }
}

/// The login request of a raw client saying `login`.
pub fn raw_request(login: RawLogin) -> LoginRequest<'static> {
    LoginRequest {
        client: client_name(),
        last_server: Some(server_name()),
        transport: login.transport,
        numbers: SessionNumbers { consumed: login.consumed, seen: login.consumed, send_range: login.send_range },
        limits: login.limits,
        largest_queued: 0,
        credential: b"",
    }
}

/// Logs a raw client in to the server connection `server` over `(raw, ss)`: the
/// connection accepts a request made here (as if read from `raw`), and the raw end
/// reads the login reply, which must be an acceptance; returns the raw peer, placed
/// right after the reply.
pub fn raw_client<S: ByteStream, R: PeerStream>(
    server: &mut Connection<S>,
    (raw, ss): (R, S),
    login: RawLogin,
    now: Nanos,
) -> RawPeer<R> {
    let req = raw_request(login);
    let rules = rules(server);
    if let Err((refusal, _)) = server.accept(ss, &req, &rules, now) {
        panic!("the server refused the raw client's login: {refusal}");
    }
    let mut peer = RawPeer::new(raw);
    let reply = wait_until("the login reply", || {
        peer.fill().unwrap();
        peer.next_frame()
    });
    assert_eq!(reply.0.msg_type, msg_type::LOGIN_REPLY);
    let r = LoginReply::parse(&reply.1).unwrap();
    assert_eq!(r.status, LoginStatus::Ok, "{}", r.text);
    peer
}

/// Logs the client connection `client` in to a raw server over `(cs, raw)`: the raw
/// end writes an accepting reply first (the client reads it after sending its
/// request), then reads the request; returns the raw peer, placed after the request.
pub fn raw_server<S: ByteStream, R: PeerStream>(
    client: &mut Connection<S>,
    (cs, raw): (S, R),
    login: RawLogin,
    now: Nanos,
) -> (Connected, RawPeer<R>) {
    let reply = LoginReply {
        status: LoginStatus::Ok,
        server: server_name(),
        numbers: SessionNumbers { consumed: login.consumed, seen: login.consumed, send_range: login.send_range },
        limits: login.limits,
        shm_file_id: 0,
        text: "",
    };
    let mut buf = [0u8; 1024];
    let n =
        encode::encode_control(&mut buf, &Control::LoginReply(reply), login.send_range.next(), login.consumed).unwrap();
    let mut peer = RawPeer::new(raw);
    peer.send(&buf[..n]);
    let done = client.login_client(cs, login.transport, b"", now).unwrap_or_else(|e| panic!("login: {e}"));
    let req = wait_until("the login request", || {
        peer.fill().unwrap();
        peer.next_frame()
    });
    assert_eq!(req.0.msg_type, msg_type::LOGIN);
    (done, peer)
}

/// Reads everything there is on a non-blocking or timed-out raw stream, without
/// decoding.
pub fn drain<R: Read>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 65536];
    loop {
        match r.read(&mut b) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
}

/// Writes `bytes` whole, ignoring a broken link (the connection may close first).
pub fn send_lossy<W: Write>(w: &mut W, bytes: &[u8]) {
    let _ = w.write_all(bytes);
}
