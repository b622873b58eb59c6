//! Typed errors: what is wrong with a store file ([`OpenError`]), and why an operation
//! on an open store was refused ([`StoreError`]).

use std::io;
use std::path::PathBuf;
use tcpshm_proto::{Name, NameError};
use tcpshm_ring::var::{AttachError, Corrupt};

/// What is wrong with the immutable store header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The magic number is not ours: not a tcpshm store (or never completely written).
    #[error("not a tcpshm store (magic {magic:#018x}, expected \"TSHMSTOR\")")]
    NotOurs {
        /// The first 8 bytes, little-endian.
        magic: u64,
    },
    /// Written by another format version.
    #[error("store format version {found}; this build reads version {expected}")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The CRC32 of the immutable header fields does not match: the header was
    /// damaged after it was written.
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the header is damaged")]
    Checksum {
        /// CRC in the file.
        stored: u32,
        /// CRC of the bytes in the file.
        computed: u32,
    },
    /// A header field holds an impossible value.
    #[error("header field `{field}` has impossible value {value}")]
    Field {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A name in the header is not a valid name.
    #[error("header field `{field}` is not a valid name: {source}")]
    Name {
        /// Which field.
        field: &'static str,
        /// Why.
        source: NameError,
    },
}

/// The counters or the queued frames of a store contradict each other, or what a
/// completed sync made durable is damaged. Each variant is a state that no sequence of
/// operations, interrupted anywhere by a process crash or (in
/// [`Durability::Sync`](crate::Durability::Sync)) by power loss, can produce:
/// [`Store::salvage`](crate::Store::salvage) recovers the valid prefix of such a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Inconsistency {
    /// A counter holds a value of 2^63 or more (a corrupt word).
    #[error("counter `{field}` holds impossible value {value}")]
    CounterRange {
        /// Which counter.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The ring reported a corrupt index or frame header.
    #[error("{0}")]
    Ring(Corrupt),
    /// A queued frame is not a valid wire frame.
    #[error("queued frame at ring index {index} is not a valid user frame: {reason}")]
    BadFrame {
        /// Ring index of the frame.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Queued frames do not carry consecutive sequence numbers.
    #[error("queued frame at ring index {index} has seq {found}, expected {expected}")]
    SeqBroken {
        /// Ring index of the frame.
        index: u64,
        /// Seq the previous frame implies.
        expected: u64,
        /// Seq in the frame.
        found: u64,
    },
    /// Messages between the acknowledged count and the oldest queued message are missing.
    #[error("acked is {acked} but the oldest queued message has seq {oldest}: messages {acked}..{oldest} are missing")]
    Gap {
        /// The `acked` counter.
        acked: u64,
        /// Seq of the oldest queued frame.
        oldest: u64,
    },
    /// A counter is beyond the next sequence number the queue implies.
    #[error("counter `{field}` is {value}, beyond the next seq {next_seq} the queue holds")]
    Ahead {
        /// Which counter (`acked`, `send_cursor`).
        field: &'static str,
        /// Its value.
        value: u64,
        /// Next seq implied by the queue (last queued seq + 1, or `acked` if empty).
        next_seq: u64,
    },
    /// The ring's write and read indices contradict each other (read beyond write,
    /// more than a ring apart, or off the frame alignment).
    #[error("ring indices are impossible (read {read}, write {write})")]
    RingIndices {
        /// The read index.
        read: u64,
        /// The write index.
        write: u64,
    },
    /// The machine restarted since the store was last written in `Sync` mode, and
    /// neither commit slot holds a valid record: what the syncs made durable is lost.
    #[error("no valid commit record (both slots damaged): the last synced state cannot be found")]
    NoCommit,
    /// The batch of the last completed sync does not match its checksum (and there is
    /// no earlier sync to fall back to): synced bytes were damaged after the sync.
    #[error(
        "the messages made durable by sync #{commit} are damaged (checksum {computed:#010x}, recorded {stored:#010x})"
    )]
    SyncedBatch {
        /// The commit record's number.
        commit: u64,
        /// Checksum in the record.
        stored: u32,
        /// Checksum of the bytes in the file.
        computed: u32,
    },
    /// A commit record with a valid checksum describes frames the queue does not hold
    /// (its count or seqs differ): synced data was damaged, or the record is foreign.
    #[error("sync #{commit} recorded seqs {acked}..{next_seq} but the queue holds {found} frames there")]
    CommitMismatch {
        /// The commit record's number.
        commit: u64,
        /// `acked` in the record.
        acked: u64,
        /// `next_seq` in the record.
        next_seq: u64,
        /// Frames found between the record's ring indices.
        found: u64,
    },
}

/// Why a store could not be opened, created, migrated, reset, salvaged or removed.
/// Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A system call failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Another handle (in this or another process) holds the store open.
    #[error("{}: the store is open elsewhere (locked by another handle or process)", path.display())]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The path exists but is not a regular file (a directory, a symlink...).
    #[error("{}: not a regular file", path.display())]
    NotRegularFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is shorter than the store header page.
    #[error("{}: file is {len} bytes, shorter than the {} byte store header (truncated)", path.display(), crate::HEADER_PAGE)]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The store header is not ours, of another version, damaged, or holds a bad field.
    #[error("{}: {source}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: HeaderError,
    },
    /// The header names another pair than the one asked for (a renamed or copied file).
    #[error("{}: store is for {}@{}, not {}@{}", path.display(), found.0, found.1, expected.0, expected.1)]
    NamesDiffer {
        /// The file.
        path: PathBuf,
        /// (local, remote) in the file.
        found: Box<(Name, Name)>,
        /// (local, remote) asked for.
        expected: Box<(Name, Name)>,
    },
    /// The send queue's capacity differs from the configured one. Nothing was read
    /// from the queue; [`Store::migrate`](crate::Store::migrate) moves its messages
    /// into a file of the configured capacity.
    #[error("{}: send queue capacity is {found} bytes, configured {expected} (use Store::migrate to convert)", path.display())]
    CapacityDiffers {
        /// The file.
        path: PathBuf,
        /// Capacity in the file.
        found: usize,
        /// Configured capacity.
        expected: usize,
    },
    /// The file's length is not the one its header implies (truncated or extended).
    #[error("{}: file is {len} bytes but its header implies {expected} (truncated or extended)", path.display())]
    LengthMismatch {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// Header page + ring region.
        expected: u64,
    },
    /// The ring region's own header is invalid or disagrees with the store header.
    #[error("{}: send queue region: {source}", path.display())]
    Ring {
        /// The file.
        path: PathBuf,
        /// What the ring reported.
        source: AttachError,
    },
    /// The counters and the queued frames contradict each other.
    #[error("{}: inconsistent store: {source}", path.display())]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What contradicts what.
        source: Inconsistency,
    },
    /// The configuration is invalid (capacity not a power of two, too small or too large).
    #[error("invalid store configuration: capacity {capacity} must be a power of two in {min}..={max}")]
    Config {
        /// The configured capacity.
        capacity: usize,
        /// Smallest capacity.
        min: usize,
        /// Largest capacity.
        max: usize,
    },
    /// Migration: the queued messages do not fit in the new capacity.
    #[error("{}: the {queued} queued messages ({bytes} bytes) do not fit in a send queue of {capacity} bytes", path.display())]
    DoesNotFit {
        /// The file.
        path: PathBuf,
        /// Messages queued.
        queued: u64,
        /// Ring bytes they occupy (with padding).
        bytes: u64,
        /// The new capacity.
        capacity: usize,
    },
}

/// Why an operation on an open [`Store`](crate::Store) was refused. Small and cheap:
/// the hot path returns it by value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The message is longer than [`Store::max_payload`](crate::Store::max_payload).
    #[error("message of {len} bytes exceeds the store's maximum of {max} bytes")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// `push` without a successful `alloc` before it.
    #[error("push without a successful alloc")]
    NothingAllocated,
    /// [`Store::ack_beyond`](crate::Store::ack_beyond) while messages are staged (they
    /// hold seqs the other medium carried): publish them first.
    #[error("{staged} staged messages hold seqs beyond the queue: publish them before ack_beyond")]
    Staged {
        /// Messages staged.
        staged: u64,
    },
    /// The message type is in the reserved control range.
    #[error("message type {0:#06x} is reserved for control frames")]
    ReservedType(u16),
    /// An acknowledgement beyond the messages sent (never applied).
    #[error("ack of {upto} is beyond the next seq {next_seq}")]
    AckBeyondSent {
        /// The ack.
        upto: u64,
        /// The store's next seq.
        next_seq: u64,
    },
    /// The consumed count may only grow.
    #[error("consumed count may not go back from {current} to {requested}")]
    ConsumedBackwards {
        /// Current count.
        current: u64,
        /// Requested count.
        requested: u64,
    },
    /// A seq outside the queued range `acked..=next_seq`.
    #[error("seq {seq} is outside the queued range {acked}..={next_seq}")]
    SeqOutOfRange {
        /// The seq asked for.
        seq: u64,
        /// First unacknowledged seq.
        acked: u64,
        /// Next seq.
        next_seq: u64,
    },
    /// The cursor points at frames already acknowledged and released, or was made
    /// before the store was reset or migrated.
    #[error("send cursor at seq {seq} is stale (acked {acked}, or the store was rebuilt)")]
    StaleCursor {
        /// The cursor's seq.
        seq: u64,
        /// First unacknowledged seq.
        acked: u64,
    },
    /// The frame at the cursor carries another seq: the cursor does not belong to this store.
    #[error("frame at the send cursor has seq {found}, expected {expected}")]
    CursorMismatch {
        /// The cursor's seq.
        expected: u64,
        /// Seq in the frame.
        found: u64,
    },
    /// A message that should be queued is not there: the file was changed behind the
    /// store's back.
    #[error("message {seq} is missing from the send queue")]
    Missing {
        /// The seq looked for.
        seq: u64,
    },
    /// The queue memory is corrupt (someone else wrote the file). Drop the store and
    /// reopen it: `open` repairs what a crash can leave and names anything else.
    #[error("{0}")]
    Corrupt(Corrupt),
    /// A synchronisation (msync) failed: the operation was applied but is not known to
    /// be durable. Treat it as fatal for durability (the kernel may have dropped the
    /// dirty pages).
    #[error("sync to disk failed: {0}")]
    Sync(io::Error),
}

/// Why a read-only [inspection](crate::Inspection) or [check](crate::check) of a
/// store file could not read it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// A system call failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The file is shorter than the store header page.
    #[error("{}: file is {len} bytes, shorter than the {} byte store header (truncated)", path.display(), crate::HEADER_PAGE)]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The store header is not ours, of another version, damaged, or holds a bad field.
    #[error("{}: {source}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: HeaderError,
    },
    /// The file's length is not the one its header implies.
    #[error("{}: file is {len} bytes but its header implies {expected} (truncated or extended)", path.display())]
    LengthMismatch {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// Header page + ring region.
        expected: u64,
    },
    /// The store's owner kept changing the file while it was being read: no consistent
    /// snapshot was obtained in this many attempts. Nothing was misread; try again
    /// (a busy store may need a quieter moment).
    #[error("{}: the file changed while being read ({attempts} attempts)", path.display())]
    ChangedWhileReading {
        /// The file.
        path: PathBuf,
        /// Snapshots attempted.
        attempts: u32,
    },
}

impl From<Corrupt> for StoreError {
    fn from(c: Corrupt) -> Self {
        StoreError::Corrupt(c)
    }
}
