//! The connection table's shared state: one slot per client name, shared by the
//! control thread (which admits logins) and the group that owns the connection.

use crate::sync::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

const FREE: u8 = 0;
const LOGGING_IN: u8 = 1;
const CONNECTED: u8 = 2;

/// The state of one client's connection, shared between control and its group.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    state: AtomicU8,
}

impl Slot {
    /// Control claims a free slot for a login; false if the client is connected or
    /// a login of it is in progress.
    pub(crate) fn claim(&self) -> bool {
        self.state.compare_exchange(FREE, LOGGING_IN, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The group completed the login.
    pub(crate) fn connected(&self) {
        self.state.store(CONNECTED, Ordering::Release);
    }

    /// The login failed or the connection went down: the name may log in again.
    pub(crate) fn free(&self) {
        self.state.store(FREE, Ordering::Release);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.state.load(Ordering::Acquire) == CONNECTED
    }
}

/// Counts shared by control and the groups.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Connections logged in or logging in (pending logins are counted by control).
    pub(crate) live: AtomicUsize,
}

/// What control and every group share: the configuration, the live count and the
/// homes of client names.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) cfg: Arc<crate::ServerConfig>,
    pub(crate) counts: Arc<Counts>,
    pub(crate) dir: Arc<crate::directory::Directory>,
}

/// A group's load (its live connections), read by the sharding policy.
pub(crate) type Load = Arc<AtomicUsize>;
