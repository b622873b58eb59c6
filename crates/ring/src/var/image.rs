//! Reading a *copy* of a region — its header and frames as bytes, e.g. taken from a
//! live shared-memory file by an inspection tool — with the checks the ends make on
//! live memory: nothing here touches a mapping or trusts a byte.
//!
//! ```
//! use tcpshm_ring::var::{self, image, Config};
//!
//! let cfg = Config::new(256);
//! let mut mem = vec![0u64; var::region_size(cfg.capacity) / 8];
//! # let len = mem.len() * 8;
//! # // SAFETY: u8 has no alignment or validity requirements.
//! # let region: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), len) };
//! var::init(region, cfg).unwrap();
//! let (mut p, c) = var::attach(region).unwrap();
//! p.alloc(2).unwrap().unwrap().copy_from_slice(b"hi");
//! p.push(7).unwrap();
//! drop((p, c));
//! let copy = region.to_vec(); // what a tool would copy out of a file
//! let h = image::parse_header(&copy[..var::HEADER_LEN], copy.len()).unwrap();
//! assert_eq!((h.config, h.read, h.write), (cfg, 0, 16));
//! let data = &copy[var::HEADER_LEN..];
//! let frames: Vec<_> = image::frames(data, h.read, h.write, h.config).collect::<Result<_, _>>().unwrap();
//! assert_eq!((frames[0].msg_type, frames[0].payload), (7, &b"hi"[..]));
//! ```

use super::error::{AttachError, Corrupt};
use super::frame::{align_up, FrameHeader, FLAG_WRAP, FRAME_HEADER_LEN};
use super::layout::{
    Config, HEADER_LEN, MAGIC, MAX_CAPACITY, OFF_READ_INDEX as OFF_READ, OFF_WRITE_INDEX as OFF_WRITE, VERSION,
};

// The documented offsets of the immutable header fields (see `layout`).
const OFF_VERSION: usize = 8;
const OFF_ALIGN: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_DATA: usize = 24;

/// A region header read from a copy ([`parse_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionHeader {
    /// Capacity and frame alignment.
    pub config: Config,
    /// The write index (bytes ever published).
    pub write: u64,
    /// The read index (bytes ever released).
    pub read: u64,
}

impl RegionHeader {
    /// Bytes in use (`write - read`).
    pub fn used(&self) -> u64 {
        self.write - self.read
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Checks a copy of a region's first [`HEADER_LEN`] bytes, for a region of
/// `region_len` bytes, as [`attach`](super::attach) checks live memory: magic,
/// version, data offset, alignment, capacity, length, indices.
pub fn parse_header(image: &[u8], region_len: usize) -> Result<RegionHeader, AttachError> {
    if image.len() < HEADER_LEN || region_len < HEADER_LEN {
        return Err(AttachError::TooShort(image.len().min(region_len)));
    }
    let magic = u64_at(image, 0);
    if magic != MAGIC {
        return Err(AttachError::BadMagic(magic));
    }
    let version = u32::from_le_bytes(image[OFF_VERSION..OFF_VERSION + 4].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(AttachError::BadVersion { found: version, expected: VERSION });
    }
    let data = u64_at(image, OFF_DATA);
    if data != HEADER_LEN as u64 {
        return Err(AttachError::BadDataOffset(data));
    }
    let align = u32::from_le_bytes(image[OFF_ALIGN..OFF_ALIGN + 4].try_into().expect("4 bytes"));
    if !align.is_power_of_two() || !(8..=4096).contains(&align) {
        return Err(AttachError::BadAlign(align));
    }
    let capacity = u64_at(image, OFF_CAPACITY);
    if !capacity.is_power_of_two() || capacity < 4 * align as u64 || capacity > MAX_CAPACITY as u64 {
        return Err(AttachError::BadCapacity(capacity));
    }
    let header = HEADER_LEN as u64 + capacity;
    if header != region_len as u64 {
        return Err(AttachError::LengthMismatch { header, region: region_len });
    }
    let (read, write) = (u64_at(image, OFF_READ), u64_at(image, OFF_WRITE));
    let a = align as u64;
    if read > write || write - read > capacity || !read.is_multiple_of(a) || !write.is_multiple_of(a) {
        return Err(AttachError::BadIndices { read, write });
    }
    Ok(RegionHeader { config: Config { capacity: capacity as usize, align: align as usize }, write, read })
}

/// A frame found in a copy of a data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFrame<'a> {
    /// Its ring index (after any wrap marker).
    pub index: u64,
    /// Its message type.
    pub msg_type: u16,
    /// Its payload.
    pub payload: &'a [u8],
}

/// The frames of ring indices `from..to` in `data`, a copy of the data area of a ring
/// of shape `config` (`data.len() == config.capacity`). Yields [`Corrupt`] at the first
/// impossible header, wrap marker or length, and stops.
pub fn frames(data: &[u8], from: u64, to: u64, config: Config) -> Frames<'_> {
    Frames { data, at: from, to, config, failed: data.len() != config.capacity }
}

/// Iterator of [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    data: &'a [u8],
    at: u64,
    to: u64,
    config: Config,
    failed: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<ImageFrame<'a>, Corrupt>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let cap = self.config.capacity as u64;
        let align = self.config.align as u64;
        while self.at < self.to {
            let i = self.at;
            let off = (i % cap) as usize;
            let h = FrameHeader::from_bytes(self.data[off..off + 8].try_into().expect("8 bytes"));
            let bad = Corrupt::Frame { at: i, len: h.len, flags: h.flags };
            if !i.is_multiple_of(align) {
                self.failed = true;
                return Some(Err(bad));
            }
            if h.flags == FLAG_WRAP {
                let skip = cap - off as u64;
                if i + skip > self.to {
                    self.failed = true;
                    return Some(Err(bad));
                }
                self.at += skip;
                continue;
            }
            let frame = align_up(h.len as u64, align);
            if h.flags != 0
                || (h.len as usize) < FRAME_HEADER_LEN
                || h.payload_len() > self.config.max_payload()
                || frame > cap - off as u64
                || i + frame > self.to
            {
                self.failed = true;
                return Some(Err(bad));
            }
            self.at = i + frame;
            let payload = &self.data[off + FRAME_HEADER_LEN..off + h.len as usize];
            return Some(Ok(ImageFrame { index: i, msg_type: h.msg_type, payload }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::var;

    fn ring(cap: usize) -> Vec<u64> {
        vec![0u64; var::region_size(cap) / 8]
    }

    fn bytes(mem: &mut [u64]) -> &mut [u8] {
        let len = mem.len() * 8;
        // SAFETY: u8 has no alignment or validity requirements; `mem` outlives the slice.
        unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), len) }
    }

    #[test]
    fn header_checks_match_attach() {
        let mut mem = ring(256);
        let region = bytes(&mut mem);
        var::init(region, Config::new(256)).unwrap();
        let copy = region.to_vec();
        assert!(parse_header(&copy, copy.len()).is_ok());
        assert!(matches!(parse_header(&copy, copy.len() + 8), Err(AttachError::LengthMismatch { .. })));
        let mut bad = copy.clone();
        bad[0] ^= 1;
        assert!(matches!(parse_header(&bad, bad.len()), Err(AttachError::BadMagic(_))));
        let mut bad = copy.clone();
        bad[OFF_READ] = 8;
        assert!(matches!(parse_header(&bad, bad.len()), Err(AttachError::BadIndices { .. })));
        assert!(matches!(parse_header(&copy[..10], copy.len()), Err(AttachError::TooShort(_))));
    }

    #[test]
    fn frames_across_the_wrap_and_a_bad_header_stops_the_walk() {
        let mut mem = ring(256);
        let region = bytes(&mut mem);
        var::init(region, Config::new(256)).unwrap();
        let (mut p, mut c) = var::attach(region).unwrap();
        // Move the indices near the end so the frames wrap.
        for _ in 0..7 {
            p.alloc(24).unwrap().unwrap();
            p.push(1).unwrap();
            c.pop().unwrap();
        }
        let from = p.write_index();
        for (t, n) in [(2u16, 40usize), (3, 3)] {
            p.alloc(n).unwrap().unwrap().fill(t as u8);
            p.push(t).unwrap();
        }
        let to = p.write_index();
        assert!(to - from > 48 + 16, "a wrap marker was written");
        drop((p, c));
        let copy = region.to_vec();
        let data = &copy[HEADER_LEN..];
        let got: Vec<(u16, Vec<u8>)> = frames(data, from, to, Config::new(256))
            .map(|f| f.map(|f| (f.msg_type, f.payload.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [(2, vec![2; 40]), (3, vec![3; 3])]);
        let mut bad = copy.clone();
        let off = HEADER_LEN + (to - 16) as usize % 256;
        bad[off + 6] = 4; // the last frame's flags
        let errs: Vec<_> = frames(&bad[HEADER_LEN..], from, to, Config::new(256)).collect();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].is_ok() && errs[1].is_err());
    }
}
