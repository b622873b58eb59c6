//! The tests' clock, and waiting on observable state.

use std::time::{Duration, Instant};

/// How long [`wait_until`] waits by default: long enough that only a hang reaches it
/// on a loaded machine. `TCPSHM_TEST_WAIT_SECS` overrides it.
pub const WAIT: Duration = Duration::from_secs(120);

/// Nanoseconds since the first call in this process: the tests' monotonic clock (the
/// library reads none; tests pass this as `now`).
///
/// ```
/// let a = tcpshm_test_support::now();
/// assert!(tcpshm_test_support::now() >= a);
/// ```
pub fn now() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn limit() -> Duration {
    std::env::var("TCPSHM_TEST_WAIT_SECS").ok().and_then(|s| s.parse().ok()).map(Duration::from_secs).unwrap_or(WAIT)
}

/// Calls `step` until it returns `Some`, and returns that; panics naming `what` if
/// that does not happen within [`WAIT`]. `step` does the work that makes progress
/// (a poll) and reports the observable state — a test never sleeps and hopes.
///
/// ```
/// let mut n = 0;
/// let got = tcpshm_test_support::wait_until("n to reach 3", || {
///     n += 1;
///     (n == 3).then_some(n)
/// });
/// assert_eq!(got, 3);
/// ```
pub fn wait_until<T>(what: &str, step: impl FnMut() -> Option<T>) -> T {
    match wait_or(step) {
        Some(t) => t,
        None => panic!("timed out after {:?} waiting for {what}", limit()),
    }
}

/// [`wait_until`] that returns `None` at the deadline instead of panicking.
pub(crate) fn wait_or<T>(mut step: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit();
    let mut spins = 0u32;
    loop {
        if let Some(t) = step() {
            return Some(t);
        }
        if Instant::now() > deadline {
            return None;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            // Let the other side (another thread or process) run on a busy machine.
            std::thread::yield_now();
        }
    }
}
