//! What the whole-file operations did, for the caller to tell its user.

use std::path::PathBuf;
use tcpshm_proto::Name;

/// What [`Store::open`](crate::Store::open) did. How the file's state was recovered
/// (after a crash of the process or of the machine) is told by
/// [`Store::recovery`](crate::Store::recovery).
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

/// How [`Store::open`](crate::Store::open) brought the file back to a consistent
/// state ([`Store::recovery`](crate::Store::recovery)). See the crate documentation
/// ("Crash safety", "Durability") for what survives what.
///
/// ```
/// use tcpshm_persist::{Options, Recovery, Store};
/// use tcpshm_proto::Name;
/// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-recovery-{}", std::process::id()));
/// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
/// let (s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
/// assert_eq!(s.recovery(), Recovery::Created);
/// drop(s);
/// let (s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
/// assert_eq!(s.recovery(), Recovery::Resumed { acked_frames: 0 });
/// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// The file was created (or rebuilt: migration, epoch change, salvage) by this
    /// handle: nothing to recover.
    Created,
    /// The machine has not restarted since the file was last written: the store
    /// resumes exactly where the last handle (or a killed process) left it, in either
    /// durability mode. `acked_frames` acknowledged messages were still queued (an
    /// acknowledgement interrupted by a crash, or in `Sync` mode space that waits for
    /// the next sync) and are dropped.
    Resumed {
        /// Acknowledged messages found queued.
        acked_frames: u64,
    },
    /// The machine restarted (power loss, kernel crash, reboot) since the store was
    /// last written in [`Durability::Sync`](crate::Durability::Sync): the store holds
    /// exactly the state its last completed sync made durable — messages, acks,
    /// consumed count, send cursor and session words — and nothing after it.
    RolledBack {
        /// Number of the commit (the sync) resumed from.
        commit: u64,
        /// A later sync was in progress when the machine stopped and did not complete
        /// (its record reached the disk, not all of its messages): it was ignored.
        cut_sync: bool,
        /// Messages pushed after that sync, as far as the file shows, now dropped
        /// (at least this many: pushes that left no trace on the disk are not counted).
        dropped: u64,
    },
    /// The machine restarted since the store was last written in
    /// [`Durability::Process`](crate::Durability::Process), which makes no promise
    /// about power loss: the state is what had reached the disk, checked for
    /// consistency (hints repaired) but not verified — a message pushed shortly before
    /// the restart may hold stale bytes. Use `Durability::Sync` where it matters.
    Unverified {
        /// Acknowledged messages found queued (dropped).
        acked_frames: u64,
    },
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
