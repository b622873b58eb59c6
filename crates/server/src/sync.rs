//! Atomics used between the control thread and the group threads.
pub(crate) use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
