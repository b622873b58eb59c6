//! A group's connection: TCP or shared memory, behind one small enum so the group's
//! loop is monomorphic (a predictable branch, no virtual call).

use mio::net::TcpStream;
use tcpshm_proto::{CloseReason, Msg, Nanos, SendError, Transport};
use tcpshm_transport_shm::ShmConnection;
use tcpshm_transport_tcp::TcpConnection;

// Both variants are large and live in the group's entry table; boxing one would add
// a pointer chase on the hot path to save memory no one is short of.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    Tcp(TcpConnection),
    Shm(ShmConnection<TcpStream>),
}

/// The send side of a connection while its front message is borrowed.
pub enum SendSide<'a> {
    /// TCP: pushes queue in the persistent store; they leave at the end of the poll.
    Tcp(tcpshm_transport_tcp::Sender<'a>),
    /// Shared memory: pushes go straight into the ring.
    Shm(tcpshm_transport_shm::ShmSender<'a>),
}

impl SendSide<'_> {
    pub(crate) fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        match self {
            SendSide::Tcp(s) => s.alloc(len),
            SendSide::Shm(s) => s.alloc(len),
        }
    }

    pub(crate) fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        match self {
            SendSide::Tcp(s) => s.push(msg_type),
            SendSide::Shm(s) => s.push(msg_type),
        }
    }
}

impl Link {
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self, Link::Tcp(_))
    }

    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Link::Tcp(c) => c.is_connected(),
            Link::Shm(c) => c.is_connected(),
        }
    }

    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            Link::Tcp(c) => c.close_reason(),
            Link::Shm(c) => c.close_reason(),
        }
    }

    pub(crate) fn close(&mut self, reason: CloseReason) {
        match self {
            Link::Tcp(c) => c.close(reason),
            Link::Shm(c) => c.close(reason),
        }
    }

    /// The front message and the send side, borrowed together (the handler reads the
    /// one and writes the other, zero-copy).
    pub(crate) fn front_split(&mut self) -> Option<(Msg<'_>, SendSide<'_>)> {
        match self {
            Link::Tcp(c) => c.front_split().map(|(m, s)| (m, SendSide::Tcp(s))),
            Link::Shm(c) => c.data().front_split().map(|(m, s)| (m, SendSide::Shm(s))),
        }
    }

    /// The send side alone (no message borrowed).
    pub(crate) fn sender(&mut self) -> SendSide<'_> {
        match self {
            Link::Tcp(c) => SendSide::Tcp(c.sender()),
            Link::Shm(c) => SendSide::Shm(c.data().sender()),
        }
    }

    pub(crate) fn pop(&mut self) {
        match self {
            Link::Tcp(c) => c.pop(),
            Link::Shm(c) => c.pop(),
        }
    }

    /// The socket to register for readiness (TCP: the data stream; SHM: the control
    /// stream).
    pub(crate) fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Link::Tcp(c) => c.stream_mut(),
            Link::Shm(c) => c.control().stream_mut(),
        }
    }

    pub(crate) fn on_readable(&mut self, now: Nanos) {
        match self {
            Link::Tcp(c) => {
                c.on_readable(now);
            }
            Link::Shm(c) => {
                shm_poll(c, now);
            }
        }
    }

    pub(crate) fn on_writable(&mut self, now: Nanos) {
        match self {
            Link::Tcp(c) => {
                c.on_writable(now);
            }
            Link::Shm(c) => {
                shm_poll(c, now);
            }
        }
    }

    /// Finds out now whether the peer is still there: reads the socket (an EOF or
    /// reset closes the link) and, for shared memory, checks the peer's lock.
    pub(crate) fn check_alive(&mut self, now: Nanos) {
        match self {
            Link::Tcp(c) => {
                c.on_readable(now);
            }
            Link::Shm(c) => {
                if matches!(c.peer_alive(), Ok(false)) {
                    c.close(CloseReason::PeerDied);
                } else {
                    shm_poll(c, now);
                }
            }
        }
    }

    /// Output is waiting (TCP): try to write it at the end of the poll.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Link::Tcp(c) => c.wants_write(),
            Link::Shm(_) => false,
        }
    }

    pub(crate) fn check_timers(&mut self, now: Nanos) {
        match self {
            Link::Tcp(c) => {
                c.check_timers(now);
            }
            Link::Shm(c) => {
                shm_poll(c, now);
            }
        }
    }

    /// Reads again if the last read stopped at the read budget before the socket was
    /// drained: with edge-triggered readiness no new event would come for those bytes.
    pub(crate) fn pump(&mut self, now: Nanos) {
        if let Link::Tcp(c) = self {
            if c.read_more() {
                c.on_readable(now);
            }
        }
    }

    /// Whether messages may be waiting without a readiness event (SHM rings have no
    /// readiness; TCP has bytes already buffered).
    pub(crate) fn may_have_messages(&self) -> bool {
        match self {
            Link::Tcp(c) => c.has_buffered(),
            Link::Shm(_) => true,
        }
    }
}

/// The control work of a shared-memory link, seen by the whole connection. Fix: the
/// group used to poll only the control part (`c.control().poll(now)`), whose verdict
/// (peer closed, died or timed out) reaches the data part's view — which
/// `is_connected` reads — only at the data part's next poll or refresh, which never
/// came: a dropped SHM client was never reported disconnected and its slot and load
/// stayed taken. The connection's own `poll` does the control work and then refreshes
/// the data part's view (and publishes staged messages, applies close requests).
fn shm_poll(c: &mut ShmConnection<TcpStream>, now: Nanos) {
    Transport::poll(c, now);
}
