//! A monotonic clock for `poll(now)`: what every program wrote for itself.
//!
//! The library crates read no clock — every `poll` takes `now` from its caller, so
//! tests run on simulated time and a program decides what time is. This module is the
//! one place that reads one, for programs that just want the obvious choice: the
//! system's monotonic clock (`CLOCK_MONOTONIC`, through [`std::time::Instant`]: a vDSO
//! call, no system call), as nanoseconds since the first call in this process.
//!
//! ```
//! use tcpshm::clock;
//! let a = clock::now();
//! let b = clock::now();
//! assert!(b >= a);
//! assert!(clock::since(a) >= b - a);
//! ```

use std::sync::OnceLock;
use std::time::Instant;
use tcpshm_proto::Nanos;

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on this process's monotonic clock (since its first call, plus one
/// second so that no time is 0): pass it to `poll`. Never goes backwards; only
/// differences mean anything.
#[inline]
pub fn now() -> Nanos {
    START.get_or_init(Instant::now).elapsed().as_nanos() as Nanos + 1_000_000_000
}

/// Nanoseconds elapsed since `then` (a [`now`]); 0 if `then` is in the future.
#[inline]
pub fn since(then: Nanos) -> Nanos {
    now().saturating_sub(then)
}

/// A duration in nanoseconds, for the `Nanos` fields of the configurations.
///
/// ```
/// assert_eq!(tcpshm::clock::nanos(std::time::Duration::from_millis(3)), 3_000_000);
/// ```
#[inline]
pub fn nanos(d: std::time::Duration) -> Nanos {
    d.as_nanos().min(u128::from(Nanos::MAX)) as Nanos
}
