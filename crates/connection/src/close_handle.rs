//! Closing a connection from another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Asks a [`Connection`](crate::Connection) to close, from any thread.
///
/// The request is a flag; the connection's owner sees it at its next `poll` (or
/// `check_timers`, `on_readable`, `on_writable`) and closes there with
/// [`CloseReason::Requested`](tcpshm_proto::CloseReason::Requested), telling the peer.
/// No lock, no allocation. A request applies to the link that is up when the owner
/// sees it; a new login clears a request that
/// found the connection already down.
///
/// ```
/// use tcpshm_connection::CloseHandle;
/// let h = CloseHandle::default();
/// let h2 = h.clone();
/// std::thread::spawn(move || h2.close()).join().unwrap();
/// assert!(h.is_requested());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CloseHandle {
    requested: Arc<AtomicBool>,
}

impl CloseHandle {
    /// Requests the close.
    pub fn close(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// Whether a close was requested and not yet carried out.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Takes the request (owner side): true once per request.
    #[inline]
    pub(crate) fn take(&self) -> bool {
        // A plain load first: the common case (nothing requested) writes nothing.
        self.requested.load(Ordering::Relaxed) && self.requested.swap(false, Ordering::Acquire)
    }

    /// Forgets a pending request.
    pub(crate) fn clear(&self) {
        self.requested.store(false, Ordering::Release);
    }
}
