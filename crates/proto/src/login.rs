//! Login request and reply: the payloads of the `LOGIN` and `LOGIN_REPLY` frames.
//!
//! A login is an ordinary frame ([`msg_type::LOGIN`](crate::frame::msg_type::LOGIN),
//! [`LOGIN_REPLY`](crate::frame::msg_type::LOGIN_REPLY)), so a login split over many
//! reads is reassembled by [`decode`](crate::decode()) like any frame, and its size is
//! bounded ([`MAX_REQUEST_LEN`], [`MAX_REPLY_LEN`]) before a byte of it is buffered.
//! The frame header's `seq` and `ack` carry the sender's next seq and consumed count,
//! as on every control frame; the payload below is authoritative. What the numbers
//! must satisfy is [`crate::handshake`]'s business; this module only moves them.
//!
//! All integers are little-endian. The first 6 bytes (magic, version) keep this
//! meaning in every protocol version, so a peer of another version is told so rather
//! than misparsed.
//!
//! Both directions carry the sender's [`SessionNumbers`] (what it consumed and holds
//! of the peer's messages, and its own send queue) and its [`Limits`] (the largest
//! message it accepts, its send-queue capacity).
//!
//! # Request (client to server), 60 to [`MAX_REQUEST_LEN`] bytes
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 4 | magic (u32) | [`MAGIC`] = `"TSHM"` |
//! | 4 | 2 | version (u16) | [`VERSION`] |
//! | 6 | 1 | transport (u8) | [`TransportKind`]: 0 TCP, 1 SHM |
//! | 7 | 1 | `c` (u8) | client name length, 1..=64 |
//! | 8 | 8 | consumed (u64) | how many of the server's messages the client consumed |
//! | 16 | 8 | seen (u64) | how many of the server's messages the client consumed or holds (>= consumed) |
//! | 24 | 8 | first unacked (u64) | client send queue: first seq not acknowledged |
//! | 32 | 8 | next seq (u64) | client send queue: seq of the next push (>= first unacked) |
//! | 40 | 8 | queue capacity (u64) | bytes of the client's send queue (0 = not said) |
//! | 48 | 4 | max message (u32) | largest user message the client accepts |
//! | 52 | 4 | largest queued (u32) | largest message in the client's send queue (0 if none) |
//! | 56 | 2 | `k` (u16) | credential length, 0..=256 |
//! | 58 | 1 | `s` (u8) | last server name length, 0 (none: a fresh client) ..=64 |
//! | 59 | 1 | reserved, 0 | |
//! | 60 | `c` | client name | a valid [`Name`] |
//! | 60 + `c` | `s` | last server name | a valid [`Name`], the server the client last logged in to |
//! | 60 + `c` + `s` | `k` | credential | opaque bytes for the server's login handler |
//!
//! # Reply (server to client), 68 to [`MAX_REPLY_LEN`] bytes
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 4 | magic (u32) | [`MAGIC`] |
//! | 4 | 2 | version (u16) | the server's protocol version |
//! | 6 | 2 | status (u16) | [`LoginStatus`] code: 0 accepted, else the refusal reason |
//! | 8 | 8 | consumed (u64) | how many of the client's messages the server consumed |
//! | 16 | 8 | seen (u64) | how many of the client's messages the server consumed or holds |
//! | 24 | 8 | first unacked (u64) | server send queue: first seq not acknowledged |
//! | 32 | 8 | next seq (u64) | server send queue: seq of the next push (>= first unacked) |
//! | 40 | 8 | queue capacity (u64) | bytes of the server's send queue (0 = not said) |
//! | 48 | 4 | max message (u32) | largest user message the server accepts |
//! | 52 | 4 | reserved, 0 | |
//! | 56 | 8 | shm file id (u64) | identity of the session's shared-memory file (0: none) |
//! | 64 | 2 | `t` (u16) | text length, 0..=256 |
//! | 66 | 1 | `s` (u8) | server name length, 1..=64 |
//! | 67 | 1 | reserved, 0 | |
//! | 68 | `s` | server name | a valid [`Name`] |
//! | 68 + `s` | `t` | text | UTF-8: the refusal's detail (e.g. the handler's reason) |
//!
//! Nothing may follow the last field. A refusal carries zero numbers.
//!
//! ```
//! use tcpshm_proto::login::{Limits, LoginRequest, SessionNumbers, TransportKind};
//! use tcpshm_proto::session::SeqRange;
//! use tcpshm_proto::Name;
//!
//! let req = LoginRequest {
//!     client: Name::new("trader-1").unwrap(),
//!     last_server: Some(Name::new("Server20180714").unwrap()),
//!     transport: TransportKind::Shm,
//!     numbers: SessionNumbers { consumed: 17, seen: 17, send_range: SeqRange::new(3, 9).unwrap() },
//!     limits: Limits { max_message: 4096, queue_capacity: 1 << 20 },
//!     largest_queued: 100,
//!     credential: b"secret",
//! };
//! let mut buf = [0u8; tcpshm_proto::login::MAX_REQUEST_LEN];
//! let n = req.encode(&mut buf).unwrap();
//! assert_eq!(n, req.encoded_len());
//! assert_eq!(LoginRequest::parse(&buf[..n]), Ok(req));
//! ```

use crate::error::EncodeError;
use crate::name::{Name, NameError, MAX_NAME_LEN};
use crate::session::SeqRange;
use core::fmt;

/// Magic number at the start of every login request and reply: `"TSHM"`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"TSHM");
/// The protocol version this code speaks (2: the limits exchange, the `seen` counts
/// and the shared-memory file identity).
pub const VERSION: u16 = 2;
/// Longest credential in a request.
pub const MAX_CREDENTIAL_LEN: usize = 256;
/// Longest text in a reply.
pub const MAX_TEXT_LEN: usize = 256;
/// Bytes of the fixed part of a request (before the names).
pub const REQUEST_FIXED_LEN: usize = 60;
/// Bytes of the fixed part of a reply (before the name).
pub const REPLY_FIXED_LEN: usize = 68;
/// Longest request payload.
pub const MAX_REQUEST_LEN: usize = REQUEST_FIXED_LEN + 2 * MAX_NAME_LEN + MAX_CREDENTIAL_LEN;
/// Longest reply payload.
pub const MAX_REPLY_LEN: usize = REPLY_FIXED_LEN + MAX_NAME_LEN + MAX_TEXT_LEN;

/// The transport a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TransportKind {
    /// Messages flow over the TCP connection.
    Tcp = 0,
    /// Messages flow over shared-memory rings; the TCP connection stays open as a
    /// control channel.
    Shm = 1,
}

impl TransportKind {
    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The kind with this wire code.
    ///
    /// ```
    /// use tcpshm_proto::login::TransportKind;
    /// assert_eq!(TransportKind::from_code(1), Some(TransportKind::Shm));
    /// assert_eq!(TransportKind::from_code(2), None);
    /// ```
    pub const fn from_code(c: u8) -> Option<TransportKind> {
        match c {
            0 => Some(TransportKind::Tcp),
            1 => Some(TransportKind::Shm),
            _ => None,
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Shm => "shm",
        })
    }
}

/// The outcome of a login: accepted, or the reason for the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum LoginStatus {
    /// Accepted.
    Ok = 0,
    /// The request does not start with [`MAGIC`]: not a tcpshm client.
    BadMagic = 1,
    /// The client speaks another protocol version (the reply's version field says
    /// which one the server speaks).
    BadVersion = 2,
    /// A name in the request is not a valid [`Name`].
    BadName = 3,
    /// The server's login handler refused the client (its reason is the text).
    Rejected = 4,
    /// A connection with this client name is already logged in.
    AlreadyLoggedIn = 5,
    /// The server has no room for another connection.
    ServerFull = 6,
    /// The two sides' sequence numbers do not fit: one side lost state (the text
    /// says which, see [`SeqMismatch`](crate::session::SeqMismatch)).
    SeqMismatch = 7,
    /// The server could not open or create the connection's persistent store.
    StorageError = 8,
    /// The requested transport is not enabled on this server.
    TransportDisabled = 9,
    /// The request is malformed in another way (truncated, bad field, trailing
    /// bytes; the text says what).
    Malformed = 10,
    /// A queued message is larger than the other side accepts (the text says which
    /// side, the message's seq and size, and the limit): resending it could never
    /// succeed, so the session does not resume until the limits agree.
    LimitExceeded = 11,
}

impl LoginStatus {
    /// Every status, in code order.
    pub const ALL: [LoginStatus; 12] = [
        LoginStatus::Ok,
        LoginStatus::BadMagic,
        LoginStatus::BadVersion,
        LoginStatus::BadName,
        LoginStatus::Rejected,
        LoginStatus::AlreadyLoggedIn,
        LoginStatus::ServerFull,
        LoginStatus::SeqMismatch,
        LoginStatus::StorageError,
        LoginStatus::TransportDisabled,
        LoginStatus::Malformed,
        LoginStatus::LimitExceeded,
    ];

    /// The wire code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The status with this wire code.
    ///
    /// ```
    /// use tcpshm_proto::login::LoginStatus;
    /// assert_eq!(LoginStatus::from_code(5), Some(LoginStatus::AlreadyLoggedIn));
    /// assert_eq!(LoginStatus::from_code(999), None);
    /// ```
    pub const fn from_code(c: u16) -> Option<LoginStatus> {
        if (c as usize) < LoginStatus::ALL.len() {
            Some(LoginStatus::ALL[c as usize])
        } else {
            None
        }
    }

    /// Whether the login was accepted.
    pub const fn is_ok(self) -> bool {
        matches!(self, LoginStatus::Ok)
    }
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoginStatus::Ok => "accepted",
            LoginStatus::BadMagic => "not a tcpshm login (bad magic)",
            LoginStatus::BadVersion => "unsupported protocol version",
            LoginStatus::BadName => "invalid name",
            LoginStatus::Rejected => "rejected by the server",
            LoginStatus::AlreadyLoggedIn => "already logged in",
            LoginStatus::ServerFull => "server full",
            LoginStatus::SeqMismatch => "sequence numbers do not match",
            LoginStatus::StorageError => "server storage error",
            LoginStatus::TransportDisabled => "transport disabled on the server",
            LoginStatus::Malformed => "malformed login request",
            LoginStatus::LimitExceeded => "a queued message exceeds the other side's limit",
        })
    }
}

/// Which name field of a login is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    /// The request's client name.
    Client,
    /// The request's last server name.
    LastServer,
    /// The reply's server name.
    Server,
}

impl fmt::Display for NameField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameField::Client => "client name",
            NameField::LastServer => "last server name",
            NameField::Server => "server name",
        })
    }
}

/// Why a login request or reply could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginParseError {
    /// Fewer bytes than the fields say.
    #[error("login payload of {have} bytes is truncated: {need} needed")]
    Truncated {
        /// Bytes the fields read so far need.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Not [`MAGIC`].
    #[error("bad login magic {0:#010x} (not a tcpshm peer)")]
    BadMagic(u32),
    /// Another protocol version.
    #[error("protocol version {found} is not supported (this side speaks {VERSION})")]
    BadVersion {
        /// The version in the payload.
        found: u16,
    },
    /// A transport code that is not a [`TransportKind`].
    #[error("unknown transport code {0}")]
    UnknownTransport(u8),
    /// A status code that is not a [`LoginStatus`].
    #[error("unknown login status code {0}")]
    UnknownStatus(u16),
    /// A name field is not a valid [`Name`].
    #[error("invalid {field}: {error}")]
    BadName {
        /// Which field.
        field: NameField,
        /// What is wrong with it.
        error: NameError,
    },
    /// The credential is longer than [`MAX_CREDENTIAL_LEN`].
    #[error("credential of {0} bytes exceeds the limit of {MAX_CREDENTIAL_LEN}")]
    CredentialTooLong(usize),
    /// The text is longer than [`MAX_TEXT_LEN`].
    #[error("text of {0} bytes exceeds the limit of {MAX_TEXT_LEN}")]
    TextTooLong(usize),
    /// The text is not UTF-8.
    #[error("text is not UTF-8 (valid up to byte {valid_up_to})")]
    TextNotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// A send-queue range whose first unacknowledged seq is after its next seq.
    #[error("send range {first_unacked}..{next} is inverted")]
    InvertedRange {
        /// First unacknowledged seq.
        first_unacked: u64,
        /// Next seq.
        next: u64,
    },
    /// Bytes after the last field.
    #[error("{0} bytes after the end of the login")]
    TrailingBytes(usize),
    /// A count that contradicts another (`seen` below `consumed`).
    #[error("seen count {seen} is below the consumed count {consumed}")]
    SeenBelowConsumed {
        /// The consumed count.
        consumed: u64,
        /// The seen count.
        seen: u64,
    },
    /// A reserved byte is not zero.
    #[error("reserved byte at offset {0} is not zero")]
    Reserved(usize),
}

impl LoginParseError {
    /// The refusal a server replies with for a request that fails to parse.
    ///
    /// ```
    /// use tcpshm_proto::login::{LoginParseError, LoginStatus};
    /// assert_eq!(LoginParseError::BadMagic(0).refusal(), LoginStatus::BadMagic);
    /// assert_eq!(LoginParseError::TrailingBytes(1).refusal(), LoginStatus::Malformed);
    /// ```
    pub fn refusal(&self) -> LoginStatus {
        match self {
            LoginParseError::BadMagic(_) => LoginStatus::BadMagic,
            LoginParseError::BadVersion { .. } => LoginStatus::BadVersion,
            LoginParseError::BadName { .. } => LoginStatus::BadName,
            _ => LoginStatus::Malformed,
        }
    }
}

/// What one side of a session says about it at login: how far it got with the peer's
/// messages and what its own send queue holds. The request and the reply both carry
/// one; [`crate::handshake`] checks that the two fit.
///
/// ```
/// use tcpshm_proto::login::SessionNumbers;
/// let fresh = SessionNumbers::default();
/// assert_eq!((fresh.consumed, fresh.seen, fresh.send_range.next()), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionNumbers {
    /// How many of the peer's messages this side consumed (popped): its commit point.
    pub consumed: u64,
    /// How many of the peer's messages this side consumed or holds to read later
    /// (messages waiting in a shared-memory ring it maps). At least `consumed`; the
    /// peer must have pushed at least this many.
    pub seen: u64,
    /// This side's send queue: `first_unacked..next_seq`.
    pub send_range: SeqRange,
}

/// What one side accepts and holds: told at login so each side knows the other's.
///
/// ```
/// use tcpshm_proto::login::Limits;
/// let l = Limits { max_message: 4096, queue_capacity: 1 << 20 };
/// assert_eq!(l.max_message, 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Limits {
    /// The largest user message (payload bytes) this side accepts. A side never sends
    /// a message above its peer's limit: `alloc` refuses it.
    pub max_message: u32,
    /// Bytes of this side's send queue (0 = not said): the peer acks before a share of
    /// it is used, and bounds its receive backlog by it.
    pub queue_capacity: u64,
}

/// A login request, borrowing its credential from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest<'a> {
    /// The client's name.
    pub client: Name,
    /// The server the client last logged in to; `None` for a fresh client. A server
    /// with another name starts a fresh session.
    pub last_server: Option<Name>,
    /// The transport the client asks for.
    pub transport: TransportKind,
    /// The client's session numbers.
    pub numbers: SessionNumbers,
    /// The client's limits.
    pub limits: Limits,
    /// The largest message (payload bytes) in the client's send queue, 0 if it is empty.
    pub largest_queued: u32,
    /// Opaque bytes for the server's login handler, at most [`MAX_CREDENTIAL_LEN`].
    pub credential: &'a [u8],
}

/// A login reply, borrowing its text from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginReply<'a> {
    /// Accepted, or why not.
    pub status: LoginStatus,
    /// The server's name.
    pub server: Name,
    /// The server's session numbers (zero in a refusal).
    pub numbers: SessionNumbers,
    /// The server's limits (zero in a refusal).
    pub limits: Limits,
    /// Identity of the session's shared-memory file (a random number written when the
    /// server created it), 0 if there is none. A client that maps another file (an
    /// older one, since replaced) must let it go and map the server's.
    pub shm_file_id: u64,
    /// Detail of a refusal (the handler's reason, the mismatch...), at most
    /// [`MAX_TEXT_LEN`] bytes; usually empty when accepted.
    pub text: &'a str,
}

impl LoginReply<'_> {
    /// A refusal: status and text, numbers and limits zero.
    ///
    /// ```
    /// use tcpshm_proto::login::{LoginReply, LoginStatus};
    /// let r = LoginReply::refusal(LoginStatus::ServerFull, "srv".parse().unwrap(), "full");
    /// assert_eq!((r.status, r.numbers.consumed), (LoginStatus::ServerFull, 0));
    /// ```
    pub fn refusal(status: LoginStatus, server: Name, text: &str) -> LoginReply<'_> {
        LoginReply {
            status,
            server,
            numbers: SessionNumbers::default(),
            limits: Limits::default(),
            shm_file_id: 0,
            text: truncate_utf8(text, MAX_TEXT_LEN),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary: for fitting a handler's text into a bounded field.
///
/// ```
/// assert_eq!(tcpshm_proto::login::truncate_utf8("héllo", 2), "h");
/// assert_eq!(tcpshm_proto::login::truncate_utf8("abc", 10), "abc");
/// ```
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl<'a> LoginRequest<'a> {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        REQUEST_FIXED_LEN
            + self.client.as_bytes().len()
            + self.last_server.map_or(0, |n| n.as_bytes().len())
            + self.credential.len()
    }

    /// Checks the bounded fields (the credential's length).
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.credential.len() > MAX_CREDENTIAL_LEN {
            return Err(EncodeError::FieldTooLong {
                field: "credential",
                len: self.credential.len(),
                max: MAX_CREDENTIAL_LEN,
            });
        }
        Ok(())
    }

    /// Writes the request payload into `buf`; returns its length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let n = self.encoded_len();
        let have = buf.len();
        let out = buf.get_mut(..n).ok_or(EncodeError::BufferTooSmall { need: n, have })?;
        let client = self.client.as_bytes();
        let last = self.last_server.as_ref().map_or(&[][..], Name::as_bytes);
        let mut w = Writer { buf: out, pos: 0 };
        w.put(&MAGIC.to_le_bytes());
        w.put(&VERSION.to_le_bytes());
        w.put(&[self.transport.code(), client.len() as u8]);
        put_numbers(&mut w, &self.numbers, &self.limits);
        w.put(&self.largest_queued.to_le_bytes());
        w.put(&(self.credential.len() as u16).to_le_bytes());
        w.put(&[last.len() as u8, 0]);
        w.put(client);
        w.put(last);
        w.put(self.credential);
        debug_assert_eq!(w.pos, n);
        Ok(n)
    }

    /// Parses and validates a request payload (every field, in layout order; the
    /// magic and version first).
    ///
    /// ```
    /// use tcpshm_proto::login::{LoginParseError, LoginRequest};
    /// assert_eq!(LoginRequest::parse(b"HTTP/1.1"), Err(LoginParseError::BadMagic(0x50545448)));
    /// ```
    pub fn parse(b: &'a [u8]) -> Result<LoginRequest<'a>, LoginParseError> {
        check_magic_version(b)?;
        let fixed = fixed::<REQUEST_FIXED_LEN>(b)?;
        let transport = TransportKind::from_code(fixed[6]).ok_or(LoginParseError::UnknownTransport(fixed[6]))?;
        let client_len = fixed[7] as usize;
        let (numbers, limits) = numbers(&fixed[..])?;
        let largest_queued = u32_at(&fixed[..], 52);
        let cred_len = u16::from_le_bytes([fixed[56], fixed[57]]) as usize;
        let last_len = fixed[58] as usize;
        if fixed[59] != 0 {
            return Err(LoginParseError::Reserved(59));
        }
        check_name_len(NameField::Client, client_len)?;
        check_name_len(NameField::LastServer, last_len)?;
        if cred_len > MAX_CREDENTIAL_LEN {
            return Err(LoginParseError::CredentialTooLong(cred_len));
        }
        let rest = exact(b, REQUEST_FIXED_LEN, client_len + last_len + cred_len)?;
        let (client, rest) = rest.split_at(client_len);
        let (last, credential) = rest.split_at(last_len);
        let client = name(NameField::Client, client)?;
        let last_server = if last.is_empty() { None } else { Some(name(NameField::LastServer, last)?) };
        Ok(LoginRequest { client, last_server, transport, numbers, limits, largest_queued, credential })
    }
}

impl<'a> LoginReply<'a> {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        REPLY_FIXED_LEN + self.server.as_bytes().len() + self.text.len()
    }

    /// Checks the bounded fields (the text's length).
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.text.len() > MAX_TEXT_LEN {
            return Err(EncodeError::FieldTooLong { field: "text", len: self.text.len(), max: MAX_TEXT_LEN });
        }
        Ok(())
    }

    /// Writes the reply payload into `buf`; returns its length.
    ///
    /// ```
    /// use tcpshm_proto::login::{LoginReply, LoginStatus, MAX_REPLY_LEN};
    /// let reply = LoginReply::refusal(LoginStatus::Rejected, "srv".parse().unwrap(), "unknown account");
    /// let mut buf = [0u8; MAX_REPLY_LEN];
    /// let n = reply.encode(&mut buf).unwrap();
    /// let back = LoginReply::parse(&buf[..n]).unwrap();
    /// assert_eq!((back.status, back.text), (LoginStatus::Rejected, "unknown account"));
    /// ```
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let n = self.encoded_len();
        let have = buf.len();
        let out = buf.get_mut(..n).ok_or(EncodeError::BufferTooSmall { need: n, have })?;
        let server = self.server.as_bytes();
        let mut w = Writer { buf: out, pos: 0 };
        w.put(&MAGIC.to_le_bytes());
        w.put(&VERSION.to_le_bytes());
        w.put(&self.status.code().to_le_bytes());
        put_numbers(&mut w, &self.numbers, &self.limits);
        w.put(&0u32.to_le_bytes());
        w.put(&self.shm_file_id.to_le_bytes());
        w.put(&(self.text.len() as u16).to_le_bytes());
        w.put(&[server.len() as u8, 0]);
        w.put(server);
        w.put(self.text.as_bytes());
        debug_assert_eq!(w.pos, n);
        Ok(n)
    }

    /// Parses and validates a reply payload (every field, in layout order; the magic
    /// and version first).
    pub fn parse(b: &'a [u8]) -> Result<LoginReply<'a>, LoginParseError> {
        check_magic_version(b)?;
        let fixed = fixed::<REPLY_FIXED_LEN>(b)?;
        let code = u16::from_le_bytes([fixed[6], fixed[7]]);
        let status = LoginStatus::from_code(code).ok_or(LoginParseError::UnknownStatus(code))?;
        let (numbers, limits) = numbers(&fixed[..])?;
        if let Some(at) = (52..56).chain(67..68).find(|&i| fixed[i] != 0) {
            return Err(LoginParseError::Reserved(at));
        }
        let shm_file_id = u64_at(&fixed[..], 56);
        let text_len = u16::from_le_bytes([fixed[64], fixed[65]]) as usize;
        let server_len = fixed[66] as usize;
        check_name_len(NameField::Server, server_len)?;
        if text_len > MAX_TEXT_LEN {
            return Err(LoginParseError::TextTooLong(text_len));
        }
        let rest = exact(b, REPLY_FIXED_LEN, server_len + text_len)?;
        let (server, text) = rest.split_at(server_len);
        let server = name(NameField::Server, server)?;
        let text =
            core::str::from_utf8(text).map_err(|e| LoginParseError::TextNotUtf8 { valid_up_to: e.valid_up_to() })?;
        Ok(LoginReply { status, server, numbers, limits, shm_file_id, text })
    }
}

/// A cursor over an output slice that was sized exactly beforehand.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

/// Bytes 8..52 of both payloads: the numbers and the limits.
fn put_numbers(w: &mut Writer<'_>, n: &SessionNumbers, l: &Limits) {
    w.put(&n.consumed.to_le_bytes());
    w.put(&n.seen.to_le_bytes());
    w.put(&n.send_range.first_unacked().to_le_bytes());
    w.put(&n.send_range.next().to_le_bytes());
    w.put(&l.queue_capacity.to_le_bytes());
    w.put(&l.max_message.to_le_bytes());
}

fn check_magic_version(b: &[u8]) -> Result<(), LoginParseError> {
    let magic = b.first_chunk::<4>().ok_or(LoginParseError::Truncated { need: 4, have: b.len() })?;
    let magic = u32::from_le_bytes(*magic);
    if magic != MAGIC {
        return Err(LoginParseError::BadMagic(magic));
    }
    let v = b.get(4..6).ok_or(LoginParseError::Truncated { need: 6, have: b.len() })?;
    let found = u16::from_le_bytes([v[0], v[1]]);
    if found != VERSION {
        return Err(LoginParseError::BadVersion { found });
    }
    Ok(())
}

fn fixed<const N: usize>(b: &[u8]) -> Result<&[u8; N], LoginParseError> {
    b.first_chunk::<N>().ok_or(LoginParseError::Truncated { need: N, have: b.len() })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn numbers(b: &[u8]) -> Result<(SessionNumbers, Limits), LoginParseError> {
    let (consumed, seen) = (u64_at(b, 8), u64_at(b, 16));
    if seen < consumed {
        return Err(LoginParseError::SeenBelowConsumed { consumed, seen });
    }
    let (first_unacked, next) = (u64_at(b, 24), u64_at(b, 32));
    let send_range =
        SeqRange::new(first_unacked, next).ok_or(LoginParseError::InvertedRange { first_unacked, next })?;
    let limits = Limits { queue_capacity: u64_at(b, 40), max_message: u32_at(b, 48) };
    Ok((SessionNumbers { consumed, seen, send_range }, limits))
}

fn check_name_len(field: NameField, len: usize) -> Result<(), LoginParseError> {
    if len > MAX_NAME_LEN {
        return Err(LoginParseError::BadName { field, error: NameError::TooLong(len) });
    }
    Ok(())
}

/// The variable part after a `fixed`-byte fixed part, which must be exactly `len` bytes.
fn exact(b: &[u8], fixed: usize, len: usize) -> Result<&[u8], LoginParseError> {
    let need = fixed + len;
    match b.len().cmp(&need) {
        core::cmp::Ordering::Less => Err(LoginParseError::Truncated { need, have: b.len() }),
        core::cmp::Ordering::Greater => Err(LoginParseError::TrailingBytes(b.len() - need)),
        core::cmp::Ordering::Equal => Ok(&b[fixed..]),
    }
}

fn name(field: NameField, b: &[u8]) -> Result<Name, LoginParseError> {
    Name::from_bytes(b).map_err(|error| LoginParseError::BadName { field, error })
}
