//! The tools' side: a read-only mapping of a counters file, copied record by record
//! under the seqlock (a reader never blocks or slows the server).

use crate::error::StatsError;
use crate::layout::*;
use crate::record::{ServerRecord, SessionRecord};
use crate::words::Words;
use crate::writer::{record_offset, MAX_RECORDS};
use memmap2::Mmap;
use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tcpshm_proto::Name;
use tcpshm_ring::shm::lock;

/// The immutable facts of a counters file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsHeader {
    /// The server's name.
    pub server: Name,
    /// The server's process id.
    pub pid: u32,
    /// Records the file holds.
    pub records: usize,
    /// The server's storage directory.
    pub storage_dir: PathBuf,
}

/// A copy of everything a counters file says now ([`StatsReader::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The server's counters.
    pub server: ServerRecord,
    /// The sessions, in record order.
    pub sessions: Vec<SessionRecord>,
    /// Sessions that found no record (the file was full).
    pub without_record: u64,
    /// Blocks that kept changing while being copied (skipped, not misread).
    pub unreadable: usize,
}

/// A counters file mapped read-only.
#[derive(Debug)]
pub struct StatsReader {
    map: Mmap,
    file: File,
    path: PathBuf,
    header: StatsHeader,
}

impl StatsReader {
    /// Maps the counters file at `path` read-only and checks its header.
    pub fn open(path: impl AsRef<Path>) -> Result<StatsReader, StatsError> {
        let path = path.as_ref();
        let not = |why: String| StatsError::NotStats { path: path.to_path_buf(), why };
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StatsError::io(path, "open", e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| StatsError::io(path, "stat", e))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(not("not a regular file".into()));
        }
        let len = st.st_size as u64;
        if len < HEADER_LEN as u64 {
            return Err(not(format!("{len} bytes, shorter than the {HEADER_LEN}-byte header")));
        }
        let file = File::from(fd);
        // SAFETY: a read-only shared mapping; its writer never shrinks the file (a
        // foreign truncation would make a read fault). Every word is validated.
        let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(&file) }
            .map_err(|e| StatsError::io(path, "mmap", e))?;
        // SAFETY: page-aligned, `len` bytes, lives in `map` as long as `w` is used here.
        let w = unsafe { Words::new(map.as_ptr(), map.len()) };
        let magic = w.load(OFF_MAGIC);
        if magic != MAGIC {
            return Err(not(format!("magic {magic:#018x}; a file being created has none yet")));
        }
        let get = |off| w.load(off);
        if get(OFF_VERSION) != VERSION {
            return Err(not(format!("layout version {}, this build reads {VERSION}", get(OFF_VERSION))));
        }
        let records = get(OFF_RECORDS);
        if get(OFF_HEADER_LEN) != HEADER_LEN as u64
            || get(OFF_RECORD_LEN) != RECORD_LEN as u64
            || records == 0
            || records > MAX_RECORDS as u64
            || get(OFF_FILE_LEN) != file_len(records as usize) as u64
            || len != file_len(records as usize) as u64
        {
            return Err(not("impossible lengths in the header".into()));
        }
        let words: Vec<u64> = (0..8).map(|i| get(OFF_SERVER + 8 * i)).collect();
        let name = unpack(&words, get(OFF_SERVER_LEN).min(64) as usize);
        let server = std::str::from_utf8(&name)
            .ok()
            .and_then(|s| Name::new(s).ok())
            .ok_or_else(|| not("the server name is not a valid name".into()))?;
        let words: Vec<u64> = (0..MAX_DIR_LEN / 8).map(|i| get(OFF_DIR + 8 * i)).collect();
        let dir = unpack(&words, get(OFF_DIR_LEN).min(MAX_DIR_LEN as u64) as usize);
        let storage_dir = PathBuf::from(std::ffi::OsStr::from_bytes(&dir));
        let pid = get(OFF_PID).min(u32::MAX as u64) as u32;
        let header = StatsHeader { server, pid, records: records as usize, storage_dir };
        Ok(StatsReader { map, file, path: path.to_path_buf(), header })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header.
    pub fn header(&self) -> &StatsHeader {
        &self.header
    }

    /// Whether the server is alive: it holds the file's lock (one `fcntl`).
    pub fn is_live(&self) -> Result<bool, StatsError> {
        lock::held_by_other(self.file.as_fd(), 0).map_err(|e| StatsError::io(&self.path, "fcntl(F_OFD_GETLK)", e))
    }

    /// Copies the server block and every session record in use, each whole (a block
    /// that keeps changing for [`READ_ATTEMPTS`](crate::READ_ATTEMPTS) tries is counted
    /// in [`Snapshot::unreadable`], never returned torn).
    pub fn read(&self) -> Snapshot {
        // SAFETY: as in `open`.
        let w = unsafe { Words::new(self.map.as_ptr(), self.map.len()) };
        let mut unreadable = 0;
        let mut server = [0u64; SERVER_WORDS];
        let server = if w.read_block(OFF_SERVER_BLOCK, &mut server) {
            ServerRecord::decode(&server)
        } else {
            unreadable += 1;
            ServerRecord::default()
        };
        let in_use = w.load(OFF_IN_USE).min(self.header.records as u64) as u32;
        let mut sessions = Vec::new();
        for i in 0..in_use {
            let mut data = [0u64; RECORD_WORDS];
            if !w.read_block(record_offset(i), &mut data) {
                unreadable += 1;
                continue;
            }
            if let Some(r) = SessionRecord::decode(&data) {
                sessions.push(r);
            }
        }
        Snapshot { server, sessions, without_record: w.load(OFF_NO_RECORD), unreadable }
    }
}
