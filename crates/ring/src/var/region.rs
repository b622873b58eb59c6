//! The memory a queue's two ends share: a validated view of a region, and the heap
//! region behind [`VarQueue::with_capacity`](super::VarQueue::with_capacity).

use super::layout::{Geometry, Raw, ATOMICS_U32, ATOMICS_U64, HEADER_LEN};
use crate::sync::{Arc, AtomicU32, AtomicU64, Tracker};
use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// A heap allocation holding a region, freed when both ends are dropped.
#[derive(Debug)]
pub(crate) struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Data-race bookkeeping for loom (empty otherwise).
    pub(crate) tracker: Tracker,
}

// SAFETY: the allocation is plain memory; all shared access to it goes through the
// SPSC protocol (atomics for indices, frames handed over by release/acquire).
unsafe impl Send for HeapRegion {}
// SAFETY: as above.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// A zeroed, 128-byte-aligned allocation of `len` bytes.
    pub(crate) fn new(len: usize, capacity: usize, granule: usize) -> HeapRegion {
        let layout = Layout::from_size_align(len, 128).expect("region size overflows");
        // SAFETY: `len >= HEADER_LEN > 0`, so the layout is not zero-sized.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout));
        HeapRegion { ptr, layout, tracker: Tracker::new(capacity, granule) }
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: the header atomics were written by `format` (a no-op drop for std's
        // atomics, loom's bookkeeping otherwise); then we free what we allocated.
        unsafe {
            for off in ATOMICS_U32 {
                core::ptr::drop_in_place(self.base().add(off).cast::<AtomicU32>());
            }
            for off in ATOMICS_U64 {
                core::ptr::drop_in_place(self.base().add(off).cast::<AtomicU64>());
            }
            dealloc(self.ptr.as_ptr(), self.layout);
        }
    }
}

/// What each end knows about the region: where it is, its validated geometry, and
/// (for a heap queue) a reference that keeps it alive.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub(crate) raw: Raw,
    pub(crate) capacity: u64,
    pub(crate) align: u64,
    pub(crate) mask: u64,
    pub(crate) max_payload: usize,
    pub(crate) heap: Option<Arc<HeapRegion>>,
}

impl Ring {
    pub(crate) fn new(base: *mut u8, geo: Geometry, heap: Option<Arc<HeapRegion>>) -> Ring {
        let cfg = geo.config();
        Ring {
            raw: Raw { base },
            capacity: geo.capacity,
            align: geo.align,
            mask: geo.capacity - 1,
            max_payload: cfg.max_payload(),
            heap,
        }
    }

    /// Pointer to data offset `off` (`off < capacity`).
    #[inline(always)]
    pub(crate) fn at(&self, off: u64) -> *mut u8 {
        debug_assert!(off < self.capacity);
        // SAFETY: `off < capacity` and the data area is `capacity` bytes long.
        unsafe { self.raw.data().add(off as usize) }
    }

    #[inline(always)]
    pub(crate) fn track_write(&self, off: u64, len: u64) {
        if let Some(h) = &self.heap {
            h.tracker.write(off as usize, len as usize);
        }
    }

    #[inline(always)]
    pub(crate) fn track_read(&self, off: u64, len: u64) {
        if let Some(h) = &self.heap {
            h.tracker.read(off as usize, len as usize);
        }
    }
}

const _: () = assert!(HEADER_LEN.is_multiple_of(128));
