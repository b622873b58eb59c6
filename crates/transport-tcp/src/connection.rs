//! The established-connection engine: state, lifecycle (login numbers, attach,
//! detach, close), the readiness-driven pieces and the [`Transport`] implementation.
//! The write path is in `send.rs`, the read path in `recv.rs`.

use crate::close_handle::CloseHandle;
use crate::config::StreamConfig;
use crate::error::{AttachError, Fail};
use crate::login::{LoginInfo, PeerLogin};
use crate::recv::RxState;
use crate::send::TxState;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use tcpshm_persist::{Store, StoreError};
use tcpshm_proto::decode::frame_limit;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::session::{Resume, SeqMismatch, SeqRange, Session};
use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};

/// What a [`StreamConnection`] needs from its byte stream: non-blocking `Read` and
/// `Write` (`WouldBlock` when nothing can be done now) on a socket file descriptor
/// (for `shutdown` and the count of unread bytes). Implemented for every such type,
/// among them `mio::net::TcpStream` and `mio::net::UnixStream`.
pub trait ByteStream: Read + Write + AsFd {}

impl<T: Read + Write + AsFd> ByteStream for T {}

/// One persistent connection over a non-blocking byte stream: the send queue and
/// consumed count in a [`Store`], the sequence/ack bookkeeping in a [`Session`], the
/// stream while linked.
///
/// Sending is zero-copy from the store: [`alloc`](Transport::alloc) hands out the
/// bytes inside the mapped send queue, [`push`](Transport::push) publishes the frame
/// and writes what the socket takes now, straight from the mapping; a partial write
/// resumes at the byte where it stopped (a full socket is backpressure, never a
/// disconnect). Receiving reads into one reusable buffer; [`front`](Transport::front)
/// borrows the next message there and [`pop`](Transport::pop) consumes it, recording
/// the consumed count in the store (the commit point).
///
/// Without a stream (before [`attach`](Self::attach), after a close) pushes still
/// queue; they leave after the next attach, which resends everything the peer has
/// not consumed.
///
/// Drive it with [`poll`](Transport::poll) (everything), or from a readiness loop
/// (many mostly idle connections on one thread, e.g. with `mio` edge-triggered
/// `READABLE | WRITABLE` registration of [`stream`](Self::stream)):
///
/// * readable event: [`on_readable`](Self::on_readable), then `front`/`pop` what
///   arrived; while [`read_more`](Self::read_more) is true the read stopped early
///   (budget, or a full buffer until the user pops): call it again without an event;
/// * writable event: [`on_writable`](Self::on_writable); while
///   [`wants_write`](Self::wants_write) is true and
///   [`write_blocked`](Self::write_blocked) false, the budget stopped it: call again;
/// * now and then (e.g. every few milliseconds): [`check_timers`](Self::check_timers)
///   for heartbeats, standalone acks, the timeout and close requests; no system call
///   when nothing is due.
///
/// `push` and `pop` write at once what is due (the frame, or an ack that became due),
/// with the clock of the last call that was given one.
///
/// Limits, by design: the two sides must agree on the largest message (a frame above
/// [`StreamConfig::max_payload`] closes the link with a protocol error; the login does
/// not carry it). While the user does not pop and the receive buffer is full, nothing
/// more is read, so the peer is judged alive as long as bytes wait in the socket: a
/// dead peer is noticed when the user pops again.
///
/// ```
/// use tcpshm_persist::{Options, Store};
/// use tcpshm_proto::{Name, Transport};
/// use tcpshm_transport_tcp::{PeerLogin, StreamConfig, UnixConnection};
///
/// # let dir = std::env::temp_dir().join(format!("tcpshm-tcp-doc-conn-{}", std::process::id()));
/// let (c, s) = (Name::new("client").unwrap(), Name::new("server").unwrap());
/// let open = |me, peer| Store::open(&dir, me, peer, &Options::new(1 << 16), None, 0).unwrap().0;
/// let mut a = UnixConnection::new(open(c, s), StreamConfig::default());
/// let mut b = UnixConnection::new(open(s, c), StreamConfig::default());
///
/// // The login exchange, done in-process: each side takes the other's numbers.
/// let (la, lb) = (a.login_state(), b.login_state());
/// let (sa, sb) = mio::net::UnixStream::pair().unwrap();
/// a.attach(sa, PeerLogin::from(lb), 0).unwrap();
/// b.attach(sb, PeerLogin::from(la), 0).unwrap();
///
/// a.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// a.push(1).unwrap();
/// while b.front().is_none() {
///     a.poll(1);
///     b.poll(1);
/// }
/// assert_eq!(b.front().unwrap().payload, b"hello");
/// b.pop();
/// # drop((a, b)); std::fs::remove_dir_all(&dir).ok();
/// ```
pub struct StreamConnection<S> {
    pub(crate) store: Store,
    pub(crate) session: Session,
    pub(crate) cfg: StreamConfig,
    pub(crate) stream: Option<S>,
    /// Largest message we send (the configured maximum, capped by the store).
    pub(crate) max_payload: usize,
    /// Largest frame we accept (header + payload), for the decoder.
    pub(crate) max_frame: u32,
    pub(crate) tx: TxState,
    pub(crate) rx: RxState,
    pub(crate) counters: Counters,
    pub(crate) reason: Option<CloseReason>,
    pub(crate) close_handle: CloseHandle,
    /// The last `now` the caller gave (a `push` writes at once and needs a time).
    pub(crate) now: Nanos,
}

impl<S> core::fmt::Debug for StreamConnection<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamConnection")
            .field("local", &self.store.local())
            .field("remote", &self.store.remote())
            .field("connected", &self.stream.is_some())
            .field("reason", &self.reason)
            .field("session", &self.session)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<S: ByteStream> StreamConnection<S> {
    /// A connection over `store` (its queued messages and consumed count are resumed),
    /// not linked yet: pushes queue, nothing is received until [`attach`](Self::attach).
    pub fn new(store: Store, cfg: StreamConfig) -> StreamConnection<S> {
        let send_range = SeqRange::new(store.first_unacked(), store.next_seq())
            .expect("a store's first unacknowledged seq never passes its next seq");
        let session = Session::resume(cfg.session, send_range, store.consumed());
        let max_payload = cfg.max_payload.min(store.max_payload());
        let max_frame = frame_limit(cfg.max_payload);
        let rx = RxState::new(cfg.recv_buffer, max_frame);
        StreamConnection {
            store,
            session,
            cfg,
            stream: None,
            max_payload,
            max_frame,
            tx: TxState::new(),
            rx,
            counters: Counters::default(),
            reason: None,
            close_handle: CloseHandle::default(),
            now: 0,
        }
    }

    // ---- login and link lifecycle -----------------------------------------------

    /// This side's login numbers, to put in the login request (client) or reply
    /// (server). Call it right before the exchange: it ends a live link first
    /// ([`CloseReason::Replaced`]) and drops the messages received but not popped
    /// (the peer resends them from the consumed count advertised here), so nothing
    /// can be popped until [`attach`](Self::attach) and the numbers stay true.
    pub fn login_state(&mut self) -> LoginInfo {
        if self.stream.is_some() {
            self.fail(Fail { reason: CloseReason::Replaced, tell_peer: true });
        }
        if let Err(e) = self.store.publish() {
            self.reason = Some(Fail::storage(&e).reason);
        }
        self.rx.clear();
        let mine = self.session.begin_login();
        LoginInfo {
            local: self.store.local(),
            remote: self.store.remote(),
            consumed: mine.consumed,
            send_range: mine.send_range,
            queue_capacity: self.store.capacity() as u64,
        }
    }

    /// Whether `peer`'s numbers fit ours (what [`attach`](Self::attach) would check),
    /// changing nothing: a server calls it before answering a login, to refuse with
    /// [`LoginStatus::SeqMismatch`](tcpshm_proto::login::LoginStatus::SeqMismatch) and
    /// the mismatch text while it still owns the stream.
    pub fn check_login(&self, peer: &PeerLogin) -> Result<Resume, SeqMismatch> {
        let mut s = self.session.clone();
        s.begin_login();
        s.after_login(peer.consumed, peer.send_range, 0)
    }

    /// Links the connection to `stream` after a successful login exchange, at clock
    /// `now`: checks the numbers ([`Session::after_login`]), drops the messages the
    /// peer consumed from the store, and positions the send queue at the peer's
    /// consumed count, from where everything queued is written again, in order (from
    /// the next `poll`/`on_writable`/`push`; [`Counters::resent`] counts them).
    ///
    /// `stream` must be positioned after the login exchange; it is made non-blocking
    /// here (one `fcntl`) if it was not. A live link is replaced (closed with
    /// [`CloseReason::Replaced`]). On error the stream is dropped and the connection
    /// stays down with the error as its close reason.
    pub fn attach(&mut self, stream: S, peer: PeerLogin, now: Nanos) -> Result<Resume, AttachError> {
        // A blocking stream would make a poll wait: the library never blocks.
        let _ = socket2::SockRef::from(&stream).set_nonblocking(true);
        if self.stream.is_some() {
            self.fail(Fail { reason: CloseReason::Replaced, tell_peer: true });
        }
        self.reset_link();
        self.now = now;
        if let Err(e) = self.store.publish() {
            self.reason = Some(Fail::storage(&e).reason);
            return Err(e.into());
        }
        let resume = match self.session.after_login(peer.consumed, peer.send_range, now) {
            Ok(r) => r,
            Err(m) => {
                self.reason = Some(CloseReason::Protocol(m.into()));
                return Err(m.into());
            }
        };
        let positioned = self.store.ack(peer.consumed).and_then(|_| self.store.cursor_at(peer.consumed));
        let cursor = match positioned {
            Ok(c) => c,
            Err(e) => {
                self.reason = Some(Fail::storage(&e).reason);
                return Err(e.into());
            }
        };
        self.counters.acked += resume.newly_acked;
        let mut scfg = self.cfg.session;
        if self.cfg.ack_by_peer_queue && peer.queue_capacity > 0 {
            scfg = scfg.with_peer_queue_capacity(peer.queue_capacity);
        }
        self.session.set_config(scfg);
        self.rx.set_backlog(peer.queue_capacity);
        self.tx.cursor = Some(cursor);
        self.stream = Some(stream);
        self.reason = None;
        self.close_handle.clear();
        Ok(resume)
    }

    /// Makes `epoch` (the peer's identity, e.g. the server's name of the day) the
    /// store's epoch, before [`attach`](Self::attach): nothing if it already is,
    /// adopted if the store had none (queue kept), otherwise the store is reset — a
    /// fresh session, its queue and counters dropped, reported in the result — and the
    /// connection's session numbers restart with it. Ends a live link first.
    pub fn switch_epoch(
        &mut self,
        epoch: tcpshm_proto::Name,
        created_unix_ns: u64,
    ) -> Result<tcpshm_persist::EpochChange, tcpshm_persist::OpenError> {
        if self.stream.is_some() {
            self.fail(Fail { reason: CloseReason::Replaced, tell_peer: true });
        }
        let change = self.store.switch_epoch(epoch, created_unix_ns)?;
        if let tcpshm_persist::EpochChange::Reset(_) = change {
            let send_range = SeqRange::new(self.store.first_unacked(), self.store.next_seq())
                .expect("a store's first unacknowledged seq never passes its next seq");
            self.session = Session::resume(self.cfg.session, send_range, self.store.consumed());
            self.tx = TxState::new();
            self.rx.clear();
        }
        Ok(change)
    }

    /// Unlinks the stream without telling the peer and returns it (e.g. to close it
    /// in a particular way, or in a test to cut the link). Received messages not
    /// popped are dropped (the peer resends them after the next login); the store is
    /// kept. `reason` becomes the close reason. `None` if there was no stream.
    pub fn detach(&mut self, reason: CloseReason) -> Option<S> {
        let stream = self.stream.take();
        self.reset_link();
        self.reason = Some(reason);
        stream
    }

    /// Ends the link with `f`: a best-effort `CLOSE` frame first if asked (only at a
    /// frame boundary, never inside a partly written frame), then shutdown and close.
    pub(crate) fn fail(&mut self, f: Fail) {
        if let Some(mut stream) = self.stream.take() {
            if f.tell_peer {
                self.goodbye(&mut stream, &f.reason);
            }
            self.linger(&mut stream);
        }
        self.reset_link();
        self.reason = Some(f.reason);
    }

    /// Forgets everything about the current link (not the store, not the counters).
    fn reset_link(&mut self) {
        self.tx.reset();
        self.rx.clear();
        // Received-but-unpopped messages are gone with the buffer: the session must
        // expect them again from the consumed count.
        self.session.begin_login();
    }

    /// Carries out a close requested through a [`CloseHandle`].
    #[inline]
    fn take_close_request(&mut self) {
        if self.close_handle.take() && self.stream.is_some() {
            self.fail(Fail { reason: CloseReason::Requested, tell_peer: true });
        }
    }

    /// Applies a step's verdict.
    #[inline]
    pub(crate) fn settle(&mut self, r: Result<(), Fail>) -> bool {
        if let Err(f) = r {
            self.fail(f);
        }
        self.stream.is_some()
    }

    // ---- readiness-driven pieces ------------------------------------------------

    /// The stream is readable: reads (at most [`StreamConfig::read_budget`] bytes) and
    /// handles what arrived (acks, heartbeats, close, protocol checks); received user
    /// messages wait for [`front`](Transport::front). Returns whether the link is up.
    /// If [`read_more`](Self::read_more) is true afterwards, the read stopped before
    /// the socket was drained: call again without waiting for readiness (after popping,
    /// if the receive buffer was full).
    pub fn on_readable(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        let r = self.receive(now);
        self.settle(r)
    }

    /// The stream is writable: writes queued frames, pending control frames and due
    /// acks/heartbeats (at most [`StreamConfig::write_budget`] bytes). Returns whether
    /// the link is up.
    pub fn on_writable(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        let r = self.flush(now);
        self.settle(r)
    }

    /// Timers at `now`: a close requested by a [`CloseHandle`], the peer's silence
    /// (closes with [`CloseReason::Timeout`]), heartbeats and standalone acks due
    /// (written now, unless the socket is full: then at the next writable event).
    /// Cheap when nothing is due: no system call. Returns whether the link is up.
    pub fn check_timers(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        if self.stream.is_none() {
            return false;
        }
        let r = self.timers(now).and_then(|()| {
            // A full socket is written to when it becomes writable, not here (a
            // heartbeat could not pass the queued bytes anyway).
            let due = self.session.ack_due() || self.session.heartbeat_due(now) || self.wants_write();
            if due && !self.tx.blocked {
                self.flush(now)?;
            }
            Ok(())
        });
        self.settle(r)
    }

    /// Liveness: the peer's silence against the timeout.
    pub(crate) fn timers(&mut self, now: Nanos) -> Result<(), Fail> {
        if self.rx.is_stuck() {
            // Our user is not popping and our buffer is full: bytes waiting in the
            // socket mean the peer is alive.
            self.note_pending_bytes(now);
        }
        if let Some(silent_ns) = self.session.timed_out(now) {
            return Err(Fail { reason: CloseReason::Timeout { silent_ns }, tell_peer: true });
        }
        Ok(())
    }

    /// Whether anything waits to be written now (queued frames not yet written, a
    /// partly written frame, pending control frames, a due standalone ack). Register
    /// for writability while it is true and [`write_blocked`](Self::write_blocked).
    pub fn wants_write(&self) -> bool {
        self.stream.is_some()
            && (self.tx.partial > 0
                || self.tx.ctrl_pending()
                || self.session.unsent() > 0
                || self.store.staged() > 0
                || self.session.ack_due())
    }

    /// Whether the last write attempt stopped because the socket buffer was full
    /// (`WouldBlock`): wait for writability. False after a write stopped by the budget:
    /// then call [`on_writable`](Self::on_writable) again without waiting.
    pub fn write_blocked(&self) -> bool {
        self.tx.blocked
    }

    /// Whether the last read stopped before the socket was drained (the read budget
    /// was spent, or the receive buffer is full of messages not popped): call
    /// [`on_readable`](Self::on_readable) again without waiting for readiness.
    pub fn read_more(&self) -> bool {
        self.stream.is_some() && self.rx.more
    }

    /// The stream, while linked (e.g. to register it with a `mio::Poll`).
    pub fn stream(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    /// The stream, mutably, while linked (e.g. to register or deregister it).
    pub fn stream_mut(&mut self) -> Option<&mut S> {
        self.stream.as_mut()
    }

    /// A handle that lets any thread request a close (carried out by the owner's next
    /// poll).
    pub fn close_handle(&self) -> CloseHandle {
        self.close_handle.clone()
    }

    // ---- state ------------------------------------------------------------------

    /// The store (send queue, consumed count).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, mutably (e.g. to [`flush`](Store::flush) it at a quiet moment).
    /// Pushing or acknowledging through it behind the connection's back breaks the
    /// connection's bookkeeping: use the connection for those.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The sequence/ack state (for inspection and tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.cfg
    }

    /// This side's name.
    pub fn local_name(&self) -> Name {
        self.store.local()
    }

    /// The peer's name.
    pub fn remote_name(&self) -> Name {
        self.store.remote()
    }

    /// Closes the connection and gives back the store (e.g. to reopen it with
    /// another configuration). The peer is told if the link was up.
    pub fn into_store(mut self) -> Store {
        if self.stream.is_some() {
            self.fail(Fail { reason: CloseReason::Requested, tell_peer: true });
        }
        self.store
    }

    fn push_common(&mut self, t: u16) -> Result<(), SendError> {
        if !msg_type::is_user(t) {
            return Err(SendError::ReservedType(t));
        }
        self.store.push_more(t, self.session.ack_to_send()).map_err(send_error)?;
        self.session.on_push();
        self.counters.pushed += 1;
        Ok(())
    }
}

/// A store refusal as the transport's send error.
pub(crate) fn send_error(e: StoreError) -> SendError {
    match e {
        StoreError::TooLarge { len, max } => SendError::TooLarge { len, max },
        StoreError::ReservedType(t) => SendError::ReservedType(t),
        StoreError::NothingAllocated => SendError::NothingAllocated,
        other => SendError::Storage(other.to_string()),
    }
}

impl<S: ByteStream> Transport for StreamConnection<S> {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        if len > self.max_payload {
            return Err(SendError::TooLarge { len, max: self.max_payload });
        }
        self.store.alloc(len).map_err(send_error)
    }

    /// Publishes the message (crash-safe from here) and writes what the socket takes
    /// now, if linked. A failure to sync the store ([`Durability::Sync`]) after the
    /// message was queued closes the link with [`CloseReason::Storage`]; the message
    /// stays queued.
    ///
    /// [`Durability::Sync`]: tcpshm_persist::Durability::Sync
    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.push_common(msg_type)?;
        if self.stream.is_some() {
            let r = self.flush(self.now);
            self.settle(r);
        } else if let Err(e) = self.store.publish() {
            self.reason = Some(Fail::storage(&e).reason);
        }
        Ok(())
    }

    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.push_common(msg_type)
    }

    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        self.rx.front()
    }

    #[inline]
    fn pop(&mut self) {
        let Some(frame_len) = self.rx.pop() else { return };
        self.session.on_pop(frame_len as u64);
        self.counters.popped += 1;
        // Messages staged by `push_more` (or a handler's reply) become crash-safe
        // before the pop commits: a crash between the two must never leave a request
        // consumed and its reply lost. One store when something is staged, else nothing.
        let published = if self.store.staged() > 0 { self.store.publish() } else { Ok(()) };
        if let Err(e) = published.and_then(|()| self.store.bump_consumed()) {
            let f = Fail::storage(&e);
            if self.stream.is_some() {
                self.fail(f);
            } else {
                self.reason = Some(f.reason);
            }
            return;
        }
        if self.stream.is_some() && self.session.ack_due() {
            // A one-way stream's sender waits for this ack to free its queue.
            let r = self.flush(self.now);
            self.settle(r);
        }
    }

    fn poll(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        // Staged pushes become crash-safe here whatever happens next: a receive error
        // (the peer just died) must not leave them unpublished.
        if self.store.staged() > 0 {
            if let Err(e) = self.store.publish() {
                let f = Fail::storage(&e);
                if self.stream.is_some() {
                    self.fail(f);
                } else {
                    self.reason = Some(f.reason);
                }
                return false;
            }
        }
        if self.stream.is_none() {
            return false;
        }
        let r = self.receive(now).and_then(|()| self.timers(now)).and_then(|()| self.flush(now));
        self.settle(r)
    }

    fn close(&mut self, reason: CloseReason) {
        if self.stream.is_some() {
            self.fail(Fail { reason, tell_peer: true });
        } else {
            self.reason.get_or_insert(reason);
        }
    }

    fn is_connected(&self) -> bool {
        self.stream.is_some()
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
