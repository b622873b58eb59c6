//! The contract between a connection's user and the medium that carries it.
//!
//! [`Transport`] is the connection API, the same for TCP, shared memory and a user's
//! own medium: zero-copy [`alloc`](Transport::alloc)/[`push`](Transport::push) into a
//! persistent send queue, [`front`](Transport::front)/[`pop`](Transport::pop) of
//! received messages in place, and [`poll`](Transport::poll) with the caller's clock
//! (the library never reads one). Servers and clients are generic over it, so the hot
//! path is statically dispatched. The `testkit` feature holds the conformance suite
//! every implementation runs.

use crate::counters::Counters;
use crate::error::{Fault, ProtocolError};
use core::fmt;

/// Nanoseconds on the caller's monotonic clock. Only differences are used.
pub type Nanos = u64;

/// A received user message, borrowed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    /// The message type given by the sender (`0..=0xFEFF`).
    pub msg_type: u16,
    /// Its sequence number in this session (0 for the first).
    pub seq: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// Which limit a message is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// This side's configured maximum message.
    Local,
    /// The peer's maximum message, as it told at login (or as remembered from the last
    /// login, before the first one of this process).
    Peer,
    /// What the send queue can hold at all (about half its capacity).
    Queue,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Local => "this side's maximum message",
            Limit::Peer => "the peer's maximum message",
            Limit::Queue => "the send queue's largest message",
        })
    }
}

/// Why a push could not be done. A full queue is not an error (`alloc` returns
/// `Ok(None)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is longer than a limit allows: it is refused here and never sent.
    #[error("message of {len} bytes exceeds {limit} of {max} bytes")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// The maximum.
        max: usize,
        /// Whose limit.
        limit: Limit,
    },
    /// The message type is in the reserved control range.
    #[error("message type {0:#06x} is reserved for control frames (user types are 0..=0xFEFF)")]
    ReservedType(u16),
    /// `push` without a successful `alloc`.
    #[error("push without a successful alloc")]
    NothingAllocated,
    /// The send queue's storage failed or is corrupt (the typed error inside).
    #[error("send queue storage failed: {0}")]
    Storage(Fault),
}

/// Why a connection is (or was last) closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side called `close`.
    #[error("closed by request")]
    Requested,
    /// The peer closed the stream without saying why (or its process ended).
    #[error("the peer closed the connection")]
    RemoteClosed,
    /// The peer sent an orderly close with a reason.
    #[error("the peer closed the connection: {}", remote_text(code, text))]
    RemoteRequested {
        /// The peer's reason code.
        code: crate::close::CloseCode,
        /// The peer's text.
        text: String,
    },
    /// Nothing arrived from the peer for longer than the connection timeout.
    #[error("no traffic from the peer for {silent_ns} ns (timeout)")]
    Timeout {
        /// How long the peer had been silent.
        silent_ns: Nanos,
    },
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// A system call failed.
    #[error("{op} failed: {}", std::io::Error::from_raw_os_error(*errno))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error number.
        errno: i32,
    },
    /// The peer process is gone (shared memory: its lock on the file was released).
    #[error("the peer process died")]
    PeerDied,
    /// Shared state (a ring, a store or a shared-memory file) is corrupt.
    #[error("corrupt shared state: {0}")]
    Corrupt(Fault),
    /// The persistent store or the shared-memory file failed.
    #[error("storage error: {0}")]
    Storage(Fault),
    /// A queued message exceeds what the peer accepts: it can never be delivered.
    #[error("queued message seq {seq} of {len} bytes exceeds the peer's maximum of {max} bytes")]
    LimitExceeded {
        /// The message's seq.
        seq: u64,
        /// Its length.
        len: usize,
        /// The peer's maximum.
        max: usize,
    },
    /// A newer login for the same names replaced this connection.
    #[error("replaced by a newer login of the same client")]
    Replaced,
    /// Not connected yet in this process (messages pushed now wait in the queue).
    #[error("not connected yet")]
    NotConnected,
    /// The server refused the login (of a reconnect).
    #[error("login refused: {status}{}{text}", if text.is_empty() { "" } else { ": " })]
    LoginRefused {
        /// The reason code.
        status: crate::login::LoginStatus,
        /// The server's detail text.
        text: String,
    },
}

/// A peer's close reason as one line: its text, which names the code already when it
/// was made from a [`CloseReason`] (as this library's are), else the code and the text.
fn remote_text(code: &crate::close::CloseCode, text: &str) -> String {
    let name = code.to_string();
    if text.is_empty() {
        name
    } else if text.starts_with(&name) {
        text.to_owned()
    } else {
        format!("{name}: {text}")
    }
}

impl CloseReason {
    /// An I/O reason from an `std::io::Error`.
    ///
    /// ```
    /// use tcpshm_proto::CloseReason;
    /// let e = std::io::Error::from_raw_os_error(104);
    /// assert_eq!(CloseReason::io("read", &e), CloseReason::Io { op: "read", errno: 104 });
    /// ```
    pub fn io(op: &'static str, e: &std::io::Error) -> CloseReason {
        CloseReason::Io { op, errno: e.raw_os_error().unwrap_or(0) }
    }
}

impl From<ProtocolError> for CloseReason {
    fn from(e: ProtocolError) -> Self {
        CloseReason::Protocol(e)
    }
}

/// A persistent, ordered, loss-free connection to one named peer.
///
/// Sending is zero-copy: [`alloc`](Self::alloc) returns the bytes inside the send
/// queue where the message will live; [`push`](Self::push) publishes it. Pushing is
/// allowed while disconnected: the message waits in the persistent queue and leaves
/// on reconnect. Receiving is zero-copy: [`front`](Self::front) borrows the next
/// message in place and [`pop`](Self::pop) consumes it — pop is the commit point: a
/// message popped is never delivered again, a message not popped is delivered again
/// after a crash or reconnect.
///
/// Nothing blocks and nothing reads a clock: [`poll`](Self::poll) does the I/O that is
/// possible now (flush, receive, acks, heartbeats, timeout) given the caller's `now`.
///
/// ```
/// use tcpshm_proto::{Transport, Nanos};
///
/// // A generic echo step works with every transport.
/// fn echo_once<T: Transport>(t: &mut T, now: Nanos) {
///     t.poll(now);
///     let Some(m) = t.front() else { return };
///     let (ty, len) = (m.msg_type, m.payload.len());
///     let mut copy = [0u8; 256];
///     let n = len.min(256);
///     copy[..n].copy_from_slice(&m.payload[..n]);
///     if let Ok(Some(buf)) = t.alloc(n) {
///         buf.copy_from_slice(&copy[..n]);
///         t.push(ty).unwrap();
///         t.pop();
///     }
/// }
/// ```
pub trait Transport {
    /// Reserves space for a `len`-byte message in the send queue and returns it.
    /// `Ok(None)`: the queue is full now (backpressure); `Err(TooLarge)`: never fits.
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError>;

    /// Publishes the last allocated message with `msg_type` (a user type,
    /// `0..=0xFEFF`) and sends what it can now.
    fn push(&mut self, msg_type: u16) -> Result<(), SendError>;

    /// Completes the last allocated message but defers publishing and sending, so a
    /// batch leaves in one write: the message becomes visible to the transport (and
    /// crash-safe) at the next `push`, `pop` or `poll`; a crash before that loses it
    /// as if it had never been pushed.
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError>;

    /// Drops every message completed by [`push_more`](Self::push_more) and not yet
    /// published (and an allocated, unpushed one): they are never sent, and their seqs
    /// are given back — the next push gets the first of them, so the peer sees no gap.
    /// Returns how many were dropped (0 once something published them).
    ///
    /// With `push_more` this makes an all-or-nothing batch: stage every message, then
    /// publish them all (`push` of the last, or `poll`) or drop them all with this — a
    /// batch whose third message finds the queue full need not half-send. A crash
    /// before the publish drops them the same way.
    fn discard_staged(&mut self) -> u64;

    /// The next received message, borrowed in place; `None` if none is available.
    fn front(&mut self) -> Option<Msg<'_>>;

    /// Consumes the message returned by `front` (the commit point). Does nothing if
    /// there is none.
    fn pop(&mut self);

    /// Does the I/O possible now: sends queued frames, receives, applies acks, sends
    /// heartbeats and acks when due, detects a silent peer. Returns whether the
    /// connection is up afterwards.
    fn poll(&mut self, now: Nanos) -> bool;

    /// Closes the connection (the persistent state is kept for a reconnect).
    fn close(&mut self, reason: CloseReason);

    /// Whether the connection is up.
    fn is_connected(&self) -> bool;

    /// Why the connection closed, if it is closed.
    fn close_reason(&self) -> Option<&CloseReason>;

    /// Counters: this process's, and the session's persisted numbers.
    fn counters(&self) -> Counters;

    /// The next moment at which `poll` has timed work to do (a heartbeat, the peer's
    /// timeout), or `None` when nothing is timed (not connected). A caller with
    /// nothing else to do may sleep until then instead of spinning; messages arriving
    /// earlier are not covered (use readiness for those).
    fn next_deadline(&self) -> Option<Nanos> {
        None
    }

    /// Largest message [`alloc`](Self::alloc) accepts.
    fn max_payload(&self) -> usize;
}
