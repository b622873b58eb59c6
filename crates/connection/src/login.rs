//! The logins of both sides over a byte stream: the client's blocking exchange, the
//! server's acceptance of a request it has read; both end in the engine's
//! `after_login` and in positioning the queue for the medium the login chose.

use crate::connection::{ring_reason, storage, Connection};
use crate::error::ConnectError;
use crate::files::LostState;
use tcpshm_persist::{EpochChange, ResetInfo, SessionWord};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::encode::encode_control;
use tcpshm_proto::frame::frame_len;
use tcpshm_proto::handshake::{
    client_verdict, counted_numbers, lost_state_text, server_verdict, Epoch, PeerLogin, Refusal, ServerRules,
};
use tcpshm_proto::login::{LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind, MAX_REPLY_LEN};
use tcpshm_proto::session::SeqMismatch;
use tcpshm_proto::{CloseReason, Control, Decoded, FrameKind, Name, Nanos, ProtocolError};
use tcpshm_transport_shm::{Capacities, Rings, ShmDir, ShmFile, Side};
use tcpshm_transport_tcp::io::write_now;
use tcpshm_transport_tcp::{exchange, ByteStream};

/// What a client's successful login did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The server's name (the session's epoch).
    pub server: Name,
    /// The transport carrying the messages.
    pub transport: TransportKind,
    /// The server's name differs from the one this session last logged in to: the old
    /// session was dropped — its queued messages with it, counted in `dropped`, in
    /// the store and in the rings — and a fresh one started. This is the "server
    /// renamed for a new trading day" rule.
    pub reset: Option<ResetInfo>,
    /// Messages queued on this side that leave (again) from the server's consumed
    /// count on.
    pub to_resend: u64,
}

impl<S: ByteStream> Connection<S> {
    /// This side's numbers for a login, from the store and the rings; ends a live link
    /// and drops what the stream delivered but the user did not pop.
    fn begin_login(&mut self) -> Result<(SessionNumbers, u32), CloseReason> {
        if self.stream.is_some() {
            self.fail(CloseReason::Replaced, true);
        }
        self.reset_link();
        self.publish_staged()?;
        if let Some(r) = &mut self.rings {
            let seq = self.session.seq_mut();
            seq.restore_acked(r.tx.peer_consumed());
            seq.restore_consumed(r.rx.consumed());
            let held = r.rx.end().map_err(|e| ring_reason(&e))?.unwrap_or(0);
            seq.set_seen(held);
        }
        self.checkpoint();
        let largest = self.largest_queued()?;
        Ok((self.session.login_numbers(), largest))
    }

    /// The shared-memory directory of this connection's configuration.
    fn shm_dir(&self) -> Result<ShmDir, ConnectError> {
        Ok(ShmDir::new(self.cfg.shm.dir.clone(), &self.cfg.shm.prefix)?)
    }

    /// Logs in as a client over `stream`, asking for `transport`, with `credential`
    /// for the server's login handler, at clock `now`; then the session runs on
    /// `stream` (made non-blocking).
    ///
    /// `stream` must be connected and, for the exchange, blocking with read and write
    /// timeouts set (the library reads no clock: the kernel bounds each wait); a
    /// stream that returns `WouldBlock` makes the exchange fail with a timeout. The
    /// bytes the server sends right after its reply stay in the session's receive
    /// buffer.
    ///
    /// On success the session resumes: each side resends what the other has not
    /// consumed, over the stream (TCP) or through the session's shared-memory rings
    /// (SHM: the file the server names is mapped; messages queued elsewhere are moved
    /// into it). A server with another name than last time resets the session
    /// ([`Connected::reset`]). On error nothing is lost and the link stays down.
    pub fn login_client(
        &mut self,
        mut stream: S,
        transport: TransportKind,
        credential: &[u8],
        now: Nanos,
    ) -> Result<Connected, ConnectError> {
        self.now = now;
        let (numbers, largest_queued) = self.begin_login().map_err(close_to_connect)?;
        let last_server = self.store.epoch();
        let req = LoginRequest {
            client: self.store.local(),
            last_server,
            transport,
            numbers,
            limits: self.limits(),
            largest_queued,
            credential,
        };
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_control(&mut buf, &Control::Login(req), numbers.send_range.next(), numbers.consumed)?;
        exchange::send_blocking(&mut stream, &buf[..n])?;
        let f = exchange::recv_blocking(&mut stream, &mut self.reader)?;
        if f.kind != FrameKind::LoginReply {
            self.reader.clear();
            return Err(ConnectError::Protocol(ProtocolError::UnexpectedControl {
                msg_type: f.header.msg_type,
                context: "where the login reply was expected",
            }));
        }
        let verdict = match tcpshm_proto::decode(self.reader.frame_bytes(&f), u32::MAX) {
            Ok(Decoded::Frame { frame, .. }) => match frame.control() {
                Ok(Some(Control::LoginReply(r))) => Ok(client_verdict(&r, last_server)),
                Ok(_) => Err(ProtocolError::UnexpectedControl { msg_type: f.header.msg_type, context: "login" }),
                Err(e) => Err(e),
            },
            Ok(Decoded::Need(_)) => Err(ProtocolError::UnexpectedControl { msg_type: 0, context: "login" }),
            Err(e) => Err(e.into()),
        };
        self.reader.release_control(&f);
        let accepted = match verdict {
            Ok(Ok(a)) => a,
            Ok(Err(refusal)) => {
                self.reader.clear();
                self.session.refused(CloseReason::LoginRefused { status: refusal.status, text: refusal.text.clone() });
                return Err(refusal.into());
            }
            Err(e) => {
                self.reader.clear();
                return Err(e.into());
            }
        };
        let result = self.complete_client_login(stream, transport, accepted, now);
        if result.is_err() {
            self.reset_link();
        }
        result
    }

    fn complete_client_login(
        &mut self,
        mut stream: S,
        transport: TransportKind,
        accepted: tcpshm_proto::handshake::Accepted,
        now: Nanos,
    ) -> Result<Connected, ConnectError> {
        let server = accepted.server;
        let reset = match accepted.epoch {
            Epoch::Same => None,
            Epoch::First => {
                self.store.switch_epoch(server, now)?;
                None
            }
            Epoch::Renamed { .. } => Some(self.reset_epoch(server, now)?),
        };
        if transport == TransportKind::Shm {
            self.map_server_rings(server, accepted.shm_file_id)?;
        }
        let peer = accepted.peer;
        let resume = match self.session.after_login(&peer.numbers, peer.limits, now) {
            Ok(r) => r,
            Err(m) => {
                // The server accepted; tell it why this side does not go on.
                let reason = CloseReason::Protocol(ProtocolError::SeqMismatch(m));
                self.goodbye(&mut stream, &reason);
                self.session.refused(reason);
                return Err(ConnectError::SeqMismatch(Box::new(LostState {
                    mismatch: m,
                    files: self.files(Side::Client),
                    side: Side::Client,
                })));
            }
        };
        stream.set_nonblocking().map_err(|source| ConnectError::Io { op: "set non-blocking", source })?;
        self.link_up(stream, transport, &peer, now).map_err(close_to_connect)?;
        Ok(Connected { server, transport, reset, to_resend: resume.resend })
    }

    /// The server has another name than this session's epoch: drop the old session
    /// (store and rings) and start a fresh one with the new server.
    fn reset_epoch(&mut self, server: Name, now: Nanos) -> Result<ResetInfo, ConnectError> {
        let mut dropped_in_rings = 0;
        if let Some(r) = self.rings.take() {
            let acked = r.tx.peer_consumed();
            r.tx.for_each(|seq, _| {
                dropped_in_rings += u64::from(seq >= acked);
                true
            })?;
            let (old_server, client) = (self.store.epoch(), self.store.local());
            drop(r);
            // The old server's file belongs to a dead epoch; removing it needs both
            // sides' locks, so a live old server keeps it (a `gc` removes it later).
            if let (Some(old), Ok(dir)) = (old_server, self.shm_dir()) {
                let _ = dir.remove(&old, &client);
            }
        }
        let mut info = match self.store.switch_epoch(server, now)? {
            EpochChange::Reset(info) => info,
            _ => ResetInfo { previous_epoch: None, dropped: 0, previous_next_seq: 0, previous_consumed: 0 },
        };
        info.dropped += dropped_in_rings;
        self.session.reset(self.store.capacity() as u64);
        self.resume_numbers()?;
        Ok(info)
    }

    /// Maps the server's shared-memory file (the one the reply names) if this side
    /// does not map it yet. Messages this side had queued in an older file of the
    /// session are moved into the store first (they keep their numbers).
    fn map_server_rings(&mut self, server: Name, file_id: u64) -> Result<(), ConnectError> {
        if self.rings.as_ref().is_some_and(|r| r.file_id() == file_id) {
            return Ok(());
        }
        if self.rings.is_some() {
            self.checkpoint();
            let target = self.session.seq().next_seq();
            if !self.catch_up_store() {
                let held = self.store.next_seq();
                return Err(ConnectError::QueueTooSmall { count: target - held, what: "the session store" });
            }
            self.rings = None;
        }
        let dir = self.shm_dir()?;
        let file = ShmFile::open(&dir, &server, &self.store.local())?;
        if file.file_id() != file_id {
            // Replaced between the server's reply and our open: try again.
            return Err(ConnectError::Shm(tcpshm_transport_shm::ShmError::Unstable(file.path().to_path_buf())));
        }
        self.rings = Some(Rings::new(file));
        self.resume_numbers()?;
        // What the server's file holds beyond our consumed count arrived after the
        // reply (the server may push as soon as it accepted): it is not something this
        // side held when it advertised its numbers, so it does not count against them.
        self.session.seq_mut().set_seen(0);
        Ok(())
    }

    /// Brings the link up after a login: the stream is the data stream or the
    /// control stream, and the queue is positioned for the medium.
    pub(crate) fn link_up(
        &mut self,
        stream: S,
        medium: TransportKind,
        peer: &PeerLogin,
        now: Nanos,
    ) -> Result<(), CloseReason> {
        let peer_consumed = peer.numbers.consumed;
        self.store.set_session_word(SessionWord::PeerMaxMessage, peer.limits.max_message.into());
        self.store.set_session_word(SessionWord::PeerQueueCapacity, peer.limits.queue_capacity);
        // What a server's retention policy measures an old session's age from.
        self.store.set_session_word(SessionWord::LastLogin, now);
        self.now = now;
        self.medium = medium;
        self.ring_fault = None;
        self.ring_fronted = None;
        self.close_handle.clear();
        self.reader.set_backlog(peer.limits.queue_capacity);
        self.tx = Default::default();
        if peer_consumed > self.store.first_unacked() {
            self.store.ack_beyond(peer_consumed).map_err(storage)?;
        }
        self.stream = Some(stream);
        self.read_more = false;
        self.read_to_end = false;
        match (medium, &mut self.rings) {
            (TransportKind::Shm, Some(r)) => {
                r.rx.raise_consumed(self.session.seq().consumed());
                self.queue.ring_next = self.queue.ring_next.max(peer_consumed);
                self.session.on_sent(self.queue.ring_next - peer_consumed);
                self.queue.drain = None;
                self.drain_to_ring();
            }
            _ => {
                self.catch_up_store();
                let start = peer_consumed.clamp(self.store.first_unacked(), self.store.next_seq());
                self.tx.cursor = Some(self.store.cursor_at(start).map_err(storage)?);
            }
        }
        self.update_route();
        self.next_check = now;
        // The peer's limit as this login told it binds producer handles from now on.
        self.offer_producer_limit();
        Ok(())
    }

    /// Accepts a client's login as the server (`rules` say who this server is), over
    /// `stream` (non-blocking, positioned right after the request `req`), at clock
    /// `now`: checks the request against this session ([`server_verdict`]), maps (or
    /// creates) the session's shared-memory file for a shared-memory login, writes the
    /// reply and brings the link up. A refusal is returned for the caller to write
    /// (with [`write_refusal`]); the link stays down and nothing is lost.
    pub fn accept(
        &mut self,
        mut stream: S,
        req: &LoginRequest<'_>,
        rules: &ServerRules,
        now: Nanos,
    ) -> Result<(), (Refusal, S)> {
        self.now = now;
        let mut created = false;
        if req.transport == TransportKind::Shm && rules.shm {
            match self.server_rings(rules.name, req.client) {
                Ok(c) => created = c,
                Err(e) => return Err((Refusal { status: LoginStatus::StorageError, text: e.to_string() }, stream)),
            }
        }
        let refused = |me: &mut Self, r: Refusal, stream: S| {
            if created {
                // A refused first login leaves no file behind.
                me.rings = None;
                if let Ok(dir) = me.shm_dir() {
                    let _ = dir.remove(&rules.name, &req.client);
                }
                let _ = me.resume_numbers();
            }
            Err((r, stream))
        };
        let (ours, largest) = match self.begin_login() {
            Ok(x) => x,
            Err(reason) => {
                let r = Refusal { status: LoginStatus::StorageError, text: reason.to_string() };
                return refused(self, r, stream);
            }
        };
        let peer = match server_verdict(req, rules, &self.session, largest) {
            Ok(p) => p,
            Err(mut r) => {
                if r.status == LoginStatus::SeqMismatch {
                    if let Err(m) = self.session.check_login(&counted_numbers(req, rules)) {
                        r.text = self.lost_state_refusal(&m, req.client, rules.name, created);
                    }
                }
                return refused(self, r, stream);
            }
        };
        if let Err(m) = self.session.after_login(&peer.numbers, peer.limits, now) {
            let text = self.lost_state_refusal(&m, req.client, rules.name, created);
            return refused(self, Refusal { status: LoginStatus::SeqMismatch, text }, stream);
        }
        let shm_file_id = match (req.transport, &self.rings) {
            (TransportKind::Shm, Some(r)) => {
                r.bump_epoch();
                r.file_id()
            }
            _ => 0,
        };
        let reply = LoginReply {
            status: LoginStatus::Ok,
            server: rules.name,
            numbers: ours,
            limits: self.limits(),
            shm_file_id,
            text: "",
        };
        let mut buf = [0u8; frame_len(MAX_REPLY_LEN)];
        let Ok(n) = encode_control(&mut buf, &Control::LoginReply(reply), ours.send_range.next(), ours.consumed) else {
            self.session.close(CloseReason::NotConnected);
            return Err((Refusal { status: LoginStatus::Malformed, text: "reply does not encode".into() }, stream));
        };
        let _ = stream.set_nonblocking();
        // The socket is fresh: the reply fits its buffer; what does not go out now
        // leaves first at the next write.
        let written = write_now(&mut stream, &buf[..n]).unwrap_or(0);
        if written < n && !self.ctrl.stage(&buf[written..n]) {
            self.session.close(CloseReason::NotConnected);
            return Err((
                Refusal { status: LoginStatus::ServerFull, text: "reply could not be written".into() },
                stream,
            ));
        }
        if let Err(reason) = self.link_up(stream, req.transport, &peer, now) {
            self.fail(reason, true);
        }
        Ok(())
    }

    /// The server side's rings of this session: mapped already, or opened, or
    /// created with the configured capacity. Returns whether this call created the
    /// file.
    fn server_rings(&mut self, server: Name, client: Name) -> Result<bool, ConnectError> {
        if self.rings.is_some() {
            return Ok(false);
        }
        let dir = self.shm_dir()?;
        let existed = dir.path(&server, &client).exists();
        let file = ShmFile::create_or_open(&dir, &server, &client, Capacities::symmetric(self.cfg.shm.ring_bytes))?;
        self.rings = Some(Rings::new(file));
        self.resume_numbers()?;
        Ok(!existed)
    }
}

impl<S: ByteStream> Connection<S> {
    /// The refusal text of a lost state found by this server: who lost it, the
    /// server's files and the command that resets the session, then the detail. A
    /// shared-memory file this login created is not named (the refusal removes it).
    fn lost_state_refusal(&self, m: &SeqMismatch, client: Name, server: Name, created_shm: bool) -> String {
        let mut files = self.files(Side::Server);
        if created_shm {
            files.shm = None;
        }
        lost_state_text(m, &client, &server, &files.remedy(Side::Server))
    }
}

/// Writes a login refusal on a fresh non-blocking stream, best effort (the stream is
/// dropped right after).
///
/// ```
/// use tcpshm_connection::write_refusal;
/// use tcpshm_proto::handshake::Refusal;
/// use tcpshm_proto::login::LoginStatus;
/// let mut out = Vec::new();
/// write_refusal(&mut out, "srv".parse().unwrap(), &Refusal { status: LoginStatus::ServerFull, text: "full".into() });
/// assert!(out.len() > 68);
/// ```
pub fn write_refusal<W: std::io::Write>(stream: &mut W, server: Name, refusal: &Refusal) {
    let reply = LoginReply::refusal(refusal.status, server, &refusal.text);
    let mut buf = [0u8; frame_len(MAX_REPLY_LEN)];
    if let Ok(n) = encode_control(&mut buf, &Control::LoginReply(reply), 0, 0) {
        let _ = write_now(stream, &buf[..n]);
    }
}

fn close_to_connect(reason: CloseReason) -> ConnectError {
    match reason {
        CloseReason::Protocol(p) => ConnectError::Protocol(p),
        CloseReason::Io { op, errno } => ConnectError::Io { op, source: std::io::Error::from_raw_os_error(errno) },
        other => ConnectError::Failed(other),
    }
}
