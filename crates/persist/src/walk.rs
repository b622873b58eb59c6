//! Walking the queued frames of a byte image of the ring's data area, trusting
//! nothing: the same checks the ring's consumer makes (header, length, wrap marker,
//! bounds), plus the wire rules of a queued frame (user type, 24-byte header, zero
//! padding). Recovery, inspection and salvage all read frames through this.

use crate::error::Inconsistency;
use crate::layout::FRAME_ALIGN;
use tcpshm_proto::frame::{msg_type, HEADER_LEN, RING_PREFIX_LEN};
use tcpshm_ring::var::frame::{align_up, FrameHeader, FLAG_WRAP, FRAME_HEADER_LEN};
use tcpshm_ring::var::Corrupt;

/// One queued frame found in an image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameRef<'a> {
    /// Ring index of the frame (after any wrap marker).
    pub(crate) index: u64,
    pub(crate) msg_type: u16,
    pub(crate) seq: u64,
    pub(crate) ack: u64,
    /// The message bytes.
    pub(crate) payload: &'a [u8],
}

/// Iterator over the frames in ring indices `from..to` of `data` (the ring's data
/// area, a power of two long), with the largest payload `max_payload` (the ring's).
/// Yields an error at the first impossible frame and stops.
pub(crate) struct Frames<'a> {
    data: &'a [u8],
    at: u64,
    to: u64,
    max_payload: usize,
    failed: bool,
}

pub(crate) fn frames(data: &[u8], from: u64, to: u64, max_payload: usize) -> Frames<'_> {
    Frames { data, at: from, to, max_payload, failed: false }
}

impl<'a> Frames<'a> {
    fn next_frame(&mut self) -> Result<Option<FrameRef<'a>>, Inconsistency> {
        let cap = self.data.len() as u64;
        loop {
            if self.at >= self.to {
                return Ok(None);
            }
            let i = self.at;
            let off = (i % cap) as usize;
            let word = u64::from_le_bytes(self.data[off..off + 8].try_into().expect("8 bytes"));
            let h = FrameHeader::from_word(word);
            let corrupt = Inconsistency::Ring(Corrupt::Frame { at: i, len: h.len, flags: h.flags });
            if h.flags == FLAG_WRAP {
                let skip = cap - off as u64;
                if i + skip > self.to {
                    return Err(corrupt);
                }
                self.at += skip;
                continue;
            }
            if h.flags != 0 || (h.len as usize) < FRAME_HEADER_LEN || h.payload_len() > self.max_payload {
                return Err(corrupt);
            }
            let frame = align_up(h.len as u64, FRAME_ALIGN as u64);
            if frame > cap - off as u64 || i + frame > self.to {
                return Err(corrupt);
            }
            let bytes = &self.data[off..off + frame as usize];
            let bad = |reason| Inconsistency::BadFrame { index: i, reason };
            if h.payload_len() < RING_PREFIX_LEN {
                return Err(bad("shorter than the 24-byte header"));
            }
            if !msg_type::is_user(h.msg_type) {
                return Err(bad("control message type in the send queue"));
            }
            let len = h.len as usize;
            if bytes[len..].iter().any(|&b| b != 0) {
                return Err(bad("non-zero padding"));
            }
            let seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
            let ack = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
            self.at = i + frame;
            return Ok(Some(FrameRef { index: i, msg_type: h.msg_type, seq, ack, payload: &bytes[HEADER_LEN..len] }));
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<FrameRef<'a>, Inconsistency>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_frame() {
            Ok(f) => f.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshm_ring::var::{self, Config};

    /// A ring of `cap` bytes with the given (type, seq, payload length) frames pushed,
    /// after `skip` bytes were pushed and popped (so the frames can wrap).
    fn ring(cap: usize, skip: usize, frames: &[(u16, u64, usize)]) -> (Vec<u64>, u64, u64) {
        let len = var::region_size(cap);
        let mut mem = vec![0u64; len / 8];
        // SAFETY: u8 has no alignment or validity requirements; `mem` outlives `region`.
        let region = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), len) };
        var::init(region, Config::new(cap)).unwrap();
        let (mut p, mut c) = var::attach(region).unwrap();
        while (p.write_index() as usize) < skip {
            p.alloc(56).unwrap().unwrap();
            p.push(1).unwrap();
            c.pop().unwrap();
        }
        let from = p.write_index();
        for &(t, seq, n) in frames {
            let buf = p.alloc(RING_PREFIX_LEN + n).unwrap().unwrap();
            buf[..8].copy_from_slice(&seq.to_le_bytes());
            buf[8..16].copy_from_slice(&(seq * 10).to_le_bytes());
            buf[16..].fill(seq as u8);
            p.push(t).unwrap();
        }
        let to = p.write_index();
        (mem, from, to)
    }

    fn data(mem: &[u64], cap: usize) -> &[u8] {
        // SAFETY: as above.
        let all = unsafe { std::slice::from_raw_parts(mem.as_ptr().cast::<u8>(), mem.len() * 8) };
        &all[var::HEADER_LEN..var::HEADER_LEN + cap]
    }

    #[test]
    fn walks_frames_across_the_wrap() {
        let cap = 256;
        let (mem, from, to) = ring(cap, 192, &[(1, 5, 3), (2, 6, 40), (3, 7, 0)]);
        let got: Vec<(u64, u16, u64, Vec<u8>)> = frames(data(&mem, cap), from, to, cap / 2 - 8)
            .map(|f| f.map(|f| (f.seq, f.msg_type, f.ack, f.payload.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [(5, 1, 50, vec![5; 3]), (6, 2, 60, vec![6; 40]), (7, 3, 70, vec![])]);
    }

    #[test]
    fn impossible_frames_stop_the_walk() {
        let cap = 256;
        let (mut mem, from, to) = ring(cap, 0, &[(1, 0, 5), (0xFF00, 1, 5)]);
        let err = |mem: &[u64], to| frames(data(mem, cap), from, to, cap / 2 - 8).find_map(|f| f.err());
        assert!(matches!(err(&mem, to), Some(Inconsistency::BadFrame { index: 32, .. })));
        // A frame running past `to`.
        assert!(matches!(err(&mem, to - 8), Some(Inconsistency::Ring(Corrupt::Frame { at: 32, .. }))));
        // Non-zero padding (frame 0: 8 + 16 + 5 = 29 bytes, padded to 32).
        mem[var::HEADER_LEN / 8 + 3] |= 0xFF << 56;
        assert!(matches!(err(&mem, to), Some(Inconsistency::BadFrame { index: 0, reason: "non-zero padding" })));
    }
}
