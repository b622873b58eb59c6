//! How a store is opened: send-queue capacity and durability policy.

use crate::error::OpenError;
use crate::layout::FRAME_ALIGN;
use tcpshm_ring::var;

/// When changes reach the disk. See the crate documentation for what each mode
/// guarantees and what it costs on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every change is in the shared page cache as soon as the call returns: it
    /// survives a crash of the process (`kill -9`, panic, abort) but not of the
    /// machine (power loss, kernel panic), until the kernel writes the pages back
    /// (within ~30 s by default) or [`Store::flush`](crate::Store::flush) is called.
    /// No system call per operation.
    #[default]
    Process,
    /// Group commit: after every `every` operations (a pushed message, an ack, a
    /// consumed-count change each count as one) the store writes its dirty pages and
    /// waits for the disk (`msync(MS_SYNC)` of the dirty part of the mapping), so the
    /// state as of that moment survives power loss. [`Store::flush`](crate::Store::flush)
    /// does the same on demand. `every: 0` syncs only on `flush`; `every: 1` syncs
    /// after every operation (one disk flush per message).
    Sync {
        /// Operations per sync; 0 = only on explicit `flush`.
        every: u32,
    },
}

/// Configuration of a store.
///
/// ```
/// use tcpshm_persist::{Durability, Options};
/// let o = Options::new(1 << 20).durability(Durability::Sync { every: 64 });
/// assert_eq!(o.capacity, 1 << 20);
/// assert!(Options::new(1000).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Data bytes of the send queue: a power of two, at least 256. A message of `n`
    /// bytes takes `24 + n` bytes rounded up to 8; the largest message is about half
    /// the capacity ([`Options::max_payload`]).
    pub capacity: usize,
    /// When changes reach the disk.
    pub durability: Durability,
}

/// Smallest send-queue capacity.
pub const MIN_CAPACITY: usize = 256;

impl Options {
    /// Options with this capacity and [`Durability::Process`].
    pub const fn new(capacity: usize) -> Options {
        Options { capacity, durability: Durability::Process }
    }

    /// Sets the durability policy.
    pub const fn durability(mut self, d: Durability) -> Options {
        self.durability = d;
        self
    }

    /// Checks the capacity.
    pub fn validate(&self) -> Result<(), OpenError> {
        let cfg = self.ring_config();
        if self.capacity < MIN_CAPACITY || cfg.validate().is_err() {
            return Err(OpenError::Config { capacity: self.capacity, min: MIN_CAPACITY, max: var::MAX_CAPACITY });
        }
        Ok(())
    }

    /// Largest message (payload bytes after the 24-byte header) a store of this
    /// capacity accepts.
    ///
    /// ```
    /// assert_eq!(tcpshm_persist::Options::new(4096).max_payload(), 2048 - 24);
    /// ```
    pub const fn max_payload(&self) -> usize {
        self.ring_config().max_payload() - tcpshm_proto::frame::RING_PREFIX_LEN
    }

    pub(crate) const fn ring_config(&self) -> var::Config {
        var::Config { capacity: self.capacity, align: FRAME_ALIGN }
    }
}
