//! # tcpshm-proto
//!
//! The tcpshm protocol with no I/O (sans-IO): bytes in, decisions out. Every rule of
//! a session lives here once, for every medium (a byte stream such as TCP or a Unix
//! socket, or shared-memory rings with a control stream).
//!
//! * [`frame`]: the 24-byte frame header (byte layout in its docs), message types.
//! * [`encode`]: control frames (heartbeat, ack, login, close) into a caller's buffer.
//! * [`decode`](mod@decode): the decoder of untrusted bytes: never panics, never reads out of
//!   bounds, never loops without progress, and names the reason for every refusal.
//! * [`login`]: login request and reply (byte layouts), with a reason code for every
//!   refusal.
//! * [`handshake`]: the login decisions of both sides — transports, the epoch rule,
//!   the limits exchange, the sequence check — as pure functions.
//! * [`session`]: the engine of one side of a session: sequence and ack numbers, the
//!   detection of lost state on either side, liveness (heartbeat, timeout, next
//!   deadline), link state and close reasons, limits, counters.
//! * [`close`]: the orderly close frame (reason code and text).
//! * [`Name`]: endpoint names, validated in one place.
//! * [`Transport`]: the connection API every medium offers; the `testkit` feature
//!   holds the conformance kit that every transport runs, session rules included.
//!
//! # The protocol in one page
//!
//! A connection is a byte stream (TCP, a Unix socket, an in-memory pipe) carrying
//! [frames](frame): a 24-byte header (length, type, flags, `seq`, `ack`), a payload,
//! zero padding to 8. Shared memory carries the same frames in rings, with the byte
//! stream kept for the login and liveness.
//!
//! 1. **Login.** The client sends a `LOGIN` frame ([`login::LoginRequest`]): magic,
//!    version, its name and the server it last logged in to, the transport it wants,
//!    its session numbers (how many server messages it consumed and holds, its
//!    send-queue range) and its limits (largest accepted message, queue capacity).
//!    The server checks it ([`handshake::server_verdict`]), asks its handler, and
//!    answers `LOGIN_REPLY` ([`login::LoginReply`]) with a status (a reason code for
//!    every refusal) and its own numbers and limits. Both sides check that the
//!    numbers fit ([`session::SeqState::after_login`]: a mismatch says which side lost
//!    state) and drop the messages they received from a stream but did not pop — the
//!    peer resends them.
//! 2. **Messages.** Each side writes its queued user frames from the peer's consumed
//!    count on, in order; `seq` numbers them `0, 1, 2, …` for the life of the session
//!    (across reconnects, restarts and changes of medium). A stream receiver accepts
//!    only the next seq ([`ProtocolError::SeqGap`]); a ring receiver skips copies of
//!    messages it already consumed and refuses a gap.
//! 3. **Acks.** Every frame's `ack` says how many of the peer's messages this side
//!    popped; the peer drops them from its queue. An ack never moves back (an old
//!    one is ignored) and never beyond what was sent ([`ProtocolError::AckBeyondSent`]).
//!    When nothing else flows, a standalone `ACK` goes out after a number of pops or a
//!    share of the peer's queue, and a `HEARTBEAT` after an interval of silence. On
//!    shared memory, a ring's consumer count is the ack.
//! 4. **Liveness.** A peer silent for longer than the timeout is gone
//!    ([`CloseReason::Timeout`]).
//! 5. **Close.** A side closing on purpose sends `CLOSE` ([`close::CloseFrame`]: code
//!    and text) and ends the stream; the peer reports
//!    [`CloseReason::RemoteRequested`]. Bad bytes or a broken rule close the
//!    connection with [`CloseReason::Protocol`]; nothing is ever guessed or skipped.
//!
//! Nothing here does I/O: the `tcpshm-connection` crate drives a [`session::Session`]
//! over a medium.
#![forbid(unsafe_code)]

pub mod close;
mod counters;
pub mod decode;
pub mod encode;
mod error;
pub mod frame;
pub mod handshake;
pub mod login;
mod name;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;

pub use counters::Counters;
pub use decode::{decode, Control, Decoded, Frame, FrameKind};
pub use error::{EncodeError, Fault, FrameError, ProtocolError};
pub use name::{Name, NameError, MAX_NAME_LEN};
pub use transport::{CloseReason, Limit, Msg, Nanos, SendError, Transport};
