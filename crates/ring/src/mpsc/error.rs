//! Typed errors of the many-to-one queue.

use crate::var::Corrupt;
use core::fmt;

/// Why a push failed (a full queue is not an error: the push returns `Ok(false)`).
///
/// ```
/// use tcpshm_ring::mpsc::{MpscQueue, PushError};
/// let (mut p, _c) = MpscQueue::with_capacity(64);
/// assert_eq!(p.push(1, &[0; 25]), Err(PushError::TooLarge { len: 25, max: 24 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The payload is larger than the queue's [`max_payload`](super::Producer::max_payload):
    /// it would never fit.
    TooLarge {
        /// Payload bytes asked for.
        len: usize,
        /// The largest payload.
        max: usize,
    },
    /// An index in the region is impossible (in shared memory: another process is
    /// faulty or hostile). Nothing was written.
    Corrupt(Corrupt),
}

impl From<Corrupt> for PushError {
    fn from(c: Corrupt) -> PushError {
        PushError::Corrupt(c)
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::TooLarge { len, max } => {
                write!(f, "a {len}-byte message is larger than the queue's largest ({max} bytes)")
            }
            PushError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PushError {}
