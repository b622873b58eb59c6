//! Writing a login reply on a fresh socket.

use std::io::Write;
use tcpshm_proto::decode::Control;
use tcpshm_proto::encode::encode_control;
use tcpshm_proto::frame::frame_len;
use tcpshm_proto::login::{truncate_utf8, LoginReply, LoginStatus, MAX_REPLY_LEN, MAX_TEXT_LEN};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::Name;

/// The numbers a reply carries (all zero in a refusal).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Numbers {
    pub(crate) consumed: u64,
    pub(crate) send_range: SeqRange,
    pub(crate) queue_capacity: u64,
}

/// Encodes and writes a login reply. The socket is fresh and the reply small (at most
/// a few hundred bytes), so a non-blocking write that does not take it whole means
/// the peer is gone or hostile: the caller drops the connection.
pub(crate) fn send(
    stream: &mut impl Write,
    server: Name,
    status: LoginStatus,
    text: &str,
    n: Numbers,
) -> std::io::Result<()> {
    let reply = LoginReply {
        status,
        server,
        consumed: n.consumed,
        send_range: n.send_range,
        queue_capacity: n.queue_capacity,
        text: truncate_utf8(text, MAX_TEXT_LEN),
    };
    let mut buf = [0u8; frame_len(MAX_REPLY_LEN)];
    let len = encode_control(&mut buf, &Control::LoginReply(reply), 0, n.consumed)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut off = 0;
    while off < len {
        match stream.write(&buf[off..len]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A refusal: status and text, numbers zero.
pub(crate) fn refuse(stream: &mut impl Write, server: Name, status: LoginStatus, text: &str) {
    // Best effort: the connection is dropped right after either way.
    let _ = send(stream, server, status, text, Numbers::default());
}
