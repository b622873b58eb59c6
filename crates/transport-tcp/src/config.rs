//! How a byte stream is read and written: buffer size and per-call budgets.

/// Settings of a byte-stream medium.
///
/// ```
/// let cfg = tcpshm_transport_tcp::StreamConfig::default();
/// assert_eq!((cfg.recv_buffer, cfg.write_budget, cfg.read_budget), (64 * 1024, 1 << 20, 1 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Initial bytes of the receive buffer (default 64 KiB, at least 1 KiB). It grows
    /// only when a single frame does not fit in it, up to the largest frame, or when
    /// the user keeps messages unpopped, up to the peer's queue; then it is reused:
    /// no allocation per message.
    pub recv_buffer: usize,
    /// Bytes written at most per call of `poll` (default 1 MiB, at least 1), so one
    /// busy connection cannot starve the others polled by the same thread.
    pub write_budget: usize,
    /// Bytes read at most per call of `poll` (default 1 MiB, at least 1): the same
    /// fairness on the receive side.
    pub read_budget: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig { recv_buffer: 64 * 1024, write_budget: 1 << 20, read_budget: 1 << 20 }
    }
}
