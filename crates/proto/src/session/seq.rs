//! Sequence/ack bookkeeping of one side of a session, as a pure state type.
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
//!    acked        sent         next_seq             consumed        seen
//!  ───┬────────────┬─────────────┬───              ───┬───────────────┬───
//!     │ in flight  │   unsent    │                    │ held, not yet │
//!     │ (written,  │ (queued,    │                    │ popped (in a  │
//!     │ not acked) │  not yet    │                    │ ring we read) │
//!     │            │  written)   │
//!   all of acked..next_seq is still in the send queue
//! ```
//!
//! * `acked`: how many of our messages the peer has consumed (the largest ack seen);
//!   the first seq still in our send queue.
//! * `sent`: the seq of the next message to write on *this* link.
//! * `next_seq`: the seq the next pushed message gets.
//! * `received`: the next seq we expect from a byte stream.
//! * `consumed`: how many of the peer's messages our user popped (the commit point,
//!   and the ack we send).
//! * `seen`: how many of the peer's messages we consumed or hold to read later (a
//!   shared-memory ring keeps the peer's messages across reconnects and restarts;
//!   a byte stream's buffer does not, so there `seen == consumed` at each login).
//!
//! Invariants: `acked <= sent <= next_seq` and `consumed <= received`,
//! `consumed <= seen`. Nothing a peer sends can break them: an impossible ack or seq
//! is an error and is not applied.
//!
//! # Login and resend
//!
//! At login each side advertises its numbers ([`SeqState::begin_login`]) and, given
//! the peer's, [`SeqState::after_login`] checks that the two fit (see there) and sets
//! `sent` to the peer's consumed count: everything from there is written again, in
//! order. Messages received from a stream but not popped are discarded at
//! `begin_login` (the peer resends them), so a message is popped exactly once.
//!
//! ```
//! use tcpshm_proto::login::SessionNumbers;
//! use tcpshm_proto::session::{AckPolicy, SeqRange, SeqState};
//!
//! // Our side: 10 messages pushed, 4 acknowledged, 7 written before a disconnect.
//! let mut s = SeqState::resume(AckPolicy::default(), SeqRange::new(4, 10).unwrap(), 0);
//! let mine = s.begin_login();
//! assert_eq!((mine.consumed, mine.send_range), (0, SeqRange::new(4, 10).unwrap()));
//!
//! // The peer had consumed 6 of ours (its ack for 5 and 6 was lost with the link):
//! let peer = SessionNumbers { consumed: 6, seen: 6, send_range: SeqRange::default() };
//! let resume = s.after_login(&peer).unwrap();
//! assert_eq!((resume.resend_from, resume.resend, resume.newly_acked), (6, 4, 2));
//! assert_eq!((s.acked(), s.sent(), s.next_seq()), (6, 6, 10));
//! ```

use crate::error::ProtocolError;
use crate::login::SessionNumbers;

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

/// When a side sends a standalone ack (acks also ride on every frame it writes, so
/// this matters for a one-way stream, where it keeps the sender's queue from filling
/// up between heartbeats).
///
/// ```
/// use tcpshm_proto::session::AckPolicy;
/// let p = AckPolicy::default().with_peer_queue_capacity(1 << 20);
/// assert_eq!((p.every_msgs, p.every_bytes), (64, 1 << 18));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckPolicy {
    /// A standalone ack is due once this many popped messages are unacknowledged
    /// (default 64). At least 1.
    pub every_msgs: u64,
    /// A standalone ack is due once the popped-but-unacknowledged frames total this
    /// many bytes (default: unbounded; a quarter of the peer's send queue once the
    /// login told its size, see [`with_peer_queue_capacity`](Self::with_peer_queue_capacity)).
    pub every_bytes: u64,
}

impl Default for AckPolicy {
    fn default() -> Self {
        AckPolicy { every_msgs: 64, every_bytes: u64::MAX }
    }
}

impl AckPolicy {
    /// Acks once a quarter of the peer's send-queue capacity (`bytes`; 0 = unknown,
    /// no byte threshold) is popped and unacknowledged: the peer never waits for a
    /// heartbeat to free its queue.
    pub fn with_peer_queue_capacity(mut self, bytes: u64) -> Self {
        self.every_bytes = if bytes == 0 { u64::MAX } else { (bytes / 4).max(1) };
        self
    }
}

/// The sequence numbers of the two sides do not fit together at login: one side lost
/// state. The server refuses such a login
/// ([`LoginStatus::SeqMismatch`](crate::login::LoginStatus::SeqMismatch)); resuming
/// would lose or repeat messages, so the connection must not proceed (the operator
/// decides: reset the session, e.g. with a new server name, or restore the lost files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// The peer consumed or holds more of our messages than we ever pushed: this side
    /// lost its send queue (or the peer talked to another instance of us).
    #[error(
        "this side lost send state: the peer consumed or holds {peer_seen} of our messages but we have only \
         pushed {next_seq}"
    )]
    LocalLostSent {
        /// How many of our messages the peer consumed or holds.
        peer_seen: u64,
        /// Our next seq.
        next_seq: u64,
    },
    /// This side's own record says it pushed more messages than its queue holds: the
    /// queue (a shared-memory file, or the store) was lost or replaced since.
    #[error(
        "this side lost send state: its session record says {recorded} messages were pushed, but its queue \
         ends at {held}"
    )]
    LocalQueueLost {
        /// Messages pushed, as the session record says.
        recorded: u64,
        /// Where the queue that is left ends.
        held: u64,
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
    /// We consumed or hold more of the peer's messages than it ever pushed: the peer
    /// lost its send queue (or we talked to another instance of it).
    #[error("the peer lost send state: we consumed or hold {seen} of its messages but it has only pushed {peer_next}")]
    PeerLostSent {
        /// How many of the peer's messages we consumed or hold.
        seen: u64,
        /// The peer's next seq.
        peer_next: u64,
    },
}

impl SeqMismatch {
    /// Whether the peer is the side that lost state (otherwise this side did).
    ///
    /// ```
    /// use tcpshm_proto::session::SeqMismatch;
    /// assert!(SeqMismatch::PeerLostSent { seen: 5, peer_next: 2 }.peer_lost_state());
    /// assert!(!SeqMismatch::LocalLostSent { peer_seen: 5, next_seq: 2 }.peer_lost_state());
    /// ```
    pub fn peer_lost_state(&self) -> bool {
        matches!(self, SeqMismatch::PeerLostReceived { .. } | SeqMismatch::PeerLostSent { .. })
    }
}

/// The outcome of a successful [`SeqState::after_login`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The first seq to write on the new link (the peer's consumed count).
    pub resend_from: u64,
    /// How many queued messages are to be written (`next_seq - resend_from`).
    pub resend: u64,
    /// How many messages the login acknowledged that no ack had before: drop them
    /// from the send queue.
    pub newly_acked: u64,
}

/// What a message read from a shared-memory ring is, against the consumed count
/// ([`SeqState::classify`]): a ring keeps the peer's messages across reconnects, and
/// after a switch of medium it may still hold copies of messages that reached us
/// another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// The next message to deliver.
    Next,
    /// A copy of a message already consumed: release it without delivering it.
    Stale,
    /// A message after a gap: messages are missing.
    Gap {
        /// The seq expected.
        expected: u64,
    },
}

/// The sequence/ack state of one side of a session (both directions). See the
/// [module docs](crate::session) for the session, and this type's methods for the
/// rules.
///
/// ```
/// use tcpshm_proto::login::SessionNumbers;
/// use tcpshm_proto::session::{AckPolicy, SeqState};
///
/// let mut s = SeqState::new(AckPolicy { every_msgs: 2, ..AckPolicy::default() });
/// s.begin_login();
/// s.after_login(&SessionNumbers::default()).unwrap();
/// assert_eq!(s.on_push(), 0);
/// assert_eq!(s.on_sent(1), 1);
/// assert_eq!(s.on_ack(1), Ok(1));
/// s.on_receive(0).unwrap();
/// s.on_receive(1).unwrap();
/// s.on_pop(32, false);
/// assert!(!s.ack_due());
/// s.on_pop(32, false);
/// assert!(s.ack_due());
/// s.on_ack_sent(s.ack_to_send());
/// assert!(!s.ack_due());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqState {
    acks: AckPolicy,
    acked: u64,
    sent: u64,
    next_seq: u64,
    /// Highest `sent` ever reached in this process: writes below it are resends.
    sent_high: u64,
    /// Messages pushed as the session's record says (0: no record); more than
    /// `next_seq` means the queue lost messages.
    recorded: u64,
    received: u64,
    consumed: u64,
    seen: u64,
    last_ack_sent: u64,
    /// Bytes of frames popped since the last ack that covered them all.
    unacked_bytes: u64,
}

impl SeqState {
    /// A fresh session: nothing pushed, nothing consumed.
    pub fn new(acks: AckPolicy) -> SeqState {
        SeqState::resume(acks, SeqRange::default(), 0)
    }

    /// A session resumed from persisted state: our send queue holds `send_range`, and
    /// we consumed `consumed` of the peer's messages. Queued messages count as
    /// resends when written (they may have left before the restart).
    pub fn resume(acks: AckPolicy, send_range: SeqRange, consumed: u64) -> SeqState {
        SeqState {
            acks,
            acked: send_range.first_unacked,
            sent: send_range.first_unacked,
            next_seq: send_range.next,
            sent_high: send_range.next,
            recorded: 0,
            received: consumed,
            consumed,
            seen: consumed,
            last_ack_sent: consumed,
            unacked_bytes: 0,
        }
    }

    /// The ack policy.
    pub fn ack_policy(&self) -> &AckPolicy {
        &self.acks
    }

    /// Replaces the ack policy (e.g. once the login told the peer's queue capacity).
    pub fn set_ack_policy(&mut self, acks: AckPolicy) {
        self.acks = acks;
    }

    /// How many of our messages the peer consumed (first seq still queued).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Seq of the next message to write on this link.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Seq the next pushed message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Next seq expected from a byte stream.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// How many of the peer's messages our user popped.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// How many of the peer's messages we consumed or hold.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The largest ack we sent on this link (the login counts as one).
    pub fn last_ack_sent(&self) -> u64 {
        self.last_ack_sent
    }

    /// Our send queue, `acked..next_seq`.
    pub fn send_range(&self) -> SeqRange {
        SeqRange { first_unacked: self.acked, next: self.next_seq }
    }

    /// Messages queued but not yet written on this link.
    pub fn unsent(&self) -> u64 {
        self.next_seq - self.sent
    }

    /// Our numbers as a login carries them.
    pub fn numbers(&self) -> SessionNumbers {
        SessionNumbers { consumed: self.consumed, seen: self.seen.max(self.consumed), send_range: self.send_range() }
    }

    // ---- what the medium tells about persisted state ------------------------------

    /// The session's record of how many messages were pushed, kept apart from the
    /// queue (a checkpoint): if the queue that is left ends before it, messages were
    /// lost with a file, and the next login says so ([`SeqMismatch::LocalQueueLost`]).
    pub fn set_recorded(&mut self, pushed: u64) {
        self.recorded = pushed;
    }

    /// How many of the peer's messages this side holds to read later, beyond those it
    /// consumed (the end of a ring it maps). Never below `consumed`.
    pub fn set_seen(&mut self, seen: u64) {
        self.seen = seen.max(self.consumed);
    }

    /// The peer consumed `acked` of our messages as a persisted count says (a
    /// shared-memory ring's consumer count, read while no link is up). Only moves
    /// forward, never beyond `next_seq`.
    pub fn restore_acked(&mut self, acked: u64) {
        let acked = acked.min(self.next_seq);
        if acked > self.acked {
            self.acked = acked;
            self.sent = self.sent.max(acked);
        }
    }

    /// Our consumed count as a persisted count says (the larger of two records).
    /// Only moves forward.
    pub fn restore_consumed(&mut self, consumed: u64) {
        if consumed > self.consumed {
            self.consumed = consumed;
            self.received = self.received.max(consumed);
            self.seen = self.seen.max(consumed);
            self.last_ack_sent = self.last_ack_sent.max(consumed);
        }
    }

    // ---- login ------------------------------------------------------------------

    /// Starts a login: returns what this side advertises and discards the stream's
    /// buffered state (`received = consumed`). The medium must drop every message it
    /// received from a stream but not popped at this moment — the peer resends them
    /// from `consumed` — and must not pop until [`after_login`](Self::after_login).
    pub fn begin_login(&mut self) -> SessionNumbers {
        self.received = self.consumed;
        self.numbers()
    }

    /// Whether the peer's numbers fit ours ([`after_login`](Self::after_login)'s
    /// checks), changing nothing.
    pub fn check_login(&self, peer: &SessionNumbers) -> Result<Resume, SeqMismatch> {
        let seen = self.seen.max(self.consumed);
        if self.recorded > self.next_seq && peer.consumed < self.recorded {
            return Err(SeqMismatch::LocalQueueLost { recorded: self.recorded, held: self.next_seq });
        }
        if peer.consumed < self.acked {
            return Err(SeqMismatch::PeerLostReceived { peer_consumed: peer.consumed, acked: self.acked });
        }
        let peer_seen = peer.seen.max(peer.consumed);
        if peer_seen > self.next_seq {
            return Err(SeqMismatch::LocalLostSent { peer_seen, next_seq: self.next_seq });
        }
        if peer.send_range.first_unacked > self.consumed {
            return Err(SeqMismatch::LocalLostReceived {
                consumed: self.consumed,
                peer_first_unacked: peer.send_range.first_unacked,
            });
        }
        if seen > peer.send_range.next {
            return Err(SeqMismatch::PeerLostSent { seen, peer_next: peer.send_range.next });
        }
        Ok(Resume {
            resend_from: peer.consumed,
            resend: self.next_seq - peer.consumed,
            newly_acked: peer.consumed - self.acked,
        })
    }

    /// Applies the peer's login numbers. Checks, in this order:
    ///
    /// 0. our own record of pushes is not beyond our queue, unless the peer consumed
    ///    everything the record counts (else [`SeqMismatch::LocalQueueLost`]),
    /// 1. `acked <= peer.consumed` (else [`SeqMismatch::PeerLostReceived`]),
    /// 2. `peer.seen <= next_seq` (else [`SeqMismatch::LocalLostSent`]),
    /// 3. `peer.first_unacked <= consumed` (else [`SeqMismatch::LocalLostReceived`]),
    /// 4. `seen <= peer.next` (else [`SeqMismatch::PeerLostSent`]).
    ///
    /// On success the login counts as an ack (`acked = peer.consumed`), writing
    /// restarts at `sent = peer.consumed`, and a stream is expected to deliver
    /// `consumed` next. On error nothing changes.
    pub fn after_login(&mut self, peer: &SessionNumbers) -> Result<Resume, SeqMismatch> {
        let resume = self.check_login(peer)?;
        self.acked = peer.consumed;
        self.sent = peer.consumed;
        self.received = self.consumed;
        self.last_ack_sent = self.consumed;
        self.unacked_bytes = 0;
        Ok(resume)
    }

    // ---- send side --------------------------------------------------------------

    /// A message was pushed: returns its seq.
    #[inline]
    pub fn on_push(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The last `n` pushed messages were dropped before any of them was written (an
    /// aborted batch: the medium discarded its staged frames): their seqs are given
    /// back, so the next push gets the first of them and the peer sees no gap. Only
    /// messages never written in this process (nor queued when it resumed the
    /// session) can be taken back. Returns how many were.
    ///
    /// ```
    /// use tcpshm_proto::session::{AckPolicy, SeqState};
    /// let mut s = SeqState::new(AckPolicy::default());
    /// (s.on_push(), s.on_push(), s.on_push());
    /// s.on_sent(1);
    /// assert_eq!(s.on_discard(5), 2, "one of the three was written already");
    /// assert_eq!(s.on_push(), 1);
    /// ```
    #[inline]
    pub fn on_discard(&mut self, n: u64) -> u64 {
        let n = n.min(self.next_seq - self.sent.max(self.sent_high).min(self.next_seq));
        self.next_seq -= n;
        n
    }

    /// `n` queued messages were written on this link (from `sent` on). Returns how
    /// many of them were written for the first time in this process (the rest are
    /// resends). `n` is clamped to [`unsent`](Self::unsent).
    #[inline]
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
    /// this link is [`ProtocolError::AckBeyondSent`] and is not applied.
    #[inline]
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

    /// A user message with `seq` arrived on a byte stream. It must be the next one
    /// expected ([`ProtocolError::SeqGap`] otherwise, not applied).
    #[inline]
    pub fn on_receive(&mut self, seq: u64) -> Result<(), ProtocolError> {
        if seq != self.received {
            return Err(ProtocolError::SeqGap { expected: self.received, got: seq });
        }
        self.received += 1;
        self.seen = self.seen.max(self.received);
        Ok(())
    }

    /// What a message with `seq` at the head of a shared-memory ring is: the next to
    /// deliver, a stale copy of one already consumed, or one after a gap.
    #[inline]
    pub fn classify(&self, seq: u64) -> Inbound {
        match seq.cmp(&self.consumed) {
            core::cmp::Ordering::Equal => Inbound::Next,
            core::cmp::Ordering::Less => Inbound::Stale,
            core::cmp::Ordering::Greater => Inbound::Gap { expected: self.consumed },
        }
    }

    /// The user popped a message whose frame is `frame_bytes` long (for the
    /// byte-based ack threshold). From a stream, only a received message can be
    /// popped: `false`, changing nothing, if none was left. From a ring (`ring`), the
    /// message was classified [`Inbound::Next`] and is popped as such; the ring's
    /// consumed count, stored by the pop, is its ack, so no ack frame becomes due.
    #[inline]
    pub fn on_pop(&mut self, frame_bytes: u64, ring: bool) -> bool {
        if ring {
            self.received = self.received.max(self.consumed + 1);
            self.consumed += 1;
            self.seen = self.seen.max(self.consumed);
            self.last_ack_sent = self.consumed;
            self.unacked_bytes = 0;
            return true;
        }
        if self.consumed >= self.received {
            return false;
        }
        self.consumed += 1;
        self.seen = self.seen.max(self.consumed);
        self.unacked_bytes = self.unacked_bytes.saturating_add(frame_bytes);
        true
    }

    /// The ack to put in the next frame we write: our consumed count.
    #[inline]
    pub fn ack_to_send(&self) -> u64 {
        self.consumed
    }

    /// A frame carrying `ack` was written (a user frame's piggybacked ack, a
    /// heartbeat, or a standalone ack). An ack older than one already sent changes
    /// nothing.
    #[inline]
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
    /// are unacknowledged and they reach [`AckPolicy::every_msgs`] messages or
    /// [`AckPolicy::every_bytes`] bytes.
    #[inline]
    pub fn ack_due(&self) -> bool {
        let n = self.consumed - self.last_ack_sent;
        n > 0 && (n >= self.acks.every_msgs || self.unacked_bytes >= self.acks.every_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: u64, b: u64) -> SeqRange {
        SeqRange::new(a, b).unwrap()
    }

    fn peer(consumed: u64, seen: u64, first: u64, next: u64) -> SessionNumbers {
        SessionNumbers { consumed, seen, send_range: range(first, next) }
    }

    fn logged_in(acks: AckPolicy) -> SeqState {
        let mut s = SeqState::new(acks);
        s.begin_login();
        s.after_login(&SessionNumbers::default()).unwrap();
        s
    }

    #[test]
    fn discard_gives_back_only_unwritten_seqs() {
        let mut s = logged_in(AckPolicy::default());
        for _ in 0..5 {
            s.on_push();
        }
        assert_eq!(s.on_sent(2), 2);
        assert_eq!(s.on_discard(0), 0);
        assert_eq!(s.on_discard(2), 2);
        assert_eq!((s.next_seq(), s.sent(), s.unsent()), (3, 2, 1));
        assert_eq!(s.on_discard(9), 1, "written messages are never taken back");
        assert_eq!((s.next_seq(), s.unsent()), (2, 0));
        assert_eq!(s.on_push(), 2, "the next push reuses the first seq given back");
        assert_eq!(s.on_sent(1), 1, "and is a first write, not a resend");
        // After a reconnect the resend range is unsent again on the new link, but it
        // was written before (and queued messages of a resumed session may have
        // left before a restart): never taken back.
        s.begin_login();
        s.after_login(&peer(0, 0, 0, 0)).unwrap();
        assert_eq!(s.unsent(), 3);
        assert_eq!(s.on_discard(1), 0);
        s.on_push();
        assert_eq!(s.on_discard(2), 1);
        assert_eq!(s.next_seq(), 3);
        let mut r = SeqState::resume(AckPolicy::default(), range(0, 4), 0);
        assert_eq!(r.on_discard(1), 0, "a resumed queue is not a batch");
    }

    #[test]
    fn seq_range_refuses_inverted() {
        assert!(SeqRange::new(1, 0).is_none());
        assert!(SeqRange::new(u64::MAX, 0).is_none());
        assert!(range(5, 5).is_empty());
        assert_eq!(range(0, u64::MAX).len(), u64::MAX);
    }

    /// Every combination of small numbers: after_login agrees with the rules as
    /// written in its docs, and a refusal changes nothing.
    #[test]
    fn after_login_matches_model_exhaustively() {
        const N: u64 = 4;
        for acked in 0..N {
            for next in acked..N {
                for consumed in 0..N {
                    for seen in consumed..N {
                        for recorded in [0, next, next + 1] {
                            for pc in 0..N + 1 {
                                for ps in pc..N + 1 {
                                    for pf in 0..N + 1 {
                                        for pn in pf..N + 1 {
                                            let mut s =
                                                SeqState::resume(AckPolicy::default(), range(acked, next), consumed);
                                            s.set_seen(seen);
                                            s.set_recorded(recorded);
                                            s.begin_login();
                                            let before = s.clone();
                                            let got = s.after_login(&peer(pc, ps, pf, pn));
                                            let want = if recorded > next && pc < recorded {
                                                Err(SeqMismatch::LocalQueueLost { recorded, held: next })
                                            } else if pc < acked {
                                                Err(SeqMismatch::PeerLostReceived { peer_consumed: pc, acked })
                                            } else if ps > next {
                                                Err(SeqMismatch::LocalLostSent { peer_seen: ps, next_seq: next })
                                            } else if pf > consumed {
                                                Err(SeqMismatch::LocalLostReceived { consumed, peer_first_unacked: pf })
                                            } else if seen > pn {
                                                Err(SeqMismatch::PeerLostSent { seen, peer_next: pn })
                                            } else {
                                                Ok(Resume {
                                                    resend_from: pc,
                                                    resend: next - pc,
                                                    newly_acked: pc - acked,
                                                })
                                            };
                                            assert_eq!(
                                                got, want,
                                                "acked {acked} next {next} consumed {consumed} seen {seen} recorded \
                                                 {recorded} peer {pc}/{ps} {pf}..{pn}"
                                            );
                                            if got.is_err() {
                                                assert_eq!(s, before, "a refused login changed the state");
                                            } else {
                                                assert_eq!((s.acked(), s.sent(), s.next_seq()), (pc, pc, next));
                                                assert_eq!(
                                                    (s.received(), s.consumed(), s.last_ack_sent()),
                                                    (consumed, consumed, consumed)
                                                );
                                            }
                                        }
                                    }
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
        let mut s = SeqState::resume(AckPolicy::default(), range(u64::MAX - 1, u64::MAX), u64::MAX);
        s.begin_login();
        let r = s.after_login(&peer(u64::MAX, u64::MAX, 0, u64::MAX)).unwrap();
        assert_eq!(r, Resume { resend_from: u64::MAX, resend: 0, newly_acked: 1 });
        let mut s = SeqState::new(AckPolicy::default());
        assert_eq!(
            s.after_login(&peer(u64::MAX, u64::MAX, u64::MAX, u64::MAX)),
            Err(SeqMismatch::LocalLostSent { peer_seen: u64::MAX, next_seq: 0 })
        );
    }

    #[test]
    fn mismatch_names_the_side_that_lost_state() {
        let mut s = SeqState::resume(AckPolicy::default(), range(5, 9), 3);
        let e = s.after_login(&peer(2, 2, 0, 9)).unwrap_err();
        assert!(e.peer_lost_state());
        assert!(e.to_string().contains("peer lost receive state"), "{e}");
        let e = s.after_login(&peer(5, 10, 0, 9)).unwrap_err();
        assert!(!e.peer_lost_state());
        assert!(e.to_string().contains("this side lost send state"), "{e}");
        let e = s.after_login(&peer(5, 5, 4, 9)).unwrap_err();
        assert!(!e.peer_lost_state());
        assert!(e.to_string().contains("this side lost receive state"), "{e}");
        let e = s.after_login(&peer(5, 5, 0, 2)).unwrap_err();
        assert!(e.peer_lost_state());
        assert!(e.to_string().contains("peer lost send state"), "{e}");
        s.set_recorded(12);
        let e = s.after_login(&peer(5, 5, 0, 9)).unwrap_err();
        assert_eq!(e, SeqMismatch::LocalQueueLost { recorded: 12, held: 9 });
        assert!(!e.peer_lost_state());
    }

    #[test]
    fn a_held_message_the_peer_no_longer_knows_is_caught() {
        // We hold 3 of the peer's messages in a ring (seen 3) but popped none; the
        // peer, its state lost, has pushed nothing.
        let mut s = SeqState::new(AckPolicy::default());
        s.set_seen(3);
        assert_eq!(s.after_login(&peer(0, 0, 0, 0)), Err(SeqMismatch::PeerLostSent { seen: 3, peer_next: 0 }));
    }

    #[test]
    fn restored_counts_only_move_forward() {
        let mut s = SeqState::resume(AckPolicy::default(), range(2, 6), 4);
        s.restore_acked(1);
        s.restore_consumed(3);
        assert_eq!((s.acked(), s.consumed()), (2, 4));
        s.restore_acked(5);
        s.restore_consumed(7);
        assert_eq!((s.acked(), s.sent(), s.consumed(), s.seen()), (5, 5, 7, 7));
        s.restore_acked(100);
        assert_eq!(s.acked(), 6, "never beyond next_seq");
    }

    #[test]
    fn begin_login_discards_received_not_popped() {
        let mut s = logged_in(AckPolicy::default());
        for seq in 0..5 {
            s.on_receive(seq).unwrap();
        }
        assert!(s.on_pop(24, false));
        assert!(s.on_pop(24, false));
        let st = s.begin_login();
        assert_eq!(st.consumed, 2);
        assert_eq!(s.received(), 2);
        // The peer resends from 2.
        assert_eq!(s.on_receive(3), Err(ProtocolError::SeqGap { expected: 2, got: 3 }));
        s.on_receive(2).unwrap();
    }

    #[test]
    fn push_and_send_count_first_time_and_resends() {
        let mut s = logged_in(AckPolicy::default());
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
        assert_eq!(s.after_login(&peer(3, 3, 0, 0)).unwrap().resend, 7);
        assert_eq!(s.on_sent(5), 0);
        s.on_push();
        assert_eq!(s.on_sent(3), 1, "two resends and the new message");
        assert_eq!(s.unsent(), 0);
    }

    #[test]
    fn resumed_queue_counts_as_resend() {
        let mut s = SeqState::resume(AckPolicy::default(), range(2, 6), 0);
        s.begin_login();
        s.after_login(&peer(2, 2, 0, 0)).unwrap();
        assert_eq!(s.on_sent(4), 0);
        s.on_push();
        assert_eq!(s.on_sent(1), 1);
    }

    #[test]
    fn ack_rules() {
        let mut s = logged_in(AckPolicy::default());
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
        // messages written only on the old link is beyond what this one sent.
        let mut s = logged_in(AckPolicy::default());
        for _ in 0..5 {
            s.on_push();
        }
        s.on_sent(5);
        s.begin_login();
        s.after_login(&peer(1, 1, 0, 0)).unwrap();
        assert_eq!(s.on_ack(3), Err(ProtocolError::AckBeyondSent { ack: 3, sent: 1 }));
        s.on_sent(2);
        assert_eq!(s.on_ack(3), Ok(2));
    }

    #[test]
    fn receive_must_be_in_sequence() {
        let mut s = logged_in(AckPolicy::default());
        s.on_receive(0).unwrap();
        assert_eq!(s.on_receive(0), Err(ProtocolError::SeqGap { expected: 1, got: 0 }), "duplicate");
        assert_eq!(s.on_receive(2), Err(ProtocolError::SeqGap { expected: 1, got: 2 }), "gap");
        assert_eq!(s.received(), 1);
        s.on_receive(1).unwrap();
    }

    #[test]
    fn ring_messages_are_classified_against_consumed() {
        let mut s = SeqState::resume(AckPolicy::default(), SeqRange::default(), 5);
        assert_eq!(s.classify(4), Inbound::Stale);
        assert_eq!(s.classify(5), Inbound::Next);
        assert_eq!(s.classify(7), Inbound::Gap { expected: 5 });
        assert!(s.on_pop(24, true));
        assert_eq!((s.consumed(), s.classify(5), s.classify(6)), (6, Inbound::Stale, Inbound::Next));
    }

    #[test]
    fn a_ring_pop_is_its_own_ack() {
        let acks = AckPolicy { every_msgs: 1, every_bytes: 1 };
        let mut s = SeqState::resume(acks, SeqRange::default(), 0);
        assert!(s.on_pop(4096, true));
        assert!(!s.ack_due(), "the ring's consumed count already told the peer");
        assert_eq!(s.ack_to_send(), 1);
        // A stream pop after it still asks for an ack frame.
        s.on_receive(1).unwrap();
        assert!(s.on_pop(24, false));
        assert!(s.ack_due());
    }

    #[test]
    fn pop_never_passes_received_on_a_stream() {
        let mut s = logged_in(AckPolicy::default());
        assert!(!s.on_pop(24, false));
        s.on_receive(0).unwrap();
        assert!(s.on_pop(24, false));
        assert!(!s.on_pop(24, false));
        assert_eq!(s.consumed(), 1);
    }

    #[test]
    fn ack_due_by_message_count() {
        let mut s = logged_in(AckPolicy { every_msgs: 3, ..AckPolicy::default() });
        for seq in 0..10 {
            s.on_receive(seq).unwrap();
        }
        assert!(!s.ack_due(), "nothing popped");
        s.on_pop(24, false);
        s.on_pop(24, false);
        assert!(!s.ack_due());
        s.on_pop(24, false);
        assert!(s.ack_due());
        // A piggybacked ack older than the pops does not reset the count fully.
        s.on_ack_sent(1);
        assert_eq!(s.last_ack_sent(), 1);
        assert!(!s.ack_due(), "2 unacknowledged < 3");
        s.on_pop(24, false);
        assert!(s.ack_due());
        s.on_ack_sent(s.ack_to_send());
        assert!(!s.ack_due());
        // An ack claimed beyond consumed is clamped (the medium never does this).
        s.on_ack_sent(100);
        assert_eq!(s.last_ack_sent(), 4);
    }

    #[test]
    fn ack_due_by_bytes() {
        let mut s = logged_in(AckPolicy::default().with_peer_queue_capacity(4096));
        for seq in 0..4 {
            s.on_receive(seq).unwrap();
        }
        s.on_pop(512, false);
        assert!(!s.ack_due());
        s.on_pop(512, false);
        assert!(s.ack_due(), "1024 bytes = a quarter of the peer's queue");
        // A stale ack (covering only the first pop) keeps the byte count: still due.
        s.on_ack_sent(1);
        assert!(s.ack_due());
        s.on_ack_sent(2);
        assert!(!s.ack_due());
        assert_eq!(AckPolicy::default().with_peer_queue_capacity(0).every_bytes, u64::MAX);
        assert_eq!(AckPolicy::default().with_peer_queue_capacity(3).every_bytes, 1);
    }
}
