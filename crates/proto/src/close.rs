//! The orderly close: the payload of a `CLOSE` frame, a reason code and a short text.
//!
//! A side that closes a connection on purpose (its user asked, or the peer broke the
//! protocol, or timed out) sends a `CLOSE` frame before dropping the link, so the
//! peer reports [`CloseReason::RemoteRequested`] with the reason instead of a bare
//! "connection closed". The persistent state is kept: a close is not a reset.
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 2 | code (u16 LE) | [`CloseCode`]; unknown codes are accepted (a newer peer's) |
//! | 2 | 0..=256 | text | UTF-8 detail, the rest of the payload |
//!
//! ```
//! use tcpshm_proto::close::{CloseCode, CloseFrame};
//!
//! let f = CloseFrame { code: CloseCode::REQUESTED, text: "end of day" };
//! let mut buf = [0u8; tcpshm_proto::close::MAX_PAYLOAD_LEN];
//! let n = f.encode(&mut buf).unwrap();
//! assert_eq!(CloseFrame::parse(&buf[..n]), Ok(f));
//! ```

use crate::error::EncodeError;
use crate::transport::CloseReason;
use core::fmt;

/// Longest text in a close frame.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest close payload (code + text).
pub const MAX_PAYLOAD_LEN: usize = 2 + MAX_TEXT_LEN;

/// Why a side closed the connection. A `u16` on the wire; codes this version does not
/// know are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// The user closed the connection.
    pub const REQUESTED: CloseCode = CloseCode(0);
    /// The receiver broke the protocol (the text says how).
    pub const PROTOCOL: CloseCode = CloseCode(1);
    /// The receiver was silent for longer than the timeout.
    pub const TIMEOUT: CloseCode = CloseCode(2);
    /// A newer login of the same client replaced this connection.
    pub const REPLACED: CloseCode = CloseCode(3);
    /// The sender's persistent store failed.
    pub const STORAGE: CloseCode = CloseCode(4);
    /// The sender found shared state corrupt.
    pub const CORRUPT: CloseCode = CloseCode(5);
    /// A message exceeds what the other side accepts.
    pub const LIMIT: CloseCode = CloseCode(6);
    /// Any other reason (the text says which).
    pub const OTHER: CloseCode = CloseCode(0xFFFF);

    /// The code a side sends when it closes for `reason`.
    ///
    /// ```
    /// use tcpshm_proto::close::CloseCode;
    /// use tcpshm_proto::CloseReason;
    /// assert_eq!(CloseCode::for_reason(&CloseReason::Requested), CloseCode::REQUESTED);
    /// assert_eq!(CloseCode::for_reason(&CloseReason::Timeout { silent_ns: 1 }), CloseCode::TIMEOUT);
    /// ```
    pub fn for_reason(reason: &CloseReason) -> CloseCode {
        match reason {
            CloseReason::Requested => CloseCode::REQUESTED,
            CloseReason::Protocol(_) => CloseCode::PROTOCOL,
            CloseReason::Timeout { .. } => CloseCode::TIMEOUT,
            CloseReason::Replaced => CloseCode::REPLACED,
            CloseReason::Storage(_) => CloseCode::STORAGE,
            CloseReason::LimitExceeded { .. } => CloseCode::LIMIT,
            CloseReason::Corrupt(_) => CloseCode::CORRUPT,
            _ => CloseCode::OTHER,
        }
    }

    /// A short name of a known code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            CloseCode::REQUESTED => "requested",
            CloseCode::PROTOCOL => "protocol error",
            CloseCode::TIMEOUT => "timeout",
            CloseCode::REPLACED => "replaced",
            CloseCode::STORAGE => "storage error",
            CloseCode::CORRUPT => "corrupt state",
            CloseCode::LIMIT => "limit exceeded",
            CloseCode::OTHER => "other",
            _ => return None,
        })
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "code {}", self.0),
        }
    }
}

/// Why a close payload could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseParseError {
    /// Shorter than the 2-byte code.
    #[error("close payload of {0} bytes has no room for its 2-byte code")]
    Truncated(usize),
    /// The text is longer than [`MAX_TEXT_LEN`].
    #[error("close text of {0} bytes exceeds the limit of {MAX_TEXT_LEN}")]
    TextTooLong(usize),
    /// The text is not UTF-8.
    #[error("close text is not UTF-8 (valid up to byte {valid_up_to})")]
    TextNotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
}

/// An orderly close: a reason code and a short text, borrowed from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// Why.
    pub code: CloseCode,
    /// Detail, at most [`MAX_TEXT_LEN`] bytes of UTF-8.
    pub text: &'a str,
}

impl<'a> CloseFrame<'a> {
    /// The close frame for `reason`, its text formatted (and truncated to
    /// [`MAX_TEXT_LEN`]) into `text` without allocating.
    ///
    /// ```
    /// use tcpshm_proto::close::{CloseCode, CloseFrame, TextBuf};
    /// use tcpshm_proto::CloseReason;
    /// let mut t = TextBuf::new();
    /// let f = CloseFrame::for_reason(&CloseReason::Timeout { silent_ns: 5 }, &mut t);
    /// assert_eq!(f.code, CloseCode::TIMEOUT);
    /// assert!(f.text.contains("5 ns"));
    /// ```
    pub fn for_reason(reason: &CloseReason, text: &'a mut TextBuf) -> CloseFrame<'a> {
        text.clear();
        // TextBuf never fails a write: it truncates.
        let _ = fmt::write(text, format_args!("{reason}"));
        CloseFrame { code: CloseCode::for_reason(reason), text: text.as_str() }
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        2 + self.text.len()
    }

    /// Checks the bounded field (the text's length).
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.text.len() > MAX_TEXT_LEN {
            return Err(EncodeError::FieldTooLong { field: "close text", len: self.text.len(), max: MAX_TEXT_LEN });
        }
        Ok(())
    }

    /// Writes the payload into `buf`; returns its length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let n = self.encoded_len();
        let have = buf.len();
        let out = buf.get_mut(..n).ok_or(EncodeError::BufferTooSmall { need: n, have })?;
        out[..2].copy_from_slice(&self.code.0.to_le_bytes());
        out[2..].copy_from_slice(self.text.as_bytes());
        Ok(n)
    }

    /// Parses a close payload.
    pub fn parse(b: &'a [u8]) -> Result<CloseFrame<'a>, CloseParseError> {
        let (code, text) = b.split_first_chunk::<2>().ok_or(CloseParseError::Truncated(b.len()))?;
        if text.len() > MAX_TEXT_LEN {
            return Err(CloseParseError::TextTooLong(text.len()));
        }
        let text =
            core::str::from_utf8(text).map_err(|e| CloseParseError::TextNotUtf8 { valid_up_to: e.valid_up_to() })?;
        Ok(CloseFrame { code: CloseCode(u16::from_le_bytes(*code)), text })
    }

    /// The reason the receiving side reports: [`CloseReason::RemoteRequested`] with
    /// the code's name and the text (the name once, if the text starts with it;
    /// allocates — a close is not the hot path).
    ///
    /// ```
    /// use tcpshm_proto::close::{CloseCode, CloseFrame};
    /// use tcpshm_proto::CloseReason;
    /// let f = CloseFrame { code: CloseCode::REQUESTED, text: "bye" };
    /// assert_eq!(f.to_reason(), CloseReason::RemoteRequested { code: CloseCode::REQUESTED, text: "bye".into() });
    /// assert_eq!(f.to_reason().to_string(), "the peer closed the connection: requested: bye");
    /// ```
    pub fn to_reason(&self) -> CloseReason {
        CloseReason::RemoteRequested { code: self.code, text: self.text.to_owned() }
    }
}

/// A fixed buffer of [`MAX_TEXT_LEN`] bytes that `write!` formats into, truncating
/// at a character boundary instead of failing or allocating.
///
/// ```
/// use core::fmt::Write;
/// let mut t = tcpshm_proto::close::TextBuf::new();
/// write!(t, "{}", "x".repeat(300)).unwrap();
/// assert_eq!(t.as_str().len(), 256);
/// ```
#[derive(Clone)]
pub struct TextBuf {
    bytes: [u8; MAX_TEXT_LEN],
    len: usize,
    /// Something did not fit: later writes are dropped too, so the text is always a
    /// prefix of what was written.
    full: bool,
}

impl TextBuf {
    /// An empty buffer.
    pub const fn new() -> TextBuf {
        TextBuf { bytes: [0; MAX_TEXT_LEN], len: 0, full: false }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in (see `write_str`).
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
        self.full = false;
    }
}

impl Default for TextBuf {
    fn default() -> Self {
        TextBuf::new()
    }
}

impl fmt::Debug for TextBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.full {
            return Ok(());
        }
        let fits = crate::login::truncate_utf8(s, MAX_TEXT_LEN - self.len);
        self.bytes[self.len..self.len + fits.len()].copy_from_slice(fits.as_bytes());
        self.len += fits.len();
        self.full = fits.len() < s.len();
        Ok(())
    }
}
