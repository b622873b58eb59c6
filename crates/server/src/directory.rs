//! Which group serves each client's session: the *home* of a client name, shared by
//! the control part (which routes logins) and the groups (which open sessions to
//! push to clients that are away).

use crate::policy::GroupId;
use crate::slot::Slot;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tcpshm_proto::Name;

/// Every client name this process has routed or opened, with its home group and its
/// login slot.
///
/// The rule: **a session has one home at a time, the first group to hold it in this
/// process** — the group its first login was admitted to (the
/// [`ShardPolicy`](crate::ShardPolicy) and the [`LoginHandler`](crate::LoginHandler)
/// decide), or the group that opened it to push to the client while it was away.
/// Later logins go home. A lock, not a lock-free table: it is taken once per login
/// (control) and once per session opened from disk (a group), never per message.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    homes: Mutex<HashMap<Name, (GroupId, Arc<Slot>)>>,
}

impl Directory {
    /// The table, locked. A panic while it was held left it consistent (each update
    /// is one insert), so a poisoned lock is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Name, (GroupId, Arc<Slot>)>> {
        self.homes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The home of `client` and its slot, claiming `group` as its home if it has
    /// none yet.
    pub(crate) fn home(&self, client: Name, group: GroupId) -> (GroupId, Arc<Slot>) {
        let mut homes = self.lock();
        let (home, slot) = homes.entry(client).or_insert_with(|| (group, Arc::new(Slot::default())));
        (*home, slot.clone())
    }
}
