//! The login handshake of both sides, as pure decisions.
//!
//! The client sends a [`LoginRequest`]; the server decides with [`server_verdict`] and
//! answers a [`LoginReply`]; the client reads it with [`client_verdict`]. Both then
//! complete with [`Session::after_login`](crate::session::Session::after_login). The
//! rules, each in one place:
//!
//! 1. **Transport**: a server serves the transports it enabled
//!    ([`LoginStatus::TransportDisabled`]).
//! 2. **Epoch**: a session is identified by (client name, server name). A client whose
//!    last server had another name starts a fresh session with this one: the server
//!    counts its numbers as zero, and its own stored session with the client must
//!    then fit that — otherwise one of them lost state. The client, told a new server
//!    name, drops its old session ([`Epoch::Renamed`]) and reports it. A client that
//!    never logged in keeps what it queued ([`Epoch::First`]).
//! 3. **Limits**: each side tells the largest message it accepts; a message already
//!    queued on either side above the other's limit could never be delivered, so the
//!    server refuses the login ([`LoginStatus::LimitExceeded`]) with the seq-less
//!    detail of which side queues what. Afterwards `alloc` refuses such messages.
//! 4. **Numbers**: the two sides' numbers must fit
//!    ([`SeqState::after_login`](crate::session::SeqState::after_login)); a mismatch
//!    means one side lost state, said from the client's point of view
//!    ([`LoginStatus::SeqMismatch`]).
//!
//! ```
//! use tcpshm_proto::handshake::{client_verdict, server_verdict, Epoch, ServerRules};
//! use tcpshm_proto::login::{Limits, LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind};
//! use tcpshm_proto::session::{Session, SessionConfig};
//! use tcpshm_proto::Name;
//!
//! let (client, server) = (Name::new("trader-1").unwrap(), Name::new("Server20180714").unwrap());
//! let limits = Limits { max_message: 4096, queue_capacity: 1 << 20 };
//! let req = LoginRequest {
//!     client,
//!     last_server: None,
//!     transport: TransportKind::Tcp,
//!     numbers: SessionNumbers::default(),
//!     limits,
//!     largest_queued: 5,
//!     credential: b"",
//! };
//! let rules = ServerRules { name: server, tcp: true, shm: true, limits };
//! let mut ours = Session::new(SessionConfig::default(), 1 << 20, Default::default(), 0);
//! let peer = server_verdict(&req, &rules, &ours, 0).unwrap();
//! ours.after_login(&peer.numbers, peer.limits, 0).unwrap();
//!
//! let reply = LoginReply {
//!     status: LoginStatus::Ok,
//!     server,
//!     numbers: SessionNumbers::default(),
//!     limits,
//!     shm_file_id: 0,
//!     text: "",
//! };
//! let accepted = client_verdict(&reply, None).unwrap();
//! assert_eq!(accepted.epoch, Epoch::First);
//! ```

use crate::login::{Limits, LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind};
use crate::session::{SeqMismatch, Session};
use crate::Name;

/// What a server knows of itself when it decides a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRules {
    /// The server's name (the epoch of its sessions).
    pub name: Name,
    /// TCP sessions are served.
    pub tcp: bool,
    /// Shared-memory sessions are served.
    pub shm: bool,
    /// The server's limits (its largest accepted message; its queue capacity).
    pub limits: Limits,
}

/// A login refusal: the status the reply carries and its detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {text}")]
pub struct Refusal {
    /// The reason code.
    pub status: LoginStatus,
    /// The detail (at most [`MAX_TEXT_LEN`](crate::login::MAX_TEXT_LEN) bytes reach
    /// the wire).
    pub text: String,
}

/// What one side takes from the other's login: its numbers (as they count for this
/// session) and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerLogin {
    /// The peer's numbers.
    pub numbers: SessionNumbers,
    /// The peer's limits.
    pub limits: Limits,
}

/// The server's decision on `req`, given its stored session with this client
/// (`ours`, with its numbers as of now) and the largest message queued in it (0 if
/// empty). The user's login handler has already accepted the client. On success,
/// complete with [`Session::after_login`] on `ours` and reply with its numbers.
///
/// ```
/// use tcpshm_proto::handshake::{server_verdict, ServerRules};
/// use tcpshm_proto::login::{Limits, LoginRequest, LoginStatus, SessionNumbers, TransportKind};
/// use tcpshm_proto::session::{SeqRange, Session, SessionConfig};
///
/// let rules = ServerRules { name: "S".parse().unwrap(), tcp: true, shm: false, limits: Limits { max_message: 100, queue_capacity: 0 } };
/// // Our session with this client: it consumed 2 of our messages, 1 is queued.
/// let ours = Session::new(SessionConfig::default(), 0, SeqRange::new(2, 3).unwrap(), 0);
/// let mut req = LoginRequest {
///     client: "c".parse().unwrap(), last_server: None, transport: TransportKind::Shm,
///     numbers: SessionNumbers::default(), limits: Limits::default(), largest_queued: 0, credential: b"",
/// };
/// assert_eq!(server_verdict(&req, &rules, &ours, 0).unwrap_err().status, LoginStatus::TransportDisabled);
/// req.transport = TransportKind::Tcp;
/// // A fresh client, but it had consumed messages of ours: the client lost its state.
/// let r = server_verdict(&req, &rules, &ours, 0).unwrap_err();
/// assert_eq!(r.status, LoginStatus::SeqMismatch);
/// assert!(r.text.starts_with("client c lost its state"), "{}", r.text);
/// ```
pub fn server_verdict(
    req: &LoginRequest<'_>,
    rules: &ServerRules,
    ours: &Session,
    our_largest_queued: u32,
) -> Result<PeerLogin, Refusal> {
    let enabled = match req.transport {
        TransportKind::Tcp => rules.tcp,
        TransportKind::Shm => rules.shm,
    };
    if !enabled {
        return Err(Refusal {
            status: LoginStatus::TransportDisabled,
            text: format!("{} is not enabled on server {}", req.transport, rules.name),
        });
    }
    let keeps_queue = keeps_queue(req, rules);
    let numbers = counted_numbers(req, rules);
    if keeps_queue && req.largest_queued > rules.limits.max_message {
        return Err(Refusal {
            status: LoginStatus::LimitExceeded,
            text: format!(
                "client {} queues a message of {} bytes; server {} accepts at most {}",
                req.client, req.largest_queued, rules.name, rules.limits.max_message
            ),
        });
    }
    if req.limits.max_message > 0 && our_largest_queued > req.limits.max_message {
        return Err(Refusal {
            status: LoginStatus::LimitExceeded,
            text: format!(
                "server {} queues a message of {} bytes; client {} accepts at most {}",
                rules.name, our_largest_queued, req.client, req.limits.max_message
            ),
        });
    }
    if let Err(m) = ours.check_login(&numbers) {
        return Err(Refusal { status: LoginStatus::SeqMismatch, text: mismatch_text(&m, &req.client, &rules.name) });
    }
    Ok(PeerLogin { numbers, limits: req.limits })
}

/// Whether the client's queue and numbers belong to this session: a client coming
/// from another server starts a fresh session with us (its numbers and its queue
/// belong to that other session, which it drops); a client that never logged in
/// anywhere keeps its queue (and its numbers) for us.
fn keeps_queue(req: &LoginRequest<'_>, rules: &ServerRules) -> bool {
    req.last_server.is_none_or(|s| s == rules.name)
}

/// The client's numbers as they count for this session (the epoch rule): its own if
/// it last logged in to this server or never logged in, zero if it comes from
/// another server. What [`server_verdict`] checks the server's session against.
///
/// ```
/// use tcpshm_proto::handshake::{counted_numbers, ServerRules};
/// use tcpshm_proto::login::{Limits, LoginRequest, SessionNumbers, TransportKind};
/// use tcpshm_proto::session::SeqRange;
/// let rules = ServerRules { name: "Day2".parse().unwrap(), tcp: true, shm: true, limits: Limits::default() };
/// let numbers = SessionNumbers { consumed: 5, seen: 5, send_range: SeqRange::new(1, 3).unwrap() };
/// let mut req = LoginRequest {
///     client: "c".parse().unwrap(), last_server: Some("Day1".parse().unwrap()), transport: TransportKind::Tcp,
///     numbers, limits: Limits::default(), largest_queued: 0, credential: b"",
/// };
/// assert_eq!(counted_numbers(&req, &rules), SessionNumbers::default());
/// req.last_server = Some(rules.name);
/// assert_eq!(counted_numbers(&req, &rules), numbers);
/// ```
pub fn counted_numbers(req: &LoginRequest<'_>, rules: &ServerRules) -> SessionNumbers {
    if keeps_queue(req, rules) {
        req.numbers
    } else {
        SessionNumbers::default()
    }
}

/// How a client's session relates to the server it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// The same server as last time: the session resumes.
    Same,
    /// The client's first login in this session (it had no server yet).
    First,
    /// A server with another name: the old session is dropped (the caller resets its
    /// queue and numbers before completing the login) and a fresh one starts.
    Renamed {
        /// The server the dropped session was with.
        from: Name,
    },
}

/// What a client takes from an accepting reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The server's name.
    pub server: Name,
    /// How the session relates to it.
    pub epoch: Epoch,
    /// The server's numbers and limits.
    pub peer: PeerLogin,
    /// The server's shared-memory file for this session (0: none).
    pub shm_file_id: u64,
}

/// The client's reading of `reply`, given the server it last logged in to. A refusal
/// comes back as such, with the server's text.
///
/// ```
/// use tcpshm_proto::handshake::{client_verdict, Epoch};
/// use tcpshm_proto::login::{LoginReply, LoginStatus};
/// let (old, new) = ("Srv1".parse().unwrap(), "Srv2".parse().unwrap());
/// let mut reply = LoginReply::refusal(LoginStatus::Ok, new, "");
/// assert_eq!(client_verdict(&reply, Some(old)).unwrap().epoch, Epoch::Renamed { from: old });
/// assert_eq!(client_verdict(&reply, Some(new)).unwrap().epoch, Epoch::Same);
/// reply.status = LoginStatus::ServerFull;
/// assert_eq!(client_verdict(&reply, Some(new)).unwrap_err().status, LoginStatus::ServerFull);
/// ```
pub fn client_verdict(reply: &LoginReply<'_>, last_server: Option<Name>) -> Result<Accepted, Refusal> {
    if reply.status != LoginStatus::Ok {
        return Err(Refusal { status: reply.status, text: reply.text.to_owned() });
    }
    let epoch = match last_server {
        None => Epoch::First,
        Some(s) if s == reply.server => Epoch::Same,
        Some(from) => Epoch::Renamed { from },
    };
    Ok(Accepted {
        server: reply.server,
        epoch,
        peer: PeerLogin { numbers: reply.numbers, limits: reply.limits },
        shm_file_id: reply.shm_file_id,
    })
}

/// A mismatch said from the client's point of view (the server finds it, the client
/// reads it): which side lost its state first, then the detail as the server sees it.
///
/// ```
/// use tcpshm_proto::handshake::mismatch_text;
/// use tcpshm_proto::session::SeqMismatch;
/// let m = SeqMismatch::LocalLostSent { peer_seen: 9, next_seq: 0 };
/// let t = mismatch_text(&m, &"c".parse().unwrap(), &"S".parse().unwrap());
/// assert!(t.starts_with("server S lost its state"), "{t}");
/// ```
pub fn mismatch_text(m: &SeqMismatch, client: &Name, server: &Name) -> String {
    lost_state_text(m, client, server, "")
}

/// [`mismatch_text`] with the remedy the detecting side adds (its files and the
/// command that resets the session, which only the connection layer knows) between
/// who lost its state and the detail: the order keeps what an operator acts on within
/// a reply's [`MAX_TEXT_LEN`](crate::login::MAX_TEXT_LEN), the detail last.
///
/// ```
/// use tcpshm_proto::handshake::lost_state_text;
/// use tcpshm_proto::session::SeqMismatch;
/// let m = SeqMismatch::PeerLostSent { seen: 3, peer_next: 0 };
/// let t = lost_state_text(&m, &"c".parse().unwrap(), &"S".parse().unwrap(), "run `tcpshm reset /d/S@c.tcpshm`");
/// assert!(t.starts_with("client c lost its state; run `tcpshm reset /d/S@c.tcpshm`; as the server sees it:"), "{t}");
/// ```
pub fn lost_state_text(m: &SeqMismatch, client: &Name, server: &Name, remedy: &str) -> String {
    let who = if m.peer_lost_state() { format!("client {client}") } else { format!("server {server}") };
    if remedy.is_empty() {
        format!("{who} lost its state; as the server sees it: {m}")
    } else {
        format!("{who} lost its state; {remedy}; as the server sees it: {m}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SeqRange, SessionConfig};

    fn rules() -> ServerRules {
        ServerRules {
            name: Name::new("S").unwrap(),
            tcp: true,
            shm: true,
            limits: Limits { max_message: 1000, queue_capacity: 1 << 16 },
        }
    }

    fn req(last: Option<&str>, numbers: SessionNumbers, largest: u32, max: u32) -> LoginRequest<'static> {
        LoginRequest {
            client: Name::new("c").unwrap(),
            last_server: last.map(|s| Name::new(s).unwrap()),
            transport: TransportKind::Tcp,
            numbers,
            limits: Limits { max_message: max, queue_capacity: 4096 },
            largest_queued: largest,
            credential: b"",
        }
    }

    fn nums(consumed: u64, first: u64, next: u64) -> SessionNumbers {
        SessionNumbers { consumed, seen: consumed, send_range: SeqRange::new(first, next).unwrap() }
    }

    #[test]
    fn same_epoch_resumes_with_the_clients_numbers() {
        let ours = Session::new(SessionConfig::default(), 0, SeqRange::new(2, 5).unwrap(), 3);
        let p = server_verdict(&req(Some("S"), nums(2, 1, 4), 0, 1000), &rules(), &ours, 0).unwrap();
        assert_eq!(p.numbers, nums(2, 1, 4));
        assert_eq!(p.limits.max_message, 1000);
    }

    #[test]
    fn another_epoch_counts_as_a_fresh_client() {
        let empty = Session::new(SessionConfig::default(), 0, SeqRange::default(), 0);
        // The client's numbers (and its queue) from yesterday's server do not count...
        let p = server_verdict(&req(Some("Yesterday"), nums(7, 3, 9), 5000, 1000), &rules(), &empty, 0).unwrap();
        assert_eq!(p.numbers, SessionNumbers::default());
        // ...those of a client that never logged in do: it keeps its queue.
        let p = server_verdict(&req(None, nums(0, 0, 4), 10, 1000), &rules(), &empty, 0).unwrap();
        assert_eq!(p.numbers, nums(0, 0, 4));
        let r = server_verdict(&req(None, nums(0, 0, 4), 5000, 1000), &rules(), &empty, 0).unwrap_err();
        assert_eq!(r.status, LoginStatus::LimitExceeded);
        // ...and a "fresh" client that had consumed some of ours lost its state; one
        // that only has messages of ours waiting is simply resent them.
        let waiting = Session::new(SessionConfig::default(), 0, SeqRange::new(0, 1).unwrap(), 0);
        assert!(server_verdict(&req(None, nums(0, 0, 0), 0, 1000), &rules(), &waiting, 0).is_ok());
        let ours = Session::new(SessionConfig::default(), 0, SeqRange::new(1, 1).unwrap(), 0);
        let r = server_verdict(&req(None, nums(0, 0, 0), 0, 1000), &rules(), &ours, 0).unwrap_err();
        assert_eq!(r.status, LoginStatus::SeqMismatch);
    }

    #[test]
    fn queued_messages_over_the_other_limit_are_refused_by_the_server() {
        let ours = Session::new(SessionConfig::default(), 0, SeqRange::default(), 0);
        let r = server_verdict(&req(Some("S"), nums(0, 0, 0), 1001, 1000), &rules(), &ours, 0).unwrap_err();
        assert_eq!(r.status, LoginStatus::LimitExceeded);
        assert_eq!(r.text, "client c queues a message of 1001 bytes; server S accepts at most 1000");
        let r = server_verdict(&req(Some("S"), nums(0, 0, 0), 0, 100), &rules(), &ours, 101).unwrap_err();
        assert_eq!(r.text, "server S queues a message of 101 bytes; client c accepts at most 100");
        assert!(server_verdict(&req(Some("S"), nums(0, 0, 0), 1000, 101), &rules(), &ours, 101).is_ok());
    }

    #[test]
    fn a_mismatch_says_who_lost_state() {
        // The client consumed 4 of ours but we pushed 2: we (the server) lost state.
        let ours = Session::new(SessionConfig::default(), 0, SeqRange::new(0, 2).unwrap(), 0);
        let r = server_verdict(&req(Some("S"), nums(4, 0, 0), 0, 1000), &rules(), &ours, 0).unwrap_err();
        assert!(r.text.starts_with("server S lost its state"), "{}", r.text);
    }

    #[test]
    fn client_reads_refusals_and_epochs() {
        let s = Name::new("S").unwrap();
        let mut reply = LoginReply::refusal(LoginStatus::Ok, s, "");
        reply.shm_file_id = 77;
        let a = client_verdict(&reply, None).unwrap();
        assert_eq!((a.server, a.epoch, a.shm_file_id), (s, Epoch::First, 77));
        let reply = LoginReply::refusal(LoginStatus::SeqMismatch, s, "client c lost its state");
        let r = client_verdict(&reply, Some(s)).unwrap_err();
        assert_eq!((r.status, r.text.as_str()), (LoginStatus::SeqMismatch, "client c lost its state"));
    }
}
