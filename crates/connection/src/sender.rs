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

impl<'a> Sender<'a> {
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
        self.stage(msg_type)?;
        if let To::Ring { .. } = self.to {
            // Also what the connection's `push_more` staged before this push.
            self.publish_ring();
        }
        Ok(())
    }

    /// Publishes what this sender staged now — crash-safe from here — rather than
    /// with the connection's next write (over a stream, pushes are staged so that a
    /// poll's replies leave in one write; over shared memory they are published at
    /// once anyway). For a message pushed to a session that is not connected, whose
    /// next write may be far off.
    #[inline]
    pub fn publish(&mut self) -> Result<(), SendError> {
        match &mut self.to {
            To::Store(store) if store.staged() > 0 => store.publish().map_err(send_error),
            To::Store(_) => Ok(()),
            To::Ring { .. } => {
                self.publish_ring();
                Ok(())
            }
        }
    }

    /// Starts an all-or-nothing batch: messages pushed into it are staged, and
    /// published together by [`Batch::commit`] or dropped together (their seqs given
    /// back) by [`Batch::abort`] or when the batch is dropped. Messages this sender
    /// queued before are published first, so an abort drops only the batch's.
    ///
    /// ```
    /// use tcpshm_connection::{Connection, ConnectionConfig};
    /// use tcpshm_persist::{Options, Store};
    /// use tcpshm_proto::login::TransportKind;
    /// use tcpshm_proto::{Name, Transport};
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-batch-{}", std::process::id()));
    /// let cfg = ConnectionConfig::default();
    /// let (me, peer) = (Name::new("client").unwrap(), Name::new("server").unwrap());
    /// let (store, _) = Store::open(&dir, me, peer, &Options::new(cfg.queue_bytes), None, 0).unwrap();
    /// let mut c: Connection = Connection::open(store, None, TransportKind::Tcp, cfg).unwrap();
    ///
    /// let mut send = c.sender();
    /// let mut batch = send.batch().unwrap();
    /// for leg in [&b"buy 10"[..], b"sell 10"] {
    ///     match batch.alloc(leg.len()).unwrap() {
    ///         Some(buf) => buf.copy_from_slice(leg),
    ///         None => return, // full: dropping the batch drops every leg
    ///     }
    ///     batch.push(1).unwrap();
    /// }
    /// assert_eq!(batch.commit().unwrap(), 2);
    ///
    /// let mut send = c.sender();
    /// let mut batch = send.batch().unwrap();
    /// batch.alloc(3).unwrap().unwrap().copy_from_slice(b"odd");
    /// batch.push(1).unwrap();
    /// assert_eq!(batch.abort(), 1); // never sent; its seq is given back
    /// assert_eq!(c.counters().next_seq, 2);
    /// # drop(c); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn batch(&mut self) -> Result<Batch<'_>, SendError> {
        self.reborrow().into_batch()
    }

    /// [`batch`](Self::batch), consuming this sender (e.g. one just made by
    /// [`Connection::sender`] that a function returns).
    pub fn into_batch(mut self) -> Result<Batch<'a>, SendError> {
        self.publish()?;
        Ok(Batch { send: self, staged: 0, open: true })
    }

    /// This sender for a shorter time.
    fn reborrow(&mut self) -> Sender<'_> {
        let to = match &mut self.to {
            To::Store(store) => To::Store(store),
            To::Ring { tx, ring_next, linked } => To::Ring { tx, ring_next, linked: *linked },
        };
        Sender { session: self.session, to, behind: self.behind }
    }

    /// Completes the allocated message and numbers it, without publishing it.
    #[inline]
    fn stage(&mut self, msg_type: u16) -> Result<(), SendError> {
        if !msg_type::is_user(msg_type) {
            return Err(SendError::ReservedType(msg_type));
        }
        let ack = self.session.ack_to_send();
        match &mut self.to {
            To::Store(store) => {
                store.push_more(msg_type, ack).map_err(send_error)?;
                self.session.on_push();
            }
            To::Ring { tx, ring_next, .. } => {
                let seq = self.session.seq().next_seq();
                tx.push_more(msg_type, seq, ack).map_err(ring_send_error)?;
                self.session.on_push();
                **ring_next = seq + 1;
            }
        }
        Ok(())
    }

    #[inline]
    fn publish_ring(&mut self) {
        if let To::Ring { tx, linked, .. } = &mut self.to {
            let n = tx.publish();
            if *linked {
                self.session.on_sent(n);
            }
        }
    }

    /// Drops what is staged (the batch's messages: `batch` published the rest) and
    /// gives their seqs back.
    fn discard(&mut self) -> u64 {
        let n = match &mut self.to {
            To::Store(store) => store.discard_staged(),
            To::Ring { tx, ring_next, .. } => {
                let n = tx.discard_staged();
                **ring_next -= n;
                n
            }
        };
        let taken = self.session.on_discard(n);
        debug_assert_eq!(taken, n, "staged messages were never written");
        n
    }
}

/// An all-or-nothing batch of messages (see [`Sender::batch`]): [`push`](Self::push)
/// stages, [`commit`](Self::commit) publishes every staged message at once (crash-safe
/// from there), [`abort`](Self::abort) — or dropping the batch — drops them all and
/// gives their seqs back. The peer receives the whole batch or none of it, whatever
/// happens: a queue too full for the last message (abort), a crash before the commit
/// (the staged messages were never published), a disconnect.
#[must_use = "a batch dropped without commit is aborted"]
pub struct Batch<'a> {
    send: Sender<'a>,
    staged: u64,
    open: bool,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("staged", &self.staged).finish_non_exhaustive()
    }
}

impl Batch<'_> {
    /// Reserves `len` bytes for the batch's next message (zero-copy). `Ok(None)`: the
    /// queue is full now — abort the batch (or drop it) and try again later.
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.send.alloc(len)
    }

    /// Stages the allocated message with `msg_type` (a user type): numbered, not
    /// published.
    #[inline]
    pub fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.send.stage(msg_type)?;
        self.staged += 1;
        Ok(())
    }

    /// Messages staged so far.
    pub fn len(&self) -> u64 {
        self.staged
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.staged == 0
    }

    /// Publishes every staged message at once (one index store); returns how many.
    /// An error is a failed sync of a [`Durability::Sync`](tcpshm_persist::Durability)
    /// store: the whole batch is published, but not known to be durable yet.
    pub fn commit(mut self) -> Result<u64, SendError> {
        self.open = false;
        self.send.publish()?;
        Ok(self.staged)
    }

    /// Drops every staged message (their seqs are given back); returns how many.
    pub fn abort(mut self) -> u64 {
        self.open = false;
        self.send.discard()
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open {
            self.send.discard();
        }
    }
}

impl<S: ByteStream> Connection<S> {
    /// The front message and the send side, borrowed together.
    #[inline]
    pub fn front_split(&mut self) -> Option<(Msg<'_>, Sender<'_>)> {
        self.catch_up_for_sender();
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

    /// A sender cannot copy what the ring holds into the store (a session that moved
    /// from shared memory to a stream) as `alloc` does: catch up before handing one
    /// out, so that it is not kept waiting on a copy nobody makes.
    #[inline]
    fn catch_up_for_sender(&mut self) {
        if self.store_behind() {
            self.catch_up_store();
        }
    }

    /// The send side alone.
    #[inline]
    pub fn sender(&mut self) -> Sender<'_> {
        self.catch_up_for_sender();
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
