//! Waiting alloc and front for the variable-length queue.

use super::bell::{self, Scope};
use super::{Backoff, Wait, WaitError};
use crate::var::{AllocError, Consumer, Corrupt, Msg, NothingAllocated, Peer, PopError, Producer, Side};
use core::fmt;

/// Why [`Producer::alloc_wait`] returned no frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocWaitError {
    /// The consumer is gone, or the wait timed out.
    Wait(WaitError),
    /// The message can never fit, or the consumer's index is impossible.
    Alloc(AllocError),
}

impl fmt::Display for AllocWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocWaitError::Wait(e) => e.fmt(f),
            AllocWaitError::Alloc(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AllocWaitError {}

impl From<AllocError> for AllocWaitError {
    fn from(e: AllocError) -> Self {
        AllocWaitError::Alloc(e)
    }
}

impl From<WaitError> for AllocWaitError {
    fn from(e: WaitError) -> Self {
        AllocWaitError::Wait(e)
    }
}

/// Why [`Consumer::front_wait`] returned no message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontWaitError {
    /// The producer is gone and everything it published was consumed, or the wait
    /// timed out.
    Wait(WaitError),
    /// The producer's index or a frame is impossible.
    Corrupt(Corrupt),
}

impl fmt::Display for FrontWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontWaitError::Wait(e) => e.fmt(f),
            FrontWaitError::Corrupt(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FrontWaitError {}

impl From<Corrupt> for FrontWaitError {
    fn from(e: Corrupt) -> Self {
        FrontWaitError::Corrupt(e)
    }
}

impl From<WaitError> for FrontWaitError {
    fn from(e: WaitError) -> Self {
        FrontWaitError::Wait(e)
    }
}

impl<'a> Producer<'a> {
    /// [`alloc`](Self::alloc), waiting for room as `w` says while the queue is full.
    /// Frames staged by [`push_more`](Self::push_more) are published (and the consumer
    /// notified) before waiting, since the consumer cannot free room it cannot see.
    /// [`WaitError::Abandoned`] if the consumer is gone while the queue is full.
    ///
    /// Publish with [`push_notify`](Self::push_notify) (or `push` then
    /// [`notify`](Self::notify)) so that a consumer parked in
    /// [`Consumer::front_wait`] wakes up.
    ///
    /// ```
    /// use tcpshm_ring::{var::VarQueue, wait::Wait};
    /// let (mut p, mut c) = VarQueue::with_capacity(256);
    /// p.alloc_wait(3, &Wait::new()).unwrap().copy_from_slice(b"abc");
    /// p.push_notify(1).unwrap();
    /// assert_eq!(c.front_wait(&Wait::new()).unwrap().payload(), b"abc");
    /// ```
    pub fn alloc_wait(&mut self, len: usize, w: &Wait) -> Result<&mut [u8], AllocWaitError> {
        let mut backoff = Backoff::default();
        let mut published = false;
        loop {
            if self.has_room(len)? {
                // `has_room` saw room with the cached read index, which `alloc` uses.
                return Ok(self.alloc(len)?.expect("room was just checked"));
            }
            if !published {
                published = true;
                self.publish();
                self.notify();
            }
            if backoff.snooze(w) {
                continue;
            }
            let raw = self.ring().raw;
            let word = raw.parked(Side::Producer);
            bell::arm(word);
            if self.has_room(len)? {
                bell::disarm(word);
                continue;
            }
            if self.peer() == Peer::Gone {
                bell::disarm(word);
                // The consumer may have released room just before it left.
                if self.has_room(len)? {
                    continue;
                }
                return Err(WaitError::Abandoned.into());
            }
            if bell::sleep(word, Scope::Shared, w.park) {
                if let Err(e) = backoff.timed_out(w) {
                    bell::disarm(word);
                    return Err(e.into());
                }
            }
        }
    }

    /// [`push`](Self::push), then [`notify`](Self::notify).
    ///
    /// ```
    /// let (mut p, _c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// assert!(p.push_notify(1).is_err()); // nothing allocated
    /// ```
    #[inline]
    pub fn push_notify(&mut self, msg_type: u16) -> Result<(), NothingAllocated> {
        self.push(msg_type)?;
        self.notify();
        Ok(())
    }

    /// Wakes the consumer if it is parked in [`Consumer::front_wait`] (after
    /// [`publish`](Self::publish) or a plain [`push`](Self::push)). A fence and a load
    /// when it is not parked.
    #[inline]
    pub fn notify(&self) {
        bell::notify(self.ring().raw.parked(Side::Consumer), Scope::Shared);
    }
}

impl<'a> Consumer<'a> {
    /// [`front`](Self::front), waiting for a message as `w` says while the queue is
    /// empty. Bytes consumed by [`pop_more`](Self::pop_more) are released (and the
    /// producer notified) before waiting. [`WaitError::Abandoned`] once the queue is
    /// empty and the producer is gone: every message it published was read.
    ///
    /// Release with [`pop_notify`](Self::pop_notify) (or `pop` then
    /// [`notify`](Self::notify)) so that a producer parked in
    /// [`Producer::alloc_wait`] wakes up.
    ///
    /// ```
    /// use tcpshm_ring::{var::VarQueue, wait::{Wait, WaitError}};
    /// use tcpshm_ring::wait::FrontWaitError;
    /// let (mut p, mut c) = VarQueue::with_capacity(256);
    /// p.alloc(1).unwrap().unwrap()[0] = 5;
    /// p.push(0).unwrap();
    /// drop(p);
    /// assert_eq!(c.front_wait(&Wait::new()).unwrap().payload(), &[5]);
    /// c.pop_notify().unwrap();
    /// assert_eq!(c.front_wait(&Wait::new()).unwrap_err(), FrontWaitError::Wait(WaitError::Abandoned));
    /// ```
    pub fn front_wait(&mut self, w: &Wait) -> Result<Msg<'_>, FrontWaitError> {
        let mut backoff = Backoff::default();
        let mut released = false;
        let found = loop {
            if let Some(f) = self.find(self.read_index())? {
                break f;
            }
            if !released {
                released = true;
                self.release();
                self.notify();
            }
            if backoff.snooze(w) {
                continue;
            }
            let raw = self.ring().raw;
            let word = raw.parked(Side::Consumer);
            bell::arm(word);
            if let Some(f) = self.find(self.read_index())? {
                bell::disarm(word);
                break f;
            }
            if self.peer() == Peer::Gone {
                bell::disarm(word);
                // Everything published before the producer left is visible now.
                match self.find(self.read_index())? {
                    Some(f) => break f,
                    None => return Err(WaitError::Abandoned.into()),
                }
            }
            if bell::sleep(word, Scope::Shared, w.park) {
                if let Err(e) = backoff.timed_out(w) {
                    bell::disarm(word);
                    return Err(e.into());
                }
            }
        };
        Ok(self.front_of(found))
    }

    /// [`pop`](Self::pop), then [`notify`](Self::notify).
    ///
    /// ```
    /// let (_p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// assert!(c.pop_notify().is_err()); // empty
    /// ```
    #[inline]
    pub fn pop_notify(&mut self) -> Result<(), PopError> {
        self.pop()?;
        self.notify();
        Ok(())
    }

    /// Wakes the producer if it is parked in [`Producer::alloc_wait`] (after
    /// [`release`](Self::release) or a plain [`pop`](Self::pop)). A fence and a load
    /// when it is not parked.
    #[inline]
    pub fn notify(&self) {
        bell::notify(self.ring().raw.parked(Side::Producer), Scope::Shared);
    }
}
