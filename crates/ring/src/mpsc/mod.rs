//! A many-to-one (MPSC) variable-length message queue over a byte region it does not
//! own: any number of producers, on any threads (or, in shared memory, processes),
//! and one consumer.
//!
//! The design is Aeron's many-to-one ring buffer (`ManyToOneRingBuffer`):
//!
//! 1. **Claim.** A producer reserves space for a whole record with one
//!    compare-and-swap of the shared tail (after checking the room against the
//!    consumer's head; a record that would not fit before the end of the ring claims
//!    the rest of the ring too, as padding, so records never wrap). A compare-and-swap
//!    rather than a fetch-add: a fetch-add cannot be taken back when the ring turns out
//!    to be full, and would leave a claim over unconsumed bytes.
//! 2. **Write in place.** It stores the record's header with the length *negated*
//!    (claimed, being written), then writes the payload straight into the ring
//!    ([`Producer::push_with`]: zero-copy).
//! 3. **Commit.** It stores the header with the positive length, with release
//!    ordering. The consumer loads the header at its index with acquire ordering and
//!    reads only a positive length: it never sees half a message.
//!
//! The consumer ([`Consumer`]) reads records in claim order, in place, and releases
//! them by zeroing their bytes and then storing the head (release), so every byte a
//! producer claims is zero and a claimed record whose header was not written yet
//! reads as "nothing here yet", never as an old record. Each producer's messages keep
//! their order; backpressure is a value (`Ok(false)`); a push makes no allocation and
//! no system call.
//!
//! **A producer that dies mid-claim.** A committed message is never lost, but an
//! uncommitted claim blocks the consumer (it reads in claim order). In one process a
//! producer cannot vanish mid-claim without its process: a panicking fill closure is
//! caught by a guard that commits the claim as padding. When the process dies (or for
//! a file-backed queue, when any process that pushed into it died), the claim stays;
//! [`Consumer::recover`] pads it, and with it an interrupted release. It is `unsafe`
//! because padding a *live* producer's claim would be wrong: it runs when no push can
//! be in progress, which a file-backed queue (`shm::MpscRegion`, feature `shm`) proves
//! with an exclusive lock held by its one owning process. Aeron instead lets the
//! consumer pad a claim stuck for longer than a timeout (`unblock`); that is unsound
//! here (a descheduled, live producer would then write into bytes the consumer reuses),
//! so there is no timeout-based unblocking.
//!
//! The region starts with a header at fixed offsets ([`layout`]); indices are
//! free-running `u64` byte counters and everything is an offset, never a pointer, so
//! the same region works on the heap ([`MpscQueue::with_capacity`]) and in a mapping
//! shared by processes ([`init`] then [`attach_raw`]). A region from elsewhere is
//! validated ([`AttachError`]), and every record header is
//! checked before use ([`Corrupt`](crate::var::Corrupt)).
//!
//! ```
//! use tcpshm_ring::mpsc::MpscQueue;
//!
//! let (producer, mut consumer) = MpscQueue::with_capacity(1 << 16);
//! let mut feeds: Vec<_> = (0..4).map(|_| producer.clone()).collect();
//! std::thread::scope(|s| {
//!     for (t, p) in feeds.iter_mut().enumerate() {
//!         s.spawn(move || {
//!             for i in 0..100u32 {
//!                 // Zero-copy: the closure writes the payload in place in the ring.
//!                 while !p.push_with(4, t as u16, |buf| buf.copy_from_slice(&i.to_le_bytes())).unwrap() {
//!                     std::thread::yield_now();
//!                 }
//!             }
//!         });
//!     }
//!     let mut next = [0u32; 4];
//!     while next.iter().sum::<u32>() < 400 {
//!         if let Some(m) = consumer.front().unwrap() {
//!             let t = m.msg_type() as usize;
//!             assert_eq!(m.payload(), next[t].to_le_bytes()); // in order per producer
//!             next[t] += 1;
//!             consumer.pop().unwrap();
//!         }
//!     }
//! });
//! ```

mod consumer;
mod error;
pub mod layout;
mod producer;
pub(crate) mod region;

pub use consumer::{Consumer, Msg, Recovered};
pub use error::PushError;
pub use layout::{check_capacity, max_payload, region_size, HEADER_LEN, MAGIC, MAX_CAPACITY, MIN_CAPACITY, VERSION};
pub use producer::Producer;

use crate::sync::Arc;
use crate::var::{AttachError, InitError};
use region::{HeapRegion, Keep, Ring};

/// Constructors of heap-backed many-to-one queues.
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(4096);
/// p.push(1, b"hello").unwrap();
/// assert_eq!(c.front().unwrap().unwrap().payload(), b"hello");
/// ```
#[derive(Debug)]
pub struct MpscQueue;

impl MpscQueue {
    /// A queue on the heap with at least `capacity` data bytes (rounded up to a power
    /// of two in [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`]). Clone the producer for each
    /// pushing thread.
    ///
    /// ```
    /// let (p, c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(1000);
    /// assert_eq!((p.capacity(), c.max_payload()), (1024, 504));
    /// ```
    pub fn with_capacity(capacity: usize) -> (Producer<'static>, Consumer<'static>) {
        let capacity = capacity.clamp(MIN_CAPACITY, MAX_CAPACITY).next_power_of_two();
        let len = region_size(capacity);
        let heap = Arc::new(HeapRegion::new(len, capacity));
        // SAFETY: we own the fresh allocation of exactly `len` bytes.
        let cap = unsafe { layout::format(heap.base(), len, capacity) }.expect("a rounded capacity is valid");
        let ring = Ring::new(heap.base(), cap, Keep::Heap(heap));
        (Producer::new(ring.clone()), Consumer::new(ring))
    }
}

/// Formats `region` as an empty queue of `capacity` data bytes (zeroing it). The
/// region must be exactly [`region_size`]`(capacity)` bytes and 8-byte aligned (128
/// recommended).
///
/// ```
/// use tcpshm_ring::mpsc;
/// let mut mem = vec![0u64; 56];
/// let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), 448) };
/// assert!(mpsc::init(&mut bytes[..440], 64).is_err());
/// mpsc::init(bytes, 64).unwrap();
/// ```
pub fn init(region: &mut [u8], capacity: usize) -> Result<(), InitError> {
    // SAFETY: `&mut` gives exclusive access to exactly these bytes.
    unsafe { layout::format(region.as_mut_ptr(), region.len(), capacity) }.map(drop)
}

/// Validates a formatted region and returns a producer (clone it for more) and the
/// consumer, which borrow it.
///
/// ```
/// use tcpshm_ring::mpsc;
/// let mut mem = vec![0u64; 56];
/// let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), 448) };
/// assert!(mpsc::attach(bytes).is_err()); // not formatted
/// mpsc::init(bytes, 64).unwrap();
/// let (mut p, mut c) = mpsc::attach(bytes).unwrap();
/// p.push(1, b"x").unwrap();
/// assert_eq!(c.front().unwrap().unwrap().payload(), b"x");
/// ```
pub fn attach(region: &mut [u8]) -> Result<(Producer<'_>, Consumer<'_>), AttachError> {
    // SAFETY: the `&mut` borrow keeps the region alive and unaliased for the ends'
    // lifetime `'_`.
    let cap = unsafe { layout::validate(region.as_mut_ptr(), region.len())? };
    let ring = Ring::new(region.as_mut_ptr(), cap, Keep::Caller);
    Ok((Producer::new(ring.clone()), Consumer::new(ring)))
}

/// Validates a formatted region in raw memory (a shared-memory mapping) and returns a
/// producer and the consumer. A process that only produces drops the consumer (and
/// one that only consumes, the producer): dropping an end writes nothing.
///
/// # Safety
/// - `base..base + len` must stay mapped, readable and writable for as long as any
///   returned end (or a clone) is alive.
/// - Across all processes, at most one live [`Consumer`] may exist for the region at
///   any time; producers may be many.
///
/// Contents written by another process are validated, not trusted: a faulty process
/// yields [`Corrupt`](crate::var::Corrupt) errors, not undefined reads.
///
/// ```
/// use tcpshm_ring::mpsc;
/// let len = mpsc::region_size(256);
/// let mut mem = vec![0u64; len / 8];
/// let base = mem.as_mut_ptr().cast::<u8>();
/// mpsc::init(unsafe { std::slice::from_raw_parts_mut(base, len) }, 256).unwrap();
/// // SAFETY: `mem` outlives both ends and this is the only consumer.
/// let (mut p, mut c) = unsafe { mpsc::attach_raw(base, len) }.unwrap();
/// p.push(2, &[]).unwrap();
/// assert_eq!(c.front().unwrap().unwrap().msg_type(), 2);
/// ```
pub unsafe fn attach_raw(base: *mut u8, len: usize) -> Result<(Producer<'static>, Consumer<'static>), AttachError> {
    // SAFETY: the caller guarantees the memory is mapped for the ends' lifetime.
    let cap = unsafe { layout::validate(base, len)? };
    let ring = Ring::new(base, cap, Keep::Caller);
    Ok((Producer::new(ring.clone()), Consumer::new(ring)))
}

#[cfg(feature = "shm")]
pub(crate) fn ends_of_mapping(
    base: *mut u8,
    capacity: u64,
    mapping: std::sync::Arc<crate::shm::MpscMapping>,
) -> (Producer<'static>, Consumer<'static>) {
    let ring = Ring::new(base, capacity, Keep::File(mapping));
    (Producer::new(ring.clone()), Consumer::new(ring))
}
