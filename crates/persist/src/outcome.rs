//! What the whole-file operations did, for the caller to tell its user.

use std::path::PathBuf;
use tcpshm_proto::Name;

/// What [`Store::open`](crate::Store::open) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenOutcome {
    /// No store existed: a new, empty one was created.
    Created,
    /// An existing store was opened as it was (any interrupted acknowledgement finished).
    Opened,
    /// An existing store without an epoch was given the requested one; its queue and
    /// counters were kept.
    EpochAdopted,
    /// The existing store belonged to another epoch of the remote: it was replaced by a
    /// fresh one (queue and counters dropped). Tell the user.
    Reset(ResetInfo),
}

/// What an epoch reset dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetInfo {
    /// The epoch the store had.
    pub previous_epoch: Option<Name>,
    /// Messages that were queued and unacknowledged (now dropped).
    pub dropped: u64,
    /// The dropped session's next seq (messages ever pushed).
    pub previous_next_seq: u64,
    /// The dropped session's consumed count.
    pub previous_consumed: u64,
}

/// What [`Store::switch_epoch`](crate::Store::switch_epoch) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochChange {
    /// The store already had this epoch.
    Unchanged,
    /// The store had no epoch: it now has this one, queue and counters kept.
    Adopted,
    /// The store had another epoch: it was reset.
    Reset(ResetInfo),
}

/// What [`Store::migrate`](crate::Store::migrate) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Capacity of the file before.
    pub from_capacity: usize,
    /// Capacity now.
    pub to_capacity: usize,
    /// Messages moved (0 if the capacity was already the configured one).
    pub moved: u64,
}

/// A store file in a directory, as listed by [`Store::list`](crate::Store::list).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoreEntry {
    /// Local name.
    pub local: Name,
    /// Remote name.
    pub remote: Name,
    /// The file.
    pub path: PathBuf,
}
