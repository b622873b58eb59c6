//! Reading frames in place, validated: shared by the consumer (which reads what the
//! producer published) and the producer's [`peek`](super::Producer::peek) (which
//! rereads its own unconsumed frames). Either way the bytes may have been written by
//! another process, so every header is checked before it is used.

use super::consumer::Msg;
use super::error::Corrupt;
use super::frame::{align_up, FrameHeader, FLAG_WRAP, FRAME_HEADER_LEN};
use super::region::Ring;

/// A frame found in the ring: where it starts, where it ends, and its header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) index: u64,
    pub(crate) end: u64,
    pub(crate) header: FrameHeader,
}

/// What lies at a frame boundary.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// A message frame.
    Frame(Found),
    /// A wrap marker: the next frame is at this index (the start of the ring).
    Wrap(u64),
}

impl Ring {
    /// The frame or wrap marker at ring index `i`, which must be below `limit` (the end
    /// of what is published) and a multiple of the frame alignment (callers check
    /// indices that come from outside). Anything that would reach past `limit` or past
    /// the end of the ring, or a header with bad fields, is [`Corrupt`].
    #[inline(always)]
    pub(crate) fn step_at(&self, i: u64, limit: u64) -> Result<Step, Corrupt> {
        debug_assert!(i < limit && i.is_multiple_of(self.align));
        let off = i & self.mask;
        self.track_read(off, FRAME_HEADER_LEN as u64);
        // SAFETY: `off` is a multiple of the alignment (>= 8) below `capacity` (also a
        // multiple of it), so the 8 header bytes are in the data area and aligned;
        // they were published (`i < limit`).
        let word = unsafe { self.at(off).cast::<u64>().read() };
        let header = FrameHeader::from_word(u64::from_le(word));
        let bad = Corrupt::Frame { at: i, len: header.len, flags: header.flags };
        if header.flags == FLAG_WRAP {
            let skip = self.capacity - off;
            if i + skip > limit {
                return Err(bad);
            }
            return Ok(Step::Wrap(i + skip));
        }
        if header.flags != 0 || (header.len as usize) < FRAME_HEADER_LEN || header.payload_len() > self.max_payload {
            return Err(bad);
        }
        let frame = align_up(header.len as u64, self.align);
        if frame > self.capacity - off || i + frame > limit {
            return Err(bad);
        }
        self.track_read(off, frame);
        Ok(Step::Frame(Found { index: i, end: i + frame, header }))
    }

    /// The message of a frame found by [`step_at`](Self::step_at).
    ///
    /// # Safety
    /// The frame's bytes must stay unwritten for `'a`: the producer does not overwrite
    /// a published frame before the consumer releases it, nor its own frames while it
    /// is borrowed (writing needs `&mut Producer`).
    #[inline(always)]
    pub(crate) unsafe fn msg<'a>(&self, f: Found) -> Msg<'a> {
        let off = f.index & self.mask;
        let frame = (f.end - f.index) as usize;
        // SAFETY: `step_at` checked `off + frame <= capacity`; the caller guarantees
        // the bytes are not written for `'a`.
        let bytes = unsafe { core::slice::from_raw_parts(self.at(off), frame) };
        Msg { msg_type: f.header.msg_type, index: f.index, end: f.end, frame: bytes, len: f.header.len as usize }
    }
}
