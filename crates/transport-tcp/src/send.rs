//! The write path: queued frames straight from the store's mapping, control frames
//! from a small fixed buffer, partial writes resumed at the byte.
//!
//! What goes out, in priority order, each only at a frame boundary:
//! 1. the rest of a partly written user frame (nothing may come between its bytes);
//! 2. pending control frames (the rest of a partly written one first);
//! 3. a standalone ack, when the session says one is due;
//! 4. queued user frames, as runs of whole frames lying contiguously in the mapping,
//!    one `write` per run;
//! 5. a heartbeat, when nothing was written for the heartbeat interval.
//!
//! A queued frame carries the ack of the moment it was pushed (the store stamps it);
//! acks never move back and an old one is ignored, so resending it unchanged is
//! correct, and standalone acks cover the rest.

use crate::connection::{ByteStream, StreamConnection};
use crate::error::Fail;
use std::io::{self, ErrorKind, Write};
use tcpshm_persist::SendCursor;
use tcpshm_proto::close::{CloseFrame, TextBuf, MAX_PAYLOAD_LEN as CLOSE_PAYLOAD_LEN};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::encode::{self, encode_control};
use tcpshm_proto::frame::{frame_len, Header, ACK_OFFSET, HEADER_LEN};
use tcpshm_proto::{CloseReason, Control, Nanos};

/// Bytes of the pending-control buffer: room for two of the largest control frames.
pub(crate) const CTRL_CAP: usize = 2 * MAX_CONTROL_FRAME_LEN;
/// Linux `EPIPE`, reported when a write returns 0 bytes (a socket never should).
const EPIPE: i32 = 32;
/// Bytes read and dropped at most when closing, so the kernel ends the link with a
/// FIN (after our close frame) rather than a reset that may discard it.
const LINGER_DRAIN: usize = 1 << 20;

/// Write progress of one link.
pub(crate) struct TxState {
    /// The first queued frame not completely written (seq `session.sent()`); `None`
    /// while unlinked.
    pub(crate) cursor: Option<SendCursor>,
    /// Bytes of the frame at `cursor` already written (0: at a frame boundary).
    pub(crate) partial: usize,
    /// Pending control frames (whole frames), written from `ctrl_pos`.
    ctrl: [u8; CTRL_CAP],
    ctrl_len: usize,
    ctrl_pos: usize,
    /// The last write attempt met a full socket buffer.
    pub(crate) blocked: bool,
}

impl TxState {
    pub(crate) fn new() -> TxState {
        TxState { cursor: None, partial: 0, ctrl: [0; CTRL_CAP], ctrl_len: 0, ctrl_pos: 0, blocked: false }
    }

    pub(crate) fn reset(&mut self) {
        self.cursor = None;
        self.partial = 0;
        self.ctrl_len = 0;
        self.ctrl_pos = 0;
        self.blocked = false;
    }

    #[inline]
    pub(crate) fn ctrl_pending(&self) -> bool {
        self.ctrl_pos < self.ctrl_len
    }

    /// Appends whole frames; `false` (nothing appended) if they do not fit.
    fn stage(&mut self, frame: &[u8]) -> bool {
        if self.ctrl_pos == self.ctrl_len {
            self.ctrl_pos = 0;
            self.ctrl_len = 0;
        }
        let Some(dst) = self.ctrl.get_mut(self.ctrl_len..self.ctrl_len + frame.len()) else { return false };
        dst.copy_from_slice(frame);
        self.ctrl_len += frame.len();
        true
    }
}

/// What one write attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Bytes went out (or were staged): go on.
    Progress,
    /// The socket buffer is full.
    Blocked,
}

/// `write` that retries on `EINTR`; `Ok(None)` when the socket buffer is full.
#[inline]
pub(crate) fn write_some<S: Write>(s: &mut S, b: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match s.write(b) {
            Ok(0) if !b.is_empty() => return Err(io::Error::from_raw_os_error(EPIPE)),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Counts the whole frames in the first `written` bytes of `run` (a run of whole
/// frames from the store): `(frames, their bytes, the ack in the last one)`.
#[inline]
fn whole_frames(run: &[u8], written: usize) -> (usize, usize, u64) {
    let (mut frames, mut at, mut ack) = (0, 0, 0);
    while let Some(head) = run.get(at..at + HEADER_LEN).and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok()) {
        let h = Header::read(head);
        let end = at + h.frame_len();
        if end > written || h.frame_len() < HEADER_LEN {
            break;
        }
        ack = u64::from_le_bytes(head[ACK_OFFSET..HEADER_LEN].try_into().expect("8 bytes"));
        frames += 1;
        at = end;
    }
    (frames, at, ack)
}

impl<S: ByteStream> StreamConnection<S> {
    /// Writes what is due, up to the write budget, until the socket is full or
    /// nothing is left. Publishes frames staged by `push_more` first.
    pub(crate) fn flush(&mut self, now: Nanos) -> Result<(), Fail> {
        if self.stream.is_none() {
            return Ok(());
        }
        self.store.publish().map_err(|e| Fail::storage(&e))?;
        let mut budget = self.cfg.write_budget.max(1);
        self.tx.blocked = false;
        while budget > 0 {
            let step = if self.tx.partial > 0 {
                self.write_user(&mut budget, now)?
            } else if self.tx.ctrl_pending() {
                self.write_ctrl(&mut budget, now)?
            } else if self.session.ack_due() {
                let ack = self.session.ack_to_send();
                self.stage_control_bytes(&encode::ack(self.session.sent(), ack), ack, now);
                Step::Progress
            } else if self.session.unsent() > 0 {
                self.write_user(&mut budget, now)?
            } else if self.session.heartbeat_due(now) {
                let ack = self.session.ack_to_send();
                self.stage_control_bytes(&encode::heartbeat(self.session.sent(), ack), ack, now);
                Step::Progress
            } else {
                return Ok(());
            };
            if step == Step::Blocked {
                self.tx.blocked = true;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Stages a control frame carrying `ack`; it leaves at the next frame boundary.
    fn stage_control_bytes(&mut self, frame: &[u8], ack: u64, now: Nanos) -> bool {
        if !self.tx.stage(frame) {
            return false;
        }
        self.session.on_ack_sent(ack);
        self.session.on_frame_sent(now);
        true
    }

    /// Queues a control frame (e.g. a login reply the server could not write whole
    /// before [`attach`](Self::attach)); it leaves before any user frame not yet
    /// started. Its header carries our next seq and our consumed count. `false` if
    /// the pending-control buffer has no room for it (or it does not encode: a field
    /// over its bound); nothing is queued then.
    ///
    /// ```no_run
    /// # fn f(conn: &mut tcpshm_transport_tcp::TcpConnection, reply: tcpshm_proto::login::LoginReply<'_>) {
    /// use tcpshm_proto::Control;
    /// assert!(conn.queue_control(&Control::LoginReply(reply)));
    /// # }
    /// ```
    pub fn queue_control(&mut self, control: &Control<'_>) -> bool {
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let ack = self.session.ack_to_send();
        match encode_control(&mut buf, control, self.session.sent(), ack) {
            Ok(n) => self.stage_control_bytes(&buf[..n], ack, self.now),
            Err(_) => false,
        }
    }

    fn write_ctrl(&mut self, budget: &mut usize, now: Nanos) -> Result<Step, Fail> {
        let Some(stream) = self.stream.as_mut() else { return Ok(Step::Blocked) };
        let pending = &self.tx.ctrl[self.tx.ctrl_pos..self.tx.ctrl_len];
        match write_some(stream, pending) {
            Ok(Some(n)) => {
                self.tx.ctrl_pos += n;
                *budget = budget.saturating_sub(n);
                self.session.on_frame_sent(now);
                Ok(Step::Progress)
            }
            Ok(None) => Ok(Step::Blocked),
            Err(e) => Err(self.write_failed(&e, now)),
        }
    }

    /// Writes from the first frame not completely written: one `write` of a run of
    /// whole frames straight from the mapping (resuming inside the first one if it
    /// was partly written), then accounts for the frames that went out whole.
    fn write_user(&mut self, budget: &mut usize, now: Nanos) -> Result<Step, Fail> {
        let Some(cursor) = self.tx.cursor else {
            return Err(Fail::corrupt("linked without a send cursor".into()));
        };
        let partial = self.tx.partial;
        let run = match self.store.send_run(cursor, budget.saturating_add(partial)) {
            Ok(Some(run)) => run,
            Ok(None) => {
                return Err(Fail::corrupt(format!("the send queue ends before seq {}", self.session.sent())));
            }
            Err(e) => return Err(Fail::storage(&e)),
        };
        let Some(stream) = self.stream.as_mut() else { return Ok(Step::Blocked) };
        let Some(rest) = run.bytes.get(partial..).filter(|r| !r.is_empty()) else {
            return Err(Fail::corrupt(format!("partial write at byte {partial} of a {}-byte run", run.bytes.len())));
        };
        // A run is at least one frame, which may be far larger than the budget.
        let rest = &rest[..rest.len().min(*budget)];
        let n = match write_some(stream, rest) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Step::Blocked),
            Err(e) => return Err(self.write_failed(&e, now)),
        };
        // A short write means the socket buffer is full: the next one would only
        // say WouldBlock.
        let full = n < rest.len();
        let written = partial + n;
        let (frames, done, last_ack) = whole_frames(run.bytes, written);
        let (run_len, run_next) = (run.bytes.len(), run.next);
        *budget = budget.saturating_sub(n);
        self.session.on_frame_sent(now);
        self.tx.partial = written - done;
        let step = if full { Step::Blocked } else { Step::Progress };
        if frames == 0 {
            return Ok(step);
        }
        // The cursor moves past the frames that went out whole.
        let next = if done == run_len { run_next } else { self.step_cursor(cursor, frames)? };
        self.tx.cursor = Some(next);
        let first = self.session.on_sent(frames as u64);
        self.counters.sent += first;
        self.counters.resent += frames as u64 - first;
        self.session.on_ack_sent(last_ack);
        // Informational (inspection tools show it): one atomic store.
        let _ = self.store.set_send_cursor(self.session.sent());
        Ok(step)
    }

    /// The cursor `frames` frames after `cursor`.
    fn step_cursor(&mut self, mut cursor: SendCursor, frames: usize) -> Result<SendCursor, Fail> {
        for _ in 0..frames {
            cursor = match self.store.frame(cursor) {
                Ok(Some((_, next))) => next,
                Ok(None) => return Err(Fail::corrupt(format!("the send queue ends at seq {}", cursor.seq()))),
                Err(e) => return Err(Fail::storage(&e)),
            };
        }
        Ok(cursor)
    }

    /// A write failed: the peer may have closed on purpose first, so read what it
    /// sent (its close frame's reason beats a bare "broken pipe").
    fn write_failed(&mut self, e: &io::Error, now: Nanos) -> Fail {
        match self.receive(now) {
            Err(f) => f,
            Ok(()) => Fail::quiet(CloseReason::io("write", e)),
        }
    }

    /// Best effort, non-blocking: finishes a partly written frame (only that one),
    /// then pending control frames, then a `CLOSE` frame saying `reason`. Stops at the
    /// first full socket or error; never leaves a close frame inside another frame.
    pub(crate) fn goodbye(&mut self, stream: &mut S, reason: &CloseReason) {
        if self.tx.partial > 0 {
            let Some(cursor) = self.tx.cursor else { return };
            let Ok(Some(run)) = self.store.send_run(cursor, 1) else { return };
            let first_len = run.bytes.first_chunk::<HEADER_LEN>().map_or(0, |h| Header::read(h).frame_len());
            let Some(mut rest) = run.bytes.get(self.tx.partial..first_len) else { return };
            while !rest.is_empty() {
                match write_some(stream, rest) {
                    Ok(Some(n)) => rest = &rest[n..],
                    _ => return,
                }
            }
            self.tx.partial = 0;
        }
        let mut pending = &self.tx.ctrl[self.tx.ctrl_pos..self.tx.ctrl_len];
        while !pending.is_empty() {
            match write_some(stream, pending) {
                Ok(Some(n)) => pending = &pending[n..],
                _ => return,
            }
        }
        let mut text = TextBuf::new();
        let close = Control::Close(CloseFrame::for_reason(reason, &mut text));
        let mut buf = [0u8; frame_len(CLOSE_PAYLOAD_LEN)];
        let Ok(n) = encode_control(&mut buf, &close, self.session.sent(), self.session.ack_to_send()) else { return };
        let mut out = &buf[..n];
        while !out.is_empty() {
            match write_some(stream, out) {
                Ok(Some(n)) => out = &out[n..],
                _ => return,
            }
        }
    }

    /// Ends our direction (FIN after whatever was written), then reads and drops what
    /// the peer already sent (bounded), so closing does not reset the link under the
    /// close frame.
    pub(crate) fn linger(&mut self, stream: &mut S) {
        let sock = socket2::SockRef::from(&*stream);
        // Never wait here, whatever the stream was given as.
        let _ = sock.set_nonblocking(true);
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let mut drained = 0;
        let buf = self.rx.scratch();
        while drained < LINGER_DRAIN {
            match stream.read(buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(specs: &[(usize, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, &(len, ack)) in specs.iter().enumerate() {
            let mut buf = vec![0u8; frame_len(len)];
            let n = encode::encode_frame(&mut buf, 1, seq as u64, ack, &vec![7u8; len]).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn whole_frames_counts_only_complete_frames() {
        let run = frames(&[(5, 1), (0, 2), (100, 3)]);
        // 32 + 24 + 128 bytes.
        assert_eq!(run.len(), 184);
        assert_eq!(whole_frames(&run, 0), (0, 0, 0));
        assert_eq!(whole_frames(&run, 31), (0, 0, 0));
        assert_eq!(whole_frames(&run, 32), (1, 32, 1));
        assert_eq!(whole_frames(&run, 55), (1, 32, 1));
        assert_eq!(whole_frames(&run, 56), (2, 56, 2));
        assert_eq!(whole_frames(&run, 183), (2, 56, 2));
        assert_eq!(whole_frames(&run, 184), (3, 184, 3));
    }

    #[test]
    fn ctrl_buffer_refuses_what_does_not_fit() {
        let mut tx = TxState::new();
        let big = [0u8; MAX_CONTROL_FRAME_LEN];
        assert!(tx.stage(&big));
        assert!(tx.stage(&big));
        assert!(!tx.stage(&[0u8; 24]), "full");
        assert_eq!(tx.ctrl_len, CTRL_CAP);
        // Once written, the buffer starts over.
        tx.ctrl_pos = tx.ctrl_len;
        assert!(tx.stage(&[0u8; 24]));
        assert_eq!((tx.ctrl_pos, tx.ctrl_len), (0, 24));
    }
}
