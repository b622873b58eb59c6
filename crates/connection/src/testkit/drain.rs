//! A hook at each step of a producers' drain (feature `testkit`): crash tests stop a
//! process exactly between two commit points (the hook parks, the test SIGKILLs it)
//! to check that every step is crash-safe (see `Connection::drain_producers`).

/// A step of a drain, reported to the hook just after it happened.
///
/// ```
/// use tcpshm_connection::testkit::DrainPoint;
/// // The order of the steps of one drain that moved messages.
/// let steps = [DrainPoint::Armed, DrainPoint::Moved, DrainPoint::Published, DrainPoint::Released];
/// assert_ne!(steps[1], steps[2]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainPoint {
    /// The drain recorded where it starts (the producers' queue's consumer words).
    Armed,
    /// Messages were copied into the session's queue, not yet published.
    Moved,
    /// The session's queue published them (commit point 1).
    Published,
    /// The producers' queue released them (commit point 2), the record still armed.
    Released,
}

static HOOK: std::sync::OnceLock<fn(DrainPoint)> = std::sync::OnceLock::new();

/// Calls `hook` at every step of every drain in this process from now on (a test
/// process's own hook: it decides where to stop). Once per process: a second call
/// returns `false` and changes nothing.
///
/// ```
/// use tcpshm_connection::testkit::{set_drain_hook, DrainPoint};
/// fn stop_after_publishing(p: DrainPoint) {
///     if p == DrainPoint::Published {
///         // a crash test parks here and gets SIGKILLed
///     }
/// }
/// assert!(set_drain_hook(stop_after_publishing));
/// assert!(!set_drain_hook(stop_after_publishing));
/// ```
pub fn set_drain_hook(hook: fn(DrainPoint)) -> bool {
    HOOK.set(hook).is_ok()
}

#[inline]
pub(crate) fn at(point: DrainPoint) {
    if let Some(hook) = HOOK.get() {
        hook(point);
    }
}
