//! Atomics, cells and `Arc`, switched to loom's model-checked versions when the
//! crate's own unit tests are built with `--cfg loom`.
//!
//! Every atomic and every shared cell the queues use comes from here, so the loom
//! models (`src/loom_models/`) check the real code rather than a copy of it. The switch
//! is `cfg(all(loom, test))`, not `cfg(loom)`: loom is a dev-dependency (so that it never
//! reaches a dependent's `Cargo.lock`), available only to the test build of this crate;
//! any other build under `--cfg loom` (a dependent's loom run) gets std's types.

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(all(loom, test))]
pub(crate) use loom::sync::Arc;
#[cfg(all(loom, test, feature = "wait"))]
pub(crate) use loom::{hint::spin_loop, sync::atomic::fence, thread::yield_now};

#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::Arc;
#[cfg(all(not(all(loom, test)), feature = "wait"))]
pub(crate) use std::{hint::spin_loop, sync::atomic::fence, thread::yield_now};

/// Aligns (and so pads) its content to a cache line, so that the producer's and the
/// consumer's indices never share a line (no false sharing between the two cores).
///
/// 128 bytes rather than 64: adjacent-line prefetch on x86 pulls lines in pairs.
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A cell whose accesses loom checks for data races; a plain `UnsafeCell` otherwise.
///
/// The closure-based API is loom's: it lets loom record every access.
#[cfg(not(all(loom, test)))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(all(loom, test)))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(v: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(v))
    }
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(all(loom, test))]
pub(crate) use loom::cell::UnsafeCell;

/// Records, for loom, which bytes of a raw data region each side touches.
///
/// The variable-length queue hands out `&[u8]`/`&mut [u8]` into raw memory that loom
/// cannot see. Under `--cfg loom` this keeps one loom cell per granule of the region
/// and "touches" the granules a frame covers when the producer hands them out and when
/// the consumer reads them, so loom reports any missing happens-before between a write
/// and a later read (or a read and a later overwrite). Without loom it is empty and
/// every call compiles to nothing.
#[derive(Debug)]
pub(crate) struct Tracker {
    #[cfg(all(loom, test))]
    cells: Vec<loom::cell::UnsafeCell<()>>,
    #[cfg(all(loom, test))]
    granule: usize,
}

impl Tracker {
    #[allow(unused_variables)]
    pub(crate) fn new(bytes: usize, granule: usize) -> Tracker {
        Tracker {
            #[cfg(all(loom, test))]
            cells: (0..bytes / granule).map(|_| loom::cell::UnsafeCell::new(())).collect(),
            #[cfg(all(loom, test))]
            granule,
        }
    }

    /// The producer is about to write `len` bytes at `off`.
    #[inline(always)]
    #[allow(unused_variables)]
    pub(crate) fn write(&self, off: usize, len: usize) {
        #[cfg(all(loom, test))]
        for c in &self.cells[off / self.granule..(off + len).div_ceil(self.granule)] {
            c.with_mut(|_| ());
        }
    }

    /// The consumer is about to read `len` bytes at `off`.
    #[inline(always)]
    #[allow(unused_variables)]
    pub(crate) fn read(&self, off: usize, len: usize) {
        #[cfg(all(loom, test))]
        for c in &self.cells[off / self.granule..(off + len).div_ceil(self.granule)] {
            c.with(|_| ());
        }
    }
}
