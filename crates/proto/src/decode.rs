//! The decoder of untrusted bytes: a buffer in, a frame (or "need more") out.
//!
//! [`decode`] looks at the start of a receive buffer and returns either
//! [`Decoded::Need`] (how many more bytes at least, always > 0) or one validated
//! [`Frame`] with the bytes it `consumed` (the padded frame length, always >= 24), or
//! a [`FrameError`] naming what is wrong. It never panics, never reads out of bounds,
//! never allocates, and cannot be made to loop without progress: a caller that
//! decodes in a loop either advances by `consumed > 0`, or waits for `n > 0` more
//! bytes, or closes the connection.
//!
//! Each field is checked as soon as its bytes are there, in header order, so a hostile
//! length or type is refused after 4 or 6 bytes, not after buffering a whole frame —
//! and a buffer gives the same error whatever the read boundaries were:
//!
//! | bytes present | checks |
//! |---:|---|
//! | 4 | `len < 24` → [`TooShort`](FrameError::TooShort); `len > max_frame_len` → [`TooLong`](FrameError::TooLong) |
//! | 6 | an undefined control type → [`UnknownControl`](FrameError::UnknownControl); a control payload too long for its type (heartbeat and ack: any payload) → [`ControlPayload`](FrameError::ControlPayload) |
//! | 8 | `flags != 0` → [`BadFlags`](FrameError::BadFlags) |
//! | padded length | a non-zero padding byte → [`BadPadding`](FrameError::BadPadding) |
//!
//! What a frame *means* (its seq in order, its ack plausible, a login at the right
//! moment) is the [`Session`](crate::session::Session)'s and the transport's business.
//!
//! ```
//! use tcpshm_proto::{decode, encode, Decoded, FrameKind};
//!
//! let mut wire = Vec::new();
//! wire.extend_from_slice(&encode::heartbeat(0, 0));
//! let mut buf = [0u8; 64];
//! let n = encode::encode_frame(&mut buf, 7, 0, 0, b"hello").unwrap();
//! wire.extend_from_slice(&buf[..n]);
//!
//! let mut at = 0;
//! let mut kinds = Vec::new();
//! while let Decoded::Frame { frame, consumed } = decode(&wire[at..], 1 << 20).unwrap() {
//!     kinds.push((frame.kind(), frame.payload().len()));
//!     at += consumed;
//! }
//! assert_eq!(kinds, [(FrameKind::Heartbeat, 0), (FrameKind::User, 5)]);
//! assert_eq!(decode(&wire[at..], 1 << 20), Ok(Decoded::Need(24)));
//! ```

use crate::close::{self, CloseFrame};
use crate::error::{FrameError, ProtocolError};
use crate::frame::{msg_type, Header, FRAME_ALIGN, HEADER_LEN};
use crate::login::{self, LoginReply, LoginRequest};
use tcpshm_ring::var::frame::align_up;

/// The largest control frame (a login request of maximal size), without padding.
pub const MAX_CONTROL_LEN: usize = HEADER_LEN + login::MAX_REQUEST_LEN;
/// A buffer of this many bytes holds any encoded control frame, padding included.
pub const MAX_CONTROL_FRAME_LEN: usize = crate::frame::frame_len(login::MAX_REQUEST_LEN);

/// The `max_frame_len` to give [`decode`] for a connection whose largest user
/// message is `max_payload` bytes: room for that message and for every control frame
/// (so a small message limit never refuses a login), saturating at `u32::MAX`.
///
/// ```
/// use tcpshm_proto::decode::{frame_limit, MAX_CONTROL_LEN};
/// assert_eq!(frame_limit(1 << 20), (1 << 20) + 24);
/// assert_eq!(frame_limit(8) as usize, MAX_CONTROL_LEN);
/// assert_eq!(frame_limit(usize::MAX), u32::MAX);
/// ```
pub fn frame_limit(max_payload: usize) -> u32 {
    let len = max_payload.saturating_add(HEADER_LEN).max(MAX_CONTROL_LEN);
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The result of [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer holds a partial frame: at least this many more bytes (> 0) are
    /// needed before it can be decoded.
    Need(usize),
    /// A whole, valid frame at the start of the buffer.
    Frame {
        /// The frame.
        frame: Frame<'a>,
        /// Bytes it occupies including padding (> 0): where the next frame starts.
        consumed: usize,
    },
}

/// What a frame is, by its message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A user message (`0..=0xFEFF`).
    User,
    /// [`msg_type::HEARTBEAT`].
    Heartbeat,
    /// [`msg_type::LOGIN`].
    Login,
    /// [`msg_type::LOGIN_REPLY`].
    LoginReply,
    /// [`msg_type::ACK`].
    Ack,
    /// [`msg_type::CLOSE`].
    Close,
}

impl FrameKind {
    /// The kind of message type `t`; `None` for an undefined control type.
    ///
    /// ```
    /// use tcpshm_proto::FrameKind;
    /// assert_eq!(FrameKind::of(3), Some(FrameKind::User));
    /// assert_eq!(FrameKind::of(0xFF03), Some(FrameKind::Ack));
    /// assert_eq!(FrameKind::of(0xFFFF), None);
    /// ```
    pub const fn of(t: u16) -> Option<FrameKind> {
        Some(match t {
            0..=msg_type::MAX_USER => FrameKind::User,
            msg_type::HEARTBEAT => FrameKind::Heartbeat,
            msg_type::LOGIN => FrameKind::Login,
            msg_type::LOGIN_REPLY => FrameKind::LoginReply,
            msg_type::ACK => FrameKind::Ack,
            msg_type::CLOSE => FrameKind::Close,
            _ => return None,
        })
    }

    /// The largest payload a frame of this kind may carry (`None`: only the
    /// connection's `max_frame_len` bounds it).
    pub const fn max_payload(self) -> Option<usize> {
        match self {
            FrameKind::User => None,
            FrameKind::Heartbeat | FrameKind::Ack => Some(0),
            FrameKind::Login => Some(login::MAX_REQUEST_LEN),
            FrameKind::LoginReply => Some(login::MAX_REPLY_LEN),
            FrameKind::Close => Some(close::MAX_PAYLOAD_LEN),
        }
    }
}

/// A validated frame borrowed from the receive buffer. Only [`decode`] makes one, so
/// its type is always defined and its payload size allowed for that type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    header: Header,
    kind: FrameKind,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The header.
    #[inline(always)]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload (`len - 24` bytes, without padding).
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The kind of frame.
    #[inline(always)]
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The message type.
    #[inline(always)]
    pub fn msg_type(&self) -> u16 {
        self.header.msg_type
    }

    /// The header's `seq`: a user message's seq, or a control frame sender's next seq.
    #[inline(always)]
    pub fn seq(&self) -> u64 {
        self.header.seq
    }

    /// The header's `ack`: how many of our messages the sender consumed.
    #[inline(always)]
    pub fn ack(&self) -> u64 {
        self.header.ack
    }

    /// Whether this is a user message.
    #[inline(always)]
    pub fn is_user(&self) -> bool {
        self.kind == FrameKind::User
    }

    /// The control message this frame carries, its payload parsed; `None` for a user
    /// message.
    ///
    /// ```
    /// use tcpshm_proto::{decode, encode, Control, Decoded};
    /// let hb = encode::heartbeat(3, 1);
    /// let Ok(Decoded::Frame { frame, .. }) = decode(&hb, 1024) else { panic!() };
    /// assert_eq!(frame.control(), Ok(Some(Control::Heartbeat)));
    /// ```
    pub fn control(&self) -> Result<Option<Control<'a>>, ProtocolError> {
        Ok(Some(match self.kind {
            FrameKind::User => return Ok(None),
            FrameKind::Heartbeat => Control::Heartbeat,
            FrameKind::Ack => Control::Ack,
            FrameKind::Login => Control::Login(LoginRequest::parse(self.payload)?),
            FrameKind::LoginReply => Control::LoginReply(LoginReply::parse(self.payload)?),
            FrameKind::Close => Control::Close(CloseFrame::parse(self.payload)?),
        }))
    }
}

/// A control message: what a control frame carries besides its header's `seq` and
/// `ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// Liveness (and the ack) when no other traffic flows.
    Heartbeat,
    /// A standalone ack.
    Ack,
    /// A login request.
    Login(LoginRequest<'a>),
    /// A login reply.
    LoginReply(LoginReply<'a>),
    /// An orderly close.
    Close(CloseFrame<'a>),
}

impl Control<'_> {
    /// The message type of the frame that carries it.
    pub fn msg_type(&self) -> u16 {
        match self {
            Control::Heartbeat => msg_type::HEARTBEAT,
            Control::Ack => msg_type::ACK,
            Control::Login(_) => msg_type::LOGIN,
            Control::LoginReply(_) => msg_type::LOGIN_REPLY,
            Control::Close(_) => msg_type::CLOSE,
        }
    }
}

/// Decodes the frame at the start of `buf`, refusing a length above
/// `max_frame_len` (header + payload, without padding; see [`frame_limit`]). See the
/// [module docs](self) for the checks and their order.
///
/// ```
/// use tcpshm_proto::{decode, Decoded, FrameError};
///
/// assert_eq!(decode(&[], 1024), Ok(Decoded::Need(24)));
/// assert_eq!(decode(&[0, 0, 0, 0], 1024), Err(FrameError::TooShort { len: 0 }));
/// assert_eq!(decode(&2000u32.to_le_bytes(), 1024), Err(FrameError::TooLong { len: 2000, max: 1024 }));
/// assert_eq!(decode(&29u32.to_le_bytes(), 1024), Ok(Decoded::Need(28)));
/// ```
#[inline]
pub fn decode(buf: &[u8], max_frame_len: u32) -> Result<Decoded<'_>, FrameError> {
    let have = buf.len();
    let Some(len_bytes) = buf.first_chunk::<4>() else {
        // Every frame is at least a header long.
        return Ok(Decoded::Need(HEADER_LEN - have));
    };
    let len = u32::from_le_bytes(*len_bytes);
    if (len as usize) < HEADER_LEN {
        return Err(FrameError::TooShort { len });
    }
    if len > max_frame_len {
        return Err(FrameError::TooLong { len, max: max_frame_len });
    }
    let payload_len = len as usize - HEADER_LEN;
    let mut kind = FrameKind::User;
    if let Some(t) = buf.get(4..6) {
        let t = u16::from_le_bytes([t[0], t[1]]);
        kind = FrameKind::of(t).ok_or(FrameError::UnknownControl(t))?;
        if kind.max_payload().is_some_and(|max| payload_len > max) {
            return Err(FrameError::ControlPayload { msg_type: t, len: payload_len });
        }
    }
    if let Some(f) = buf.get(6..8) {
        let flags = u16::from_le_bytes([f[0], f[1]]);
        if flags != 0 {
            return Err(FrameError::BadFlags(flags));
        }
    }
    // In u64: a `len` near u32::MAX padded does not fit a 32-bit usize.
    let padded = align_up(len as u64, FRAME_ALIGN as u64);
    if (have as u64) < padded {
        let need = padded - have as u64;
        return Ok(Decoded::Need(usize::try_from(need).unwrap_or(usize::MAX)));
    }
    // `have >= padded >= len >= 24`: every index below is in bounds.
    let padded = padded as usize;
    let (Some(head), Some(payload), Some(padding)) =
        (buf.first_chunk::<HEADER_LEN>(), buf.get(HEADER_LEN..len as usize), buf.get(len as usize..padded))
    else {
        return Ok(Decoded::Need(padded.saturating_sub(have).max(1)));
    };
    if padding.iter().any(|&b| b != 0) {
        return Err(FrameError::BadPadding);
    }
    Ok(Decoded::Frame { frame: Frame { header: Header::read(head), kind, payload }, consumed: padded })
}
