//! Typed errors of the protocol: what is wrong with a frame, and what a peer did wrong.

use crate::frame::HEADER_LEN;

/// Why bytes from a peer are not a valid frame. The decoder returns this instead of
/// guessing; the connection is closed with it as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `len` is below the header size (a zero-length frame would never make progress).
    #[error("frame length {len} is below the {HEADER_LEN}-byte header")]
    TooShort {
        /// The `len` field.
        len: u32,
    },
    /// `len` is above the configured maximum frame length.
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLong {
        /// The `len` field.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// Reserved flag bits are set.
    #[error("frame flags {0:#06x} are reserved and must be 0")]
    BadFlags(u16),
    /// A padding byte is not zero.
    #[error("frame padding is not zero")]
    BadPadding,
    /// A type in the reserved control range that this version does not define.
    #[error("message type {0:#06x} is reserved and not a known control type")]
    UnknownControl(u16),
    /// A control frame whose payload has the wrong size for its type.
    #[error("control frame {msg_type:#06x} has a {len}-byte payload, which its type does not allow")]
    ControlPayload {
        /// The control type.
        msg_type: u16,
        /// Payload length.
        len: usize,
    },
}

/// A peer broke the protocol (after decoding). Closes the connection with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer acknowledged messages we never sent.
    #[error("peer acknowledged {ack} messages but only {sent} were sent")]
    AckBeyondSent {
        /// The ack received.
        ack: u64,
        /// Messages sent so far.
        sent: u64,
    },
    /// A user message arrived out of sequence.
    #[error("expected message seq {expected}, received seq {got}")]
    SeqGap {
        /// The next seq we expected.
        expected: u64,
        /// The seq received.
        got: u64,
    },
    /// A control frame that is not allowed at this point (e.g. a second login).
    #[error("unexpected control frame {msg_type:#06x} {context}")]
    UnexpectedControl {
        /// The control type.
        msg_type: u16,
        /// Where it arrived, e.g. "after login".
        context: &'static str,
    },
    /// A user message arrived before the login completed.
    #[error("user message of type {msg_type:#06x} before the login completed")]
    MessageBeforeLogin {
        /// Its message type.
        msg_type: u16,
    },
    /// A login request or reply could not be parsed.
    #[error("malformed login: {0}")]
    Login(#[from] crate::login::LoginParseError),
    /// A close frame could not be parsed.
    #[error("malformed close frame: {0}")]
    Close(#[from] crate::close::CloseParseError),
    /// The two sides' sequence numbers do not fit together at login: one side lost
    /// state (which, and what, is in the detail).
    #[error("sequence mismatch at login: {0}")]
    SeqMismatch(#[from] crate::session::SeqMismatch),
}

/// Why a frame (or a login/close payload) could not be written. Nothing is written
/// partially that could be mistaken for a frame: on error the buffer's contents are
/// unspecified and must not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The caller's buffer is too small.
    #[error("buffer of {have} bytes is too small: {need} needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A bounded field (credential, text) is longer than its limit.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame would be longer than the `u32` length field can say.
    #[error("frame of {len} bytes does not fit the u32 length field")]
    FrameTooLong {
        /// Header + payload length.
        len: usize,
    },
}
