//! The frame reader: one reusable receive buffer, frames decoded in place.
//!
//! The buffer holds, in order: `start..scan` decoded frames not yet released (user
//! frames waiting for `pop`, and control frames already handled that arrived behind
//! them), `scan..end` the beginning of a frame not yet complete, `end..` free space.
//! It starts at a configured size, grows only when one frame does not fit in it
//! (never beyond the largest frame allowed) or when it is full of frames its user
//! keeps (never beyond the peer's queue), and compacts when moving its contents pays
//! for itself.
//!
//! The same reader serves a session's data stream, a shared-memory session's control
//! stream, and the login exchange before either (the bytes that follow a login stay
//! in the buffer for the session).
//!
//! ```
//! use tcpshm_proto::{encode, FrameKind};
//! use tcpshm_transport_tcp::{FrameReader, Fill};
//!
//! let mut wire = Vec::new();
//! wire.extend_from_slice(&encode::heartbeat(0, 0));
//! let mut frame = [0u8; 32];
//! let n = encode::encode_frame(&mut frame, 7, 0, 0, b"hello").unwrap();
//! wire.extend_from_slice(&frame[..n]);
//!
//! let mut r = FrameReader::new(1024, 1 << 16);
//! let mut stream = &wire[..];
//! assert_eq!(r.fill(&mut stream, usize::MAX).unwrap(), Fill::Bytes(56));
//! let hb = r.next_frame().unwrap().unwrap();
//! assert_eq!(hb.kind, FrameKind::Heartbeat);
//! r.release_control(&hb);
//! let msg = r.next_frame().unwrap().unwrap();
//! assert_eq!(msg.kind, FrameKind::User);
//! assert_eq!(r.front().unwrap().payload, b"hello");
//! assert_eq!(r.pop(), Some(32));
//! assert!(r.next_frame().unwrap().is_none());
//! ```

use crate::io::read_some;
use std::io::{self, Read};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::frame::{msg_type, Header, FRAME_ALIGN, HEADER_LEN};
use tcpshm_proto::{decode, Decoded, FrameError, FrameKind, Msg};

/// Smallest receive buffer: any control frame fits, with room for a few more.
pub const MIN_BUFFER: usize = 1024;

/// Room for control frames (acks, heartbeats) read behind a full backlog of kept
/// messages; they are cut out of the buffer as soon as they are handled.
const CONTROL_ROOM: usize = 64 * 1024;

/// What one [`FrameReader::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Read this many bytes (> 0).
    Bytes(usize),
    /// The peer ended the stream.
    Eof,
    /// Nothing to read now.
    WouldBlock,
    /// No room: the buffer is full of frames not released yet (read again after
    /// popping).
    Full,
}

/// A frame decoded in the reader's buffer, by position (so that handling it can
/// borrow other things than the reader); see [`FrameReader::next_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFrame {
    /// Its kind.
    pub kind: FrameKind,
    /// Its header.
    pub header: Header,
    /// Where it starts in the buffer.
    pub at: usize,
    /// Its padded length.
    pub len: usize,
}

/// The receive buffer of one stream. It holds, in order: decoded frames not yet
/// released (user frames waiting for `pop`, and handled control frames behind them),
/// the beginning of a frame not yet complete, free space. It grows only for a frame
/// larger than it (never beyond the largest frame allowed) or when it is full of
/// frames its user keeps (never beyond the peer's queue, see
/// [`set_backlog`](Self::set_backlog)), and compacts when moving its contents pays for
/// itself or the user stalls.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    scan: usize,
    end: usize,
    /// Largest single frame (padded): an incomplete frame may grow the buffer to this.
    limit: usize,
    /// Largest size the buffer may grow to when it is full of frames the user has not
    /// popped: the peer's whole send queue (it cannot have more unacknowledged bytes
    /// in flight) plus room for control frames. Without it, a full buffer of kept
    /// requests stops reading, and the acks behind them that would let the handler
    /// reply (and pop) are never read: a deadlock. See [`set_backlog`](Self::set_backlog).
    backlog: usize,
    /// The decoder's frame limit (header + payload).
    max_frame: u32,
    /// `start` when the last fill found no room: if the user has not popped since,
    /// the buffer must make room anyway (compact or grow), or a kept message would
    /// hold the reading up for good.
    refused_at: Option<usize>,
    /// The last fill read fewer bytes than it had room for.
    short: bool,
}

#[inline(always)]
fn header_at(buf: &[u8], at: usize) -> Header {
    let head: &[u8; HEADER_LEN] =
        buf[at..at + HEADER_LEN].try_into().expect("a decoded frame has a whole header in the buffer");
    Header::read(head)
}

impl FrameReader {
    /// A reader with an `initial`-byte buffer (at least [`MIN_BUFFER`]) accepting
    /// frames of up to `max_frame` bytes (header + payload, see
    /// [`tcpshm_proto::decode::frame_limit`]).
    pub fn new(initial: usize, max_frame: u32) -> FrameReader {
        let limit = (max_frame as usize).next_multiple_of(FRAME_ALIGN).max(MAX_CONTROL_FRAME_LEN);
        let size = initial.max(MIN_BUFFER).min(limit.max(MIN_BUFFER));
        FrameReader {
            buf: vec![0; size],
            start: 0,
            scan: 0,
            end: 0,
            limit,
            backlog: limit,
            max_frame,
            refused_at: None,
            short: false,
        }
    }

    /// Lets the buffer hold the peer's whole send queue (`peer_queue` bytes, from its
    /// login; 0 = not said, then only the largest frame) plus room for control frames.
    /// The buffer grows to it only while the user keeps messages unpopped; that growth
    /// is the one allocation of a backlog, never one per message.
    pub fn set_backlog(&mut self, peer_queue: u64) {
        let queue = usize::try_from(peer_queue).unwrap_or(usize::MAX);
        self.backlog = if queue == 0 { self.limit } else { self.limit.max(queue.saturating_add(CONTROL_ROOM)) };
    }

    /// Drops everything buffered (the link is gone).
    pub fn clear(&mut self) {
        (self.start, self.scan, self.end) = (0, 0, 0);
        self.refused_at = None;
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Bytes buffered that were not decoded into a whole frame yet.
    pub fn partial(&self) -> usize {
        self.end - self.scan
    }

    /// The whole buffer as scratch space (only while nothing in it matters).
    pub fn scratch(&mut self) -> &mut [u8] {
        self.clear();
        &mut self.buf
    }

    /// Whether reading is stuck on a buffer full of messages not popped.
    pub fn is_stuck(&self) -> bool {
        self.end == self.buf.len() && self.scan > self.start && self.refused_at == Some(self.start)
    }

    /// Current size (for tests of the growth rule).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Makes free space at the end; `false` if the buffer is full of frames not
    /// released yet and must wait for pops. Compacts when the bytes freed at the
    /// head are at least those moved (so moving costs O(1) per byte read), or when
    /// the user has not popped since the last refusal; grows for a single frame larger
    /// than the buffer, or (up to the backlog) for frames the user keeps.
    fn make_room(&mut self) -> bool {
        if self.end < self.buf.len() {
            return true;
        }
        let stalled = self.refused_at == Some(self.start);
        let kept = self.end - self.start;
        if self.start > 0 && (self.start >= kept || stalled || self.scan == self.start) {
            self.buf.copy_within(self.start..self.end, 0);
            self.scan -= self.start;
            self.end -= self.start;
            self.start = 0;
            self.refused_at = None;
            return true;
        }
        if self.scan == self.start {
            // One incomplete frame fills the buffer: it is larger. Its length was
            // checked against the limit by the decoder when its first bytes arrived.
            let len = u32::from_le_bytes(self.buf[self.scan..self.scan + 4].try_into().expect("4 bytes")) as usize;
            let need = len.next_multiple_of(FRAME_ALIGN);
            if need > self.buf.len() && need <= self.limit {
                let size = need.checked_next_power_of_two().unwrap_or(need).min(self.limit).max(need);
                self.buf.resize(size, 0);
                return true;
            }
        } else if stalled && self.start == 0 && self.buf.len() < self.backlog {
            // Full of frames the user keeps: grow (doubling, up to the peer's queue)
            // so that what follows them — acks among it — can still be read.
            let size = self.buf.len().saturating_mul(2).min(self.backlog);
            self.buf.resize(size, 0);
            self.refused_at = None;
            return true;
        }
        self.refused_at = Some(self.start);
        false
    }

    /// One `read` of at most `budget` bytes into the free space (retried on `EINTR`).
    /// Decode what arrived with [`next_frame`](Self::next_frame).
    pub fn fill<S: Read>(&mut self, stream: &mut S, budget: usize) -> io::Result<Fill> {
        if !self.make_room() {
            return Ok(Fill::Full);
        }
        let room = (self.buf.len() - self.end).min(budget.max(1));
        match read_some(stream, &mut self.buf[self.end..self.end + room])? {
            None => Ok(Fill::WouldBlock),
            Some(0) => Ok(Fill::Eof),
            Some(n) => {
                self.end += n;
                self.short = n < room;
                Ok(Fill::Bytes(n))
            }
        }
    }

    /// Whether the last [`fill`](Self::fill) that read bytes read fewer than it had
    /// room for: the stream held no more at that moment. With edge-triggered readiness
    /// a reader may stop there (bytes arriving later raise a new event) instead of
    /// paying a `read` that returns `WouldBlock`.
    ///
    /// ```
    /// use tcpshm_transport_tcp::{Fill, FrameReader};
    /// let mut r = FrameReader::new(4096, 1024);
    /// let mut bytes: &[u8] = &[0u8; 100];
    /// assert!(matches!(r.fill(&mut bytes, usize::MAX).unwrap(), Fill::Bytes(100)));
    /// assert!(r.drained(), "100 bytes read into room for 4096");
    /// ```
    #[inline]
    pub fn drained(&self) -> bool {
        self.short
    }

    /// Decodes the next whole frame after those already decoded: `Ok(None)` if the
    /// bytes there do not make a whole frame yet; a [`FrameError`] for bytes that are
    /// not a valid frame (the stream must be closed: nothing after them can be
    /// trusted). A user frame stays in the buffer for [`front`](Self::front)/
    /// [`pop`](Self::pop); a control frame must be handed back with
    /// [`release_control`](Self::release_control) once handled.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<InFrame>, FrameError> {
        if self.scan >= self.end {
            return Ok(None);
        }
        let at = self.scan;
        match decode(&self.buf[at..self.end], self.max_frame)? {
            Decoded::Need(_) => Ok(None),
            Decoded::Frame { frame, consumed } => {
                self.scan += consumed;
                Ok(Some(InFrame { kind: frame.kind(), header: *frame.header(), at, len: consumed }))
            }
        }
    }

    /// The bytes of a decoded frame (header, payload, padding).
    pub fn frame_bytes(&self, f: &InFrame) -> &[u8] {
        &self.buf[f.at..f.at + f.len]
    }

    /// The payload of a decoded frame.
    pub fn payload(&self, f: &InFrame) -> &[u8] {
        &self.buf[f.at + HEADER_LEN..f.at + f.header.len as usize]
    }

    /// Releases a handled control frame: its bytes are dropped at once (behind user
    /// frames not popped yet, they are cut out, so control frames never pile up behind
    /// a kept message — acks behind it must stay readable).
    pub fn release_control(&mut self, f: &InFrame) {
        if self.start == f.at {
            self.start = f.at + f.len;
        } else {
            self.buf.copy_within(f.at + f.len..self.end, f.at);
            self.end -= f.len;
            self.scan -= f.len;
        }
        if self.start == self.end {
            (self.start, self.scan, self.end) = (0, 0, 0);
        }
    }

    /// After the head moved: skips control frames (already handled) up to the next
    /// user frame, and rewinds an empty buffer.
    #[inline]
    fn skip_handled(&mut self) {
        while self.start < self.scan {
            let h = header_at(&self.buf, self.start);
            if msg_type::is_user(h.msg_type) {
                break;
            }
            self.start += h.frame_len();
        }
        if self.start == self.end {
            (self.start, self.scan, self.end) = (0, 0, 0);
        }
    }

    /// The next received user message, in place.
    #[inline]
    pub fn front(&self) -> Option<Msg<'_>> {
        if self.start >= self.scan {
            return None;
        }
        let h = header_at(&self.buf, self.start);
        let payload = &self.buf[self.start + HEADER_LEN..self.start + h.len as usize];
        Some(Msg { msg_type: h.msg_type, seq: h.seq, payload })
    }

    /// Releases the front message; returns its padded frame length.
    #[inline]
    pub fn pop(&mut self) -> Option<usize> {
        if self.start >= self.scan {
            return None;
        }
        let len = header_at(&self.buf, self.start).frame_len();
        self.start += len;
        self.skip_handled();
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshm_proto::encode;

    fn push_frame(rx: &mut FrameReader, t: u16, seq: u64, payload: &[u8]) {
        let n = tcpshm_proto::frame::frame_len(payload.len());
        assert!(rx.end + n <= rx.buf.len());
        encode::encode_frame(&mut rx.buf[rx.end..], t, seq, 0, payload).unwrap();
        rx.end += n;
        while let Some(f) = rx.next_frame().unwrap() {
            if f.kind != FrameKind::User {
                // Left in place, as handled frames behind a user frame are skipped.
                let _ = f;
            }
        }
    }

    #[test]
    fn front_skips_handled_control_frames_behind_user_frames() {
        let mut rx = FrameReader::new(4096, 1 << 20);
        push_frame(&mut rx, 1, 0, b"one");
        push_frame(&mut rx, msg_type::HEARTBEAT, 1, b"");
        push_frame(&mut rx, msg_type::ACK, 1, b"");
        push_frame(&mut rx, 2, 1, b"two");
        assert_eq!(rx.front().unwrap().payload, b"one");
        assert_eq!(rx.pop(), Some(32));
        let m = rx.front().unwrap();
        assert_eq!((m.msg_type, m.seq, m.payload), (2, 1, &b"two"[..]));
        assert_eq!(rx.pop(), Some(32));
        assert!(rx.front().is_none());
        assert_eq!(rx.pop(), None);
        assert_eq!((rx.start, rx.scan, rx.end), (0, 0, 0), "an empty buffer rewinds");
    }

    #[test]
    fn released_control_frames_are_cut_out_behind_a_kept_message() {
        let mut rx = FrameReader::new(4096, 1 << 20);
        let mut wire = Vec::new();
        let mut b = [0u8; 64];
        let n = encode::encode_frame(&mut b, 1, 0, 0, b"kept").unwrap();
        wire.extend_from_slice(&b[..n]);
        wire.extend_from_slice(&encode::ack(0, 0));
        let n2 = encode::encode_frame(&mut b, 2, 1, 0, b"next").unwrap();
        wire.extend_from_slice(&b[..n2]);
        let mut s = &wire[..];
        assert_eq!(rx.fill(&mut s, usize::MAX).unwrap(), Fill::Bytes(wire.len()));
        assert_eq!(rx.next_frame().unwrap().unwrap().kind, FrameKind::User);
        let ack = rx.next_frame().unwrap().unwrap();
        assert_eq!(ack.kind, FrameKind::Ack);
        rx.release_control(&ack);
        assert_eq!(rx.end, 2 * 32, "the ack's bytes are gone");
        let next = rx.next_frame().unwrap().unwrap();
        assert_eq!((next.kind, next.header.seq), (FrameKind::User, 1));
        assert_eq!(rx.front().unwrap().payload, b"kept");
    }

    #[test]
    fn a_bad_frame_is_an_error_whatever_the_split() {
        let mut rx = FrameReader::new(1024, 4096);
        let mut s = &5000u32.to_le_bytes()[..];
        rx.fill(&mut s, usize::MAX).unwrap();
        assert_eq!(rx.next_frame(), Err(FrameError::TooLong { len: 5000, max: 4096 }));
    }

    /// Fills the buffer with 100-byte user frames (seq from 0) and a partial frame.
    fn full_of_frames(rx: &mut FrameReader, partial_len: u32) -> usize {
        let mut n = 0;
        while rx.end + 128 + 8 <= rx.buf.len() {
            push_frame(rx, 1, n as u64, &[0; 100]);
            n += 1;
        }
        rx.buf[rx.end..rx.end + 4].copy_from_slice(&partial_len.to_le_bytes());
        rx.end = rx.buf.len();
        n
    }

    #[test]
    fn compacts_only_when_it_pays_or_the_user_stalls() {
        let mut rx = FrameReader::new(1024, 1 << 20);
        rx.set_backlog(0);
        let frames = full_of_frames(&mut rx, 64);
        // One popped frame frees 128 bytes; moving the rest (~900) does not pay.
        assert!(rx.pop().is_some());
        assert!(!rx.make_room(), "refused: the user is popping, it will pay soon");
        // The user pops nothing more: a kept message must not stop reading forever.
        assert!(rx.make_room(), "stalled: compact anyway");
        assert_eq!(rx.start, 0);
        // Popping half of it pays for the move at once.
        let mut rx = FrameReader::new(1024, 1 << 20);
        full_of_frames(&mut rx, 64);
        for _ in 0..frames / 2 + 1 {
            assert!(rx.pop().is_some());
        }
        assert!(rx.make_room());
        assert_eq!(rx.start, 0);
    }

    #[test]
    fn grows_for_a_large_frame_or_a_kept_backlog_and_never_past_the_limits() {
        let mut rx = FrameReader::new(1024, 8192);
        assert_eq!(rx.capacity(), 1024);
        // A partial 5000-byte frame filling the buffer: grow to fit it.
        rx.buf[0..4].copy_from_slice(&5000u32.to_le_bytes());
        rx.end = 1024;
        assert!(rx.make_room());
        assert_eq!(rx.capacity(), 8192, "next power of two, capped by the limit");
        // Kept frames fill the buffer: once stalled it grows (doubling) so that what
        // follows them can be read, up to the backlog bound (the peer's queue)...
        let mut rx = FrameReader::new(1024, 1 << 20);
        rx.set_backlog(1500);
        full_of_frames(&mut rx, 5000);
        assert!(!rx.make_room(), "first refusal: wait for a pop");
        assert!(rx.make_room(), "stalled: grow");
        assert_eq!(rx.capacity(), 2048);
        // ...and no further: then it waits for pops.
        let mut rx = FrameReader::new(1024, 1024);
        rx.set_backlog(0);
        full_of_frames(&mut rx, 5000);
        assert!(!rx.make_room());
        assert!(!rx.make_room());
        assert_eq!(rx.capacity(), 1024);
        assert!(rx.is_stuck());
        // The limit is never exceeded, even for a length the decoder would refuse.
        let mut rx = FrameReader::new(1024, 2048);
        rx.buf[0..4].copy_from_slice(&100_000u32.to_le_bytes());
        rx.end = 1024;
        assert!(!rx.make_room());
        assert_eq!(rx.capacity(), 1024);
    }
}
