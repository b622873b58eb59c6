//! What the user plugs into a server: a login decision on the control thread, and a
//! message handler per group thread.

use crate::policy::GroupId;
use std::net::SocketAddr;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Msg, Name};

/// What the server knows about a login when it asks the [`LoginHandler`].
#[derive(Debug, Clone, Copy)]
pub struct LoginInfo<'a> {
    /// The client's name (validated).
    pub client: Name,
    /// The server the client last logged in to (`None`: a fresh client).
    pub last_server: Option<Name>,
    /// The transport the client asks for.
    pub transport: TransportKind,
    /// The client's address.
    pub peer: SocketAddr,
    /// The opaque credential from the request (at most 256 bytes).
    pub credential: &'a [u8],
}

/// A refusal of a login by the user's handler: its text reaches the client.
///
/// ```
/// let r = tcpshm_server::Reject::new("unknown account");
/// assert_eq!(r.text, "unknown account");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Why (at most 256 bytes reach the client; longer text is cut at a character
    /// boundary).
    pub text: String,
}

impl Reject {
    /// A refusal with this text.
    pub fn new(text: impl Into<String>) -> Reject {
        Reject { text: text.into() }
    }
}

/// Decides logins, on the control thread.
///
/// ```
/// use tcpshm_server::{GroupId, LoginHandler, LoginInfo, Reject};
/// struct Accounts;
/// impl LoginHandler for Accounts {
///     fn on_login(&mut self, info: &LoginInfo<'_>, suggested: GroupId) -> Result<GroupId, Reject> {
///         if info.credential == b"let me in" { Ok(suggested) } else { Err(Reject::new("bad credential")) }
///     }
/// }
/// ```
pub trait LoginHandler: Send {
    /// Accept (into a group: `suggested` is the [`ShardPolicy`](crate::ShardPolicy)'s
    /// choice) or refuse with a reason. Called after the server checked the version,
    /// the names, the transport and the connection limits.
    fn on_login(&mut self, info: &LoginInfo<'_>, suggested: GroupId) -> Result<GroupId, Reject>;
}

/// Accepts every login into the policy's group.
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptAll;

impl LoginHandler for AcceptAll {
    fn on_login(&mut self, _info: &LoginInfo<'_>, suggested: GroupId) -> Result<GroupId, Reject> {
        Ok(suggested)
    }
}

/// What the handler did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Consumed: pop it (the commit point — it will never be delivered again).
    Pop,
    /// Not now (e.g. the reply queue is full): keep it; it is offered again at the
    /// next poll, and this connection gets no more messages in this poll.
    Keep,
}

/// Handles the connections of one group, on that group's thread.
///
/// ```
/// use tcpshm_server::{Conn, GroupHandler, Handled};
/// use tcpshm_proto::Msg;
///
/// /// Echoes every message back, zero-copy into the send queue.
/// struct Echo;
/// impl GroupHandler for Echo {
///     fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
///         match conn.alloc(msg.payload.len()) {
///             Ok(Some(buf)) => {
///                 buf.copy_from_slice(msg.payload);
///                 conn.push(msg.msg_type).expect("allocated");
///                 Handled::Pop
///             }
///             Ok(None) => Handled::Keep, // our send queue is full: try again later
///             Err(e) => { conn.close_with(e.to_string()); Handled::Keep }
///         }
///     }
/// }
/// ```
pub trait GroupHandler: Send {
    /// A connection completed its login and is live.
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }
    /// A message arrived. Return [`Handled::Pop`] once it is handled.
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled;
    /// A connection went down (its session persists for a reconnect).
    fn on_disconnected(&mut self, client: &Name, reason: &CloseReason) {
        let _ = (client, reason);
    }
}

/// The handle a [`GroupHandler`] gets: the connection's send side and identity.
/// Messages pushed here are in the peer's ring at once (shared memory) or leave at
/// the end of the current poll, batched into one write (TCP).
pub struct Conn<'a> {
    pub(crate) client: Name,
    pub(crate) peer: SocketAddr,
    pub(crate) group: GroupId,
    pub(crate) send: tcpshm_connection::Sender<'a>,
    pub(crate) close: &'a mut Option<String>,
}

impl Conn<'_> {
    /// The client's name.
    pub fn client(&self) -> &Name {
        &self.client
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The group this connection lives in.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Reserves `len` bytes in the send queue (zero-copy). `Ok(None)`: full now.
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, tcpshm_proto::SendError> {
        self.send.alloc(len)
    }

    /// Queues the allocated message with `msg_type` (user types `0..=0xFEFF`). Over
    /// shared memory it is in the peer's ring at once; over TCP it is staged in the
    /// session store and leaves with the rest of this poll's replies in one write.
    /// Either way it is crash-safe before the message being handled is popped: a crash
    /// between the two never loses a reply to a consumed request.
    pub fn push(&mut self, msg_type: u16) -> Result<(), tcpshm_proto::SendError> {
        self.send.push(msg_type)
    }

    /// Asks the server to close this connection after the handler returns, with a
    /// reason the peer is told.
    pub fn close_with(&mut self, text: impl Into<String>) {
        *self.close = Some(text.into());
    }
}
