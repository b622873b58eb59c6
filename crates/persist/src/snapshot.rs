//! A consistent copy of a store file that its owner may be writing right now, taken
//! without the lock and without writing anything.
//!
//! The owner changes the file only in ways the ring protocol orders: frames are
//! written into free space and then published by a release store of the ring's write
//! index; the live words are stored after (push) or before (ack) the ring index
//! they go with; published frames are never written again until the read index
//! releases them. So a copy is consistent when it reads, in this order: the read
//! index, the header page (every word atomically), the write index, the frames
//! between the two indices, and the read index again — and the two reads of the read
//! index agree (nothing was released, so nothing copied was overwritten). Any other
//! outcome is retried; after [`ATTEMPTS`] the snapshot reports
//! [`InspectError::ChangedWhileReading`] rather than risk a misread.
//!
//! A file of another machine session (no live owner: the boot id differs) is copied
//! whole, because recovery reads the frames of the last commit, wherever they lie.

use crate::boot::BootId;
use crate::error::InspectError;
use crate::layout::{file_len, read_header, HeaderInfo, HEADER_PAGE, OFF_BOOT, RING_OFF_READ, RING_OFF_WRITE};
use crate::recovery::Image;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tcpshm_ring::var;

/// Snapshots tried before giving up on a file that keeps changing.
pub(crate) const ATTEMPTS: u32 = 64;

/// A consistent copy of a store file.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) path: PathBuf,
    pub(crate) info: HeaderInfo,
    bytes: Vec<u8>,
}

impl Snapshot {
    pub(crate) fn take(path: &Path) -> Result<Snapshot, InspectError> {
        let io = |op, source| InspectError::Io { path: path.to_path_buf(), op, source };
        let file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| io("open", e))?;
        let len = file.metadata().map_err(|e| io("fstat", e))?.len();
        if len < HEADER_PAGE as u64 {
            return Err(InspectError::Truncated { path: path.to_path_buf(), len });
        }
        // SAFETY: a read-only shared mapping of a store file. Its owner never shrinks
        // it; a foreign process that truncated it would make a read fault (SIGBUS),
        // as documented for `Store::inspect`. Every byte copied out is validated.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io("mmap", e))?;
        let src = Mapped { base: map.as_ptr(), len: map.len() };
        let (info, bytes) = copy_consistent(&src, path, BootId::current())?;
        Ok(Snapshot { path: path.to_path_buf(), info, bytes })
    }

    pub(crate) fn image(&self) -> Image<'_> {
        Image::new(&self.bytes, self.info.capacity)
    }
}

/// Where a snapshot reads from: 8-byte words, each read whole.
pub(crate) trait Words {
    /// File length.
    fn len(&self) -> usize;
    /// The word at `off` (8-aligned), with acquire ordering.
    fn load(&self, off: usize) -> u64;
    /// Copies file bytes `from..to` (8-aligned) into `out[from..to]`.
    fn copy(&self, out: &mut [u8], from: usize, to: usize);
}

/// The consistent copy (see the module documentation).
pub(crate) fn copy_consistent(
    src: &impl Words,
    path: &Path,
    now: BootId,
) -> Result<(HeaderInfo, Vec<u8>), InspectError> {
    let mut bytes = vec![0u8; src.len()];
    src.copy(&mut bytes, 0, HEADER_PAGE);
    let page: &[u8; HEADER_PAGE] = bytes[..HEADER_PAGE].try_into().expect("a page");
    let info = read_header(page).map_err(|source| InspectError::Header { path: path.to_path_buf(), source })?;
    let expected = file_len(info.capacity) as u64;
    if src.len() as u64 != expected {
        return Err(InspectError::LengthMismatch { path: path.to_path_buf(), len: src.len() as u64, expected });
    }
    let cap = info.capacity as u64;
    let (ring, data) = (HEADER_PAGE, HEADER_PAGE + var::HEADER_LEN);
    for _ in 0..ATTEMPTS {
        let read = src.load(ring + RING_OFF_READ);
        src.copy(&mut bytes, 0, data);
        let write = src.load(ring + RING_OFF_WRITE);
        let boot = BootId(bytes[OFF_BOOT..OFF_BOOT + 16].try_into().expect("16 bytes"));
        if !boot.same_session(&now) {
            // No live owner: copy all of it (recovery may read anywhere).
            src.copy(&mut bytes, data, src.len());
        } else if read <= write && write - read <= cap {
            let (a, b) = ((read % cap) as usize, (write % cap) as usize);
            if write - read == cap || (a >= b && read != write) {
                src.copy(&mut bytes, data + a, src.len());
                src.copy(&mut bytes, data, data + b);
            } else {
                src.copy(&mut bytes, data + a, data + b);
            }
        }
        // Impossible indices are copied as found; recovery names them. The fence
        // keeps the copy's loads before the second load of the read index.
        std::sync::atomic::fence(Ordering::SeqCst);
        if src.load(ring + RING_OFF_READ) == read {
            // The indices in the copy are the ones the frames were read with.
            bytes[ring + RING_OFF_READ..][..8].copy_from_slice(&read.to_le_bytes());
            bytes[ring + RING_OFF_WRITE..][..8].copy_from_slice(&write.to_le_bytes());
            return Ok((info, bytes));
        }
    }
    Err(InspectError::ChangedWhileReading { path: path.to_path_buf(), attempts: ATTEMPTS })
}

/// The mapping, read one aligned 8-byte word at a time with atomic loads (the owner
/// stores its counters and indices atomically; no word is read torn).
pub(crate) struct Mapped {
    pub(crate) base: *const u8,
    pub(crate) len: usize,
}

impl Mapped {
    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the mapping
        // outlives `self` (both live in `Snapshot::take`); shared with the owner, which
        // only ever stores whole words or bytes there.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }
}

impl Words for Mapped {
    fn len(&self) -> usize {
        self.len
    }

    fn load(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }

    fn copy(&self, out: &mut [u8], from: usize, to: usize) {
        for off in (from..to).step_by(8) {
            out[off..off + 8].copy_from_slice(&self.word(off).load(Ordering::Relaxed).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{write_header, FORMAT_VERSION, FRAME_ALIGN};
    use std::cell::Cell;

    /// A file image whose ring read index moves by one frame on each of its first
    /// `moves` loads: an owner acknowledging while the snapshot copies.
    struct Moving {
        bytes: Vec<u8>,
        moves: Cell<u32>,
    }

    impl Words for Moving {
        fn len(&self) -> usize {
            self.bytes.len()
        }
        fn load(&self, off: usize) -> u64 {
            let v = u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap());
            if off == HEADER_PAGE + RING_OFF_READ && self.moves.get() > 0 {
                self.moves.set(self.moves.get() - 1);
                return v + 8 * self.moves.get() as u64;
            }
            v
        }
        fn copy(&self, out: &mut [u8], from: usize, to: usize) {
            out[from..to].copy_from_slice(&self.bytes[from..to]);
        }
    }

    fn file(now: BootId) -> Vec<u8> {
        let cap = 256;
        let mut b = vec![0u8; file_len(cap)];
        let name = tcpshm_proto::Name::new("x").unwrap();
        let info = HeaderInfo {
            version: FORMAT_VERSION,
            capacity: cap,
            align: FRAME_ALIGN,
            created_unix_ns: 0,
            local: name,
            remote: name,
            epoch: None,
        };
        write_header(&mut b[..HEADER_PAGE], &info);
        b[OFF_BOOT..OFF_BOOT + 16].copy_from_slice(&now.0);
        b
    }

    #[test]
    fn a_file_that_keeps_changing_is_reported_not_misread() {
        let now = BootId([1; 16]);
        let path = Path::new("f");
        // Moves once: the second attempt is consistent.
        let src = Moving { bytes: file(now), moves: Cell::new(2) };
        assert!(copy_consistent(&src, path, now).is_ok());
        // Moves on every load: given up after `ATTEMPTS`, typed.
        let src = Moving { bytes: file(now), moves: Cell::new(u32::MAX) };
        match copy_consistent(&src, path, now) {
            Err(InspectError::ChangedWhileReading { attempts, .. }) => assert_eq!(attempts, ATTEMPTS),
            r => panic!("{r:?}"),
        }
    }
}
