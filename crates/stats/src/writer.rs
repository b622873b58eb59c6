//! The server's side: creating the counters file, handing out records, publishing.

use crate::dir::{self, StatsDir};
use crate::error::StatsError;
use crate::layout::*;
use crate::record::{ServerRecord, SessionRecord};
use crate::words::Words;
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tcpshm_proto::Name;
use tcpshm_ring::shm::lock;

/// Most records a file may hold (a file of 512 MiB).
pub const MAX_RECORDS: usize = 1 << 20;

/// Names made in this process so far (the file name's last part), so that two
/// servers of one name in one process get two files.
static MADE: AtomicU32 = AtomicU32::new(0);

/// The mapping, its descriptor (holding the server's lock) and the free records.
#[derive(Debug)]
struct Inner {
    // Field order is drop order: unmap, then close (releasing the lock).
    map: MmapRaw,
    file: File,
    path: PathBuf,
    records: usize,
    free: Mutex<Vec<u32>>,
}

impl Inner {
    fn words(&self) -> Words {
        // SAFETY: the mapping is page-aligned and `file_len(records)` bytes, and lives
        // as long as `self` (every `Words` made here is used while `self` is borrowed).
        unsafe { Words::new(self.map.as_ptr(), self.map.len()) }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The counters of a server that is gone mean nothing: remove the file if the
        // name still is ours (best effort; `tcpshm gc` removes what a crash leaves).
        let ours = rustix::fs::fstat(&self.file).ok();
        let named = rustix::fs::lstat(&self.path).ok();
        if let (Some(a), Some(b)) = (ours, named) {
            if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A server's counters file, mapped and locked (the lock tells readers the server is
/// alive). Cheap to clone: the groups of a server share it, each owning its
/// [`RecordSlot`]s; the control thread owns the [`ServerSlot`]. Dropping the last
/// handle removes the file.
///
/// ```
/// use tcpshm_stats::{SessionRecord, SessionState, StatsDir, StatsFile, StatsReader};
/// let dir = StatsDir::new(std::env::temp_dir(), &format!("doc-stats-{}-", std::process::id())).unwrap();
/// let (file, _server) = StatsFile::create(&dir, "Srv".parse().unwrap(), "/var/lib/srv".as_ref(), 16).unwrap();
/// let mut slot = file.claim().expect("a free record");
/// let mut r = SessionRecord::new("c1".parse().unwrap());
/// r.state = SessionState::Up;
/// r.queued = 3;
/// slot.publish(&r);
/// let reader = StatsReader::open(file.path()).unwrap();
/// assert!(reader.is_live().unwrap());
/// assert_eq!(reader.read().sessions, vec![r]);
/// drop((slot, _server));
/// let path = file.path().to_path_buf();
/// drop(file);
/// assert!(!path.exists(), "the file goes with the server");
/// ```
#[derive(Debug, Clone)]
pub struct StatsFile {
    inner: Arc<Inner>,
}

/// One session's record, owned by the one thread that writes it.
#[derive(Debug)]
pub struct RecordSlot {
    inner: Arc<Inner>,
    index: u32,
}

/// The server block's writer (one per file: the control thread's).
#[derive(Debug)]
pub struct ServerSlot {
    inner: Arc<Inner>,
}

impl StatsFile {
    /// Creates the counters file of server `server` in `dir` with room for `records`
    /// sessions, mode 0600, named `<prefix><server>.<pid>.<n>.stats`, and takes its
    /// lock. Files of earlier processes of the same server name whose lock is free
    /// (their server died without removing them) are removed first. `storage_dir`
    /// is recorded for tools (`tcpshm ls`, `gc`).
    pub fn create(
        dir: &StatsDir,
        server: Name,
        storage_dir: &Path,
        records: usize,
    ) -> Result<(StatsFile, ServerSlot), StatsError> {
        if records == 0 || records > MAX_RECORDS {
            return Err(StatsError::BadRecords { found: records, max: MAX_RECORDS });
        }
        dir.remove_dead(Some(server))?;
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let len = file_len(records);
        loop {
            let n = MADE.fetch_add(1, Ordering::Relaxed);
            let path = dir.dir().join(format!("{}{server}.{pid}.{n}{}", dir.prefix(), dir::SUFFIX));
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rustix::fs::open(&path, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => fd,
                // A file of a dead process that had our pid: take the next name.
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(StatsError::io(&path, "create", e)),
            };
            // The lock first: from now on the file is seen as live. A `remove_dead`
            // of another process between the create and the lock may have removed it:
            // then start again with a new name.
            if !lock::try_lock(fd.as_fd(), 0).map_err(|e| StatsError::io(&path, "lock", e))? {
                continue;
            }
            let st = rustix::fs::fstat(&fd).map_err(|e| StatsError::io(&path, "stat", e))?;
            match rustix::fs::lstat(&path) {
                Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
                _ => continue,
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(|e| StatsError::io(&path, "chmod", e))?;
            // Reserve the memory now: on tmpfs a page first touched when it is full
            // would be a SIGBUS, not an error.
            match rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
                Ok(()) => {}
                Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                    rustix::fs::ftruncate(&fd, len as u64).map_err(|e| StatsError::io(&path, "truncate", e))?
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(StatsError::io(&path, "allocate", e));
                }
            }
            let file = File::from(fd);
            let map = MmapOptions::new().len(len).map_raw(&file).map_err(|e| StatsError::io(&path, "mmap", e))?;
            let inner = Inner { map, file, path, records, free: Mutex::new(Vec::new()) };
            write_header(&inner.words(), server, pid, records, storage_dir);
            let inner = Arc::new(inner);
            return Ok((StatsFile { inner: inner.clone() }, ServerSlot { inner }));
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A record for a new session: a freed one, or the next unused one; `None` when
    /// the file is full (counted in the header, so readers know sessions are missing).
    /// Not on a hot path: at a session's first login.
    pub fn claim(&self) -> Option<RecordSlot> {
        let w = self.inner.words();
        let reused = self.inner.free.lock().map(|mut f| f.pop()).unwrap_or(None);
        let index = match reused {
            Some(i) => i,
            None => {
                let n = w.word(OFF_IN_USE).fetch_add(1, Ordering::AcqRel);
                if n >= self.inner.records as u64 {
                    w.word(OFF_IN_USE).fetch_sub(1, Ordering::AcqRel);
                    w.word(OFF_NO_RECORD).fetch_add(1, Ordering::AcqRel);
                    return None;
                }
                n as u32
            }
        };
        Some(RecordSlot { inner: self.inner.clone(), index })
    }
}

fn write_header(w: &Words, server: Name, pid: u32, records: usize, storage_dir: &Path) {
    let put = |off: usize, v: u64| w.word(off).store(v, Ordering::Relaxed);
    put(OFF_VERSION, VERSION);
    put(OFF_HEADER_LEN, HEADER_LEN as u64);
    put(OFF_RECORD_LEN, RECORD_LEN as u64);
    put(OFF_RECORDS, records as u64);
    put(OFF_FILE_LEN, file_len(records) as u64);
    put(OFF_PID, pid.into());
    put(OFF_SERVER_LEN, server.as_bytes().len() as u64);
    let mut name = [0u64; 8];
    pack(server.as_bytes(), &mut name);
    for (i, v) in name.iter().enumerate() {
        put(OFF_SERVER + 8 * i, *v);
    }
    use std::os::unix::ffi::OsStrExt;
    let dir = storage_dir.as_os_str().as_bytes();
    let dir = &dir[..dir.len().min(MAX_DIR_LEN)];
    put(OFF_DIR_LEN, dir.len() as u64);
    let mut words = [0u64; MAX_DIR_LEN / 8];
    pack(dir, &mut words);
    for (i, v) in words.iter().enumerate() {
        put(OFF_DIR + 8 * i, *v);
    }
    // The magic last, with release: a reader that sees it sees the whole header.
    w.word(OFF_MAGIC).store(MAGIC, Ordering::Release);
}

impl RecordSlot {
    /// Publishes `r` into this record: plain stores behind the record's version word,
    /// no system call, no lock, no allocation.
    #[inline]
    pub fn publish(&mut self, r: &SessionRecord) {
        let mut data = [0u64; RECORD_WORDS];
        r.encode(&mut data);
        self.inner.words().write_block(record_offset(self.index), &data);
    }

    /// The record's index in the file.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for RecordSlot {
    /// Frees the record (readers no longer list it) for another session.
    fn drop(&mut self) {
        self.inner.words().write_block(record_offset(self.index), &[0u64; RECORD_WORDS]);
        if let Ok(mut f) = self.inner.free.lock() {
            f.push(self.index);
        }
    }
}

impl ServerSlot {
    /// Publishes the server's counters (as [`RecordSlot::publish`]).
    #[inline]
    pub fn publish(&mut self, r: &ServerRecord) {
        self.inner.words().write_block(OFF_SERVER_BLOCK, &r.encode());
    }
}

pub(crate) fn record_offset(index: u32) -> usize {
    HEADER_LEN + index as usize * RECORD_LEN
}

/// The threading promises of the public types, checked at compile time.
#[allow(dead_code)]
fn _assert_thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StatsFile>();
    send_sync::<RecordSlot>();
    send_sync::<ServerSlot>();
}
