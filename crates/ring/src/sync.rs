//! Atomics and threads, switched to loom's model-checked versions under `--cfg loom`.
//!
//! Every atomic the queues use comes from here, so a `RUSTFLAGS="--cfg loom"` build
//! model-checks the real code rather than a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::Arc;

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
