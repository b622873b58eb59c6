//! What the two sides of a login tell each other, as the connection sees it.
//!
//! The server and the client write the login exchange themselves (with
//! [`tcpshm_proto::login`]); the connection provides its side of the numbers
//! ([`StreamConnection::login_state`](crate::StreamConnection::login_state) gives a
//! [`LoginInfo`]) and takes the peer's ([`PeerLogin`], given to
//! [`attach`](crate::StreamConnection::attach)).

use tcpshm_proto::login::{LoginReply, LoginRequest};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::Name;

/// What this side puts in its login request or reply.
///
/// ```
/// # use tcpshm_transport_tcp::LoginInfo;
/// # use tcpshm_proto::{Name, session::SeqRange};
/// # let info = LoginInfo { local: Name::new("c").unwrap(), remote: Name::new("s").unwrap(),
/// #     consumed: 0, send_range: SeqRange::default(), queue_capacity: 4096 };
/// use tcpshm_proto::login::{LoginRequest, TransportKind};
/// let req = LoginRequest {
///     client: info.local,
///     last_server: None,
///     transport: TransportKind::Tcp,
///     consumed: info.consumed,
///     send_range: info.send_range,
///     queue_capacity: info.queue_capacity,
///     credential: b"",
/// };
/// assert_eq!(req.consumed, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginInfo {
    /// This side's name (the store's local name).
    pub local: Name,
    /// The peer's name (the store's remote name).
    pub remote: Name,
    /// How many of the peer's messages this side consumed.
    pub consumed: u64,
    /// This side's send queue: `first_unacked..next_seq`.
    pub send_range: SeqRange,
    /// Bytes of this side's send queue.
    pub queue_capacity: u64,
}

/// The peer's numbers from its login request (server side) or reply (client side).
///
/// ```
/// use tcpshm_transport_tcp::PeerLogin;
/// use tcpshm_proto::login::{LoginReply, LoginStatus};
/// use tcpshm_proto::{Name, session::SeqRange};
/// let reply = LoginReply {
///     status: LoginStatus::Ok,
///     server: Name::new("srv").unwrap(),
///     consumed: 3,
///     send_range: SeqRange::new(1, 9).unwrap(),
///     queue_capacity: 1 << 20,
///     text: "",
/// };
/// let peer = PeerLogin::from(&reply);
/// assert_eq!((peer.consumed, peer.send_range.next()), (3, 9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerLogin {
    /// How many of our messages the peer consumed: resending starts there.
    pub consumed: u64,
    /// The peer's send queue.
    pub send_range: SeqRange,
    /// Bytes of the peer's send queue (0 if not said): sets the byte threshold of
    /// standalone acks when [`StreamConfig::ack_by_peer_queue`](crate::StreamConfig::ack_by_peer_queue) is on.
    pub queue_capacity: u64,
}

impl From<&LoginRequest<'_>> for PeerLogin {
    fn from(r: &LoginRequest<'_>) -> Self {
        PeerLogin { consumed: r.consumed, send_range: r.send_range, queue_capacity: r.queue_capacity }
    }
}

impl From<&LoginReply<'_>> for PeerLogin {
    fn from(r: &LoginReply<'_>) -> Self {
        PeerLogin { consumed: r.consumed, send_range: r.send_range, queue_capacity: r.queue_capacity }
    }
}

impl From<LoginInfo> for PeerLogin {
    /// One side's [`LoginInfo`] as the other side's peer numbers (for tests and
    /// in-process pairs that skip the wire exchange).
    fn from(i: LoginInfo) -> Self {
        PeerLogin { consumed: i.consumed, send_range: i.send_range, queue_capacity: i.queue_capacity }
    }
}
