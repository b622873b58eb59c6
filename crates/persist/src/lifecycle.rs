//! The whole-file operations: open or create, migrate, reset or adopt an epoch,
//! remove, list. Every one that changes a file builds the new file under a temporary
//! name and renames it into place (see [`crate::files`]).

use crate::boot::BootId;
use crate::commit::{ring_crc, Commit, RECORD_LEN};
use crate::error::OpenError;
use crate::files::{self, io_err, Dir};
use crate::layout::{
    file_len, put_u64, write_header, HeaderInfo, DATA, FORMAT_VERSION, FRAME_ALIGN, HEADER_PAGE, OFF_ACKED, OFF_BOOT,
    OFF_COMMIT, OFF_CONSUMED, OFF_NEXT_SEQ, OFF_SEND_CURSOR, OFF_SESSION, SESSION_WORDS,
};
use crate::options::{Durability, Options};
use crate::outcome::{EpochChange, Migration, OpenOutcome, ResetInfo, StoreEntry};
use crate::store::{Origin, Store};
use crate::walk;
use memmap2::MmapMut;
use std::fs::File;
use std::path::Path;
use tcpshm_proto::frame::RING_PREFIX_LEN;
use tcpshm_proto::Name;
use tcpshm_ring::var::{self, AllocError};

/// What `from_file` insists on.
pub(crate) struct Expect {
    pub(crate) local: Name,
    pub(crate) remote: Name,
    /// `None`: accept the file's capacity (migration reads any).
    pub(crate) capacity: Option<usize>,
}

/// Counters of a file being built.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) acked: u64,
    pub(crate) consumed: u64,
    pub(crate) send_cursor: u64,
    pub(crate) next_seq: u64,
    pub(crate) session: [u64; SESSION_WORDS],
}

/// The frames a file being built starts with: the first `count` frames from ring
/// index `from` of a ring data area (an open store's, or a salvaged image's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// The file they come from (named in errors).
    pub(crate) path: &'a Path,
    pub(crate) data: &'a [u8],
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) count: u64,
    pub(crate) max_payload: usize,
}

impl Store {
    /// Opens the store of the pair `local@remote` in `dir` (created, mode 0700, if
    /// missing), or creates it empty. The file is validated completely (see
    /// [`OpenError`]); an acknowledgement interrupted by a crash is finished.
    ///
    /// `epoch`: `None` keeps whatever epoch the file has (a client before its first
    /// login). `Some(e)`: a store without an epoch adopts `e` keeping its queue; a
    /// store of another epoch is reset ([`OpenOutcome::Reset`]); see
    /// [`switch_epoch`](Self::switch_epoch). `created_unix_ns` is recorded in the
    /// header if a file is created or reset (the library reads no clock).
    pub fn open(
        dir: impl AsRef<Path>,
        local: Name,
        remote: Name,
        opts: &Options,
        epoch: Option<Name>,
        created_unix_ns: u64,
    ) -> Result<(Store, OpenOutcome), OpenError> {
        opts.validate()?;
        let dir = Dir::open(dir.as_ref(), true)?;
        let name = files::file_name(&local, &remote);
        let expect = Expect { local, remote, capacity: Some(opts.capacity) };
        loop {
            if let Some(file) = dir.open_locked(&name, false)? {
                let mut store =
                    Store::from_file(file, dir.clone(), dir.join(&name), &expect, opts.durability, Origin::Existing)?;
                let outcome = match epoch {
                    None => OpenOutcome::Opened,
                    Some(e) => match store.switch_epoch(e, created_unix_ns)? {
                        EpochChange::Unchanged => OpenOutcome::Opened,
                        EpochChange::Adopted => OpenOutcome::EpochAdopted,
                        EpochChange::Reset(r) => OpenOutcome::Reset(r),
                    },
                };
                return Ok((store, outcome));
            }
            let info = HeaderInfo {
                version: FORMAT_VERSION,
                capacity: opts.capacity,
                align: FRAME_ALIGN,
                created_unix_ns,
                local,
                remote,
                epoch,
            };
            // Another process may create the same store meanwhile: the loser of the
            // race (its no-replace rename fails) goes round and opens the winner's.
            if let Some(store) = Store::build(&dir, &info, Counters::default(), None, opts.durability, true)? {
                return Ok((store, OpenOutcome::Created));
            }
        }
    }

    /// Converts the store of `local@remote` in `dir` to the capacity in `opts`,
    /// moving every queued message (with its seq and ack) and the counters, crash-
    /// safely: the new file is built under a temporary name, synced and renamed over
    /// the old one. Returns the open store. [`OpenError::DoesNotFit`] if the queued
    /// messages do not fit in the new capacity (nothing is changed).
    ///
    /// ```
    /// use tcpshm_persist::{Options, Store, OpenError};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-migrate-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// s.alloc(3).unwrap().unwrap().copy_from_slice(b"abc");
    /// s.push(1, 0).unwrap();
    /// drop(s);
    /// let bigger = Options::new(1 << 16);
    /// assert!(matches!(Store::open(&dir, me, peer, &bigger, None, 0), Err(OpenError::CapacityDiffers { .. })));
    /// let (s, m) = Store::migrate(&dir, me, peer, &bigger).unwrap();
    /// assert_eq!((m.from_capacity, m.to_capacity, m.moved), (4096, 1 << 16, 1));
    /// assert_eq!((s.first_unacked(), s.next_seq()), (0, 1));
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn migrate(
        dir: impl AsRef<Path>,
        local: Name,
        remote: Name,
        opts: &Options,
    ) -> Result<(Store, Migration), OpenError> {
        opts.validate()?;
        let dir = Dir::open(dir.as_ref(), false)?;
        let name = files::file_name(&local, &remote);
        let path = dir.join(&name);
        let file = dir
            .open_locked(&name, false)?
            .ok_or_else(|| io_err(&path, "open", std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        let expect = Expect { local, remote, capacity: None };
        let mut store = Store::from_file(file, dir, path, &expect, opts.durability, Origin::Existing)?;
        let from = store.info.capacity;
        let mut moved = 0;
        if from != opts.capacity {
            moved = store.queue_depth();
            let info = HeaderInfo { capacity: opts.capacity, ..store.info };
            store.rebuild(info, true)?;
        }
        Ok((store, Migration { from_capacity: from, to_capacity: opts.capacity, moved }))
    }

    /// Deletes the store of `local@remote` in `dir`. `Ok(false)` if there is none;
    /// [`OpenError::Locked`] if it is open.
    pub fn remove(dir: impl AsRef<Path>, local: Name, remote: Name) -> Result<bool, OpenError> {
        let dir = match Dir::open(dir.as_ref(), false) {
            Ok(d) => d,
            Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let name = files::file_name(&local, &remote);
        match dir.open_locked(&name, false)? {
            None => Ok(false),
            Some(_locked) => {
                // Unlinked while we hold the lock: nobody opens it in between.
                dir.unlink(&name)?;
                Ok(true)
            }
        }
    }

    /// The store files in `dir` (by file name; none is opened), sorted.
    pub fn list(dir: impl AsRef<Path>) -> Result<Vec<StoreEntry>, OpenError> {
        let dir = Dir::open(dir.as_ref(), false)?;
        Ok(dir.list()?.into_iter().map(|(local, remote, path)| StoreEntry { local, remote, path }).collect())
    }

    /// Builds a file under the temporary name, validates it as a store, and renames
    /// it into place. `Ok(None)` only when `no_replace` and the store appeared meanwhile.
    pub(crate) fn build(
        dir: &Dir,
        info: &HeaderInfo,
        counters: Counters,
        source: Option<Source<'_>>,
        durability: Durability,
        no_replace: bool,
    ) -> Result<Option<Store>, OpenError> {
        let temp = files::temp_name(&info.local, &info.remote);
        let name = files::file_name(&info.local, &info.remote);
        let file = dir.create_temp(&temp)?;
        let durable = matches!(durability, Durability::Sync { .. });
        let built = Store::fill(dir, &temp, &file, info, counters, source, durable).and_then(|()| {
            let expect = Expect { local: info.local, remote: info.remote, capacity: Some(info.capacity) };
            let origin = Origin::Built { synced: durable };
            Store::from_file(file, dir.clone(), dir.join(&name), &expect, durability, origin)
        });
        let store = match built {
            Ok(s) => s,
            Err(e) => {
                dir.discard(&temp);
                return Err(e);
            }
        };
        match dir.commit(&temp, &name, no_replace, durable) {
            Ok(true) => Ok(Some(store)),
            Ok(false) => Ok(None),
            Err(e) => {
                dir.discard(&temp);
                Err(e)
            }
        }
    }

    /// Writes a complete store into the (locked, empty) temporary file — header, live
    /// words, this session's boot id, the ring with the source's frames, and commit
    /// record 1 in slot 0 vouching for all of them — and, if `durable`, syncs it.
    fn fill(
        dir: &Dir,
        temp: &str,
        file: &File,
        info: &HeaderInfo,
        c: Counters,
        source: Option<Source<'_>>,
        durable: bool,
    ) -> Result<(), OpenError> {
        let path = dir.join(temp);
        let len = file_len(info.capacity);
        dir.allocate(temp, file, len as u64)?;
        // SAFETY: the file is ours alone: created under a temporary name and locked;
        // nobody truncates it while this mapping lives (dropped at the end of this call).
        let mut map = unsafe { MmapMut::map_mut(file) }.map_err(|e| io_err(&path, "mmap", e))?;
        write_header(&mut map[..HEADER_PAGE], info);
        for (off, v) in [
            (OFF_ACKED, c.acked),
            (OFF_CONSUMED, c.consumed),
            (OFF_SEND_CURSOR, c.send_cursor),
            (OFF_NEXT_SEQ, c.next_seq),
        ] {
            put_u64(&mut map, off, v);
        }
        for (i, w) in c.session.iter().enumerate() {
            put_u64(&mut map, OFF_SESSION + 8 * i, *w);
        }
        map[OFF_BOOT..OFF_BOOT + 16].copy_from_slice(&BootId::current().0);
        let cfg = var::Config { capacity: info.capacity, align: FRAME_ALIGN };
        let region = &mut map[HEADER_PAGE..];
        var::init(region, cfg).map_err(|_| OpenError::Config {
            capacity: info.capacity,
            min: crate::MIN_CAPACITY,
            max: var::MAX_CAPACITY,
        })?;
        let (mut p, consumer) = var::attach(region).map_err(|source| OpenError::Ring { path: path.clone(), source })?;
        drop(consumer);
        if let Some(src) = source {
            let too_small = || OpenError::DoesNotFit {
                path: src.path.to_path_buf(),
                queued: src.count,
                bytes: src.to - src.from,
                capacity: info.capacity,
            };
            let mut copied = 0;
            for f in walk::frames(src.data, src.from, src.to, src.max_payload).take(src.count as usize) {
                let f = f.map_err(|source| OpenError::Inconsistent { path: src.path.to_path_buf(), source })?;
                match p.alloc(RING_PREFIX_LEN + f.payload.len()) {
                    Ok(Some(buf)) => {
                        buf[..8].copy_from_slice(&f.seq.to_le_bytes());
                        buf[8..16].copy_from_slice(&f.ack.to_le_bytes());
                        buf[RING_PREFIX_LEN..].copy_from_slice(f.payload);
                    }
                    Ok(None) | Err(AllocError::TooLarge { .. }) => return Err(too_small()),
                    Err(AllocError::Corrupt(_)) => unreachable!("a fresh ring has no foreign index"),
                }
                p.push_more(f.msg_type).expect("allocated");
                copied += 1;
            }
            debug_assert_eq!(copied, src.count, "the source was validated");
            p.publish();
        }
        let write = p.published_index();
        drop(p);
        let record = Commit {
            number: 1,
            sync: durable,
            acked: c.acked,
            next_seq: c.next_seq,
            read: 0,
            write,
            check_from: 0,
            consumed: c.consumed,
            send_cursor: c.send_cursor,
            session: c.session,
            batch_crc: ring_crc(&map[DATA..], 0, write),
        };
        map[OFF_COMMIT[0]..OFF_COMMIT[0] + RECORD_LEN].copy_from_slice(&record.encode());
        // A process crash cannot lose what is in the page cache; syncing a new file
        // (milliseconds: it ran on the group's thread at every first login) is only
        // for surviving power loss, which only `Durability::Sync` promises.
        if durable {
            map.flush().map_err(|e| io_err(&path, "msync", e))?;
            file.sync_all().map_err(|e| io_err(&path, "fsync", e))?;
        }
        Ok(())
    }

    /// Replaces the file by a new one with header `info`, keeping the queue, counters
    /// and session words (`keep`) or starting empty.
    fn rebuild(&mut self, info: HeaderInfo, keep: bool) -> Result<(), OpenError> {
        let (dir, durability) = (Dir::open(&self.dir_path, false)?, self.durability);
        let new = if keep {
            // Staged frames were given seqs: publish them rather than lose them.
            self.publish_staged();
            let counters = Counters {
                acked: self.acked,
                consumed: self.consumed,
                send_cursor: self.send_cursor,
                next_seq: self.next_seq,
                session: self.session,
            };
            let source = Source {
                path: &self.path,
                data: &self.map[DATA..],
                from: self.consumer.read_index(),
                to: self.producer.published_index(),
                count: self.next_seq - self.acked,
                max_payload: self.producer.max_payload(),
            };
            Store::build(&dir, &info, counters, Some(source), durability, false)?
        } else {
            Store::build(&dir, &info, Counters::default(), None, durability, false)?
        };
        // The old mapping and lock go away only now, after the new file is in place
        // (and locked by `new`); the old file is unlinked, so nothing to sync there.
        self.commits.dirty = false;
        *self = new.expect("replacing rename");
        Ok(())
    }

    /// Replaces the store by a fresh one for the remote's new epoch `epoch`: the
    /// queue and both counters are dropped (the reference's "server renamed per
    /// trading day" rule), crash-safely (a new file renamed over the old one).
    ///
    /// ```
    /// use tcpshm_persist::{Options, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-reset-{}", std::process::id()));
    /// let n = |s| Name::new(s).unwrap();
    /// let day1 = Some(n("Server20180713"));
    /// let (mut s, _) = Store::open(&dir, n("c"), n("srv"), &Options::new(4096), day1, 0).unwrap();
    /// s.alloc(1).unwrap().unwrap();
    /// s.push(1, 0).unwrap();
    /// let r = s.reset_epoch(n("Server20180714"), 86_400_000_000_000).unwrap();
    /// assert_eq!((r.previous_epoch, r.dropped), (day1, 1));
    /// assert_eq!((s.next_seq(), s.queue_depth(), s.epoch()), (0, 0, Some(n("Server20180714"))));
    /// # drop(s); Store::remove(&dir, n("c"), n("srv")).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn reset_epoch(&mut self, epoch: Name, created_unix_ns: u64) -> Result<ResetInfo, OpenError> {
        let r = ResetInfo {
            previous_epoch: self.info.epoch,
            dropped: self.queue_depth() + self.staged,
            previous_next_seq: self.next_seq,
            previous_consumed: self.consumed,
        };
        let info = HeaderInfo { epoch: Some(epoch), created_unix_ns, ..self.info };
        self.rebuild(info, false)?;
        Ok(r)
    }

    /// Starts the session of `local@remote` in `dir` afresh: the store is replaced by
    /// an empty one with the same capacity and epoch (queue, counters and session
    /// words dropped, crash-safely: a new file renamed over the old one). `None` if
    /// there is no such store; [`OpenError::Locked`] while a process holds it. The
    /// operator's remedy for one session after a lost state on the other side
    /// (`tcpshm reset`); a store that does not open (damaged) is refused with its
    /// reason: remove it, or salvage it.
    ///
    /// ```
    /// use tcpshm_persist::{OpenError, Options, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-reset-one-{}", std::process::id()));
    /// let (me, peer) = (Name::new("srv").unwrap(), Name::new("c1").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// s.alloc(1).unwrap().unwrap();
    /// s.push(1, 0).unwrap();
    /// assert!(matches!(Store::reset(&dir, me, peer, 5), Err(OpenError::Locked { .. })));
    /// drop(s);
    /// let r = Store::reset(&dir, me, peer, 5).unwrap().expect("a store was there");
    /// assert_eq!((r.dropped, r.previous_next_seq), (1, 1));
    /// let (s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// assert_eq!((s.next_seq(), s.created_unix_ns()), (0, 5));
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn reset(
        dir: impl AsRef<Path>,
        local: Name,
        remote: Name,
        created_unix_ns: u64,
    ) -> Result<Option<ResetInfo>, OpenError> {
        let dir = Dir::open(dir.as_ref(), false)?;
        let name = files::file_name(&local, &remote);
        let path = dir.join(&name);
        let Some(file) = dir.open_locked(&name, false)? else { return Ok(None) };
        let expect = Expect { local, remote, capacity: None };
        let mut store = Store::from_file(file, dir, path, &expect, Durability::Process, Origin::Existing)?;
        let r = ResetInfo {
            previous_epoch: store.info.epoch,
            dropped: store.queue_depth() + store.staged,
            previous_next_seq: store.next_seq,
            previous_consumed: store.consumed,
        };
        let info = HeaderInfo { created_unix_ns, ..store.info };
        store.rebuild(info, false)?;
        Ok(Some(r))
    }

    /// Makes `epoch` the store's epoch: nothing if it already is; adopted (queue and
    /// counters kept) if the store had none; otherwise a [`reset`](Self::reset_epoch).
    pub fn switch_epoch(&mut self, epoch: Name, created_unix_ns: u64) -> Result<EpochChange, OpenError> {
        match self.info.epoch {
            Some(e) if e == epoch => Ok(EpochChange::Unchanged),
            None => {
                let info = HeaderInfo { epoch: Some(epoch), ..self.info };
                self.rebuild(info, true)?;
                Ok(EpochChange::Adopted)
            }
            Some(_) => self.reset_epoch(epoch, created_unix_ns).map(EpochChange::Reset),
        }
    }
}
