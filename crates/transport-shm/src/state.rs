//! The connection state shared by the data part, the control part and close handles.
//!
//! One atomic word says "session `g` is connected" or "session `g` is closed"; the
//! close reason sits behind a mutex that is taken only on transitions (close,
//! reattach) and when a part notices that the word changed — never per message.
//! Each part keeps its own view (word + reason), refreshed at its `poll`, so
//! `is_connected` and `close_reason` always agree with each other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tcpshm_proto::CloseReason;

/// Low bit of the state word: the session is closed.
const CLOSED: u64 = 1;

#[derive(Debug, Default)]
struct Slot {
    /// Why the current session closed (`None` while connected).
    reason: Option<CloseReason>,
    /// Set once a ring was found corrupt: sticky across reattaches (the file needs a
    /// reset), so a reattach closes again at once with this reason.
    corrupt: Option<CloseReason>,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// `session << 1 | CLOSED`.
    word: AtomicU64,
    /// A [`CloseHandle`] asked for a close; the next poll of either part applies it.
    request: AtomicBool,
    slot: Mutex<Slot>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding the lock cannot leave `Slot` half-updated in a way
        // that matters (two independent options): keep going.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the current session with `reason` unless it is already closed (the
    /// first reason wins). Returns whether this call closed it.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut slot = self.slot();
        let w = self.word.load(Ordering::Acquire);
        if w & CLOSED != 0 {
            return false;
        }
        slot.reason = Some(reason);
        self.word.store(w | CLOSED, Ordering::Release);
        true
    }

    /// Records a corrupt ring (sticky) and closes the session with that reason.
    pub(crate) fn corrupt(&self, reason: CloseReason) {
        {
            let mut slot = self.slot();
            if slot.corrupt.is_none() {
                slot.corrupt = Some(reason.clone());
            }
        }
        self.close(reason);
    }

    /// Starts a new, connected session (after a reattach) — or, if a ring was found
    /// corrupt, a session closed at once with that reason.
    pub(crate) fn reopen(&self) {
        let mut slot = self.slot();
        self.request.store(false, Ordering::Relaxed);
        let session = (self.word.load(Ordering::Acquire) >> 1) + 1;
        slot.reason = slot.corrupt.clone();
        let closed = if slot.reason.is_some() { CLOSED } else { 0 };
        self.word.store(session << 1 | closed, Ordering::Release);
    }

    /// Asks for a close from any thread.
    pub(crate) fn request_close(&self) {
        self.request.store(true, Ordering::Release);
    }

    /// Applies a pending close request, if any.
    #[inline]
    pub(crate) fn take_request(&self) {
        if self.request.load(Ordering::Relaxed) && self.request.swap(false, Ordering::AcqRel) {
            self.close(CloseReason::Requested);
        }
    }

    /// Whether the current session is connected (a live read).
    pub(crate) fn is_connected(&self) -> bool {
        self.word.load(Ordering::Acquire) & CLOSED == 0
    }
}

/// A part's view of the shared state, refreshed at its poll.
#[derive(Debug)]
pub(crate) struct View {
    word: u64,
    reason: Option<CloseReason>,
}

impl View {
    pub(crate) fn new(shared: &Shared) -> View {
        let mut v = View { word: u64::MAX, reason: None };
        v.refresh(shared);
        v
    }

    /// Catches up with the shared state: one atomic load when nothing changed.
    #[inline]
    pub(crate) fn refresh(&mut self, shared: &Shared) {
        if shared.word.load(Ordering::Acquire) != self.word {
            let slot = shared.slot();
            // Read under the lock: the word and the reason change together.
            self.word = shared.word.load(Ordering::Acquire);
            self.reason = slot.reason.clone();
        }
    }

    #[inline]
    pub(crate) fn is_connected(&self) -> bool {
        self.word & CLOSED == 0
    }

    pub(crate) fn reason(&self) -> Option<&CloseReason> {
        if self.is_connected() {
            None
        } else {
            self.reason.as_ref()
        }
    }

    /// The session number (starts at 0, +1 per reattach).
    pub(crate) fn session(&self) -> u64 {
        self.word >> 1
    }
}

/// Requests a close of a connection from any thread. `Clone + Send + Sync`.
///
/// The request is applied at the next `poll` of the connection (or of either of its
/// parts after [`split`](crate::ShmConnection::split)): the connection then reports
/// [`CloseReason::Requested`], and its control part sends a close frame to the peer
/// and drops the control stream. The rings and the file stay: a reattach resumes.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use tcpshm_proto::{CloseReason, Name, Transport};
/// use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmDir, ShmFile};
///
/// let dir = ShmDir::new("/dev/shm", &format!("doc-close-{}-", std::process::id())).unwrap();
/// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
/// let file = ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(4096)).unwrap();
/// let (sock, _peer) = UnixStream::pair().unwrap();
/// sock.set_nonblocking(true).unwrap();
/// let mut conn = ShmConnection::server(file, sock, ShmConfig::default()).unwrap();
/// let handle = conn.close_handle();
/// std::thread::spawn(move || handle.close()).join().unwrap();
/// assert!(conn.is_connected()); // not yet: the owning poll applies it
/// assert!(!conn.poll(1));
/// assert_eq!(conn.close_reason(), Some(&CloseReason::Requested));
/// drop(conn);
/// dir.remove(&s, &c).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct CloseHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CloseHandle {
    /// Asks for a close ([`CloseReason::Requested`]) at the connection's next poll.
    /// Does nothing to a closed connection, and a request not yet applied is dropped
    /// by a reattach.
    pub fn close(&self) {
        self.shared.request_close();
    }

    /// Whether the connection's current session is connected (a live read of the
    /// shared state; the connection's own view catches up at its poll).
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_close_wins_and_reopen_clears() {
        let s = Shared::new();
        let mut v = View::new(&s);
        assert!(v.is_connected() && v.reason().is_none());
        assert!(s.close(CloseReason::PeerDied));
        assert!(!s.close(CloseReason::Requested));
        assert!(v.is_connected(), "a view changes only when refreshed");
        v.refresh(&s);
        assert_eq!(v.reason(), Some(&CloseReason::PeerDied));
        s.reopen();
        v.refresh(&s);
        assert!(v.is_connected() && v.reason().is_none());
        assert_eq!(v.session(), 1);
    }

    #[test]
    fn request_applies_once_and_reopen_drops_a_pending_one() {
        let s = Shared::new();
        s.request_close();
        s.take_request();
        assert!(!s.is_connected());
        s.reopen();
        s.take_request();
        assert!(s.is_connected(), "an applied request must not close the next session");
        s.request_close();
        s.reopen();
        s.take_request();
        assert!(s.is_connected(), "a pending request is dropped by a reopen");
    }

    #[test]
    fn corrupt_is_sticky() {
        let s = Shared::new();
        s.corrupt(CloseReason::Corrupt("x".into()));
        s.reopen();
        let v = View::new(&s);
        assert_eq!(v.reason(), Some(&CloseReason::Corrupt("x".into())));
        assert_eq!(v.session(), 1);
    }
}
