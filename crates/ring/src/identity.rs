//! The identity block every region layout (`var`, `mpsc`) starts with, at the same
//! offsets: magic, version, frame alignment, capacity and the data offset. Reading
//! and checking it is one rule for both layouts; each layout then checks its own
//! alignment, capacity and indices.

use crate::var::AttachError;

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_ALIGN: usize = 12;
pub(crate) const OFF_CAPACITY: usize = 16;
pub(crate) const OFF_DATA: usize = 24;

/// What a layout checks after its identity: the fields whose rules are its own.
pub(crate) struct Identity {
    pub(crate) align: u32,
    pub(crate) capacity: u64,
}

/// Reads the identity block of a region of `len` bytes at `base` and checks the
/// placement, the length against `header_len`, the magic, the version and the data
/// offset (which is `header_len`).
///
/// # Safety
/// `base..base + len` must be readable memory that stays mapped during the call.
pub(crate) unsafe fn read(
    base: *mut u8,
    len: usize,
    magic_expected: u64,
    version_expected: u32,
    header_len: usize,
) -> Result<Identity, AttachError> {
    if !(base as usize).is_multiple_of(8) {
        return Err(AttachError::Misaligned(base as usize));
    }
    if len < header_len {
        return Err(AttachError::TooShort(len));
    }
    // Volatile reads: another process may be writing this memory; each field is read
    // exactly once and only the checked copy is used afterwards.
    // SAFETY: `len >= header_len` (which covers the identity block), `base` is
    // 8-aligned, every offset is aligned for its type.
    let (magic, version, align, capacity, data) = unsafe {
        (
            u64::from_le(base.add(OFF_MAGIC).cast::<u64>().read_volatile()),
            u32::from_le(base.add(OFF_VERSION).cast::<u32>().read_volatile()),
            u32::from_le(base.add(OFF_ALIGN).cast::<u32>().read_volatile()),
            u64::from_le(base.add(OFF_CAPACITY).cast::<u64>().read_volatile()),
            u64::from_le(base.add(OFF_DATA).cast::<u64>().read_volatile()),
        )
    };
    core::sync::atomic::fence(crate::sync::Ordering::Acquire);
    if magic != magic_expected {
        return Err(AttachError::BadMagic(magic));
    }
    if version != version_expected {
        return Err(AttachError::BadVersion { found: version, expected: version_expected });
    }
    if data != header_len as u64 {
        return Err(AttachError::BadDataOffset(data));
    }
    Ok(Identity { align, capacity })
}
