//! # A user-written transport: tcpshm over Unix domain sockets
//!
//! ```sh
//! cargo run --release --example unix_transport            # run the whole conformance kit
//! cargo run --release --example unix_transport -- --case cut_mid_stream
//! ```
//!
//! This file shows how to give tcpshm a new medium using only public pieces, and how
//! to prove it right: [`UnixTransport`] implements [`tcpshm::proto::Transport`], and
//! `main` runs the protocol's conformance kit ([`tcpshm::proto::testkit`]) against
//! it — the same cases the TCP and shared-memory transports pass. It prints each case
//! and exits non-zero if one fails.
//!
//! ## How it is built, and why this way
//!
//! A tcpshm connection has two halves:
//!
//! 1. **The engine**: the persistent send queue, framing, sequence numbers and acks,
//!    heartbeats, timeouts, resending after a reconnect, zero-copy `alloc`/`front`.
//!    [`tcpshm::tcp::StreamConnection`] provides all of it over *any* non-blocking
//!    byte stream; `StreamConnection<mio::net::UnixStream>` (alias
//!    [`tcpshm::tcp::UnixConnection`]) is the engine over a Unix socket. We wrap it
//!    rather than rebuild it from the session/store pieces: the engine is what the
//!    TCP transport runs, with its tests, its partial-write handling and its
//!    no-allocation hot path; rewriting it would only add ways to be wrong.
//! 2. **The login**: how the two ends agree on where to resume. Each side tells the
//!    other how many messages it consumed and which ones it still holds; each then
//!    resends from what the other consumed. The engine hands out its numbers
//!    ([`StreamConnection::login_state`](tcpshm::tcp::StreamConnection::login_state)) and takes the peer's
//!    ([`StreamConnection::attach`](tcpshm::tcp::StreamConnection::attach)), but leaves the exchange to the owner, because
//!    that is what differs between media (the tcpshm server does it with a listener,
//!    a connection table and a login handler). This file does it itself, over the
//!    socket, with the protocol's own `LOGIN` and `LOGIN_REPLY` frames
//!    ([`tcpshm::proto::login`]), **non-blocking**: the exchange advances in `poll`
//!    like everything else, so one thread can drive many connections, and a peer that
//!    never answers is dropped after a timeout measured on the caller's clock.
//!
//! The client end sends its request at once; the server end waits for it, checks the
//! client's name and that the numbers fit ([`StreamConnection::check_login`](tcpshm::tcp::StreamConnection::check_login): a side
//! that lost its state is refused with a reason instead of silently restarting),
//! answers, and attaches. The client attaches when the reply says yes. Each side
//! reads exactly the peer's login frame and nothing after it: the bytes that follow
//! (resent messages, heartbeats) belong to the engine.
//!
//! What this transport does not do, on purpose: it has no listener or connection
//! table (the caller connects the sockets; here, the kit's harness), no credentials,
//! and it serves one fixed pair of names per store, as a point-to-point link.

use anyhow::{bail, Context, Result};
use clap::Parser;
use mio::net::UnixStream;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tcpshm::persist::{Options, Store};
use tcpshm::proto::decode::{frame_limit, MAX_CONTROL_FRAME_LEN};
use tcpshm::proto::encode::encode_control;
use tcpshm::proto::frame::msg_type;
use tcpshm::proto::login::{
    truncate_utf8, LoginReply, LoginRequest, LoginStatus, TransportKind, MAX_REPLY_LEN, MAX_REQUEST_LEN, MAX_TEXT_LEN,
};
use tcpshm::proto::session::SessionConfig;
use tcpshm::proto::testkit::{self, Harness};
use tcpshm::proto::{
    decode, CloseReason, Control, Counters, Decoded, FrameError, Msg, Name, Nanos, ProtocolError, SendError, Transport,
};
use tcpshm::tcp::{LoginInfo, PeerLogin, StreamConfig, UnixConnection};

/// Which end of the link: the client speaks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the login request.
    Client,
    /// Answers it.
    Server,
}

/// A persistent tcpshm connection over a Unix stream socket.
pub struct UnixTransport {
    conn: UnixConnection,
    role: Role,
    /// The login exchange in progress (`None`: linked, or down).
    login: Option<Login>,
    /// Why the last login failed; cleared by the next one.
    failure: Option<CloseReason>,
    /// How long a login may take, on the caller's clock.
    login_timeout: Nanos,
}

/// A login exchange in progress: the socket, our frame going out, the peer's coming in.
struct Login {
    stream: UnixStream,
    /// Our numbers, taken from the engine when the exchange started.
    mine: LoginInfo,
    /// Our frame (the client's request at once, the server's reply once the request
    /// is in) and how much of it was written.
    out: Vec<u8>,
    written: usize,
    /// The peer's frame, read exactly (its first `have` bytes so far).
    inbuf: Box<[u8; MAX_CONTROL_FRAME_LEN]>,
    have: usize,
    /// Server: the client's numbers, from its request (set once the reply is queued).
    peer: Option<PeerLogin>,
    deadline: Nanos,
    started: Nanos,
}

/// What a step of the login exchange came to.
enum Step {
    /// Waiting for the socket.
    Pending,
    /// Done: attach with the peer's numbers.
    Attach(PeerLogin),
}

impl UnixTransport {
    /// Opens (or creates) the persistent store of `local` talking to `remote` in `dir`
    /// and returns a transport that is not linked yet: pushes queue until
    /// [`start`](Self::start) and the login complete.
    pub fn open(
        dir: &Path,
        local: Name,
        remote: Name,
        role: Role,
        queue_bytes: usize,
        cfg: StreamConfig,
    ) -> Result<UnixTransport> {
        let (store, _) = Store::open(dir, local, remote, &Options::new(queue_bytes), None, 0)
            .with_context(|| format!("cannot open the store {local}@{remote} in {}", dir.display()))?;
        Ok(UnixTransport {
            conn: UnixConnection::new(store, cfg),
            role,
            login: None,
            failure: None,
            login_timeout: cfg.session.timeout,
        })
    }

    /// Starts the login exchange over `stream` (freshly connected or accepted) at
    /// clock `now`. The link is up once [`poll`](Transport::poll) has completed it;
    /// a live link is replaced.
    pub fn start(&mut self, stream: UnixStream, now: Nanos) {
        // Our numbers, taken right before the exchange (this also ends a live link and
        // drops messages received but not popped: the peer resends them).
        let mine = self.conn.login_state();
        let mut login = Login {
            stream,
            mine,
            out: Vec::new(),
            written: 0,
            inbuf: Box::new([0; MAX_CONTROL_FRAME_LEN]),
            have: 0,
            peer: None,
            deadline: now.saturating_add(self.login_timeout),
            started: now,
        };
        self.failure = None;
        if self.role == Role::Client {
            let req = LoginRequest {
                client: mine.local,
                last_server: Some(mine.remote),
                // The login format names TCP and SHM; a byte stream is "TCP" to it.
                transport: TransportKind::Tcp,
                consumed: mine.consumed,
                send_range: mine.send_range,
                queue_capacity: mine.queue_capacity,
                credential: &[],
            };
            if let Err(f) = login.queue(&Control::Login(req)) {
                self.fail(f);
                return;
            }
        }
        self.login = Some(login);
    }

    /// The engine (its store, its session, its stream).
    pub fn engine(&self) -> &UnixConnection {
        &self.conn
    }

    /// Ends a login attempt with `reason` (the socket closes with it).
    fn fail(&mut self, reason: CloseReason) {
        self.login = None;
        self.failure = Some(reason);
    }

    /// Advances the login exchange; attaches the engine when it completes.
    fn advance(&mut self, now: Nanos) {
        let Some(login) = self.login.as_mut() else { return };
        let step = match login.step(self.role, &self.conn) {
            Ok(s) => s,
            Err(reason) => return self.fail(reason),
        };
        match step {
            Step::Pending if now >= login.deadline => {
                let silent_ns = now - login.started;
                self.fail(CloseReason::Timeout { silent_ns });
            }
            Step::Pending => {}
            Step::Attach(peer) => {
                let Some(login) = self.login.take() else { return };
                // On error the engine keeps the reason (the mismatch, the store error)
                // as its close reason, which `close_reason` reports.
                let _ = self.conn.attach(login.stream, peer, now);
            }
        }
    }
}

impl Login {
    /// Encodes `c` as our outgoing frame.
    fn queue(&mut self, c: &Control<'_>) -> Result<(), CloseReason> {
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_control(&mut buf, c, self.mine.send_range.next(), self.mine.consumed)
            .map_err(|e| CloseReason::Storage(format!("cannot encode the login frame: {e}")))?;
        self.out.clear();
        self.out.extend_from_slice(&buf[..n]);
        self.written = 0;
        Ok(())
    }

    /// Writes what is left of our frame; true when all of it is out.
    fn flush(&mut self) -> Result<bool, CloseReason> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(CloseReason::RemoteClosed),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::io("write login", &e)),
            }
        }
        Ok(true)
    }

    /// Reads towards the end of the peer's frame and never past it. Returns its
    /// length once it is whole.
    fn read_frame(&mut self, max_payload: usize) -> Result<Option<usize>, CloseReason> {
        let limit = frame_limit(max_payload);
        loop {
            // How far to read: the header first, then exactly what the header says.
            let want = match decode(&self.inbuf[..self.have], limit) {
                Ok(Decoded::Frame { consumed, .. }) => return Ok(Some(consumed)),
                Ok(Decoded::Need(n)) => self.have + n,
                Err(e) => return Err(CloseReason::Protocol(e.into())),
            };
            // The decoder refuses a length above `limit`, and the buffer holds the
            // longest control frame, so this only fails if those two disagree.
            let Some(room) = self.inbuf.get_mut(self.have..want) else {
                let len = u32::try_from(want).unwrap_or(u32::MAX);
                return Err(CloseReason::Protocol(FrameError::TooLong { len, max: limit }.into()));
            };
            match self.stream.read(room) {
                Ok(0) => return Err(CloseReason::RemoteClosed),
                Ok(n) => self.have += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::io("read login", &e)),
            }
        }
    }

    /// One step of the exchange for `role`.
    fn step(&mut self, role: Role, conn: &UnixConnection) -> Result<Step, CloseReason> {
        if !self.flush()? {
            return Ok(Step::Pending);
        }
        if let Some(peer) = self.peer {
            // Server: the reply is out, the link is ours.
            return Ok(Step::Attach(peer));
        }
        let max = match role {
            Role::Client => MAX_REPLY_LEN,
            Role::Server => MAX_REQUEST_LEN,
        };
        let Some(len) = self.read_frame(max)? else { return Ok(Step::Pending) };
        let frame = match decode(&self.inbuf[..len], frame_limit(max)) {
            Ok(Decoded::Frame { frame, .. }) => frame,
            Ok(Decoded::Need(_)) => return Ok(Step::Pending),
            Err(e) => return Err(CloseReason::Protocol(e.into())),
        };
        let control = frame.control().map_err(CloseReason::Protocol)?;
        match (role, control) {
            (Role::Client, Some(Control::LoginReply(reply))) => {
                if !reply.status.is_ok() {
                    return Err(CloseReason::LoginRefused { status: reply.status, text: reply.text.to_string() });
                }
                if reply.server != self.mine.remote {
                    return Err(CloseReason::Protocol(ProtocolError::UnexpectedControl {
                        msg_type: msg_type::LOGIN_REPLY,
                        context: "from a peer with another name than this store's",
                    }));
                }
                Ok(Step::Attach(PeerLogin::from(&reply)))
            }
            (Role::Server, Some(Control::Login(req))) => {
                let peer = PeerLogin::from(&req);
                // Refusals are answered, then the link is dropped: the client learns why.
                let refusal = if req.client != self.mine.remote {
                    Some((LoginStatus::Rejected, format!("this end serves {}, not {}", self.mine.remote, req.client)))
                } else {
                    conn.check_login(&peer).err().map(|m| (LoginStatus::SeqMismatch, m.to_string()))
                };
                let (status, text) = refusal.clone().unwrap_or((LoginStatus::Ok, String::new()));
                let reply = LoginReply {
                    status,
                    server: self.mine.local,
                    consumed: self.mine.consumed,
                    send_range: self.mine.send_range,
                    queue_capacity: self.mine.queue_capacity,
                    text: truncate_utf8(&text, MAX_TEXT_LEN),
                };
                self.queue(&Control::LoginReply(reply))?;
                if let Some((status, text)) = refusal {
                    // Best effort: the refusal fits any socket buffer.
                    let _ = self.flush();
                    return Err(CloseReason::LoginRefused { status, text });
                }
                self.peer = Some(peer);
                if self.flush()? {
                    Ok(Step::Attach(peer))
                } else {
                    Ok(Step::Pending)
                }
            }
            (_, Some(c)) => Err(CloseReason::Protocol(ProtocolError::UnexpectedControl {
                msg_type: c.msg_type(),
                context: "during the login",
            })),
            (_, None) => Err(CloseReason::Protocol(ProtocolError::MessageBeforeLogin { msg_type: frame.msg_type() })),
        }
    }
}

/// Everything but `poll` and the link state is the engine's: the hot path is
/// `StreamConnection`'s, statically dispatched, with nothing added.
impl Transport for UnixTransport {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.conn.alloc(len)
    }

    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.conn.push(msg_type)
    }

    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.conn.push_more(msg_type)
    }

    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        self.conn.front()
    }

    #[inline]
    fn pop(&mut self) {
        self.conn.pop()
    }

    fn poll(&mut self, now: Nanos) -> bool {
        if self.login.is_some() {
            self.advance(now);
            if self.login.is_some() {
                return false;
            }
        }
        self.conn.poll(now)
    }

    fn close(&mut self, reason: CloseReason) {
        if self.login.take().is_some() {
            self.failure = Some(reason.clone());
        }
        self.conn.close(reason);
    }

    fn is_connected(&self) -> bool {
        self.login.is_none() && self.conn.is_connected()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.failure.as_ref().or_else(|| self.conn.close_reason())
    }

    fn counters(&self) -> Counters {
        self.conn.counters()
    }

    fn max_payload(&self) -> usize {
        self.conn.max_payload()
    }
}

// ---------------------------------------------------------------------------------
// The conformance kit's harness: real Unix sockets through a listener on a path.
// ---------------------------------------------------------------------------------

/// Makes linked pairs for the kit: a client and a server end, each with its own
/// store in a temporary directory, connected through a listening socket.
struct UnixHarness {
    dir: PathBuf,
    listener: std::os::unix::net::UnixListener,
    cfg: StreamConfig,
    pairs: u64,
}

impl UnixHarness {
    fn new(dir: PathBuf) -> Result<UnixHarness> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("listen.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        // The kit runs on a fake clock: 1 ms heartbeats and a 10 ms timeout keep its
        // timeout cases short without real waiting.
        let session = SessionConfig { heartbeat_interval: 1_000_000, timeout: 10_000_000, ..SessionConfig::default() };
        let cfg = StreamConfig { max_payload: 64 * 1024, session, ..StreamConfig::default() };
        Ok(UnixHarness { dir, listener, cfg, pairs: 0 })
    }

    /// A new connection: the client side connects, the server side accepts.
    fn connect(&self) -> (UnixStream, UnixStream) {
        let path = self.dir.join("listen.sock");
        let client = std::os::unix::net::UnixStream::connect(&path).expect("connect to the kit's listener");
        let (server, _) = self.listener.accept().expect("accept on the kit's listener");
        for s in [&client, &server] {
            s.set_nonblocking(true).expect("make the socket non-blocking");
        }
        (UnixStream::from_std(client), UnixStream::from_std(server))
    }
}

impl Drop for UnixHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness for UnixHarness {
    type T = UnixTransport;

    fn pair(&mut self, now: Nanos) -> (UnixTransport, UnixTransport) {
        // Fresh names per pair: the kit wants fresh sessions.
        self.pairs += 1;
        let n = |s: String| s.parse::<Name>().expect("a valid name");
        let (c, s) = (n(format!("client{}", self.pairs)), n(format!("server{}", self.pairs)));
        let open = |me, peer, role| {
            UnixTransport::open(&self.dir, me, peer, role, 256 * 1024, self.cfg).expect("open a store for the kit")
        };
        let mut a = open(c, s, Role::Client);
        let mut b = open(s, c, Role::Server);
        let (sa, sb) = self.connect();
        a.start(sa, now);
        b.start(sb, now);
        (a, b)
    }

    fn cut(&mut self, a: &mut UnixTransport, b: &mut UnixTransport) {
        // Like a cable pulled: no close frame, both directions dead.
        for t in [a, b] {
            if let Some(s) = t.engine().stream() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn reconnect(&mut self, a: &mut UnixTransport, b: &mut UnixTransport, now: Nanos) {
        let (sa, sb) = self.connect();
        a.start(sa, now);
        b.start(sb, now);
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
        // Both ends are polled from this one thread; the kernel needs no time, but a
        // yield keeps a shared machine responsive during the long cases.
        std::thread::yield_now();
    }
}

#[derive(Parser, Debug)]
#[command(about = "Runs the tcpshm conformance kit against a Unix-socket transport written from public pieces")]
struct Args {
    /// Run only these cases (repeatable); default: all (the kit's, then this
    /// transport's login checks).
    #[arg(long = "case")]
    cases: Vec<String>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
}

fn main() {
    match run(Args::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("unix_transport: error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// A case: runs against the harness, `Err` says what went wrong.
type CaseFn = fn(&mut UnixHarness) -> Result<(), String>;

fn run(args: Args) -> Result<bool> {
    // The kit's cases, then this transport's own login checks (the kit drives
    // transports that log in successfully; refusals are each transport's business).
    let mut cases: Vec<(&str, CaseFn)> =
        testkit::all_cases::<UnixHarness>().into_iter().map(|c| (c.name, c.run)).collect();
    cases.push(("login_refuses_another_client", login_refuses_another_client));
    cases.push(("login_refuses_lost_state", login_refuses_lost_state));
    if args.list {
        cases.iter().for_each(|(name, _)| println!("{name}"));
        return Ok(true);
    }
    for c in &args.cases {
        if !cases.iter().any(|(name, _)| name == c) {
            bail!("no case named {c:?} (see --list)");
        }
    }
    let dir = std::env::temp_dir().join(format!("tcpshm-unix-transport-{}", std::process::id()));
    let mut harness = UnixHarness::new(dir)?;
    println!("conformance kit against UnixTransport (Unix sockets, stores in {})", harness.dir.display());
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for (name, run) in cases {
        if !args.cases.is_empty() && !args.cases.iter().any(|c| c == name) {
            continue;
        }
        let t = Instant::now();
        match run(&mut harness) {
            Ok(()) => {
                passed += 1;
                println!("  ok    {name:<28} {:>8.1?}", t.elapsed());
            }
            Err(message) => {
                failed += 1;
                println!("  FAIL  {name:<28} {:>8.1?}\n        {message}", t.elapsed());
            }
        }
    }
    let verdict = if failed == 0 { "PASS" } else { "FAIL" };
    println!("{verdict}: {passed} passed, {failed} failed, in {:.2?}", started.elapsed());
    Ok(failed == 0)
}

/// The close reasons of two ends.
type Reasons = (Option<CloseReason>, Option<CloseReason>);

/// Polls both ends from clock `now` until neither has a login in progress; returns
/// their close reasons.
fn settle(a: &mut UnixTransport, b: &mut UnixTransport, mut now: Nanos) -> Result<Reasons, String> {
    for _ in 0..10_000 {
        now += 100_000;
        a.poll(now);
        b.poll(now);
        if a.login.is_none() && b.login.is_none() {
            return Ok((a.close_reason().cloned(), b.close_reason().cloned()));
        }
        std::thread::yield_now();
    }
    Err("the login exchange never ended".into())
}

/// A client of another name than the server end's store is refused, and told why.
fn login_refuses_another_client(h: &mut UnixHarness) -> Result<(), String> {
    let n = |s: &str| s.parse::<Name>().map_err(|e| e.to_string());
    let open =
        |me, peer, role| UnixTransport::open(&h.dir, me, peer, role, 64 * 1024, h.cfg).map_err(|e| e.to_string());
    let mut server = open(n("gate")?, n("alice")?, Role::Server)?;
    let mut client = open(n("mallory")?, n("gate")?, Role::Client)?;
    let (sc, ss) = h.connect();
    client.start(sc, 0);
    server.start(ss, 0);
    match settle(&mut client, &mut server, 0)? {
        (Some(CloseReason::LoginRefused { status: LoginStatus::Rejected, text }), Some(_))
            if text.contains("alice") =>
        {
            Ok(())
        }
        other => Err(format!("expected the client refused (Rejected, naming alice), got {other:?}")),
    }
}

/// A side that lost its state (its store deleted) is refused with the mismatch, never
/// silently restarted: the messages the other side thinks it consumed would be lost.
fn login_refuses_lost_state(h: &mut UnixHarness) -> Result<(), String> {
    let mut now = 1_000_000_000;
    let (mut a, mut b) = h.pair(now);
    settle(&mut a, &mut b, now)?;
    // Three messages from the client end, consumed by the server end, and the
    // client end told so (the ack), so that it will not send them again.
    for k in 0..3u8 {
        a.alloc(1).map_err(|e| e.to_string())?.ok_or("queue full")?[0] = k;
        a.push(1).map_err(|e| e.to_string())?;
    }
    let mut popped = 0;
    for _ in 0..10_000 {
        now += 100_000;
        a.poll(now);
        b.poll(now);
        while b.front().is_some() {
            b.pop();
            popped += 1;
        }
        if popped == 3 && a.counters().acked == 3 {
            break;
        }
        std::thread::yield_now();
    }
    if popped != 3 || a.counters().acked != 3 {
        return Err(format!("{popped} of 3 messages popped, {} acknowledged", a.counters().acked));
    }
    // The server end loses its store; a fresh one of the same names starts at zero.
    let (server, client) = (b.engine().local_name(), b.engine().remote_name());
    let path = b.engine().store().path().to_path_buf();
    drop(b);
    std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    let mut b =
        UnixTransport::open(&h.dir, server, client, Role::Server, 256 * 1024, h.cfg).map_err(|e| e.to_string())?;
    h.reconnect(&mut a, &mut b, now);
    match settle(&mut a, &mut b, now)? {
        (Some(CloseReason::LoginRefused { status: LoginStatus::SeqMismatch, .. }), Some(_)) => Ok(()),
        other => Err(format!("expected the client refused with SeqMismatch, got {other:?}")),
    }
}
