//! The reading end of a var queue.

use super::error::{Corrupt, PopError};
use super::frame::FRAME_HEADER_LEN;
use super::layout::{Config, Side};
use super::peer::{Link, Peer};
use super::region::Ring;
use super::walk::{Found, Step};
use crate::sync::Ordering;
use core::marker::PhantomData;

/// A message borrowed in place from the ring (zero-copy).
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
/// p.alloc(2).unwrap().unwrap().copy_from_slice(b"hi");
/// p.push(3).unwrap();
/// let m = c.front().unwrap().unwrap();
/// assert_eq!(m.msg_type(), 3);
/// assert_eq!(m.payload(), b"hi");
/// assert_eq!(m.bytes().len(), 16); // header + payload + zero padding
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    pub(super) msg_type: u16,
    pub(super) index: u64,
    pub(super) end: u64,
    pub(super) frame: &'a [u8],
    pub(super) len: usize,
}

impl<'a> Msg<'a> {
    /// The message type given to `push`.
    #[inline(always)]
    pub fn msg_type(&self) -> u16 {
        self.msg_type
    }

    /// The payload.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.frame[FRAME_HEADER_LEN..self.len]
    }

    /// The whole frame: header, payload and zero padding, as stored.
    #[inline(always)]
    pub fn bytes(&self) -> &'a [u8] {
        self.frame
    }

    /// Ring index of the frame.
    #[inline(always)]
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Ring index just past the frame (the index of the next one).
    #[inline(always)]
    pub fn end(&self) -> u64 {
        self.end
    }
}

/// Whole frames lying contiguously in the ring, from [`Consumer::contiguous`].
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The frames' bytes: headers, payloads and padding, exactly as stored.
    pub bytes: &'a [u8],
    /// Ring index of the first frame (after skipping a wrap marker at the index asked).
    pub start: u64,
    /// Ring index just past the last frame.
    pub end: u64,
    /// Number of frames.
    pub count: usize,
}

/// The reading end of a var queue: [`front`](Consumer::front) borrows the oldest
/// message in place, [`pop`](Consumer::pop) releases it.
///
/// `Send`, not `Clone`, not `Sync`: one consumer per queue. Every index and frame
/// header that comes from the producer is checked before use, so a faulty or hostile
/// producer (the other process of a shared-memory queue) yields [`Corrupt`], never an
/// out-of-bounds read.
///
/// Dropping a consumer made with its producer ([`VarQueue`](super::VarQueue),
/// [`attach`](super::attach)) or claimed through `shm::Region` tells the producer
/// ([`Producer::is_abandoned`](super::Producer::is_abandoned)); one from
/// [`attach_raw`](super::attach_raw) writes nothing to the region when dropped.
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
/// assert!(c.front().unwrap().is_none());
/// p.alloc(1).unwrap().unwrap()[0] = 5;
/// p.push(0).unwrap();
/// assert_eq!(c.front().unwrap().unwrap().payload(), &[5]);
/// c.pop().unwrap();
/// assert!(c.is_empty());
/// ```
#[derive(Debug)]
pub struct Consumer<'a> {
    ring: Ring,
    /// Our index, including frames popped by `pop_more` and not yet released.
    read: u64,
    /// The last index we released to the producer.
    released: u64,
    /// Last write index of the producer we saw; `<=` the real one.
    cached_write: u64,
    /// Who tells us whether the producer is alive.
    link: Link,
    _region: PhantomData<&'a mut [u8]>,
}

// SAFETY: the consumer's raw pointers address a region that outlives it and whose
// published frames the producer never touches until we release them; moving it to
// another thread is sound.
unsafe impl Send for Consumer<'_> {}

impl<'a> Consumer<'a> {
    pub(crate) fn new(ring: Ring, link: Link) -> Consumer<'a> {
        let read = ring.raw.read_index().load(Ordering::Acquire);
        let write = ring.raw.write_index().load(Ordering::Acquire);
        Consumer { ring, read, released: read, cached_write: write, link, _region: PhantomData }
    }

    /// Rereads the producer's index, refusing an impossible one.
    #[inline]
    fn refresh_write(&mut self) -> Result<(), Corrupt> {
        // Acquire: the producer's frame writes happen before our reads.
        let w = self.ring.raw.write_index().load(Ordering::Acquire);
        if w < self.cached_write || w - self.released > self.ring.capacity || !w.is_multiple_of(self.ring.align) {
            return Err(Corrupt::WriteIndex { write: w, read: self.released });
        }
        self.cached_write = w;
        Ok(())
    }

    /// The frame at ring index `i` (a frame boundary in `read..=write`), skipping a
    /// wrap marker; `None` if `i` is the end of what is published.
    #[inline]
    pub(crate) fn find(&mut self, mut i: u64) -> Result<Option<Found>, Corrupt> {
        loop {
            if i >= self.cached_write {
                self.refresh_write()?;
                if i >= self.cached_write {
                    return Ok(None);
                }
            }
            match self.ring.step_at(i, self.cached_write)? {
                Step::Frame(f) => return Ok(Some(f)),
                Step::Wrap(next) => i = next,
            }
        }
    }

    #[inline(always)]
    pub(crate) fn msg(&self, f: Found) -> Msg<'_> {
        // SAFETY: `find` checked that the frame was published; the producer does not
        // write it again until we release it, which needs `&mut self`, so the slice
        // lives no longer than this borrow.
        unsafe { self.ring.msg(f) }
    }

    /// The message of a frame `find` returned at our read index, which now starts
    /// there (a wrap marker skipped on the way is consumed locally, as in `front`).
    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) fn front_of(&mut self, f: Found) -> Msg<'_> {
        self.read = f.index;
        self.msg(f)
    }

    /// Refuses a caller-supplied index that is not a frame boundary.
    fn check_index(&self, index: u64) -> Result<(), Corrupt> {
        if index.is_multiple_of(self.ring.align) {
            Ok(())
        } else {
            Err(Corrupt::Frame { at: index, len: 0, flags: 0 })
        }
    }

    /// The oldest message, borrowed in place; `Ok(None)` when the queue is empty.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// p.alloc(1).unwrap().unwrap()[0] = 1;
    /// p.push(0).unwrap();
    /// // `front` does not consume: it returns the same message until `pop`.
    /// assert_eq!(c.front().unwrap().unwrap().index(), 0);
    /// assert_eq!(c.front().unwrap().unwrap().index(), 0);
    /// ```
    #[inline]
    pub fn front(&mut self) -> Result<Option<Msg<'_>>, Corrupt> {
        match self.find(self.read)? {
            Some(f) => {
                // Skipping a wrap marker consumes it locally (released with the next pop).
                self.read = f.index;
                Ok(Some(self.msg(f)))
            }
            None => Ok(None),
        }
    }

    /// Releases the oldest message to the producer (one release store).
    /// [`PopError::Empty`] if there is none.
    ///
    /// ```
    /// let (_p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// assert_eq!(c.pop(), Err(tcpshm_ring::var::PopError::Empty));
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Result<(), PopError> {
        self.pop_more()?;
        self.release();
        Ok(())
    }

    /// Pops the message [`front`](Self::front) returned, given its [`Msg::end`]: what
    /// [`pop`](Self::pop) does, without reading the frame's header again (for a
    /// consumer that remembers the front it already looked at). An `end` that is not
    /// past the front's start, beyond what the producer published, or not a multiple of
    /// the alignment consumes nothing and is [`PopError::Corrupt`].
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// for t in 0..2 { p.alloc(3).unwrap().unwrap(); p.push(t).unwrap(); }
    /// let end = c.front().unwrap().unwrap().end();
    /// c.pop_front(end).unwrap();
    /// assert_eq!(c.front().unwrap().unwrap().msg_type(), 1);
    /// assert!(c.pop_front(end).is_err(), "not the front's end any more");
    /// ```
    #[inline]
    pub fn pop_front(&mut self, end: u64) -> Result<(), PopError> {
        if end <= self.read || end > self.cached_write || !end.is_multiple_of(self.ring.align) {
            return Err(PopError::Corrupt(Corrupt::Frame { at: self.read, len: 0, flags: 0 }));
        }
        self.read = end;
        self.release();
        Ok(())
    }

    /// Consumes the oldest message without releasing its bytes to the producer yet:
    /// a batch of `pop_more` then one [`release`](Self::release) costs one store.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// for _ in 0..2 { p.alloc(1).unwrap().unwrap(); p.push(0).unwrap(); }
    /// c.pop_more().unwrap();
    /// c.pop_more().unwrap();
    /// assert_eq!(p.free_bytes(), 256 - 32); // not released yet
    /// c.release();
    /// assert_eq!(p.free_bytes(), 256);
    /// ```
    #[inline]
    pub fn pop_more(&mut self) -> Result<(), PopError> {
        let f = self.find(self.read)?.ok_or(PopError::Empty)?;
        self.read = f.end;
        Ok(())
    }

    /// Releases every consumed byte to the producer.
    #[inline]
    pub fn release(&mut self) {
        if self.read != self.released {
            self.released = self.read;
            // Release: our reads of the frames happen before the producer reuses them.
            self.ring.raw.read_index().store(self.read, Ordering::Release);
        }
    }

    /// The message at ring index `index` without consuming anything: for walking the
    /// queue (resending unacknowledged messages, migrating a queue). `index` must be
    /// [`read_index`](Self::read_index) or a [`Msg::end`] seen since; any other value
    /// yields [`Corrupt`] or an unrelated frame, never an out-of-bounds read.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// for t in 0..3 { p.alloc(0).unwrap().unwrap(); p.push(t).unwrap(); }
    /// let mut i = c.read_index();
    /// let mut types = vec![];
    /// while let Some(m) = c.peek(i).unwrap() { types.push(m.msg_type()); i = m.end(); }
    /// assert_eq!(types, [0, 1, 2]);
    /// ```
    pub fn peek(&mut self, index: u64) -> Result<Option<Msg<'_>>, Corrupt> {
        self.check_index(index)?;
        match self.find(index)? {
            Some(f) => Ok(Some(self.msg(f))),
            None => Ok(None),
        }
    }

    /// Whole frames that lie contiguously in memory from ring index `index`: at least
    /// one frame (if any), then more while they are contiguous and the total stays
    /// within `max_bytes`; `None` if nothing is published at `index`. This is what lets
    /// a transport hand a run of queued frames to one `write` system call.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// for _ in 0..3 { p.alloc(8).unwrap().unwrap(); p.push(1).unwrap(); }
    /// let run = c.contiguous(0, usize::MAX).unwrap().unwrap();
    /// assert_eq!((run.bytes.len(), run.end, run.count), (48, 48, 3));
    /// ```
    pub fn contiguous(&mut self, index: u64, max_bytes: usize) -> Result<Option<Run<'_>>, Corrupt> {
        self.check_index(index)?;
        let Some(first) = self.find(index)? else { return Ok(None) };
        let start = first.index;
        let mut end = first.end;
        let mut count = 1;
        while ((end - start) as usize) < max_bytes && end & self.ring.mask != 0 {
            // A frame at `end` that does not need a wrap is contiguous with the run.
            let Some(next) = self.find(end)? else { break };
            if next.index != end || (next.end - start) as usize > max_bytes {
                break;
            }
            end = next.end;
            count += 1;
        }
        let off = start & self.ring.mask;
        // SAFETY: every frame in `start..end` was checked by `find` to be published and
        // within the data area, and they are contiguous (no wrap between them).
        let bytes = unsafe { core::slice::from_raw_parts(self.ring.at(off), (end - start) as usize) };
        Ok(Some(Run { bytes, start, end, count }))
    }

    /// Whether no message is published right now (rereads the producer's index).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ring.raw.write_index().load(Ordering::Acquire) <= self.read
    }

    /// Bytes in use by published, not yet consumed frames.
    pub fn len_bytes(&self) -> u64 {
        self.ring.raw.write_index().load(Ordering::Acquire).saturating_sub(self.read)
    }

    /// Bytes ever consumed (a free-running index; includes `pop_more` not yet released).
    pub fn read_index(&self) -> u64 {
        self.read
    }

    /// Bytes ever released to the producer.
    pub fn released_index(&self) -> u64 {
        self.released
    }

    /// The queue's layout.
    pub fn config(&self) -> Config {
        Config { capacity: self.ring.capacity as usize, align: self.ring.align as usize }
    }

    /// Largest payload the queue carries.
    pub fn max_payload(&self) -> usize {
        self.ring.max_payload
    }

    /// What this consumer knows about the producer (see [`Peer`]). One load for ends
    /// made together in this process; for a `shm` end, one `fcntl` system call (a few
    /// hundred nanoseconds): poll it when idle, not per message.
    ///
    /// ```
    /// use tcpshm_ring::var::{Peer, VarQueue};
    /// let (p, c) = VarQueue::with_capacity(256);
    /// assert_eq!(c.peer(), Peer::Alive);
    /// drop(p);
    /// assert_eq!(c.peer(), Peer::Gone);
    /// ```
    pub fn peer(&self) -> Peer {
        self.link.peer(Side::Consumer)
    }

    /// Whether the producer is gone ([`Peer::Gone`]): once the queue is empty, nothing
    /// more will come. Messages it published before leaving stay readable.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// p.alloc(1).unwrap().unwrap()[0] = 9;
    /// p.push(0).unwrap();
    /// drop(p);
    /// assert!(c.is_abandoned());
    /// assert_eq!(c.front().unwrap().unwrap().payload(), &[9]);
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.peer() == Peer::Gone
    }

    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        if self.link.leave(Side::Consumer) {
            // While the region is still mapped (the link may hold the last reference
            // to a shared mapping; it is dropped after this body).
            #[cfg(feature = "wait")]
            crate::wait::bell::notify(self.ring.raw.parked(Side::Producer), crate::wait::bell::Scope::Shared);
        }
    }
}
