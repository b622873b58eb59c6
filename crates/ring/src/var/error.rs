//! Typed errors of the var queue: what is wrong with a region, a length or the
//! other side's indices.

use core::fmt;

/// Why a region could not be formatted by [`init`](super::init).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitError {
    /// The capacity is not a power of two, is below four frame alignments, or is
    /// above [`MAX_CAPACITY`](super::MAX_CAPACITY).
    BadCapacity(usize),
    /// The frame alignment is not a power of two in `8..=4096`.
    BadAlign(usize),
    /// The region's length is not exactly header + capacity.
    RegionSize {
        /// Bytes needed ([`region_size`](super::region_size)).
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// The region does not start on an 8-byte boundary (its indices are `AtomicU64`).
    Misaligned(usize),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::BadCapacity(c) => write!(
                f,
                "ring capacity {c} is invalid: it must be a power of two, at least 4 frame alignments and at most {}",
                super::MAX_CAPACITY
            ),
            InitError::BadAlign(a) => {
                write!(f, "frame alignment {a} is invalid: it must be a power of two in 8..=4096")
            }
            InitError::RegionSize { need, have } => {
                write!(f, "region has {have} bytes but header + capacity is {need}")
            }
            InitError::Misaligned(addr) => write!(f, "region address {addr:#x} is not 8-byte aligned"),
        }
    }
}

impl std::error::Error for InitError {}

/// Why an existing region was refused by [`attach`](super::attach): it is not a var
/// queue, is of another version or size, or its header or indices are inconsistent.
/// A refused region is never read further, so a foreign or torn file cannot cause an
/// out-of-bounds access.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The region is shorter than a header.
    TooShort(usize),
    /// The region does not start on an 8-byte boundary.
    Misaligned(usize),
    /// The magic number is not ours: this is not a var queue (or was never formatted).
    BadMagic(u64),
    /// The layout version is not the one this code reads.
    BadVersion {
        /// Version in the region.
        found: u32,
        /// Version this code reads.
        expected: u32,
    },
    /// The header's data offset is not this version's.
    BadDataOffset(u64),
    /// The header's frame alignment is invalid.
    BadAlign(u32),
    /// The header's capacity is invalid.
    BadCapacity(u64),
    /// The region's length does not match the header's capacity.
    LengthMismatch {
        /// Bytes the header implies (header + capacity).
        header: u64,
        /// Bytes the region has.
        region: usize,
    },
    /// The region's layout differs from the one the caller expected.
    ConfigMismatch {
        /// `(capacity, align)` in the region.
        found: (usize, usize),
        /// `(capacity, align)` expected.
        expected: (usize, usize),
    },
    /// The indices break `read <= write <= read + capacity`, or are not multiples of
    /// the frame alignment.
    BadIndices {
        /// The read index.
        read: u64,
        /// The write index.
        write: u64,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::TooShort(n) => write!(f, "region of {n} bytes is shorter than a ring header"),
            AttachError::Misaligned(a) => write!(f, "region address {a:#x} is not 8-byte aligned"),
            AttachError::BadMagic(m) => write!(f, "not a tcpshm var queue (magic {m:#018x})"),
            AttachError::BadVersion { found, expected } => {
                write!(f, "ring layout version {found}, this build reads version {expected}")
            }
            AttachError::BadDataOffset(o) => {
                write!(f, "ring header has data offset {o}, expected {}", super::HEADER_LEN)
            }
            AttachError::BadAlign(a) => write!(f, "ring header has invalid frame alignment {a}"),
            AttachError::BadCapacity(c) => write!(f, "ring header has invalid capacity {c}"),
            AttachError::LengthMismatch { header, region } => {
                write!(f, "ring header implies {header} bytes but the region has {region}")
            }
            AttachError::ConfigMismatch { found, expected } => write!(
                f,
                "ring has capacity {} and alignment {}, expected capacity {} and alignment {}",
                found.0, found.1, expected.0, expected.1
            ),
            AttachError::BadIndices { read, write } => {
                write!(f, "ring indices are inconsistent (read {read}, write {write})")
            }
        }
    }
}

impl std::error::Error for AttachError {}

/// The other side of the ring broke the protocol: its index or a frame header is
/// impossible. Raised instead of reading out of bounds; the queue should be treated
/// as corrupt (in shared memory: the peer is faulty or hostile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corrupt {
    /// The consumer's read index moved backwards or beyond what was published.
    ReadIndex {
        /// Value read.
        read: u64,
        /// Our write index.
        write: u64,
    },
    /// The producer's write index moved backwards, beyond a full ring, or off the
    /// frame alignment.
    WriteIndex {
        /// Value read.
        write: u64,
        /// Our read index.
        read: u64,
    },
    /// A frame header is impossible (bad length, unknown flag, or it would run past
    /// the end of the ring or past the write index).
    Frame {
        /// Ring index of the frame.
        at: u64,
        /// The header's raw `len` field.
        len: u32,
        /// The header's raw `flags` field.
        flags: u16,
    },
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corrupt::ReadIndex { read, write } => {
                write!(f, "corrupt ring: consumer index {read} is impossible (write index {write})")
            }
            Corrupt::WriteIndex { write, read } => {
                write!(f, "corrupt ring: producer index {write} is impossible (read index {read})")
            }
            Corrupt::Frame { at, len, flags } => {
                write!(f, "corrupt ring: frame at {at} has impossible header (len {len}, flags {flags:#x})")
            }
        }
    }
}

impl std::error::Error for Corrupt {}

/// Why [`Producer::alloc`](super::Producer::alloc) failed (a full queue is not an
/// error: it returns `Ok(None)`). Exhaustive on purpose, like [`PopError`]: these are
/// the only ways a hot-path call can fail, and callers match them without a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The message is longer than the queue's maximum payload.
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// [`Producer::max_payload`](super::Producer::max_payload).
        max: usize,
    },
    /// The consumer's index is impossible.
    Corrupt(Corrupt),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the queue's maximum payload of {max} bytes")
            }
            AllocError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for AllocError {}

impl From<Corrupt> for AllocError {
    fn from(c: Corrupt) -> Self {
        AllocError::Corrupt(c)
    }
}

/// [`Producer::push`](super::Producer::push) was called without a successful
/// [`alloc`](super::Producer::alloc) before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NothingAllocated;

impl fmt::Display for NothingAllocated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("push without a successful alloc")
    }
}

impl std::error::Error for NothingAllocated {}

/// Why [`Consumer::pop`](super::Consumer::pop) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopError {
    /// There was no message to pop.
    Empty,
    /// The producer's index or the frame is impossible.
    Corrupt(Corrupt),
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Empty => f.write_str("pop on an empty queue"),
            PopError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PopError {}

impl From<Corrupt> for PopError {
    fn from(c: Corrupt) -> Self {
        PopError::Corrupt(c)
    }
}
