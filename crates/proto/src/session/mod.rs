//! The session engine: the state machine of one side of a persistent session, the
//! same for every medium.
//!
//! A [`Session`] does no I/O and reads no clock (quinn-proto is the model): the medium
//! that carries the session — a byte stream, or shared-memory rings with a control
//! stream — tells it what happened (pushed, written, acked, received, popped, logged
//! in, the time `now`) and asks it what to do (what to resend, whether a message may
//! be sent at all, whether an ack or a heartbeat is due, whether the peer timed out,
//! when the next timer fires). Its parts:
//!
//! * [`SeqState`]: the sequence and ack numbers of both directions and the login
//!   check that finds lost state on either side ([`SeqMismatch`]);
//! * [`Liveness`]: heartbeats and the timeout, one timer table, with
//!   [`next_deadline`](Session::next_deadline);
//! * the link state (up, or down with its [`CloseReason`]);
//! * both sides' [`Limits`] (the largest message each accepts, exchanged at login and
//!   remembered): [`check_send`](Session::check_send) refuses a message the peer
//!   would refuse, before it is queued;
//! * the [`Counters`].
//!
//! The login itself (request, reply, the epoch rule, the refusals) is
//! [`crate::handshake`]; it ends in [`Session::after_login`].
//!
//! ```
//! use tcpshm_proto::login::{Limits, SessionNumbers};
//! use tcpshm_proto::session::{Session, SessionConfig};
//! use tcpshm_proto::{CloseReason, Limit, SendError};
//!
//! let cfg = SessionConfig::default();
//! let mut s = Session::new(cfg, 1 << 20, Default::default(), 0);
//! assert!(!s.is_up());
//! assert_eq!(s.close_reason(), Some(&CloseReason::NotConnected));
//!
//! // The peer accepts messages of at most 4096 bytes:
//! let peer = Limits { max_message: 4096, queue_capacity: 1 << 16 };
//! s.after_login(&SessionNumbers::default(), peer, 1_000).unwrap();
//! assert!(s.is_up());
//! assert_eq!(s.check_send(10_000), Err(SendError::TooLarge { len: 10_000, max: 4096, limit: Limit::Peer }));
//! assert_eq!(s.next_deadline(), Some(1_000 + cfg.liveness.heartbeat_interval));
//! ```

mod liveness;
mod seq;

pub use liveness::{Liveness, LivenessConfig};
pub use seq::{AckPolicy, Inbound, Resume, SeqMismatch, SeqRange, SeqState};

use crate::counters::Counters;
use crate::error::ProtocolError;
use crate::login::{Limits, SessionNumbers};
use crate::transport::{CloseReason, Limit, Nanos, SendError};

/// Largest message the wire can carry: a frame's length is a `u32` that includes the
/// 24-byte header.
pub const MAX_MESSAGE: u32 = u32::MAX - crate::frame::HEADER_LEN as u32;

/// How a session behaves: liveness, acks, and the largest message this side accepts.
///
/// ```
/// use tcpshm_proto::session::SessionConfig;
/// let c = SessionConfig { max_message: 4096, ..SessionConfig::default() };
/// assert!(c.validate().is_ok());
/// assert!(SessionConfig { max_message: 0, ..c }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Heartbeat interval and timeout.
    pub liveness: LivenessConfig,
    /// When standalone acks go out (the byte threshold follows the peer's queue when
    /// [`ack_by_peer_queue`](Self::ack_by_peer_queue) is on).
    pub acks: AckPolicy,
    /// Ack once a quarter of the peer's send queue (told at login) is popped and
    /// unacknowledged (default true): a peer streaming large messages never waits for
    /// a heartbeat to free its queue.
    pub ack_by_peer_queue: bool,
    /// The largest user message this side accepts and sends (default 1 MiB). Told to
    /// the peer at login; a message above the peer's limit is refused at `alloc`.
    pub max_message: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            liveness: LivenessConfig::default(),
            acks: AckPolicy::default(),
            ack_by_peer_queue: true,
            max_message: 1 << 20,
        }
    }
}

/// Why a configuration is invalid: of a [`SessionConfig`], or of a connection,
/// client or server configuration built on it (one error type for all of them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The maximum message is 0 or above what a frame can carry.
    #[error("max message size {0} is invalid (1..={MAX_MESSAGE})")]
    MaxMessage(u64),
    /// A queue is not a power of two, or too small for the maximum message.
    #[error("{which} of {bytes} bytes is invalid: it must be a power of two of at least {min} bytes (twice the largest frame)")]
    QueueSize {
        /// Which queue.
        which: &'static str,
        /// The size given.
        bytes: usize,
        /// The smallest valid size for the maximum message.
        min: usize,
    },
    /// A timing is zero or inconsistent.
    #[error("timing is invalid: {0}")]
    Timing(&'static str),
    /// A count that must be at least 1 is 0 (`ack_every_msgs`, ...).
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The shared-memory file prefix is not usable in a file name.
    #[error("shm prefix {0:?} is invalid: use up to 64 ASCII letters, digits, '_', '-' or '.', not starting with '.'")]
    ShmPrefix(String),
    /// A setting is above its largest value.
    #[error("{field} is {value}; at most {max}")]
    TooLarge {
        /// Which setting.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Its largest value.
        max: u64,
    },
    /// A server with no listen address.
    #[error("no listen address configured")]
    NoListenAddress,
    /// A server with neither transport enabled.
    #[error("no transport enabled: enable TCP, SHM or both")]
    NoTransport,
    /// A credential longer than a login carries.
    #[error("credential of {0} bytes exceeds the protocol's {max}", max = crate::login::MAX_CREDENTIAL_LEN)]
    Credential(usize),
}

impl SessionConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message == 0 || self.max_message > MAX_MESSAGE {
            return Err(ConfigError::MaxMessage(self.max_message.into()));
        }
        self.liveness.validate().map_err(ConfigError::Timing)?;
        if self.acks.every_msgs == 0 {
            return Err(ConfigError::Zero("acks.every_msgs"));
        }
        Ok(())
    }

    /// Checks that a queue of `bytes` carries the largest message (`which` names it
    /// in the error).
    ///
    /// ```
    /// use tcpshm_proto::session::{ConfigError, SessionConfig};
    /// let c = SessionConfig { max_message: 1000, ..SessionConfig::default() };
    /// assert_eq!(c.validate_queue("send queue", 4096), Ok(()));
    /// assert_eq!(c.validate_queue("send queue", 3000), Err(ConfigError::QueueSize { which: "send queue", bytes: 3000, min: 4096 }));
    /// ```
    pub fn validate_queue(&self, which: &'static str, bytes: usize) -> Result<(), ConfigError> {
        let min = crate::frame::min_queue_bytes(self.max_message as usize);
        if !bytes.is_power_of_two() || bytes < min {
            return Err(ConfigError::QueueSize { which, bytes, min });
        }
        Ok(())
    }
}

/// One side of a session: numbers, liveness, link state, limits and counters. See
/// the [module docs](self).
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    seq: SeqState,
    live: Liveness,
    up: bool,
    reason: Option<CloseReason>,
    local: Limits,
    peer: Option<Limits>,
    counters: Counters,
}

impl Session {
    /// A session resumed from its persisted numbers (fresh: all zero), not linked:
    /// its close reason is [`CloseReason::NotConnected`] until the first login of
    /// this process. `queue_capacity` is this side's send-queue size, told at login.
    pub fn new(cfg: SessionConfig, queue_capacity: u64, send_range: SeqRange, consumed: u64) -> Session {
        Session {
            cfg,
            seq: SeqState::resume(cfg.acks, send_range, consumed),
            live: Liveness::new(cfg.liveness, 0),
            up: false,
            reason: Some(CloseReason::NotConnected),
            local: Limits { max_message: cfg.max_message, queue_capacity },
            peer: None,
            counters: Counters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The numbers.
    pub fn seq(&self) -> &SeqState {
        &self.seq
    }

    /// The numbers, for a medium restoring persisted counts before a login
    /// ([`SeqState::restore_acked`], [`SeqState::set_seen`], ...).
    pub fn seq_mut(&mut self) -> &mut SeqState {
        &mut self.seq
    }

    /// The liveness clocks of the current (or last) link.
    pub fn liveness(&self) -> &Liveness {
        &self.live
    }

    // ---- limits -----------------------------------------------------------------

    /// This side's limits, as told at login.
    pub fn local_limits(&self) -> Limits {
        self.local
    }

    /// The peer's limits: told at this process's last login, or remembered from an
    /// earlier one ([`remember_peer_limits`](Self::remember_peer_limits)).
    pub fn peer_limits(&self) -> Option<Limits> {
        self.peer
    }

    /// Takes the peer's limits from the persisted session before the first login of
    /// this process, so that messages pushed before it are held to them too.
    pub fn remember_peer_limits(&mut self, peer: Limits) {
        if peer.max_message > 0 {
            self.peer = Some(peer);
        }
    }

    /// The largest message this side may push now: its own limit, lowered to the
    /// peer's when known.
    #[inline]
    pub fn max_send(&self) -> usize {
        match self.peer {
            Some(p) if p.max_message < self.local.max_message => p.max_message as usize,
            _ => self.local.max_message as usize,
        }
    }

    /// Whether a `len`-byte message may be pushed: [`SendError::TooLarge`] naming the
    /// limit ([`Limit::Peer`] or [`Limit::Local`]) if not. Never sent, never queued.
    #[inline]
    pub fn check_send(&self, len: usize) -> Result<(), SendError> {
        if len <= self.max_send() {
            return Ok(());
        }
        let limit = match self.peer {
            Some(p) if p.max_message < self.local.max_message => Limit::Peer,
            _ => Limit::Local,
        };
        Err(SendError::TooLarge { len, max: self.max_send(), limit })
    }

    /// Whether a received message of `len` payload bytes is within this side's limit
    /// (what it told the peer): [`ProtocolError::OverLimit`] if not.
    #[inline]
    pub fn check_receive(&self, len: usize) -> Result<(), ProtocolError> {
        let max = self.local.max_message as usize;
        if len > max {
            return Err(ProtocolError::OverLimit { len, max });
        }
        Ok(())
    }

    // ---- login and link ---------------------------------------------------------

    /// This side's numbers for a login request or reply; discards the stream's
    /// received-but-not-popped state (see [`SeqState::begin_login`]). A live link is
    /// ended first ([`CloseReason::Replaced`]): the caller drops its medium.
    pub fn login_numbers(&mut self) -> SessionNumbers {
        if self.up {
            self.close(CloseReason::Replaced);
        }
        self.seq.begin_login()
    }

    /// Whether `peer`'s numbers fit ours, changing nothing (see
    /// [`SeqState::after_login`]).
    pub fn check_login(&self, peer: &SessionNumbers) -> Result<Resume, SeqMismatch> {
        self.seq.check_login(peer)
    }

    /// Completes a login at `now` with the peer's numbers and limits: checks the
    /// numbers, brings the link up, starts the liveness clocks. On a mismatch
    /// nothing changes.
    pub fn after_login(&mut self, peer: &SessionNumbers, limits: Limits, now: Nanos) -> Result<Resume, SeqMismatch> {
        let resume = self.seq.after_login(peer)?;
        let mut acks = self.cfg.acks;
        if self.cfg.ack_by_peer_queue {
            acks = acks.with_peer_queue_capacity(limits.queue_capacity);
        }
        self.seq.set_ack_policy(acks);
        if limits.max_message > 0 {
            self.peer = Some(limits);
        }
        self.counters.acked += resume.newly_acked;
        self.live = Liveness::new(self.cfg.liveness, now);
        self.up = true;
        self.reason = None;
        Ok(resume)
    }

    /// Whether the link is up.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Brings the link down with `reason`. Returns whether it was up; when it was
    /// already down its first reason stays.
    pub fn close(&mut self, reason: CloseReason) -> bool {
        let was = self.up;
        self.up = false;
        if was || self.reason.is_none() {
            self.reason = Some(reason);
        }
        // Received-but-unpopped stream messages are gone with the link: the peer
        // resends them from the consumed count.
        self.seq.begin_login();
        was
    }

    /// Records why the last attempt to bring the link up failed (a refused login),
    /// while it is down; the reason replaces the previous one.
    pub fn refused(&mut self, reason: CloseReason) {
        if !self.up {
            self.reason = Some(reason);
        }
    }

    /// Why the link is down (`None` while up).
    pub fn close_reason(&self) -> Option<&CloseReason> {
        if self.up {
            None
        } else {
            self.reason.as_ref()
        }
    }

    /// Takes new persisted numbers while the link is down (the medium that holds them
    /// changed: a shared-memory file was replaced). The counters of this process and
    /// the peer's limits are kept.
    pub fn renumber(&mut self, send_range: SeqRange, consumed: u64, seen: u64) {
        let mut seq = SeqState::resume(*self.seq.ack_policy(), send_range, consumed);
        seq.set_seen(seen);
        self.seq = seq;
    }

    /// A session reset (a new epoch): fresh numbers, the peer's limits forgotten, the
    /// link down. The counters of this process are kept.
    pub fn reset(&mut self, queue_capacity: u64) {
        self.seq = SeqState::new(self.cfg.acks);
        self.local.queue_capacity = queue_capacity;
        self.peer = None;
        if self.up {
            self.close(CloseReason::Replaced);
        }
    }

    // ---- send side --------------------------------------------------------------

    /// A message was pushed: returns its seq.
    #[inline]
    pub fn on_push(&mut self) -> u64 {
        self.counters.pushed += 1;
        self.seq.on_push()
    }

    /// The last `n` pushed messages were dropped before they were written (an aborted
    /// batch): their seqs are given back (see [`SeqState::on_discard`]). Returns how
    /// many were.
    #[inline]
    pub fn on_discard(&mut self, n: u64) -> u64 {
        let n = self.seq.on_discard(n);
        self.counters.pushed = self.counters.pushed.saturating_sub(n);
        n
    }

    /// `n` queued messages were written on the link (see [`SeqState::on_sent`]).
    #[inline]
    pub fn on_sent(&mut self, n: u64) {
        let n = n.min(self.seq.unsent());
        let first = self.seq.on_sent(n);
        self.counters.sent += first;
        self.counters.resent += n - first;
    }

    /// The peer acknowledged `ack` of our messages: returns how many became
    /// acknowledged (see [`SeqState::on_ack`]).
    #[inline]
    pub fn on_ack(&mut self, ack: u64) -> Result<u64, ProtocolError> {
        let n = self.seq.on_ack(ack)?;
        self.counters.acked += n;
        Ok(n)
    }

    /// The ack to put in the next frame written.
    #[inline]
    pub fn ack_to_send(&self) -> u64 {
        self.seq.ack_to_send()
    }

    /// A frame carrying `ack` was written at `now`.
    #[inline]
    pub fn on_ack_sent(&mut self, ack: u64) {
        self.seq.on_ack_sent(ack);
    }

    /// Whether a standalone ack is due.
    #[inline]
    pub fn ack_due(&self) -> bool {
        self.up && self.seq.ack_due()
    }

    // ---- receive side -----------------------------------------------------------

    /// A user message arrived on a stream (see [`SeqState::on_receive`]).
    #[inline]
    pub fn on_receive(&mut self, seq: u64) -> Result<(), ProtocolError> {
        self.seq.on_receive(seq)?;
        self.counters.received += 1;
        Ok(())
    }

    /// What a message at the head of a ring is (see [`SeqState::classify`]).
    #[inline]
    pub fn classify(&self, seq: u64) -> Inbound {
        self.seq.classify(seq)
    }

    /// A ring message was seen for the first time (counted as received).
    #[inline]
    pub fn on_ring_received(&mut self) {
        self.counters.received += 1;
    }

    /// The user popped a message (see [`SeqState::on_pop`]).
    #[inline]
    pub fn on_pop(&mut self, frame_bytes: u64, ring: bool) -> bool {
        let popped = self.seq.on_pop(frame_bytes, ring);
        self.counters.popped += popped as u64;
        popped
    }

    // ---- liveness ---------------------------------------------------------------

    /// Something arrived from the peer at `now`.
    #[inline]
    pub fn on_received(&mut self, now: Nanos) {
        self.live.on_received(now);
    }

    /// A frame left at `now`.
    #[inline]
    pub fn on_sent_at(&mut self, now: Nanos) {
        self.live.on_sent(now);
    }

    /// A heartbeat arrived.
    pub fn on_heartbeat_received(&mut self) {
        self.counters.heartbeats_received += 1;
    }

    /// A heartbeat was written at `now`.
    pub fn on_heartbeat_sent(&mut self, now: Nanos) {
        self.counters.heartbeats_sent += 1;
        self.live.on_sent(now);
    }

    /// Whether a heartbeat is due at `now` (only while up).
    #[inline]
    pub fn heartbeat_due(&self, now: Nanos) -> bool {
        self.up && self.live.heartbeat_due(now)
    }

    /// The close reason if the peer was silent for longer than the timeout at `now`
    /// (only while up).
    #[inline]
    pub fn timed_out(&self, now: Nanos) -> Option<CloseReason> {
        if !self.up {
            return None;
        }
        self.live.timed_out(now).map(|silent_ns| CloseReason::Timeout { silent_ns })
    }

    /// When the next liveness timer fires (`None` while down).
    #[inline]
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.up.then(|| self.live.next_deadline())
    }

    // ---- counters ---------------------------------------------------------------

    /// The counters, with the session's numbers filled in.
    pub fn counters(&self) -> Counters {
        Counters {
            next_seq: self.seq.next_seq(),
            consumed: self.seq.consumed(),
            peer_consumed: self.seq.acked(),
            ..self.counters
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(cfg: SessionConfig) -> Session {
        let mut s = Session::new(cfg, 1 << 16, SeqRange::default(), 0);
        s.after_login(&SessionNumbers::default(), Limits { max_message: 1 << 20, queue_capacity: 1 << 16 }, 100)
            .unwrap();
        s
    }

    #[test]
    fn starts_down_not_connected_and_keeps_the_first_reason() {
        let mut s = Session::new(SessionConfig::default(), 0, SeqRange::default(), 0);
        assert!(!s.is_up());
        assert_eq!(s.close_reason(), Some(&CloseReason::NotConnected));
        assert!(!s.close(CloseReason::Requested));
        assert_eq!(s.close_reason(), Some(&CloseReason::NotConnected), "a close while down keeps the reason");
        assert_eq!(s.next_deadline(), None);
        assert!(!s.heartbeat_due(u64::MAX));
        assert_eq!(s.timed_out(u64::MAX), None);
        let mut s = up(SessionConfig::default());
        assert!(s.close(CloseReason::PeerDied));
        assert!(!s.close(CloseReason::Requested));
        assert_eq!(s.close_reason(), Some(&CloseReason::PeerDied));
    }

    #[test]
    fn limits_name_the_side() {
        let cfg = SessionConfig { max_message: 1000, ..SessionConfig::default() };
        let mut s = Session::new(cfg, 0, SeqRange::default(), 0);
        assert_eq!(s.check_send(1000), Ok(()));
        assert_eq!(s.check_send(1001), Err(SendError::TooLarge { len: 1001, max: 1000, limit: Limit::Local }));
        s.remember_peer_limits(Limits { max_message: 500, queue_capacity: 0 });
        assert_eq!(s.check_send(501), Err(SendError::TooLarge { len: 501, max: 500, limit: Limit::Peer }));
        // A peer that accepts more than we do: our own limit holds.
        s.after_login(&SessionNumbers::default(), Limits { max_message: 5000, queue_capacity: 0 }, 0).unwrap();
        assert_eq!(s.check_send(1001), Err(SendError::TooLarge { len: 1001, max: 1000, limit: Limit::Local }));
        assert_eq!(s.check_receive(1000), Ok(()));
        assert_eq!(s.check_receive(1001), Err(ProtocolError::OverLimit { len: 1001, max: 1000 }));
        // Unknown peer limits (0) are not remembered.
        let mut s = Session::new(cfg, 0, SeqRange::default(), 0);
        s.remember_peer_limits(Limits::default());
        assert_eq!(s.peer_limits(), None);
    }

    #[test]
    fn login_sets_acks_from_the_peer_queue_and_starts_the_clocks() {
        let s = up(SessionConfig::default());
        assert_eq!(s.seq().ack_policy().every_bytes, (1 << 16) / 4);
        assert_eq!(s.next_deadline(), Some(100 + 1_000_000_000));
        let s = up(SessionConfig { ack_by_peer_queue: false, ..SessionConfig::default() });
        assert_eq!(s.seq().ack_policy().every_bytes, u64::MAX);
    }

    #[test]
    fn login_numbers_replace_a_live_link() {
        let mut s = up(SessionConfig::default());
        s.login_numbers();
        assert_eq!(s.close_reason(), Some(&CloseReason::Replaced));
    }

    #[test]
    fn counters_follow_the_numbers() {
        let mut s = up(SessionConfig::default());
        for _ in 0..5 {
            s.on_push();
        }
        s.on_sent(5);
        s.on_ack(3).unwrap();
        s.on_receive(0).unwrap();
        assert!(s.on_pop(24, false));
        s.on_heartbeat_sent(200);
        s.on_heartbeat_received();
        let c = s.counters();
        assert_eq!((c.pushed, c.sent, c.resent, c.acked, c.received, c.popped), (5, 5, 0, 3, 1, 1));
        assert_eq!((c.next_seq, c.consumed, c.peer_consumed, c.queued()), (5, 1, 3, 2));
        assert_eq!((c.heartbeats_sent, c.heartbeats_received), (1, 1));
        // A reconnect from the peer's consumed count: the rest are resends.
        s.login_numbers();
        s.after_login(
            &SessionNumbers { consumed: 3, seen: 3, send_range: SeqRange::new(0, 1).unwrap() },
            Limits::default(),
            300,
        )
        .unwrap();
        s.on_sent(2);
        assert_eq!((s.counters().sent, s.counters().resent), (5, 2));
    }

    #[test]
    fn reset_starts_fresh() {
        let mut s = up(SessionConfig::default());
        s.on_push();
        s.reset(4096);
        assert_eq!((s.seq().next_seq(), s.local_limits().queue_capacity, s.peer_limits()), (0, 4096, None));
        assert!(!s.is_up());
    }

    #[test]
    fn config_validation() {
        let c = SessionConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            SessionConfig { max_message: MAX_MESSAGE + 1, ..c }.validate(),
            Err(ConfigError::MaxMessage(u64::from(MAX_MESSAGE) + 1))
        );
        assert!(matches!(
            SessionConfig { liveness: LivenessConfig { heartbeat_interval: 0, timeout: 1 }, ..c }.validate(),
            Err(ConfigError::Timing(_))
        ));
        assert_eq!(
            SessionConfig { acks: AckPolicy { every_msgs: 0, every_bytes: 1 }, ..c }.validate(),
            Err(ConfigError::Zero("acks.every_msgs"))
        );
    }
}
