//! How a stream connection behaves: message limit, buffers, per-poll budgets, acks,
//! heartbeats and timeout.

use tcpshm_proto::session::SessionConfig;

/// Configuration of a [`StreamConnection`](crate::StreamConnection).
///
/// ```
/// use tcpshm_transport_tcp::StreamConfig;
/// use tcpshm_proto::session::SessionConfig;
///
/// let cfg = StreamConfig {
///     max_payload: 64 * 1024,
///     session: SessionConfig { heartbeat_interval: 100_000_000, timeout: 1_000_000_000, ..SessionConfig::default() },
///     ..StreamConfig::default()
/// };
/// assert_eq!(cfg.write_budget, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Largest user message, in bytes, both ways (default 1 MiB). Sending is also
    /// capped by what the store can hold ([`Store::max_payload`], about half its
    /// capacity); a received frame longer than this closes the connection with a
    /// protocol error, so a hostile peer cannot make the receive buffer grow beyond it.
    ///
    /// [`Store::max_payload`]: tcpshm_persist::Store::max_payload
    pub max_payload: usize,
    /// Initial bytes of the receive buffer (default 64 KiB, at least 1 KiB). It grows
    /// only when a single frame does not fit in it, up to the largest frame, and is
    /// then reused: no allocation per message.
    pub recv_buffer: usize,
    /// Bytes written at most per call of `poll`/`on_writable`/`push` (default 1 MiB,
    /// at least 1), so one busy connection cannot starve the others polled by the same
    /// thread.
    pub write_budget: usize,
    /// Bytes read at most per call of `poll`/`on_readable` (default 1 MiB, at least
    /// 1): the same fairness on the receive side. Each `read` asks for at most this.
    pub read_budget: usize,
    /// Acks, heartbeats and timeout (see [`SessionConfig`]).
    pub session: SessionConfig,
    /// Whether a standalone ack also goes out once a quarter of the peer's send-queue
    /// capacity (as told at login) is popped and unacknowledged (default true), so a
    /// peer streaming large messages never waits for a heartbeat to free its queue.
    pub ack_by_peer_queue: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_payload: 1 << 20,
            recv_buffer: 64 * 1024,
            write_budget: 1 << 20,
            read_budget: 1 << 20,
            session: SessionConfig::default(),
            ack_by_peer_queue: true,
        }
    }
}

/// Smallest receive buffer: any control frame fits, with room for a few more.
pub(crate) const MIN_RECV_BUFFER: usize = 1024;
