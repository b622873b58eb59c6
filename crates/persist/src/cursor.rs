//! Reading the send queue: cursors, runs of wire frames for one `write`, single frames.

use crate::error::StoreError;
use crate::store::{frame_seq, split_frame, Store};
use tcpshm_ring::var;

/// A position in the send queue: the seq of the next frame to send and where it
/// lives in the ring. Made by [`Store::cursor_at`](crate::Store::cursor_at), advanced
/// by [`Store::send_run`](crate::Store::send_run).
/// It stays valid while its seq is not acknowledged, and only for the store (and
/// the file generation) that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCursor {
    seq: u64,
    index: u64,
    generation: u64,
}

impl SendCursor {
    /// Seq of the next frame to send.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Ring index of that frame (or of the queue's end).
    pub fn index(&self) -> u64 {
        self.index
    }
}

/// Whole queued frames lying contiguously in the mapping, ready for one `write`.
#[derive(Debug, Clone, Copy)]
pub struct SendRun<'a> {
    /// Wire frames, byte for byte (headers, payloads, zero padding).
    pub bytes: &'a [u8],
    /// Number of frames in `bytes`.
    pub count: usize,
    /// Cursor just past the run.
    pub next: SendCursor,
}

/// One queued message, borrowed in place.
#[derive(Debug, Clone, Copy)]
pub struct QueuedFrame<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// The ack stamped into its header at push.
    pub ack: u64,
    /// The message type.
    pub msg_type: u16,
    /// The message bytes (after the 24-byte header).
    pub payload: &'a [u8],
    /// The whole wire frame (header, payload, padding).
    pub bytes: &'a [u8],
}

impl Store {
    /// A cursor at `seq` (in `first_unacked()..=next_seq()`), found by walking from
    /// the oldest queued frame: after a login, the peer's consumed count is where
    /// resending starts.
    pub fn cursor_at(&mut self, seq: u64) -> Result<SendCursor, StoreError> {
        if seq < self.acked || seq > self.next_seq {
            return Err(StoreError::SeqOutOfRange { seq, acked: self.acked, next_seq: self.next_seq });
        }
        let mut index = self.consumer.read_index();
        if seq == self.next_seq {
            index = self.producer.published_index();
        } else {
            for expected in self.acked..seq {
                let m = self.consumer.peek(index)?.ok_or(StoreError::Missing { seq: expected })?;
                let found = frame_seq(&m);
                if found != expected {
                    return Err(StoreError::CursorMismatch { expected, found });
                }
                index = m.end();
            }
        }
        Ok(SendCursor { seq, index, generation: self.generation })
    }

    fn check_cursor(&self, c: &SendCursor) -> Result<(), StoreError> {
        if c.generation != self.generation || c.seq < self.acked {
            return Err(StoreError::StaleCursor { seq: c.seq, acked: self.acked });
        }
        if c.seq > self.next_seq {
            return Err(StoreError::SeqOutOfRange { seq: c.seq, acked: self.acked, next_seq: self.next_seq });
        }
        Ok(())
    }

    /// Whole wire frames from `cursor` that lie contiguously in the mapping: at least
    /// one (if any is queued there), then more while the total stays within
    /// `max_bytes` — for one `write` straight from the mapping. `Ok(None)` when the
    /// cursor is at [`next_seq`](Self::next_seq).
    #[inline]
    pub fn send_run(&mut self, cursor: SendCursor, max_bytes: usize) -> Result<Option<SendRun<'_>>, StoreError> {
        self.check_cursor(&cursor)?;
        if cursor.seq == self.next_seq {
            return Ok(None);
        }
        let var::Run { bytes, end, count, .. } =
            self.consumer.contiguous(cursor.index, max_bytes)?.ok_or(StoreError::Missing { seq: cursor.seq })?;
        let found = u64::from_le_bytes(bytes[8..16].try_into().expect("a frame has a 24-byte header"));
        if found != cursor.seq {
            return Err(StoreError::CursorMismatch { expected: cursor.seq, found });
        }
        let next = SendCursor { seq: cursor.seq + count as u64, index: end, generation: self.generation };
        Ok(Some(SendRun { bytes, count, next }))
    }

    /// The queued message at `cursor` and the cursor after it; `Ok(None)` at the end.
    pub fn frame(&mut self, cursor: SendCursor) -> Result<Option<(QueuedFrame<'_>, SendCursor)>, StoreError> {
        self.check_cursor(&cursor)?;
        if cursor.seq == self.next_seq {
            return Ok(None);
        }
        let generation = self.generation;
        let m = self.consumer.peek(cursor.index)?.ok_or(StoreError::Missing { seq: cursor.seq })?;
        let (seq, ack, payload) = split_frame(&m);
        if seq != cursor.seq {
            return Err(StoreError::CursorMismatch { expected: cursor.seq, found: seq });
        }
        let next = SendCursor { seq: seq + 1, index: m.end(), generation };
        Ok(Some((QueuedFrame { seq, ack, msg_type: m.msg_type(), payload, bytes: m.bytes() }, next)))
    }
}
