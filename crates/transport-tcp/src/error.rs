//! Why an attach failed, and the internal "this connection ends now" value.

use tcpshm_persist::StoreError;
use tcpshm_proto::session::SeqMismatch;
use tcpshm_proto::{CloseReason, ProtocolError};

/// Why [`StreamConnection::attach`](crate::StreamConnection::attach) refused a new link.
/// The stream is dropped and the connection stays down, its
/// [`close_reason`](tcpshm_proto::Transport::close_reason) saying the same.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The two sides' sequence numbers do not fit: one side lost state (which, and
    /// what, is in the detail). Resuming would lose or repeat messages. Use
    /// [`check_login`](crate::StreamConnection::check_login) before answering a login
    /// to refuse it with [`LoginStatus::SeqMismatch`](tcpshm_proto::login::LoginStatus::SeqMismatch).
    #[error("sequence mismatch at login: {0}")]
    SeqMismatch(#[from] SeqMismatch),
    /// The send queue could not be positioned for the resend (a corrupt store).
    #[error("send queue storage failed: {0}")]
    Storage(#[from] StoreError),
}

/// A poll step's verdict: the connection ends with `reason`; `tell_peer` says whether
/// a best-effort `CLOSE` frame goes out first (not when the peer closed or the link broke).
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) reason: CloseReason,
    pub(crate) tell_peer: bool,
}

impl Fail {
    /// The link is gone or the peer ended it: nothing to tell.
    pub(crate) fn quiet(reason: CloseReason) -> Fail {
        Fail { reason, tell_peer: false }
    }

    /// The store failed: tell the peer why we leave.
    pub(crate) fn storage(e: &StoreError) -> Fail {
        let reason = match e {
            StoreError::Corrupt(c) => CloseReason::Corrupt(c.to_string()),
            other => CloseReason::Storage(other.to_string()),
        };
        Fail { reason, tell_peer: true }
    }

    /// Our own bookkeeping and the store disagree (never expected).
    pub(crate) fn corrupt(what: String) -> Fail {
        Fail { reason: CloseReason::Corrupt(what), tell_peer: true }
    }
}

impl From<ProtocolError> for Fail {
    fn from(e: ProtocolError) -> Self {
        Fail { reason: CloseReason::Protocol(e), tell_peer: true }
    }
}
