//! The frame: the unit on the wire and in the persistent send queue.
//!
//! Every frame starts with a 24-byte little-endian header and is padded with zero
//! bytes to a multiple of 8:
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 4 | `len` (u32) | header + payload length, without padding (>= 24) |
//! | 4 | 2 | `msg_type` (u16) | user types `0..=0xFEFF`; control types `0xFF00..` ([`msg_type`]) |
//! | 6 | 2 | `flags` (u16) | reserved, 0 |
//! | 8 | 8 | `seq` (u64) | user message: its sequence number (0 for the first message of a session); control frame: the seq of the next user message the sender will write on this connection (informational) |
//! | 16 | 8 | `ack` (u64) | how many of the peer's messages this side has consumed (popped) |
//! | 24 | len − 24 | payload | |
//! | len | 0..8 | padding | zero bytes up to a multiple of 8 |
//!
//! The first 8 bytes are exactly a [`tcpshm_ring::var::frame::FrameHeader`] and the
//! padding is the ring's 8-byte frame alignment: a frame stored in a `tcpshm-ring` var
//! queue with payload `seq ‖ ack ‖ message` is byte for byte the frame on the wire, so
//! a transport writes runs of queued frames straight from the queue to the socket.
//!
//! ```
//! use tcpshm_proto::frame::{Header, HEADER_LEN};
//!
//! let h = Header { len: HEADER_LEN as u32 + 5, msg_type: 1, flags: 0, seq: 9, ack: 4 };
//! let mut buf = [0u8; HEADER_LEN];
//! h.write(&mut buf);
//! assert_eq!(Header::read(&buf), h);
//! assert_eq!(h.frame_len(), 32); // 29 rounded up to 8
//! ```

use tcpshm_ring::var::frame::{align_up, FrameHeader};

/// Bytes of the frame header.
pub const HEADER_LEN: usize = 24;
/// Frames are padded to a multiple of this.
pub const FRAME_ALIGN: usize = 8;
/// Offset of `seq` in the header (and of the ring payload's first field).
pub const SEQ_OFFSET: usize = 8;
/// Offset of `ack` in the header.
pub const ACK_OFFSET: usize = 16;
/// Bytes of the header that follow the ring's own 8-byte frame header (`seq`, `ack`):
/// a message of `n` bytes is a ring payload of `n + RING_PREFIX_LEN` bytes.
pub const RING_PREFIX_LEN: usize = HEADER_LEN - tcpshm_ring::var::frame::FRAME_HEADER_LEN;

/// Message types: user types and the reserved control range.
pub mod msg_type {
    /// Largest message type a user may push.
    pub const MAX_USER: u16 = 0xFEFF;
    /// First reserved (control) type.
    pub const FIRST_CONTROL: u16 = 0xFF00;
    /// Heartbeat: no payload; carries `ack` and the sender's next `seq`.
    pub const HEARTBEAT: u16 = 0xFF00;
    /// Login request (client to server), payload: [`LoginRequest`](crate::login::LoginRequest).
    pub const LOGIN: u16 = 0xFF01;
    /// Login reply (server to client), payload: [`LoginReply`](crate::login::LoginReply).
    pub const LOGIN_REPLY: u16 = 0xFF02;
    /// Standalone acknowledgement: no payload; carries `ack`.
    pub const ACK: u16 = 0xFF03;
    /// Orderly close with a reason, payload: [`CloseFrame`](crate::close::CloseFrame).
    pub const CLOSE: u16 = 0xFF04;

    /// Whether `t` is a user message type.
    ///
    /// ```
    /// use tcpshm_proto::frame::msg_type;
    /// assert!(msg_type::is_user(0) && msg_type::is_user(0xFEFF));
    /// assert!(!msg_type::is_user(msg_type::HEARTBEAT));
    /// ```
    pub const fn is_user(t: u16) -> bool {
        t <= MAX_USER
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Header + payload length, without padding.
    pub len: u32,
    /// Message type.
    pub msg_type: u16,
    /// Reserved, 0.
    pub flags: u16,
    /// Sequence number (user message) or the sender's next sequence number (control).
    pub seq: u64,
    /// The sender's consumed count of our messages.
    pub ack: u64,
}

impl Header {
    /// Reads a header from its 24 bytes (no validation: see [`crate::decode()`]).
    ///
    /// ```
    /// let h = tcpshm_proto::frame::Header::read(&[0u8; 24]);
    /// assert_eq!(h.len, 0);
    /// ```
    #[inline(always)]
    pub fn read(b: &[u8; HEADER_LEN]) -> Header {
        let ring = FrameHeader::from_bytes(b[0..8].try_into().expect("8 bytes"));
        Header {
            len: ring.len,
            msg_type: ring.msg_type,
            flags: ring.flags,
            seq: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            ack: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
        }
    }

    /// Writes the header's 24 bytes.
    ///
    /// ```
    /// # use tcpshm_proto::frame::Header;
    /// let mut b = [0xffu8; 24];
    /// Header { len: 24, ..Header::default() }.write(&mut b);
    /// assert_eq!(&b[..4], &24u32.to_le_bytes());
    /// ```
    #[inline(always)]
    pub fn write(&self, b: &mut [u8; HEADER_LEN]) {
        b[0..8].copy_from_slice(&FrameHeader { len: self.len, msg_type: self.msg_type, flags: self.flags }.to_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.ack.to_le_bytes());
    }

    /// Payload length (`len − 24`, saturating).
    #[inline(always)]
    pub fn payload_len(&self) -> usize {
        (self.len as usize).saturating_sub(HEADER_LEN)
    }

    /// Frame length with padding.
    #[inline(always)]
    pub fn frame_len(&self) -> usize {
        align_up(self.len as u64, FRAME_ALIGN as u64) as usize
    }
}

/// Padded frame length of a frame with a `payload`-byte payload.
///
/// ```
/// assert_eq!(tcpshm_proto::frame::frame_len(0), 24);
/// assert_eq!(tcpshm_proto::frame::frame_len(1), 32);
/// ```
#[inline(always)]
pub const fn frame_len(payload: usize) -> usize {
    align_up((HEADER_LEN + payload) as u64, FRAME_ALIGN as u64) as usize
}

/// Smallest queue (ring) size, a power of two, that carries messages of up to
/// `max_message` bytes over either transport: a `tcpshm-ring` queue takes frames up to
/// half its size, and a frame is the message plus this header (TCP) or the ring's own
/// 8-byte header (shared memory), padded. Used to validate configurations.
///
/// ```
/// assert_eq!(tcpshm_proto::frame::min_queue_bytes(1000), 4096);
/// assert_eq!(tcpshm_proto::frame::min_queue_bytes(1 << 20), 4 << 20);
/// ```
pub const fn min_queue_bytes(max_message: usize) -> usize {
    let frame = (max_message + HEADER_LEN + FRAME_ALIGN) * 2;
    let q = frame.next_power_of_two();
    if q < 256 {
        256
    } else {
        q
    }
}
