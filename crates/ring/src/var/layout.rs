//! The region layout: a `#[repr(C)]`-style header at fixed offsets, then the data.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"TSHMVARQ"` (u64 LE) |
//! | 8 | 4 | layout version (u32) |
//! | 12 | 4 | frame alignment (u32, power of two, 8..=4096) |
//! | 16 | 8 | capacity of the data area in bytes (u64, power of two) |
//! | 24 | 8 | offset of the data area (u64, = 384) |
//! | 32 | 4 | producer parked (`AtomicU32` futex word: 1 while the producer waits for room) |
//! | 48 | 4 | consumer parked (`AtomicU32` futex word: 1 while the consumer waits for a message) |
//! | 64 | 8 | producer claims (`AtomicU64`: times a process claimed the producer side through `shm::Region` (0: never)) |
//! | 80 | 8 | consumer claims (`AtomicU64`, likewise for the consumer side) |
//! | 128 | 8 | write index (`AtomicU64`, bytes ever written; own cache-line pair) |
//! | 256 | 8 | read index (`AtomicU64`, bytes ever released; own cache-line pair) |
//! | 384 | capacity | frames |
//!
//! Indices are free-running byte counters: a frame at index `i` lives at data offset
//! `i % capacity`, and `write - read` is the number of bytes in use. They are offsets,
//! never pointers, so two processes that map the region at different addresses agree.
//! Fields are accessed through raw offsets rather than a `&Header`, so the region only
//! needs 8-byte alignment (128 keeps the indices on separate cache-line pairs).
//!
//! The words at 32..96 are off the hot path: `push`/`pop` never touch them. The parked
//! words are used only by the waiting helpers (feature `wait`), the claim counters only
//! by `shm::Region` (feature `shm`); both live on the first line pair, which
//! is otherwise read only when an end attaches.
//!
//! Version 2 added those words (version 1 left 32..128 unused): a version-1 peer would
//! neither wake a parked end nor count its claims, so the versions do not mix.

use super::error::{AttachError, InitError};
use crate::identity::{OFF_ALIGN, OFF_CAPACITY, OFF_DATA, OFF_MAGIC, OFF_VERSION};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Magic number at offset 0 (`"TSHMVARQ"`).
pub const MAGIC: u64 = u64::from_le_bytes(*b"TSHMVARQ");
/// Layout version this code writes and reads.
pub const VERSION: u32 = 2;
/// Bytes before the data area.
pub const HEADER_LEN: usize = 384;
/// Default frame alignment: 8 bytes (see the crate docs for 8 versus 64).
pub const DEFAULT_ALIGN: usize = 8;
/// Largest supported capacity (2^48 bytes).
pub const MAX_CAPACITY: usize = 1 << 48;

const OFF_PRODUCER_PARKED: usize = 32;
const OFF_CONSUMER_PARKED: usize = 48;
const OFF_PRODUCER_CLAIMS: usize = 64;
const OFF_CONSUMER_CLAIMS: usize = 80;
const OFF_WRITE: usize = 128;
const OFF_READ: usize = 256;
/// Offset of the write index in the header (for tools that copy a region: see
/// [`image`](super::image)).
pub const OFF_WRITE_INDEX: usize = OFF_WRITE;
/// Offset of the read index in the header.
pub const OFF_READ_INDEX: usize = OFF_READ;

/// Offsets of every atomic of the header, for formatting (and, under loom, dropping).
pub(crate) const ATOMICS_U32: [usize; 2] = [OFF_PRODUCER_PARKED, OFF_CONSUMER_PARKED];
pub(crate) const ATOMICS_U64: [usize; 4] = [OFF_PRODUCER_CLAIMS, OFF_CONSUMER_CLAIMS, OFF_WRITE, OFF_READ];

// The atomics must fit their 16-byte slots (true for std's and loom's types).
const _: () = assert!(core::mem::size_of::<AtomicU64>() <= 16 && core::mem::align_of::<AtomicU64>() <= 8);
const _: () = assert!(core::mem::size_of::<AtomicU32>() <= 16 && core::mem::align_of::<AtomicU32>() <= 8);

/// The two ends of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that writes frames ([`Producer`](super::Producer)).
    Producer,
    /// The end that reads them ([`Consumer`](super::Consumer)).
    Consumer,
}

impl Side {
    /// The other end.
    ///
    /// ```
    /// use tcpshm_ring::var::Side;
    /// assert_eq!(Side::Producer.other(), Side::Consumer);
    /// ```
    pub const fn other(self) -> Side {
        match self {
            Side::Producer => Side::Consumer,
            Side::Consumer => Side::Producer,
        }
    }
}

/// The shape of a var queue: data capacity and frame alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Bytes of the data area: a power of two, at least 4 × `align`.
    pub capacity: usize,
    /// Frame alignment: a power of two in `8..=4096`. Default 8.
    pub align: usize,
}

impl Config {
    /// A config with the default alignment.
    ///
    /// ```
    /// let c = tcpshm_ring::var::Config::new(1 << 20);
    /// assert_eq!((c.capacity, c.align), (1 << 20, 8));
    /// ```
    pub const fn new(capacity: usize) -> Config {
        Config { capacity, align: DEFAULT_ALIGN }
    }

    /// Checks the config.
    ///
    /// ```
    /// assert!(tcpshm_ring::var::Config::new(1000).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), InitError> {
        if !self.align.is_power_of_two() || !(8..=4096).contains(&self.align) {
            return Err(InitError::BadAlign(self.align));
        }
        if !self.capacity.is_power_of_two() || self.capacity < 4 * self.align || self.capacity > MAX_CAPACITY {
            return Err(InitError::BadCapacity(self.capacity));
        }
        Ok(())
    }

    /// Largest payload a queue of this shape accepts: half the data area less the
    /// frame header, so that a frame always fits eventually whatever the wrap point.
    ///
    /// ```
    /// assert_eq!(tcpshm_ring::var::Config::new(1 << 20).max_payload(), (1 << 19) - 8);
    /// ```
    pub const fn max_payload(&self) -> usize {
        let half = self.capacity / 2 - super::frame::FRAME_HEADER_LEN;
        let wire = u32::MAX as usize - super::frame::FRAME_HEADER_LEN;
        if half < wire {
            half
        } else {
            wire
        }
    }
}

/// Bytes a region needs for `capacity` bytes of data (header + capacity).
///
/// ```
/// assert_eq!(tcpshm_ring::var::region_size(4096), 384 + 4096);
/// ```
pub const fn region_size(capacity: usize) -> usize {
    HEADER_LEN + capacity
}

/// Validated, immutable facts about a region, copied out of its header once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) align: u64,
}

impl Geometry {
    pub(crate) fn config(&self) -> Config {
        Config { capacity: self.capacity as usize, align: self.align as usize }
    }
}

/// Pointers into a region, valid as long as the region is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw {
    pub(crate) base: *mut u8,
}

impl Raw {
    #[inline(always)]
    pub(crate) fn write_index(&self) -> &AtomicU64 {
        // SAFETY: `base` is 8-aligned and the region holds a formatted header (checked
        // by `format` or `validate` before any `Raw` is used), where an `AtomicU64`
        // lives at OFF_WRITE; it is only ever accessed atomically after formatting.
        unsafe { &*(self.base.add(OFF_WRITE) as *const AtomicU64) }
    }

    #[inline(always)]
    pub(crate) fn read_index(&self) -> &AtomicU64 {
        // SAFETY: as for `write_index`, at OFF_READ.
        unsafe { &*(self.base.add(OFF_READ) as *const AtomicU64) }
    }

    /// The futex word `side` parks on (1 while it waits; see `wait::bell`).
    #[inline(always)]
    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) fn parked(&self, side: Side) -> &AtomicU32 {
        let off = match side {
            Side::Producer => OFF_PRODUCER_PARKED,
            Side::Consumer => OFF_CONSUMER_PARKED,
        };
        // SAFETY: as for `write_index`: `format` wrote an `AtomicU32` at this 4-aligned
        // offset of the validated header, only ever accessed atomically since.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    /// How many times a process claimed `side` through `shm::Region` (0: never).
    #[cfg_attr(not(feature = "shm"), allow(dead_code))]
    pub(crate) fn claims(&self, side: Side) -> &AtomicU64 {
        let off = match side {
            Side::Producer => OFF_PRODUCER_CLAIMS,
            Side::Consumer => OFF_CONSUMER_CLAIMS,
        };
        // SAFETY: as for `write_index`, at an 8-aligned offset of the header.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    #[inline(always)]
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: HEADER_LEN is within the region (its length was checked).
        unsafe { self.base.add(HEADER_LEN) }
    }
}

/// Writes a fresh header (indices zero) into the region at `base`.
///
/// # Safety
/// `base..base + len` must be writable memory not accessed by anyone else during the
/// call.
pub(crate) unsafe fn format(base: *mut u8, len: usize, cfg: Config) -> Result<Geometry, InitError> {
    cfg.validate()?;
    if !(base as usize).is_multiple_of(8) {
        return Err(InitError::Misaligned(base as usize));
    }
    let need = region_size(cfg.capacity);
    if len != need {
        return Err(InitError::RegionSize { need, have: len });
    }
    // SAFETY: the caller gives us exclusive access to `len >= HEADER_LEN` bytes at an
    // 8-aligned `base`; every field offset is aligned for its type.
    unsafe {
        // Clear first so a half-formatted region never shows the magic.
        base.cast::<u64>().write_volatile(0);
        base.add(OFF_VERSION).cast::<u32>().write(VERSION.to_le());
        base.add(OFF_ALIGN).cast::<u32>().write((cfg.align as u32).to_le());
        base.add(OFF_CAPACITY).cast::<u64>().write((cfg.capacity as u64).to_le());
        base.add(OFF_DATA).cast::<u64>().write((HEADER_LEN as u64).to_le());
        for off in ATOMICS_U32 {
            base.add(off).cast::<AtomicU32>().write(AtomicU32::new(0));
        }
        for off in ATOMICS_U64 {
            base.add(off).cast::<AtomicU64>().write(AtomicU64::new(0));
        }
    }
    // Magic last, after a release fence: whoever sees the magic sees a whole header.
    core::sync::atomic::fence(Ordering::Release);
    // SAFETY: as above.
    unsafe { base.add(OFF_MAGIC).cast::<u64>().write_volatile(MAGIC.to_le()) };
    Ok(Geometry { capacity: cfg.capacity as u64, align: cfg.align as u64 })
}

/// Reads and checks the header and indices of an existing region.
///
/// # Safety
/// `base..base + len` must be readable memory that stays mapped during the call.
pub(crate) unsafe fn validate(base: *mut u8, len: usize) -> Result<Geometry, AttachError> {
    // SAFETY: the caller's promise, passed on.
    let crate::identity::Identity { align, capacity } =
        unsafe { crate::identity::read(base, len, MAGIC, VERSION, HEADER_LEN)? };
    if !align.is_power_of_two() || !(8..=4096).contains(&align) {
        return Err(AttachError::BadAlign(align));
    }
    let align = align as u64;
    if !capacity.is_power_of_two() || capacity < 4 * align || capacity > MAX_CAPACITY as u64 {
        return Err(AttachError::BadCapacity(capacity));
    }
    let header = HEADER_LEN as u64 + capacity;
    if header != len as u64 {
        return Err(AttachError::LengthMismatch { header, region: len });
    }
    let raw = Raw { base };
    let read = raw.read_index().load(Ordering::Acquire);
    let write = raw.write_index().load(Ordering::Acquire);
    if read > write || write - read > capacity || !read.is_multiple_of(align) || !write.is_multiple_of(align) {
        return Err(AttachError::BadIndices { read, write });
    }
    Ok(Geometry { capacity, align })
}
