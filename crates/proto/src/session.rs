//! Sequence/ack bookkeeping of one persistent connection, as a pure state type.
//!
//! [`Session`] does no I/O and reads no clock: a transport tells it what happened
//! (pushed, written, acked, received, popped, logged in, the time `now`) and asks it
//! what to do (what to resend, whether an ack is valid, whether a standalone ack or a
//! heartbeat is due, whether the peer timed out).
//!
//! # The numbers
//!
//! Every user message has a `u64` sequence number: 0 for the first one a side ever
//! pushes in a session, then 1, 2, …. A count and a seq are the same thing: "the
//! peer consumed 5" means it popped seqs `0..5` and the next one it wants is 5.
//!
//! ```text
//!  send side (our messages)                       receive side (the peer's messages)
//!
//!    acked        sent         next_seq             consumed        received
//!  ───┬────────────┬─────────────┬───              ───┬───────────────┬───
//!     │ in flight  │   unsent    │                    │ not yet popped│
//!     │ (written,  │ (queued,    │                    │ (received,    │
//!     │ not acked) │  not yet    │                    │  buffered)    │
//!     │            │  written)   │
//!   all of acked..next_seq is still in the send queue
//! ```
//!
//! * `acked`: how many of our messages the peer has consumed (the largest ack seen);
//!   the first seq still in our send queue.
//! * `sent`: the seq of the next message to write on *this* connection.
//! * `next_seq`: the seq the next pushed message gets.
//! * `received`: the next seq we expect from the peer.
//! * `consumed`: how many of the peer's messages our user popped (the commit point,
//!   and the ack we send).
//!
//! Invariants: `acked <= sent <= next_seq` and `consumed <= received`. Nothing a peer
//! sends can break them: an impossible ack or seq is an error and is not applied.
//!
//! # Login and resend
//!
//! At login each side advertises its `consumed` and its send range
//! `acked..next_seq` ([`Session::begin_login`]) and, given the peer's,
//! [`Session::after_login`] checks that the two fit and sets `sent` to the peer's
//! consumed count: everything from there is written again, in order. Messages we had
//! received but not popped are discarded at `begin_login` (the peer resends them),
//! so a message is popped exactly once.
//!
//! ```
//! use tcpshm_proto::session::{SeqRange, Session, SessionConfig};
//!
//! // Our side: 10 messages pushed, 4 acknowledged, 7 written before a disconnect.
//! let mut s = Session::resume(SessionConfig::default(), SeqRange::new(4, 10).unwrap(), 0);
//! let mine = s.begin_login();
//! assert_eq!((mine.consumed, mine.send_range), (0, SeqRange::new(4, 10).unwrap()));
//!
//! // The peer had consumed 6 of ours (its ack for 5 and 6 was lost with the link):
//! let resume = s.after_login(6, SeqRange::new(0, 0).unwrap(), 1_000).unwrap();
//! assert_eq!((resume.resend_from, resume.resend, resume.newly_acked), (6, 4, 2));
//! assert_eq!((s.acked(), s.sent(), s.next_seq()), (6, 6, 10));
//! ```

use crate::error::ProtocolError;
use crate::transport::Nanos;

/// A send-queue range `first_unacked..next`: the seqs a side still holds (pushed,
/// not yet acknowledged). Always `first_unacked <= next`.
///
/// ```
/// use tcpshm_proto::session::SeqRange;
/// let r = SeqRange::new(3, 8).unwrap();
/// assert_eq!((r.first_unacked(), r.next(), r.len()), (3, 8, 5));
/// assert!(SeqRange::new(8, 3).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqRange {
    first_unacked: u64,
    next: u64,
}

impl SeqRange {
    /// The range `first_unacked..next`; `None` if it is inverted.
    pub const fn new(first_unacked: u64, next: u64) -> Option<SeqRange> {
        if first_unacked <= next {
            Some(SeqRange { first_unacked, next })
        } else {
            None
        }
    }

    /// The first seq still held (the peer's consumed count as this side last heard).
    pub const fn first_unacked(&self) -> u64 {
        self.first_unacked
    }

    /// The seq the next pushed message will get.
    pub const fn next(&self) -> u64 {
        self.next
    }

    /// Messages in the range.
    pub const fn len(&self) -> u64 {
        self.next - self.first_unacked
    }

    /// Whether the range is empty.
    pub const fn is_empty(&self) -> bool {
        self.next == self.first_unacked
    }
}

/// When a session sends standalone acks and heartbeats, and when the peer times out.
///
/// ```
/// use tcpshm_proto::session::SessionConfig;
/// let c = SessionConfig::default().with_peer_queue_capacity(1 << 20);
/// assert_eq!(c.ack_every_bytes, 1 << 18);
/// assert_eq!(c.ack_every_msgs, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A standalone ack is due once this many popped messages are unacknowledged
    /// (default 64). Acks also ride on every frame we send, so this matters only for
    /// a one-way stream, where it keeps the sender's queue from filling up between
    /// heartbeats. At least 1.
    pub ack_every_msgs: u64,
    /// A standalone ack is due once the popped-but-unacknowledged frames total this
    /// many bytes (default: unbounded). Set it to a share of the peer's send-queue
    /// capacity with [`with_peer_queue_capacity`](Self::with_peer_queue_capacity), so
    /// large messages are acked before the peer's queue fills.
    pub ack_every_bytes: u64,
    /// Send a heartbeat when nothing was sent for this long (default 1 s).
    pub heartbeat_interval: Nanos,
    /// The peer is considered gone when nothing was received for longer than this
    /// (default 10 s). Must be well above `heartbeat_interval`.
    pub timeout: Nanos,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ack_every_msgs: 64,
            ack_every_bytes: u64::MAX,
            heartbeat_interval: 1_000_000_000,
            timeout: 10_000_000_000,
        }
    }
}

impl SessionConfig {
    /// Acks once a quarter of the peer's send-queue capacity (`bytes`) is popped and
    /// unacknowledged: the peer never waits for a heartbeat to free its queue.
    pub fn with_peer_queue_capacity(mut self, bytes: u64) -> Self {
        self.ack_every_bytes = (bytes / 4).max(1);
        self
    }
}

/// The sequence numbers of the two sides do not fit together at login: one side lost
/// state. The server reports it as the login refusal
/// [`SeqMismatch`](crate::login::LoginStatus::SeqMismatch); resuming would lose or
/// repeat messages, so the connection must not proceed (the operator decides: reset
/// the session, e.g. with a new server name, or restore the lost files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeqMismatch {
    /// The peer reports fewer of our messages consumed than it had already
    /// acknowledged: the peer lost its receive state (its consumed count went back),
    /// and the messages in between were dropped from our queue, so we cannot resend
    /// them.
    #[error(
        "the peer lost receive state: it reports {peer_consumed} of our messages consumed but had already \
         acknowledged {acked}; messages {peer_consumed}..{acked} are gone from our queue"
    )]
    PeerLostReceived {
        /// The peer's consumed count in its login.
        peer_consumed: u64,
        /// The largest ack we had applied.
        acked: u64,
    },
    /// The peer reports more of our messages consumed than we ever pushed: this side
    /// lost its send queue (or the peer talked to another instance of us).
    #[error(
        "this side lost send state: the peer reports {peer_consumed} of our messages consumed but we \
         have only pushed {next_seq}"
    )]
    LocalLostSent {
        /// The peer's consumed count in its login.
        peer_consumed: u64,
        /// Our next seq.
        next_seq: u64,
    },
    /// The peer's send queue starts after our consumed count: this side lost its
    /// receive state (our consumed count went back), and the peer already dropped the
    /// messages in between.
    #[error(
        "this side lost receive state: we consumed {consumed} of the peer's messages but its queue starts \
         at {peer_first_unacked}; messages {consumed}..{peer_first_unacked} are gone from the peer's queue"
    )]
    LocalLostReceived {
        /// Our consumed count.
        consumed: u64,
        /// The first seq in the peer's send queue.
        peer_first_unacked: u64,
    },
    /// We consumed more of the peer's messages than it ever pushed: the peer lost its
    /// send queue (or we talked to another instance of it).
    #[error("the peer lost send state: we consumed {consumed} of its messages but it has only pushed {peer_next}")]
    PeerLostSent {
        /// Our consumed count.
        consumed: u64,
        /// The peer's next seq.
        peer_next: u64,
    },
}

impl SeqMismatch {
    /// Whether the peer is the side that lost state (otherwise this side did).
    ///
    /// ```
    /// use tcpshm_proto::session::SeqMismatch;
    /// assert!(SeqMismatch::PeerLostSent { consumed: 5, peer_next: 2 }.peer_lost_state());
    /// assert!(!SeqMismatch::LocalLostSent { peer_consumed: 5, next_seq: 2 }.peer_lost_state());
    /// ```
    pub fn peer_lost_state(&self) -> bool {
        matches!(self, SeqMismatch::PeerLostReceived { .. } | SeqMismatch::PeerLostSent { .. })
    }
}

/// What one side advertises at login (its login request or reply carries these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginState {
    /// How many of the peer's messages this side consumed.
    pub consumed: u64,
    /// This side's send queue.
    pub send_range: SeqRange,
}

/// The outcome of a successful [`Session::after_login`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The first seq to write on the new connection (the peer's consumed count).
    pub resend_from: u64,
    /// How many queued messages are to be written (`next_seq - resend_from`).
    pub resend: u64,
    /// How many messages the login acknowledged that no ack had before: drop them
    /// from the send queue.
    pub newly_acked: u64,
}

/// The sequence/ack state of one connection (both directions). See the
/// [module docs](self).
///
/// ```
/// use tcpshm_proto::session::{Session, SessionConfig};
///
/// let mut s = Session::new(SessionConfig { ack_every_msgs: 2, ..SessionConfig::default() });
/// s.begin_login();
/// s.after_login(0, Default::default(), 0).unwrap();
/// assert_eq!(s.on_push(), 0);
/// assert_eq!(s.on_sent(1), 1);
/// assert_eq!(s.on_ack(1), Ok(1));
/// s.on_receive(0).unwrap();
/// s.on_receive(1).unwrap();
/// s.on_pop(32);
/// assert!(!s.ack_due());
/// s.on_pop(32);
/// assert!(s.ack_due());
/// s.on_ack_sent(s.ack_to_send());
/// assert!(!s.ack_due());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    cfg: SessionConfig,
    acked: u64,
    sent: u64,
    next_seq: u64,
    /// Highest `sent` ever reached in this process: writes below it are resends.
    sent_high: u64,
    received: u64,
    consumed: u64,
    last_ack_sent: u64,
    /// Bytes of frames popped since the last ack that covered them all.
    unacked_bytes: u64,
    last_recv_at: Nanos,
    last_send_at: Nanos,
}

impl Session {
    /// A fresh session: nothing pushed, nothing consumed.
    pub fn new(cfg: SessionConfig) -> Session {
        Session::resume(cfg, SeqRange::default(), 0)
    }

    /// A session resumed from persisted state: our send queue holds `send_range`, and
    /// we consumed `consumed` of the peer's messages. Queued messages count as
    /// resends when written (they may have left before the restart).
    pub fn resume(cfg: SessionConfig, send_range: SeqRange, consumed: u64) -> Session {
        Session {
            cfg,
            acked: send_range.first_unacked,
            sent: send_range.first_unacked,
            next_seq: send_range.next,
            sent_high: send_range.next,
            received: consumed,
            consumed,
            last_ack_sent: consumed,
            unacked_bytes: 0,
            last_recv_at: 0,
            last_send_at: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Replaces the configuration (e.g. once the login told the peer's queue
    /// capacity: [`SessionConfig::with_peer_queue_capacity`]).
    pub fn set_config(&mut self, cfg: SessionConfig) {
        self.cfg = cfg;
    }

    /// How many of our messages the peer consumed (first seq still queued).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Seq of the next message to write on this connection.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Seq the next pushed message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Next seq expected from the peer.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// How many of the peer's messages our user popped.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The largest ack we sent on this connection (the login counts as one).
    pub fn last_ack_sent(&self) -> u64 {
        self.last_ack_sent
    }

    /// Our send queue, `acked..next_seq`.
    pub fn send_range(&self) -> SeqRange {
        SeqRange { first_unacked: self.acked, next: self.next_seq }
    }

    /// Messages queued but not yet written on this connection.
    pub fn unsent(&self) -> u64 {
        self.next_seq - self.sent
    }

    /// When a frame last arrived (as told by [`on_frame_received`](Self::on_frame_received)).
    pub fn last_recv_at(&self) -> Nanos {
        self.last_recv_at
    }

    /// When a frame was last written (as told by [`on_frame_sent`](Self::on_frame_sent)).
    pub fn last_send_at(&self) -> Nanos {
        self.last_send_at
    }

    // ---- login ------------------------------------------------------------------

    /// Starts a login: returns what this side advertises and discards the receive
    /// side's buffered state (`received = consumed`). The transport must drop every
    /// received-but-not-popped message at this moment — the peer resends them from
    /// `consumed` — and must not pop until [`after_login`](Self::after_login).
    pub fn begin_login(&mut self) -> LoginState {
        self.received = self.consumed;
        LoginState { consumed: self.consumed, send_range: self.send_range() }
    }

    /// Applies the peer's login numbers: `peer_consumed` (how many of our messages it
    /// consumed) and `peer_range` (its send queue). Checks, in this order:
    ///
    /// 1. `acked <= peer_consumed` (else [`SeqMismatch::PeerLostReceived`]),
    /// 2. `peer_consumed <= next_seq` (else [`SeqMismatch::LocalLostSent`]),
    /// 3. `peer_range.first_unacked <= consumed` (else [`SeqMismatch::LocalLostReceived`]),
    /// 4. `consumed <= peer_range.next` (else [`SeqMismatch::PeerLostSent`]).
    ///
    /// On success the login counts as an ack (`acked = peer_consumed`), writing
    /// restarts at `sent = peer_consumed`, the receive side expects `consumed` next,
    /// and both liveness clocks start at `now`. On error nothing changes.
    pub fn after_login(&mut self, peer_consumed: u64, peer_range: SeqRange, now: Nanos) -> Result<Resume, SeqMismatch> {
        if peer_consumed < self.acked {
            return Err(SeqMismatch::PeerLostReceived { peer_consumed, acked: self.acked });
        }
        if peer_consumed > self.next_seq {
            return Err(SeqMismatch::LocalLostSent { peer_consumed, next_seq: self.next_seq });
        }
        if peer_range.first_unacked > self.consumed {
            return Err(SeqMismatch::LocalLostReceived {
                consumed: self.consumed,
                peer_first_unacked: peer_range.first_unacked,
            });
        }
        if self.consumed > peer_range.next {
            return Err(SeqMismatch::PeerLostSent { consumed: self.consumed, peer_next: peer_range.next });
        }
        let newly_acked = peer_consumed - self.acked;
        self.acked = peer_consumed;
        self.sent = peer_consumed;
        self.received = self.consumed;
        self.last_ack_sent = self.consumed;
        self.unacked_bytes = 0;
        self.last_recv_at = now;
        self.last_send_at = now;
        Ok(Resume { resend_from: peer_consumed, resend: self.next_seq - peer_consumed, newly_acked })
    }

    // ---- send side --------------------------------------------------------------

    /// A message was pushed: returns its seq.
    pub fn on_push(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// `n` queued messages were written on this connection (from `sent` on). Returns
    /// how many of them were written for the first time in this process (the rest
    /// are resends). `n` is clamped to [`unsent`](Self::unsent).
    pub fn on_sent(&mut self, n: u64) -> u64 {
        let end = self.sent + n.min(self.unsent());
        let first = end.saturating_sub(self.sent.max(self.sent_high));
        self.sent = end;
        self.sent_high = self.sent_high.max(end);
        first
    }

    /// The peer acknowledged (consumed) `ack` of our messages. Returns how many
    /// messages became acknowledged (drop them from the send queue). An ack at or
    /// behind the last one is old news (`Ok(0)`); an ack beyond what was written on
    /// this connection is [`ProtocolError::AckBeyondSent`] and is not applied.
    pub fn on_ack(&mut self, ack: u64) -> Result<u64, ProtocolError> {
        if ack <= self.acked {
            return Ok(0);
        }
        if ack > self.sent {
            return Err(ProtocolError::AckBeyondSent { ack, sent: self.sent });
        }
        let n = ack - self.acked;
        self.acked = ack;
        Ok(n)
    }

    // ---- receive side -----------------------------------------------------------

    /// A user message with `seq` arrived. It must be the next one expected
    /// ([`ProtocolError::SeqGap`] otherwise, not applied).
    pub fn on_receive(&mut self, seq: u64) -> Result<(), ProtocolError> {
        if seq != self.received {
            return Err(ProtocolError::SeqGap { expected: self.received, got: seq });
        }
        self.received += 1;
        Ok(())
    }

    /// The user popped a received message whose frame is `frame_bytes` long (for the
    /// byte-based ack threshold). Returns `false`, changing nothing, if no received
    /// message was left to pop.
    pub fn on_pop(&mut self, frame_bytes: u64) -> bool {
        if self.consumed >= self.received {
            return false;
        }
        self.consumed += 1;
        self.unacked_bytes = self.unacked_bytes.saturating_add(frame_bytes);
        true
    }

    /// The ack to put in the next frame we write: our consumed count.
    pub fn ack_to_send(&self) -> u64 {
        self.consumed
    }

    /// A frame carrying `ack` was written (a user frame's piggybacked ack, a
    /// heartbeat, or a standalone ack). An ack older than one already sent changes
    /// nothing.
    pub fn on_ack_sent(&mut self, ack: u64) {
        let ack = ack.min(self.consumed);
        if ack > self.last_ack_sent {
            self.last_ack_sent = ack;
        }
        if self.last_ack_sent == self.consumed {
            self.unacked_bytes = 0;
        }
    }

    /// Whether a standalone ack frame should be written now: some popped messages
    /// are unacknowledged and they reach [`SessionConfig::ack_every_msgs`] messages
    /// or [`SessionConfig::ack_every_bytes`] bytes.
    pub fn ack_due(&self) -> bool {
        let n = self.consumed - self.last_ack_sent;
        n > 0 && (n >= self.cfg.ack_every_msgs || self.unacked_bytes >= self.cfg.ack_every_bytes)
    }

    // ---- liveness ---------------------------------------------------------------

    /// Something arrived from the peer at `now` (any frame, or bytes the transport
    /// cannot read yet because its receive buffer is full: the peer is alive).
    pub fn on_frame_received(&mut self, now: Nanos) {
        self.last_recv_at = self.last_recv_at.max(now);
    }

    /// A frame was written at `now`.
    pub fn on_frame_sent(&mut self, now: Nanos) {
        self.last_send_at = self.last_send_at.max(now);
    }

    /// Whether a heartbeat is due: nothing was written for
    /// [`SessionConfig::heartbeat_interval`].
    pub fn heartbeat_due(&self, now: Nanos) -> bool {
        now.saturating_sub(self.last_send_at) >= self.cfg.heartbeat_interval
    }

    /// `Some(silent_ns)` if nothing arrived for longer than
    /// [`SessionConfig::timeout`]: close the connection with
    /// [`CloseReason::Timeout`](crate::CloseReason::Timeout).
    pub fn timed_out(&self, now: Nanos) -> Option<Nanos> {
        let silent = now.saturating_sub(self.last_recv_at);
        (silent > self.cfg.timeout).then_some(silent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: u64, b: u64) -> SeqRange {
        SeqRange::new(a, b).unwrap()
    }

    fn logged_in(cfg: SessionConfig) -> Session {
        let mut s = Session::new(cfg);
        s.begin_login();
        s.after_login(0, SeqRange::default(), 0).unwrap();
        s
    }

    #[test]
    fn seq_range_refuses_inverted() {
        assert!(SeqRange::new(1, 0).is_none());
        assert!(SeqRange::new(u64::MAX, 0).is_none());
        assert!(range(5, 5).is_empty());
        assert_eq!(range(0, u64::MAX).len(), u64::MAX);
    }

    /// Every combination of small numbers: after_login agrees with the four-rule model,
    /// and a refusal changes nothing.
    #[test]
    fn after_login_matches_model_exhaustively() {
        const N: u64 = 5;
        for acked in 0..N {
            for next in acked..N {
                for consumed in 0..N {
                    for pc in 0..N + 1 {
                        for pf in 0..N + 1 {
                            for pn in pf..N + 1 {
                                let mut s = Session::resume(SessionConfig::default(), range(acked, next), consumed);
                                s.begin_login();
                                let before = s.clone();
                                let got = s.after_login(pc, range(pf, pn), 7);
                                let want = if pc < acked {
                                    Err(SeqMismatch::PeerLostReceived { peer_consumed: pc, acked })
                                } else if pc > next {
                                    Err(SeqMismatch::LocalLostSent { peer_consumed: pc, next_seq: next })
                                } else if pf > consumed {
                                    Err(SeqMismatch::LocalLostReceived { consumed, peer_first_unacked: pf })
                                } else if consumed > pn {
                                    Err(SeqMismatch::PeerLostSent { consumed, peer_next: pn })
                                } else {
                                    Ok(Resume { resend_from: pc, resend: next - pc, newly_acked: pc - acked })
                                };
                                assert_eq!(
                                    got, want,
                                    "acked {acked} next {next} consumed {consumed} peer {pc} {pf}..{pn}"
                                );
                                if got.is_err() {
                                    assert_eq!(s, before, "a refused login changed the state");
                                } else {
                                    assert_eq!((s.acked(), s.sent(), s.next_seq()), (pc, pc, next));
                                    assert_eq!(
                                        (s.received(), s.consumed(), s.last_ack_sent()),
                                        (consumed, consumed, consumed)
                                    );
                                    assert_eq!((s.last_recv_at(), s.last_send_at()), (7, 7));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn after_login_at_u64_extremes_does_not_overflow() {
        let mut s = Session::resume(SessionConfig::default(), range(u64::MAX - 1, u64::MAX), u64::MAX);
        s.begin_login();
        let r = s.after_login(u64::MAX, range(0, u64::MAX), 0).unwrap();
        assert_eq!(r, Resume { resend_from: u64::MAX, resend: 0, newly_acked: 1 });
        let mut s = Session::new(SessionConfig::default());
        assert_eq!(
            s.after_login(u64::MAX, range(u64::MAX, u64::MAX), 0),
            Err(SeqMismatch::LocalLostSent { peer_consumed: u64::MAX, next_seq: 0 })
        );
    }

    #[test]
    fn mismatch_names_the_side_that_lost_state() {
        let mut s = Session::resume(SessionConfig::default(), range(5, 9), 3);
        let e = s.after_login(2, range(0, 9), 0).unwrap_err();
        assert!(e.peer_lost_state());
        assert!(e.to_string().contains("peer lost receive state"), "{e}");
        let e = s.after_login(10, range(0, 9), 0).unwrap_err();
        assert!(!e.peer_lost_state());
        assert!(e.to_string().contains("this side lost send state"), "{e}");
        let e = s.after_login(5, range(4, 9), 0).unwrap_err();
        assert!(!e.peer_lost_state());
        assert!(e.to_string().contains("this side lost receive state"), "{e}");
        let e = s.after_login(5, range(0, 2), 0).unwrap_err();
        assert!(e.peer_lost_state());
        assert!(e.to_string().contains("peer lost send state"), "{e}");
    }

    #[test]
    fn begin_login_discards_received_not_popped() {
        let mut s = logged_in(SessionConfig::default());
        for seq in 0..5 {
            s.on_receive(seq).unwrap();
        }
        assert!(s.on_pop(24));
        assert!(s.on_pop(24));
        let st = s.begin_login();
        assert_eq!(st.consumed, 2);
        assert_eq!(s.received(), 2);
        // The peer resends from 2.
        assert_eq!(s.on_receive(3), Err(ProtocolError::SeqGap { expected: 2, got: 3 }));
        s.on_receive(2).unwrap();
    }

    #[test]
    fn push_and_send_count_first_time_and_resends() {
        let mut s = logged_in(SessionConfig::default());
        for want in 0..10 {
            assert_eq!(s.on_push(), want);
        }
        assert_eq!(s.unsent(), 10);
        assert_eq!(s.on_sent(4), 4);
        assert_eq!(s.on_sent(100), 6, "clamped to the unsent count");
        assert_eq!(s.sent(), 10);
        assert_eq!(s.on_sent(1), 0);
        assert_eq!(s.on_ack(3), Ok(3));
        // Reconnect: the peer consumed 3; 7 are written again, all resends.
        s.begin_login();
        assert_eq!(s.after_login(3, SeqRange::default(), 0).unwrap().resend, 7);
        assert_eq!(s.on_sent(5), 0);
        s.on_push();
        assert_eq!(s.on_sent(3), 1, "two resends and the new message");
        assert_eq!(s.unsent(), 0);
    }

    #[test]
    fn resumed_queue_counts_as_resend() {
        let mut s = Session::resume(SessionConfig::default(), range(2, 6), 0);
        s.begin_login();
        s.after_login(2, SeqRange::default(), 0).unwrap();
        assert_eq!(s.on_sent(4), 0);
        s.on_push();
        assert_eq!(s.on_sent(1), 1);
    }

    #[test]
    fn ack_rules() {
        let mut s = logged_in(SessionConfig::default());
        for _ in 0..10 {
            s.on_push();
        }
        s.on_sent(6);
        assert_eq!(s.on_ack(0), Ok(0), "ack of nothing");
        assert_eq!(s.on_ack(2), Ok(2));
        assert_eq!(s.on_ack(2), Ok(0), "repeated ack");
        assert_eq!(s.on_ack(1), Ok(0), "old ack is ignored");
        assert_eq!(s.acked(), 2, "old ack did not move acked back");
        // Pushed but not written: still beyond what was sent.
        assert_eq!(s.on_ack(7), Err(ProtocolError::AckBeyondSent { ack: 7, sent: 6 }));
        assert_eq!(s.on_ack(u64::MAX), Err(ProtocolError::AckBeyondSent { ack: u64::MAX, sent: 6 }));
        assert_eq!(s.acked(), 2, "a bad ack is never applied");
        assert_eq!(s.on_ack(6), Ok(4));
        assert_eq!(s.send_range(), range(6, 10));
    }

    #[test]
    fn ack_beyond_sent_after_reconnect() {
        // After a reconnect `sent` restarts at the peer's consumed count: an ack for
        // messages written only on the old connection is beyond what this one sent.
        let mut s = logged_in(SessionConfig::default());
        for _ in 0..5 {
            s.on_push();
        }
        s.on_sent(5);
        s.begin_login();
        s.after_login(1, SeqRange::default(), 0).unwrap();
        assert_eq!(s.on_ack(3), Err(ProtocolError::AckBeyondSent { ack: 3, sent: 1 }));
        s.on_sent(2);
        assert_eq!(s.on_ack(3), Ok(2));
    }

    #[test]
    fn receive_must_be_in_sequence() {
        let mut s = logged_in(SessionConfig::default());
        s.on_receive(0).unwrap();
        assert_eq!(s.on_receive(0), Err(ProtocolError::SeqGap { expected: 1, got: 0 }), "duplicate");
        assert_eq!(s.on_receive(2), Err(ProtocolError::SeqGap { expected: 1, got: 2 }), "gap");
        assert_eq!(s.received(), 1);
        s.on_receive(1).unwrap();
    }

    #[test]
    fn pop_never_passes_received() {
        let mut s = logged_in(SessionConfig::default());
        assert!(!s.on_pop(24));
        s.on_receive(0).unwrap();
        assert!(s.on_pop(24));
        assert!(!s.on_pop(24));
        assert_eq!(s.consumed(), 1);
    }

    #[test]
    fn ack_due_by_message_count() {
        let mut s = logged_in(SessionConfig { ack_every_msgs: 3, ..SessionConfig::default() });
        for seq in 0..10 {
            s.on_receive(seq).unwrap();
        }
        assert!(!s.ack_due(), "nothing popped");
        s.on_pop(24);
        s.on_pop(24);
        assert!(!s.ack_due());
        s.on_pop(24);
        assert!(s.ack_due());
        // A piggybacked ack older than the pops does not reset the count fully.
        s.on_ack_sent(1);
        assert_eq!(s.last_ack_sent(), 1);
        assert!(!s.ack_due(), "2 unacknowledged < 3");
        s.on_pop(24);
        assert!(s.ack_due());
        s.on_ack_sent(s.ack_to_send());
        assert!(!s.ack_due());
        // An ack claimed beyond consumed is clamped (the transport never does this).
        s.on_ack_sent(100);
        assert_eq!(s.last_ack_sent(), 4);
    }

    #[test]
    fn ack_due_by_bytes() {
        let cfg = SessionConfig::default().with_peer_queue_capacity(4096);
        let mut s = logged_in(cfg);
        for seq in 0..4 {
            s.on_receive(seq).unwrap();
        }
        s.on_pop(512);
        assert!(!s.ack_due());
        s.on_pop(512);
        assert!(s.ack_due(), "1024 bytes = a quarter of the peer's queue");
        // A stale ack (covering only the first pop) keeps the byte count: still due.
        s.on_ack_sent(1);
        assert!(s.ack_due());
        s.on_ack_sent(2);
        assert!(!s.ack_due());
        assert_eq!(SessionConfig::default().with_peer_queue_capacity(0).ack_every_bytes, 1);
    }

    #[test]
    fn heartbeat_and_timeout() {
        let cfg = SessionConfig { heartbeat_interval: 100, timeout: 1000, ..SessionConfig::default() };
        let mut s = Session::new(cfg);
        s.begin_login();
        s.after_login(0, SeqRange::default(), 5000).unwrap();
        assert!(!s.heartbeat_due(5000));
        assert!(!s.heartbeat_due(5099));
        assert!(s.heartbeat_due(5100));
        s.on_frame_sent(5100);
        assert!(!s.heartbeat_due(5150));
        assert_eq!(s.timed_out(6000), None, "exactly the timeout is not yet longer than it");
        assert_eq!(s.timed_out(6001), Some(1001));
        s.on_frame_received(5500);
        assert_eq!(s.timed_out(6001), None);
        // A caller clock that goes backwards never underflows, and never moves the
        // liveness clocks back.
        assert_eq!(s.timed_out(0), None);
        assert!(!s.heartbeat_due(0));
        s.on_frame_received(10);
        assert_eq!(s.last_recv_at(), 5500);
    }
}
