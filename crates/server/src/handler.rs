//! What the user plugs into a server: a login decision on the control thread, and a
//! message handler per group thread.

use crate::policy::GroupId;
use crate::sessions::Sessions;
use std::net::SocketAddr;
use tcpshm_connection::Batch;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Msg, Name, Nanos};

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

    /// Called once per [`Group::poll`](crate::Group::poll), before the messages that
    /// arrived are handled: publish without a message having arrived — to any session
    /// of the group, connected or not ([`Sessions`]). `now` is the poll's clock. The
    /// default does nothing.
    ///
    /// ```
    /// use tcpshm_server::{Conn, GroupHandler, Handled, Sessions};
    /// use tcpshm_proto::{Msg, Nanos};
    ///
    /// /// A heartbeat of the application's own to every client, once a second.
    /// struct Ticker { next: Nanos }
    /// impl GroupHandler for Ticker {
    ///     fn on_message(&mut self, _conn: &mut Conn<'_>, _msg: Msg<'_>) -> Handled { Handled::Pop }
    ///     fn on_poll(&mut self, sessions: &mut Sessions<'_>, now: Nanos) {
    ///         if now < self.next { return; }
    ///         self.next = now + 1_000_000_000;
    ///         sessions.for_each(|conn| {
    ///             if conn.is_connected() {
    ///                 if let Ok(Some(buf)) = conn.alloc(8) {
    ///                     buf.copy_from_slice(&now.to_le_bytes());
    ///                     let _ = conn.push(1);
    ///                 }
    ///             }
    ///         });
    ///     }
    /// }
    /// ```
    fn on_poll(&mut self, sessions: &mut Sessions<'_>, now: Nanos) {
        let _ = (sessions, now);
    }
}

/// The handle a [`GroupHandler`] gets: a session's send side and identity — of the
/// connection whose message is handled, or of any session of the group through
/// [`Sessions`]. Messages pushed here are in the peer's ring at once (shared memory)
/// or leave at the end of the current poll, batched into one write (TCP); to a
/// client that is away, they wait in its persistent queue for its next login.
pub struct Conn<'a> {
    pub(crate) client: Name,
    pub(crate) peer: SocketAddr,
    pub(crate) group: GroupId,
    pub(crate) send: tcpshm_connection::Sender<'a>,
    pub(crate) close: &'a mut Option<String>,
    /// Publish each push at once (a session reached through `Sessions`: no message
    /// pop follows to publish it).
    pub(crate) eager: bool,
    pub(crate) connected: bool,
    /// The group's other sessions, while a message is handled.
    pub(crate) others: Option<Sessions<'a>>,
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("client", &self.client)
            .field("group", &self.group)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl<'a> Conn<'a> {
    /// The client's name.
    pub fn client(&self) -> &Name {
        &self.client
    }

    /// The client's address (of its last connection in this process;
    /// `0.0.0.0:0` for a session opened while its client was away).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the client is connected now. Pushing works either way: a message for
    /// a client that is away waits in its persistent queue.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The group's other sessions, while a message is handled (`None` on a `Conn`
    /// that came from [`Sessions`] itself): e.g. a trade between two clients sends
    /// the fill of the resting order from the request of the other.
    pub fn sessions(&mut self) -> Option<&mut Sessions<'a>> {
        self.others.as_mut()
    }

    /// Starts an all-or-nothing batch of messages to this session: every message
    /// pushed into it is published when it is [committed](Batch::commit), or none is
    /// (an [`abort`](Batch::abort), or dropping the batch — e.g. when the third of
    /// three replies finds the queue full; a crash before the commit drops them too).
    /// The messages this `Conn` pushed before the batch are published first.
    ///
    /// ```
    /// use tcpshm_server::{Conn, GroupHandler, Handled};
    /// use tcpshm_proto::Msg;
    ///
    /// /// Answers each request with three messages, or with none until all fit.
    /// struct Three;
    /// impl GroupHandler for Three {
    ///     fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
    ///         let Ok(mut batch) = conn.batch() else { return Handled::Keep };
    ///         for part in 0..3u8 {
    ///             match batch.alloc(msg.payload.len() + 1) {
    ///                 Ok(Some(buf)) => {
    ///                     buf[0] = part;
    ///                     buf[1..].copy_from_slice(msg.payload);
    ///                 }
    ///                 // Full: dropping the batch drops the parts staged so far, and
    ///                 // the request is offered again at the next poll.
    ///                 _ => return Handled::Keep,
    ///             }
    ///             batch.push(msg.msg_type).unwrap();
    ///         }
    ///         match batch.commit() {
    ///             Ok(_) => Handled::Pop,
    ///             Err(_) => Handled::Keep,
    ///         }
    ///     }
    /// }
    /// ```
    pub fn batch(&mut self) -> Result<Batch<'_>, tcpshm_proto::SendError> {
        self.send.batch()
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
        self.send.push(msg_type)?;
        if self.eager {
            self.send.publish()?;
        }
        Ok(())
    }

    /// Asks the server to close this connection after the handler returns, with a
    /// reason the peer is told.
    pub fn close_with(&mut self, text: impl Into<String>) {
        *self.close = Some(text.into());
    }
}
