//! # tcpshm-ring
//!
//! Lock-free single-producer single-consumer (SPSC) queues, usable on their own.
//!
//! * [`spsc`]: a typed fixed-capacity queue, `channel::<T>(capacity)` returning a
//!   [`spsc::Producer`] and a [`spsc::Consumer`]. Ownership enforces one producer and
//!   one consumer: the handles are `Send` and not `Clone`.
//! * [`var`]: a variable-length message queue that lives in a byte region it does not
//!   own (heap memory, or a shared-memory mapping seen by two processes), with a
//!   `#[repr(C)]` header, free-running `u64` indices and offsets instead of pointers.
//!
//! Both are wait-free on the hot path: a push or pop is a few loads and one store,
//! never a lock, an allocation or a system call. Each side keeps a cached copy of the
//! other side's index and rereads the shared one only when the queue looks full (or
//! empty), so in steady state the two cores rarely touch each other's cache lines.
//!
//! No dependency beyond `core`/`std`. Correctness is checked with loom
//! (`RUSTFLAGS="--cfg loom" cargo test -p tcpshm-ring --all-features --lib loom_models`), miri and
//! property tests.
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

#[cfg(all(loom, test))]
mod loom_models;
mod sync;

#[cfg(all(feature = "shm", target_os = "linux"))]
pub mod shm;
pub mod spsc;
pub mod var;
#[cfg(all(feature = "wait", target_os = "linux"))]
pub mod wait;
