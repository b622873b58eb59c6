//! The shared-memory path: messages through the rings (no system call), the queue
//! moved between the store and the ring when the medium changes, and the control
//! work of a shared-memory session, rate-limited.

use crate::connection::{ring_reason, storage, Connection};
use crate::stream::Failed;
use tcpshm_proto::frame::HEADER_LEN;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Msg, Nanos, ProtocolError};
use tcpshm_transport_shm::RingError;
use tcpshm_transport_tcp::ByteStream;

impl<S: ByteStream> Connection<S> {
    /// `poll` of a session carried by the rings: the data work every time (no system
    /// call: publish, drain the store into the ring), the control work at most once
    /// per check interval (read the control stream, timers, the peer's consumed count
    /// into the session and the store, heartbeat).
    pub(crate) fn poll_rings(&mut self, now: Nanos) -> bool {
        self.drain_to_ring();
        if self.stream.is_none() {
            return false;
        }
        // Not due yet — unless the clock went backwards past a whole interval (a new
        // clock): then do the work rather than wait for the old one's time.
        if now < self.next_check && self.next_check - now <= self.cfg.check_interval {
            return true;
        }
        self.next_check = now.saturating_add(self.cfg.check_interval);
        if let Some(e) = self.rings.as_ref().and_then(|r| r.truncated()) {
            self.ring_failed(ring_reason(&e));
            return false;
        }
        let r = self
            .receive(now)
            .and_then(|()| self.timers(now))
            .and_then(|()| self.ring_acks())
            .and_then(|()| self.flush(now));
        self.settle(r)
    }

    /// The peer's consumed count from the ring: the session's ack, and a checkpoint
    /// of both counts into the store.
    fn ring_acks(&mut self) -> Result<(), Failed> {
        let Some(r) = &self.rings else { return Ok(()) };
        let peer_consumed = r.tx.peer_consumed();
        self.session.on_ack(peer_consumed).map_err(|e| (CloseReason::Protocol(e), true))?;
        self.checkpoint();
        Ok(())
    }

    /// Copies store frames the ring does not hold yet into it, as far as it has room
    /// (a session that changed to shared memory, or pushed before its rings existed);
    /// then pushes go straight to the ring again.
    #[inline]
    pub(crate) fn drain_to_ring(&mut self) {
        // Nothing to copy (the common case): no work at all.
        if self.store.next_seq() <= self.queue.ring_next && self.queue.drain.is_none() {
            return;
        }
        self.drain_some();
    }

    #[cold]
    fn drain_some(&mut self) {
        if self.medium != TransportKind::Shm || self.ring_fault.is_some() {
            return;
        }
        let Some(rings) = self.rings.as_mut() else { return };
        let mut fault = None;
        while self.store.next_seq() > self.queue.ring_next {
            let from = self.queue.ring_next.max(self.store.first_unacked());
            let cursor = match self.queue.drain {
                Some(c) if c.seq() >= from => c,
                _ => match self.store.cursor_at(from) {
                    Ok(c) => c,
                    Err(e) => {
                        fault = Some(storage(e));
                        break;
                    }
                },
            };
            let (seq, next, copied_one) = match self.store.frame(cursor) {
                Ok(Some((f, next))) => match rings.tx.write_frame(f.bytes) {
                    Ok(ok) => (f.seq, next, ok),
                    Err(e) => {
                        fault = Some(ring_reason(&e));
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    fault = Some(storage(e));
                    break;
                }
            };
            if !copied_one {
                // The ring is full: go on at the next poll.
                self.queue.drain = Some(cursor);
                break;
            }
            self.queue.ring_next = seq + 1;
            self.queue.drain = Some(next);
        }
        let published = rings.tx.publish();
        if published > 0 && self.stream.is_some() {
            self.session.on_sent(published);
        }
        if let Some(reason) = fault {
            self.ring_fault = Some(reason.clone());
            self.fail(reason, true);
        }
        if self.store.next_seq() <= self.queue.ring_next {
            self.queue.drain = None;
        }
        self.update_route();
    }

    /// Makes the store hold every message from the peer's consumed count on, copying
    /// from the ring what only the ring holds (a session that changed from shared
    /// memory to a stream): returns whether it does now (else the store is full and
    /// the rest follows as acks free it).
    pub(crate) fn catch_up_store(&mut self) -> bool {
        let target = self.session.seq().next_seq();
        if self.store.next_seq() >= target {
            return true;
        }
        let Some(rings) = self.rings.as_ref() else { return false };
        let acked = self.session.seq().acked();
        if acked > self.store.next_seq() {
            if let Err(e) = self.store.ack_beyond(acked) {
                let reason = storage(e);
                self.fail(reason, true);
                return false;
            }
        }
        let store = &mut self.store;
        let mut broken = None;
        let walk = rings.tx.for_each(|seq, bytes| {
            // Copies staged by this walk count: they are published together after it.
            let needed = store.next_seq() + store.staged();
            if seq < needed {
                return true;
            }
            if seq != needed {
                broken = Some(format!("the ring holds seq {seq} where the queue needs {needed}"));
                return false;
            }
            let h = tcpshm_proto::frame::Header::read(bytes.first_chunk().expect("a whole header"));
            let payload = &bytes[HEADER_LEN..h.len as usize];
            match store.alloc(payload.len()) {
                Ok(Some(buf)) => buf.copy_from_slice(payload),
                Ok(None) => return false,
                Err(e) => {
                    broken = Some(e.to_string());
                    return false;
                }
            }
            if let Err(e) = store.push_more(h.msg_type, h.ack) {
                broken = Some(e.to_string());
                return false;
            }
            store.next_seq() + store.staged() < target
        });
        if let Err(e) = self.store.publish() {
            let reason = storage(e);
            self.fail(reason, true);
            return false;
        }
        let fault = match walk {
            Err(e) => Some(ring_reason(&e)),
            Ok(()) => broken.map(|b| CloseReason::Corrupt(tcpshm_proto::Fault::msg(b))),
        };
        if let Some(reason) = fault {
            self.fail(reason, true);
            return false;
        }
        self.store.next_seq() >= target
    }

    /// Readies the head of the inbound ring: copies of messages already consumed are
    /// released unread; a gap closes the session. `Some(())` when the head is the next
    /// message to deliver (counted once as received).
    #[inline]
    pub(crate) fn ring_prepare(&mut self) -> Option<()> {
        if self.ring_fault.is_some() {
            return None;
        }
        let consumed = self.session.seq().consumed();
        if matches!(self.ring_fronted, Some((seq, _)) if seq == consumed) {
            return Some(());
        }
        match self.rings.as_mut()?.rx.ready(consumed) {
            Ok(Some(r)) => {
                self.session.on_ring_received();
                self.ring_fronted = Some((r.seq, r.frame_len));
                Some(())
            }
            Ok(None) => None,
            Err(RingError::Gap { expected, got, .. }) => {
                self.ring_failed(CloseReason::Protocol(ProtocolError::RingGap { expected, got }));
                None
            }
            Err(e) => {
                self.ring_failed(ring_reason(&e));
                None
            }
        }
    }

    /// The next message of the inbound ring, in place (see [`ring_prepare`](Self::ring_prepare)).
    #[inline]
    pub(crate) fn ring_front(&mut self) -> Option<Msg<'_>> {
        self.ring_prepare()?;
        // Readied just now: the ring remembers the frame, nothing is read again.
        let m = self.rings.as_mut()?.rx.front().ok()??;
        Some(Msg { msg_type: m.msg_type, seq: m.seq, payload: m.payload })
    }

    /// Pops the front message of the inbound ring: replies staged before it are
    /// published first, then the consumed count is stored and the frame released.
    pub(crate) fn ring_pop(&mut self) {
        if self.ring_prepare().is_none() {
            return;
        }
        let Some((seq, frame_len)) = self.ring_fronted.take() else { return };
        if let Err(reason) = self.publish_staged() {
            self.fail(reason, true);
            return;
        }
        let Some(rings) = self.rings.as_mut() else { return };
        if let Err(e) = rings.rx.pop(seq + 1) {
            self.ring_failed(ring_reason(&e));
            return;
        }
        self.session.on_pop(frame_len as u64, true);
    }

    /// A ring is broken: nothing more is read from it; the link closes.
    pub(crate) fn ring_failed(&mut self, reason: CloseReason) {
        self.ring_fault = Some(reason.clone());
        self.queue.to_ring = false;
        if self.stream.is_some() {
            self.fail(reason, true);
        } else {
            self.session.close(reason);
        }
    }

    /// The largest message (payload bytes) queued for the peer, in the store and in
    /// the ring: a login refuses to resume if it exceeds the peer's limit.
    pub(crate) fn largest_queued(&mut self) -> Result<u32, CloseReason> {
        let from = self.session.seq().acked();
        let mut max = 0usize;
        if let Some(r) = &self.rings {
            max = r.tx.largest_from(from).map_err(|e| ring_reason(&e))?;
        }
        let start = from.max(self.store.first_unacked()).min(self.store.next_seq());
        let mut cursor = self.store.cursor_at(start).map_err(storage)?;
        while let Some((f, next)) = self.store.frame(cursor).map_err(storage)? {
            max = max.max(f.payload.len());
            cursor = next;
        }
        Ok(u32::try_from(max).unwrap_or(u32::MAX))
    }
}
