//! A connection that has not completed its login: bytes are gathered (a login may
//! arrive in many pieces) into a bounded buffer until the login frame is whole, or
//! the login timeout passes.

use mio::net::TcpStream;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use tcpshm_proto::decode::{frame_limit, Control};
use tcpshm_proto::frame::{frame_len, msg_type};
use tcpshm_proto::login::{LoginRequest, LoginStatus, TransportKind, MAX_REQUEST_LEN};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{decode, Decoded, Name, Nanos};

/// The largest login frame (with padding): nothing more is ever buffered.
pub(crate) const MAX_LOGIN_FRAME: usize = frame_len(MAX_REQUEST_LEN);

/// A login request copied out of the buffer (the credential stays behind: it is only
/// needed by the login handler, which sees it before the copy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnedLogin {
    pub(crate) client: Name,
    pub(crate) last_server: Option<Name>,
    pub(crate) transport: TransportKind,
    pub(crate) consumed: u64,
    pub(crate) send_range: SeqRange,
    pub(crate) queue_capacity: u64,
}

impl OwnedLogin {
    pub(crate) fn of(r: &LoginRequest<'_>) -> OwnedLogin {
        OwnedLogin {
            client: r.client,
            last_server: r.last_server,
            transport: r.transport,
            consumed: r.consumed,
            send_range: r.send_range,
            queue_capacity: r.queue_capacity,
        }
    }
}

/// Why a pending login ends without a request.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The peer closed or failed; nothing to reply.
    Gone,
    /// The bytes are not a valid login: reply with this status and text, then close.
    Refuse(LoginStatus, String),
}

pub(crate) struct Pending {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    buf: Box<[u8; MAX_LOGIN_FRAME]>,
    len: usize,
    pub(crate) deadline: Nanos,
}

/// What reading produced.
pub(crate) enum Progress<'a> {
    /// Not complete yet.
    More,
    /// A whole, valid login request.
    Request(LoginRequest<'a>),
}

impl Pending {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, deadline: Nanos) -> Pending {
        Pending { stream, peer, buf: Box::new([0; MAX_LOGIN_FRAME]), len: 0, deadline }
    }

    /// Reads what is available and tries to decode the login frame.
    pub(crate) fn on_readable(&mut self) -> Result<Progress<'_>, Failure> {
        loop {
            if self.len == self.buf.len() {
                // Full buffer and still no whole frame can only be garbage: the
                // decoder refuses over-long frames before this (see below).
                break;
            }
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return Err(Failure::Gone),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::Gone),
            }
        }
        parse(&self.buf[..self.len])
    }
}

/// Decodes a login frame from the start of `bytes`, refusing anything else.
pub(crate) fn parse(bytes: &[u8]) -> Result<Progress<'_>, Failure> {
    let limit = frame_limit(MAX_REQUEST_LEN);
    let (frame, consumed) = match decode(bytes, limit) {
        Ok(Decoded::Need(_)) => return Ok(Progress::More),
        Ok(Decoded::Frame { frame, consumed }) => (frame, consumed),
        Err(e) => return Err(Failure::Refuse(LoginStatus::Malformed, format!("not a login frame: {e}"))),
    };
    if frame.msg_type() != msg_type::LOGIN {
        return Err(Failure::Refuse(
            LoginStatus::Malformed,
            format!("expected a login frame, got message type {:#06x}", frame.msg_type()),
        ));
    }
    if consumed != bytes.len() {
        return Err(Failure::Refuse(LoginStatus::Malformed, "bytes after the login frame before the reply".into()));
    }
    match frame.control() {
        Ok(Some(Control::Login(r))) => Ok(Progress::Request(r)),
        Ok(_) => Err(Failure::Refuse(LoginStatus::Malformed, "not a login request".into())),
        Err(e) => {
            let status = match &e {
                tcpshm_proto::ProtocolError::Login(p) => p.refusal(),
                _ => LoginStatus::Malformed,
            };
            Err(Failure::Refuse(status, e.to_string()))
        }
    }
}
