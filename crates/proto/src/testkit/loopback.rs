//! The reference transport: this crate's pieces over in-memory byte pipes.
//!
//! [`Loopback`] is a complete [`Transport`] built only from the protocol crate and the
//! ring: a [`Session`] for the numbers, a `tcpshm-ring` [`VarQueue`] as the send queue
//! (frames stored exactly as they go on the wire, see [`frame`](crate::frame)),
//! [`encode`](mod@crate::encode) for control frames and [`decode`](crate::decode()) for
//! everything received. Between the two ends run two bounded in-memory pipes that
//! accept partial writes and deliver reads in pseudo-random chunks of 1 to
//! [`LoopbackConfig::max_chunk`] bytes, so every frame is split at arbitrary byte
//! boundaries, as on TCP. It passes the whole conformance kit, which shows the kit and
//! the protocol pieces compose; it is also a readable model for a real stream
//! transport (TCP, Unix socket).
//!
//! The state is in memory only (no persistence across processes). A connection starts
//! with a login: `a` (the client) sends its consumed count and send range, `b` (the
//! server) checks them with [`Session::after_login`] and replies with its own; each side
//! then resends from what the other consumed.
//!
//! ```
//! use tcpshm_proto::testkit::loopback::{connect, Loopback, LoopbackConfig};
//! use tcpshm_proto::Transport;
//!
//! let (mut a, mut b) = Loopback::pair(&LoopbackConfig::default());
//! connect(&mut a, &mut b, 0);
//! a.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
//! a.push(1).unwrap();
//! let mut now = 0;
//! while b.front().is_none() {
//!     now += 1000;
//!     a.poll(now);
//!     b.poll(now);
//! }
//! assert_eq!(b.front().unwrap().payload, b"hello");
//! b.pop();
//! ```

use super::gen::Rng;
use super::Harness;
use crate::close::{CloseFrame, TextBuf};
use crate::decode::{frame_limit, MAX_CONTROL_FRAME_LEN};
use crate::encode::{self, encode_control};
use crate::frame::{msg_type, Header, ACK_OFFSET, HEADER_LEN, RING_PREFIX_LEN};
use crate::login::{LoginReply, LoginRequest, LoginStatus, TransportKind};
use crate::session::{Resume, Session, SessionConfig};
use crate::{
    decode, CloseReason, Control, Counters, Decoded, FrameKind, Msg, Name, Nanos, ProtocolError, SendError, Transport,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tcpshm_ring::var::{AllocError, Consumer, Producer, VarQueue};

/// Linux `ECONNRESET`: what a read on a cut link reports.
const ECONNRESET: i32 = 104;
/// Linux `EPIPE`: what a write on a closed link reports.
const EPIPE: i32 = 32;

/// The shape of a loopback pair.
#[derive(Debug, Clone)]
pub struct LoopbackConfig {
    /// Bytes of each end's send queue (rounded up to a power of two, at least 256).
    pub queue_capacity: usize,
    /// Largest user message (capped by what the queue can hold).
    pub max_payload: usize,
    /// Bytes each pipe holds in flight (what a socket buffer would).
    pub pipe_capacity: usize,
    /// Bytes of each end's receive buffer (at least one largest frame).
    pub recv_buffer: usize,
    /// Largest chunk a read delivers (each read takes 1 to `max_chunk` bytes).
    pub max_chunk: usize,
    /// Acks, heartbeats and timeout.
    pub session: SessionConfig,
    /// Whether to ack once a quarter of the peer's queue (as told at login) is
    /// popped ([`SessionConfig::with_peer_queue_capacity`]); default true.
    pub ack_by_peer_queue: bool,
    /// Seed of the read chunking.
    pub seed: u64,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        LoopbackConfig {
            queue_capacity: 64 * 1024,
            max_payload: 16 * 1024,
            pipe_capacity: 4096,
            recv_buffer: 24 * 1024,
            max_chunk: 97,
            session: SessionConfig { heartbeat_interval: 1_000_000, timeout: 10_000_000, ..SessionConfig::default() },
            ack_by_peer_queue: true,
            seed: 1,
        }
    }
}

/// Why a pipe operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkError {
    /// Read: the writer closed and everything was read.
    Eof,
    /// Write: the reader closed its end (what `EPIPE` says after the peer's close).
    PeerClosed,
    /// The link was cut.
    Reset,
}

/// One direction of a link.
#[derive(Debug)]
struct Pipe {
    data: VecDeque<u8>,
    cap: usize,
    writer_closed: bool,
    reader_closed: bool,
    broken: bool,
}

/// One end of a link: the pipe it reads and the pipe it writes.
#[derive(Debug, Clone)]
struct Link {
    rx: Arc<Mutex<Pipe>>,
    tx: Arc<Mutex<Pipe>>,
}

fn lock(p: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    // A panic elsewhere cannot leave a pipe half-updated in a way that matters here.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Link {
    fn pair(cap: usize) -> (Link, Link) {
        let pipe = || {
            Arc::new(Mutex::new(Pipe {
                data: VecDeque::new(),
                cap,
                writer_closed: false,
                reader_closed: false,
                broken: false,
            }))
        };
        let (ab, ba) = (pipe(), pipe());
        (Link { rx: ba.clone(), tx: ab.clone() }, Link { rx: ab, tx: ba })
    }

    /// Writes what fits; `Ok(0)` when the pipe is full.
    fn write(&self, b: &[u8]) -> Result<usize, LinkError> {
        let mut p = lock(&self.tx);
        if p.broken {
            return Err(LinkError::Reset);
        }
        if p.reader_closed {
            return Err(LinkError::PeerClosed);
        }
        let n = b.len().min(p.cap - p.data.len());
        p.data.extend(&b[..n]);
        Ok(n)
    }

    /// Reads what is there, up to `b.len()`; `Ok(0)` when nothing is.
    fn read(&self, b: &mut [u8]) -> Result<usize, LinkError> {
        let mut p = lock(&self.rx);
        if p.broken {
            return Err(LinkError::Reset);
        }
        if p.data.is_empty() {
            return if p.writer_closed { Err(LinkError::Eof) } else { Ok(0) };
        }
        let n = b.len().min(p.data.len());
        for (dst, src) in b.iter_mut().zip(p.data.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }

    /// Bytes waiting to be read.
    fn pending(&self) -> usize {
        lock(&self.rx).data.len()
    }

    /// Orderly close: the peer reads what was written, then end of stream.
    fn close(&self) {
        lock(&self.tx).writer_closed = true;
        lock(&self.rx).reader_closed = true;
    }

    /// Abrupt cut: bytes in flight are lost, both ends get a reset.
    fn cut(&self) {
        for p in [&self.tx, &self.rx] {
            let mut p = lock(p);
            p.broken = true;
            p.data.clear();
        }
    }
}

/// Which end of the login an end is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// Where an end is in its connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No link (never connected, closed, or failed).
    Down,
    /// Server: linked, waiting for the login request.
    AwaitLogin,
    /// Client: login request sent, waiting for the reply.
    AwaitReply,
    /// Logged in: messages flow.
    Up,
}

/// Why a poll step ends the connection, and whether the peer is told.
#[derive(Debug)]
struct Fail {
    reason: CloseReason,
    tell_peer: bool,
}

impl From<ProtocolError> for Fail {
    fn from(e: ProtocolError) -> Self {
        Fail { reason: CloseReason::Protocol(e), tell_peer: true }
    }
}

fn corrupt(what: String) -> Fail {
    Fail { reason: CloseReason::Corrupt(what), tell_peer: true }
}

/// One end of a loopback connection. See the [module docs](self).
#[derive(Debug)]
pub struct Loopback {
    role: Role,
    local: Name,
    remote: Name,
    max_payload: usize,
    max_frame: u32,
    session: Session,
    /// The send queue: frames `acked..next_seq`, each a wire frame.
    tx: Producer<'static>,
    /// The send queue's reading end: walked to write frames, popped on ack.
    txq: Consumer<'static>,
    /// Ring index of the frame with seq `session.sent()`.
    send_index: u64,
    /// Bytes staged for the link (whole frames), written from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// Receive buffer: `in_start..in_scan` decoded frames not yet popped (user
    /// frames; control frames there were already handled), `in_scan..in_end` bytes of
    /// a frame not yet complete.
    inbox: Box<[u8]>,
    in_start: usize,
    in_scan: usize,
    in_end: usize,
    link: Option<Link>,
    state: State,
    reason: Option<CloseReason>,
    counters: Counters,
    rng: Rng,
    max_chunk: usize,
    pipe_capacity: usize,
    ack_by_peer_queue: bool,
    /// The last `now` given to `poll` (`push` sends immediately and needs a time).
    now: Nanos,
    /// Client: whether a login succeeded before (then it names its last server).
    logged_in_once: bool,
}

impl Loopback {
    fn new(cfg: &LoopbackConfig, role: Role) -> Loopback {
        // At least room for a few small frames.
        let (tx, txq) = VarQueue::with_capacity(cfg.queue_capacity.max(256));
        let max_payload = cfg.max_payload.min(tx.max_payload() - RING_PREFIX_LEN);
        let max_frame = frame_limit(max_payload);
        let inbox_len = cfg.recv_buffer.max(max_frame as usize + 8).max(MAX_CONTROL_FRAME_LEN);
        let (local, remote) = match role {
            Role::Client => ("kit-client", "kit-server"),
            Role::Server => ("kit-server", "kit-client"),
        };
        Loopback {
            role,
            local: Name::new(local).expect("valid name"),
            remote: Name::new(remote).expect("valid name"),
            max_payload,
            max_frame,
            session: Session::new(cfg.session),
            tx,
            txq,
            send_index: 0,
            out: Vec::with_capacity(MAX_CONTROL_FRAME_LEN.max(max_frame as usize + 8)),
            out_pos: 0,
            inbox: vec![0u8; inbox_len].into_boxed_slice(),
            in_start: 0,
            in_scan: 0,
            in_end: 0,
            link: None,
            state: State::Down,
            reason: None,
            counters: Counters::default(),
            rng: Rng::new(cfg.seed ^ role as u64),
            max_chunk: cfg.max_chunk.max(1),
            pipe_capacity: cfg.pipe_capacity.max(1),
            ack_by_peer_queue: cfg.ack_by_peer_queue,
            now: 0,
            logged_in_once: false,
        }
    }

    /// Two unlinked ends with fresh sessions: `a` the client, `b` the server. Link
    /// them with [`connect`].
    pub fn pair(cfg: &LoopbackConfig) -> (Loopback, Loopback) {
        (Loopback::new(cfg, Role::Client), Loopback::new(cfg, Role::Server))
    }

    /// The session state (for tests and inspection).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Cuts this end's link abruptly (both directions; the peer shares it).
    pub fn cut(&mut self) {
        if let Some(l) = &self.link {
            l.cut();
        }
    }

    /// Takes a new link: drops the old one and any partial frame in either direction.
    fn attach(&mut self, link: Link, now: Nanos) {
        if let Some(old) = self.link.replace(link) {
            old.close();
        }
        self.now = now;
        self.reason = None;
        self.out.clear();
        self.out_pos = 0;
        // Received-but-not-popped messages are dropped now: the peer resends them
        // from the consumed count we advertise at login (and nothing can be popped
        // in between, so that count stays true). A partial frame of the old stream
        // would never complete anyway.
        let mine = self.session.begin_login();
        (self.in_start, self.in_scan, self.in_end) = (0, 0, 0);
        match self.role {
            Role::Server => self.state = State::AwaitLogin,
            Role::Client => {
                let req = LoginRequest {
                    client: self.local,
                    last_server: self.logged_in_once.then_some(self.remote),
                    transport: TransportKind::Tcp,
                    consumed: mine.consumed,
                    send_range: mine.send_range,
                    queue_capacity: self.tx.config().capacity as u64,
                    credential: b"loopback",
                };
                self.stage_control(&Control::Login(req));
                self.state = State::AwaitReply;
            }
        }
    }

    fn stage_control(&mut self, c: &Control<'_>) {
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let ack = self.session.ack_to_send();
        // Every control message this transport builds is within its bounds.
        if let Ok(n) = encode_control(&mut buf, c, self.session.sent(), ack) {
            self.out.extend_from_slice(&buf[..n]);
            self.session.on_ack_sent(ack);
            self.session.on_frame_sent(self.now);
        }
    }

    /// Ends the connection: tells the peer why (best effort) if asked, drops the link.
    fn fail(&mut self, f: Fail) {
        if let Some(link) = self.link.take() {
            if f.tell_peer {
                let mut text = TextBuf::new();
                let close = CloseFrame::for_reason(&f.reason, &mut text);
                // After any partial frame in `out`, so the peer can still decode it.
                self.stage_control(&Control::Close(close));
                while self.out_pos < self.out.len() {
                    match link.write(&self.out[self.out_pos..]) {
                        Ok(n) if n > 0 => self.out_pos += n,
                        _ => break,
                    }
                }
            }
            link.close();
        }
        self.out.clear();
        self.out_pos = 0;
        self.state = State::Down;
        self.reason = Some(f.reason);
    }

    // ---- receiving --------------------------------------------------------------

    fn compact(&mut self) {
        if self.in_start > 0 {
            self.inbox.copy_within(self.in_start..self.in_end, 0);
            self.in_scan -= self.in_start;
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
    }

    fn receive(&mut self, now: Nanos) -> Result<(), Fail> {
        let Some(link) = self.link.clone() else { return Ok(()) };
        let mut alive = false;
        for _ in 0..self.rng.range(1, 8) {
            if self.in_end == self.inbox.len() {
                self.compact();
            }
            let space = self.inbox.len() - self.in_end;
            if space == 0 {
                // Full of unpopped messages: backpressure. Bytes waiting mean the peer
                // is alive; it is our user who is slow.
                alive |= link.pending() > 0;
                break;
            }
            let chunk = (self.rng.range(1, self.max_chunk as u64) as usize).min(space);
            match link.read(&mut self.inbox[self.in_end..self.in_end + chunk]) {
                Ok(0) => break,
                Ok(n) => {
                    self.in_end += n;
                    alive = true;
                }
                Err(LinkError::Eof | LinkError::PeerClosed) => {
                    return Err(Fail { reason: CloseReason::RemoteClosed, tell_peer: false })
                }
                Err(LinkError::Reset) => {
                    return Err(Fail { reason: CloseReason::Io { op: "read", errno: ECONNRESET }, tell_peer: false })
                }
            }
            self.scan(now)?;
            if self.state == State::Down {
                break;
            }
        }
        if alive {
            self.session.on_frame_received(now);
        }
        Ok(())
    }

    /// Handles every complete frame after `in_scan`.
    fn scan(&mut self, now: Nanos) -> Result<(), Fail> {
        while self.in_scan < self.in_end {
            let (kind, header, consumed) = match decode(&self.inbox[self.in_scan..self.in_end], self.max_frame) {
                Err(e) => return Err(ProtocolError::from(e).into()),
                Ok(Decoded::Need(_)) => break,
                Ok(Decoded::Frame { frame, consumed }) => (frame.kind(), *frame.header(), consumed),
            };
            let at = self.in_scan;
            self.in_scan += consumed;
            if kind == FrameKind::User {
                self.on_user(&header)?;
            } else {
                // Copied out so the handler may change the buffer (a login discards it).
                let mut copy = [0u8; MAX_CONTROL_FRAME_LEN];
                copy[..consumed].copy_from_slice(&self.inbox[at..at + consumed]);
                if self.in_start == at {
                    // Nothing unpopped before it: release its bytes now (a side that
                    // only receives acks never pops, and must not fill up with them).
                    self.in_start = self.in_scan;
                }
                self.on_control(&copy[..consumed], now)?;
            }
            if self.state == State::Down {
                break;
            }
        }
        Ok(())
    }

    fn on_user(&mut self, h: &Header) -> Result<(), Fail> {
        if self.state != State::Up {
            return Err(ProtocolError::MessageBeforeLogin { msg_type: h.msg_type }.into());
        }
        self.session.on_receive(h.seq)?;
        self.counters.received += 1;
        self.apply_ack(h.ack)
    }

    fn apply_ack(&mut self, ack: u64) -> Result<(), Fail> {
        let n = self.session.on_ack(ack)?;
        self.drop_acked(n)
    }

    fn drop_acked(&mut self, n: u64) -> Result<(), Fail> {
        for _ in 0..n {
            self.txq.pop_more().map_err(|e| corrupt(format!("send queue: {e}")))?;
        }
        self.txq.release();
        self.counters.acked += n;
        Ok(())
    }

    fn on_control(&mut self, bytes: &[u8], now: Nanos) -> Result<(), Fail> {
        let Ok(Decoded::Frame { frame, .. }) = decode(bytes, u32::MAX) else {
            return Err(corrupt("a decoded control frame no longer decodes".into()));
        };
        let control = frame.control()?.ok_or_else(|| corrupt("a control frame parsed as a user message".into()))?;
        match (self.state, control) {
            (State::Up, Control::Heartbeat | Control::Ack) => self.apply_ack(frame.ack()),
            (_, Control::Close(c)) => Err(Fail { reason: c.to_reason(), tell_peer: false }),
            (State::AwaitLogin, Control::Login(req)) => self.accept_login(&req, now),
            (State::AwaitReply, Control::LoginReply(rep)) => self.finish_login(&rep, now),
            (state, c) => Err(ProtocolError::UnexpectedControl {
                msg_type: c.msg_type(),
                context: if state == State::Up { "after login" } else { "before login" },
            }
            .into()),
        }
    }

    /// The reply to a login, and, if it refuses, the reason this end closes with.
    fn reply(&mut self, status: LoginStatus, text: &str) {
        let mine = self.session.send_range();
        let reply = LoginReply {
            status,
            server: self.local,
            consumed: self.session.consumed(),
            send_range: mine,
            queue_capacity: self.tx.config().capacity as u64,
            text: crate::login::truncate_utf8(text, crate::login::MAX_TEXT_LEN),
        };
        self.stage_control(&Control::LoginReply(reply));
    }

    /// Server: checks a login request, replies, and resumes the session.
    fn accept_login(&mut self, req: &LoginRequest<'_>, now: Nanos) -> Result<(), Fail> {
        if req.client != self.remote {
            let text = format!("unknown client {}", req.client);
            self.reply(LoginStatus::Rejected, &text);
            self.flush();
            return Err(Fail {
                reason: CloseReason::LoginRefused { status: LoginStatus::Rejected, text },
                tell_peer: false,
            });
        }
        // Unchanged since `attach` (nothing could be popped); the login frame itself
        // is dropped from the buffer.
        let mine = self.session.begin_login();
        self.in_start = self.in_scan;
        match self.session.after_login(req.consumed, req.send_range, now) {
            Err(m) => {
                self.reply(LoginStatus::SeqMismatch, &m.to_string());
                self.flush();
                Err(Fail { reason: CloseReason::Protocol(m.into()), tell_peer: false })
            }
            Ok(resume) => {
                let reply = LoginReply {
                    status: LoginStatus::Ok,
                    server: self.local,
                    consumed: mine.consumed,
                    send_range: mine.send_range,
                    queue_capacity: self.tx.config().capacity as u64,
                    text: "",
                };
                self.stage_control(&Control::LoginReply(reply));
                self.resume(resume, req.queue_capacity)
            }
        }
    }

    /// Client: applies the server's reply.
    fn finish_login(&mut self, rep: &LoginReply<'_>, now: Nanos) -> Result<(), Fail> {
        if !rep.status.is_ok() {
            return Err(Fail {
                reason: CloseReason::LoginRefused { status: rep.status, text: rep.text.to_owned() },
                tell_peer: false,
            });
        }
        let resume = self.session.after_login(rep.consumed, rep.send_range, now).map_err(ProtocolError::from)?;
        self.logged_in_once = true;
        self.resume(resume, rep.queue_capacity)
    }

    fn resume(&mut self, r: Resume, peer_queue: u64) -> Result<(), Fail> {
        self.drop_acked(r.newly_acked)?;
        self.send_index = self.txq.read_index();
        if peer_queue > 0 && self.ack_by_peer_queue {
            let cfg = self.session.config().with_peer_queue_capacity(peer_queue);
            self.session.set_config(cfg);
        }
        self.state = State::Up;
        Ok(())
    }

    /// The next user frame in the receive buffer, skipping handled control frames:
    /// `(offset, padded length)`.
    fn front_frame(&mut self) -> Option<(usize, usize)> {
        loop {
            if self.in_start >= self.in_scan {
                if self.in_scan == self.in_end {
                    (self.in_start, self.in_scan, self.in_end) = (0, 0, 0);
                }
                return None;
            }
            match decode(&self.inbox[self.in_start..self.in_scan], u32::MAX) {
                Ok(Decoded::Frame { frame, consumed }) if frame.is_user() => return Some((self.in_start, consumed)),
                Ok(Decoded::Frame { consumed, .. }) => self.in_start += consumed,
                // Everything before `in_scan` was decoded once already.
                _ => return None,
            }
        }
    }

    // ---- sending ----------------------------------------------------------------

    /// Writes staged bytes; `Ok(false)` if the pipe is full.
    fn write_out(&mut self, link: &Link) -> Result<bool, LinkError> {
        while self.out_pos < self.out.len() {
            match link.write(&self.out[self.out_pos..])? {
                0 => return Ok(false),
                n => self.out_pos += n,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    fn flush(&mut self) {
        if let Some(link) = self.link.clone() {
            let _ = self.write_out(&link);
        }
    }

    fn send(&mut self, now: Nanos) -> Result<(), Fail> {
        let Some(link) = self.link.clone() else { return Ok(()) };
        loop {
            match self.write_out(&link) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(LinkError::PeerClosed) => return Err(self.why_peer_closed(now)),
                Err(_) => return Err(Fail { reason: CloseReason::Io { op: "write", errno: EPIPE }, tell_peer: false }),
            }
            if self.state != State::Up || !self.stage_next(now)? {
                return Ok(());
            }
        }
    }

    /// The peer closed its end while we write: read what it sent before closing, to
    /// report its close frame's reason rather than a bare write error.
    fn why_peer_closed(&mut self, now: Nanos) -> Fail {
        let mut last = None;
        while last != Some(self.in_end) && self.state != State::Down {
            last = Some(self.in_end);
            if let Err(f) = self.receive(now) {
                return f;
            }
        }
        Fail { reason: CloseReason::RemoteClosed, tell_peer: false }
    }

    /// Stages the next frame due, in priority order: a standalone ack, the next user
    /// frame, a heartbeat. `Ok(false)` if nothing is due.
    fn stage_next(&mut self, now: Nanos) -> Result<bool, Fail> {
        if self.session.ack_due() {
            let ack = self.session.ack_to_send();
            self.out.extend_from_slice(&encode::ack(self.session.sent(), ack));
            self.session.on_ack_sent(ack);
            self.session.on_frame_sent(now);
            return Ok(true);
        }
        if self.session.unsent() > 0 {
            let sent = self.session.sent();
            let msg = match self.txq.peek(self.send_index) {
                Ok(Some(m)) => m,
                Ok(None) => return Err(corrupt(format!("send queue ends before seq {sent}"))),
                Err(e) => return Err(corrupt(format!("send queue: {e}"))),
            };
            let bytes = msg.bytes();
            let Some(head) = bytes.first_chunk::<HEADER_LEN>() else {
                return Err(corrupt(format!("send queue frame of {} bytes", bytes.len())));
            };
            let h = Header::read(head);
            if h.seq != sent {
                return Err(corrupt(format!("send queue holds seq {} where seq {sent} belongs", h.seq)));
            }
            let at = self.out.len();
            self.out.extend_from_slice(bytes);
            self.send_index = msg.end();
            // The queued frame carries the ack of when it was allocated; the copy
            // going out carries the current one (the whole frame is staged at once,
            // so a partial write never mixes two values).
            let ack = self.session.ack_to_send();
            self.out[at + ACK_OFFSET..at + HEADER_LEN].copy_from_slice(&ack.to_le_bytes());
            let first = self.session.on_sent(1);
            self.counters.sent += first;
            self.counters.resent += 1 - first;
            self.session.on_ack_sent(ack);
            self.session.on_frame_sent(now);
            return Ok(true);
        }
        if self.session.heartbeat_due(now) {
            self.out.extend_from_slice(&encode::heartbeat(self.session.sent(), self.session.ack_to_send()));
            self.session.on_ack_sent(self.session.ack_to_send());
            self.session.on_frame_sent(now);
            return Ok(true);
        }
        Ok(false)
    }

    fn push_common(&mut self, t: u16, more: bool) -> Result<(), SendError> {
        if !msg_type::is_user(t) {
            return Err(SendError::ReservedType(t));
        }
        let r = if more { self.tx.push_more(t) } else { self.tx.push(t) };
        r.map_err(|_| SendError::NothingAllocated)?;
        self.session.on_push();
        self.counters.pushed += 1;
        Ok(())
    }
}

impl Transport for Loopback {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        if len > self.max_payload {
            return Err(SendError::TooLarge { len, max: self.max_payload });
        }
        let (seq, ack) = (self.session.next_seq(), self.session.ack_to_send());
        match self.tx.alloc(len + RING_PREFIX_LEN) {
            Ok(Some(buf)) => {
                // The ring's payload is `seq ‖ ack ‖ message`: with the ring's own
                // 8-byte header, a wire frame.
                let (prefix, msg) = buf.split_at_mut(RING_PREFIX_LEN);
                prefix[..8].copy_from_slice(&seq.to_le_bytes());
                prefix[8..].copy_from_slice(&ack.to_le_bytes());
                Ok(Some(msg))
            }
            Ok(None) => Ok(None),
            Err(AllocError::TooLarge { .. }) => Err(SendError::TooLarge { len, max: self.max_payload }),
            Err(AllocError::Corrupt(c)) => Err(SendError::Storage(c.to_string())),
        }
    }

    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.push_common(msg_type, false)?;
        if self.state == State::Up {
            if let Err(f) = self.send(self.now) {
                self.fail(f);
            }
        }
        Ok(())
    }

    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.push_common(msg_type, true)
    }

    fn front(&mut self) -> Option<Msg<'_>> {
        let (at, len) = self.front_frame()?;
        match decode(&self.inbox[at..at + len], u32::MAX) {
            Ok(Decoded::Frame { frame, .. }) => {
                Some(Msg { msg_type: frame.msg_type(), seq: frame.seq(), payload: frame.payload() })
            }
            _ => None,
        }
    }

    fn pop(&mut self) {
        if let Some((at, len)) = self.front_frame() {
            self.in_start = at + len;
            self.session.on_pop(len as u64);
            self.counters.popped += 1;
        }
    }

    fn poll(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.tx.publish();
        if self.state == State::Down {
            return false;
        }
        let step = self.receive(now).and_then(|()| {
            if self.state == State::Up {
                if let Some(silent_ns) = self.session.timed_out(now) {
                    return Err(Fail { reason: CloseReason::Timeout { silent_ns }, tell_peer: true });
                }
            }
            self.send(now)
        });
        if let Err(f) = step {
            self.fail(f);
        }
        self.state == State::Up
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Down {
            self.reason.get_or_insert(reason);
            return;
        }
        self.fail(Fail { reason, tell_peer: true });
    }

    fn is_connected(&self) -> bool {
        self.state == State::Up
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.reason.as_ref()
    }

    fn counters(&self) -> Counters {
        Counters { queue_depth: self.session.next_seq() - self.session.acked(), ..self.counters }
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }
}

/// Links `a` (client) and `b` (server) with a new pair of pipes at clock `now` and
/// starts the login; polling both completes it. Replaces any previous link.
pub fn connect(a: &mut Loopback, b: &mut Loopback, now: Nanos) {
    let (la, lb) = Link::pair(a.pipe_capacity.min(b.pipe_capacity));
    b.attach(lb, now);
    a.attach(la, now);
}

/// The [`Harness`] of [`Loopback`].
#[derive(Debug, Clone, Default)]
pub struct LoopbackHarness {
    /// The configuration of every pair.
    pub config: LoopbackConfig,
    pairs: u64,
}

impl LoopbackHarness {
    /// A harness making pairs with `config`.
    pub fn new(config: LoopbackConfig) -> LoopbackHarness {
        LoopbackHarness { config, pairs: 0 }
    }
}

impl Harness for LoopbackHarness {
    type T = Loopback;

    fn pair(&mut self, now: Nanos) -> (Loopback, Loopback) {
        self.pairs += 1;
        let cfg =
            LoopbackConfig { seed: self.config.seed ^ self.pairs.wrapping_mul(0x2545_F491), ..self.config.clone() };
        let (mut a, mut b) = Loopback::pair(&cfg);
        connect(&mut a, &mut b, now);
        (a, b)
    }

    fn cut(&mut self, a: &mut Loopback, _b: &mut Loopback) {
        a.cut();
    }

    fn reconnect(&mut self, a: &mut Loopback, b: &mut Loopback, now: Nanos) {
        connect(a, b, now);
    }

    fn timeout(&self) -> Nanos {
        self.config.session.timeout
    }

    fn heartbeat_interval(&self) -> Nanos {
        self.config.session.heartbeat_interval
    }

    /// Enough rounds to move the largest frame through the narrowest delivery (a
    /// read takes 1 to 8 chunks of 1 to `max_chunk` bytes per poll).
    fn max_rounds(&self) -> usize {
        let frame = self.config.max_payload.min(self.config.queue_capacity);
        2_000 + 2 * frame / self.config.max_chunk.clamp(1, 1 << 20)
    }
}
