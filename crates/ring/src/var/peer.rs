//! Whether the other end of a var queue is alive: what tells an end, and what it says.

use super::layout::Side;
use crate::sync::{Arc, AtomicBool, Ordering};

/// What an end knows about the other end, from [`Producer::peer`](super::Producer::peer)
/// or [`Consumer::peer`](super::Consumer::peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The other end is alive: not dropped, and (across processes) its process holds
    /// its claim on the region.
    Alive,
    /// No process has claimed the other side of this shared region yet (`shm` ends
    /// only): it may still come, so waiting for it makes sense.
    NotYet,
    /// The other end was dropped, or its process exited or died. Across processes a
    /// new process may claim the side again later, so this is a snapshot.
    Gone,
    /// Nothing tracks the other end: the ends came from
    /// [`attach_raw`](super::attach_raw), whose caller owns liveness (each end may be
    /// in another process, and dropping an unused end must not look like a departure).
    Untracked,
}

/// The flags of two ends made together in one process ([`VarQueue`](super::VarQueue)
/// or [`attach`](super::attach)): each end's `Drop` sets its own.
#[derive(Debug, Default)]
pub(crate) struct PairFlags {
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
}

impl PairFlags {
    fn flag(&self, side: Side) -> &AtomicBool {
        match side {
            Side::Producer => &self.producer_gone,
            Side::Consumer => &self.consumer_gone,
        }
    }
}

/// The source of an end's knowledge of the other end.
#[derive(Debug)]
pub(crate) enum Link {
    /// Ends from `attach_raw`: nothing is tracked, and dropping an end writes nothing.
    Untracked,
    /// Both ends were made together in this process.
    Pair(Arc<PairFlags>),
    /// An end that claimed its side of a `shm::Region`.
    #[cfg(feature = "shm")]
    Shm(crate::shm::Claim),
}

impl Link {
    /// A fresh pair of links for two ends made together.
    pub(crate) fn pair() -> (Link, Link) {
        let flags = Arc::new(PairFlags::default());
        (Link::Pair(flags.clone()), Link::Pair(flags))
    }

    /// The other end's state, seen from `me`. For a `Pair`, one load; for `Shm`, one
    /// `fcntl(F_OFD_GETLK)` system call and two loads.
    pub(crate) fn peer(&self, me: Side) -> Peer {
        match self {
            Link::Untracked => Peer::Untracked,
            // Acquire: everything the other end did before its drop is visible.
            Link::Pair(f) if f.flag(me.other()).load(Ordering::Acquire) => Peer::Gone,
            Link::Pair(_) => Peer::Alive,
            #[cfg(feature = "shm")]
            Link::Shm(claim) => claim.peer(),
        }
    }

    /// Marks `me` as gone (idempotent). Returns whether the other end may need waking
    /// (false for untracked ends, which must not touch the region).
    pub(crate) fn leave(&self, me: Side) -> bool {
        match self {
            Link::Untracked => false,
            Link::Pair(f) => {
                // Release: every operation of this end happens before an end that sees
                // the flag.
                f.flag(me).store(true, Ordering::Release);
                true
            }
            #[cfg(feature = "shm")]
            Link::Shm(claim) => {
                claim.release();
                true
            }
        }
    }
}
