//! `Connection`: one side of a persistent session — the engine, the store, the
//! rings when there are any, the stream while linked — and the [`Transport`] API.
//! The byte-stream path is in `stream.rs`, the ring path in `rings.rs`, the logins
//! in `login.rs`.

use crate::close_handle::CloseHandle;
use crate::config::ConnectionConfig;
use crate::error::OpenError;
use std::fmt;
use tcpshm_persist::{SendCursor, SessionWord, Store, StoreError};
use tcpshm_proto::login::{Limits, TransportKind};
use tcpshm_proto::session::{SeqRange, Session};
use tcpshm_proto::{CloseReason, Counters, Fault, Limit, Msg, Name, Nanos, SendError, Transport};
use tcpshm_transport_shm::{RingError, Rings};
use tcpshm_transport_tcp::{ByteStream, ControlQueue, FrameReader};

/// Write progress of the byte stream (user frames from the store).
#[derive(Debug, Default)]
pub(crate) struct TxState {
    /// The first queued frame not completely written (seq `session.seq().sent()`);
    /// `None` while the stream does not carry messages.
    pub(crate) cursor: Option<SendCursor>,
    /// Bytes of the frame at `cursor` already written (0: at a frame boundary).
    pub(crate) partial: usize,
    /// The last write attempt met a full socket buffer.
    pub(crate) blocked: bool,
}

/// Where a session's messages are, and where the next push goes.
///
/// The session's send queue is one numbered sequence of frames held in two places:
/// the store (every message pushed while the session is carried by a byte stream or
/// has no rings) and the outbound ring (every message pushed while it is carried by
/// shared memory). A change of medium moves what the old place holds beyond the new
/// one to the new place, by appending copies (they keep their seqs, and a receiver
/// skips a copy of a message it already consumed), so at any time:
/// * carried by shared memory: the ring holds `..ring_next`, the store holds what has
///   not been copied to the ring yet (`ring_next..`, drained as the ring has room);
///   pushes go to the ring once nothing is left to drain;
/// * carried by a stream: the store holds everything from the peer's consumed count
///   on; what only the ring held was appended to it first (pushes wait until then).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// The seq after the last frame in the outbound ring (when there are rings).
    pub(crate) ring_next: u64,
    /// Pushes go straight into the outbound ring.
    pub(crate) to_ring: bool,
    /// Where copying store frames into the ring goes on.
    pub(crate) drain: Option<SendCursor>,
}

/// One side of a persistent session: its engine ([`Session`]), its persistent store,
/// its shared-memory rings when it has any, and the byte stream that links it to the
/// peer while it is connected. Implements [`Transport`].
///
/// A connection is made from its persistent parts ([`Connection::open`]) and comes
/// up with a login: [`login_client`](Connection::login_client) on a client,
/// [`accept`](Connection::accept) on a server (the `tcpshm-client` and
/// `tcpshm-server` crates do both for TCP; any byte stream works). The login's
/// transport decides what carries the messages: the stream itself
/// ([`TransportKind::Tcp`]), or the rings, with the stream kept as the control
/// stream ([`TransportKind::Shm`]). Everything else is the same: the numbering, the
/// resend after a reconnect, the limits, liveness, close reasons and counters are the
/// engine's, for every medium.
///
/// Sending is zero-copy: [`alloc`](Transport::alloc) hands out the bytes inside the
/// send queue (the store's mapping, or the ring) where the message will live,
/// [`push`](Transport::push) publishes it. Pushing is allowed while disconnected: the
/// message waits and leaves on reconnect. Receiving is zero-copy too:
/// [`front`](Transport::front) borrows the next message in place (the stream's
/// receive buffer, or the ring) and [`pop`](Transport::pop) consumes it — the commit
/// point.
///
/// Drive it with [`poll`](Transport::poll) (everything), or from a readiness loop:
/// [`on_readable`](Self::on_readable), [`on_writable`](Self::on_writable) and, now and
/// then, [`check_timers`](Self::check_timers).
pub struct Connection<S = mio::net::TcpStream> {
    pub(crate) session: Session,
    pub(crate) store: Store,
    pub(crate) rings: Option<Rings>,
    pub(crate) stream: Option<S>,
    pub(crate) reader: FrameReader,
    pub(crate) ctrl: ControlQueue,
    pub(crate) tx: TxState,
    pub(crate) queue: Queue,
    /// What carries the messages: of the current link, or the last one (or the one
    /// this side means to use, before its first login).
    pub(crate) medium: TransportKind,
    /// The last read stopped before the stream was drained.
    pub(crate) read_more: bool,
    /// The poller reported the peer's end of this link: every later read goes to
    /// the end (no event will come again for bytes or an end already there).
    pub(crate) read_to_end: bool,
    /// A ring broke the sequence or its format: sticky until a new login.
    pub(crate) ring_fault: Option<CloseReason>,
    /// The seq of the ring message `front` returned last (to count receipts once).
    pub(crate) ring_fronted: Option<(u64, usize)>,
    pub(crate) cfg: ConnectionConfig,
    /// The last `now` the caller gave (a `push` writes at once and needs a time).
    pub(crate) now: Nanos,
    /// When a shared-memory session next does its control work.
    pub(crate) next_check: Nanos,
    pub(crate) close_handle: CloseHandle,
    /// The session's producers' queue (`producer.rs`).
    pub(crate) producers: crate::producer::Producers,
}

impl<S> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("local", &self.store.local())
            .field("remote", &self.store.remote())
            .field("medium", &self.medium)
            .field("linked", &self.stream.is_some())
            .field("session", &self.session)
            .field("rings", &self.rings)
            .finish_non_exhaustive()
    }
}

/// A store failure as a close reason.
pub(crate) fn storage(e: StoreError) -> CloseReason {
    match e {
        StoreError::Corrupt(_) => CloseReason::Corrupt(Fault::new(e)),
        other => CloseReason::Storage(Fault::new(other)),
    }
}

/// A ring failure as a close reason.
pub(crate) fn ring_reason(e: &RingError) -> CloseReason {
    CloseReason::Corrupt(Fault::new(e.clone()))
}

/// A store refusal as the transport's send error.
pub(crate) fn send_error(e: StoreError) -> SendError {
    match e {
        StoreError::TooLarge { len, max } => SendError::TooLarge { len, max, limit: Limit::Queue },
        StoreError::ReservedType(t) => SendError::ReservedType(t),
        StoreError::NothingAllocated => SendError::NothingAllocated,
        other => SendError::Storage(Fault::new(other)),
    }
}

/// A ring refusal as the transport's send error.
pub(crate) fn ring_send_error(e: RingError) -> SendError {
    match e {
        RingError::TooLarge { len, max } => SendError::TooLarge { len, max, limit: Limit::Queue },
        RingError::NothingAllocated => SendError::NothingAllocated,
        other => SendError::Storage(Fault::new(other)),
    }
}

impl<S: ByteStream> Connection<S> {
    /// A connection over its persistent parts, not linked: `store` (its send queue,
    /// consumed count and epoch) and, if the session has a shared-memory file,
    /// `rings` mapped from it. The session's numbers are resumed from both (the larger
    /// of each pair of records). `medium` is how this side means to carry messages
    /// until a login says otherwise: pushes before the first login of a process go to
    /// the rings if it is [`TransportKind::Shm`] and there are rings, to the store
    /// otherwise.
    ///
    /// ```
    /// use tcpshm_connection::{Connection, ConnectionConfig};
    /// use tcpshm_persist::{Options, Store};
    /// use tcpshm_proto::login::TransportKind;
    /// use tcpshm_proto::{CloseReason, Name, Transport};
    ///
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-open-{}", std::process::id()));
    /// let cfg = ConnectionConfig::default();
    /// let (me, peer) = (Name::new("client").unwrap(), Name::new("server").unwrap());
    /// let (store, _) = Store::open(&dir, me, peer, &Options::new(cfg.queue_bytes), None, 0).unwrap();
    /// let mut c: Connection = Connection::open(store, None, TransportKind::Tcp, cfg).unwrap();
    /// assert!(!c.is_connected());
    /// assert_eq!(c.close_reason(), Some(&CloseReason::NotConnected));
    /// // Pushing before any login is fine: the message waits in the store.
    /// c.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
    /// c.push(1).unwrap();
    /// assert_eq!(c.counters().next_seq, 1);
    /// # drop(c); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn open(
        store: Store,
        rings: Option<Rings>,
        medium: TransportKind,
        cfg: ConnectionConfig,
    ) -> Result<Connection<S>, OpenError> {
        cfg.validate()?;
        let max_frame = tcpshm_proto::decode::frame_limit(cfg.session.max_message as usize);
        let reader = FrameReader::new(cfg.stream.recv_buffer, max_frame);
        let session = Session::new(cfg.session, store.capacity() as u64, SeqRange::default(), 0);
        let mut c = Connection {
            session,
            store,
            rings,
            stream: None,
            reader,
            ctrl: ControlQueue::new(),
            tx: TxState::default(),
            queue: Queue::default(),
            medium,
            read_more: false,
            read_to_end: false,
            ring_fault: None,
            ring_fronted: None,
            cfg,
            now: 0,
            next_check: 0,
            close_handle: CloseHandle::default(),
            producers: Default::default(),
        };
        c.resume_numbers()?;
        // Messages producer handles pushed before (in an earlier process too) drain
        // from the first poll; a queue owned elsewhere is tried again from `poll`.
        match c.attach_producers(false) {
            Ok(()) | Err(crate::ProducerError::Busy { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(c)
    }

    /// Opens one side's session from disk: its store `<local>@<remote>` in
    /// `storage_dir` (created if missing, with the configured capacity and
    /// durability; `now` is recorded as its creation time), and, if the session has a
    /// shared-memory file, that file mapped as `side` — the server's is named after
    /// the server (`local`), the client's after the server of its store's epoch. See
    /// [`open`](Self::open) for `medium`.
    ///
    /// ```
    /// use tcpshm_connection::{Connection, ConnectionConfig};
    /// use tcpshm_proto::login::TransportKind;
    /// use tcpshm_proto::Name;
    /// use tcpshm_transport_shm::Side;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-session-{}", std::process::id()));
    /// let (me, peer) = (Name::new("trader-1").unwrap(), Name::new("gateway").unwrap());
    /// let c: Connection = Connection::open_session(&dir, me, peer, Side::Client, TransportKind::Shm, ConnectionConfig::default(), 0).unwrap();
    /// assert!(c.rings().is_none()); // never logged in: no server, no file yet
    /// # drop(c); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn open_session(
        storage_dir: &std::path::Path,
        local: Name,
        remote: Name,
        side: tcpshm_transport_shm::Side,
        medium: TransportKind,
        cfg: ConnectionConfig,
        now: Nanos,
    ) -> Result<Connection<S>, OpenError> {
        cfg.validate()?;
        let opts = tcpshm_persist::Options::new(cfg.queue_bytes).durability(cfg.durability);
        let (store, _) = Store::open(storage_dir, local, remote, &opts, None, now)?;
        let names = match side {
            tcpshm_transport_shm::Side::Server => Some((local, remote)),
            tcpshm_transport_shm::Side::Client => store.epoch().map(|server| (server, local)),
        };
        let mut rings = None;
        if let Some((server, client)) = names {
            let dir = tcpshm_transport_shm::ShmDir::new(cfg.shm.dir.clone(), &cfg.shm.prefix)?;
            match tcpshm_transport_shm::ShmFile::open_as(&dir, &server, &client, side) {
                Ok(f) => rings = Some(Rings::new(f)),
                Err(tcpshm_transport_shm::ShmError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Connection::open(store, rings, medium, cfg)
    }

    /// Rebuilds the session's numbers from the store and the rings (at open, and when
    /// the rings change).
    pub(crate) fn resume_numbers(&mut self) -> Result<(), RingError> {
        let (mut acked, mut next, mut consumed) =
            (self.store.first_unacked(), self.store.next_seq(), self.store.consumed());
        let mut seen = consumed;
        let mut ring_next = 0;
        if let Some(r) = &mut self.rings {
            let peer_consumed = r.tx.peer_consumed();
            ring_next = r.tx.end()?.unwrap_or(peer_consumed).max(peer_consumed);
            acked = acked.max(peer_consumed);
            next = next.max(ring_next);
            consumed = consumed.max(r.rx.consumed());
            seen = consumed.max(r.rx.end()?.unwrap_or(0));
        }
        let acked = acked.min(next);
        let range = SeqRange::new(acked, next).expect("acked is clamped to next");
        self.session.renumber(range, consumed, seen);
        self.session.seq_mut().set_recorded(self.store.session_word(SessionWord::Pushed));
        let peer = Limits {
            max_message: self.store.session_word(SessionWord::PeerMaxMessage).min(u32::MAX as u64) as u32,
            queue_capacity: self.store.session_word(SessionWord::PeerQueueCapacity),
        };
        // The peer's limits as its last login told them: a message over them is
        // refused at alloc even before this process's first login.
        self.session.remember_peer_limits(peer);
        self.queue = Queue { ring_next, to_ring: false, drain: None };
        self.update_route();
        Ok(())
    }

    /// Decides where pushes go now (see [`Queue`]).
    pub(crate) fn update_route(&mut self) {
        let next = self.session.seq().next_seq();
        self.queue.to_ring = self.medium == TransportKind::Shm
            && self.rings.is_some()
            && self.store.next_seq() <= self.queue.ring_next
            && self.queue.ring_next == next
            && self.ring_fault.is_none();
    }

    // ---- state ------------------------------------------------------------------

    /// The engine: numbers, liveness, limits.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The store (send queue, consumed count, epoch).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, mutably (e.g. to [`flush`](Store::flush) it at a quiet moment).
    /// Pushing or acknowledging through it behind the connection's back breaks the
    /// connection's bookkeeping: use the connection for those.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The shared-memory rings, if the session has a file mapped.
    pub fn rings(&self) -> Option<&Rings> {
        self.rings.as_ref()
    }

    /// What carries the messages (of the current or last link).
    pub fn medium(&self) -> TransportKind {
        self.medium
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.cfg
    }

    /// This side's name.
    pub fn local_name(&self) -> Name {
        self.store.local()
    }

    /// The peer's name (for a client: the service label; the server's actual name is
    /// the store's [`epoch`](Store::epoch)).
    pub fn remote_name(&self) -> Name {
        self.store.remote()
    }

    /// The stream, while linked (e.g. to register it with a `mio::Poll`): the data
    /// stream of a TCP session, the control stream of a shared-memory one.
    pub fn stream(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    /// The stream, mutably, while linked.
    pub fn stream_mut(&mut self) -> Option<&mut S> {
        self.stream.as_mut()
    }

    /// A handle that lets any thread request a close (carried out by the owner's next
    /// poll).
    pub fn close_handle(&self) -> CloseHandle {
        self.close_handle.clone()
    }

    /// This side's limits, as a login tells them.
    pub fn limits(&self) -> Limits {
        self.session.local_limits()
    }

    /// Closes the link and gives back the persistent parts (e.g. to reopen them with
    /// another configuration). The peer is told if the link was up.
    pub fn into_parts(mut self) -> (Store, Option<Rings>) {
        if self.stream.is_some() {
            self.fail(CloseReason::Requested, true);
        }
        self.checkpoint();
        (self.store, self.rings)
    }

    // ---- link lifecycle ---------------------------------------------------------

    /// Unlinks the stream without telling the peer and returns it (e.g. to close it
    /// in a particular way, or in a test to cut the link). Messages received on the
    /// stream and not popped are dropped (the peer resends them after the next login);
    /// the store and the rings are kept. `reason` becomes the close reason. `None` if
    /// there was no stream.
    pub fn detach(&mut self, reason: CloseReason) -> Option<S> {
        let stream = self.stream.take();
        self.reset_link();
        self.session.close(reason);
        stream
    }

    /// Ends the link with `reason`: a best-effort `CLOSE` frame first if `tell_peer`
    /// (only at a frame boundary, never inside a partly written frame), then shutdown.
    pub(crate) fn fail(&mut self, reason: CloseReason, tell_peer: bool) {
        if let Some(mut stream) = self.stream.take() {
            if tell_peer {
                self.goodbye(&mut stream, &reason);
            }
            self.linger(&mut stream);
        }
        self.reset_link();
        self.checkpoint();
        self.session.close(reason);
    }

    /// Forgets everything about the current link (not the store, not the rings).
    pub(crate) fn reset_link(&mut self) {
        self.tx = TxState::default();
        self.reader.clear();
        self.ctrl.clear();
        self.read_more = false;
        self.read_to_end = false;
    }

    /// Records the session's numbers that live in the rings into the store too (the
    /// peer's consumed count, ours): if the shared-memory file is lost, the next
    /// login still knows how far the session had come and says so.
    pub(crate) fn checkpoint(&mut self) {
        // How many we ever pushed, beside the queue: the rings may have carried the
        // last of them, and a login after the file is lost must not renumber past
        // them (`SeqMismatch::LocalQueueLost`). Only raised: a queue found shorter
        // than the record is the loss to report, not a new record. One store into the
        // mapping; a session reset clears it.
        let pushed = self.session.seq().next_seq();
        if pushed > self.store.session_word(SessionWord::Pushed) {
            self.store.set_session_word(SessionWord::Pushed, pushed);
        }
        let Some(r) = &self.rings else { return };
        let peer_consumed = r.tx.peer_consumed().min(self.session.seq().next_seq());
        if peer_consumed > self.store.first_unacked() {
            if let Err(e) = self.store.ack_beyond(peer_consumed) {
                let reason = storage(e);
                self.session.close(reason);
            }
        }
        let consumed = self.session.seq().consumed();
        if consumed > self.store.consumed() {
            if let Err(e) = self.store.set_consumed(consumed) {
                let reason = storage(e);
                self.session.close(reason);
            }
        }
    }

    /// Carries out a close requested through a [`CloseHandle`].
    #[inline]
    pub(crate) fn take_close_request(&mut self) {
        if self.close_handle.take() && self.stream.is_some() {
            self.fail(CloseReason::Requested, true);
        }
    }

    /// Publishes what `push_more` staged, in the store and in the ring. Crash-safe
    /// from here.
    #[inline(always)]
    pub(crate) fn publish_staged(&mut self) -> Result<(), CloseReason> {
        // Called on every poll and pop: nothing staged (the common case) is two loads.
        if self.store.staged() == 0 && self.rings.as_ref().is_none_or(|r| r.tx.staged() == 0) {
            return Ok(());
        }
        self.publish_staged_now()
    }

    #[inline(never)]
    fn publish_staged_now(&mut self) -> Result<(), CloseReason> {
        if self.store.staged() > 0 {
            self.store.publish().map_err(storage)?;
        }
        if let Some(r) = &mut self.rings {
            let n = r.tx.publish();
            if n > 0 && self.stream.is_some() && self.medium == TransportKind::Shm {
                self.session.on_sent(n);
            }
        }
        Ok(())
    }

    /// Applies a step's verdict: a failure ends the link.
    #[inline]
    pub(crate) fn settle(&mut self, r: Result<(), (CloseReason, bool)>) -> bool {
        if let Err((reason, tell)) = r {
            self.fail(reason, tell);
        }
        self.stream.is_some()
    }

    /// Whether the store holds fewer messages than the session numbers while pushes go
    /// to it (a change of medium being caught up): pushes wait.
    #[inline]
    pub(crate) fn store_behind(&self) -> bool {
        !self.queue.to_ring && self.store.next_seq() + self.store.staged() != self.session.seq().next_seq()
    }

    /// Whether messages are received from the rings now: a shared-memory session that
    /// is logged in. Nothing is delivered outside a login (the login is where the
    /// peer is admitted and the numbers checked).
    #[inline]
    pub(crate) fn receives_from_rings(&self) -> bool {
        self.medium == TransportKind::Shm && self.rings.is_some() && self.stream.is_some()
    }

    /// The largest message a push may carry now: the session's limit (this side's,
    /// the peer's), and what the queue holds.
    fn route_max(&self) -> usize {
        let queue = match (&self.rings, self.queue.to_ring) {
            (Some(r), true) => r.tx.max_message(),
            _ => self.store.max_payload(),
        };
        self.session.max_send().min(queue)
    }

    pub(crate) fn push_common(&mut self, msg_type: u16, publish: bool) -> Result<(), SendError> {
        if !tcpshm_proto::frame::msg_type::is_user(msg_type) {
            return Err(SendError::ReservedType(msg_type));
        }
        let ack = self.session.ack_to_send();
        if self.queue.to_ring {
            let Some(r) = &mut self.rings else { return Err(SendError::NothingAllocated) };
            let seq = self.session.seq().next_seq();
            r.tx.push_more(msg_type, seq, ack).map_err(ring_send_error)?;
            self.session.on_push();
            self.queue.ring_next = seq + 1;
            if publish {
                // Also what `push_more` staged before this push.
                let n = r.tx.publish();
                if self.stream.is_some() {
                    self.session.on_sent(n);
                }
            }
            return Ok(());
        }
        let seq = self.store.push_more(msg_type, ack).map_err(send_error)?;
        let expected = self.session.on_push();
        debug_assert_eq!(seq, expected, "the store numbers pushes as the session does");
        if publish {
            if self.stream.is_some() && self.medium == TransportKind::Tcp {
                let r = self.flush(self.now);
                self.settle(r);
            } else {
                if let Err(e) = self.store.publish() {
                    let reason = storage(e);
                    self.fail(reason, true);
                }
                self.drain_to_ring();
            }
        }
        Ok(())
    }
}

impl<S: ByteStream> Connection<S> {
    /// `alloc` without the session's limits (the queue's own still apply): where the
    /// next push goes now.
    #[inline]
    pub(crate) fn alloc_queue(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        if self.queue.to_ring {
            if let Some(e) = self.rings.as_ref().and_then(|r| r.tx.fault()).cloned() {
                // An earlier alloc found the ring corrupt: the session ends here.
                self.ring_failed(ring_reason(&e));
                return Err(ring_send_error(e));
            }
            let Some(r) = &mut self.rings else { return Ok(None) };
            return r.tx.alloc(len).map_err(ring_send_error);
        }
        if self.store_behind() && !self.catch_up_store() {
            // The ring holds messages the store must carry first (a change of medium):
            // backpressure until they are copied.
            return Ok(None);
        }
        self.store.alloc(len).map_err(send_error)
    }
}

impl<S: ByteStream> Transport for Connection<S> {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.session.check_send(len)?;
        self.alloc_queue(len)
    }

    /// Publishes the message (crash-safe from here) and, over a stream, writes what
    /// the socket takes now.
    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.push_common(msg_type, true)
    }

    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.push_common(msg_type, false)
    }

    fn discard_staged(&mut self) -> u64 {
        let in_store = self.store.discard_staged();
        let in_ring = match &mut self.rings {
            Some(r) => r.tx.discard_staged(),
            None => 0,
        };
        self.queue.ring_next -= in_ring;
        let n = in_store + in_ring;
        let taken = self.session.on_discard(n);
        debug_assert_eq!(taken, n, "staged messages were never written");
        n
    }

    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        if self.medium == TransportKind::Shm && self.rings.is_some() {
            if !self.receives_from_rings() {
                return None;
            }
            return self.ring_front();
        }
        self.reader.front()
    }

    #[inline]
    fn pop(&mut self) {
        if self.medium == TransportKind::Shm && self.rings.is_some() {
            if self.receives_from_rings() {
                self.ring_pop();
            }
        } else {
            self.stream_pop();
        }
    }

    fn poll(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        if let Some(e) = self.rings.as_ref().and_then(|r| r.tx.fault()).cloned() {
            self.ring_failed(ring_reason(&e));
        }
        // What producer handles pushed joins the session's sequence (one load when
        // there is nothing).
        self.drain_producers();
        // Staged pushes become crash-safe here whatever happens next: a receive error
        // (the peer just died) must not leave them unpublished.
        if let Err(reason) = self.publish_staged() {
            self.fail(reason, true);
            return false;
        }
        match self.medium {
            TransportKind::Shm if self.rings.is_some() => self.poll_rings(now),
            _ => self.poll_stream(now),
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.stream.is_some() {
            self.fail(reason, true);
        } else {
            self.session.close(reason);
        }
    }

    #[inline]
    fn is_connected(&self) -> bool {
        self.session.is_up()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.session.close_reason()
    }

    fn counters(&self) -> Counters {
        self.session.counters()
    }

    fn max_payload(&self) -> usize {
        self.route_max()
    }

    fn next_deadline(&self) -> Option<Nanos> {
        let d = self.session.next_deadline()?;
        if self.medium == TransportKind::Shm && self.rings.is_some() {
            return Some(d.min(self.next_check));
        }
        Some(d)
    }
}
