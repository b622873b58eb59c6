//! The writing ends of a many-to-one queue: any number of producers, on any threads.

use super::error::PushError;
use super::layout::{align8, Record, RECORD_HEADER_LEN};
use super::region::Ring;
use crate::sync::Ordering;
use crate::var::Corrupt;
use core::marker::PhantomData;

/// A writing end of a many-to-one queue. `Clone` it for each thread that pushes:
/// every clone is an independent producer (they share nothing but the ring), and all
/// of them push concurrently with one compare-and-swap of the tail each.
///
/// `Send + Clone`, not `Sync`: a producer caches the consumer's index, so each
/// thread uses its own clone (cloning is cheap: no allocation for a heap queue beyond
/// a reference count, none for a borrowed or mapped region).
///
/// **Order.** Messages pushed by one producer (one clone, or several clones used in
/// turn by one thread) reach the consumer in the order they were pushed. Across
/// producers, the order is the order of their claims.
///
/// **Zero-copy.** [`push_with`](Producer::push_with) hands the closure the payload
/// bytes in place in the ring; [`push`](Producer::push) copies a slice there.
///
/// **Backpressure** is a value: `Ok(false)` when the ring has no room now, never a
/// block, never an error. Nothing is allocated and no system call is made.
///
/// ```
/// use tcpshm_ring::mpsc::MpscQueue;
/// let (p, mut c) = MpscQueue::with_capacity(1 << 12);
/// let threads: Vec<_> = (0..3u16)
///     .map(|t| {
///         let mut p = p.clone();
///         std::thread::spawn(move || {
///             for i in 0..10u8 {
///                 while !p.push(t, &[i]).unwrap() {
///                     std::thread::yield_now(); // full: the consumer is behind
///                 }
///             }
///         })
///     })
///     .collect();
/// let mut next = [0u8; 3];
/// while next.iter().any(|n| *n < 10) {
///     if let Some(m) = c.front().unwrap() {
///         let t = m.msg_type() as usize;
///         assert_eq!(m.payload(), &[next[t]]); // each producer's order is kept
///         next[t] += 1;
///         c.pop().unwrap();
///     }
/// }
/// for t in threads { t.join().unwrap(); }
/// ```
#[derive(Debug, Clone)]
pub struct Producer<'a> {
    ring: Ring,
    /// The consumer's head as this producer last read it; `<=` the real one.
    cached_head: u64,
    _region: PhantomData<&'a [u8]>,
}

// SAFETY: a producer's raw pointers address a region that outlives it (the lifetime,
// an `Arc`, or the `attach_raw` contract); it writes only into records it claimed
// with a compare-and-swap of the tail, so moving it to another thread is sound.
unsafe impl Send for Producer<'_> {}

/// Pads a claimed record if its producer unwinds before committing it (a panicking
/// fill closure): the consumer skips it instead of waiting for it forever.
struct Abort<'r> {
    ring: &'r Ring,
    off: u64,
    frame: u64,
}

impl Drop for Abort<'_> {
    fn drop(&mut self) {
        // Release: the consumer zeroes what the closure wrote only after it saw this.
        self.ring.header(self.off).store(Record::pad(self.frame).to_word(), Ordering::Release);
    }
}

impl<'a> Producer<'a> {
    pub(crate) fn new(ring: Ring) -> Producer<'a> {
        let head = ring.raw.head().load(Ordering::Acquire);
        Producer { ring, cached_head: head, _region: PhantomData }
    }

    /// Claims `frame` bytes for one record, padding the rest of the ring first if the
    /// record would not fit before its end. Returns the record's data offset, or
    /// `None` if there is no room now.
    #[inline]
    fn claim(&mut self, frame: u64) -> Result<Option<u64>, Corrupt> {
        let cap = self.ring.capacity;
        let tail_word = self.ring.raw.tail();
        let mut tail = tail_word.load(Ordering::Relaxed);
        loop {
            let off = tail & self.ring.mask;
            let pad = if frame > cap - off { cap - off } else { 0 };
            let need = pad + frame;
            // Wrapping: a stale `tail` below the cached head looks full, and rereads.
            if tail.wrapping_sub(self.cached_head).wrapping_add(need) > cap {
                // Acquire: the consumer zeroed the bytes it released before storing
                // the head; our writes into them come after.
                let head = self.ring.raw.head().load(Ordering::Acquire);
                if head < self.cached_head {
                    return Err(Corrupt::ReadIndex { read: head, write: tail });
                }
                let mut head = head;
                self.cached_head = head;
                // Not below `head`: the claims of the records released up to `head`
                // happened before the consumer read them, so before its head store.
                // Acquire: see below.
                let now = tail_word.load(Ordering::Acquire);
                if now >= head && now - head > cap {
                    // Not corrupt (yet): between the two loads the consumer released
                    // and other producers claimed more than a lap. The producer that
                    // stored `now` had read a head of at least `now - cap` before its
                    // claim; our acquire of `now` makes that head visible, so a head
                    // read again is recent enough for the check below.
                    head = self.ring.raw.head().load(Ordering::Acquire);
                    self.cached_head = head;
                }
                if now < head || now - head > cap || !now.is_multiple_of(8) {
                    return Err(Corrupt::WriteIndex { write: now, read: head });
                }
                if now != tail {
                    tail = now;
                    continue;
                }
                if tail - head + need > cap {
                    return Ok(None);
                }
            }
            match tail_word.compare_exchange_weak(tail, tail + need, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if pad > 0 {
                        // Ours up to the end of the ring: a committed padding record.
                        self.ring.header(off).store(Record::pad(pad).to_word(), Ordering::Release);
                        return Ok(Some(0));
                    }
                    return Ok(Some(off));
                }
                Err(now) => tail = now,
            }
        }
    }

    /// Pushes a message whose `len` payload bytes `fill` writes in place in the ring
    /// (zero-copy): `Ok(true)` once it is committed, `Ok(false)` if there is no room
    /// now (nothing was claimed and `fill` was not called), [`PushError::TooLarge`]
    /// above [`max_payload`](Self::max_payload). The bytes handed to `fill` are zero.
    ///
    /// If `fill` panics, the claimed space becomes padding that the consumer skips:
    /// nothing is pushed and the queue goes on.
    ///
    /// ```
    /// let (mut p, mut c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(256);
    /// assert!(p.push_with(4, 7, |buf| buf.copy_from_slice(b"tick")).unwrap());
    /// let m = c.front().unwrap().unwrap();
    /// assert_eq!((m.msg_type(), m.payload()), (7, &b"tick"[..]));
    /// ```
    #[inline]
    pub fn push_with(&mut self, len: usize, msg_type: u16, fill: impl FnOnce(&mut [u8])) -> Result<bool, PushError> {
        if len > self.ring.max_payload {
            return Err(PushError::TooLarge { len, max: self.ring.max_payload });
        }
        let rec_len = (RECORD_HEADER_LEN + len) as u64;
        let frame = align8(rec_len);
        let Some(off) = self.claim(frame)? else { return Ok(false) };
        let header = self.ring.header(off);
        // Claimed, being written, with its length: a process killed from here on
        // leaves a record that `Consumer::recover` can pad by its length.
        header.store(Record { len: -(rec_len as i32), msg_type: 0, flags: 0 }.to_word(), Ordering::Relaxed);
        // The header is written before the payload (in program order, which is what a
        // killed process leaves behind): a claim with a zero header has no payload
        // written either, which is what lets `recover` find the next record.
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        let guard = Abort { ring: &self.ring, off, frame };
        self.ring.track_write(off + RECORD_HEADER_LEN as u64, frame - RECORD_HEADER_LEN as u64);
        // SAFETY: `off + frame <= capacity` (`claim` never lets a record wrap) and the
        // bytes `off + 8 .. off + 8 + len` are ours alone: claimed by our
        // compare-and-swap, released and zeroed by the consumer before (acquire of the
        // head in `claim`), not read by the consumer before our commit below.
        let buf = unsafe { core::slice::from_raw_parts_mut(self.ring.at(off + RECORD_HEADER_LEN as u64), len) };
        fill(buf);
        core::mem::forget(guard);
        // Release: the payload is written before the consumer sees the length.
        header.store(Record { len: rec_len as i32, msg_type, flags: 0 }.to_word(), Ordering::Release);
        Ok(true)
    }

    /// Pushes a copy of `payload` with `msg_type`: `Ok(false)` if there is no room now.
    ///
    /// ```
    /// let (mut p, _c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(64);
    /// assert!(p.push(1, &[0; 24]).unwrap());
    /// assert!(p.push(1, &[0; 24]).unwrap());
    /// assert!(!p.push(1, &[0; 24]).unwrap()); // full: 32 bytes per record, 64 in all
    /// assert!(p.push(1, &[0; 25]).is_err()); // never fits: larger than max_payload
    /// ```
    #[inline]
    pub fn push(&mut self, msg_type: u16, payload: &[u8]) -> Result<bool, PushError> {
        self.push_with(payload.len(), msg_type, |buf| buf.copy_from_slice(payload))
    }

    /// Largest payload a push accepts: half the capacity less the 8-byte header.
    ///
    /// ```
    /// let (p, _c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(1024);
    /// assert_eq!(p.max_payload(), 504);
    /// ```
    pub fn max_payload(&self) -> usize {
        self.ring.max_payload
    }

    /// Bytes of the data area.
    ///
    /// ```
    /// let (p, _c) = tcpshm_ring::mpsc::MpscQueue::with_capacity(1000);
    /// assert_eq!(p.capacity(), 1024);
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }
}
