//! Read-only inspection of a store file for tools (`tcpshm inspect FILE`): safe on a
//! live store, without disturbing its owner.

use crate::boot::BootId;
use crate::check::{evaluate, CheckReport};
use crate::commit::Commit;
use crate::error::InspectError;
use crate::layout::{HeaderInfo, SESSION_WORDS};
use crate::recovery::Image;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::walk::frames;
use std::path::{Path, PathBuf};

/// What a store file holds, read without its lock from a consistent snapshot
/// ([`Store::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// The immutable header.
    pub header: HeaderInfo,
    /// Boot id of the machine session that last opened the file for writing.
    pub writer_boot: BootId,
    /// Whether that is this machine session (a live owner's words are current; else
    /// the machine restarted since and `open` will trust only synced state).
    pub same_session: bool,
    /// The live words and ring indices as found.
    pub live: LiveWords,
    /// The two commit record slots (`None`: no valid record).
    pub commits: [Option<CommitInfo>; 2],
    /// What `open` would do: the verdict and every finding.
    pub check: CheckReport,
    /// The state `open` would resume from, if it would open.
    pub state: Option<StoreState>,
    /// The queued messages of that state, oldest first.
    pub frames: Vec<InspectedFrame>,
}

/// The live words of a store file, as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveWords {
    /// First unacknowledged seq.
    pub acked: u64,
    /// Consumed count of the peer's messages.
    pub consumed: u64,
    /// Seq written to the wire.
    pub send_cursor: u64,
    /// The `next_seq` hint.
    pub next_seq_hint: u64,
    /// The connection layer's session words.
    pub session: [u64; SESSION_WORDS],
    /// Ring read index (bytes ever released).
    pub ring_read: u64,
    /// Ring write index (bytes ever published).
    pub ring_write: u64,
}

/// A commit record: the state one sync made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitInfo {
    /// Its number (1, 2, … over the life of the file).
    pub number: u64,
    /// Made in `Durability::Sync` (else a `Process` record, which promises nothing).
    pub sync: bool,
    /// First unacknowledged seq.
    pub acked: u64,
    /// Next seq.
    pub next_seq: u64,
    /// Consumed count.
    pub consumed: u64,
    /// Send cursor.
    pub send_cursor: u64,
    /// Session words.
    pub session: [u64; SESSION_WORDS],
    /// Ring bytes of its batch (the bytes its checksum covers).
    pub batch_bytes: u64,
}

/// The logical state of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreState {
    /// First unacknowledged seq.
    pub first_unacked: u64,
    /// Next seq.
    pub next_seq: u64,
    /// Consumed count of the peer's messages.
    pub consumed: u64,
    /// Seq written to the wire.
    pub send_cursor: u64,
    /// Session words.
    pub session: [u64; SESSION_WORDS],
}

/// One queued message, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectedFrame {
    /// Its seq.
    pub seq: u64,
    /// The ack stamped into it.
    pub ack: u64,
    /// Its type.
    pub msg_type: u16,
    /// Its bytes (after the 24-byte header).
    pub payload: Vec<u8>,
}

impl From<Commit> for CommitInfo {
    fn from(c: Commit) -> CommitInfo {
        CommitInfo {
            number: c.number,
            sync: c.sync,
            acked: c.acked,
            next_seq: c.next_seq,
            consumed: c.consumed,
            send_cursor: c.send_cursor,
            session: c.session,
            batch_bytes: c.write - c.check_from,
        }
    }
}

impl Store {
    /// Reads the store file at `path` without taking its lock, repairing or writing
    /// anything — safe on a live store, whose owner is not disturbed — and returns its
    /// header, live words, commit records, what `open` would do and the messages it
    /// would resume with. The owner may be writing meanwhile: the copy is checked for
    /// consistency and retried, and [`InspectError::ChangedWhileReading`] is returned
    /// rather than a misread if the owner keeps changing it. (A foreign process that
    /// truncates the file while it is read makes the read fault: `SIGBUS`.)
    ///
    /// ```
    /// use tcpshm_persist::{Options, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-inspect-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// s.alloc(2).unwrap().unwrap().copy_from_slice(b"hi");
    /// s.push(9, 0).unwrap();
    /// let i = Store::inspect(s.path()).unwrap(); // while `s` holds the lock
    /// assert_eq!((i.header.local, i.same_session), (me, true));
    /// assert_eq!((i.frames.len(), i.frames[0].msg_type, &i.frames[0].payload[..]), (1, 9, &b"hi"[..]));
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection, InspectError> {
        let snap = Snapshot::take(path.as_ref())?;
        Ok(inspect_image(&snap.path, snap.info, &snap.image(), BootId::current()))
    }

    /// The validating check for tools (`tcpshm check`): [`check`](crate::check).
    pub fn check(path: impl AsRef<Path>) -> Result<CheckReport, InspectError> {
        crate::check::check(path)
    }
}

pub(crate) fn inspect_image(path: &Path, header: HeaderInfo, img: &Image<'_>, now: BootId) -> Inspection {
    let (check, plan) = evaluate(img, now);
    let live = img.live();
    let mut state = None;
    let mut out = Vec::new();
    if let Some(p) = &plan {
        let st = p.state;
        state = Some(StoreState {
            first_unacked: st.acked,
            next_seq: st.next_seq,
            consumed: st.consumed,
            send_cursor: st.send_cursor,
            session: st.session,
        });
        let count = (st.next_seq - st.acked) as usize;
        for f in frames(img.data(), st.first, st.write, img.max_payload).take(count).flatten() {
            out.push(InspectedFrame { seq: f.seq, ack: f.ack, msg_type: f.msg_type, payload: f.payload.to_vec() });
        }
    }
    Inspection {
        path: path.to_path_buf(),
        header,
        writer_boot: live.boot,
        same_session: live.boot.same_session(&now),
        live: LiveWords {
            acked: live.acked,
            consumed: live.consumed,
            send_cursor: live.send_cursor,
            next_seq_hint: live.hint,
            session: live.session,
            ring_read: live.read,
            ring_write: live.write,
        },
        commits: img.slots().map(|c| c.map(CommitInfo::from)),
        check,
        state,
        frames: out,
    }
}
