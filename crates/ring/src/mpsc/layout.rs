//! The region layout of a many-to-one queue, and the record header.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"TSHMMPSC"` (u64 LE) |
//! | 8 | 4 | layout version (u32) |
//! | 12 | 4 | record alignment (u32, always 8) |
//! | 16 | 8 | capacity of the data area in bytes (u64, power of two) |
//! | 24 | 8 | offset of the data area (u64, = 384) |
//! | 64 | 64 | four consumer words (`AtomicU64`, one per 16 bytes; see [`Consumer::word`](super::Consumer::word)) |
//! | 128 | 8 | tail (`AtomicU64`: bytes ever claimed by producers; own cache-line pair) |
//! | 256 | 8 | head (`AtomicU64`: bytes ever released by the consumer; own cache-line pair) |
//! | 272 | 8 | releasing (`AtomicU64`: the head a release in progress moves to; see below) |
//! | 384 | capacity | records |
//!
//! Indices are free-running byte counters (a record at index `i` lives at data offset
//! `i % capacity`); `tail - head` bytes are claimed and not yet released. Every byte of
//! the data area outside `head..tail` is zero: the consumer zeroes what it releases, so
//! a claimed record whose header was not written yet reads as zero, never as an old
//! record.
//!
//! ## Records
//!
//! Each record starts, 8-aligned, with one 8-byte header word, then the payload, then
//! zero padding to the next multiple of 8. A record never wraps: a producer whose
//! record would not fit before the end of the ring claims the rest of the ring too and
//! fills it with a padding record.
//!
//! | bits | field | meaning |
//! |---:|---|---|
//! | 0..32 | `len` (i32) | `> 0`: committed, record length without padding (8 + payload); `< 0`: claimed, being written (`-len`); `0`: not claimed, or claimed and header not written yet |
//! | 32..48 | `msg_type` (u16) | the producer's message type |
//! | 48..64 | `flags` (u16) | bit 0: padding (skipped by the consumer); others 0 |
//!
//! The header word is the only thing the consumer and producers access concurrently:
//! a producer stores it (release) to commit, the consumer loads it (acquire) to read.
//!
//! ## Releasing
//!
//! The consumer releases bytes in three steps: it stores the new head into
//! `releasing`, zeroes the released bytes, then stores the head. A consumer killed in
//! the middle leaves `head < releasing` and bytes half zeroed, which must not be read
//! as records again: [`Consumer::recover`](super::Consumer::recover) (and every attach
//! through a file) finishes such a release first.

use crate::identity::{OFF_ALIGN, OFF_CAPACITY, OFF_DATA, OFF_MAGIC, OFF_VERSION};
use crate::sync::{AtomicU64, Ordering};
use crate::var::{AttachError, InitError};

/// Magic number at offset 0 (`"TSHMMPSC"`).
///
/// ```
/// let mut mem = vec![0u64; tcpshm_ring::mpsc::region_size(64) / 8];
/// let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), mem.len() * 8) };
/// tcpshm_ring::mpsc::init(bytes, 64).unwrap();
/// assert_eq!(&bytes[..8], b"TSHMMPSC");
/// assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), tcpshm_ring::mpsc::MAGIC);
/// ```
pub const MAGIC: u64 = u64::from_le_bytes(*b"TSHMMPSC");
/// Layout version this code writes and reads.
///
/// ```
/// let mut mem = vec![0u64; tcpshm_ring::mpsc::region_size(64) / 8];
/// let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), mem.len() * 8) };
/// tcpshm_ring::mpsc::init(bytes, 64).unwrap();
/// assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), tcpshm_ring::mpsc::VERSION);
/// ```
pub const VERSION: u32 = 1;
/// Bytes before the data area.
///
/// ```
/// use tcpshm_ring::mpsc::{region_size, HEADER_LEN};
/// assert_eq!(region_size(1024) - 1024, HEADER_LEN);
/// ```
pub const HEADER_LEN: usize = 384;
/// Record alignment (and header size): every record starts on a multiple of 8.
///
/// ```
/// use tcpshm_ring::mpsc::{layout::ALIGN, MpscQueue};
/// let (mut p, mut c) = MpscQueue::with_capacity(256);
/// p.push(0, &[0; 3]).unwrap();
/// p.push(0, &[0; 3]).unwrap();
/// c.pop().unwrap();
/// assert_eq!(c.front().unwrap().unwrap().index() % ALIGN as u64, 0);
/// ```
pub const ALIGN: usize = 8;
/// Bytes of a record header.
///
/// ```
/// use tcpshm_ring::mpsc::{layout::RECORD_HEADER_LEN, MpscQueue};
/// let (mut p, c) = MpscQueue::with_capacity(256);
/// p.push(0, &[0; 8]).unwrap();
/// assert_eq!(c.claimed_bytes(), (RECORD_HEADER_LEN + 8) as u64);
/// ```
pub const RECORD_HEADER_LEN: usize = 8;
/// Smallest capacity (bytes of the data area).
///
/// ```
/// use tcpshm_ring::mpsc::{check_capacity, MIN_CAPACITY};
/// assert!(check_capacity(MIN_CAPACITY).is_ok());
/// assert!(check_capacity(MIN_CAPACITY / 2).is_err());
/// ```
pub const MIN_CAPACITY: usize = 64;
/// Largest capacity: 1 GiB, so that a record length always fits the header's `i32`.
///
/// ```
/// use tcpshm_ring::mpsc::{check_capacity, MAX_CAPACITY};
/// assert!(check_capacity(MAX_CAPACITY).is_ok());
/// assert!(check_capacity(MAX_CAPACITY * 2).is_err());
/// ```
pub const MAX_CAPACITY: usize = 1 << 30;
/// Number of consumer words.
///
/// ```
/// use tcpshm_ring::mpsc::{layout::WORDS, MpscQueue};
/// let (_p, mut c) = MpscQueue::with_capacity(64);
/// for i in 0..WORDS {
///     c.set_word(i, i as u64 + 1);
/// }
/// assert_eq!(c.word(WORDS - 1), WORDS as u64);
/// ```
pub const WORDS: usize = 4;

/// `flags` bit of a padding record: not a message, skipped.
///
/// ```
/// use tcpshm_ring::mpsc::{layout::FLAG_PAD, MpscQueue};
/// // A record that does not fit before the end of the ring pads the rest (flagged
/// // FLAG_PAD) and starts again at offset 0; the consumer skips the padding.
/// let (mut p, mut c) = MpscQueue::with_capacity(64);
/// assert_eq!(FLAG_PAD, 1);
/// p.push(0, &[1; 16]).unwrap(); // 0..24
/// c.pop().unwrap();
/// p.push(0, &[2; 16]).unwrap(); // 24..48
/// p.push(0, &[3; 16]).unwrap(); // 48..64 is padding; 64..88
/// c.pop().unwrap();
/// assert_eq!(c.front().unwrap().unwrap().index(), 64);
/// ```
pub const FLAG_PAD: u16 = 1;

const OFF_WORDS: usize = 64;
const OFF_TAIL: usize = 128;
const OFF_HEAD: usize = 256;
const OFF_RELEASING: usize = 272;

/// Offsets of every atomic of the header (formatting and, under loom, dropping).
pub(crate) const ATOMICS: [usize; 7] =
    [OFF_WORDS, OFF_WORDS + 16, OFF_WORDS + 32, OFF_WORDS + 48, OFF_TAIL, OFF_HEAD, OFF_RELEASING];

// Each header atomic has a 16-byte slot (std's take 8; loom's, under the models, more).
const ATOMIC_STRIDE: usize = 16;
const _: () = assert!(core::mem::size_of::<AtomicU64>() <= ATOMIC_STRIDE && core::mem::align_of::<AtomicU64>() <= 8);

/// Bytes a region needs for `capacity` bytes of data (header + capacity).
///
/// ```
/// assert_eq!(tcpshm_ring::mpsc::region_size(4096), 384 + 4096);
/// ```
pub const fn region_size(capacity: usize) -> usize {
    HEADER_LEN + capacity
}

/// Checks a capacity: a power of two in [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`].
///
/// ```
/// use tcpshm_ring::mpsc::check_capacity;
/// assert!(check_capacity(4096).is_ok());
/// assert!(check_capacity(1000).is_err());
/// assert!(check_capacity(32).is_err());
/// ```
pub fn check_capacity(capacity: usize) -> Result<(), InitError> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(InitError::BadCapacity(capacity));
    }
    Ok(())
}

/// Largest payload a queue of `capacity` bytes accepts: half the data area less the
/// record header, so that a record always fits eventually whatever the wrap point.
///
/// ```
/// assert_eq!(tcpshm_ring::mpsc::max_payload(4096), 2040);
/// ```
pub const fn max_payload(capacity: usize) -> usize {
    capacity / 2 - RECORD_HEADER_LEN
}

/// `n` rounded up to a multiple of [`ALIGN`].
#[inline(always)]
pub(crate) const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// A record header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) len: i32,
    pub(crate) msg_type: u16,
    pub(crate) flags: u16,
}

impl Record {
    #[inline(always)]
    pub(crate) const fn to_word(self) -> u64 {
        (self.len as u32 as u64) | ((self.msg_type as u64) << 32) | ((self.flags as u64) << 48)
    }

    #[inline(always)]
    pub(crate) const fn from_word(w: u64) -> Record {
        Record { len: w as u32 as i32, msg_type: (w >> 32) as u16, flags: (w >> 48) as u16 }
    }

    /// A committed padding record covering `bytes` (a multiple of 8).
    #[inline(always)]
    pub(crate) const fn pad(bytes: u64) -> Record {
        Record { len: bytes as i32, msg_type: 0, flags: FLAG_PAD }
    }
}

/// Pointers into a region, valid as long as the region is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw {
    pub(crate) base: *mut u8,
}

impl Raw {
    #[inline(always)]
    fn atomic(&self, off: usize) -> &AtomicU64 {
        // SAFETY: `base` is 8-aligned and the region holds a formatted header (checked
        // by `format` or `validate` before any `Raw` is used), where an `AtomicU64`
        // lives at each offset of `ATOMICS`; they are only accessed atomically since.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    #[inline(always)]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.atomic(OFF_TAIL)
    }

    #[inline(always)]
    pub(crate) fn head(&self) -> &AtomicU64 {
        self.atomic(OFF_HEAD)
    }

    #[inline(always)]
    pub(crate) fn releasing(&self) -> &AtomicU64 {
        self.atomic(OFF_RELEASING)
    }

    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS, "consumer word {i} out of 0..{WORDS}");
        self.atomic(OFF_WORDS + i * ATOMIC_STRIDE)
    }

    #[inline(always)]
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: HEADER_LEN is within the region (its length was checked).
        unsafe { self.base.add(HEADER_LEN) }
    }
}

/// Writes a fresh header (indices and words zero) and zeroes the data area.
///
/// # Safety
/// `base..base + len` must be writable memory not accessed by anyone else during the
/// call.
pub(crate) unsafe fn format(base: *mut u8, len: usize, capacity: usize) -> Result<u64, InitError> {
    check_capacity(capacity)?;
    if !(base as usize).is_multiple_of(8) {
        return Err(InitError::Misaligned(base as usize));
    }
    let need = region_size(capacity);
    if len != need {
        return Err(InitError::RegionSize { need, have: len });
    }
    // SAFETY: the caller gives us exclusive access to `len >= HEADER_LEN` bytes at an
    // 8-aligned `base`; every field offset is aligned for its type.
    unsafe {
        // Clear first so a half-formatted region never shows the magic.
        base.cast::<u64>().write_volatile(0);
        base.add(OFF_VERSION).cast::<u32>().write(VERSION.to_le());
        base.add(OFF_ALIGN).cast::<u32>().write((ALIGN as u32).to_le());
        base.add(OFF_CAPACITY).cast::<u64>().write((capacity as u64).to_le());
        base.add(OFF_DATA).cast::<u64>().write((HEADER_LEN as u64).to_le());
        for off in ATOMICS {
            base.add(off).cast::<AtomicU64>().write(AtomicU64::new(0));
        }
        // The data area must be zero (see the module docs): a fresh file or heap
        // allocation is, but a caller's region may not be.
        base.add(HEADER_LEN).write_bytes(0, capacity);
    }
    // Magic last, after a release fence: whoever sees the magic sees a whole header.
    core::sync::atomic::fence(Ordering::Release);
    // SAFETY: as above.
    unsafe { base.add(OFF_MAGIC).cast::<u64>().write_volatile(MAGIC.to_le()) };
    Ok(capacity as u64)
}

/// Reads and checks the header and indices of an existing region; returns the
/// capacity.
///
/// # Safety
/// `base..base + len` must be readable memory that stays mapped during the call.
pub(crate) unsafe fn validate(base: *mut u8, len: usize) -> Result<u64, AttachError> {
    // SAFETY: the caller's promise, passed on.
    let crate::identity::Identity { align, capacity } =
        unsafe { crate::identity::read(base, len, MAGIC, VERSION, HEADER_LEN)? };
    if align as usize != ALIGN {
        return Err(AttachError::BadAlign(align));
    }
    if check_capacity(capacity as usize).is_err() || capacity > MAX_CAPACITY as u64 {
        return Err(AttachError::BadCapacity(capacity));
    }
    let header = HEADER_LEN as u64 + capacity;
    if header != len as u64 {
        return Err(AttachError::LengthMismatch { header, region: len });
    }
    let raw = Raw { base };
    let head = raw.head().load(Ordering::Acquire);
    let tail = raw.tail().load(Ordering::Acquire);
    if head > tail || tail - head > capacity || !head.is_multiple_of(8) || !tail.is_multiple_of(8) {
        return Err(AttachError::BadIndices { read: head, write: tail });
    }
    Ok(capacity)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn record_words_round_trip() {
        for r in [
            Record { len: 72, msg_type: 7, flags: 0 },
            Record { len: -72, msg_type: 0, flags: 0 },
            Record::pad(1 << 29),
            Record { len: i32::MIN, msg_type: u16::MAX, flags: u16::MAX },
        ] {
            assert_eq!(Record::from_word(r.to_word()), r);
        }
        assert_eq!(Record::from_word(0).len, 0);
    }
}
