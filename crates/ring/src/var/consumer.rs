//! The reading end of a var queue.

use super::error::{Corrupt, PopError};
use super::frame::{align_up, FrameHeader, FLAG_WRAP, FRAME_HEADER_LEN};
use super::layout::Config;
use super::region::Ring;
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
    msg_type: u16,
    index: u64,
    end: u64,
    frame: &'a [u8],
    len: usize,
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
    _region: PhantomData<&'a mut [u8]>,
}

// SAFETY: the consumer's raw pointers address a region that outlives it and whose
// published frames the producer never touches until we release them; moving it to
// another thread is sound.
unsafe impl Send for Consumer<'_> {}

/// A frame position found by walking the ring: where it starts (after skipping any
/// wrap marker), where it ends, and its header.
#[derive(Debug, Clone, Copy)]
struct Found {
    index: u64,
    end: u64,
    header: FrameHeader,
}

impl<'a> Consumer<'a> {
    pub(crate) fn new(ring: Ring) -> Consumer<'a> {
        let read = ring.raw.read_index().load(Ordering::Acquire);
        let write = ring.raw.write_index().load(Ordering::Acquire);
        Consumer { ring, read, released: read, cached_write: write, _region: PhantomData }
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
    fn find(&mut self, mut i: u64) -> Result<Option<Found>, Corrupt> {
        loop {
            if i >= self.cached_write {
                self.refresh_write()?;
                if i >= self.cached_write {
                    return Ok(None);
                }
            }
            let off = i & self.ring.mask;
            self.ring.track_read(off, FRAME_HEADER_LEN as u64);
            // SAFETY: `off` is a multiple of the alignment (>= 8) below `capacity`, so
            // the 8 header bytes are in the data area and aligned; they were published
            // (`i < write`, acquire in `refresh_write`).
            let word = unsafe { self.ring.at(off).cast::<u64>().read() };
            let header = FrameHeader::from_word(u64::from_le(word));
            let bad = Corrupt::Frame { at: i, len: header.len, flags: header.flags };
            if header.flags == FLAG_WRAP {
                let skip = self.ring.capacity - off;
                if i + skip > self.cached_write {
                    return Err(bad);
                }
                i += skip;
                continue;
            }
            if header.flags != 0
                || (header.len as usize) < FRAME_HEADER_LEN
                || header.payload_len() > self.ring.max_payload
            {
                return Err(bad);
            }
            let frame = align_up(header.len as u64, self.ring.align);
            if frame > self.ring.capacity - off || i + frame > self.cached_write {
                return Err(bad);
            }
            self.ring.track_read(off, frame);
            return Ok(Some(Found { index: i, end: i + frame, header }));
        }
    }

    #[inline(always)]
    fn msg(&self, f: Found) -> Msg<'_> {
        let off = f.index & self.ring.mask;
        let frame = (f.end - f.index) as usize;
        // SAFETY: `find` checked `off + frame <= capacity` and that the frame was
        // published; the producer does not write it again until we release it, which
        // needs `&mut self`, so the slice lives no longer than this borrow.
        let bytes = unsafe { core::slice::from_raw_parts(self.ring.at(off), frame) };
        Msg { msg_type: f.header.msg_type, index: f.index, end: f.end, frame: bytes, len: f.header.len as usize }
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
}
