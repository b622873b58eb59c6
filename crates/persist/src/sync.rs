//! Making the store durable: group commit, commit records, and when acknowledged
//! space may be reused.
//!
//! A commit (one sync) is: compute the CRC32 of the batch (the ring bytes published
//! since the last commit), write a [commit record](crate::commit) with the whole
//! logical state into the slot that does not hold the record the durable state rests
//! on, `msync` the header page and the batch in one call (one disk flush), and only
//! then release the space of the frames acknowledged since the last commit.
//!
//! Invariants (the power-loss argument in the crate documentation rests on them):
//!
//! 1. **A sync never overwrites what the durable state holds.** New frames go to free
//!    space; in `Sync` mode space freed by an ack is released only after the commit
//!    that made the ack durable returned; the record goes to the other slot.
//! 2. **A record vouches for its batch.** If the power fails during the `msync`, the
//!    record may reach the disk without all of its batch: the batch checksum then
//!    fails and recovery uses the previous record, whose batch had reached the disk
//!    before (its `msync` returned) and which invariant 1 kept intact.
//! 3. **Every byte published since the last commit is in the `msync` range**: the
//!    range runs from the start of the file to the end of the batch (the whole file
//!    if the batch wrapped), in `Process` mode too (a `flush`, a switch of mode), so
//!    a commit's queue is on the disk once its `msync` returns: the bytes before the
//!    batch went out with earlier commits and were never overwritten since.
//! 4. **The first commit of a handle** that opened an existing file in the same
//!    machine session first makes the whole file durable (an `msync` of all of it),
//!    because the page cache may hold a record of a killed process whose sync never
//!    completed, and bytes that process published after its last commit; then the
//!    slot to keep is known. Its checksum covers the whole queue.

use crate::commit::{ring_crc, Commit};
use crate::error::{OpenError, StoreError};
use crate::files::io_err;
use crate::layout::{DATA, HEADER_PAGE, OFF_COMMIT};
use crate::options::Durability;
use crate::store::{Store, SYNC_LOG};
use tcpshm_ring::var;

impl Store {
    /// Counts `n` operations toward the group commit; commits when `Sync { every }`
    /// is reached.
    #[inline]
    pub(crate) fn note_ops(&mut self, n: u64) -> Result<(), StoreError> {
        self.commits.dirty = true;
        self.commits.unsynced += n;
        if let Durability::Sync { every } = self.durability {
            if every != 0 && self.commits.unsynced >= every as u64 {
                return self.commit();
            }
        }
        Ok(())
    }

    /// Writes every change made so far to the disk and waits for it (one `msync`), in
    /// any durability mode. Nothing to do: no system call. In `Sync` mode, what a
    /// `flush` (or a group commit) made durable survives power loss; in `Process`
    /// mode later operations make no such promise (see the crate documentation).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.commits.dirty || self.commits.fresh {
            self.commit()?;
        }
        Ok(())
    }

    /// Operations since the last sync.
    pub fn unsynced(&self) -> u64 {
        self.commits.unsynced
    }

    /// Changes the durability policy. Leaving [`Durability::Sync`] syncs once (a
    /// record saying no power-loss promise holds any more must be durable before
    /// acknowledged space is reused); entering it costs nothing (the promise holds
    /// from the first sync on). Fails only if that sync fails.
    ///
    /// ```
    /// use tcpshm_persist::{Durability, Options, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-dur-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// s.set_durability(Durability::Sync { every: 0 }).unwrap(); // sync only on flush
    /// s.alloc(1).unwrap().unwrap()[0] = 7;
    /// s.push(1, 0).unwrap();
    /// assert_eq!(s.unsynced(), 1);
    /// s.flush().unwrap();
    /// assert_eq!(s.unsynced(), 0);
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn set_durability(&mut self, d: Durability) -> Result<(), StoreError> {
        let was_sync = self.sync_mode;
        self.durability = d;
        self.sync_mode = matches!(d, Durability::Sync { .. });
        if was_sync && !self.sync_mode {
            self.commit()?;
            self.consumer.release();
        }
        Ok(())
    }

    /// `Sync` mode, acknowledged space not yet released: if the frame for a `len`-byte
    /// message might not fit without it, commit now to release it.
    #[cold]
    pub(crate) fn reclaim_for(&mut self, len: usize) -> Result<(), StoreError> {
        let frame = self.producer.frame_size(len + tcpshm_proto::frame::RING_PREFIX_LEN);
        // A frame may need up to another frame's worth skipped at the ring's end.
        if self.producer.free_bytes() < 2 * frame {
            self.commit()?;
        }
        Ok(())
    }

    /// One commit: record, one `msync`, then release (see the module documentation).
    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        let c = self.commits;
        if c.fresh {
            // Invariant 4: we cannot tell which record in the page cache is durable.
            self.msync(self.map.len())?;
        }
        let (read, write) = (self.consumer.read_index(), self.producer.published_index());
        let check_from = match (self.sync_mode, c.fresh) {
            // A `Process` record promises nothing: it vouches for no batch.
            (false, _) => write,
            (true, true) => read,
            (true, false) => c.synced_write.max(read),
        };
        let data = &self.map[DATA..];
        let record = Commit {
            number: c.next_number,
            sync: self.sync_mode,
            acked: self.acked,
            next_seq: self.next_seq,
            read,
            write,
            check_from,
            consumed: self.consumed,
            send_cursor: self.send_cursor,
            session: self.session,
            batch_crc: ring_crc(data, check_from, write),
        };
        let slot = 1 - c.keep_slot;
        let off = OFF_COMMIT[slot];
        self.map[off..off + crate::commit::RECORD_LEN].copy_from_slice(&record.encode());
        let range = if c.fresh {
            // Everything else was made durable above.
            HEADER_PAGE
        } else {
            self.hull(c.synced_write, write)
        };
        self.msync(range)?;
        // The record is durable: the acks it holds may now free their space.
        if self.sync_mode {
            self.consumer.release();
        }
        self.commits = crate::store::CommitState {
            unsynced: 0,
            dirty: false,
            keep_slot: slot,
            next_number: c.next_number + 1,
            synced_write: write,
            fresh: false,
            ..self.commits
        };
        Ok(())
    }

    /// `msync(MS_SYNC)` of the file's first `len` bytes, noted for the tests.
    fn msync(&mut self, len: usize) -> Result<(), StoreError> {
        let c = &mut self.commits;
        if c.log_len < SYNC_LOG {
            c.log[c.log_len] = (0, len);
        }
        c.log_len += 1;
        self.map.flush_range(0, len).map_err(StoreError::Sync)
    }

    /// Test support for the power-loss exploration, not part of the API: the file
    /// ranges (`start, end`) this handle `msync`ed since the last call, in order.
    /// Panics if more were made than it keeps.
    #[doc(hidden)]
    pub fn take_synced_ranges(&mut self) -> Vec<(usize, usize)> {
        let c = &mut self.commits;
        assert!(c.log_len <= SYNC_LOG, "{} msyncs since the last call", c.log_len);
        let out = c.log[..c.log_len].to_vec();
        c.log_len = 0;
        out
    }

    /// Bytes from the start of the file that cover the header page, the ring header
    /// and the ring bytes `from..to`: up to `to`'s offset, or the whole file if the
    /// bytes wrapped. (One range: one `msync`, one disk flush; clean pages inside it
    /// cost nothing.)
    fn hull(&self, from: u64, to: u64) -> usize {
        let cap = self.info.capacity as u64;
        if to == from {
            DATA
        } else if to - from >= cap || from % cap >= to % cap {
            self.map.len()
        } else {
            DATA + (to % cap) as usize
        }
    }

    /// The error of a commit made while opening.
    pub(crate) fn sync_failed(&self, e: StoreError) -> OpenError {
        match e {
            StoreError::Sync(source) => io_err(&self.path, "msync", source),
            other => io_err(&self.path, "commit", std::io::Error::other(other.to_string())),
        }
    }
}

const _: () = assert!(DATA == HEADER_PAGE + var::HEADER_LEN);
