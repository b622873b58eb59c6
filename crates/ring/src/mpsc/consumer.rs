//! The reading end of a many-to-one queue.

use super::layout::{align8, Record, FLAG_PAD, RECORD_HEADER_LEN, WORDS};
use super::region::Ring;
use crate::sync::Ordering;
use crate::var::{Corrupt, PopError};
use core::marker::PhantomData;

/// A message borrowed in place from a many-to-one queue (zero-copy).
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
/// p.push(3, b"hi").unwrap();
/// let m = c.front().unwrap().unwrap();
/// assert_eq!((m.msg_type(), m.payload(), m.index(), m.end()), (3, &b"hi"[..], 0, 16));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    msg_type: u16,
    index: u64,
    end: u64,
    payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// The message type given to the push.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(42, b"").unwrap();
    /// assert_eq!(c.front().unwrap().unwrap().msg_type(), 42);
    /// ```
    #[inline(always)]
    pub fn msg_type(&self) -> u16 {
        self.msg_type
    }

    /// The payload.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push_with(3, 0, |buf| buf.copy_from_slice(b"abc")).unwrap();
    /// assert_eq!(c.front().unwrap().unwrap().payload(), b"abc");
    /// ```
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Ring index of the record.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, &[1; 5]).unwrap(); // 8-byte header + 5, rounded up to 16
    /// p.push(0, &[2]).unwrap();
    /// c.pop().unwrap();
    /// assert_eq!(c.front().unwrap().unwrap().index(), 16);
    /// ```
    #[inline(always)]
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Ring index just past the record (and its padding).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, &[0; 9]).unwrap();
    /// assert_eq!(c.front().unwrap().unwrap().end(), 24);
    /// ```
    #[inline(always)]
    pub fn end(&self) -> u64 {
        self.end
    }
}

/// What [`Consumer::recover`] found and did.
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
/// p.push(1, b"a").unwrap();
/// p.push(1, b"b").unwrap();
/// // SAFETY: no push is in progress.
/// let r = unsafe { c.recover() }.unwrap();
/// assert_eq!(r, tcpshm_ring::mpsc::Recovered { released: 0, padded: 0, messages: 2 });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Bytes of an interrupted release it finished (0 if none was interrupted).
    pub released: u64,
    /// Claims left uncommitted by dead producers, now padding.
    pub padded: u64,
    /// Committed messages between the head and the tail, still to be read.
    pub messages: u64,
}

/// The reading end of a many-to-one queue: [`front`](Consumer::front) borrows the
/// oldest committed message in place, [`pop`](Consumer::pop) releases it.
///
/// `Send`, not `Clone`, not `Sync`: one consumer per queue. Every record header is
/// checked before use, so a faulty producer (in shared memory, another process)
/// yields [`Corrupt`], never an out-of-bounds read.
///
/// A message claimed but not committed yet blocks the ones claimed after it (the
/// consumer reads in claim order): `front` says `None` until its producer commits.
/// A producer that unwinds pads its claim; a producer whose *process* died is padded
/// by [`recover`](Consumer::recover).
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
/// assert!(c.front().unwrap().is_none());
/// p.push(1, &[5]).unwrap();
/// assert_eq!(c.front().unwrap().unwrap().payload(), &[5]);
/// c.pop().unwrap();
/// assert!(c.is_empty());
/// ```
#[derive(Debug)]
pub struct Consumer<'a> {
    ring: Ring,
    /// Our index, including records popped by `pop_more` and not released yet.
    read: u64,
    /// The head we last stored.
    released: u64,
    _region: PhantomData<&'a [u8]>,
}

// SAFETY: the consumer's raw pointers address a region that outlives it; it reads
// only committed records, which no producer writes until the consumer released them.
unsafe impl Send for Consumer<'_> {}

impl<'a> Consumer<'a> {
    pub(crate) fn new(ring: Ring) -> Consumer<'a> {
        let head = ring.raw.head().load(Ordering::Acquire);
        Consumer { ring, read: head, released: head, _region: PhantomData }
    }

    /// The record at our read index: `Ok(None)` if it is not committed (or not
    /// claimed) yet.
    #[inline]
    fn record(&self, i: u64) -> Result<Option<(Record, u64)>, Corrupt> {
        if i - self.released >= self.ring.capacity {
            // A whole lap read and not released: the bytes at `i` are a record read
            // already (producers claim nothing beyond the head plus the capacity).
            return Ok(None);
        }
        let off = i & self.ring.mask;
        // Acquire: the producer's payload writes happen before we read them.
        let r = Record::from_word(self.ring.header(off).load(Ordering::Acquire));
        if r.len <= 0 {
            return Ok(None);
        }
        let frame = align8(r.len as u64);
        let pad = r.flags == FLAG_PAD;
        let bad = (r.len as usize) < RECORD_HEADER_LEN
            || (r.flags != 0 && !pad)
            || (!pad && r.len as usize - RECORD_HEADER_LEN > self.ring.max_payload)
            || frame > self.ring.capacity - off
            || i + frame - self.released > self.ring.capacity;
        if bad {
            return Err(Corrupt::Frame { at: i, len: r.len as u32, flags: r.flags });
        }
        Ok(Some((r, frame)))
    }

    /// The oldest committed message, borrowed in place; `Ok(None)` when there is none
    /// (the queue is empty, or its oldest claim is not committed yet). Padding records
    /// on the way are consumed locally (released with the next release).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, &[1]).unwrap();
    /// // `front` does not consume: the same message until `pop`.
    /// assert_eq!(c.front().unwrap().unwrap().index(), 0);
    /// assert_eq!(c.front().unwrap().unwrap().index(), 0);
    /// ```
    #[inline]
    pub fn front(&mut self) -> Result<Option<Msg<'_>>, Corrupt> {
        loop {
            let Some((r, frame)) = self.record(self.read)? else { return Ok(None) };
            if r.flags == FLAG_PAD {
                self.read += frame;
                continue;
            }
            let off = self.read & self.ring.mask;
            let len = r.len as usize - RECORD_HEADER_LEN;
            self.ring.track_read(off + RECORD_HEADER_LEN as u64, frame - RECORD_HEADER_LEN as u64);
            // SAFETY: `record` checked that the committed record lies within the data
            // area; no producer writes it before we release it, which needs
            // `&mut self`, so the slice lives no longer than this borrow.
            let payload = unsafe { core::slice::from_raw_parts(self.ring.at(off + RECORD_HEADER_LEN as u64), len) };
            return Ok(Some(Msg { msg_type: r.msg_type, index: self.read, end: self.read + frame, payload }));
        }
    }

    /// Consumes the oldest message and releases it (and everything consumed before)
    /// to the producers. [`PopError::Empty`] if there is none.
    ///
    /// ```
    /// let (_p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// assert_eq!(c.pop(), Err(tcpshm_ring::var::PopError::Empty));
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Result<(), PopError> {
        self.pop_more()?;
        self.release();
        Ok(())
    }

    /// Consumes the oldest message without releasing its bytes yet: a batch of
    /// `pop_more` then one [`release`](Self::release).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(64);
    /// p.push(0, &[0; 24]).unwrap();
    /// p.push(0, &[0; 24]).unwrap();
    /// c.pop_more().unwrap();
    /// assert!(!p.push(0, &[0; 24]).unwrap()); // not released yet
    /// c.release();
    /// assert!(p.push(0, &[0; 24]).unwrap());
    /// ```
    #[inline]
    pub fn pop_more(&mut self) -> Result<(), PopError> {
        let end = self.front()?.ok_or(PopError::Empty)?.end;
        self.read = end;
        Ok(())
    }

    /// Releases every consumed byte to the producers: zeroes them, then stores the
    /// head (see the layout's "Releasing" for why a crash in between is safe).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, b"x").unwrap();
    /// c.pop_more().unwrap();
    /// assert_eq!((c.read_index(), c.released_index()), (16, 0));
    /// c.release();
    /// assert_eq!(c.released_index(), 16);
    /// ```
    #[inline]
    pub fn release(&mut self) {
        if self.read != self.released {
            let raw = self.ring.raw;
            raw.releasing().store(self.read, Ordering::Relaxed);
            // `releasing` is stored before the bytes are zeroed (program order is what a
            // killed process leaves behind).
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
            self.ring.zero(self.released, self.read);
            // Release: the zeroing happens before a producer reuses the bytes.
            raw.head().store(self.read, Ordering::Release);
            self.released = self.read;
        }
    }

    /// Whether nothing is claimed beyond what this consumer read (rereads the tail).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// assert!(c.is_empty());
    /// p.push(0, b"x").unwrap();
    /// assert!(!c.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ring.raw.tail().load(Ordering::Acquire) <= self.read
    }

    /// Bytes claimed by producers and not yet read (committed or not).
    ///
    /// ```
    /// let (mut p, c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, &[0; 8]).unwrap();
    /// assert_eq!(c.claimed_bytes(), 16);
    /// ```
    pub fn claimed_bytes(&self) -> u64 {
        self.ring.raw.tail().load(Ordering::Acquire).saturating_sub(self.read)
    }

    /// Bytes ever consumed (a free-running index; includes `pop_more` not released).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, b"x").unwrap();
    /// c.pop_more().unwrap();
    /// assert_eq!(c.read_index(), 16); // consumed, not released yet
    /// assert_eq!(c.released_index(), 0);
    /// ```
    pub fn read_index(&self) -> u64 {
        self.read
    }

    /// Bytes ever released to the producers (the head).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(0, b"x").unwrap();
    /// c.pop().unwrap();
    /// assert_eq!(c.released_index(), 16);
    /// ```
    pub fn released_index(&self) -> u64 {
        self.released
    }

    /// Bytes of the data area.
    ///
    /// ```
    /// let (_p, c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(300);
    /// assert_eq!(c.capacity(), 512);
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Largest payload the queue carries.
    ///
    /// ```
    /// let (_p, c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// assert_eq!(c.max_payload(), 120); // half the capacity less the header
    /// ```
    pub fn max_payload(&self) -> usize {
        self.ring.max_payload
    }

    /// Consumer word `i` (`i < 4`): four `u64`s in the region's header that the queue
    /// itself never reads or writes, for the consumer's own bookkeeping. They live in
    /// the region, so in a shared-memory file they survive the consumer's process: a
    /// consumer that moves messages elsewhere keeps its commit protocol here (the
    /// tcpshm connection records where a move into its session stands). Zero in a
    /// fresh region.
    ///
    /// ```
    /// let (_p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(64);
    /// assert_eq!(c.word(3), 0);
    /// c.set_word(3, 42);
    /// assert_eq!(c.word(3), 42);
    /// ```
    ///
    /// # Panics
    /// If `i >= 4`.
    pub fn word(&self, i: usize) -> u64 {
        self.ring.raw.word(i).load(Ordering::Acquire)
    }

    /// Sets consumer word `i` (`i < 4`; see [`word`](Self::word)). One release store.
    ///
    /// # Panics
    /// If `i >= 4`.
    ///
    /// ```
    /// let (_p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(64);
    /// c.set_word(0, 7);
    /// assert_eq!(c.word(0), 7);
    /// ```
    pub fn set_word(&mut self, i: usize, value: u64) {
        debug_assert!(i < WORDS);
        self.ring.raw.word(i).store(value, Ordering::Release);
        // Later stores of this thread stay after it in program order (a killed
        // process leaves them in that order).
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// Makes the queue whole after processes died with it: finishes a release that a
    /// killed consumer left half done, and turns every claim that a dead producer left
    /// uncommitted into padding, so the committed messages behind it can be read.
    /// Returns what it found.
    ///
    /// Claims are recognised by their header: a claim whose length was written is
    /// padded by that length; a claim whose header was not written yet is all zero (a
    /// producer writes the header before the payload, and released bytes are zero),
    /// so it is padded up to the next written header, the end of the ring or the tail.
    ///
    /// # Safety
    /// No producer of this queue may be alive in the middle of a push: every process
    /// that pushed since the last recovery has exited, or is known to push no more
    /// (their pushes that returned are committed and are kept). A live producer's claim
    /// would be padded under it, and its writes would then race with the consumer. A
    /// file-backed queue (`shm::MpscRegion`, feature `shm`) calls this when its owner's
    /// exclusive lock proves it.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// p.push(1, b"kept").unwrap();
    /// // SAFETY: no push is in progress.
    /// let r = unsafe { c.recover() }.unwrap();
    /// assert_eq!((r.padded, r.messages), (0, 1));
    /// ```
    pub unsafe fn recover(&mut self) -> Result<Recovered, Corrupt> {
        let raw = self.ring.raw;
        let cap = self.ring.capacity;
        let mut out = Recovered::default();
        let head = raw.head().load(Ordering::Acquire);
        let tail = raw.tail().load(Ordering::Acquire);
        let releasing = raw.releasing().load(Ordering::Acquire);
        if head > tail || tail - head > cap || !head.is_multiple_of(8) || !tail.is_multiple_of(8) {
            return Err(Corrupt::WriteIndex { write: tail, read: head });
        }
        let mut start = head;
        if releasing > head {
            if releasing > tail || !releasing.is_multiple_of(8) {
                return Err(Corrupt::ReadIndex { read: releasing, write: tail });
            }
            // A killed consumer was zeroing `head..releasing`: finish it.
            self.ring.zero(head, releasing);
            raw.head().store(releasing, Ordering::Release);
            out.released = releasing - head;
            start = releasing;
        }
        self.read = start;
        self.released = start;
        let mut i = start;
        while i < tail {
            let off = i & self.ring.mask;
            let to_end = cap - off;
            let r = Record::from_word(self.ring.header(off).load(Ordering::Acquire));
            let frame = if r.len > 0 {
                let Some((r, frame)) = self.record(i)? else { unreachable!("a committed length") };
                if r.flags != FLAG_PAD {
                    out.messages += 1;
                }
                frame
            } else {
                let frame = if r.len < 0 {
                    // Claimed with its length, never committed.
                    let frame = align8(r.len.unsigned_abs() as u64);
                    if (r.len.unsigned_abs() as usize) < RECORD_HEADER_LEN || frame > to_end || i + frame > tail {
                        return Err(Corrupt::Frame { at: i, len: r.len as u32, flags: r.flags });
                    }
                    frame
                } else {
                    // Claimed, header never written: zero up to the next written header.
                    let mut j = i + 8;
                    while j < tail
                        && j - i < to_end
                        && self.ring.header(j & self.ring.mask).load(Ordering::Acquire) == 0
                    {
                        j += 8;
                    }
                    j - i
                };
                self.ring.header(off).store(Record::pad(frame).to_word(), Ordering::Release);
                out.padded += 1;
                frame
            };
            i += frame;
        }
        Ok(out)
    }
}
