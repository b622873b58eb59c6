//! Waiting helpers (feature `wait`, Linux): wait for an item or for room by spinning,
//! then yielding, then parking on a futex, instead of busy-polling, and learn that the
//! other end is gone instead of waiting for it forever.
//!
//! Opt-in: the plain `push`/`pop`/`alloc`/`front` never wait, never park and never
//! notify, and they cost exactly what they cost without this feature. Only the
//! methods below do more:
//!
//! | queue | waits | notifies the other end |
//! |---|---|---|
//! | [`spsc::Producer`](crate::spsc::Producer) | [`push_wait`](crate::spsc::Producer::push_wait) | `push_wait`, [`notify`](crate::spsc::Producer::notify) |
//! | [`spsc::Consumer`](crate::spsc::Consumer) | [`pop_wait`](crate::spsc::Consumer::pop_wait) | `pop_wait`, [`notify`](crate::spsc::Consumer::notify) |
//! | [`var::Producer`](crate::var::Producer) | [`alloc_wait`](crate::var::Producer::alloc_wait) | [`push_notify`](crate::var::Producer::push_notify), [`notify`](crate::var::Producer::notify) |
//! | [`var::Consumer`](crate::var::Consumer) | [`front_wait`](crate::var::Consumer::front_wait) | [`pop_notify`](crate::var::Consumer::pop_notify), [`notify`](crate::var::Consumer::notify) |
//!
//! **Both ends must notify.** A parked end is woken only by the other end's notifying
//! calls (or by its leaving). An end that uses the plain calls leaves a parked peer
//! asleep until its [`Wait::park`] timeout, when it rechecks: slow, never stuck.
//!
//! **Cost.** Notifying is a `SeqCst` fence and a load of a word that is written only
//! when the other end parks, so a cache hit; the futex wake system call happens only
//! when the other end really is parked. Parking costs a futex wait; a wake-up, a few
//! microseconds. `cargo xtask bench ring` measures both against rtrb and crossbeam's
//! `ArrayQueue` (which busy-poll) and std's blocking `sync_channel`.
//!
//! **A dead peer is reported.** Once spinning and yielding are over, each round of
//! parking first checks whether the other end is gone (dropped in this process, or
//! its process exited or died, for `shm` ends: one `fcntl` call per round), and
//! returns [`WaitError::Abandoned`] once nothing more can come (an emptied queue whose
//! producer is gone, a full one whose consumer is gone). A process killed by SIGKILL
//! cannot notify, so it is noticed at the next timeout: within [`Wait::park`].
//!
//! No clock is read and no thread is started: the bounds are counts and a futex
//! timeout (the kernel's).
//!
//! ```
//! use tcpshm_ring::{spsc, wait::{Wait, WaitError}};
//!
//! let (mut tx, mut rx) = spsc::channel::<u64>(64);
//! let t = std::thread::spawn(move || {
//!     for i in 0..1000 {
//!         tx.push_wait(i, &Wait::new()).unwrap();
//!     }
//!     // Dropping `tx` wakes the consumer, which reports it once the queue is empty.
//! });
//! let mut sum = 0;
//! loop {
//!     match rx.pop_wait(&Wait::new()) {
//!         Ok(v) => sum += v,
//!         Err(WaitError::Abandoned) => break,
//!         Err(e) => panic!("{e}"),
//!     }
//! }
//! t.join().unwrap();
//! assert_eq!(sum, 499_500);
//! ```

pub(crate) mod bell;
mod spsc;
mod var;

pub use spsc::PushWaitError;
pub use var::{AllocWaitError, FrontWaitError};

use core::fmt;
use core::time::Duration;

/// How to wait: spin, then yield, then park in rounds of at most `park` (each round
/// starts with a check of the other end's liveness), giving up after `max_timeouts`
/// rounds that ran their full time without a wake-up.
///
/// ```
/// use std::time::Duration;
/// use tcpshm_ring::wait::Wait;
///
/// let default = Wait::new();
/// // Latency first: spin longer before giving the core away.
/// let eager = Wait { spins: 10_000, ..Wait::new() };
/// // A bounded wait: give up after 10 parks of 1 ms in which nothing happened.
/// let bounded = Wait { park: Duration::from_millis(1), max_timeouts: Some(10), ..Wait::new() };
/// assert!(eager.spins > default.spins && bounded.max_timeouts.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Polls with a spin-loop hint between them (each a few tens of nanoseconds).
    pub spins: u32,
    /// Then polls with `sched_yield` between them (the core goes to another thread if
    /// one is runnable).
    pub yields: u32,
    /// Then parks for at most this long per round; a round also rechecks the other
    /// end's liveness, so this bounds how late a SIGKILLed peer is noticed.
    pub park: Duration,
    /// Give up with [`WaitError::TimedOut`] when this many parks have run their full
    /// `park` time without being woken (`Some(0)` counts as `Some(1)`); `None`: never.
    /// A wake-up (the other end notified) does not count: the other end is active.
    pub max_timeouts: Option<u32>,
}

impl Wait {
    /// 128 spins, 16 yields, then parking in rounds of 1 ms, without limit.
    ///
    /// ```
    /// let w = tcpshm_ring::wait::Wait::new();
    /// assert_eq!((w.spins, w.yields, w.max_timeouts), (128, 16, None));
    /// ```
    pub const fn new() -> Wait {
        Wait { spins: 128, yields: 16, park: Duration::from_millis(1), max_timeouts: None }
    }
}

impl Default for Wait {
    fn default() -> Wait {
        Wait::new()
    }
}

/// Why a waiting call returned without an item or room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// The other end is gone and nothing more can happen: the queue is empty and its
    /// producer is gone, or it is full and its consumer is gone.
    Abandoned,
    /// [`Wait::max_timeouts`] parks ran their full time without a wake-up.
    TimedOut,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Abandoned => f.write_str("the other end of the queue is gone"),
            WaitError::TimedOut => f.write_str("gave up waiting: the configured number of parks timed out"),
        }
    }
}

impl std::error::Error for WaitError {}

/// Where a waiting call is in its [`Wait`] policy.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    polls: u32,
    timeouts: u32,
}

impl Backoff {
    /// Spins or yields once if the policy still allows; `false` when it is time to park.
    #[inline]
    pub(crate) fn snooze(&mut self, w: &Wait) -> bool {
        if self.polls < w.spins {
            crate::sync::spin_loop();
        } else if self.polls - w.spins < w.yields {
            crate::sync::yield_now();
        } else {
            return false;
        }
        self.polls += 1;
        true
    }

    /// Counts a park that timed out; [`WaitError::TimedOut`] at the limit.
    pub(crate) fn timed_out(&mut self, w: &Wait) -> Result<(), WaitError> {
        self.timeouts += 1;
        match w.max_timeouts {
            Some(max) if self.timeouts >= max.max(1) => Err(WaitError::TimedOut),
            _ => Ok(()),
        }
    }
}
