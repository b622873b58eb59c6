//! The send side of a connection on its own, borrowed while the front message is
//! borrowed too: a server handler reads a request in place and writes its reply into
//! the send queue in place, with no copy in between.

use crate::connection::{ring_send_error, send_error, Connection};
use tcpshm_persist::Store;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::session::Session;
use tcpshm_proto::{Msg, SendError};
use tcpshm_transport_shm::RingTx;
use tcpshm_transport_tcp::ByteStream;

enum To<'a> {
    /// The store: pushes are staged and leave with the connection's next write.
    Store(&'a mut Store),
    /// The outbound ring: pushes are published at once.
    Ring { tx: &'a mut RingTx, ring_next: &'a mut u64, linked: bool },
}

/// Queues messages into a connection's send queue while its front message is
/// borrowed (see [`Connection::front_split`]). Over shared memory a push is in the
/// peer's ring at once; over a stream it is staged in the store and leaves with the
/// connection's next write (batched with everything else queued). Either way it is
/// crash-safe before the message being handled is popped: a crash between the two
/// never loses a reply to a consumed request.
pub struct Sender<'a> {
    session: &'a mut Session,
    to: To<'a>,
    /// The store holds fewer messages than the session numbers (a change of medium
    /// being caught up): pushes wait.
    behind: bool,
}

impl std::fmt::Debug for Sender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = match self.to {
            To::Store(_) => "store",
            To::Ring { .. } => "ring",
        };
        f.debug_struct("Sender").field("to", &to).finish_non_exhaustive()
    }
}

impl Sender<'_> {
    /// Reserves `len` bytes in the send queue (zero-copy). `Ok(None)`: full now.
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.session.check_send(len)?;
        match &mut self.to {
            To::Store(_) if self.behind => Ok(None),
            To::Store(store) => store.alloc(len).map_err(send_error),
            To::Ring { tx, .. } => tx.alloc(len).map_err(ring_send_error),
        }
    }

    /// Queues the allocated message with `msg_type` (a user type).
    #[inline]
    pub fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        if !msg_type::is_user(msg_type) {
            return Err(SendError::ReservedType(msg_type));
        }
        let ack = self.session.ack_to_send();
        match &mut self.to {
            To::Store(store) => {
                store.push_more(msg_type, ack).map_err(send_error)?;
                self.session.on_push();
            }
            To::Ring { tx, ring_next, linked } => {
                let seq = self.session.seq().next_seq();
                tx.push_more(msg_type, seq, ack).map_err(ring_send_error)?;
                self.session.on_push();
                **ring_next = seq + 1;
                // Also what the connection's `push_more` staged before this push.
                let n = tx.publish();
                if *linked {
                    self.session.on_sent(n);
                }
            }
        }
        Ok(())
    }
}

impl<S: ByteStream> Connection<S> {
    /// The front message and the send side, borrowed together.
    #[inline]
    pub fn front_split(&mut self) -> Option<(Msg<'_>, Sender<'_>)> {
        let linked = self.stream.is_some();
        if self.medium == TransportKind::Shm && self.rings.is_some() {
            if !self.receives_from_rings() {
                return None;
            }
            // Releases stale copies and counts the message; then borrow it, beside
            // the send side.
            self.ring_prepare()?;
            let to_ring = self.queue.to_ring;
            let behind = self.store_behind();
            let rings = self.rings.as_mut()?;
            let (tx, rx) = rings.parts();
            let m = rx.front().ok()??;
            let msg = Msg { msg_type: m.msg_type, seq: m.seq, payload: m.payload };
            let to = if to_ring {
                To::Ring { tx, ring_next: &mut self.queue.ring_next, linked }
            } else {
                To::Store(&mut self.store)
            };
            return Some((msg, Sender { session: &mut self.session, to, behind }));
        }
        let behind = self.store_behind();
        let msg = self.reader.front()?;
        Some((msg, Sender { session: &mut self.session, to: To::Store(&mut self.store), behind }))
    }

    /// The send side alone.
    #[inline]
    pub fn sender(&mut self) -> Sender<'_> {
        let linked = self.stream.is_some();
        let to_ring = self.queue.to_ring;
        let behind = self.store_behind();
        let to = match (&mut self.rings, to_ring) {
            (Some(r), true) => To::Ring { tx: &mut r.tx, ring_next: &mut self.queue.ring_next, linked },
            _ => To::Store(&mut self.store),
        };
        Sender { session: &mut self.session, to, behind }
    }
}
