//! Why a client could not open or connect.

use tcpshm_proto::login::LoginStatus;

/// Why [`Client::open`](crate::Client::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error("invalid client configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The session store could not be opened (see the inner error: locked by another
    /// process, corrupt, another capacity, ...).
    #[error("cannot open the session store: {0}")]
    Store(#[from] tcpshm_persist::OpenError),
    /// The shared-memory directory or prefix is unusable.
    #[error("shared-memory setup: {0}")]
    Shm(String),
}

/// Why [`Client::connect`](crate::Client::connect) failed. The session is unchanged:
/// queued messages stay queued, and `connect` may be called again.
#[derive(Debug, thiserror::Error)]
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
    /// [`LoginStatus::Rejected`], the server's handler's own words).
    #[error("login refused ({status:?}): {text}")]
    Refused {
        /// The refusal reason.
        status: LoginStatus,
        /// The server's explanation.
        text: String,
    },
    /// The server's bytes were not a valid login reply.
    #[error("protocol error during login: {0}")]
    Protocol(String),
    /// The two sides' sequence numbers do not fit (one side lost its state). The
    /// text says which side lost what; nothing was reset silently.
    #[error("sequence mismatch: {0}")]
    SeqMismatch(String),
    /// The local store failed during the epoch change or attach.
    #[error("session store: {0}")]
    Storage(String),
    /// The shared-memory file could not be opened or locked.
    #[error("shared memory: {0}")]
    Shm(String),
}
