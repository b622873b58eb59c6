//! The send side of a connection on its own, borrowed while the front message is
//! borrowed too: a server handler reads a request in place and writes its reply into
//! the send queue in place, with no copy in between.

use crate::connection::{send_error, StreamConnection};
use crate::ByteStream;
use tcpshm_persist::Store;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::session::Session;
use tcpshm_proto::{Counters, Msg, SendError};

/// Queues messages into a connection's persistent send queue. What it pushes leaves
/// at the connection's next write ([`StreamConnection::on_writable`], `poll` or a
/// `push` on the connection), batched with everything else queued.
///
/// ```
/// # use tcpshm_transport_tcp::{StreamConfig, UnixConnection};
/// # use tcpshm_persist::{Options, Store};
/// # use tcpshm_proto::{Name, Transport};
/// # let dir = std::env::temp_dir().join(format!("tcpshm-tcp-doc-sender-{}", std::process::id()));
/// # let (store, _) = Store::open(&dir, Name::new("a").unwrap(), Name::new("b").unwrap(), &Options::new(1 << 16), None, 0).unwrap();
/// let mut conn = UnixConnection::new(store, StreamConfig::default());
/// let mut tx = conn.sender();
/// tx.alloc(2).unwrap().unwrap().copy_from_slice(b"hi");
/// tx.push(1).unwrap();
/// assert_eq!(conn.counters().pushed, 1);
/// # drop(conn); std::fs::remove_dir_all(&dir).ok();
/// ```
pub struct Sender<'a> {
    store: &'a mut Store,
    session: &'a mut Session,
    counters: &'a mut Counters,
    max_payload: usize,
}

impl Sender<'_> {
    /// Reserves `len` bytes in the send queue (zero-copy). `Ok(None)`: full now.
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        if len > self.max_payload {
            return Err(SendError::TooLarge { len, max: self.max_payload });
        }
        self.store.alloc(len).map_err(send_error)
    }

    /// Queues the allocated message with `msg_type` (a user type); it is written with
    /// the connection's next write.
    #[inline]
    pub fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        if !msg_type::is_user(msg_type) {
            return Err(SendError::ReservedType(msg_type));
        }
        self.store.push_more(msg_type, self.session.ack_to_send()).map_err(send_error)?;
        self.session.on_push();
        self.counters.pushed += 1;
        Ok(())
    }
}

impl<S: ByteStream> StreamConnection<S> {
    /// The front message and the send side, borrowed together.
    #[inline]
    pub fn front_split(&mut self) -> Option<(Msg<'_>, Sender<'_>)> {
        let max_payload = self.max_payload;
        let msg = self.rx.front()?;
        Some((
            msg,
            Sender { store: &mut self.store, session: &mut self.session, counters: &mut self.counters, max_payload },
        ))
    }

    /// The send side alone.
    #[inline]
    pub fn sender(&mut self) -> Sender<'_> {
        Sender {
            store: &mut self.store,
            session: &mut self.session,
            counters: &mut self.counters,
            max_payload: self.max_payload,
        }
    }

    /// Whether a received message waits in the buffer, or the last read stopped
    /// before the socket was drained (call [`on_readable`](Self::on_readable) again
    /// without waiting for a readiness event).
    #[inline]
    pub fn has_buffered(&self) -> bool {
        self.rx.front().is_some() || self.rx.more
    }
}
