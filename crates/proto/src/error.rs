//! Typed errors of the protocol: what is wrong with a frame, and what a peer did wrong.

use crate::frame::HEADER_LEN;

/// Why bytes from a peer are not a valid frame. The decoder returns this instead of
/// guessing; the connection is closed with it as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// A message in a shared-memory ring broke the sequence (a message is missing).
    #[error("expected message seq {expected} in the ring, found seq {got}")]
    RingGap {
        /// The next seq expected.
        expected: u64,
        /// The seq found.
        got: u64,
    },
    /// A frame longer than this side accepts (the limit it told at login).
    #[error("message of {len} bytes exceeds this side's limit of {max}")]
    OverLimit {
        /// The message's payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a frame (or a login/close payload) could not be written. Nothing is written
/// partially that could be mistaken for a frame: on error the buffer's contents are
/// unspecified and must not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

/// An error of a layer below the protocol (the persistent store, a shared-memory
/// file) carried whole inside a protocol-level value ([`CloseReason`](crate::CloseReason),
/// [`SendError`](crate::SendError)): its `Display` is the reason, and
/// [`downcast_ref`](Self::downcast_ref) gives back the typed error. Cheap to clone
/// (shared). Two faults are equal when they read the same.
///
/// ```
/// use tcpshm_proto::Fault;
/// let f = Fault::new(std::io::Error::from_raw_os_error(28));
/// assert!(f.to_string().contains("No space left"));
/// assert_eq!(f.downcast_ref::<std::io::Error>().unwrap().raw_os_error(), Some(28));
/// assert_eq!(f.clone(), f);
/// ```
#[derive(Clone)]
pub struct Fault(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Fault {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Fault {
        Fault(std::sync::Arc::new(error))
    }

    /// A fault with only a message (for invariants of this code that do not hold).
    ///
    /// ```
    /// assert_eq!(tcpshm_proto::Fault::msg("queue ends early").to_string(), "queue ends early");
    /// ```
    pub fn msg(text: impl Into<String>) -> Fault {
        #[derive(Debug)]
        struct Text(String);
        impl core::fmt::Display for Text {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Text {}
        Fault::new(Text(text.into()))
    }

    /// The wrapped error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl core::fmt::Debug for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&*self.0, f)
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Fault {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for Fault {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Fault {}
