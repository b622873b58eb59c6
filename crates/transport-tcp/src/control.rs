//! Control frames waiting to be written: a small fixed buffer, written at frame
//! boundaries, resumed at the byte where a write stopped.

use crate::io::write_some;
use std::io::{self, Write};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;

/// Bytes of the pending-control buffer: room for two of the largest control frames.
pub const CONTROL_QUEUE_BYTES: usize = 2 * MAX_CONTROL_FRAME_LEN;

/// Whole control frames (acks, heartbeats, a login, a close) waiting to go out. No
/// allocation: a fixed buffer; a frame that does not fit is refused, not split.
///
/// ```
/// use tcpshm_transport_tcp::ControlQueue;
/// let mut q = ControlQueue::new();
/// assert!(q.stage(&tcpshm_proto::encode::heartbeat(0, 0)));
/// let mut out = Vec::new();
/// assert_eq!(q.write_to(&mut out).unwrap(), Some(24));
/// assert!(!q.pending());
/// ```
pub struct ControlQueue {
    buf: [u8; CONTROL_QUEUE_BYTES],
    len: usize,
    pos: usize,
}

impl core::fmt::Debug for ControlQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ControlQueue").field("pending", &(self.len - self.pos)).finish()
    }
}

impl Default for ControlQueue {
    fn default() -> Self {
        ControlQueue::new()
    }
}

impl ControlQueue {
    /// An empty queue.
    pub const fn new() -> ControlQueue {
        ControlQueue { buf: [0; CONTROL_QUEUE_BYTES], len: 0, pos: 0 }
    }

    /// Whether bytes wait to be written.
    #[inline]
    pub fn pending(&self) -> bool {
        self.pos < self.len
    }

    /// Whether a write stopped part way through the pending bytes (what is left goes
    /// out before anything else).
    pub fn mid_frame(&self) -> bool {
        self.pos > 0 && self.pos < self.len
    }

    /// Forgets everything (the link is gone).
    pub fn clear(&mut self) {
        self.len = 0;
        self.pos = 0;
    }

    /// Appends whole frames; `false` (nothing appended) if they do not fit.
    pub fn stage(&mut self, frames: &[u8]) -> bool {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        }
        let Some(dst) = self.buf.get_mut(self.len..self.len + frames.len()) else { return false };
        dst.copy_from_slice(frames);
        self.len += frames.len();
        true
    }

    /// Writes what is pending, as far as the stream takes it now: `Ok(Some(n))` bytes
    /// written (possibly fewer than pending), `Ok(None)` if the stream was full.
    pub fn write_to<S: Write + ?Sized>(&mut self, s: &mut S) -> io::Result<Option<usize>> {
        let n = write_some(s, &self.buf[self.pos..self.len])?;
        if let Some(n) = n {
            self.pos += n;
            if self.pos == self.len {
                self.pos = 0;
                self.len = 0;
            }
        }
        Ok(n)
    }
}
