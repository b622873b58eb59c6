//! Named shared-memory var queues between processes (feature `shm`, Linux).
//!
//! A [`Region`] is a file (normally under `/dev/shm`) that holds exactly one var queue
//! ([`crate::var`]'s layout, so nothing else to learn). Two unrelated processes share
//! it by name:
//!
//! * [`Region::open`] creates it or, if it exists, attaches to it: either process may
//!   come first. A region is formatted before its name appears (it is built in an
//!   unnamed file, then linked), so nobody ever sees a half-made one.
//! * [`Region::attach`] only attaches, and says [`OpenError::NotFound`] until the peer
//!   created it; [`Region::attach_with`] retries a bounded number of times, calling
//!   the caller's `pause` in between (the library reads no clock and never sleeps).
//! * The file is created with mode 0600, and an existing one is refused unless it is a
//!   regular file of this user with no group or other bits; its header is validated
//!   like any [`var::attach`](crate::var::attach), with typed errors.
//!
//! **Claims and a dead peer.** [`Region::producer`] and [`Region::consumer`] claim a
//! side: an OFD write lock on one byte of the file (byte 0: producer, byte 1:
//! consumer), which the kernel drops when the end is dropped *or its process dies*,
//! SIGKILL included. So a second producer is refused ([`ClaimError::Taken`]), and each
//! end's [`peer`](crate::var::Consumer::peer) tells whether the other side is
//! [`Alive`](Peer::Alive), [`Gone`](Peer::Gone) (it was claimed, and nobody holds it
//! now) or [`NotYet`](Peer::NotYet) claimed. Cost: nothing on the hot path; one
//! `fcntl(F_OFD_GETLK)` system call per `peer()` (a few hundred nanoseconds), which the
//! waiting helpers of the `wait` feature make once per parking round. A header counter
//! per side (how many claims so far) tells "gone" from "not yet".
//!
//! The mapping lives as long as the `Region` or any end claimed through it. Another
//! process that truncates the file while it is mapped makes accesses fault (SIGBUS):
//! the file is private to this user for that reason. A forked child shares the
//! parent's claims (OFD locks follow the open file description); exec does not (the
//! descriptor is close-on-exec).
//!
//! ```
//! use tcpshm_ring::shm::Region;
//! use tcpshm_ring::var::{Config, Peer};
//!
//! let path = std::env::temp_dir().join(format!("tcpshm-ring-doc-{}", std::process::id()));
//! let a = Region::open(&path, Config::new(1 << 12)).unwrap(); // creates
//! let b = Region::open(&path, Config::new(1 << 12)).unwrap(); // attaches
//! let mut p = a.producer().unwrap();
//! assert!(b.producer().is_err()); // one producer at a time
//! let mut c = b.consumer().unwrap();
//! p.alloc(2).unwrap().unwrap().copy_from_slice(b"hi");
//! p.push(1).unwrap();
//! assert_eq!(c.front().unwrap().unwrap().payload(), b"hi");
//! drop(p);
//! assert_eq!(c.peer(), Peer::Gone);
//! a.remove().unwrap();
//! ```

mod error;
mod file;
pub mod lock;
mod mpsc;

pub use error::{ClaimError, OpenError};
pub(crate) use mpsc::MpscMapping;
pub use mpsc::MpscRegion;

use crate::var::layout::{self, Geometry, Raw};
use crate::var::{Config, Consumer, Link, Peer, Producer, Side};
use file::Map;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A named shared-memory var queue, mapped. Claim an end with [`producer`](Self::producer)
/// or [`consumer`](Self::consumer); see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Region {
    shared: Arc<Mapping>,
}

/// The open file and its mapping, shared by a [`Region`] and the ends claimed through
/// it.
#[derive(Debug)]
pub(crate) struct Mapping {
    // Field order: the mapping is unmapped before the file (and its locks) is closed.
    map: Map,
    file: File,
    path: PathBuf,
    geo: Geometry,
    /// Sides claimed through this open file description: its own OFD locks do not
    /// conflict with each other, so this is what refuses a second claim through it.
    claimed: [AtomicBool; 2],
}

// SAFETY: the mapping is plain shared memory; every access to it goes through the var
// queue's protocol (atomics for the shared words, frames handed over by
// release/acquire), and the pointer stays valid until `Map` is dropped with the last
// `Arc`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

const fn lock_byte(side: Side) -> u64 {
    match side {
        Side::Producer => 0,
        Side::Consumer => 1,
    }
}

const fn slot(side: Side) -> usize {
    match side {
        Side::Producer => 0,
        Side::Consumer => 1,
    }
}

impl Mapping {
    fn raw(&self) -> Raw {
        Raw { base: self.map.base }
    }
}

impl Region {
    /// Opens the queue at `path`, creating it with layout `cfg` if nothing is there.
    /// An existing queue must have exactly this layout
    /// ([`AttachError::ConfigMismatch`](crate::var::AttachError::ConfigMismatch)
    /// otherwise). Two processes may call it at the same time: one creates, the other
    /// attaches.
    ///
    /// ```
    /// use tcpshm_ring::{shm::{OpenError, Region}, var::Config};
    /// let path = std::env::temp_dir().join(format!("tcpshm-ring-doc-open-{}", std::process::id()));
    /// let r = Region::open(&path, Config::new(4096)).unwrap();
    /// assert_eq!(r.config(), Config::new(4096));
    /// assert!(matches!(Region::open(&path, Config::new(8192)), Err(OpenError::Attach { .. })));
    /// assert!(matches!(Region::open(&path, Config::new(1000)), Err(OpenError::Config(_))));
    /// r.remove().unwrap();
    /// ```
    pub fn open(path: impl AsRef<Path>, cfg: Config) -> Result<Region, OpenError> {
        let path = path.as_ref();
        cfg.validate().map_err(OpenError::Config)?;
        // Each round either attaches, creates, or lost a race with a process that
        // created the file (then attach theirs) or removed it (then create again).
        let mut last = None;
        for _ in 0..8 {
            match file::open_existing(path) {
                Ok(f) => match file::attach(&f, path, Some(&cfg)) {
                    Ok((map, geo)) => return Ok(Region::new(f, map, geo, path)),
                    Err(e) => return Err(e),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpenError::Io { path: path.into(), op: "open", source: e }),
            }
            match file::create(path, &cfg)? {
                Some((f, map, geo)) => return Ok(Region::new(f, map, geo, path)),
                None => last = Some(OpenError::NotFound(path.into())),
            }
        }
        Err(last.unwrap_or_else(|| OpenError::NotFound(path.into())))
    }

    /// Attaches to the queue at `path`, which the peer creates: [`OpenError::NotFound`]
    /// (or [`OpenError::Uninitialised`], for a file made by other code) until it has;
    /// see [`attach_with`](Self::attach_with) to wait for it.
    ///
    /// ```
    /// use tcpshm_ring::{shm::Region, var::Config};
    /// let path = std::env::temp_dir().join(format!("tcpshm-ring-doc-attach-{}", std::process::id()));
    /// assert!(Region::attach(&path).unwrap_err().is_not_ready());
    /// let created = Region::open(&path, Config::new(4096)).unwrap();
    /// assert_eq!(Region::attach(&path).unwrap().config().capacity, 4096);
    /// created.remove().unwrap();
    /// ```
    pub fn attach(path: impl AsRef<Path>) -> Result<Region, OpenError> {
        let path = path.as_ref();
        let f = match file::open_existing(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenError::NotFound(path.into())),
            Err(e) => return Err(OpenError::Io { path: path.into(), op: "open", source: e }),
        };
        let (map, geo) = file::attach::<Config>(&f, path, None)?;
        Ok(Region::new(f, map, geo, path))
    }

    /// [`attach`](Self::attach), up to `tries` times while the region is not ready
    /// ([`OpenError::is_not_ready`]), calling `pause` between tries: the caller decides
    /// how long to wait (sleep, poll something else, count), so the library reads no
    /// clock. Returns the last error after `tries` tries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tcpshm_ring::{shm::Region, var::Config};
    /// let path = std::env::temp_dir().join(format!("tcpshm-ring-doc-with-{}", std::process::id()));
    /// let mut pauses = 0;
    /// let r = Region::attach_with(&path, 100, || {
    ///     pauses += 1;
    ///     if pauses == 3 {
    ///         // Here the peer creates it; a real caller would sleep a little instead.
    ///         Region::open(&path, Config::new(4096)).unwrap();
    ///     }
    /// })
    /// .unwrap();
    /// assert_eq!(pauses, 3);
    /// assert!(Region::attach_with(&path.with_extension("none"), 2, || {}).unwrap_err().is_not_ready());
    /// r.remove().unwrap();
    /// ```
    pub fn attach_with(path: impl AsRef<Path>, tries: u32, mut pause: impl FnMut()) -> Result<Region, OpenError> {
        let path = path.as_ref();
        let mut left = tries.max(1);
        loop {
            match Region::attach(path) {
                Err(e) if e.is_not_ready() && left > 1 => {
                    left -= 1;
                    pause();
                }
                r => return r,
            }
        }
    }

    fn new(file: File, map: Map, geo: Geometry, path: &Path) -> Region {
        Region {
            shared: Arc::new(Mapping {
                map,
                file,
                path: path.to_path_buf(),
                geo,
                claimed: [AtomicBool::new(false), AtomicBool::new(false)],
            }),
        }
    }

    /// Claims the producer side: refused with [`ClaimError::Taken`] while another live
    /// producer (in any process) holds it. The claim ends when the producer is dropped
    /// or its process dies; the consumer then sees [`Peer::Gone`]. Everything the
    /// previous producer published is kept: a new producer continues after it (frames
    /// it allocated but never published were never pushed).
    pub fn producer(&self) -> Result<Producer<'static>, ClaimError> {
        let (ring, link) = self.claim(Side::Producer)?;
        Ok(Producer::new(ring, link))
    }

    /// Claims the consumer side (see [`producer`](Self::producer)). A new consumer
    /// continues from the last message the previous one released.
    pub fn consumer(&self) -> Result<Consumer<'static>, ClaimError> {
        let (ring, link) = self.claim(Side::Consumer)?;
        Ok(Consumer::new(ring, link))
    }

    fn claim(&self, side: Side) -> Result<(crate::var::region::Ring, Link), ClaimError> {
        let m = &self.shared;
        if m.claimed[slot(side)].swap(true, Ordering::AcqRel) {
            return Err(ClaimError::Taken(side));
        }
        let claim = Claim { mapping: m.clone(), side, released: AtomicBool::new(false) };
        match lock::try_lock(m.file.as_fd(), lock_byte(side)) {
            Ok(true) => {}
            Ok(false) => {
                claim.released.store(true, Ordering::Relaxed);
                m.claimed[slot(side)].store(false, Ordering::Release);
                return Err(ClaimError::Taken(side));
            }
            Err(e) => {
                claim.released.store(true, Ordering::Relaxed);
                m.claimed[slot(side)].store(false, Ordering::Release);
                return Err(ClaimError::Io(e));
            }
        }
        // Holding the lock, count the claim: a peer that finds no lock then knows
        // whether this side was ever here (`Gone`) or not yet (`NotYet`).
        m.raw().claims(side).fetch_add(1, Ordering::AcqRel);
        // The previous holder may have been faulty: check the indices again.
        // SAFETY: the mapping is `len` bytes and lives as long as `claim` (in the end).
        let geo = unsafe { layout::validate(m.map.base, m.map.len) }.map_err(ClaimError::Attach)?;
        debug_assert_eq!(geo.config(), m.geo.config());
        Ok((crate::var::region::Ring::new(m.map.base, geo, None), Link::Shm(claim)))
    }

    /// The queue's layout.
    pub fn config(&self) -> Config {
        self.shared.geo.config()
    }

    /// The path the region was opened by.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Removes the region's name, if it still names this region's file (a region
    /// created since under the same name is left alone). Processes that have it mapped
    /// keep using it; the memory is freed when the last one unmaps it. A region left in
    /// place keeps its messages for the next process that opens it.
    pub fn remove(&self) -> std::io::Result<()> {
        let ours = self.shared.file.metadata()?;
        match std::fs::symlink_metadata(&self.shared.path) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => std::fs::remove_file(&self.shared.path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// One end's claim on its side of a region: its lock, and the mapping it keeps alive.
#[derive(Debug)]
pub(crate) struct Claim {
    mapping: Arc<Mapping>,
    side: Side,
    released: AtomicBool,
}

impl Claim {
    /// The other side's state: [`Peer::Alive`] while an end holds it (through this
    /// region, or any other open of the file), else [`Peer::Gone`] if it was ever
    /// claimed, else [`Peer::NotYet`]. One `fcntl` system call.
    pub(crate) fn peer(&self) -> Peer {
        let m = &self.mapping;
        let other = self.side.other();
        let claims = m.raw().claims(other).load(Ordering::Acquire);
        if m.claimed[slot(other)].load(Ordering::Acquire) {
            return Peer::Alive;
        }
        match lock::held_by_other(m.file.as_fd(), lock_byte(other)) {
            Ok(true) => Peer::Alive,
            Ok(false) if claims == 0 => Peer::NotYet,
            Ok(false) => Peer::Gone,
            // The query itself failed (it cannot, for an open file): claim nothing.
            Err(_) => Peer::Alive,
        }
    }

    /// Gives the side up (idempotent): the lock, then the in-process flag.
    pub(crate) fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            let m = &self.mapping;
            let _ = lock::unlock(m.file.as_fd(), lock_byte(self.side));
            m.claimed[slot(self.side)].store(false, Ordering::Release);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.release();
    }
}
