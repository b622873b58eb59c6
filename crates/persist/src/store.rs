//! The open store: the send queue of wire frames, the counters, and the file that
//! holds them.

use crate::boot::BootId;
use crate::check::Finding;
use crate::error::{Inconsistency, OpenError, StoreError};
use crate::files::{io_err, Dir};
use crate::layout::{
    file_len, put_u64, read_header, HeaderInfo, COUNTER_LIMIT, HEADER_PAGE, OFF_ACKED, OFF_BOOT, OFF_CONSUMED,
    OFF_NEXT_SEQ, OFF_SEND_CURSOR, OFF_SESSION, RING_OFF_READ, RING_OFF_WRITE, SESSION_WORDS,
};
use crate::lifecycle::Expect;
use crate::options::Durability;
use crate::outcome::Recovery;
use crate::recovery::{self, Image, Live, Refusal, State};
use memmap2::MmapMut;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tcpshm_proto::frame::{msg_type, RING_PREFIX_LEN};
use tcpshm_proto::Name;
use tcpshm_ring::var::{self, AllocError, Consumer, Msg, Producer};

// Counters are native `AtomicU64`s in a little-endian file format.
const _: () = assert!(cfg!(target_endian = "little"), "tcpshm-persist supports little-endian targets only");

/// Source of [`SendCursor`](crate::SendCursor) generations: a cursor made by one
/// store (or before a rebuild) is refused by another.
pub(crate) static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The persistent store of one (local, remote) pair: the send queue of messages not
/// yet acknowledged by the peer, stored as complete wire frames in a mmap'd file, and
/// the receive side's consumed count. See the crate documentation for the file
/// layout, the crash-safety argument and the durability modes.
///
/// Holding a `Store` holds an exclusive lock on its file: a second open, in this
/// process or another, fails with [`OpenError::Locked`].
///
/// ```
/// use tcpshm_persist::{Options, Store, OpenOutcome};
/// use tcpshm_proto::Name;
/// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-{}", std::process::id()));
/// let (me, peer) = (Name::new("client").unwrap(), Name::new("server").unwrap());
/// let (mut store, outcome) = Store::open(&dir, me, peer, &Options::new(1 << 16), None, 0).unwrap();
/// assert_eq!(outcome, OpenOutcome::Created);
///
/// // Zero-copy: write the message in place, then push it with its type and our ack.
/// store.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// assert_eq!(store.push(7, store.consumed()).unwrap(), 0); // its seq
///
/// // The transport writes runs of whole wire frames straight from the mapping.
/// let cursor = store.cursor_at(0).unwrap();
/// let run = store.send_run(cursor, 1 << 16).unwrap().unwrap();
/// assert_eq!((run.count, run.bytes.len()), (1, 32)); // 24-byte header + 5, padded
///
/// // The peer consumed it: drop it from the queue.
/// assert_eq!(store.ack(1).unwrap(), 1);
/// assert_eq!(store.queue_depth(), 0);
/// drop(store);
/// # Store::remove(&dir, me, peer).unwrap();
/// # std::fs::remove_dir(&dir).ok();
/// ```
#[derive(Debug)]
pub struct Store {
    // The ring ends first: they point into `map` and are dropped before it.
    pub(crate) producer: Producer<'static>,
    pub(crate) consumer: Consumer<'static>,
    pub(crate) map: MmapMut,
    pub(crate) base: *mut u8,
    /// Holds the flock; closed (unlocked) after the mapping is gone.
    pub(crate) _file: File,
    /// The directory, by path: reopened for the rare whole-file operations (epoch
    /// reset, migration) rather than held open, so a store costs one descriptor (its
    /// file), not two — it matters for a server with 10,000 sessions.
    pub(crate) dir_path: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) info: HeaderInfo,
    pub(crate) durability: Durability,
    /// `durability` is `Sync`: space freed by an ack is released at the next commit.
    pub(crate) sync_mode: bool,
    pub(crate) max_payload: usize,
    pub(crate) acked: u64,
    pub(crate) next_seq: u64,
    pub(crate) consumed: u64,
    pub(crate) send_cursor: u64,
    pub(crate) session: [u64; SESSION_WORDS],
    /// Frames staged by `push_more`, not yet published.
    pub(crate) staged: u64,
    /// The seq/ack prefix of the frame from the last successful `alloc`.
    pub(crate) pending: Option<*mut u8>,
    pub(crate) generation: u64,
    /// How `open` recovered the file.
    pub(crate) recovery: Recovery,
    pub(crate) commits: CommitState,
}

/// Where the store stands with its commit records (see `sync.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitState {
    /// Operations since the last sync (group commit counter).
    pub(crate) unsynced: u64,
    /// Anything changed since the last sync.
    pub(crate) dirty: bool,
    /// The slot holding the record the durable state rests on: the next record goes
    /// to the other one.
    pub(crate) keep_slot: usize,
    /// Number of the next record.
    pub(crate) next_number: u64,
    /// Ring write index of the last record this handle made durable (the next batch
    /// starts there).
    pub(crate) synced_write: u64,
    /// No record of this handle is known durable yet, and the page cache may hold a
    /// record whose sync never completed: the next commit first makes the whole file
    /// durable (then it knows which slot to keep).
    pub(crate) fresh: bool,
    /// The file ranges `msync`ed since the power-loss tests last asked
    /// ([`Store::take_synced_ranges`]); `SYNC_LOG` at most, `overflow` beyond.
    pub(crate) log: [(usize, usize); SYNC_LOG],
    pub(crate) log_len: usize,
}

/// Ranges kept for [`Store::take_synced_ranges`].
pub(crate) const SYNC_LOG: usize = 4;

/// How a file came to `from_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An existing file.
    Existing,
    /// A file just built under a temporary name; `synced`: it was fsynced whole.
    Built { synced: bool },
}

// SAFETY: the raw pointers (`base`, `pending`) address the store's own mapping, which
// moves with it; nothing else in the process refers to that mapping (the lock keeps
// other handles out), so moving the whole store to another thread is sound. It is not
// `Sync`: every operation needs `&mut self`.
unsafe impl Send for Store {}

impl Store {
    /// Maps a locked file, validates the header, decides the state to resume from
    /// (`recovery::plan`: strictly checked, or rolled back to the last completed sync
    /// after a machine restart), installs it, and attaches the ring.
    pub(crate) fn from_file(
        file: File,
        dir: Dir,
        path: PathBuf,
        expect: &Expect,
        durability: Durability,
        origin: Origin,
    ) -> Result<Store, OpenError> {
        let len = file.metadata().map_err(|e| io_err(&path, "fstat", e))?.len();
        if len < HEADER_PAGE as u64 {
            return Err(OpenError::Truncated { path, len });
        }
        // SAFETY: we hold the file's exclusive lock, so no cooperating process writes
        // it. A process that ignores the lock and truncates the file would make access
        // fault (SIGBUS) — documented in the crate docs; every byte read is validated.
        let mut map = unsafe { memmap2::MmapOptions::new().len(len as usize).map_mut(&file) }
            .map_err(|e| io_err(&path, "mmap", e))?;
        let mut page = [0u8; HEADER_PAGE];
        page.copy_from_slice(&map[..HEADER_PAGE]);
        let info = read_header(&page).map_err(|source| OpenError::Header { path: path.clone(), source })?;
        if info.local != expect.local || info.remote != expect.remote {
            return Err(OpenError::NamesDiffer {
                path,
                found: Box::new((info.local, info.remote)),
                expected: Box::new((expect.local, expect.remote)),
            });
        }
        if let Some(c) = expect.capacity {
            if c != info.capacity {
                return Err(OpenError::CapacityDiffers { path, found: info.capacity, expected: c });
            }
        }
        let expected = file_len(info.capacity) as u64;
        if len != expected {
            return Err(OpenError::LengthMismatch { path, len, expected });
        }
        // Decide on the bytes as they are; nothing is written before the decision.
        let now = BootId::current();
        let plan = match recovery::plan(&Image::new(&map, info.capacity), now, &mut Vec::<Finding>::new()) {
            Ok(p) => p,
            Err(Refusal::Ring(source)) => return Err(OpenError::Ring { path, source }),
            Err(Refusal::Inconsistent(source)) => return Err(OpenError::Inconsistent { path, source }),
        };
        install(&mut map, &plan.state, &plan.live, now);
        let base = map.as_mut_ptr();
        let region = var::region_size(info.capacity);
        // SAFETY: `base + HEADER_PAGE .. base + len` is inside the mapping, which the
        // store owns and drops after both ends (field order); the file lock makes these
        // the only ring ends for the file in any process.
        let (producer, consumer) = unsafe { var::attach_raw(base.add(HEADER_PAGE), region) }
            .map_err(|source| OpenError::Ring { path: path.clone(), source })?;
        let max_payload = producer.max_payload() - RING_PREFIX_LEN;
        let st = plan.state;
        let newest = recovery::newest(&plan.slots);
        let next_number = plan.slots.iter().flatten().map(|c| c.number).max().unwrap_or(0) + 1;
        let commits = match (origin, plan.base) {
            // A just-built file synced whole: its record (slot 0) is durable.
            (Origin::Built { synced: true }, _) => CommitState {
                unsynced: 0,
                dirty: false,
                keep_slot: 0,
                next_number,
                synced_write: st.write,
                fresh: false,
                log: [(0, 0); SYNC_LOG],
                log_len: 0,
            },
            // Rolled back after a restart: the record read back from the disk is durable.
            (_, Some((slot, c))) => CommitState {
                unsynced: 0,
                dirty: false,
                keep_slot: slot,
                next_number,
                synced_write: c.write,
                fresh: false,
                log: [(0, 0); SYNC_LOG],
                log_len: 0,
            },
            // The page cache may hold a record whose sync never completed.
            _ => CommitState {
                unsynced: 0,
                dirty: false,
                keep_slot: newest.map_or(1, |(slot, _)| slot),
                next_number,
                synced_write: st.write,
                fresh: true,
                log: [(0, 0); SYNC_LOG],
                log_len: 0,
            },
        };
        let recovery = match origin {
            Origin::Built { .. } => Recovery::Created,
            Origin::Existing => plan.recovery,
        };
        let sync_mode = matches!(durability, Durability::Sync { .. });
        let mut store = Store {
            producer,
            consumer,
            map,
            base,
            _file: file,
            dir_path: dir.path.clone(),
            path,
            info,
            durability,
            sync_mode,
            max_payload,
            acked: st.acked,
            next_seq: st.next_seq,
            consumed: st.consumed,
            send_cursor: st.send_cursor,
            session: st.session,
            staged: 0,
            pending: None,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            recovery,
            commits,
        };
        // Acknowledged frames still queued: consumed now, released at once in
        // `Process` mode, at the next commit in `Sync` mode.
        for _ in 0..st.acked_frames {
            store.consumer.pop_more().map_err(|e| {
                let source = match e {
                    var::PopError::Corrupt(c) => Inconsistency::Ring(c),
                    var::PopError::Empty => Inconsistency::RingIndices { read: st.read, write: st.write },
                };
                OpenError::Inconsistent { path: store.path.clone(), source }
            })?;
        }
        if !sync_mode {
            // A `Sync` record protects its queue from reuse until a newer record
            // replaces it on the disk. Of the two slots only the older is known to be
            // durable (the newer may be a killed process's unfinished sync): if either
            // holds a `Sync` record, make a `Process` record durable before releasing.
            if plan.slots.iter().flatten().any(|c| c.sync) {
                store.commit().map_err(|e| store.sync_failed(e))?;
            }
            store.consumer.release();
        }
        Ok(store)
    }

    // ---- the send queue -------------------------------------------------------

    /// Reserves room for a `len`-byte message and returns its bytes, in place in the
    /// mapping, to be filled and then published by [`push`](Self::push) (or staged by
    /// [`push_more`](Self::push_more)). `Ok(None)` when the queue is full now (the peer
    /// has not acknowledged enough); [`StoreError::TooLarge`] above
    /// [`max_payload`](Self::max_payload). A second `alloc` replaces the first. The
    /// bytes are not zeroed.
    ///
    /// In [`Durability::Sync`], space freed by an ack is reused only once a sync has
    /// made the ack durable; when the queue would be full without that space, `alloc`
    /// syncs first (so it can fail with [`StoreError::Sync`]).
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, StoreError> {
        if len > self.max_payload {
            return Err(StoreError::TooLarge { len, max: self.max_payload });
        }
        // Acknowledged space not yet released (`Sync` mode: until the next commit).
        if self.consumer.read_index() != self.consumer.released_index() {
            self.reclaim_for(len)?;
        }
        match self.producer.alloc(len + RING_PREFIX_LEN) {
            Ok(Some(buf)) => {
                let (prefix, msg) = buf.split_at_mut(RING_PREFIX_LEN);
                self.pending = Some(prefix.as_mut_ptr());
                Ok(Some(msg))
            }
            Ok(None) => {
                self.pending = None;
                Ok(None)
            }
            Err(AllocError::TooLarge { .. }) => Err(StoreError::TooLarge { len, max: self.max_payload }),
            Err(AllocError::Corrupt(c)) => Err(StoreError::Corrupt(c)),
        }
    }

    /// Publishes the message from the last [`alloc`](Self::alloc) (and any staged by
    /// [`push_more`](Self::push_more)) with type `msg_type` (a user type) and `ack`
    /// (our consumed count of the peer's messages, usually [`consumed`](Self::consumed))
    /// stamped into its header; returns its seq. Visible (and crash-safe) from here.
    #[inline]
    pub fn push(&mut self, msg_type: u16, ack: u64) -> Result<u64, StoreError> {
        let seq = self.push_more(msg_type, ack)?;
        self.publish()?;
        Ok(seq)
    }

    /// Completes the message from the last [`alloc`](Self::alloc) and gives it its
    /// seq, but does not publish it: a batch becomes visible at once, with one index
    /// store, at the next [`publish`](Self::publish) or [`push`](Self::push). Until
    /// then a crash loses the whole batch, never part of it.
    #[inline]
    pub fn push_more(&mut self, msg_type: u16, ack: u64) -> Result<u64, StoreError> {
        if !msg_type::is_user(msg_type) {
            return Err(StoreError::ReservedType(msg_type));
        }
        let p = self.pending.take().ok_or(StoreError::NothingAllocated)?;
        let seq = self.next_seq + self.staged;
        // SAFETY: `p` is the first 16 bytes of the payload `alloc` reserved in the
        // mapping; the producer does not publish or reuse them before `push_more`
        // below, and `pending` was taken so they are written once.
        unsafe {
            p.cast::<[u8; 8]>().write(seq.to_le_bytes());
            p.add(8).cast::<[u8; 8]>().write(ack.to_le_bytes());
        }
        self.producer.push_more(msg_type).map_err(|_| StoreError::NothingAllocated)?;
        self.staged += 1;
        Ok(seq)
    }

    /// Publishes every staged message (one index store), then counts them toward the
    /// group commit.
    #[inline]
    pub fn publish(&mut self) -> Result<(), StoreError> {
        let n = self.publish_staged();
        if n == 0 {
            return Ok(());
        }
        self.note_ops(n)
    }

    /// Drops every message staged by [`push_more`](Self::push_more) since the last
    /// publish (and one allocated and not pushed): they are never published, their
    /// seqs are free again (the next push gets the first of them) and their room in
    /// the queue is reused. Returns how many were dropped. The abort of an
    /// all-or-nothing batch: a process killed before the publish loses the same
    /// messages the same way, so a batch is all or nothing whatever happens.
    ///
    /// ```
    /// use tcpshm_persist::{Options, Store};
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-doc-discard-{}", std::process::id()));
    /// let (me, peer) = ("me".parse().unwrap(), "peer".parse().unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(1 << 16), None, 0).unwrap();
    /// s.alloc(1).unwrap().unwrap()[0] = 1;
    /// assert_eq!(s.push(1, 0).unwrap(), 0);
    /// for _ in 0..2 {
    ///     s.alloc(1).unwrap().unwrap();
    ///     s.push_more(2, 0).unwrap();
    /// }
    /// assert_eq!(s.discard_staged(), 2);
    /// s.alloc(1).unwrap().unwrap();
    /// assert_eq!(s.push(3, 0).unwrap(), 1, "the seqs of the batch were given back");
    /// # drop(s); std::fs::remove_dir_all(&dir).ok();
    /// ```
    #[inline]
    pub fn discard_staged(&mut self) -> u64 {
        self.pending = None;
        self.producer.discard_staged();
        std::mem::take(&mut self.staged)
    }

    #[inline]
    pub(crate) fn publish_staged(&mut self) -> u64 {
        let n = self.staged;
        if n > 0 {
            // The ring's release store makes the frames visible: the commit point.
            self.producer.publish();
            self.next_seq += n;
            self.staged = 0;
            // Only a hint (checked at open): stored after the commit point.
            self.counter(OFF_NEXT_SEQ).store(self.next_seq, Ordering::Relaxed);
        }
        n
    }

    /// The peer has consumed every message below `upto`: drop them from the queue.
    /// Returns how many were dropped; an ack at or behind the current one is ignored
    /// (`Ok(0)`); an ack beyond [`next_seq`](Self::next_seq) is refused
    /// ([`StoreError::AckBeyondSent`]) and never applied.
    ///
    /// Crash-safe: `acked` is stored first (the commit point), then the frames are
    /// released; `open` finishes the release if a crash came between. In
    /// [`Durability::Sync`] their space is released only after the next sync made the
    /// ack durable (a power loss then still finds every frame the last sync promised).
    #[inline]
    pub fn ack(&mut self, upto: u64) -> Result<u64, StoreError> {
        if upto <= self.acked {
            return Ok(0);
        }
        if upto > self.next_seq {
            return Err(StoreError::AckBeyondSent { upto, next_seq: self.next_seq });
        }
        self.counter(OFF_ACKED).store(upto, Ordering::Release);
        let n = self.drop_acked(upto)?;
        self.note_ops(1)?;
        Ok(n)
    }

    /// Consumes the frames below `upto` (`acked` already stored), releases their
    /// space unless `Sync` mode keeps it until the next commit; returns how many.
    #[inline]
    pub(crate) fn drop_acked(&mut self, upto: u64) -> Result<u64, StoreError> {
        let n = upto.min(self.next_seq) - self.acked;
        for _ in 0..n {
            self.consumer.pop_more().map_err(|e| match e {
                var::PopError::Corrupt(c) => StoreError::Corrupt(c),
                var::PopError::Empty => StoreError::Missing { seq: self.acked },
            })?;
        }
        if !self.sync_mode {
            // Release store: ordered after the `acked` store.
            self.consumer.release();
        }
        self.acked = upto;
        Ok(n)
    }

    // ---- the receive side and the informational cursor -------------------------

    /// How many of the peer's messages our user has consumed (the receive-side
    /// commit point; what we ack).
    #[inline]
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Sets the consumed count (one atomic store). It may only grow.
    #[inline]
    pub fn set_consumed(&mut self, n: u64) -> Result<(), StoreError> {
        if n < self.consumed {
            return Err(StoreError::ConsumedBackwards { current: self.consumed, requested: n });
        }
        if n >= COUNTER_LIMIT {
            return Err(StoreError::SeqOutOfRange { seq: n, acked: 0, next_seq: COUNTER_LIMIT - 1 });
        }
        if n == self.consumed {
            return Ok(());
        }
        self.counter(OFF_CONSUMED).store(n, Ordering::Release);
        self.consumed = n;
        self.note_ops(1)
    }

    /// Adds one to the consumed count (after the user popped one of the peer's
    /// messages); returns the new count.
    #[inline]
    pub fn bump_consumed(&mut self) -> Result<u64, StoreError> {
        self.set_consumed(self.consumed + 1)?;
        Ok(self.consumed)
    }

    /// Seq up to which frames were written to the wire (informational, shown by
    /// inspection tools; not used for recovery).
    #[inline]
    pub fn send_cursor(&self) -> u64 {
        self.send_cursor
    }

    /// Records the seq written to the wire. Refused beyond [`next_seq`](Self::next_seq).
    #[inline]
    pub fn set_send_cursor(&mut self, seq: u64) -> Result<(), StoreError> {
        if seq > self.next_seq {
            return Err(StoreError::SeqOutOfRange { seq, acked: self.acked, next_seq: self.next_seq });
        }
        self.counter(OFF_SEND_CURSOR).store(seq, Ordering::Release);
        self.send_cursor = seq;
        self.commits.dirty = true;
        Ok(())
    }

    // ---- state ------------------------------------------------------------------

    /// Seq of the oldest unacknowledged message (= the peer's consumed count).
    #[inline]
    pub fn first_unacked(&self) -> u64 {
        self.acked
    }

    /// Seq the next published message gets (= messages ever published this session).
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Messages published and not acknowledged.
    #[inline]
    pub fn queue_depth(&self) -> u64 {
        self.next_seq - self.acked
    }

    /// Messages staged by [`push_more`](Self::push_more) and not yet published.
    #[inline]
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// Ring bytes free for new frames: what [`alloc`](Self::alloc) can use, counting
    /// (in [`Durability::Sync`]) space acknowledged but kept until the next sync,
    /// which `alloc` reclaims by syncing when it needs it.
    #[inline]
    pub fn free_bytes(&self) -> u64 {
        self.info.capacity as u64 - (self.producer.write_index() - self.consumer.read_index())
    }

    /// Ring bytes taken by queued (published) frames, padding and wrap skips included.
    pub fn queued_bytes(&self) -> u64 {
        self.producer.published_index() - self.consumer.read_index()
    }

    /// Largest message [`alloc`](Self::alloc) accepts (half the capacity less 24).
    #[inline]
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes of the send queue ring.
    pub fn capacity(&self) -> usize {
        self.info.capacity
    }

    /// This side's name.
    pub fn local(&self) -> Name {
        self.info.local
    }

    /// The peer's name.
    pub fn remote(&self) -> Name {
        self.info.remote
    }

    /// The remote's epoch, if known.
    pub fn epoch(&self) -> Option<Name> {
        self.info.epoch
    }

    /// Creation time recorded when the file (or its epoch) was made.
    pub fn created_unix_ns(&self) -> u64 {
        self.info.created_unix_ns
    }

    /// The whole immutable header.
    pub fn header(&self) -> &HeaderInfo {
        &self.info
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability policy.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How [`open`](Self::open) recovered the file: resumed as the last process left
    /// it, or after a machine restart rolled back to the last completed sync (with how
    /// many unsynced messages were dropped), or unverified (`Process` mode).
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    #[inline(always)]
    pub(crate) fn counter(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= HEADER_PAGE);
        // SAFETY: `off` is an 8-aligned offset inside the header page of the mapping
        // (page-aligned base), which lives as long as `self`; these words are only
        // accessed atomically while the store is open.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }
}

impl Drop for Store {
    /// In [`Durability::Sync`] mode, syncs what is left (best effort: an error cannot
    /// be reported from `drop`; call [`Store::flush`] to see it).
    fn drop(&mut self) {
        if self.sync_mode && self.commits.dirty {
            let _ = self.commit();
        }
    }
}

/// Seq, ack and message bytes of a queued frame (the ring payload is `seq ‖ ack ‖ msg`).
#[inline]
pub(crate) fn split_frame<'a>(m: &Msg<'a>) -> (u64, u64, &'a [u8]) {
    let p = m.payload();
    let seq = u64::from_le_bytes(p[0..8].try_into().expect("checked at open"));
    let ack = u64::from_le_bytes(p[8..16].try_into().expect("checked at open"));
    (seq, ack, &p[RING_PREFIX_LEN..])
}

#[inline]
pub(crate) fn frame_seq(m: &Msg<'_>) -> u64 {
    split_frame(m).0
}

/// Writes the recovered state into the live words and the ring indices (only what
/// differs from the file), then this machine session's boot id: from here on, a
/// process crash resumes from the live words.
fn install(map: &mut [u8], st: &State, live: &Live, now: BootId) {
    let mut words = vec![
        (HEADER_PAGE + RING_OFF_READ, live.read, st.read),
        (HEADER_PAGE + RING_OFF_WRITE, live.write, st.write),
        (OFF_ACKED, live.acked, st.acked),
        (OFF_CONSUMED, live.consumed, st.consumed),
        (OFF_SEND_CURSOR, live.send_cursor, st.send_cursor),
        (OFF_NEXT_SEQ, live.hint, st.next_seq),
    ];
    for i in 0..SESSION_WORDS {
        words.push((OFF_SESSION + 8 * i, live.session[i], st.session[i]));
    }
    for (off, found, want) in words {
        if found != want {
            put_u64(map, off, want);
        }
    }
    if live.boot != now {
        map[OFF_BOOT..OFF_BOOT + 16].copy_from_slice(&now.0);
    }
}
