//! The writing end of a var queue.

use super::consumer::Msg;
use super::error::{AllocError, Corrupt, NothingAllocated};
use super::frame::{align_up, FrameHeader, FLAG_WRAP, FRAME_HEADER_LEN};
use super::layout::{Config, Side};
use super::peer::{Link, Peer};
use super::region::Ring;
use super::walk::Step;
use crate::sync::Ordering;
use core::marker::PhantomData;

/// A frame handed out by `alloc` and not yet pushed.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Bytes skipped by a wrap marker before the frame (0 if none).
    skip: u64,
    /// Payload length.
    len: u32,
}

/// The writing end of a var queue: [`alloc`](Producer::alloc) a frame in place, write
/// the payload, [`push`](Producer::push) it.
///
/// `Send`, not `Clone`, not `Sync`: one producer per queue.
///
/// Dropping a producer made with its consumer ([`VarQueue`](super::VarQueue),
/// [`attach`](super::attach)) or claimed through `shm::Region` tells the consumer
/// ([`Consumer::is_abandoned`](super::Consumer::is_abandoned)); one from
/// [`attach_raw`](super::attach_raw) writes nothing to the region when dropped.
///
/// ```
/// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(1024);
/// let buf = p.alloc(3).unwrap().expect("room");
/// buf.copy_from_slice(b"abc");
/// p.push(42).unwrap();
/// let m = c.front().unwrap().unwrap();
/// assert_eq!((m.msg_type(), m.payload()), (42, &b"abc"[..]));
/// ```
#[derive(Debug)]
pub struct Producer<'a> {
    ring: Ring,
    /// Our index, including frames staged by `push_more` and not yet published.
    write: u64,
    /// The last index we published to the consumer.
    published: u64,
    /// Last read index of the consumer we saw; `<=` the real one.
    cached_read: u64,
    pending: Option<Pending>,
    /// Who tells us whether the consumer is alive.
    link: Link,
    _region: PhantomData<&'a mut [u8]>,
}

// SAFETY: the producer's raw pointers address a region that outlives it (the lifetime,
// an `Arc`, or the `attach_raw` contract) and that only this producer writes frames
// into; moving it to another thread is sound.
unsafe impl Send for Producer<'_> {}

impl<'a> Producer<'a> {
    pub(crate) fn new(ring: Ring, link: Link) -> Producer<'a> {
        let write = ring.raw.write_index().load(Ordering::Acquire);
        let read = ring.raw.read_index().load(Ordering::Acquire);
        Producer { ring, write, published: write, cached_read: read, pending: None, link, _region: PhantomData }
    }

    /// Rereads the consumer's index, refusing an impossible one.
    #[inline]
    fn refresh_read(&mut self) -> Result<(), Corrupt> {
        // Acquire: the consumer's reads of the bytes it released happen before we
        // overwrite them.
        let r = self.ring.raw.read_index().load(Ordering::Acquire);
        if r < self.cached_read || r > self.published || !r.is_multiple_of(self.ring.align) {
            return Err(Corrupt::ReadIndex { read: r, write: self.published });
        }
        self.cached_read = r;
        Ok(())
    }

    /// Reserves a frame for a `len`-byte payload and returns the payload bytes, in
    /// place in the ring, to be filled and then published by [`push`](Self::push) or
    /// [`push_more`](Self::push_more).
    ///
    /// `Ok(None)` when there is no room now (backpressure: try again after the consumer
    /// pops); `Err(TooLarge)` when `len` exceeds [`max_payload`](Self::max_payload) (it
    /// never will fit). A second `alloc` before `push` replaces the first. The bytes
    /// are not zeroed: they may hold an old message.
    ///
    /// ```
    /// let (mut p, _c) = tcpshm_ring::var::VarQueue::with_capacity(64);
    /// assert!(p.alloc(p.max_payload() + 1).is_err());
    /// assert!(p.alloc(24).unwrap().is_some());
    /// p.push(1).unwrap();
    /// assert!(p.alloc(24).unwrap().is_some());
    /// p.push(1).unwrap();
    /// assert!(p.alloc(24).unwrap().is_none()); // full
    /// ```
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, AllocError> {
        if len > self.ring.max_payload {
            return Err(AllocError::TooLarge { len, max: self.ring.max_payload });
        }
        let frame = align_up((FRAME_HEADER_LEN + len) as u64, self.ring.align);
        let off = self.write & self.ring.mask;
        let to_end = self.ring.capacity - off;
        let skip = if frame > to_end { to_end } else { 0 };
        let need = skip + frame;
        if self.write + need - self.cached_read > self.ring.capacity {
            self.refresh_read()?;
            if self.write + need - self.cached_read > self.ring.capacity {
                self.pending = None;
                return Ok(None);
            }
        }
        let pos = if skip > 0 {
            self.ring.track_write(off, FRAME_HEADER_LEN as u64);
            0
        } else {
            off
        };
        self.ring.track_write(pos, frame);
        self.pending = Some(Pending { skip, len: len as u32 });
        // Zeroing the 8-byte words that hold padding *before* the caller writes the
        // payload keeps stale bytes out of the padding with one or two aligned stores
        // instead of a variable-length memset after the payload.
        // SAFETY: `pos + frame <= capacity` (wrapping if needed) and `write..write +
        // need` is free: released by the consumer (acquire above), unread until publish.
        unsafe {
            let at = self.ring.at(pos);
            let mut word = (FRAME_HEADER_LEN + len) as u64 & !7;
            while word < frame {
                at.add(word as usize).cast::<u64>().write(0);
                word += 8;
            }
            Ok(Some(core::slice::from_raw_parts_mut(at.add(FRAME_HEADER_LEN), len)))
        }
    }

    /// Whether [`alloc`](Self::alloc)`(len)` would hand out a frame now (rereading the
    /// consumer's index if the cached one says no), without handing it out.
    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) fn has_room(&mut self, len: usize) -> Result<bool, AllocError> {
        if len > self.ring.max_payload {
            return Err(AllocError::TooLarge { len, max: self.ring.max_payload });
        }
        let frame = align_up((FRAME_HEADER_LEN + len) as u64, self.ring.align);
        let to_end = self.ring.capacity - (self.write & self.ring.mask);
        let need = if frame > to_end { to_end + frame } else { frame };
        if self.write + need - self.cached_read <= self.ring.capacity {
            return Ok(true);
        }
        self.refresh_read()?;
        Ok(self.write + need - self.cached_read <= self.ring.capacity)
    }

    /// Writes the wrap marker (if any), the header and the zeroed padding of the
    /// pending frame, and advances our index without publishing it.
    #[inline]
    fn stage(&mut self, msg_type: u16) -> Result<(), NothingAllocated> {
        let p = self.pending.take().ok_or(NothingAllocated)?;
        if p.skip > 0 {
            let marker = FrameHeader { len: FRAME_HEADER_LEN as u32, msg_type: 0, flags: FLAG_WRAP };
            // SAFETY: the marker's 8 bytes at `write % capacity` were reserved by
            // `alloc` (`skip >= 8` because offsets and capacity are multiples of the
            // alignment) and the slot is 8-aligned.
            unsafe { self.ring.at(self.write & self.ring.mask).cast::<u64>().write(marker.to_word().to_le()) };
            self.write += p.skip;
        }
        let pos = self.write & self.ring.mask;
        let len = FRAME_HEADER_LEN as u32 + p.len;
        let frame = align_up(len as u64, self.ring.align);
        let header = FrameHeader { len, msg_type, flags: 0 };
        // SAFETY: `pos..pos + frame` was reserved by `alloc` (which also zeroed the
        // padding); `pos` is 8-aligned.
        unsafe { self.ring.at(pos).cast::<u64>().write(header.to_word().to_le()) };
        self.write += frame;
        Ok(())
    }

    /// Publishes the frame from the last [`alloc`](Self::alloc) (and any staged by
    /// [`push_more`](Self::push_more)) with message type `msg_type`.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// assert!(p.push(1).is_err()); // nothing allocated
    /// p.alloc(0).unwrap().unwrap();
    /// p.push(9).unwrap();
    /// assert_eq!(c.front().unwrap().unwrap().payload(), b"");
    /// ```
    #[inline]
    pub fn push(&mut self, msg_type: u16) -> Result<(), NothingAllocated> {
        self.stage(msg_type)?;
        self.publish();
        Ok(())
    }

    /// Completes the frame from the last [`alloc`](Self::alloc) but does not publish
    /// it: the consumer sees it, with every frame staged before it, at the next
    /// [`publish`](Self::publish) or [`push`](Self::push) — one index store for a batch.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// for t in 0..3 {
    ///     p.alloc(1).unwrap().unwrap()[0] = t as u8;
    ///     p.push_more(t).unwrap();
    /// }
    /// assert!(c.front().unwrap().is_none());
    /// p.publish();
    /// assert_eq!(c.front().unwrap().unwrap().msg_type(), 0);
    /// ```
    #[inline]
    pub fn push_more(&mut self, msg_type: u16) -> Result<(), NothingAllocated> {
        self.stage(msg_type)
    }

    /// Drops every frame staged by [`push_more`](Self::push_more) since the last
    /// publish, and a frame [`alloc`](Self::alloc)ated and not pushed: the write index
    /// goes back to the published one, so the consumer never sees them and the next
    /// `alloc` reuses their bytes. Returns how many bytes were given back (wrap
    /// markers included). The abort of an all-or-nothing batch.
    ///
    /// Nothing reaches the region: staged frames were only ever written beyond the
    /// published index, which the consumer does not read past.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// p.alloc(1).unwrap().unwrap()[0] = 1;
    /// p.push(1).unwrap();
    /// for t in 2..4 {
    ///     p.alloc(1).unwrap().unwrap()[0] = t as u8;
    ///     p.push_more(t).unwrap();
    /// }
    /// assert_eq!(p.discard_staged(), 32); // two 16-byte frames
    /// p.publish(); // nothing left to publish
    /// assert_eq!(c.front().unwrap().unwrap().msg_type(), 1);
    /// c.pop().unwrap();
    /// assert!(c.front().unwrap().is_none());
    /// ```
    #[inline]
    pub fn discard_staged(&mut self) -> u64 {
        self.pending = None;
        let n = self.write - self.published;
        self.write = self.published;
        n
    }

    /// Makes every staged frame visible to the consumer (one release store).
    #[inline]
    pub fn publish(&mut self) {
        if self.write != self.published {
            self.published = self.write;
            // Release: the frames' bytes happen before the consumer sees the index.
            self.ring.raw.write_index().store(self.write, Ordering::Release);
        }
    }

    /// Largest payload [`alloc`](Self::alloc) accepts: half the capacity less the
    /// 8-byte frame header.
    pub fn max_payload(&self) -> usize {
        self.ring.max_payload
    }

    /// The queue's layout.
    pub fn config(&self) -> Config {
        Config { capacity: self.ring.capacity as usize, align: self.ring.align as usize }
    }

    /// Bytes free for frames right now (rereads the consumer's index).
    ///
    /// ```
    /// let (p, _c) = tcpshm_ring::var::VarQueue::with_capacity(64);
    /// assert_eq!(p.free_bytes(), 64);
    /// ```
    pub fn free_bytes(&self) -> u64 {
        let r = self.ring.raw.read_index().load(Ordering::Acquire);
        self.ring.capacity - (self.write - r.min(self.write))
    }

    /// Bytes ever written, including staged frames (a free-running index).
    pub fn write_index(&self) -> u64 {
        self.write
    }

    /// Bytes ever published.
    pub fn published_index(&self) -> u64 {
        self.published
    }

    /// The consumer's read index as this producer sees it now: every byte below it was
    /// released (the consumer is done with it). Frames from here to
    /// [`published_index`](Self::published_index) are published and not yet released;
    /// walk them with [`peek`](Self::peek).
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// p.alloc(1).unwrap().unwrap();
    /// p.push(0).unwrap();
    /// assert_eq!(p.released_index(), 0);
    /// c.pop().unwrap();
    /// assert_eq!(p.released_index(), 16);
    /// ```
    pub fn released_index(&self) -> u64 {
        self.ring.raw.read_index().load(Ordering::Acquire)
    }

    /// A published frame of ours that the consumer may not have released yet, read in
    /// place without consuming anything: for copying a queue's unconsumed messages
    /// elsewhere (a connection that moves from shared memory to TCP resends them).
    /// `index` must be a frame boundary in
    /// [`released_index`](Self::released_index)`..`[`published_index`](Self::published_index)
    /// (the released index read before the walk, or a [`Msg::end`] seen since);
    /// `Ok(None)` at the published end. Any other index yields [`Corrupt`] or an
    /// unrelated frame, never an out-of-bounds read; the header is validated as the
    /// consumer validates it, because in shared memory another process can write it.
    ///
    /// **Why it is sound while the consumer pops concurrently.** The consumer only
    /// *reads* published frames and then advances the read index; it never writes frame
    /// bytes. Only this producer writes them, and only in [`alloc`](Self::alloc), which
    /// reuses bytes below the read index. `alloc` needs `&mut self`, and the returned
    /// [`Msg`] borrows `&self`, so while a peeked message is alive no frame can be
    /// overwritten, whatever the consumer releases meanwhile: both sides merely read
    /// the same bytes. A frame the consumer released after this producer last looked at
    /// the read index is still intact, since the space is reused only by a later
    /// `alloc`.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// for t in 0..3 { p.alloc(1).unwrap().unwrap()[0] = t as u8; p.push(t).unwrap(); }
    /// c.pop().unwrap(); // the consumer took message 0
    /// let mut i = p.released_index();
    /// let mut unconsumed = vec![];
    /// while let Some(m) = p.peek(i).unwrap() {
    ///     unconsumed.push(m.payload()[0]);
    ///     i = m.end();
    /// }
    /// assert_eq!(unconsumed, [1, 2]);
    /// ```
    pub fn peek(&self, index: u64) -> Result<Option<Msg<'_>>, Corrupt> {
        let mut i = index;
        if !i.is_multiple_of(self.ring.align) {
            return Err(Corrupt::Frame { at: i, len: 0, flags: 0 });
        }
        loop {
            if i >= self.published {
                return Ok(None);
            }
            match self.ring.step_at(i, self.published)? {
                // SAFETY: the frame is ours and published; only `alloc` (which needs
                // `&mut self`) writes frame bytes, so they stay intact while `&self` is
                // borrowed; the consumer only reads them.
                Step::Frame(f) => return Ok(Some(unsafe { self.ring.msg(f) })),
                Step::Wrap(next) => i = next,
            }
        }
    }

    /// What this producer knows about the consumer (see [`Peer`]). One load for ends
    /// made together in this process; for a `shm` end, one `fcntl` system call.
    ///
    /// ```
    /// use tcpshm_ring::var::{Peer, VarQueue};
    /// let (p, c) = VarQueue::with_capacity(256);
    /// assert_eq!(p.peer(), Peer::Alive);
    /// drop(c);
    /// assert_eq!(p.peer(), Peer::Gone);
    /// ```
    pub fn peer(&self) -> Peer {
        self.link.peer(Side::Producer)
    }

    /// Whether the consumer is gone ([`Peer::Gone`]): nothing pushed from now on will
    /// be read (unless, across processes, a new consumer claims the region).
    ///
    /// ```
    /// let (p, c) = tcpshm_ring::var::VarQueue::with_capacity(256);
    /// drop(c);
    /// assert!(p.is_abandoned());
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.peer() == Peer::Gone
    }

    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Bytes frame size of a `len`-byte payload in this queue (header + padding).
    ///
    /// ```
    /// let (p, _c) = tcpshm_ring::var::VarQueue::with_capacity(64);
    /// assert_eq!(p.frame_size(1), 16);
    /// ```
    pub fn frame_size(&self, len: usize) -> u64 {
        align_up((FRAME_HEADER_LEN + len) as u64, self.ring.align)
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        if self.link.leave(Side::Producer) {
            // While the region is still mapped (the link may hold the last reference
            // to a shared mapping; it is dropped after this body).
            #[cfg(feature = "wait")]
            crate::wait::bell::notify(self.ring.raw.parked(Side::Consumer), crate::wait::bell::Scope::Shared);
        }
    }
}
