//! # tcpshm-test-support
//!
//! What the tests of every tcpshm crate share, in one place (dev-only; never a
//! dependency of a published crate):
//!
//! * [`TempDir`]: a private directory and a shared-memory file prefix, both removed
//!   on drop (also when the test fails);
//! * [`now`]: the tests' monotonic clock (the library reads none);
//! * [`wait_until`]: polls an observable condition until it holds, with a deadline
//!   generous enough for a loaded machine (never a sleep that hopes);
//! * [`alloc::Counting`]: a counting global allocator for "no allocation per
//!   message" tests;
//! * [`child`]: re-executing the test binary as a child process in a role;
//! * [`shared`]: counters shared with child processes (progress a killed child
//!   leaves behind);
//! * [`net`]: socket pairs (also with small kernel buffers) and a raw peer that
//!   speaks frames by hand;
//! * [`strace`]: counting a piece of code's system calls, per thread;
//! * [`skip`]: skipping a test that cannot run here, recorded so the gate reports
//!   it — and fails where the test must run (`TCPSHM_REQUIRE_ALL=1`);
//! * [`Rng`]: the kit's deterministic generator.

pub mod alloc;
pub mod child;
pub mod net;
pub mod shared;
pub mod skip;
pub mod strace;
mod temp;
mod wait;

pub use tcpshm_proto::testkit::gen::Rng;
pub use temp::TempDir;
pub use wait::{now, wait_until, WAIT};
