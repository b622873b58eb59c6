//! Typed errors of opening a session and of a login.

use crate::files::LostState;
use tcpshm_persist::StoreError;
use tcpshm_proto::handshake::Refusal;
use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::session::ConfigError;
use tcpshm_proto::ProtocolError;
use tcpshm_transport_shm::{RingError, ShmError};
use tcpshm_transport_tcp::ExchangeError;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The store could not be opened (locked by another process, corrupt, another
    /// capacity, ...: the inner error says which, with the path).
    #[error("cannot open the session store: {0}")]
    Store(#[from] tcpshm_persist::OpenError),
    /// The store failed while its numbers were read.
    #[error("session store: {0}")]
    Storage(#[from] StoreError),
    /// The shared-memory directory or file could not be used.
    #[error("shared memory: {0}")]
    Shm(#[from] ShmError),
    /// A shared-memory ring is corrupt.
    #[error("shared memory: {0}")]
    Ring(#[from] RingError),
    /// The session's producers' queue could not be opened, or is corrupt.
    #[error("{0}")]
    Producers(#[from] crate::ProducerError),
}

/// Why a client's login failed. Nothing is lost: queued messages stay queued, and the
/// login may be tried again ([`ConnectError::is_retryable`] tells whether that can
/// help).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A system call failed (connect refused, timed out, reset...).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server refused the login. `status` says why; `text` has the detail (for
    /// [`LoginStatus::Rejected`], the server's handler's own words; for
    /// [`LoginStatus::SeqMismatch`], which side lost its state and what).
    #[error("login refused ({status:?}): {text}")]
    Refused {
        /// The refusal reason.
        status: LoginStatus,
        /// The server's explanation.
        text: String,
    },
    /// This side found that the two sides' sequence numbers do not fit (one side lost
    /// its state); nothing was reset silently. Names this side's files and the
    /// command that resets the session. (Boxed: it names paths, and a login's
    /// `Result` should stay small.)
    #[error("sequence mismatch: {0}")]
    SeqMismatch(Box<LostState>),
    /// The server's bytes were not a valid login reply.
    #[error("protocol error during login: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server closed the connection during the login.
    #[error("the server closed the connection during the login")]
    Closed,
    /// The session store failed.
    #[error("session store: {0}")]
    Storage(#[from] StoreError),
    /// The store could not be reset to the server's new epoch.
    #[error("session store: {0}")]
    Store(#[from] tcpshm_persist::OpenError),
    /// The shared-memory file could not be opened or mapped.
    #[error("shared memory: {0}")]
    Shm(#[from] ShmError),
    /// A shared-memory ring is corrupt.
    #[error("shared memory: {0}")]
    Ring(#[from] RingError),
    /// The login request could not be encoded (a field over its bound).
    #[error("cannot encode the login request: {0}")]
    Encode(#[from] tcpshm_proto::EncodeError),
    /// The session failed while the login completed (its store or a ring).
    #[error("the session failed during the login: {0}")]
    Failed(tcpshm_proto::CloseReason),
    /// Moving the queued messages to the new medium does not fit.
    #[error("{count} queued messages cannot move to the new medium: its queue is full ({what})")]
    QueueTooSmall {
        /// Messages that could not move.
        count: u64,
        /// Which queue.
        what: &'static str,
    },
}

impl ConnectError {
    /// Whether trying the same login again later can succeed (a network error, a
    /// server that is full or restarting, a login of the same client still in
    /// progress), as opposed to a refusal that stays until someone acts (a lost
    /// state, a wrong name or version, a rejected credential, a disabled transport,
    /// limits that do not agree, a corrupt file).
    ///
    /// ```
    /// use tcpshm_connection::ConnectError;
    /// use tcpshm_proto::login::LoginStatus;
    /// let e = ConnectError::Refused { status: LoginStatus::ServerFull, text: String::new() };
    /// assert!(e.is_retryable());
    /// let e = ConnectError::Refused { status: LoginStatus::SeqMismatch, text: String::new() };
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Io { .. } | ConnectError::Closed => true,
            ConnectError::Refused { status, .. } => {
                matches!(status, LoginStatus::AlreadyLoggedIn | LoginStatus::ServerFull | LoginStatus::StorageError)
            }
            // A busy file: the previous process of this client has not let go yet.
            ConnectError::Shm(ShmError::Busy { .. } | ShmError::NotFound(_) | ShmError::Unstable(_)) => true,
            _ => false,
        }
    }
}

impl From<Refusal> for ConnectError {
    fn from(r: Refusal) -> Self {
        ConnectError::Refused { status: r.status, text: r.text }
    }
}

impl From<ExchangeError> for ConnectError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Io { op, source } => ConnectError::Io { op, source },
            ExchangeError::Frame(f) => ConnectError::Protocol(f.into()),
            ExchangeError::Closed => ConnectError::Closed,
            other => ConnectError::Io { op: "login", source: std::io::Error::other(other.to_string()) },
        }
    }
}
