//! The blocking login exchange: connect, send the request, read the reply — each
//! step bounded by the socket timeouts the kernel enforces.

use crate::error::ConnectError;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tcpshm_proto::decode::{frame_limit, Control};
use tcpshm_proto::encode::encode_control;
use tcpshm_proto::frame::{frame_len, msg_type, HEADER_LEN};
use tcpshm_proto::login::{LoginReply, LoginRequest, MAX_REPLY_LEN, MAX_REQUEST_LEN};
use tcpshm_proto::{decode, Decoded};

/// Connects with a timeout and sets TCP_NODELAY and the read/write timeouts.
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> Result<std::net::TcpStream, ConnectError> {
    let io = |op| move |source| ConnectError::Io { op, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io("socket"))?;
    socket.connect_timeout(&SockAddr::from(addr), timeout).map_err(io("connect"))?;
    socket.set_nodelay(true).map_err(io("setsockopt TCP_NODELAY"))?;
    socket.set_read_timeout(Some(timeout)).map_err(io("setsockopt SO_RCVTIMEO"))?;
    socket.set_write_timeout(Some(timeout)).map_err(io("setsockopt SO_SNDTIMEO"))?;
    Ok(socket.into())
}

/// Sends `req` as a login frame.
pub(crate) fn send_request(stream: &mut std::net::TcpStream, req: &LoginRequest<'_>) -> Result<(), ConnectError> {
    let mut buf = [0u8; frame_len(MAX_REQUEST_LEN)];
    let n = encode_control(&mut buf, &Control::Login(*req), req.send_range.next(), req.consumed)
        .map_err(|e| ConnectError::Protocol(format!("cannot encode the login request: {e}")))?;
    stream.write_all(&buf[..n]).map_err(|source| ConnectError::Io { op: "send login", source })
}

/// Reads exactly the reply frame into `buf` and parses it. Exactly: the server may
/// start sending (resends, heartbeats) right after its reply, and those bytes belong
/// to the connection, so nothing past the reply frame is read here.
pub(crate) fn read_reply<'b>(
    stream: &mut std::net::TcpStream,
    buf: &'b mut [u8; frame_len(MAX_REPLY_LEN)],
) -> Result<LoginReply<'b>, ConnectError> {
    let limit = frame_limit(MAX_REPLY_LEN);
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            ConnectError::Protocol("the server closed the connection during login".into())
        }
        _ => ConnectError::Io { op: "read login reply", source },
    };
    stream.read_exact(&mut buf[..HEADER_LEN]).map_err(io)?;
    let total = match decode(&buf[..HEADER_LEN], limit) {
        Ok(Decoded::Need(n)) => HEADER_LEN + n,
        Ok(Decoded::Frame { consumed, .. }) => consumed,
        Err(e) => return Err(ConnectError::Protocol(format!("malformed login reply: {e}"))),
    };
    if total > buf.len() {
        return Err(ConnectError::Protocol("login reply too long".into()));
    }
    stream.read_exact(&mut buf[HEADER_LEN..total]).map_err(io)?;
    let buf: &'b [u8] = &buf[..total];
    let frame = match decode(buf, limit) {
        Ok(Decoded::Frame { frame, consumed }) if consumed == total => frame,
        Ok(_) => return Err(ConnectError::Protocol("malformed login reply: inconsistent length".into())),
        Err(e) => return Err(ConnectError::Protocol(format!("malformed login reply: {e}"))),
    };
    if frame.msg_type() != msg_type::LOGIN_REPLY {
        return Err(ConnectError::Protocol(format!("expected a login reply, got type {:#06x}", frame.msg_type())));
    }
    match frame.control() {
        Ok(Some(Control::LoginReply(r))) => Ok(r),
        Ok(_) => Err(ConnectError::Protocol("not a login reply".into())),
        Err(e) => Err(ConnectError::Protocol(format!("malformed login reply: {e}"))),
    }
}
