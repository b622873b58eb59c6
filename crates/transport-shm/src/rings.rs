//! `Rings`: one side's two ring ends of a connection file — the producer of the
//! outbound ring and the consumer of the inbound one — carrying wire frames, with the
//! consumed counts that make them a persistent, numbered queue. Loads and stores on
//! the mapping only: no system call, no allocation, no lock.

use crate::error::{Direction, ShmError, Side};
use crate::file::{FileInner, ShmFile};
use core::sync::atomic::{AtomicU64, Ordering};
use std::path::Path;
use std::path::PathBuf;
use tcpshm_proto::frame::{msg_type, Header, FRAME_ALIGN, HEADER_LEN, RING_PREFIX_LEN};
use tcpshm_ring::var::frame::{align_up, FRAME_HEADER_LEN};
use tcpshm_ring::var::{self, AllocError, PopError};

/// Why a ring operation failed: the ring's contents are not what this side or its
/// peer could have written. The file needs a reset; nothing in it is read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// An index or a frame header of the ring is impossible.
    #[error("{direction} ring of {}: {error}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which ring.
        direction: Direction,
        /// What is wrong.
        error: var::Corrupt,
    },
    /// A frame in the ring is not a valid user wire frame.
    #[error("{direction} ring of {}: {detail}", path.display())]
    BadFrame {
        /// The file.
        path: PathBuf,
        /// Which ring.
        direction: Direction,
        /// What is wrong.
        detail: &'static str,
    },
    /// A message larger than the ring can ever hold.
    #[error("message of {len} bytes exceeds the ring's largest of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The ring's largest message.
        max: usize,
    },
    /// `push_more` without a successful `alloc`.
    #[error("push without a successful alloc")]
    NothingAllocated,
    /// The head of the inbound ring is after the message expected: messages are
    /// missing.
    #[error("inbound ring of {}: expected message seq {expected}, found seq {got}", path.display())]
    Gap {
        /// The file.
        path: PathBuf,
        /// The seq expected.
        expected: u64,
        /// The seq found.
        got: u64,
    },
}

/// A message at the head of the inbound ring, borrowed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingMsg<'a> {
    /// The message type (a user type).
    pub msg_type: u16,
    /// Its seq in the session.
    pub seq: u64,
    /// The sender's consumed count when it pushed it (informational on shared memory).
    pub ack: u64,
    /// The payload.
    pub payload: &'a [u8],
    /// The padded frame length (header and padding included).
    pub frame_len: usize,
}

/// The rings of a connection file as one side uses them. Made from a [`ShmFile`]
/// ([`Rings::new`]); holds its mapping and its side's lock until dropped.
///
/// Every message is a wire frame: [`RingTx::alloc`] reserves the 24-byte header's
/// `seq` and `ack` in front of the payload it returns, [`RingTx::push_more`] stamps
/// them, [`RingTx::publish`] makes the staged frames visible with one release store
/// (the sender's commit point: the message is then in the file, which survives a
/// crash of either process). On the inbound side [`RingRx::front`] borrows the next
/// frame in place; [`RingRx::pop`] stores the consumed count and then releases the
/// frame (the receiver's commit point); a frame whose seq is below the consumed count
/// is a copy of one that reached this side another way and is released unread with
/// [`RingRx::release_stale`]. The two halves borrow apart ([`Rings::parts`]), so a
/// reply can be written in place while the request is read in place.
///
/// ```
/// use tcpshm_proto::Name;
/// use tcpshm_transport_shm::{Capacities, Rings, ShmDir, ShmFile};
///
/// let dir = ShmDir::new("/dev/shm", &format!("doc-rings-{}-", std::process::id())).unwrap();
/// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
/// let mut server = Rings::new(ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(4096)).unwrap());
/// let mut client = Rings::new(ShmFile::open(&dir, &s, &c).unwrap());
/// assert_eq!(server.file_id(), client.file_id());
///
/// client.tx.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// client.tx.push_more(1, 0, 0).unwrap();
/// client.tx.publish();
/// let m = server.rx.front().unwrap().unwrap();
/// assert_eq!((m.msg_type, m.seq, m.payload), (1, 0, &b"hello"[..]));
/// server.rx.pop(1).unwrap();
/// assert_eq!((server.rx.consumed(), client.tx.peer_consumed()), (1, 1));
/// drop((server, client));
/// dir.remove(&s, &c).unwrap();
/// ```
pub struct Rings {
    /// The sending half: the outbound ring's producer.
    pub tx: RingTx,
    /// The receiving half: the inbound ring's consumer.
    pub rx: RingRx,
    // Last: the ends above point into its mapping, which it keeps alive.
    file: std::sync::Arc<FileInner>,
}

/// The sending half of [`Rings`]: the outbound ring.
pub struct RingTx {
    ring: var::Producer<'static>,
    /// The consumed count of the outbound ring (the peer writes it).
    consumed: *const AtomicU64,
    /// The seq/ack prefix of the frame from the last successful `alloc`.
    pending: Option<*mut u8>,
    staged: u64,
    max_message: usize,
    direction: Direction,
    /// The outbound ring was found corrupt (sticky: the file needs a reset).
    fault: Option<RingError>,
    file: std::sync::Arc<FileInner>,
}

/// The receiving half of [`Rings`]: the inbound ring.
pub struct RingRx {
    ring: var::Consumer<'static>,
    /// The consumed count of the inbound ring (we write it).
    consumed: *const AtomicU64,
    direction: Direction,
    /// The head frame as `front` last read and validated it; cleared by every pop and
    /// release (the only things that move the head).
    head: Option<Head>,
    file: std::sync::Arc<FileInner>,
}

/// The head frame [`RingRx::ready`] found: its seq and padded frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Its seq.
    pub seq: u64,
    /// Its padded frame length.
    pub frame_len: usize,
}

/// A validated head frame, by value.
#[derive(Debug, Clone, Copy)]
struct Head {
    msg_type: u16,
    seq: u64,
    ack: u64,
    payload: *const u8,
    len: usize,
    frame_len: usize,
    /// The ring index just past the frame: popping it needs no second look.
    end: u64,
}

// SAFETY: the raw pointers and ring ends of the halves address the mapping that the
// `Arc<FileInner>` they hold keeps alive; they move with the value, and nothing else
// in this process refers to those words (the side's lock keeps a second handle of
// this side out). Not `Sync`: every operation needs `&mut self` or reads an atomic.
unsafe impl Send for Rings {}
// SAFETY: see above.
unsafe impl Send for RingTx {}
// SAFETY: see above.
unsafe impl Send for RingRx {}

impl std::fmt::Debug for Rings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rings")
            .field("path", &self.file.path)
            .field("side", &self.file.side)
            .field("consumed", &self.rx.consumed())
            .field("peer_consumed", &self.tx.peer_consumed())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RingTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingTx")
            .field("direction", &self.direction)
            .field("staged", &self.staged)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RingRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingRx").field("direction", &self.direction).finish_non_exhaustive()
    }
}

impl Rings {
    /// This side's rings of `file`.
    pub fn new(file: ShmFile) -> Rings {
        let ShmFile { ends, inner } = file;
        let (out, inn) = match inner.side {
            Side::Server => (Direction::ServerToClient, Direction::ClientToServer),
            Side::Client => (Direction::ClientToServer, Direction::ServerToClient),
        };
        let cb = inner.control();
        let max_message = ends.tx.max_payload().saturating_sub(RING_PREFIX_LEN);
        let tx = RingTx {
            ring: ends.tx,
            consumed: cb.consumed(out),
            pending: None,
            staged: 0,
            max_message,
            direction: out,
            fault: None,
            file: inner.clone(),
        };
        let rx = RingRx { ring: ends.rx, consumed: cb.consumed(inn), direction: inn, head: None, file: inner.clone() };
        Rings { tx, rx, file: inner }
    }

    /// Both halves, borrowed apart.
    pub fn parts(&mut self) -> (&mut RingTx, &mut RingRx) {
        (&mut self.tx, &mut self.rx)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// This file's side.
    pub fn side(&self) -> Side {
        self.file.side
    }

    /// The file's identity (see [`ShmFile::file_id`]).
    pub fn file_id(&self) -> u64 {
        self.file.control().file_id()
    }

    /// The ring capacities.
    pub fn capacities(&self) -> crate::Capacities {
        self.file.geo.caps
    }

    /// Adds 1 to the session epoch (see [`ShmFile::bump_epoch`]).
    pub fn bump_epoch(&self) -> u64 {
        self.file.control().epoch().fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Gives the file back (still mapped and locked).
    pub fn into_file(self) -> ShmFile {
        let Rings { tx, rx, file } = self;
        let ends = crate::file::Ends { tx: tx.ring, rx: rx.ring };
        ShmFile { ends, inner: file }
    }

    /// Whether the peer side's lock is held now (one system call; see
    /// [`ShmFile::peer_alive`]).
    pub fn peer_alive(&self) -> Result<bool, ShmError> {
        self.file.peer_alive().map_err(|e| ShmError::io("fcntl(F_OFD_GETLK)", &self.file.path, e))
    }

    /// `Some(error)` if a page of the file was lost under the mapping (another process
    /// truncated it; see the crate's docs on truncation): the rings cannot be trusted
    /// any more, and the file needs a reset. One atomic load.
    #[inline]
    pub fn truncated(&self) -> Option<RingError> {
        self.file
            .guard
            .truncated()
            .then(|| bad_frame(&self.file.path, self.tx.direction, "the file was truncated under its mapping"))
    }
}

impl RingTx {
    fn consumed_word(&self) -> &AtomicU64 {
        // SAFETY: points into the control block of the mapping `self.file` keeps alive
        // (8-aligned, in bounds: validated at open); accessed only atomically.
        unsafe { &*self.consumed }
    }

    /// The largest message the outbound ring holds (half its capacity, less the
    /// frame header).
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Reserves room for a `len`-byte message in the outbound ring and returns its
    /// bytes in place. `Ok(None)` when the ring is full now. A second `alloc` replaces
    /// the first.
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, RingError> {
        if len > self.max_message {
            return Err(RingError::TooLarge { len, max: self.max_message });
        }
        if let Some(e) = &self.fault {
            return Err(e.clone());
        }
        match self.ring.alloc(len + RING_PREFIX_LEN) {
            Ok(Some(buf)) => {
                let (prefix, msg) = buf.split_at_mut(RING_PREFIX_LEN);
                self.pending = Some(prefix.as_mut_ptr());
                Ok(Some(msg))
            }
            Ok(None) => {
                self.pending = None;
                Ok(None)
            }
            Err(AllocError::TooLarge { .. }) => Err(RingError::TooLarge { len, max: self.max_message }),
            Err(AllocError::Corrupt(c)) => {
                let e = corrupt(&self.file.path, self.direction, c);
                self.fault = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The corruption an `alloc` found in the outbound ring, if any (sticky).
    #[inline]
    pub fn fault(&self) -> Option<&RingError> {
        self.fault.as_ref()
    }

    /// Completes the message from the last `alloc` as a frame of `msg_type` (a user
    /// type) with `seq` and `ack`, staged: it becomes visible at the next
    /// [`publish`](Self::publish).
    #[inline]
    pub fn push_more(&mut self, msg_type: u16, seq: u64, ack: u64) -> Result<(), RingError> {
        let p = self.pending.take().ok_or(RingError::NothingAllocated)?;
        // SAFETY: `p` is the first 16 bytes of the payload `alloc` reserved in the
        // outbound ring; the producer does not publish or reuse them before the
        // `push_more` below, and `pending` was taken so they are written once.
        unsafe {
            p.cast::<[u8; 8]>().write(seq.to_le_bytes());
            p.add(8).cast::<[u8; 8]>().write(ack.to_le_bytes());
        }
        self.ring.push_more(msg_type).map_err(|_| RingError::NothingAllocated)?;
        self.staged += 1;
        Ok(())
    }

    /// Copies a whole wire frame (header, payload, padding: e.g. from a store) into
    /// the outbound ring, staged. `Ok(false)` if the ring is full now.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<bool, RingError> {
        let Some(head) = frame.first_chunk::<HEADER_LEN>() else {
            return Err(bad_frame(&self.file.path, self.direction, "a frame to copy is shorter than its header"));
        };
        let h = Header::read(head);
        let Some(payload) = frame.get(HEADER_LEN..h.len as usize) else {
            return Err(bad_frame(&self.file.path, self.direction, "a frame to copy is shorter than its length"));
        };
        let Some(buf) = self.alloc(payload.len())? else { return Ok(false) };
        buf.copy_from_slice(payload);
        self.push_more(h.msg_type, h.seq, h.ack)?;
        Ok(true)
    }

    /// Makes every staged frame visible to the peer (one release store). Returns how
    /// many.
    #[inline]
    pub fn publish(&mut self) -> u64 {
        let n = self.staged;
        if n > 0 {
            self.ring.publish();
            self.staged = 0;
        }
        n
    }

    /// Frames staged and not yet published.
    #[inline]
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// How many of our messages the peer consumed (the outbound ring's consumed count).
    #[inline]
    pub fn peer_consumed(&self) -> u64 {
        self.consumed_word().load(Ordering::Acquire)
    }

    /// Free bytes in the outbound ring.
    pub fn free_bytes(&self) -> u64 {
        self.ring.free_bytes()
    }

    /// The seq and the bytes of each published outbound frame the peer has not
    /// released, in order, handed to `f` until it returns `false`: what a sender
    /// copies to another medium, and how it finds where its queue ends. Read-only:
    /// frames are only ever overwritten by this side's own later `alloc`.
    pub fn for_each(&self, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<(), RingError> {
        let read = self.ring.released_index();
        let end = self.ring.published_index();
        if read > end || end - read > self.ring.config().capacity as u64 {
            return Err(corrupt(&self.file.path, self.direction, var::Corrupt::ReadIndex { read, write: end }));
        }
        let mut i = read;
        while let Some(m) = self.ring.peek(i).map_err(|e| corrupt(&self.file.path, self.direction, e))? {
            if m.payload().len() + FRAME_HEADER_LEN < HEADER_LEN {
                return Err(bad_frame(&self.file.path, self.direction, "an outbound frame is shorter than a header"));
            }
            let bytes = m.bytes();
            let seq = u64::from_le_bytes(bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 8].try_into().expect("8 bytes"));
            if !f(seq, bytes) {
                break;
            }
            i = m.end();
        }
        Ok(())
    }

    /// The seq after the last frame in the outbound ring, if it holds any the peer
    /// has not released.
    pub fn end(&self) -> Result<Option<u64>, RingError> {
        let mut last = None;
        self.for_each(|seq, _| {
            last = Some(seq + 1);
            true
        })?;
        Ok(last)
    }

    /// The largest message (payload bytes) in the outbound ring from seq `from` on.
    pub fn largest_from(&self, from: u64) -> Result<usize, RingError> {
        let mut max = 0;
        self.for_each(|seq, bytes| {
            if seq >= from {
                let h = Header::read(bytes.first_chunk().expect("a whole header"));
                max = max.max(h.payload_len());
            }
            true
        })?;
        Ok(max)
    }
}

impl RingRx {
    fn consumed_word(&self) -> &AtomicU64 {
        // SAFETY: as for `RingTx::consumed_word`.
        unsafe { &*self.consumed }
    }

    /// The next frame of the inbound ring, in place; `None` if it is empty. Asking
    /// again before a pop returns the same frame without reading the ring again.
    #[inline]
    pub fn front(&mut self) -> Result<Option<RingMsg<'_>>, RingError> {
        match self.head()? {
            Some(h) => Ok(Some(self.msg(h))),
            None => Ok(None),
        }
    }

    /// Makes the frame whose seq is `expected` the head, and says what it is: frames
    /// before it (seq below `expected`: copies of messages consumed another way) are
    /// released unread on the way; `Ok(None)` if the ring holds nothing more;
    /// [`RingError::Gap`] if the head's seq is beyond `expected` (messages are
    /// missing). Borrows nothing: [`front`](Self::front) then returns the frame without
    /// reading the ring again.
    #[inline]
    pub fn ready(&mut self, expected: u64) -> Result<Option<Ready>, RingError> {
        // The two common cases inline: the head already readied, or nothing published
        // (one load of the producer's index).
        match self.head {
            Some(h) if h.seq == expected => return Ok(Some(Ready { seq: h.seq, frame_len: h.frame_len })),
            None if self.ring.is_empty() => return Ok(None),
            _ => {}
        }
        self.ready_slow(expected)
    }

    #[inline(never)]
    fn ready_slow(&mut self, expected: u64) -> Result<Option<Ready>, RingError> {
        loop {
            let Some(h) = self.head()? else { return Ok(None) };
            match h.seq.cmp(&expected) {
                core::cmp::Ordering::Equal => return Ok(Some(Ready { seq: h.seq, frame_len: h.frame_len })),
                core::cmp::Ordering::Less => self.release_stale()?,
                core::cmp::Ordering::Greater => {
                    return Err(RingError::Gap { path: self.file.path.clone(), expected, got: h.seq })
                }
            }
        }
    }

    /// The head frame, validated once and then remembered until it is popped.
    #[inline]
    fn head(&mut self) -> Result<Option<Head>, RingError> {
        if let Some(h) = self.head {
            return Ok(Some(h));
        }
        let m = match self.ring.front() {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(c) => return Err(corrupt(&self.file.path, self.direction, c)),
        };
        let (t, bytes) = (m.msg_type(), m.payload());
        if !msg_type::is_user(t) {
            return Err(bad_frame(&self.file.path, self.direction, "a frame of a reserved message type"));
        }
        let Some((prefix, payload)) = bytes.split_first_chunk::<RING_PREFIX_LEN>() else {
            return Err(bad_frame(&self.file.path, self.direction, "a frame shorter than the wire header"));
        };
        let seq = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
        let ack = u64::from_le_bytes(prefix[8..].try_into().expect("8 bytes"));
        let frame_len = align_up((HEADER_LEN + payload.len()) as u64, FRAME_ALIGN as u64) as usize;
        let end = m.end();
        let h = Head { msg_type: t, seq, ack, payload: payload.as_ptr(), len: payload.len(), frame_len, end };
        self.head = Some(h);
        Ok(Some(h))
    }

    /// The message of a head frame.
    #[inline(always)]
    fn msg(&self, h: Head) -> RingMsg<'_> {
        // SAFETY: `h.payload..+h.len` lies in a frame `head` validated, which is not
        // released (pop and release clear `head`), so the producer does not write it;
        // the mapping lives as long as `self.file`, and the borrow of `self` ends the
        // slice's life before any pop.
        let payload = unsafe { std::slice::from_raw_parts(h.payload, h.len) };
        RingMsg { msg_type: h.msg_type, seq: h.seq, ack: h.ack, payload, frame_len: h.frame_len }
    }

    /// Consumes the head frame: stores `consumed_after` (its seq + 1) as the inbound
    /// consumed count, then releases the frame. The order makes a crash between the two
    /// harmless: the count is never behind, and a frame left below it is released as
    /// stale when this side attaches again.
    #[inline]
    pub fn pop(&mut self, consumed_after: u64) -> Result<(), RingError> {
        self.consumed_word().store(consumed_after, Ordering::Release);
        self.release_stale()
    }

    /// Releases the head frame without counting it (a copy of a message already
    /// consumed).
    #[inline]
    pub fn release_stale(&mut self) -> Result<(), RingError> {
        // The head was validated when it was read: pop it by its end, no second look.
        let popped = match self.head.take() {
            Some(h) => self.ring.pop_front(h.end),
            None => self.ring.pop(),
        };
        match popped {
            Ok(()) | Err(PopError::Empty) => Ok(()),
            Err(PopError::Corrupt(c)) => Err(corrupt(&self.file.path, self.direction, c)),
        }
    }

    /// The inbound consumed count: how many of the peer's messages this side consumed
    /// through this file.
    #[inline]
    pub fn consumed(&self) -> u64 {
        self.consumed_word().load(Ordering::Acquire)
    }

    /// Raises the inbound consumed count to `n` (when the session consumed messages
    /// another way); never lowers it.
    pub fn raise_consumed(&mut self, n: u64) {
        self.consumed_word().fetch_max(n, Ordering::AcqRel);
    }

    /// Whether the inbound ring holds no frame now.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The seq after the last frame in the inbound ring (the peer's messages this side
    /// holds), if it holds any.
    pub fn end(&mut self) -> Result<Option<u64>, RingError> {
        let mut i = self.ring.read_index();
        let mut last = None;
        loop {
            let next = match self.ring.peek(i) {
                Ok(Some(m)) => {
                    let Some(prefix) = m.payload().first_chunk::<8>() else {
                        return Err(bad_frame(&self.file.path, self.direction, "a frame shorter than the wire header"));
                    };
                    last = Some(u64::from_le_bytes(*prefix) + 1);
                    m.end()
                }
                Ok(None) => return Ok(last),
                Err(c) => return Err(corrupt(&self.file.path, self.direction, c)),
            };
            i = next;
        }
    }
}

fn corrupt(path: &std::path::Path, direction: Direction, error: var::Corrupt) -> RingError {
    RingError::Corrupt { path: path.to_path_buf(), direction, error }
}

fn bad_frame(path: &std::path::Path, direction: Direction, detail: &'static str) -> RingError {
    RingError::BadFrame { path: path.to_path_buf(), direction, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Capacities, ShmDir};
    use tcpshm_proto::Name;

    fn pair(tag: &str, cap: usize) -> (ShmDir, Rings, Rings) {
        let dir = ShmDir::new("/dev/shm", &format!("rings-unit-{tag}-{}-", std::process::id())).unwrap();
        let (s, c) = (Name::new("s").unwrap(), Name::new("c").unwrap());
        let _ = dir.remove(&s, &c);
        let server = Rings::new(ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(cap)).unwrap());
        let client = Rings::new(ShmFile::open(&dir, &s, &c).unwrap());
        (dir, server, client)
    }

    fn cleanup(dir: ShmDir, a: Rings, b: Rings) {
        drop((a, b));
        dir.remove(&Name::new("s").unwrap(), &Name::new("c").unwrap()).unwrap();
    }

    fn push(r: &mut Rings, seq: u64, len: usize) -> bool {
        match r.tx.alloc(len).unwrap() {
            Some(b) => {
                b.fill(seq as u8);
                r.tx.push_more(3, seq, 0).unwrap();
                r.tx.publish();
                true
            }
            None => false,
        }
    }

    #[test]
    fn frames_are_wire_frames_and_counts_follow_pops() {
        let (dir, mut s, mut c) = pair("wire", 4096);
        assert!(push(&mut c, 0, 5));
        assert!(push(&mut c, 1, 0));
        let mut seen = Vec::new();
        c.tx.for_each(|seq, bytes| {
            let h = Header::read(bytes.first_chunk().unwrap());
            seen.push((seq, h.len, h.seq, bytes.len()));
            true
        })
        .unwrap();
        assert_eq!(seen, [(0, 29, 0, 32), (1, 24, 1, 24)], "byte-for-byte wire frames");
        assert_eq!(c.tx.end().unwrap(), Some(2));
        assert_eq!(s.rx.end().unwrap(), Some(2));
        assert_eq!(c.tx.largest_from(0).unwrap(), 5);
        assert_eq!(c.tx.largest_from(1).unwrap(), 0);
        let m = s.rx.front().unwrap().unwrap();
        assert_eq!((m.seq, m.payload, m.frame_len), (0, &[0u8; 5][..], 32));
        s.rx.pop(1).unwrap();
        assert_eq!((s.rx.consumed(), c.tx.peer_consumed()), (1, 1));
        assert_eq!(c.tx.end().unwrap(), Some(2));
        s.rx.release_stale().unwrap();
        assert_eq!(s.rx.consumed(), 1, "a stale release does not count");
        assert_eq!((s.rx.end().unwrap(), c.tx.end().unwrap()), (None, None));
        cleanup(dir, s, c);
    }

    #[test]
    fn copied_frames_keep_their_numbers_and_walks_cross_the_wrap() {
        let (dir, mut s, mut c) = pair("wrap", 256);
        let mut next = 0u64;
        for round in 0..40u64 {
            while push(&mut c, next, (round as usize * 13) % 60) {
                next += 1;
            }
            assert_eq!(c.tx.end().unwrap(), Some(next), "round {round}");
            // Copy the first frame through a byte buffer into the other direction.
            let mut first = Vec::new();
            c.tx.for_each(|_, b| {
                first = b.to_vec();
                false
            })
            .unwrap();
            if s.tx.write_frame(&first).unwrap() {
                s.tx.publish();
                let m = c.rx.front().unwrap().unwrap();
                assert_eq!(m.seq, Header::read(first.first_chunk().unwrap()).seq);
                c.rx.release_stale().unwrap();
            }
            while let Some(m) = s.rx.front().unwrap() {
                let seq = m.seq;
                s.rx.pop(seq + 1).unwrap();
            }
            assert_eq!(c.tx.peer_consumed(), next);
        }
        cleanup(dir, s, c);
    }

    #[test]
    fn garbage_is_an_error_not_a_misread() {
        let (dir, mut s, mut c) = pair("bad", 4096);
        assert!(push(&mut c, 7, 8));
        // A reserved type in the ring (a scribbling peer).
        assert!(c.tx.alloc(0).unwrap().is_some());
        let p = c.tx.pending.unwrap();
        // SAFETY: the 16 prefix bytes just reserved.
        unsafe { p.cast::<[u8; 8]>().write([0; 8]) };
        c.tx.ring.push(msg_type::HEARTBEAT).unwrap();
        c.tx.pending = None;
        s.rx.front().unwrap().unwrap();
        s.rx.pop(8).unwrap();
        assert!(matches!(s.rx.front(), Err(RingError::BadFrame { .. })));
        assert!(matches!(c.tx.alloc(1 << 20), Err(RingError::TooLarge { .. })));
        assert!(matches!(c.tx.push_more(1, 0, 0), Err(RingError::NothingAllocated)));
        cleanup(dir, s, c);
    }
}
