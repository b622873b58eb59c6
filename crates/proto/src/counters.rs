//! What a connection counts: per process, and the session's persisted numbers.

use core::fmt;

/// Counters of a connection. The first group counts what happened in this process
/// (since the connection was opened); the second is the session's own numbering,
/// persisted with it, which survives restarts: a restarted sender reads
/// [`next_seq`](Self::next_seq) to know how many of its messages are already queued,
/// a restarted receiver reads [`consumed`](Self::consumed) to know where it is.
///
/// ```
/// use tcpshm_proto::Counters;
/// let mut c = Counters::default();
/// (c.next_seq, c.peer_consumed) = (10, 7);
/// assert_eq!(c.queued(), 3);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Messages pushed by the user in this process.
    pub pushed: u64,
    /// Messages written to the medium for the first time in this process.
    pub sent: u64,
    /// Messages written again after a reconnect.
    pub resent: u64,
    /// Messages the peer acknowledged (consumed) in this process.
    pub acked: u64,
    /// Messages received from the peer in this process.
    pub received: u64,
    /// Messages popped by the user in this process.
    pub popped: u64,
    /// Heartbeats sent in this process.
    pub heartbeats_sent: u64,
    /// Heartbeats received in this process.
    pub heartbeats_received: u64,
    /// Session: the seq the next pushed message gets, i.e. how many messages this
    /// side ever pushed in the session (persisted).
    pub next_seq: u64,
    /// Session: how many of the peer's messages this side consumed (persisted).
    pub consumed: u64,
    /// Session: how many of this side's messages the peer consumed, as last heard
    /// (the first seq still queued).
    pub peer_consumed: u64,
}

impl Counters {
    /// Messages in the send queue not yet consumed by the peer.
    pub fn queued(&self) -> u64 {
        self.next_seq.saturating_sub(self.peer_consumed)
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushed {} sent {} resent {} acked {} received {} popped {} heartbeats {}/{} | session next_seq {} \
             consumed {} peer_consumed {} queued {}",
            self.pushed,
            self.sent,
            self.resent,
            self.acked,
            self.received,
            self.popped,
            self.heartbeats_sent,
            self.heartbeats_received,
            self.next_seq,
            self.consumed,
            self.peer_consumed,
            self.queued()
        )
    }
}
