//! The futex word an end parks on, and the fence pair that keeps a wake-up from being
//! lost.
//!
//! Each direction has one 32-bit word: 1 while the waiting end is parked (or about to
//! park), 0 otherwise. The protocol is Dekker's:
//!
//! * the waiter [`arm`]s (stores 1, then a `SeqCst` fence), rechecks its condition
//!   (the other end's index, or its liveness), and only then [`sleep`]s, and only while
//!   the word is still 1 (the kernel compares it atomically with going to sleep);
//! * the notifier changes the condition (publishes an index, or leaves), then
//!   [`notify`] fences (`SeqCst`) and loads the word; if it is 1 it stores 0 and wakes.
//!
//! The two fences are ordered one way or the other: either the notifier's load sees
//! the 1 (and wakes the waiter, or makes its `sleep` return at once), or the waiter's
//! recheck sees the new condition and does not sleep. A notifier that finds 0 pays a
//! fence and a load (a cache hit: the word is written only when an end parks).
//!
//! Under loom the futex is modelled by a mutex and a condition variable (a waiter that
//! nobody wakes is a deadlock loom reports), and the timeout is not modelled: in one
//! process, a leaving end always notifies.

use crate::sync::{fence, AtomicU32, Ordering};
use core::time::Duration;

/// Which processes may wait on a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only this process (the typed queue): a private futex, slightly cheaper.
    Process,
    /// Possibly another process (a var queue's header, which may be a shared mapping).
    Shared,
}

/// The calling end is about to park on `word`.
#[inline]
pub(crate) fn arm(word: &AtomicU32) {
    word.store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
}

/// The calling end will not park after all.
#[inline]
pub(crate) fn disarm(word: &AtomicU32) {
    word.store(0, Ordering::Relaxed);
}

/// Wakes the end parked on `word`, if any: a fence and a load when none is.
#[inline]
pub(crate) fn notify(word: &AtomicU32, scope: Scope) {
    fence(Ordering::SeqCst);
    if word.load(Ordering::Relaxed) != 0 {
        word.store(0, Ordering::Relaxed);
        futex::wake(word, scope);
    }
}

/// Sleeps while `word` is 1, at most `timeout` (woken by [`notify`], by a signal, or
/// spuriously: the caller rechecks its condition either way). Returns whether it slept
/// the whole `timeout` (nobody woke it).
pub(crate) fn sleep(word: &AtomicU32, scope: Scope, timeout: Duration) -> bool {
    futex::wait(word, scope, timeout)
}

#[cfg(not(all(loom, test)))]
mod futex {
    use super::Scope;
    use core::time::Duration;
    use rustix::thread::futex::{self, Flags, Timespec};
    use std::sync::atomic::AtomicU32;

    fn flags(scope: Scope) -> Flags {
        match scope {
            Scope::Process => Flags::PRIVATE,
            Scope::Shared => Flags::empty(),
        }
    }

    pub(super) fn wait(word: &AtomicU32, scope: Scope, timeout: Duration) -> bool {
        let ts =
            Timespec { tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64, tv_nsec: timeout.subsec_nanos() as _ };
        // Woken, EAGAIN (the word is no longer 1) and EINTR all mean "recheck".
        futex::wait(word, flags(scope), 1, Some(&ts)) == Err(rustix::io::Errno::TIMEDOUT)
    }

    pub(super) fn wake(word: &AtomicU32, scope: Scope) {
        // One end parks on a word; waking all costs the same and is robust to a peer
        // that breaks the protocol.
        let _ = futex::wake(word, flags(scope), i32::MAX as u32);
    }
}

#[cfg(all(loom, test))]
mod futex {
    use super::Scope;
    use crate::sync::{AtomicU32, Ordering};
    use core::time::Duration;
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        /// One "kernel" for every word: a wake-up may reach waiters of other words,
        /// which is a spurious wake-up the callers tolerate.
        static ref KERNEL: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub(super) fn wait(word: &AtomicU32, _: Scope, _: Duration) -> bool {
        let guard = KERNEL.0.lock().unwrap();
        // The kernel compares the word and queues the waiter atomically.
        if word.load(Ordering::SeqCst) == 1 {
            drop(KERNEL.1.wait(guard).unwrap());
        }
        false
    }

    pub(super) fn wake(_: &AtomicU32, _: Scope) {
        let _guard = KERNEL.0.lock().unwrap();
        KERNEL.1.notify_all();
    }
}
