//! The read path: one reusable buffer, frames decoded in place, control frames
//! handled as soon as they are complete, user messages borrowed by `front` and
//! released by `pop`.
//!
//! The buffer holds, in order: `start..scan` decoded frames not yet popped (user
//! frames, and control frames already handled that arrived behind them),
//! `scan..end` the beginning of a frame not yet complete, `end..` free space. It
//! starts at [`StreamConfig::recv_buffer`](crate::StreamConfig::recv_buffer) bytes,
//! grows only when one frame does not fit in it (never beyond the largest frame
//! allowed), and is compacted when its tail is full.

use crate::connection::{ByteStream, StreamConnection};
use crate::error::Fail;
use std::io::ErrorKind;
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::frame::{msg_type, Header, FRAME_ALIGN, HEADER_LEN};
use tcpshm_proto::{decode, CloseReason, Control, Decoded, FrameKind, Msg, Nanos, ProtocolError};

/// The receive buffer of one connection.
pub(crate) struct RxState {
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
    /// reply (and pop) are never read: a deadlock. See [`RxState::set_backlog`].
    backlog: usize,
    /// The last read stopped before the socket was drained.
    pub(crate) more: bool,
}

/// Room for control frames (acks, heartbeats) read behind a full backlog of kept
/// messages; they are cut out of the buffer as soon as they are handled.
const CONTROL_ROOM: usize = 64 * 1024;

#[inline(always)]
fn header_at(buf: &[u8], at: usize) -> Header {
    let head: &[u8; HEADER_LEN] =
        buf[at..at + HEADER_LEN].try_into().expect("a decoded frame has a whole header in the buffer");
    Header::read(head)
}

impl RxState {
    pub(crate) fn new(initial: usize, max_frame: u32) -> RxState {
        let limit = (max_frame as usize).next_multiple_of(FRAME_ALIGN).max(MAX_CONTROL_FRAME_LEN);
        let size = initial.max(crate::config::MIN_RECV_BUFFER).min(limit.max(crate::config::MIN_RECV_BUFFER));
        RxState { buf: vec![0; size], start: 0, scan: 0, end: 0, limit, backlog: limit, more: false }
    }

    /// Lets the buffer hold the peer's whole send queue (`peer_queue` bytes, from its
    /// login; 0 = not said, then only the largest frame) plus room for control frames.
    /// The buffer grows to it only while the user keeps messages unpopped; that growth
    /// is the one allocation of a backlog, never one per message.
    pub(crate) fn set_backlog(&mut self, peer_queue: u64) {
        let queue = usize::try_from(peer_queue).unwrap_or(usize::MAX);
        self.backlog = if queue == 0 { self.limit } else { self.limit.max(queue.saturating_add(CONTROL_ROOM)) };
    }

    /// Drops everything buffered (the link is gone).
    pub(crate) fn clear(&mut self) {
        (self.start, self.scan, self.end) = (0, 0, 0);
        self.more = false;
    }

    /// The whole buffer as scratch space (only while nothing in it matters).
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        self.clear();
        &mut self.buf
    }

    /// Whether reading is stuck on a buffer full of messages not popped.
    pub(crate) fn is_stuck(&self) -> bool {
        self.more && self.end == self.buf.len() && self.start == 0 && self.scan > 0
    }

    /// Current size (for tests of the growth rule).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Makes free space at the end: compacts, or grows for a single frame larger than
    /// the buffer. `false` if the buffer is full of frames not popped yet.
    fn make_room(&mut self) -> bool {
        if self.end < self.buf.len() {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.scan -= self.start;
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        if self.scan == 0 {
            // One incomplete frame fills the buffer: it is larger. Its length was
            // checked against the limit by the decoder when its first bytes arrived.
            let len = u32::from_le_bytes(self.buf[0..4].try_into().expect("4 bytes")) as usize;
            let need = len.next_multiple_of(FRAME_ALIGN);
            if need > self.buf.len() && need <= self.limit {
                let size = need.checked_next_power_of_two().unwrap_or(need).min(self.limit).max(need);
                self.buf.resize(size, 0);
                return true;
            }
        } else if self.buf.len() < self.backlog {
            // Full of frames the user keeps: grow (doubling, up to the peer's queue)
            // so that what follows them — acks among it — can still be read.
            let size = self.buf.len().saturating_mul(2).min(self.backlog);
            self.buf.resize(size, 0);
            return true;
        }
        false
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
    pub(crate) fn front(&self) -> Option<Msg<'_>> {
        if self.start >= self.scan {
            return None;
        }
        let h = header_at(&self.buf, self.start);
        let payload = &self.buf[self.start + HEADER_LEN..self.start + h.len as usize];
        Some(Msg { msg_type: h.msg_type, seq: h.seq, payload })
    }

    /// Releases the front message; returns its padded frame length.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<usize> {
        if self.start >= self.scan {
            return None;
        }
        let len = header_at(&self.buf, self.start).frame_len();
        self.start += len;
        self.skip_handled();
        Some(len)
    }
}

impl<S: ByteStream> StreamConnection<S> {
    /// Reads what the socket has (up to the read budget) and handles every complete
    /// frame. Any bytes at all count as a sign of life.
    pub(crate) fn receive(&mut self, now: Nanos) -> Result<(), Fail> {
        let mut budget = self.cfg.read_budget.max(1);
        let mut alive = false;
        self.rx.more = false;
        let result = loop {
            if budget == 0 {
                self.rx.more = true;
                break Ok(());
            }
            if !self.rx.make_room() {
                // Full of messages our user has not popped: backpressure.
                self.rx.more = true;
                self.note_pending_bytes(now);
                break Ok(());
            }
            let Some(stream) = self.stream.as_mut() else { break Ok(()) };
            let room = (self.rx.buf.len() - self.rx.end).min(budget);
            let into = &mut self.rx.buf[self.rx.end..self.rx.end + room];
            match stream.read(into) {
                Ok(0) => break Err(Fail::quiet(CloseReason::RemoteClosed)),
                Ok(n) => {
                    self.rx.end += n;
                    budget -= n;
                    alive = true;
                    if let Err(f) = self.scan() {
                        break Err(f);
                    }
                    if n < room {
                        // A stream socket returns less than asked only when it has
                        // no more now: skip the read that would say WouldBlock (what
                        // arrives later raises a new readiness event).
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(Fail::quiet(CloseReason::io("read", &e))),
            }
        };
        if alive {
            self.session.on_frame_received(now);
        }
        result
    }

    /// Bytes wait in the socket that we cannot read yet: the peer is alive.
    pub(crate) fn note_pending_bytes(&mut self, now: Nanos) {
        if let Some(stream) = self.stream.as_ref() {
            if rustix::io::ioctl_fionread(stream).is_ok_and(|n| n > 0) {
                self.session.on_frame_received(now);
            }
        }
    }

    /// Decodes and handles every complete frame after `scan`.
    fn scan(&mut self) -> Result<(), Fail> {
        while self.rx.scan < self.rx.end {
            let at = self.rx.scan;
            let (kind, header, consumed) = match decode(&self.rx.buf[at..self.rx.end], self.max_frame) {
                Err(e) => return Err(ProtocolError::from(e).into()),
                Ok(Decoded::Need(_)) => break,
                Ok(Decoded::Frame { frame, consumed }) => (frame.kind(), *frame.header(), consumed),
            };
            self.rx.scan += consumed;
            if kind == FrameKind::User {
                self.session.on_receive(header.seq)?;
                self.counters.received += 1;
                self.apply_ack(header.ack)?;
            } else {
                self.on_control(kind, &header, at, consumed)?;
                if self.rx.start == at {
                    // Nothing unpopped before it: release its bytes at once (a side
                    // that only receives acks never pops, and must not fill up).
                    self.rx.start = self.rx.scan;
                } else {
                    // Behind a message not popped yet: cut the handled frame out, or
                    // control frames pile up behind a kept message until the buffer
                    // is full and the acks that would free the peer's queue are
                    // never read (a deadlock).
                    self.rx.buf.copy_within(self.rx.scan..self.rx.end, at);
                    self.rx.end -= consumed;
                    self.rx.scan = at;
                }
            }
        }
        if self.rx.start == self.rx.end {
            (self.rx.start, self.rx.scan, self.rx.end) = (0, 0, 0);
        }
        Ok(())
    }

    fn on_control(&mut self, kind: FrameKind, header: &Header, at: usize, len: usize) -> Result<(), Fail> {
        match kind {
            FrameKind::Heartbeat | FrameKind::Ack => self.apply_ack(header.ack),
            FrameKind::Close => {
                let Ok(Decoded::Frame { frame, .. }) = decode(&self.rx.buf[at..at + len], u32::MAX) else {
                    return Err(Fail::corrupt("a decoded close frame no longer decodes".into()));
                };
                match frame.control()? {
                    Some(Control::Close(c)) => Err(Fail::quiet(c.to_reason())),
                    _ => Err(Fail::corrupt("a close frame parsed as something else".into())),
                }
            }
            FrameKind::Login | FrameKind::LoginReply | FrameKind::User => {
                Err(ProtocolError::UnexpectedControl { msg_type: header.msg_type, context: "after login" }.into())
            }
        }
    }

    /// The peer consumed `ack` of our messages: check it, then drop them from the store.
    #[inline]
    fn apply_ack(&mut self, ack: u64) -> Result<(), Fail> {
        let n = self.session.on_ack(ack)?;
        if n > 0 {
            self.store.ack(ack).map_err(|e| Fail::storage(&e))?;
            self.counters.acked += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshm_proto::encode;

    fn push_frame(rx: &mut RxState, t: u16, seq: u64, payload: &[u8]) {
        let n = tcpshm_proto::frame::frame_len(payload.len());
        assert!(rx.end + n <= rx.buf.len());
        encode::encode_frame(&mut rx.buf[rx.end..], t, seq, 0, payload).unwrap();
        rx.end += n;
        rx.scan = rx.end;
    }

    #[test]
    fn front_skips_handled_control_frames_behind_user_frames() {
        let mut rx = RxState::new(4096, 1 << 20);
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
    fn grows_for_a_large_frame_or_a_backlog_and_never_past_the_limits() {
        let mut rx = RxState::new(1024, 8192);
        assert_eq!(rx.capacity(), 1024);
        // A partial 5000-byte frame filling the buffer: grow to fit it.
        rx.buf[0..4].copy_from_slice(&5000u32.to_le_bytes());
        rx.end = 1024;
        assert!(rx.make_room());
        assert_eq!(rx.capacity(), 8192, "next power of two, capped by the limit");
        // Unpopped frames fill the buffer: it grows (doubling) so that what follows
        // them can be read, up to the backlog bound (the peer's queue)...
        let mut rx = RxState::new(1024, 1 << 20);
        rx.set_backlog(1500);
        push_frame(&mut rx, 1, 0, &[0; 100]);
        rx.buf[rx.end..rx.end + 4].copy_from_slice(&5000u32.to_le_bytes());
        rx.end = 1024;
        assert!(rx.make_room());
        assert_eq!(rx.capacity(), 2048);
        // ...and no further: then it waits for pops.
        let mut rx = RxState::new(1024, 1024);
        rx.set_backlog(0);
        push_frame(&mut rx, 1, 0, &[0; 100]);
        rx.buf[rx.end..rx.end + 4].copy_from_slice(&5000u32.to_le_bytes());
        rx.end = 1024;
        assert!(!rx.make_room());
        assert_eq!(rx.capacity(), 1024);
        // Popping it compacts the partial frame to the front.
        assert!(rx.pop().is_some());
        assert!(rx.make_room());
        assert_eq!((rx.start, rx.scan, rx.end), (0, 0, 1024 - 128));
        // The limit is never exceeded, even for a length the decoder would refuse.
        let mut rx = RxState::new(1024, 2048);
        rx.buf[0..4].copy_from_slice(&100_000u32.to_le_bytes());
        rx.end = 1024;
        assert!(!rx.make_room());
        assert_eq!(rx.capacity(), 1024);
    }
}
