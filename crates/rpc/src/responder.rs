//! The answering side: an answer is a message of the reply type whose payload starts
//! with the call's id (the request's seq).

use crate::{CallId, REPLY_TYPE};
use tcpshm_proto::{Msg, SendError, Transport};

/// Bytes of the call id in front of an answer's body.
pub const ID_LEN: usize = 8;

/// The call id an answer's payload names; `None` if it is too short to be an answer.
///
/// ```
/// let mut payload = 42u64.to_le_bytes().to_vec();
/// payload.extend_from_slice(b"body");
/// assert_eq!(tcpshm_rpc::reply_id(&payload), Some(42));
/// assert_eq!(tcpshm_rpc::reply_id(b"short"), None);
/// ```
#[inline]
pub fn reply_id(payload: &[u8]) -> Option<CallId> {
    Some(u64::from_le_bytes(*payload.first_chunk::<ID_LEN>()?))
}

/// Where an answer can be written: a server handler's [`Conn`](tcpshm_server::Conn)
/// (of the request's session, or of another session reached through
/// [`Sessions`](tcpshm_server::Sessions)), a [`Batch`](tcpshm_connection::Batch), a
/// connection's [`Sender`](tcpshm_connection::Sender), or any transport wrapped in
/// [`Via`].
pub trait Outbox {
    /// Reserves `len` bytes (see `Transport::alloc`).
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError>;
    /// Queues the allocated message (see `Transport::push`).
    fn push(&mut self, msg_type: u16) -> Result<(), SendError>;
}

impl Outbox for tcpshm_server::Conn<'_> {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        tcpshm_server::Conn::alloc(self, len)
    }
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        tcpshm_server::Conn::push(self, msg_type)
    }
}

impl Outbox for tcpshm_connection::Sender<'_> {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        tcpshm_connection::Sender::alloc(self, len)
    }
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        tcpshm_connection::Sender::push(self, msg_type)
    }
}

impl Outbox for tcpshm_connection::Batch<'_> {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        tcpshm_connection::Batch::alloc(self, len)
    }
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        tcpshm_connection::Batch::push(self, msg_type)
    }
}

/// Any [`Transport`] as an [`Outbox`] (e.g. a client that answers the server's
/// requests).
#[derive(Debug)]
pub struct Via<'a, T>(pub &'a mut T);

impl<T: Transport> Outbox for Via<'_, T> {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.0.alloc(len)
    }
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.0.push(msg_type)
    }
}

/// Answers requests: in a server's [`GroupHandler`](tcpshm_server::GroupHandler),
/// at once or later (keep the request's [`id`](Responder::id)).
///
/// Answer **before** popping the request (return `Handled::Pop` after `reply`): the
/// answer is then crash-safe before the request is consumed, and a server that dies
/// between the two answers again after its restart — the client drops the second
/// answer. Popping first and answering later loses the answer if the server dies in
/// between, unless the application keeps its own record.
///
/// ```
/// use tcpshm_rpc::Responder;
/// use tcpshm_server::{Conn, GroupHandler, Handled};
/// use tcpshm_proto::Msg;
///
/// struct Prices { rpc: Responder }
/// impl GroupHandler for Prices {
///     fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
///         match self.rpc.reply(conn, &msg, b"189.5") {
///             Ok(true) => Handled::Pop,
///             Ok(false) => Handled::Keep, // our queue is full: answer at the next poll
///             Err(e) => { conn.close_with(e.to_string()); Handled::Keep }
///         }
///     }
/// }
/// # let _ = Prices { rpc: Responder::default() };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responder {
    reply_type: u16,
}

impl Default for Responder {
    fn default() -> Self {
        Responder { reply_type: REPLY_TYPE }
    }
}

impl Responder {
    /// A responder whose answers are messages of `reply_type` (the client's
    /// [`RpcConfig::reply_type`](crate::RpcConfig::reply_type)).
    pub fn new(reply_type: u16) -> Responder {
        Responder { reply_type }
    }

    /// The call id of a request: its seq in the session.
    #[inline]
    pub fn id(request: &Msg<'_>) -> CallId {
        request.seq
    }

    /// Answers `request` with a copy of `body`. `Ok(false)`: the queue is full now
    /// (keep the request and answer later).
    #[inline]
    pub fn reply<O: Outbox + ?Sized>(&self, out: &mut O, request: &Msg<'_>, body: &[u8]) -> Result<bool, SendError> {
        self.reply_with(out, request.seq, body.len(), |buf| buf.copy_from_slice(body))
    }

    /// Answers call `id` with a `len`-byte body written in place by `fill`
    /// (zero-copy). `Ok(false)`: the queue is full now.
    #[inline]
    pub fn reply_with<O: Outbox + ?Sized>(
        &self,
        out: &mut O,
        id: CallId,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, SendError> {
        let Some(buf) = out.alloc(ID_LEN + len)? else { return Ok(false) };
        let (head, body) = buf.split_at_mut(ID_LEN);
        head.copy_from_slice(&id.to_le_bytes());
        fill(body);
        out.push(self.reply_type)?;
        Ok(true)
    }
}
