//! The byte-stream path: reading frames into the session, writing queued frames
//! straight from the store's mapping, control frames from a small queue.
//!
//! What goes out, in priority order, each only at a frame boundary:
//! 1. the rest of a partly written user frame (nothing may come between its bytes);
//! 2. pending control frames (the rest of a partly written one first);
//! 3. a standalone ack, when the session says one is due;
//! 4. queued user frames, as runs of whole frames lying contiguously in the store's
//!    mapping, one `write` per run (only when the stream carries the messages);
//! 5. a heartbeat, when nothing was written for the heartbeat interval.
//!
//! A queued frame carries the ack of the moment it was pushed (the store stamps it);
//! acks never move back and an old one is ignored, so resending it unchanged is
//! correct, and standalone acks cover the rest. On a shared-memory session the
//! stream is the control stream: only control frames travel on it, and a user frame
//! there is a protocol error.

use crate::connection::{storage, Connection};
use tcpshm_persist::SendCursor;
use tcpshm_proto::close::{CloseFrame, TextBuf, MAX_PAYLOAD_LEN as CLOSE_PAYLOAD_LEN};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::encode::{self, encode_control};
use tcpshm_proto::frame::{frame_len, Header, ACK_OFFSET, HEADER_LEN};
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Control, Fault, FrameKind, Nanos, ProtocolError};
use tcpshm_transport_tcp::io::{write_now, write_some};
use tcpshm_transport_tcp::{ByteStream, Fill, InFrame};

/// Bytes read and dropped at most when closing, so the kernel ends the link with a
/// FIN (after our close frame) rather than a reset that may discard it.
const LINGER_DRAIN: usize = 1 << 20;

/// A poll step's failure: the reason, and whether the peer is told.
pub(crate) type Failed = (CloseReason, bool);

/// What one write attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Bytes went out (or were staged): go on.
    Progress,
    /// The socket buffer is full.
    Blocked,
}

fn corrupt(what: String) -> Failed {
    (CloseReason::Corrupt(Fault::msg(what)), true)
}

fn protocol(e: ProtocolError) -> Failed {
    (CloseReason::Protocol(e), true)
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

impl<S: ByteStream> Connection<S> {
    /// Whether the stream carries the messages (a TCP session), not only control.
    #[inline]
    fn stream_carries_data(&self) -> bool {
        self.medium == TransportKind::Tcp || self.rings.is_none()
    }

    /// `poll` of a session carried by the stream.
    pub(crate) fn poll_stream(&mut self, now: Nanos) -> bool {
        if self.stream.is_none() {
            return false;
        }
        let r = self.receive(now).and_then(|()| self.timers(now)).and_then(|()| {
            self.catch_up_store();
            self.flush(now)
        });
        self.settle(r)
    }

    // ---- readiness-driven pieces ------------------------------------------------

    /// The stream is readable: reads (at most the read budget) and handles what
    /// arrived (acks, heartbeats, close, protocol checks); received user messages wait
    /// for `front`. Returns whether the link is up. If [`read_more`](Self::read_more)
    /// is true afterwards, the read stopped before the socket was drained: call again
    /// without waiting for readiness (after popping, if the receive buffer was full).
    ///
    /// It stops after a read that returned fewer bytes than it had room for (the
    /// socket was drained then): with edge-triggered readiness (mio's), bytes that
    /// arrive later raise a new event. When the poller reports that the peer closed
    /// its end (`is_read_closed`), call [`on_read_closed`](Self::on_read_closed)
    /// instead: the end may already be behind the last bytes, with no event to come.
    pub fn on_readable(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        let r = self.receive(now);
        self.settle(r)
    }

    /// The poller reported the peer's end of the stream (with or without bytes before
    /// it): reads and handles everything up to the end, then closes the link with the
    /// reason the stream gives (a `CLOSE` frame's, or `RemoteClosed`/`PeerDied`).
    /// Returns whether the link is up (it can be, while the read budget or a full
    /// receive buffer holds the end back: then [`read_more`](Self::read_more) is true).
    pub fn on_read_closed(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        let r = self.receive_until(now, true);
        self.settle(r)
    }

    /// The stream is writable: writes queued frames, pending control frames and due
    /// acks/heartbeats (at most the write budget). Returns whether the link is up.
    pub fn on_writable(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        let r = self.flush(now);
        self.settle(r)
    }

    /// Timers at `now`: a close requested by a [`CloseHandle`](crate::CloseHandle),
    /// the peer's silence (closes with [`CloseReason::Timeout`]), heartbeats and
    /// standalone acks due (written now, unless the socket is full: then at the next
    /// writable event). Cheap when nothing is due: no system call. Returns whether
    /// the link is up.
    pub fn check_timers(&mut self, now: Nanos) -> bool {
        self.now = now;
        self.take_close_request();
        if self.stream.is_none() {
            return false;
        }
        let r = self.timers(now).and_then(|()| {
            // A full socket is written to when it becomes writable, not here (a
            // heartbeat could not pass the queued bytes anyway).
            let due = self.session.ack_due() || self.session.heartbeat_due(now) || self.wants_write();
            if due && !self.tx.blocked {
                self.flush(now)?;
            }
            Ok(())
        });
        self.settle(r)
    }

    /// Whether anything waits to be written now (queued frames not yet written, a
    /// partly written frame, pending control frames, a due standalone ack). Register
    /// for writability while it is true and [`write_blocked`](Self::write_blocked).
    pub fn wants_write(&self) -> bool {
        self.stream.is_some()
            && (self.tx.partial > 0
                || self.ctrl.pending()
                || (self.stream_carries_data() && (self.session.seq().unsent() > 0 || self.store.staged() > 0))
                || self.session.ack_due())
    }

    /// Whether the last write attempt stopped because the socket buffer was full
    /// (`WouldBlock`): wait for writability. False after a write stopped by the budget:
    /// then call [`on_writable`](Self::on_writable) again without waiting.
    pub fn write_blocked(&self) -> bool {
        self.tx.blocked
    }

    /// Whether the last read stopped before the socket was drained (the read budget
    /// was spent, or the receive buffer is full of messages not popped): call
    /// [`on_readable`](Self::on_readable) again without waiting for readiness.
    pub fn read_more(&self) -> bool {
        self.stream.is_some() && self.read_more
    }

    /// Whether a received message waits in the buffer (or, on shared memory, may wait
    /// in the ring), or the last read stopped before the socket was drained.
    #[inline]
    pub fn has_buffered(&self) -> bool {
        self.receives_from_rings() || self.reader.front().is_some() || self.read_more
    }

    // ---- receiving ----------------------------------------------------------------

    /// Reads what the stream has (up to the read budget) and handles every complete
    /// frame. Any bytes at all count as a sign of life.
    pub(crate) fn receive(&mut self, now: Nanos) -> Result<(), Failed> {
        self.receive_until(now, false)
    }

    /// [`receive`](Self::receive); `to_end`: reads until `WouldBlock` or the end of
    /// the stream even after a short read (the poller said the peer closed its end:
    /// no later event would come for bytes or an end already there).
    fn receive_until(&mut self, now: Nanos, to_end: bool) -> Result<(), Failed> {
        let mut budget = self.cfg.stream.read_budget.max(1);
        let mut alive = false;
        self.read_more = false;
        let result = loop {
            if budget == 0 {
                self.read_more = true;
                break Ok(());
            }
            let Some(stream) = self.stream.as_mut() else { break Ok(()) };
            match self.reader.fill(stream, budget) {
                Ok(Fill::Bytes(n)) => {
                    budget = budget.saturating_sub(n);
                    alive = true;
                    if let Err(f) = self.frames() {
                        break Err(f);
                    }
                    // A short read drained the socket: stop, without a read that
                    // would return `WouldBlock` (new bytes raise a new event).
                    if self.reader.drained() && !to_end {
                        break Ok(());
                    }
                }
                Ok(Fill::Full) => {
                    // Full of messages our user has not popped: backpressure.
                    self.read_more = true;
                    self.note_pending_bytes(now);
                    break Ok(());
                }
                Ok(Fill::WouldBlock) => break Ok(()),
                Ok(Fill::Eof) => break Err((self.gone(CloseReason::RemoteClosed), false)),
                Err(e) => break Err((self.gone(CloseReason::io("read", &e)), false)),
            }
        };
        if alive {
            self.session.on_received(now);
        }
        result
    }

    /// The reason for a stream that ended or failed: [`CloseReason::PeerDied`] if the
    /// session has rings and the peer's lock on the file is gone (its process died),
    /// else `otherwise`. One system call, on this rare path only.
    fn gone(&self, otherwise: CloseReason) -> CloseReason {
        match &self.rings {
            Some(r) if self.medium == TransportKind::Shm && matches!(r.peer_alive(), Ok(false)) => {
                CloseReason::PeerDied
            }
            _ => otherwise,
        }
    }

    /// Bytes wait in the socket that we cannot read yet: the peer is alive.
    pub(crate) fn note_pending_bytes(&mut self, now: Nanos) {
        if self.stream.as_ref().and_then(|s| s.unread()).is_some_and(|n| n > 0) {
            self.session.on_received(now);
        }
    }

    /// Handles every complete frame in the reader.
    fn frames(&mut self) -> Result<(), Failed> {
        let data = self.stream_carries_data();
        while let Some(f) = self.reader.next_frame().map_err(|e| protocol(e.into()))? {
            if f.kind == FrameKind::User {
                if !data {
                    return Err(protocol(ProtocolError::UnexpectedControl {
                        msg_type: f.header.msg_type,
                        context: "(a user message) on a shared-memory control stream",
                    }));
                }
                self.session.check_receive(f.header.payload_len()).map_err(protocol)?;
                self.session.on_receive(f.header.seq).map_err(protocol)?;
                self.apply_ack(f.header.ack)?;
            } else {
                self.on_control(&f, data)?;
                self.reader.release_control(&f);
            }
        }
        Ok(())
    }

    fn on_control(&mut self, f: &InFrame, data: bool) -> Result<(), Failed> {
        match f.kind {
            FrameKind::Heartbeat | FrameKind::Ack => {
                if f.kind == FrameKind::Heartbeat {
                    self.session.on_heartbeat_received();
                }
                // On shared memory the ring's consumed count is the ack.
                if data {
                    self.apply_ack(f.header.ack)?;
                }
                Ok(())
            }
            FrameKind::Close => {
                let bytes = self.reader.frame_bytes(f);
                match tcpshm_proto::decode(bytes, u32::MAX).ok().and_then(|d| match d {
                    tcpshm_proto::Decoded::Frame { frame, .. } => Some(frame.control()),
                    tcpshm_proto::Decoded::Need(_) => None,
                }) {
                    Some(Ok(Some(Control::Close(c)))) => Err((c.to_reason(), false)),
                    Some(Err(e)) => Err(protocol(e)),
                    _ => Err(corrupt("a decoded close frame no longer decodes".into())),
                }
            }
            FrameKind::Login | FrameKind::LoginReply | FrameKind::User => {
                Err(protocol(ProtocolError::UnexpectedControl { msg_type: f.header.msg_type, context: "after login" }))
            }
        }
    }

    /// The peer consumed `ack` of our messages: check it, then drop them from the store.
    #[inline]
    fn apply_ack(&mut self, ack: u64) -> Result<(), Failed> {
        let n = self.session.on_ack(ack).map_err(protocol)?;
        if n > 0 {
            self.store.ack(ack).map_err(|e| (storage(e), true))?;
        }
        Ok(())
    }

    /// Liveness: the peer's silence against the timeout.
    pub(crate) fn timers(&mut self, now: Nanos) -> Result<(), Failed> {
        if self.reader.is_stuck() {
            // Our user is not popping and our buffer is full: bytes waiting in the
            // socket mean the peer is alive.
            self.note_pending_bytes(now);
        }
        match self.session.timed_out(now) {
            Some(reason) => Err((reason, true)),
            None => Ok(()),
        }
    }

    /// Pops the front message of the stream.
    pub(crate) fn stream_pop(&mut self) {
        let Some(frame_len) = self.reader.pop() else { return };
        self.session.on_pop(frame_len as u64, false);
        // Messages staged by `push_more` (or a handler's reply) become crash-safe
        // before the pop commits: a crash between the two must never leave a request
        // consumed and its reply lost.
        if let Err(reason) = self.publish_staged() {
            self.fail(reason, true);
            return;
        }
        if let Err(e) = self.store.bump_consumed() {
            let reason = storage(e);
            self.fail(reason, true);
            return;
        }
        if self.stream.is_some() && self.session.ack_due() {
            // A one-way stream's sender waits for this ack to free its queue.
            let r = self.flush(self.now);
            self.settle(r);
        }
    }

    // ---- sending ------------------------------------------------------------------

    /// Writes what is due, up to the write budget, until the socket is full or
    /// nothing is left. Publishes frames staged by `push_more` first.
    pub(crate) fn flush(&mut self, now: Nanos) -> Result<(), Failed> {
        if self.stream.is_none() {
            return Ok(());
        }
        self.publish_staged().map_err(|r| (r, true))?;
        let data = self.stream_carries_data();
        let mut budget = self.cfg.stream.write_budget.max(1);
        self.tx.blocked = false;
        while budget > 0 {
            let step = if self.tx.partial > 0 {
                self.write_user(&mut budget, now)?
            } else if self.ctrl.pending() {
                self.write_ctrl(&mut budget, now)?
            } else if self.session.ack_due() && data {
                let ack = self.session.ack_to_send();
                self.stage_control(&encode::ack(self.session.seq().sent(), ack), ack, now);
                Step::Progress
            } else if data && self.session.seq().unsent() > 0 && self.tx.cursor.is_some() {
                self.write_user(&mut budget, now)?
            } else if self.session.heartbeat_due(now) {
                let ack = self.session.ack_to_send();
                if self.stage_control(&encode::heartbeat(self.session.seq().sent(), ack), ack, now) {
                    self.session.on_heartbeat_sent(now);
                }
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
    fn stage_control(&mut self, frame: &[u8], ack: u64, now: Nanos) -> bool {
        if !self.ctrl.stage(frame) {
            return false;
        }
        self.session.on_ack_sent(ack);
        self.session.on_sent_at(now);
        true
    }

    /// Queues a control frame (e.g. a login reply that could not be written whole);
    /// it leaves before any user frame not yet started. Its header carries our next
    /// seq and our consumed count. `false` if the pending-control buffer has no room
    /// for it (or it does not encode: a field over its bound); nothing is queued then.
    pub fn queue_control(&mut self, control: &Control<'_>) -> bool {
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let ack = self.session.ack_to_send();
        match encode_control(&mut buf, control, self.session.seq().sent(), ack) {
            Ok(n) => self.stage_control(&buf[..n], ack, self.now),
            Err(_) => false,
        }
    }

    fn write_ctrl(&mut self, budget: &mut usize, now: Nanos) -> Result<Step, Failed> {
        let Some(stream) = self.stream.as_mut() else { return Ok(Step::Blocked) };
        match self.ctrl.write_to(stream) {
            Ok(Some(n)) => {
                *budget = budget.saturating_sub(n);
                self.session.on_sent_at(now);
                Ok(Step::Progress)
            }
            Ok(None) => Ok(Step::Blocked),
            Err(e) => Err(self.write_failed(&e, now)),
        }
    }

    /// Writes from the first frame not completely written: one `write` of a run of
    /// whole frames straight from the mapping (resuming inside the first one if it
    /// was partly written), then accounts for the frames that went out whole.
    fn write_user(&mut self, budget: &mut usize, now: Nanos) -> Result<Step, Failed> {
        let Some(cursor) = self.tx.cursor else {
            return Err(corrupt("linked without a send cursor".into()));
        };
        let partial = self.tx.partial;
        let run = match self.store.send_run(cursor, budget.saturating_add(partial)) {
            Ok(Some(run)) => run,
            // The rest is still in the ring (a change of medium being caught up).
            Ok(None) => return Ok(Step::Blocked),
            Err(e) => return Err((storage(e), true)),
        };
        let Some(stream) = self.stream.as_mut() else { return Ok(Step::Blocked) };
        let Some(rest) = run.bytes.get(partial..).filter(|r| !r.is_empty()) else {
            return Err(corrupt(format!("partial write at byte {partial} of a {}-byte run", run.bytes.len())));
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
        self.session.on_sent_at(now);
        self.tx.partial = written - done;
        let step = if full { Step::Blocked } else { Step::Progress };
        if frames == 0 {
            return Ok(step);
        }
        // The cursor moves past the frames that went out whole.
        let next = if done == run_len { run_next } else { self.step_cursor(cursor, frames)? };
        self.tx.cursor = Some(next);
        self.session.on_sent(frames as u64);
        self.session.on_ack_sent(last_ack);
        // Informational (inspection tools show it): one atomic store.
        let _ = self.store.set_send_cursor(self.session.seq().sent());
        Ok(step)
    }

    /// The cursor `frames` frames after `cursor`.
    fn step_cursor(&mut self, mut cursor: SendCursor, frames: usize) -> Result<SendCursor, Failed> {
        for _ in 0..frames {
            cursor = match self.store.frame(cursor) {
                Ok(Some((_, next))) => next,
                Ok(None) => return Err(corrupt(format!("the send queue ends at seq {}", cursor.seq()))),
                Err(e) => return Err((storage(e), true)),
            };
        }
        Ok(cursor)
    }

    /// A write failed: the peer may have closed on purpose first, so read what it
    /// sent (its close frame's reason beats a bare "broken pipe").
    fn write_failed(&mut self, e: &std::io::Error, now: Nanos) -> Failed {
        match self.receive_until(now, true) {
            Err(f) => f,
            Ok(()) => (CloseReason::io("write", e), false),
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
            let Some(rest) = run.bytes.get(self.tx.partial..first_len) else { return };
            if write_now(stream, rest).ok() != Some(rest.len()) {
                return;
            }
            self.tx.partial = 0;
        }
        while self.ctrl.pending() {
            match self.ctrl.write_to(stream) {
                Ok(Some(_)) => {}
                _ => return,
            }
        }
        let mut text = TextBuf::new();
        let close = Control::Close(CloseFrame::for_reason(reason, &mut text));
        let mut buf = [0u8; frame_len(CLOSE_PAYLOAD_LEN)];
        let Ok(n) = encode_control(&mut buf, &close, self.session.seq().sent(), self.session.ack_to_send()) else {
            return;
        };
        let _ = write_now(stream, &buf[..n]);
        let _ = std::io::Write::flush(stream);
    }

    /// Ends our direction (FIN after whatever was written), then reads and drops what
    /// the peer already sent (bounded), so closing does not reset the link under the
    /// close frame.
    pub(crate) fn linger(&mut self, stream: &mut S) {
        let _ = stream.set_nonblocking();
        stream.shutdown_write();
        let mut drained = 0;
        let buf = self.reader.scratch();
        while drained < LINGER_DRAIN {
            match tcpshm_transport_tcp::io::read_some(stream, buf) {
                Ok(Some(0)) | Ok(None) | Err(_) => break,
                Ok(Some(n)) => drained += n,
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
}
