//! `ShmControl`: the control part of a connection — the control stream (heartbeats,
//! timeout, close frames) and the check of the peer's lock.

use crate::config::ShmConfig;
use crate::error::Side;
use crate::file::FileInner;
use crate::state::{CloseHandle, Shared, View};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tcpshm_proto::close::{self, CloseFrame, TextBuf};
use tcpshm_proto::frame::{frame_len, HEADER_LEN};
use tcpshm_proto::{decode, encode, CloseReason, Control, Decoded, FrameKind, Nanos, ProtocolError};

/// The largest frame the control channel carries: a close frame with its longest text.
const MAX_FRAME_LEN: u32 = (HEADER_LEN + close::MAX_PAYLOAD_LEN) as u32;
/// Receive buffer: one largest frame, padded (a full buffer always holds a frame).
const RBUF: usize = frame_len(close::MAX_PAYLOAD_LEN);
/// Send buffer: a close frame behind a partly written heartbeat.
const WBUF: usize = 2 * RBUF;
/// Reads per control check, so a peer flooding the control stream cannot hold a poll.
const MAX_READS: usize = 8;
/// Reads after a failed write, looking for the peer's last words (a close frame, the
/// end of the stream) behind a backlog of heartbeats.
const MAX_DRAIN_READS: usize = 4096;

/// The control part of a shared-memory connection: owns the control stream (the login
/// socket, kept open) and watches the peer. `Send` when `S` is. Its
/// [`poll`](Self::poll) does, at most once per [`ShmConfig::check_interval`]:
///
/// * reads the stream: HEARTBEAT and ACK frames are liveness, a CLOSE frame closes with
///   [`CloseReason::RemoteRequested`], end of stream with [`CloseReason::RemoteClosed`]
///   (or [`CloseReason::PeerDied`] if the peer's lock is gone too), a read error with
///   [`CloseReason::Io`], anything else (a user or login frame, a malformed frame)
///   with [`CloseReason::Protocol`];
/// * checks the peer's lock on the file (one `fcntl`): a peer seen attached in this
///   session whose lock is released died (or dropped its connection):
///   [`CloseReason::PeerDied`], without waiting for the timeout;
/// * closes with [`CloseReason::Timeout`] when nothing arrived for longer than
///   [`ShmConfig::timeout`] (the clock starts at the first poll of a session);
/// * sends a HEARTBEAT frame when nothing was sent for [`ShmConfig::heartbeat_interval`].
///
/// When the session closes for a reason of its own (requested, timeout, protocol,
/// corrupt ring), it sends a CLOSE frame with the reason (best effort) and drops the
/// stream. Heartbeat and ack frames carry `seq = ack = 0`: on shared memory the ring
/// indices are the acknowledgements.
///
/// The stream must be non-blocking (`WouldBlock` means "nothing now"), e.g. a
/// `mio::net::TcpStream`, or a `std` `TcpStream`/`UnixStream` after
/// `set_nonblocking(true)`.
pub struct ShmControl<S> {
    stream: Option<S>,
    file: Arc<FileInner>,
    shared: Arc<Shared>,
    view: View,
    cfg: ShmConfig,
    rbuf: [u8; RBUF],
    rlen: usize,
    wbuf: [u8; WBUF],
    wstart: usize,
    wend: usize,
    last_recv: Option<Nanos>,
    last_send: Option<Nanos>,
    next_check: Nanos,
    peer_seen: bool,
}

impl<S> std::fmt::Debug for ShmControl<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmControl")
            .field("path", &self.file.path)
            .field("side", &self.file.side)
            .field("has_stream", &self.stream.is_some())
            .field("connected", &self.view.is_connected())
            .field("reason", &self.view.reason())
            .finish_non_exhaustive()
    }
}

/// Whether a side that closes for `reason` tells the peer (reasons that come from the
/// peer or from a dead stream are not echoed).
fn tells_peer(reason: &CloseReason) -> bool {
    !matches!(
        reason,
        CloseReason::RemoteClosed | CloseReason::RemoteRequested(_) | CloseReason::PeerDied | CloseReason::Io { .. }
    )
}

impl<S: Read + Write> ShmControl<S> {
    pub(crate) fn new(stream: S, file: Arc<FileInner>, shared: Arc<Shared>, cfg: ShmConfig) -> ShmControl<S> {
        Self::build(Some(stream), file, shared, cfg)
    }

    fn build(stream: Option<S>, file: Arc<FileInner>, shared: Arc<Shared>, cfg: ShmConfig) -> ShmControl<S> {
        let view = View::new(&shared);
        ShmControl {
            stream,
            file,
            shared,
            view,
            cfg,
            rbuf: [0; RBUF],
            rlen: 0,
            wbuf: [0; WBUF],
            wstart: 0,
            wend: 0,
            last_recv: None,
            last_send: None,
            next_check: 0,
            peer_seen: false,
        }
    }

    /// A control part with no stream yet: the session starts closed
    /// ([`CloseReason::NotConnected`]) until [`reattach`](Self::reattach).
    pub(crate) fn offline(file: Arc<FileInner>, shared: Arc<Shared>, cfg: ShmConfig) -> ShmControl<S> {
        shared.close(CloseReason::NotConnected);
        Self::build(None, file, shared, cfg)
    }

    /// Releases this side's lock on the file for the duration of a login exchange
    /// (the client calls it before sending its login request): the server refuses a
    /// login while the client side's lock is held by a live process, and the process
    /// that is logging in again must not count as that process. The mapping stays, so
    /// nothing queued is touched; retake the lock with [`relock`](Self::relock).
    pub fn unlock_for_login(&mut self) -> std::io::Result<()> {
        crate::lock::unlock(self.file.file.as_fd(), self.file.side.lock_byte())
    }

    /// Retakes this side's lock after a login exchange; [`ShmError::Busy`](crate::ShmError::Busy) if another
    /// process took it meanwhile (then this process must not use the rings).
    pub fn relock(&mut self) -> Result<(), crate::ShmError> {
        match crate::lock::try_lock(self.file.file.as_fd(), self.file.side.lock_byte()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(crate::ShmError::Busy { path: self.file.path.clone(), side: self.file.side }),
            Err(e) => Err(crate::ShmError::Io { op: "lock", path: self.file.path.clone(), source: e }),
        }
    }

    /// Does the control work that is due (see the type's docs). Returns whether the
    /// session is connected afterwards.
    pub fn poll(&mut self, now: Nanos) -> bool {
        self.shared.take_request();
        self.view.refresh(&self.shared);
        if !self.view.is_connected() {
            // Closed by the data part or a close handle: tell the peer, drop the stream.
            self.teardown();
            return false;
        }
        if self.stream.is_none() {
            return false;
        }
        if self.last_recv.is_none() {
            self.last_recv = Some(now);
        }
        // Not due yet — unless the clock went backwards past a whole interval (a new
        // clock): then do the work rather than wait for the old one's time.
        if now < self.next_check && self.next_check - now <= self.cfg.check_interval {
            return true;
        }
        self.next_check = now.saturating_add(self.cfg.check_interval);
        match self.check(now) {
            Ok(()) => true,
            Err(reason) => {
                self.close(reason);
                false
            }
        }
    }

    fn check(&mut self, now: Nanos) -> Result<(), CloseReason> {
        self.read(now, MAX_READS)?;
        let alive = self.file.peer_alive().map_err(|e| CloseReason::io("fcntl(F_OFD_GETLK)", &e))?;
        if alive {
            self.peer_seen = true;
        } else if self.peer_seen {
            return Err(CloseReason::PeerDied);
        }
        let silent = now.saturating_sub(self.last_recv.unwrap_or(now));
        if silent > self.cfg.timeout {
            return Err(CloseReason::Timeout { silent_ns: silent });
        }
        let due = self.last_send.is_none_or(|t| now.saturating_sub(t) >= self.cfg.heartbeat_interval);
        if due && self.wstart == self.wend {
            self.append(&encode::heartbeat(0, 0));
            self.last_send = Some(now);
        }
        // A write that fails because the peer just closed: what it sent last (a close
        // frame, the end of the stream) is the better reason, if it is there.
        self.flush().or_else(|e| self.read(now, MAX_DRAIN_READS).and(Err(e)))
    }

    /// Reads what the stream has (at most `max_reads` reads) and handles the frames.
    fn read(&mut self, now: Nanos, max_reads: usize) -> Result<(), CloseReason> {
        for _ in 0..max_reads {
            let Some(stream) = self.stream.as_mut() else { return Ok(()) };
            match stream.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => return Err(self.gone(CloseReason::RemoteClosed)),
                Ok(n) => {
                    self.rlen += n;
                    self.last_recv = Some(now);
                    self.frames()?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.gone(CloseReason::io("read", &e))),
            }
        }
        Ok(())
    }

    /// The reason for a stream that ended or failed: [`CloseReason::PeerDied`] if the
    /// peer was attached in this session and its lock is gone, else `otherwise`.
    fn gone(&self, otherwise: CloseReason) -> CloseReason {
        if self.peer_seen && !self.file.peer_alive().unwrap_or(true) {
            CloseReason::PeerDied
        } else {
            otherwise
        }
    }

    /// Handles the whole frames at the start of the receive buffer.
    fn frames(&mut self) -> Result<(), CloseReason> {
        let mut at = 0;
        loop {
            let (frame, consumed) = match decode(&self.rbuf[at..self.rlen], MAX_FRAME_LEN) {
                Ok(Decoded::Need(_)) => break,
                Ok(Decoded::Frame { frame, consumed }) => (frame, consumed),
                Err(e) => return Err(CloseReason::Protocol(e.into())),
            };
            match frame.kind() {
                FrameKind::Heartbeat | FrameKind::Ack => {}
                FrameKind::Close => {
                    if let Some(Control::Close(c)) = frame.control()? {
                        return Err(c.to_reason());
                    }
                }
                FrameKind::User => {
                    return Err(CloseReason::Protocol(ProtocolError::UnexpectedControl {
                        msg_type: frame.msg_type(),
                        context: "(a user message) on a shared-memory control channel",
                    }))
                }
                FrameKind::Login | FrameKind::LoginReply => {
                    return Err(CloseReason::Protocol(ProtocolError::UnexpectedControl {
                        msg_type: frame.msg_type(),
                        context: "on a shared-memory control channel after the login",
                    }))
                }
            }
            at += consumed;
        }
        self.rbuf.copy_within(at..self.rlen, 0);
        self.rlen -= at;
        Ok(())
    }

    /// Queues bytes for the stream; dropped if there is no room (only a heartbeat
    /// behind a backlog, or a close frame behind a full one, can be dropped).
    fn append(&mut self, bytes: &[u8]) {
        if WBUF - self.wend < bytes.len() {
            self.wbuf.copy_within(self.wstart..self.wend, 0);
            self.wend -= self.wstart;
            self.wstart = 0;
        }
        if WBUF - self.wend >= bytes.len() {
            self.wbuf[self.wend..self.wend + bytes.len()].copy_from_slice(bytes);
            self.wend += bytes.len();
        }
    }

    /// Writes what is queued, as far as the stream takes it now.
    fn flush(&mut self) -> Result<(), CloseReason> {
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        while self.wstart < self.wend {
            match stream.write(&self.wbuf[self.wstart..self.wend]) {
                Ok(0) => return Err(CloseReason::io("write", &ErrorKind::WriteZero.into())),
                Ok(n) => self.wstart += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.gone(CloseReason::io("write", &e))),
            }
        }
        if self.wstart == self.wend {
            self.wstart = 0;
            self.wend = 0;
            match stream.flush() {
                Err(e) if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::Interrupted => {
                    return Err(CloseReason::io("flush", &e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// After a close: sends a close frame if the reason is ours to tell (one
    /// non-blocking attempt), then drops the stream.
    fn teardown(&mut self) {
        if self.stream.is_none() {
            return;
        }
        if let Some(reason) = self.view.reason().filter(|r| tells_peer(r)) {
            let mut text = TextBuf::new();
            let frame = Control::Close(CloseFrame::for_reason(reason, &mut text));
            let mut buf = [0u8; RBUF];
            if let Ok(n) = encode::encode_control(&mut buf, &frame, 0, 0) {
                self.append(&buf[..n]);
                let _ = self.flush();
            }
        }
        self.stream = None;
        self.rlen = 0;
        self.wstart = 0;
        self.wend = 0;
    }

    /// Closes the session with `reason` (unless already closed: the first reason
    /// wins), tells the peer when the reason is ours, drops the stream. The rings
    /// and the file stay; [`reattach`](Self::reattach) starts a new session.
    pub fn close(&mut self, reason: CloseReason) {
        self.shared.close(reason);
        self.view.refresh(&self.shared);
        self.teardown();
    }

    /// Starts a new session on a new control stream (after the peer logged in again):
    /// connected, timers restarted at the next poll. The server side adds 1 to the
    /// file's session epoch. A previous stream is dropped without a close frame. If a
    /// ring was found corrupt, the new session is closed at once with that reason
    /// (the file needs [`ShmFile::reset`](crate::ShmFile::reset)).
    pub fn reattach(&mut self, stream: S) {
        self.stream = Some(stream);
        self.rlen = 0;
        self.wstart = 0;
        self.wend = 0;
        self.last_recv = None;
        self.last_send = None;
        self.next_check = 0;
        self.peer_seen = false;
        if self.file.side == Side::Server {
            self.file.control().epoch().fetch_add(1, Ordering::AcqRel);
        }
        self.shared.reopen();
        self.view.refresh(&self.shared);
        if !self.view.is_connected() {
            self.teardown();
        }
    }

    /// Whether the session is connected (as of this part's last poll or close).
    pub fn is_connected(&self) -> bool {
        self.view.is_connected()
    }

    /// Why the session closed (as of this part's last poll or close).
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.view.reason()
    }

    /// A handle that requests a close from any thread.
    pub fn close_handle(&self) -> CloseHandle {
        CloseHandle { shared: self.shared.clone() }
    }

    /// The control stream, while the session has one (e.g. to register it with a
    /// `mio::Poll`).
    pub fn stream(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    /// The control stream, mutably.
    pub fn stream_mut(&mut self) -> Option<&mut S> {
        self.stream.as_mut()
    }

    /// Whether the peer's lock on the file is held now (one system call).
    pub fn peer_alive(&self) -> std::io::Result<bool> {
        self.file.peer_alive()
    }

    /// The session epoch in the file.
    pub fn epoch(&self) -> u64 {
        self.file.control().epoch().load(Ordering::Acquire)
    }
}
