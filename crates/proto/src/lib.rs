//! # tcpshm-proto
//!
//! The tcpshm wire protocol with no I/O (sans-IO): bytes in, decisions out.
//!
//! * [`frame`]: the 24-byte frame header (byte layout in its docs), message types.
//! * [`encode`]: control frames (heartbeat, ack, login, close) into a caller's buffer.
//! * [`decode`](mod@decode): the decoder of untrusted bytes: never panics, never reads out of
//!   bounds, never loops without progress, and names the reason for every refusal.
//! * [`login`]: login request and reply, with a reason code for every refusal.
//! * [`close`]: the orderly close frame (reason code and text).
//! * [`Name`]: endpoint names, validated in one place.
//! * [`session`]: sequence/ack bookkeeping as a pure state type.
//! * [`Transport`]: the connection contract every medium implements; the `testkit`
//!   feature holds its conformance suite.
//!
//! # The protocol in one page
//!
//! A connection is a byte stream (TCP, a Unix socket, an in-memory pipe) carrying
//! [frames](frame): a 24-byte header (length, type, flags, `seq`, `ack`), a payload,
//! zero padding to 8 bytes. Shared memory carries the same frames in rings, with the
//! TCP connection kept for login and liveness.
//!
//! 1. **Login.** The client sends a `LOGIN` frame ([`login::LoginRequest`]): magic,
//!    version, its name and the server it last logged in to, the transport it wants,
//!    how many server messages it consumed and its send-queue range. The server
//!    checks it, asks its handler, and answers `LOGIN_REPLY` ([`login::LoginReply`])
//!    with a status (a reason code for every refusal) and its own numbers. Both
//!    sides check that the numbers fit ([`session::Session::after_login`]: a
//!    mismatch says which side lost state) and drop the messages they received but
//!    did not pop — the peer resends them.
//! 2. **Messages.** Each side writes its queued user frames from the peer's consumed
//!    count on, in order; `seq` numbers them `0, 1, 2, …` for the life of the session
//!    (across reconnects). A receiver accepts only the next seq ([`ProtocolError::SeqGap`]).
//! 3. **Acks.** Every frame's `ack` says how many of the peer's messages this side
//!    popped; the peer drops them from its queue. An ack never moves back (an old
//!    one is ignored) and never beyond what was sent ([`ProtocolError::AckBeyondSent`]).
//!    When nothing else flows, a standalone `ACK` goes out after a number of pops or a
//!    share of the peer's queue, and a `HEARTBEAT` after an interval of silence.
//! 4. **Liveness.** A peer silent for longer than the timeout is gone
//!    ([`CloseReason::Timeout`]).
//! 5. **Close.** A side closing on purpose sends `CLOSE` ([`close::CloseFrame`]: code
//!    and text) and ends the stream; the peer reports
//!    [`CloseReason::RemoteRequested`]. Bad bytes or a broken rule close the
//!    connection with [`CloseReason::Protocol`]; nothing is ever guessed or skipped.
//!
//! Nothing here does I/O: a transport feeds bytes to [`decode()`], frames from
//! [`encode`] and its queue to the medium, and events to a [`session::Session`].
//! `testkit::loopback` (feature `testkit`) is a complete transport
//! built that way, and the conformance kit every transport runs.
#![forbid(unsafe_code)]

pub mod close;
pub mod decode;
pub mod encode;
mod error;
pub mod frame;
pub mod login;
mod name;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;

pub use decode::{decode, Control, Decoded, Frame, FrameKind};
pub use error::{EncodeError, FrameError, ProtocolError};
pub use name::{Name, NameError, MAX_NAME_LEN};
pub use transport::{CloseReason, Counters, Msg, Nanos, SendError, Transport};
