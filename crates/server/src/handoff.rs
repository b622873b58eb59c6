//! What control hands a group: an admitted login with its socket.

use crate::pending::OwnedLogin;
use crate::slot::Slot;
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::sync::Arc;
use tcpshm_proto::Nanos;

/// A login admitted by control (parsed, and accepted by the user's login handler);
/// the group finishes it (the session's verdict, reply, link).
pub(crate) struct Handoff {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) login: OwnedLogin,
    pub(crate) slot: Arc<Slot>,
    /// Control claimed the slot (it was free) and counted the connection as live. If
    /// false, the slot looked connected: the group checks whether that connection is
    /// really alive, refuses the login if so, and otherwise replaces it.
    pub(crate) claimed: bool,
    pub(crate) at: Nanos,
}
