//! Waiting push and pop for the typed queue.

use super::bell::{self, Scope};
use super::{Backoff, Wait, WaitError};
use crate::spsc::{Consumer, Full, Producer};
use core::fmt;

/// [`Producer::push_wait`] gave up: why, and the value it could not push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushWaitError<T> {
    /// Why.
    pub reason: WaitError,
    /// The value, back to the caller.
    pub value: T,
}

impl<T> fmt::Display for PushWaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "push gave up: {}", self.reason)
    }
}

impl<T: fmt::Debug> std::error::Error for PushWaitError<T> {}

impl<T> Producer<T> {
    /// Pushes `value`, waiting for room as `w` says while the queue is full, then
    /// wakes the consumer if it is parked. Gives the value back if the consumer is gone
    /// while the queue is full ([`WaitError::Abandoned`]) or after `w.max_timeouts`
    /// rounds ([`WaitError::TimedOut`]). A push into a queue with room succeeds even if
    /// the consumer is gone (as [`push`](Self::push) does; see
    /// [`is_abandoned`](Self::is_abandoned)).
    ///
    /// ```
    /// use tcpshm_ring::{spsc, wait::{Wait, WaitError}};
    /// let (mut tx, rx) = spsc::channel(1);
    /// tx.push_wait(1, &Wait::new()).unwrap();
    /// drop(rx);
    /// let e = tx.push_wait(2, &Wait::new()).unwrap_err();
    /// assert_eq!((e.reason, e.value), (WaitError::Abandoned, 2));
    /// ```
    pub fn push_wait(&mut self, value: T, w: &Wait) -> Result<(), PushWaitError<T>> {
        let mut value = value;
        let mut backoff = Backoff::default();
        loop {
            match self.push(value) {
                Ok(()) => {
                    self.notify();
                    return Ok(());
                }
                Err(Full(v)) => value = v,
            }
            if backoff.snooze(w) {
                continue;
            }
            bell::arm(self.parked_word());
            if self.free(1) > 0 {
                bell::disarm(self.parked_word());
                continue;
            }
            if self.is_abandoned() {
                bell::disarm(self.parked_word());
                return Err(PushWaitError { reason: WaitError::Abandoned, value });
            }
            if bell::sleep(self.parked_word(), Scope::Process, w.park) {
                if let Err(reason) = backoff.timed_out(w) {
                    bell::disarm(self.parked_word());
                    return Err(PushWaitError { reason, value });
                }
            }
        }
    }

    /// Wakes the consumer if it is parked in [`Consumer::pop_wait`]: call it after
    /// plain pushes ([`push`](Self::push), [`push_slice`](Self::push_slice), ...) when
    /// the consumer may be waiting. A fence and a load when it is not parked.
    ///
    /// ```
    /// let (mut tx, _rx) = tcpshm_ring::spsc::channel(8);
    /// tx.push_slice(&[1, 2, 3]);
    /// tx.notify();
    /// ```
    #[inline]
    pub fn notify(&self) {
        bell::notify(&self.shared.ends.consumer_parked, Scope::Process);
    }

    /// The word this producer parks on.
    fn parked_word(&self) -> &crate::sync::AtomicU32 {
        &self.shared.ends.producer_parked
    }
}

impl<T> Consumer<T> {
    /// Pops the oldest item, waiting for one as `w` says while the queue is empty,
    /// then wakes the producer if it is parked. [`WaitError::Abandoned`] once the queue
    /// is empty and the producer is gone (every item it pushed has been popped);
    /// [`WaitError::TimedOut`] after `w.max_timeouts` rounds.
    ///
    /// ```
    /// use tcpshm_ring::{spsc, wait::{Wait, WaitError}};
    /// let (mut tx, mut rx) = spsc::channel(4);
    /// tx.push(7).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.pop_wait(&Wait::new()), Ok(7));
    /// assert_eq!(rx.pop_wait(&Wait::new()), Err(WaitError::Abandoned));
    /// ```
    pub fn pop_wait(&mut self, w: &Wait) -> Result<T, WaitError> {
        let mut backoff = Backoff::default();
        loop {
            if let Some(v) = self.pop() {
                self.notify();
                return Ok(v);
            }
            if backoff.snooze(w) {
                continue;
            }
            bell::arm(self.parked_word());
            if self.available(1) > 0 {
                bell::disarm(self.parked_word());
                continue;
            }
            if self.is_abandoned() {
                bell::disarm(self.parked_word());
                // Acquire on the flag: every push before the drop is visible now.
                return match self.pop() {
                    Some(v) => Ok(v),
                    None => Err(WaitError::Abandoned),
                };
            }
            if bell::sleep(self.parked_word(), Scope::Process, w.park) {
                if let Err(e) = backoff.timed_out(w) {
                    bell::disarm(self.parked_word());
                    return Err(e);
                }
            }
        }
    }

    /// Wakes the producer if it is parked in [`Producer::push_wait`]: call it after
    /// plain pops when the producer may be waiting for room. A fence and a load when
    /// it is not parked.
    #[inline]
    pub fn notify(&self) {
        bell::notify(&self.shared.ends.producer_parked, Scope::Process);
    }

    /// The word this consumer parks on.
    fn parked_word(&self) -> &crate::sync::AtomicU32 {
        &self.shared.ends.consumer_parked
    }
}
