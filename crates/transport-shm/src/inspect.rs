//! Read-only inspection of a connection file for tools (`tcpshm inspect`, `ls`,
//! `check`, `gc`): the control block, who is attached, and what each ring holds —
//! without a lock, without writing a byte, safe on a file both sides are using.
//!
//! The rings are copied the way their protocol allows a third party to: frames
//! between a ring's read and write indices are never written again until the read
//! index releases them, so a copy that reads the read index, the header, the frames,
//! and the read index again — and finds it unchanged — is consistent. Any other
//! outcome is retried; after [`ATTEMPTS`] the inspection reports
//! [`ShmError::ChangedWhileReading`] rather than risk a misread.

use crate::dir::ShmDir;
use crate::error::{Direction, ShmError, Side};
use crate::layout::{self, Capacities, Expect, CONTROL_LEN};
use memmap2::Mmap;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use tcpshm_proto::frame::RING_PREFIX_LEN;
use tcpshm_proto::Name;
use tcpshm_ring::shm::lock;
use tcpshm_ring::var::{self, image};

/// Copies tried before giving up on a ring that keeps changing.
pub const ATTEMPTS: u32 = 64;

/// What a connection file holds, read without a lock ([`ShmFile::inspect`](crate::ShmFile::inspect)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmInspection {
    /// The file.
    pub path: PathBuf,
    /// The server's name.
    pub server: Name,
    /// The client's name.
    pub client: Name,
    /// The file's identity (random, chosen at creation).
    pub file_id: u64,
    /// The ring capacities.
    pub capacities: Capacities,
    /// The file's length.
    pub len: u64,
    /// The session epoch: how many logins the server side attached to this file.
    pub epoch: u64,
    /// The pid each side recorded when it attached (informational: a crashed
    /// process leaves its pid; the lock says who is alive).
    pub pids: [Option<u32>; 2],
    /// Whether each side's lock is held by a live process (server, client).
    pub attached: [bool; 2],
    /// The server→client ring, then the client→server ring.
    pub rings: [RingInspection; 2],
}

impl ShmInspection {
    /// Whether `side` is attached by a live process.
    pub fn is_attached(&self, side: Side) -> bool {
        self.attached[side.lock_byte() as usize]
    }

    /// The pid `side` recorded (see [`pids`](Self::pids)).
    pub fn pid(&self, side: Side) -> Option<u32> {
        self.pids[side.lock_byte() as usize]
    }

    /// The ring carrying `direction`.
    pub fn ring(&self, direction: Direction) -> &RingInspection {
        match direction {
            Direction::ServerToClient => &self.rings[0],
            Direction::ClientToServer => &self.rings[1],
        }
    }

    /// Whether both rings hold nothing their receivers have not consumed.
    pub fn is_drained(&self) -> bool {
        self.rings.iter().all(|r| r.fault.is_none() && r.unconsumed() == 0)
    }
}

/// One ring of a connection file, as copied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingInspection {
    /// Which ring.
    pub direction: Direction,
    /// Data capacity in bytes.
    pub capacity: usize,
    /// Read index (bytes ever released by the receiver).
    pub read: u64,
    /// Write index (bytes ever published by the sender).
    pub write: u64,
    /// The receiver's consumed count (the seq after the last message it popped): the
    /// sender's acknowledgement.
    pub consumed: u64,
    /// The frames between the indices, oldest first (stale copies below `consumed`
    /// included: the receiver skips them).
    pub frames: Vec<ShmFrame>,
    /// The ring's header or a frame is impossible: what is wrong (`frames` holds
    /// what came before it).
    pub fault: Option<String>,
}

impl RingInspection {
    /// Bytes in use between the indices.
    pub fn used(&self) -> u64 {
        self.write.saturating_sub(self.read)
    }

    /// Messages not yet consumed by the receiver (seq at or above `consumed`).
    pub fn unconsumed(&self) -> usize {
        self.frames.iter().filter(|f| f.seq >= self.consumed).count()
    }
}

/// One message in a ring, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmFrame {
    /// Its ring index.
    pub index: u64,
    /// Its session seq.
    pub seq: u64,
    /// The ack stamped into it.
    pub ack: u64,
    /// Its message type.
    pub msg_type: u16,
    /// Its bytes.
    pub payload: Vec<u8>,
}

impl crate::ShmFile {
    /// Reads the connection file at `path` without taking a lock or writing anything:
    /// its control block (validated like an open: magic, version, checksum, names,
    /// capacities, length), which sides are attached (their locks, one
    /// `fcntl(F_OFD_GETLK)` each) and the messages in both rings. Safe on a file in
    /// use: neither side is disturbed.
    ///
    /// ```
    /// use tcpshm_proto::Name;
    /// use tcpshm_transport_shm::{Capacities, Direction, Rings, ShmDir, ShmFile, Side};
    ///
    /// let dir = ShmDir::new("/dev/shm", &format!("doc-inspect-{}-", std::process::id())).unwrap();
    /// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
    /// let mut server = Rings::new(ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(4096)).unwrap());
    /// server.tx.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
    /// server.tx.push_more(1, 0, 0).unwrap();
    /// server.tx.publish();
    /// let i = ShmFile::inspect(dir.path(&s, &c)).unwrap(); // while the server maps it
    /// assert!(i.is_attached(Side::Server) && !i.is_attached(Side::Client));
    /// assert_eq!(i.pid(Side::Server), Some(std::process::id()));
    /// let ring = i.ring(Direction::ServerToClient);
    /// assert_eq!((ring.unconsumed(), &ring.frames[0].payload[..]), (1, &b"hello"[..]));
    /// drop(server);
    /// dir.remove(&s, &c).unwrap();
    /// ```
    pub fn inspect(path: impl AsRef<Path>) -> Result<ShmInspection, ShmError> {
        inspect(path.as_ref())
    }
}

impl ShmDir {
    /// Inspects the file of `server`/`client` in this directory
    /// ([`ShmFile::inspect`](crate::ShmFile::inspect)); [`ShmError::NotFound`] if there is none.
    pub fn inspect(&self, server: &Name, client: &Name) -> Result<ShmInspection, ShmError> {
        inspect(&self.path(server, client))
    }
}

fn inspect(path: &Path) -> Result<ShmInspection, ShmError> {
    // Read-only; NONBLOCK so a FIFO planted under the name cannot hang the tool.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(ShmError::NotFound(path.to_path_buf())),
        Err(Errno::LOOP) => return Err(ShmError::NotRegularFile(path.to_path_buf())),
        Err(e) => return Err(ShmError::io("open", path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| ShmError::io("stat", path, e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(ShmError::NotRegularFile(path.to_path_buf()));
    }
    let file = File::from(fd);
    let len = st.st_size as u64;
    if len < CONTROL_LEN as u64 {
        return Err(ShmError::TooShort { path: path.to_path_buf(), len, need: CONTROL_LEN as u64 });
    }
    // Validate a private copy before mapping, so a foreign file of any size is refused
    // without being mapped.
    let mut copy = [0u8; CONTROL_LEN];
    file.read_exact_at(&mut copy, 0).map_err(|e| ShmError::io("read", path, e))?;
    // The names the block holds; invalid ones are reported by the validation.
    let placeholder = Name::new("-").expect("a valid name");
    let (server, client) = layout::stored_names(&copy).unwrap_or((placeholder, placeholder));
    let geo = layout::validate_control(&copy, len, path, &Expect { server: &server, client: &client, caps: None })?;
    // SAFETY: a read-only shared mapping of the validated length; its users never
    // shrink the file (a foreign truncation would make a read fault, as for the
    // owners, whose guard this process does not install: a tool reads briefly).
    // Every byte copied out is validated before use.
    let map = unsafe { memmap2::MmapOptions::new().len(geo.file_len).map(&file) }
        .map_err(|e| ShmError::io("mmap", path, e))?;
    let words = Words { map: &map };
    let control = words.control();
    let (epoch, spid, cpid, s2c_consumed, c2s_consumed) = layout::live_fields(&control);
    let attached = [Side::Server, Side::Client].map(|side| {
        lock::held_by_other(file.as_fd(), side.lock_byte()).map_err(|e| ShmError::io("fcntl(F_OFD_GETLK)", path, e))
    });
    let [a0, a1] = attached;
    let mut rings = Vec::with_capacity(2);
    for (direction, consumed) in [(Direction::ServerToClient, s2c_consumed), (Direction::ClientToServer, c2s_consumed)]
    {
        let (off, region_len) = geo.ring(direction);
        rings.push(copy_ring(&words, off, region_len, direction, consumed, geo.caps.of(direction), path)?);
    }
    let [r0, r1]: [RingInspection; 2] = rings.try_into().expect("two rings");
    let pid = |p: u32| (p != 0).then_some(p);
    Ok(ShmInspection {
        path: path.to_path_buf(),
        server,
        client,
        file_id: layout::file_id_of(&control),
        capacities: geo.caps,
        len,
        epoch,
        pids: [pid(spid), pid(cpid)],
        attached: [a0?, a1?],
        rings: [r0, r1],
    })
}

/// Copies one ring consistently (see the module documentation) and walks its frames.
fn copy_ring(
    words: &Words<'_>,
    off: usize,
    region_len: usize,
    direction: Direction,
    consumed: u64,
    capacity: usize,
    path: &Path,
) -> Result<RingInspection, ShmError> {
    let header_len = var::HEADER_LEN;
    let mut header = vec![0u8; header_len];
    let mut data = vec![0u8; capacity];
    let read_at = off + var::layout::OFF_READ_INDEX;
    for _ in 0..ATTEMPTS {
        let read = words.load(read_at);
        words.copy(&mut header, off);
        let mut ring =
            RingInspection { direction, capacity, read, write: 0, consumed, frames: Vec::new(), fault: None };
        header[var::layout::OFF_READ_INDEX..][..8].copy_from_slice(&read.to_le_bytes());
        let h = match image::parse_header(&header, region_len) {
            Ok(h) => h,
            Err(e) => {
                ring.fault = Some(e.to_string());
                return Ok(ring);
            }
        };
        ring.write = h.write;
        if h.config.capacity != capacity {
            ring.fault =
                Some(format!("ring capacity {} differs from the control block's {capacity}", h.config.capacity));
            return Ok(ring);
        }
        // The used part, in at most two pieces (it may wrap).
        let cap = capacity as u64;
        let (a, b) = ((h.read % cap) as usize, (h.write % cap) as usize);
        let data_off = off + header_len;
        if h.used() > 0 {
            if a < b {
                words.copy(&mut data[a..b], data_off + a);
            } else {
                words.copy(&mut data[a..], data_off + a);
                words.copy(&mut data[..b], data_off);
            }
        }
        fence(Ordering::SeqCst);
        if words.load(read_at) != read {
            continue;
        }
        for f in image::frames(&data, h.read, h.write, h.config) {
            match f {
                Ok(f) if f.payload.len() >= RING_PREFIX_LEN => {
                    let word = |i: usize| u64::from_le_bytes(f.payload[i..i + 8].try_into().expect("8 bytes"));
                    ring.frames.push(ShmFrame {
                        index: f.index,
                        seq: word(0),
                        ack: word(8),
                        msg_type: f.msg_type,
                        payload: f.payload[RING_PREFIX_LEN..].to_vec(),
                    });
                }
                Ok(f) => {
                    ring.fault = Some(format!("frame at {} is shorter than a wire frame header", f.index));
                    break;
                }
                Err(e) => {
                    ring.fault = Some(e.to_string());
                    break;
                }
            }
        }
        return Ok(ring);
    }
    Err(ShmError::ChangedWhileReading { path: path.to_path_buf(), attempts: ATTEMPTS })
}

/// The mapping, read one aligned 8-byte word at a time with atomic loads (the sides
/// store their counters and indices atomically; no word is read torn).
struct Words<'a> {
    map: &'a Mmap,
}

impl Words<'_> {
    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.map.len());
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the mapping
        // outlives the reference (borrowed from `self.map`); shared with processes that
        // store whole words or bytes there, read here only atomically.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU64) }
    }

    fn load(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }

    /// Copies `out.len()` (a multiple of 8) bytes from file offset `from` (8-aligned).
    fn copy(&self, out: &mut [u8], from: usize) {
        for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&self.word(from + 8 * i).load(Ordering::Relaxed).to_ne_bytes());
        }
    }

    fn control(&self) -> [u8; CONTROL_LEN] {
        let mut c = [0u8; CONTROL_LEN];
        self.copy(&mut c, 0);
        fence(Ordering::Acquire);
        c
    }
}
