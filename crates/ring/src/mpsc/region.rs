//! The memory a queue's ends share: a validated view of a region, and the heap region
//! behind [`MpscQueue`](super::MpscQueue).

use super::layout::{Raw, ATOMICS, HEADER_LEN};
use crate::sync::{Arc, AtomicU64, Tracker};
use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// A heap allocation holding a region, freed when every end is dropped.
#[derive(Debug)]
pub(crate) struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Data-race bookkeeping for loom (empty otherwise).
    pub(crate) tracker: Tracker,
    /// Under loom, the record header words of the data area, one per 8 bytes: loom
    /// cannot see atomics in raw memory, so the models use these instead.
    #[cfg(all(loom, test))]
    pub(crate) headers: Vec<AtomicU64>,
}

// SAFETY: the allocation is plain memory; all shared access to it goes through the
// queue's protocol (atomic indices and record headers, records handed over by
// release/acquire).
unsafe impl Send for HeapRegion {}
// SAFETY: as above.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// A zeroed, 128-byte-aligned allocation of `len` bytes.
    pub(crate) fn new(len: usize, capacity: usize) -> HeapRegion {
        let layout = Layout::from_size_align(len, 128).expect("region size overflows");
        // SAFETY: `len >= HEADER_LEN > 0`, so the layout is not zero-sized.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout));
        HeapRegion {
            ptr,
            layout,
            tracker: Tracker::new(capacity, 8),
            #[cfg(all(loom, test))]
            headers: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
        }
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
            for off in ATOMICS {
                core::ptr::drop_in_place(self.base().add(off).cast::<AtomicU64>());
            }
            dealloc(self.ptr.as_ptr(), self.layout);
        }
    }
}

/// What keeps a region's memory alive while an end uses it.
#[derive(Debug, Clone)]
pub(crate) enum Keep {
    /// The caller's borrow or `attach_raw` contract.
    Caller,
    /// A heap queue.
    Heap(Arc<HeapRegion>),
    /// A file mapping and its owner's lock.
    #[cfg(feature = "shm")]
    /// (Held only to be dropped with the last end.)
    File(#[allow(dead_code)] std::sync::Arc<crate::shm::MpscMapping>),
}

/// What each end knows about the region: where it is, its capacity, and what keeps
/// it alive.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub(crate) raw: Raw,
    pub(crate) capacity: u64,
    pub(crate) mask: u64,
    pub(crate) max_payload: usize,
    pub(crate) keep: Keep,
}

impl Ring {
    pub(crate) fn new(base: *mut u8, capacity: u64, keep: Keep) -> Ring {
        Ring {
            raw: Raw { base },
            capacity,
            mask: capacity - 1,
            max_payload: super::layout::max_payload(capacity as usize),
            keep,
        }
    }

    /// Pointer to data offset `off` (`off < capacity`).
    #[inline(always)]
    pub(crate) fn at(&self, off: u64) -> *mut u8 {
        debug_assert!(off < self.capacity);
        // SAFETY: `off < capacity` and the data area is `capacity` bytes long.
        unsafe { self.raw.data().add(off as usize) }
    }

    /// The header word of the record at data offset `off` (a multiple of 8 below the
    /// capacity).
    #[cfg(not(all(loom, test)))]
    #[inline(always)]
    pub(crate) fn header(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off < self.capacity);
        // SAFETY: `off` is 8-aligned and below the capacity, so the word lies in the
        // 8-aligned data area; the region lives as long as `self`. Record headers are
        // accessed atomically whenever another end may access them concurrently; the
        // non-atomic accesses (the consumer zeroing released bytes, `format`) happen
        // before any producer claims those bytes again (release/acquire of the head).
        unsafe { &*(self.at(off) as *const AtomicU64) }
    }

    #[cfg(all(loom, test))]
    #[inline(always)]
    pub(crate) fn header(&self, off: u64) -> &AtomicU64 {
        match &self.keep {
            Keep::Heap(h) => &h.headers[(off / 8) as usize],
            _ => unreachable!("the loom models use heap queues"),
        }
    }

    /// Zeroes the data bytes of ring indices `from..to` (at most one lap).
    #[inline]
    pub(crate) fn zero(&self, from: u64, to: u64) {
        debug_assert!(from <= to && to - from <= self.capacity);
        let mut i = from;
        while i < to {
            let off = i & self.mask;
            let n = (to - i).min(self.capacity - off);
            self.track_write(off, n);
            // SAFETY: `off + n <= capacity`; these bytes were released by the consumer
            // (the caller), and no producer claims them before the head moves past
            // them (after this call).
            unsafe { self.at(off).write_bytes(0, n as usize) };
            #[cfg(all(loom, test))]
            for w in (off..off + n).step_by(8) {
                self.header(w).store(0, crate::sync::Ordering::Relaxed);
            }
            i += n;
        }
    }

    #[inline(always)]
    pub(crate) fn track_write(&self, off: u64, len: u64) {
        if let Keep::Heap(h) = &self.keep {
            h.tracker.write(off as usize, len as usize);
        }
    }

    #[inline(always)]
    pub(crate) fn track_read(&self, off: u64, len: u64) {
        if let Keep::Heap(h) = &self.keep {
            h.tracker.read(off as usize, len as usize);
        }
    }
}

const _: () = assert!(HEADER_LEN.is_multiple_of(128));
