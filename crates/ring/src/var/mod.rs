//! A variable-length message queue over a byte region the queue does not own.
//!
//! Messages of any length up to [`Config::max_payload`] (half the data area less
//! 8 bytes — a 64 MiB ring carries 32 MiB messages) are stored as contiguous
//! [frames](frame): an 8-byte header (length, `u16` message type, flags) then the
//! payload, padded to the frame alignment. When a frame would not fit before the end
//! of the ring, the producer writes a wrap marker and starts the frame at offset 0, so
//! every payload is one contiguous slice: [`Producer::alloc`] hands out the bytes
//! where the message will live and [`Consumer::front`] borrows them in place
//! (zero-copy both ways).
//!
//! The region starts with a header at fixed offsets ([`layout`]): magic,
//! version, capacity, alignment, then the write and read indices on separate cache-line
//! pairs. Indices are free-running `u64` byte counters, and everything is an offset,
//! never a pointer, so the same region works on the heap ([`VarQueue::with_capacity`])
//! and in a shared-memory mapping seen by two processes ([`init`] then [`attach`], or
//! [`attach_raw`] for a process that holds only one end).
//!
//! **Untrusted memory.** [`attach`] validates a region (magic, version, sizes,
//! indices) and returns a typed [`AttachError`]; while running, each end checks every
//! index and frame header that comes from the other end and returns [`Corrupt`]
//! instead of reading out of bounds. A foreign file, another version or a torn header
//! is refused, never misread.
//!
//! **Crashes.** A frame becomes visible only when the write index is published (one
//! release store), and is released only by the read index store. A process killed
//! between any two instructions leaves the region in a state the other end (or a new
//! process that attaches) continues from: half-written frames were never published.
//!
//! **Frame alignment.** The default is 8 bytes: the smallest that keeps every header an
//! aligned 8-byte word. Aligning frames to 64 bytes (a cache line) would stop two small
//! frames from sharing a line, but it multiplies the ring space a 16-byte message uses
//! by 2.7 (64 instead of 24 bytes) and the bench (`cargo xtask bench ring`) measures it
//! as no faster for small messages, because the producer and consumer are normally a
//! whole batch apart; 8 is the default and [`Config::align`] allows up to 4096.
//!
//! ```
//! use tcpshm_ring::var::{self, Config};
//!
//! // Any 8-aligned byte region: here a Vec<u64>; in production a shared mapping.
//! let cfg = Config::new(4096);
//! let mut mem = vec![0u64; var::region_size(cfg.capacity) / 8];
//! let region: &mut [u8] = unsafe_free_bytes(&mut mem);
//! var::init(region, cfg).unwrap();
//! let (mut p, mut c) = var::attach(region).unwrap();
//! p.alloc(4).unwrap().unwrap().copy_from_slice(b"ping");
//! p.push(1).unwrap();
//! assert_eq!(c.front().unwrap().unwrap().payload(), b"ping");
//!
//! # fn unsafe_free_bytes(v: &mut [u64]) -> &mut [u8] {
//! #     let len = v.len() * 8;
//! #     // SAFETY: u8 has no alignment or validity requirements.
//! #     unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), len) }
//! # }
//! ```

mod consumer;
mod error;
pub mod frame;
pub mod image;
pub mod layout;
mod peer;
mod producer;
pub(crate) mod region;
mod walk;

pub use consumer::{Consumer, Msg, Run};
pub use error::{AllocError, AttachError, Corrupt, InitError, NothingAllocated, PopError};
pub use layout::{region_size, Config, Side, DEFAULT_ALIGN, HEADER_LEN, MAGIC, MAX_CAPACITY, VERSION};
pub(crate) use peer::Link;
pub use peer::Peer;
pub use producer::Producer;

use crate::sync::Arc;
use region::{HeapRegion, Ring};

/// Constructors of heap-backed var queues.
#[derive(Debug)]
pub struct VarQueue;

impl VarQueue {
    /// A queue on the heap with at least `capacity` data bytes (rounded up to a power
    /// of two, at least 32) and the default frame alignment.
    ///
    /// ```
    /// let (p, c) = tcpshm_ring::var::VarQueue::with_capacity(1000);
    /// assert_eq!(p.config().capacity, 1024);
    /// assert_eq!(c.max_payload(), 504);
    /// ```
    pub fn with_capacity(capacity: usize) -> (Producer<'static>, Consumer<'static>) {
        let capacity = capacity.clamp(4 * DEFAULT_ALIGN, MAX_CAPACITY).next_power_of_two();
        Self::with_config(Config::new(capacity)).expect("a rounded capacity is valid")
    }

    /// A queue on the heap with exactly this layout.
    ///
    /// ```
    /// use tcpshm_ring::var::{Config, VarQueue};
    /// let (p, _c) = VarQueue::with_config(Config { capacity: 4096, align: 64 }).unwrap();
    /// assert_eq!(p.frame_size(1), 64);
    /// assert!(VarQueue::with_config(Config::new(100)).is_err());
    /// ```
    pub fn with_config(cfg: Config) -> Result<(Producer<'static>, Consumer<'static>), InitError> {
        cfg.validate()?;
        let len = region_size(cfg.capacity);
        let heap = Arc::new(HeapRegion::new(len, cfg.capacity, cfg.align));
        // SAFETY: we own the fresh allocation of exactly `len` bytes.
        let geo = unsafe { layout::format(heap.base(), len, cfg)? };
        let ring = Ring::new(heap.base(), geo, Some(heap));
        let (lp, lc) = Link::pair();
        Ok((Producer::new(ring.clone(), lp), Consumer::new(ring, lc)))
    }
}

/// Formats `region` as an empty queue with layout `cfg`. The region must be exactly
/// [`region_size`]`(cfg.capacity)` bytes and 8-byte aligned (128 recommended).
///
/// ```
/// use tcpshm_ring::var::{self, Config, InitError};
/// let mut mem = vec![0u64; 100];
/// let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), 800) };
/// assert_eq!(var::init(bytes, Config::new(256)), Err(InitError::RegionSize { need: 640, have: 800 }));
/// var::init(&mut bytes[..640], Config::new(256)).unwrap();
/// ```
pub fn init(region: &mut [u8], cfg: Config) -> Result<(), InitError> {
    // SAFETY: `&mut` gives exclusive access to exactly these bytes.
    unsafe { layout::format(region.as_mut_ptr(), region.len(), cfg) }.map(drop)
}

/// Validates a formatted region and returns its two ends, which borrow it. Each end
/// learns when the other is dropped (`is_abandoned`).
///
/// ```
/// use tcpshm_ring::var::{self, AttachError};
/// let mut mem = vec![0u64; 80];
/// let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), 640) };
/// assert!(matches!(var::attach(bytes), Err(AttachError::BadMagic(0))));
/// ```
pub fn attach(region: &mut [u8]) -> Result<(Producer<'_>, Consumer<'_>), AttachError> {
    // SAFETY: the `&mut` borrow keeps the region alive and unaliased for the ends'
    // lifetime `'_`.
    let geo = unsafe { layout::validate(region.as_mut_ptr(), region.len())? };
    let ring = Ring::new(region.as_mut_ptr(), geo, None);
    let (lp, lc) = Link::pair();
    Ok((Producer::new(ring.clone(), lp), Consumer::new(ring, lc)))
}

/// Validates a formatted region in raw memory (a shared-memory mapping) and returns
/// its two ends. A process that is only the producer (or only the consumer) drops the
/// other end: dropping an end does not touch the region, and neither end tracks the
/// other ([`Peer::Untracked`]): liveness across processes is the caller's (or use
/// `shm::Region` with the `shm` feature, which tracks it with a lock per side).
///
/// # Safety
/// - `base..base + len` must stay mapped, readable and writable for as long as either
///   returned end is alive (they are `'static` because the mapping is not a borrow).
/// - Across all processes, at most one live [`Producer`] and one live [`Consumer`] may
///   exist for the region at any time; a process that crashed holds none. (The
///   shared-memory transport enforces this with a file lock.)
///
/// Contents written by another process are validated, not trusted: a faulty peer
/// yields [`Corrupt`] errors, not undefined reads.
///
/// ```
/// use tcpshm_ring::var::{self, Config};
/// let cfg = Config::new(1024);
/// let len = var::region_size(cfg.capacity);
/// let mut mem = vec![0u64; len / 8];
/// let base = mem.as_mut_ptr().cast::<u8>();
/// var::init(unsafe { std::slice::from_raw_parts_mut(base, len) }, cfg).unwrap();
/// // SAFETY: `mem` outlives both ends and they are the only ones.
/// let (mut p, mut c) = unsafe { var::attach_raw(base, len) }.unwrap();
/// p.alloc(0).unwrap().unwrap();
/// p.push(2).unwrap();
/// assert_eq!(c.front().unwrap().unwrap().msg_type(), 2);
/// ```
pub unsafe fn attach_raw(base: *mut u8, len: usize) -> Result<(Producer<'static>, Consumer<'static>), AttachError> {
    // SAFETY: the caller guarantees the memory is mapped for the ends' lifetime.
    let geo = unsafe { layout::validate(base, len)? };
    let ring = Ring::new(base, geo, None);
    Ok((Producer::new(ring.clone(), Link::Untracked), Consumer::new(ring, Link::Untracked)))
}
