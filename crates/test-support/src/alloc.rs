//! A counting global allocator: install it in a test binary of its own
//! (`#[global_allocator] static A: Counting = Counting;`), arm it on the thread under
//! test, run the hot path, read the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Counting is on for this thread only (the test harness's other threads may
    /// allocate whenever they like).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// This thread's count: tests running in parallel, each counting its own
    /// thread, never see each other's allocations.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The counting allocator (forwards everything to the system allocator).
#[derive(Debug, Clone, Copy)]
pub struct Counting;

fn note() {
    if ARMED.with(|a| a.get()) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

/// Counts the allocations this thread makes while `f` runs (with [`Counting`]
/// installed; without it, always 0).
///
/// ```
/// let (n, v) = tcpshm_test_support::alloc::count(|| 1 + 1);
/// assert_eq!((n, v), (0, 2));
/// ```
pub fn count<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (ALLOCATIONS.with(Cell::get) - before, out)
}

// SAFETY: every call forwards to the system allocator with the caller's arguments;
// the counting touches only const-initialised thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through it)
        // with `layout`; the caller upholds the rest of the contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
