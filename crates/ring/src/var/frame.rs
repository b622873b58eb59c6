//! The frame format: every message in a var queue is one contiguous frame.
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 4 | `len` (u32 LE) | frame length **without** padding: 8 + payload length |
//! | 4 | 2 | `msg_type` (u16 LE) | the user's message type |
//! | 6 | 2 | `flags` (u16 LE) | bit 0: wrap marker (the rest of the ring is skipped); others 0 |
//! | 8 | len − 8 | payload | the message bytes |
//! | len | pad | zero | up to the next multiple of the frame alignment |
//!
//! The header is written as one little-endian `u64`, so a frame's header is a single
//! aligned 8-byte store and load. Higher layers (the tcpshm wire protocol) extend this
//! header with their own fields at the start of the payload, so that a frame in a
//! queue and a frame on the wire are the same bytes.
//!
//! ```
//! use tcpshm_ring::var::frame::{FrameHeader, FRAME_HEADER_LEN};
//!
//! let h = FrameHeader { len: 13, msg_type: 7, flags: 0 };
//! let bytes = h.to_bytes();
//! assert_eq!(FrameHeader::from_bytes(bytes), h);
//! assert_eq!(h.payload_len(), 13 - FRAME_HEADER_LEN);
//! ```

/// Size of the frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 8;

/// `flags` bit of a wrap marker: the frame is not a message; the reader skips to the
/// start of the ring.
pub const FLAG_WRAP: u16 = 1;

/// The 8-byte header at the start of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame length without padding (header + payload).
    pub len: u32,
    /// Message type.
    pub msg_type: u16,
    /// Flags ([`FLAG_WRAP`]; other bits reserved, zero).
    pub flags: u16,
}

impl FrameHeader {
    /// The header as one little-endian `u64` (how it is stored).
    ///
    /// ```
    /// # use tcpshm_ring::var::frame::FrameHeader;
    /// let h = FrameHeader { len: 8, msg_type: 1, flags: 0 };
    /// assert_eq!(FrameHeader::from_word(h.to_word()), h);
    /// ```
    #[inline(always)]
    pub const fn to_word(self) -> u64 {
        (self.len as u64) | ((self.msg_type as u64) << 32) | ((self.flags as u64) << 48)
    }

    /// The header from its stored `u64` (host value of the little-endian word).
    #[inline(always)]
    pub const fn from_word(w: u64) -> FrameHeader {
        FrameHeader { len: w as u32, msg_type: (w >> 32) as u16, flags: (w >> 48) as u16 }
    }

    /// The header's 8 bytes.
    #[inline(always)]
    pub const fn to_bytes(self) -> [u8; 8] {
        self.to_word().to_le_bytes()
    }

    /// The header from its 8 bytes.
    #[inline(always)]
    pub const fn from_bytes(b: [u8; 8]) -> FrameHeader {
        FrameHeader::from_word(u64::from_le_bytes(b))
    }

    /// Payload length (`len - 8`, saturating at 0 for an invalid `len`).
    #[inline(always)]
    pub const fn payload_len(self) -> usize {
        (self.len as usize).saturating_sub(FRAME_HEADER_LEN)
    }
}

/// `n` rounded up to a multiple of `align` (a power of two).
///
/// ```
/// assert_eq!(tcpshm_ring::var::frame::align_up(13, 8), 16);
/// assert_eq!(tcpshm_ring::var::frame::align_up(16, 8), 16);
/// ```
#[inline(always)]
pub const fn align_up(n: u64, align: u64) -> u64 {
    (n + align - 1) & !(align - 1)
}
