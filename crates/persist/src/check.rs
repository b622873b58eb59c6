//! A validating check of a store file for tools (`tcpshm check`): what `open` would
//! find and do, as typed findings, without taking the lock or writing anything.

use crate::boot::BootId;
use crate::error::{Inconsistency, InspectError};
use crate::outcome::Recovery;
use crate::recovery::{plan, Image, Plan, Refusal};
use crate::snapshot::Snapshot;
use std::path::Path;
use tcpshm_ring::var::AttachError;

/// One thing a [check](check) (or `open`) found in a store file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// The file was last written in another machine session (or the boot id is
    /// unknown): the machine restarted since, so only what completed syncs made
    /// durable is trusted.
    MachineRestarted {
        /// Boot id recorded by the last writer.
        recorded: BootId,
    },
    /// The newest commit record's batch does not match its checksum: that sync was
    /// cut by the restart; the previous commit is used.
    CommitIncomplete {
        /// Its number.
        commit: u64,
        /// Checksum in the record.
        stored: u32,
        /// Checksum of the bytes in the file.
        computed: u32,
    },
    /// Messages pushed after the last completed sync, dropped by the roll-back (at
    /// least this many).
    UnsyncedDropped {
        /// Seq of the first.
        from_seq: u64,
        /// How many.
        count: u64,
    },
    /// Acknowledged messages still queued (an acknowledgement interrupted by a crash,
    /// or in `Sync` mode space waiting for the next sync): open releases them.
    AckedFramesQueued {
        /// How many.
        count: u64,
    },
    /// A live word disagrees with the state recovery settles on and is rewritten:
    /// the `next_seq` hint, or after a restart a counter newer than the last sync.
    CounterRepaired {
        /// Which word.
        field: &'static str,
        /// Value in the file.
        found: u64,
        /// Value recovery uses.
        repaired: u64,
    },
    /// After a restart of a `Process`-mode store: the state is consistent but not
    /// verified (no power-loss promise was made).
    Unverified,
}

/// The verdict of a [check](check).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// `open` would succeed, recovering as described.
    Opens(Recovery),
    /// `open` would refuse: the ring header is damaged.
    RingDamaged(AttachError),
    /// `open` would refuse: the state is inconsistent, or synced data is damaged.
    /// [`Store::salvage`](crate::Store::salvage) recovers the valid prefix.
    Damaged(Inconsistency),
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Whether and how `open` would succeed.
    pub verdict: Verdict,
    /// Everything notable, in the order found (empty for a clean file).
    pub findings: Vec<Finding>,
}

/// Checks the store file at `path` the way [`Store::open`](crate::Store::open) would,
/// on a consistent snapshot, without taking its lock, repairing or writing anything:
/// safe on a live store. Errors only when the file cannot be read as a store at all
/// (I/O, not a store, damaged header, wrong length) or kept changing while read.
///
/// ```
/// use tcpshm_persist::{check, Options, Store, Verdict, Recovery};
/// use tcpshm_proto::Name;
/// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-check-{}", std::process::id()));
/// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
/// let (s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
/// let report = check(s.path()).unwrap(); // while the store is open
/// assert_eq!(report.verdict, Verdict::Opens(Recovery::Resumed { acked_frames: 0 }));
/// assert!(report.findings.is_empty());
/// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
/// ```
pub fn check(path: impl AsRef<Path>) -> Result<CheckReport, InspectError> {
    let snap = Snapshot::take(path.as_ref())?;
    Ok(check_image(&snap.image(), BootId::current()))
}

pub(crate) fn check_image(img: &Image<'_>, now: BootId) -> CheckReport {
    evaluate(img, now).0
}

/// The check's report and, if the image would open, the recovery plan.
pub(crate) fn evaluate(img: &Image<'_>, now: BootId) -> (CheckReport, Option<Plan>) {
    let mut findings = Vec::new();
    let (verdict, plan) = match plan(img, now, &mut findings) {
        Ok(p) => (Verdict::Opens(p.recovery), Some(p)),
        Err(Refusal::Ring(e)) => (Verdict::RingDamaged(e), None),
        Err(Refusal::Inconsistent(e)) => (Verdict::Damaged(e), None),
    };
    (CheckReport { verdict, findings }, plan)
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::MachineRestarted { recorded } => write!(
                f,
                "the machine restarted since the last write (writer's boot id {recorded}): only synced state is trusted"
            ),
            Finding::CommitIncomplete { commit, stored, computed } => write!(
                f,
                "sync #{commit} was cut by the restart (batch checksum {computed:#010x}, recorded {stored:#010x}): \
                 the previous sync is used"
            ),
            Finding::UnsyncedDropped { from_seq, count } => {
                write!(f, "{count} messages pushed after the last sync (from seq {from_seq}) are dropped")
            }
            Finding::AckedFramesQueued { count } => {
                write!(f, "{count} acknowledged messages are still queued (released at open)")
            }
            Finding::CounterRepaired { field, found, repaired } => {
                write!(f, "counter `{field}` is {found} in the file; recovery uses {repaired}")
            }
            Finding::Unverified => {
                f.write_str("written before a machine restart in Process mode: consistent, not verified")
            }
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Opens(Recovery::Created) => f.write_str("opens (new)"),
            Verdict::Opens(Recovery::Resumed { .. }) => f.write_str("opens, resumed as written"),
            Verdict::Opens(Recovery::RolledBack { commit, dropped, .. }) => {
                write!(f, "opens, rolled back to sync #{commit} ({dropped} unsynced messages dropped)")
            }
            Verdict::Opens(Recovery::Unverified { .. }) => f.write_str("opens, unverified (machine restarted)"),
            Verdict::RingDamaged(e) => write!(f, "DAMAGED: send queue region: {e}"),
            Verdict::Damaged(e) => write!(f, "DAMAGED: {e}"),
        }
    }
}

impl Verdict {
    /// Whether `open` would refuse the file (it needs [`Store::salvage`](crate::Store::salvage)
    /// or removal).
    ///
    /// ```
    /// use tcpshm_persist::{Recovery, Verdict};
    /// assert!(!Verdict::Opens(Recovery::Created).is_damaged());
    /// ```
    pub fn is_damaged(&self) -> bool {
        !matches!(self, Verdict::Opens(_))
    }
}
