//! The encoder: frames written into a caller's buffer, no allocation.
//!
//! User messages normally never pass through here: a transport's send queue stores
//! them already framed (see [`frame`](crate::frame)). This writes the control frames
//! (heartbeat, ack, login, login reply, close) and, for tests and simple transports,
//! whole user frames. Every function returns the padded frame length it wrote;
//! whatever it accepts, [`decode`](crate::decode()) accepts and gives back unchanged.
//!
//! ```
//! use tcpshm_proto::close::{CloseCode, CloseFrame};
//! use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
//! use tcpshm_proto::{decode, encode, Control, Decoded};
//!
//! let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
//! let close = Control::Close(CloseFrame { code: CloseCode::REQUESTED, text: "bye" });
//! let n = encode::encode_control(&mut buf, &close, 10, 4).unwrap();
//! let Ok(Decoded::Frame { frame, consumed }) = decode(&buf[..n], 1024) else { panic!() };
//! assert_eq!((consumed, frame.seq(), frame.ack()), (n, 10, 4));
//! assert_eq!(frame.control(), Ok(Some(close)));
//! ```

use crate::decode::Control;
use crate::error::EncodeError;
use crate::frame::{frame_len, msg_type, Header, HEADER_LEN};

/// A heartbeat frame: `seq` is the sender's next seq on this connection, `ack` its
/// consumed count.
///
/// ```
/// let hb = tcpshm_proto::encode::heartbeat(5, 2);
/// assert_eq!(&hb[..4], &24u32.to_le_bytes());
/// ```
#[inline]
pub fn heartbeat(seq: u64, ack: u64) -> [u8; HEADER_LEN] {
    header_only(msg_type::HEARTBEAT, seq, ack)
}

/// A standalone ack frame (see [`heartbeat`] for the fields).
///
/// ```
/// let a = tcpshm_proto::encode::ack(5, 2);
/// assert_eq!(&a[16..24], &2u64.to_le_bytes());
/// ```
#[inline]
pub fn ack(seq: u64, ack: u64) -> [u8; HEADER_LEN] {
    header_only(msg_type::ACK, seq, ack)
}

fn header_only(msg_type: u16, seq: u64, ack: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    Header { len: HEADER_LEN as u32, msg_type, flags: 0, seq, ack }.write(&mut b);
    b
}

/// Writes a frame with a `payload_len`-byte payload that `fill` writes in place
/// (it gets exactly `payload_len` bytes and returns how many it wrote, which must be
/// `payload_len`), then the header and zero padding. Returns the padded length.
///
/// ```
/// let mut buf = [0u8; 32];
/// let n = tcpshm_proto::encode::encode_frame_with(&mut buf, 1, 0, 0, 3, |p| {
///     p.copy_from_slice(b"abc");
///     Ok(3)
/// })
/// .unwrap();
/// assert_eq!(n, 32);
/// ```
pub fn encode_frame_with(
    buf: &mut [u8],
    msg_type: u16,
    seq: u64,
    ack: u64,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    let len = HEADER_LEN.checked_add(payload_len).ok_or(EncodeError::FrameTooLong { len: usize::MAX })?;
    let len32 = u32::try_from(len).map_err(|_| EncodeError::FrameTooLong { len })?;
    let padded = frame_len(payload_len);
    let have = buf.len();
    let out = buf.get_mut(..padded).ok_or(EncodeError::BufferTooSmall { need: padded, have })?;
    let (head, rest) = out.split_at_mut(HEADER_LEN);
    let (payload, padding) = rest.split_at_mut(payload_len);
    let wrote = fill(payload)?;
    debug_assert_eq!(wrote, payload_len, "the payload filler wrote another length than it announced");
    padding.fill(0);
    let head: &mut [u8; HEADER_LEN] =
        head.try_into().map_err(|_| EncodeError::BufferTooSmall { need: padded, have })?;
    Header { len: len32, msg_type, flags: 0, seq, ack }.write(head);
    Ok(padded)
}

/// Writes a whole frame with `payload` (any message type; a transport checks user
/// types before it gets here). Returns the padded length.
///
/// ```
/// let mut buf = [0xAAu8; 40];
/// let n = tcpshm_proto::encode::encode_frame(&mut buf, 7, 1, 0, b"hello").unwrap();
/// assert_eq!(n, 32);
/// assert_eq!(&buf[29..32], &[0, 0, 0]); // padding zeroed
/// ```
pub fn encode_frame(buf: &mut [u8], msg_type: u16, seq: u64, ack: u64, payload: &[u8]) -> Result<usize, EncodeError> {
    encode_frame_with(buf, msg_type, seq, ack, payload.len(), |p| {
        p.copy_from_slice(payload);
        Ok(payload.len())
    })
}

/// Writes the frame for a control message with header `seq` (the sender's next seq)
/// and `ack` (its consumed count). A buffer of
/// [`MAX_CONTROL_FRAME_LEN`](crate::decode::MAX_CONTROL_FRAME_LEN) bytes always
/// suffices. Returns the padded length.
pub fn encode_control(buf: &mut [u8], control: &Control<'_>, seq: u64, ack: u64) -> Result<usize, EncodeError> {
    let t = control.msg_type();
    match control {
        Control::Heartbeat | Control::Ack => encode_frame(buf, t, seq, ack, &[]),
        // Bounds first, so an over-long field is reported as such, not as a small buffer.
        Control::Login(r) => {
            r.check()?;
            encode_frame_with(buf, t, seq, ack, r.encoded_len(), |p| r.encode(p))
        }
        Control::LoginReply(r) => {
            r.check()?;
            encode_frame_with(buf, t, seq, ack, r.encoded_len(), |p| r.encode(p))
        }
        Control::Close(c) => {
            c.check()?;
            encode_frame_with(buf, t, seq, ack, c.encoded_len(), |p| c.encode(p))
        }
    }
}
