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
//! * [`mpsc`]: a variable-length **many-to-one** queue in the same kind of region
//!   (Aeron's many-to-one ring buffer): any number of producers claim space with one
//!   compare-and-swap, write in place and commit by storing the length; one consumer.
//!
//! Both are wait-free on the hot path: a push or pop is a few loads and one store,
//! never a lock, an allocation or a system call. Each side keeps a cached copy of the
//! other side's index and rereads the shared one only when the queue looks full (or
//! empty), so in steady state the two cores rarely touch each other's cache lines.
//!
//! Each end learns when the other is gone (`is_abandoned`; for var ends, `peer`):
//! dropped in this process or, across processes, exited or killed. Nothing on the
//! push/pop path reads it.
//!
//! Without features: no dependency beyond `core`/`std`. Two optional features (Linux)
//! add what std lacks:
//!
//! * `shm`: `shm::Region`, a named file-backed var queue that two unrelated processes
//!   open by name (create-or-attach, mode 0600, validated header, typed errors), with a
//!   claim per side (an OFD lock the kernel drops when a process dies) that makes a dead
//!   peer process observable. Adds rustix and nix.
//! * `wait`: waiting calls (spin, then yield, then futex park) for both queues, which
//!   report a gone peer instead of waiting for it forever. Adds rustix. Opt-in per
//!   call: the plain calls are unchanged.
//!
//! Correctness is checked with loom (`RUSTFLAGS="--cfg loom" cargo test -p tcpshm-ring
//! --all-features --lib loom_models`; loom is a dev-dependency, so it never reaches a
//! dependent's `Cargo.lock`), miri and property tests.
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

// Both optional features use Linux system calls (futex; O_TMPFILE and OFD locks).
#[cfg(all(feature = "wait", not(target_os = "linux")))]
compile_error!("the `wait` feature of tcpshm-ring needs Linux (futex)");
#[cfg(all(feature = "shm", not(target_os = "linux")))]
compile_error!("the `shm` feature of tcpshm-ring needs Linux (O_TMPFILE, OFD locks)");

mod identity;
#[cfg(all(loom, test))]
mod loom_models;
mod sync;

pub mod mpsc;
#[cfg(feature = "shm")]
pub mod shm;
pub mod spsc;
pub mod var;
#[cfg(feature = "wait")]
pub mod wait;
