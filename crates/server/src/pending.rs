//! A connection that has not completed its login: bytes are gathered (a login may
//! arrive in many pieces) into a bounded frame reader until the login frame is
//! whole, or the login timeout passes.

use mio::net::TcpStream;
use std::net::SocketAddr;
use tcpshm_proto::decode::{frame_limit, Control};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::handshake::Refusal;
use tcpshm_proto::login::{Limits, LoginRequest, LoginStatus, SessionNumbers, TransportKind, MAX_REQUEST_LEN};
use tcpshm_proto::{decode, Decoded, Name, Nanos};
use tcpshm_transport_tcp::{Fill, FrameReader};

/// A login request copied out of the reader (the credential stays behind: only the
/// login handler needs it, and it sees it before the copy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnedLogin {
    pub(crate) client: Name,
    pub(crate) last_server: Option<Name>,
    pub(crate) transport: TransportKind,
    pub(crate) numbers: SessionNumbers,
    pub(crate) limits: Limits,
    pub(crate) largest_queued: u32,
}

impl OwnedLogin {
    pub(crate) fn of(r: &LoginRequest<'_>) -> OwnedLogin {
        OwnedLogin {
            client: r.client,
            last_server: r.last_server,
            transport: r.transport,
            numbers: r.numbers,
            limits: r.limits,
            largest_queued: r.largest_queued,
        }
    }

    /// The request again (without its credential), for the session's acceptance.
    pub(crate) fn request(&self) -> LoginRequest<'static> {
        LoginRequest {
            client: self.client,
            last_server: self.last_server,
            transport: self.transport,
            numbers: self.numbers,
            limits: self.limits,
            largest_queued: self.largest_queued,
            credential: b"",
        }
    }
}

/// Why a pending login ends without a request.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The peer closed or failed; nothing to reply.
    Gone,
    /// The bytes are not a valid login: reply with this refusal, then close.
    Refuse(Refusal),
}

pub(crate) struct Pending {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    reader: FrameReader,
    pub(crate) deadline: Nanos,
}

/// What reading produced.
pub(crate) enum Progress<'a> {
    /// Not complete yet.
    More,
    /// A whole, valid login request.
    Request(LoginRequest<'a>),
}

fn refuse(status: LoginStatus, text: impl Into<String>) -> Failure {
    Failure::Refuse(Refusal { status, text: text.into() })
}

impl Pending {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, deadline: Nanos) -> Pending {
        // Nothing bigger than a login request is ever buffered.
        let reader = FrameReader::new(0, frame_limit(MAX_REQUEST_LEN));
        Pending { stream, peer, reader, deadline }
    }

    /// Reads what is available and tries to decode the login frame; anything else
    /// (another frame, bytes after the login before the reply) is refused.
    pub(crate) fn on_readable(&mut self) -> Result<Progress<'_>, Failure> {
        loop {
            match self.reader.fill(&mut self.stream, usize::MAX) {
                Ok(Fill::Bytes(_)) => {}
                Ok(Fill::WouldBlock) => break,
                // Only a login is ever in this reader: full means garbage.
                Ok(Fill::Full) => return Err(refuse(LoginStatus::Malformed, "not a login frame")),
                Ok(Fill::Eof) | Err(_) => return Err(Failure::Gone),
            }
        }
        let f = match self.reader.next_frame() {
            Ok(None) => return Ok(Progress::More),
            Ok(Some(f)) => f,
            Err(e) => return Err(refuse(LoginStatus::Malformed, format!("not a login frame: {e}"))),
        };
        if f.header.msg_type != msg_type::LOGIN {
            return Err(refuse(
                LoginStatus::Malformed,
                format!("expected a login frame, got message type {:#06x}", f.header.msg_type),
            ));
        }
        if self.reader.partial() > 0 {
            return Err(refuse(LoginStatus::Malformed, "bytes after the login frame before the reply"));
        }
        let frame = match decode(self.reader.frame_bytes(&f), u32::MAX) {
            Ok(Decoded::Frame { frame, .. }) => frame,
            _ => return Err(refuse(LoginStatus::Malformed, "the login frame no longer decodes")),
        };
        match frame.control() {
            Ok(Some(Control::Login(r))) => Ok(Progress::Request(r)),
            Ok(_) => Err(refuse(LoginStatus::Malformed, "not a login request")),
            Err(e) => {
                let status = match &e {
                    tcpshm_proto::ProtocolError::Login(p) => p.refusal(),
                    _ => LoginStatus::Malformed,
                };
                Err(refuse(status, e.to_string()))
            }
        }
    }
}
