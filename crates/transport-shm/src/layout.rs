//! The file layout: a 4096-byte control block, then the two ring regions.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"TSHMCONN"` (u64 LE) |
//! | 8 | 4 | layout version (u32) |
//! | 12 | 4 | control block length (u32, = 4096) |
//! | 16 | 8 | file length (u64) |
//! | 24 | 8 | offset of the server→client ring region (u64, = 4096) |
//! | 32 | 8 | capacity of the server→client ring (u64, data bytes) |
//! | 40 | 8 | offset of the client→server ring region (u64, page-aligned) |
//! | 48 | 8 | capacity of the client→server ring (u64, data bytes) |
//! | 56 | 4 | ring frame alignment (u32, = 8) |
//! | 60 | 1 | server name length |
//! | 61 | 1 | client name length |
//! | 62 | 2 | reserved, 0 |
//! | 64 | 64 | server name, zero-padded |
//! | 128 | 64 | client name, zero-padded |
//! | 192 | 8 | file id: a random non-zero number chosen at creation (u64) |
//! | 200 | 8 | checksum: FNV-1a 64 of bytes 0..200 |
//! | 208 | 48 | reserved, 0 |
//! | 256 | 8 | session epoch (`AtomicU64`; the server adds 1 at each login) |
//! | 320 | 4 | server pid (`AtomicU32`, informational; 0 = none) |
//! | 384 | 4 | client pid (`AtomicU32`, informational; 0 = none) |
//! | 512 | 8 | consumed count of the server→client ring (`AtomicU64`, written by the client) |
//! | 640 | 8 | consumed count of the client→server ring (`AtomicU64`, written by the server) |
//! | 768 | 3328 | reserved, 0 |
//! | 4096 | 384 + cap | server→client ring region (`tcpshm_ring::var` layout) |
//! | page-aligned | 384 + cap | client→server ring region |
//!
//! Bytes 0..208 never change after creation; the checksum makes a torn or scribbled
//! header an error instead of a misread. The file id tells two files of the same
//! names apart: a client that still maps a file the server has since replaced (lost,
//! removed, recreated) learns it at login, when the server's reply names another id.
//!
//! Each ring carries whole wire frames ([`tcpshm_proto::frame`]: the 24-byte header
//! with `seq` and `ack`, then the payload, zero padding to 8), so a frame moves
//! between a ring and a byte stream unchanged. A ring's consumed count is its
//! receiver's commit point: the seq after the last message it popped, stored
//! *before* the ring's read index releases that message (so it is never behind;
//! when it is ahead, the message at the read index is a copy of one already
//! consumed, which the receiver releases when it attaches). It is also the sender's
//! acknowledgement: there is no ack traffic on shared memory. Each ring region is padded to a multiple of
//! 4096 bytes so both start on a page; the file length is exactly the end of the
//! padded second region.

use crate::error::{Direction, ShmError};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::fmt;
use std::path::Path;
use tcpshm_proto::{Name, MAX_NAME_LEN};
use tcpshm_ring::var::{self, Config};

/// Magic number at offset 0 (`"TSHMCONN"`).
pub const MAGIC: u64 = u64::from_le_bytes(*b"TSHMCONN");
/// Layout version this code writes and reads.
pub const VERSION: u32 = 2;
/// Bytes of the control block (one page).
pub const CONTROL_LEN: usize = 4096;
/// Ring regions start on multiples of this.
pub const PAGE: usize = 4096;
/// Frame alignment of both rings.
pub const RING_ALIGN: usize = 8;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_CONTROL_LEN: usize = 12;
const OFF_FILE_LEN: usize = 16;
const OFF_S2C_OFF: usize = 24;
const OFF_S2C_CAP: usize = 32;
const OFF_C2S_OFF: usize = 40;
const OFF_C2S_CAP: usize = 48;
const OFF_ALIGN: usize = 56;
const OFF_SERVER_LEN: usize = 60;
const OFF_CLIENT_LEN: usize = 61;
const OFF_RESERVED: usize = 62;
const OFF_SERVER_NAME: usize = 64;
const OFF_CLIENT_NAME: usize = 128;
const OFF_FILE_ID: usize = 192;
const OFF_CHECKSUM: usize = 200;
const IMMUTABLE_LEN: usize = 200;
pub(crate) const OFF_EPOCH: usize = 256;
pub(crate) const OFF_SERVER_PID: usize = 320;
pub(crate) const OFF_CLIENT_PID: usize = 384;
pub(crate) const OFF_S2C_CONSUMED: usize = 512;
pub(crate) const OFF_C2S_CONSUMED: usize = 640;

/// The data capacities of the two rings of a connection, in bytes. Each is a power of
/// two, at least 32; a ring carries messages up to half its capacity less 8 bytes.
///
/// ```
/// use tcpshm_transport_shm::Capacities;
/// let c = Capacities::symmetric(1 << 20);
/// assert_eq!(c.server_to_client, 1 << 20);
/// assert!(c.validate().is_ok());
/// assert!(Capacities::symmetric(1000).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capacities {
    /// Bytes of the server→client ring.
    pub server_to_client: usize,
    /// Bytes of the client→server ring.
    pub client_to_server: usize,
}

impl Capacities {
    /// The same capacity both ways.
    pub const fn symmetric(bytes: usize) -> Capacities {
        Capacities { server_to_client: bytes, client_to_server: bytes }
    }

    /// Checks both capacities (power of two, 32 to 2^48 bytes).
    pub fn validate(&self) -> Result<(), ShmError> {
        for (direction, cap) in
            [(Direction::ServerToClient, self.server_to_client), (Direction::ClientToServer, self.client_to_server)]
        {
            Config { capacity: cap, align: RING_ALIGN }
                .validate()
                .map_err(|error| ShmError::BadCapacity { direction, error })?;
        }
        Ok(())
    }

    /// The capacity of the ring carrying `direction`.
    pub const fn of(&self, direction: Direction) -> usize {
        match direction {
            Direction::ServerToClient => self.server_to_client,
            Direction::ClientToServer => self.client_to_server,
        }
    }
}

impl Default for Capacities {
    /// 1 MiB each way (messages up to 512 KiB − 8).
    fn default() -> Self {
        Capacities::symmetric(1 << 20)
    }
}

impl fmt::Display for Capacities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server->client {} bytes, client->server {} bytes", self.server_to_client, self.client_to_server)
    }
}

/// Where things are in a file of given capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) caps: Capacities,
    pub(crate) s2c_off: usize,
    pub(crate) c2s_off: usize,
    pub(crate) file_len: usize,
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Geometry {
    /// The layout of a file with `caps` (assumed validated).
    pub(crate) fn new(caps: Capacities) -> Geometry {
        let s2c_off = CONTROL_LEN;
        let c2s_off = s2c_off + round_up(var::region_size(caps.server_to_client), PAGE);
        let file_len = c2s_off + round_up(var::region_size(caps.client_to_server), PAGE);
        Geometry { caps, s2c_off, c2s_off, file_len }
    }

    /// `(offset, length)` of the ring region of `direction`.
    pub(crate) fn ring(&self, direction: Direction) -> (usize, usize) {
        match direction {
            Direction::ServerToClient => (self.s2c_off, var::region_size(self.caps.server_to_client)),
            Direction::ClientToServer => (self.c2s_off, var::region_size(self.caps.client_to_server)),
        }
    }
}

/// FNV-1a, 64 bits: a checksum of the immutable header fields (not a defence against
/// a hostile writer, which validation handles; a detector of torn or stray writes).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes a fresh control block into `block` (zeroed, [`CONTROL_LEN`] bytes): all
/// fields, epoch 0, no pids, consumed counts 0. The magic is written last.
pub(crate) fn write_control(block: &mut [u8], geo: &Geometry, server: &Name, client: &Name, file_id: u64) {
    let b = &mut block[..CONTROL_LEN];
    b.fill(0);
    b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
    b[OFF_CONTROL_LEN..OFF_CONTROL_LEN + 4].copy_from_slice(&(CONTROL_LEN as u32).to_le_bytes());
    b[OFF_FILE_LEN..OFF_FILE_LEN + 8].copy_from_slice(&(geo.file_len as u64).to_le_bytes());
    b[OFF_S2C_OFF..OFF_S2C_OFF + 8].copy_from_slice(&(geo.s2c_off as u64).to_le_bytes());
    b[OFF_S2C_CAP..OFF_S2C_CAP + 8].copy_from_slice(&(geo.caps.server_to_client as u64).to_le_bytes());
    b[OFF_C2S_OFF..OFF_C2S_OFF + 8].copy_from_slice(&(geo.c2s_off as u64).to_le_bytes());
    b[OFF_C2S_CAP..OFF_C2S_CAP + 8].copy_from_slice(&(geo.caps.client_to_server as u64).to_le_bytes());
    b[OFF_ALIGN..OFF_ALIGN + 4].copy_from_slice(&(RING_ALIGN as u32).to_le_bytes());
    b[OFF_SERVER_LEN] = server.as_bytes().len() as u8;
    b[OFF_CLIENT_LEN] = client.as_bytes().len() as u8;
    b[OFF_SERVER_NAME..OFF_SERVER_NAME + server.as_bytes().len()].copy_from_slice(server.as_bytes());
    b[OFF_CLIENT_NAME..OFF_CLIENT_NAME + client.as_bytes().len()].copy_from_slice(client.as_bytes());
    b[OFF_FILE_ID..OFF_FILE_ID + 8].copy_from_slice(&file_id.to_le_bytes());
    b[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC.to_le_bytes());
    let sum = fnv1a(&b[..IMMUTABLE_LEN]);
    b[OFF_CHECKSUM..OFF_CHECKSUM + 8].copy_from_slice(&sum.to_le_bytes());
}

/// The names stored in a control block copy, if they are valid names (the
/// inspection validates the rest against them).
pub(crate) fn stored_names(b: &[u8; CONTROL_LEN]) -> Option<(Name, Name)> {
    let name = |len_off: usize, off: usize| {
        let len = (b[len_off] as usize).min(MAX_NAME_LEN);
        std::str::from_utf8(&b[off..off + len]).ok().and_then(|s| Name::new(s).ok())
    };
    Some((name(OFF_SERVER_LEN, OFF_SERVER_NAME)?, name(OFF_CLIENT_LEN, OFF_CLIENT_NAME)?))
}

/// The live fields of a control block copy: session epoch, pids (0: none), consumed
/// counts of the server→client and client→server rings.
pub(crate) fn live_fields(b: &[u8; CONTROL_LEN]) -> (u64, u32, u32, u64, u64) {
    (
        u64_at(b, OFF_EPOCH),
        u32_at(b, OFF_SERVER_PID),
        u32_at(b, OFF_CLIENT_PID),
        u64_at(b, OFF_S2C_CONSUMED),
        u64_at(b, OFF_C2S_CONSUMED),
    )
}

pub(crate) fn file_id_of(b: &[u8; CONTROL_LEN]) -> u64 {
    u64_at(b, OFF_FILE_ID)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// What the opener expects to find.
pub(crate) struct Expect<'a> {
    pub(crate) server: &'a Name,
    pub(crate) client: &'a Name,
    /// `None`: accept the file's capacities (the client learns them from the file).
    pub(crate) caps: Option<Capacities>,
}

/// Validates a copy of the control block of a file of `file_len` bytes at `path`,
/// in the order that names the most basic problem first: magic (foreign file),
/// version, checksum, names, capacities, layout, length.
pub(crate) fn validate_control(
    copy: &[u8; CONTROL_LEN],
    file_len: u64,
    path: &Path,
    expect: &Expect<'_>,
) -> Result<Geometry, ShmError> {
    let b = &copy[..];
    let path_buf = || path.to_path_buf();
    let magic = u64_at(b, OFF_MAGIC);
    if magic != MAGIC {
        return Err(ShmError::BadMagic { path: path_buf(), found: magic });
    }
    let version = u32_at(b, OFF_VERSION);
    if version != VERSION {
        return Err(ShmError::BadVersion { path: path_buf(), found: version, expected: VERSION });
    }
    if fnv1a(&b[..IMMUTABLE_LEN]) != u64_at(b, OFF_CHECKSUM) {
        return Err(ShmError::BadChecksum { path: path_buf() });
    }
    let bad = |detail| Err(ShmError::BadLayout { path: path_buf(), detail });
    if u32_at(b, OFF_CONTROL_LEN) as usize != CONTROL_LEN {
        return bad("control block length is not 4096");
    }
    if u32_at(b, OFF_ALIGN) as usize != RING_ALIGN {
        return bad("ring frame alignment is not 8");
    }
    if b[OFF_RESERVED..OFF_RESERVED + 2] != [0, 0] {
        return bad("reserved bytes 62..64 are not zero");
    }
    for (side, len_off, name_off, want) in [
        (crate::Side::Server, OFF_SERVER_LEN, OFF_SERVER_NAME, expect.server),
        (crate::Side::Client, OFF_CLIENT_LEN, OFF_CLIENT_NAME, expect.client),
    ] {
        let len = (b[len_off] as usize).min(MAX_NAME_LEN);
        let found = &b[name_off..name_off + len];
        if found != want.as_bytes() || b[name_off + len..name_off + MAX_NAME_LEN].iter().any(|&x| x != 0) {
            return Err(ShmError::NameMismatch {
                path: path_buf(),
                side,
                found: String::from_utf8_lossy(found).into_owned(),
                expected: want.as_str().to_owned(),
            });
        }
    }
    let s2c_cap = u64_at(b, OFF_S2C_CAP);
    let c2s_cap = u64_at(b, OFF_C2S_CAP);
    let (Ok(s2c), Ok(c2s)) = (usize::try_from(s2c_cap), usize::try_from(c2s_cap)) else {
        return bad("a ring capacity does not fit this machine's address space");
    };
    let caps = Capacities { server_to_client: s2c, client_to_server: c2s };
    if let Some(want) = expect.caps {
        if want != caps {
            return Err(ShmError::CapacityMismatch { path: path_buf(), found: caps, expected: want });
        }
    }
    if caps.validate().is_err() {
        return bad("a ring capacity is not a power of two in 32..=2^48");
    }
    let geo = Geometry::new(caps);
    if u64_at(b, OFF_S2C_OFF) != geo.s2c_off as u64 || u64_at(b, OFF_C2S_OFF) != geo.c2s_off as u64 {
        return bad("a ring offset is not the one its capacities imply");
    }
    let stated = u64_at(b, OFF_FILE_LEN);
    if stated != geo.file_len as u64 {
        return bad("the recorded file length is not the one the capacities imply");
    }
    if file_len != stated {
        return Err(ShmError::SizeMismatch { path: path_buf(), found: file_len, expected: stated });
    }
    if b[OFF_CHECKSUM + 8..OFF_EPOCH].iter().any(|&x| x != 0) {
        return bad("reserved bytes 208..256 are not zero");
    }
    if u64_at(b, OFF_FILE_ID) == 0 {
        return bad("the file id is 0");
    }
    Ok(geo)
}

/// The mutable, shared fields of a mapped control block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlBlock {
    base: *mut u8,
}

impl ControlBlock {
    /// # Safety
    /// `base` must point to a mapped, 4096-byte-aligned control block that outlives
    /// every use of the returned value.
    pub(crate) unsafe fn new(base: *mut u8) -> ControlBlock {
        ControlBlock { base }
    }

    pub(crate) fn epoch(&self) -> &AtomicU64 {
        // SAFETY: `new`'s contract: the block is mapped and page-aligned, so offset 256
        // is in bounds and 8-aligned; the field is only accessed atomically.
        unsafe { &*(self.base.add(OFF_EPOCH) as *const AtomicU64) }
    }

    /// The consumed count of the ring carrying `direction` (written by its receiver).
    pub(crate) fn consumed(&self, direction: Direction) -> &AtomicU64 {
        let off = match direction {
            Direction::ServerToClient => OFF_S2C_CONSUMED,
            Direction::ClientToServer => OFF_C2S_CONSUMED,
        };
        // SAFETY: as for `epoch`: in bounds, 8-aligned, accessed only atomically.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    /// The file id (immutable after creation).
    pub(crate) fn file_id(&self) -> u64 {
        // SAFETY: in bounds and 8-aligned; immutable after creation (validated).
        u64::from_le(unsafe { self.base.add(OFF_FILE_ID).cast::<u64>().read_volatile() })
    }

    pub(crate) fn pid(&self, side: crate::Side) -> &AtomicU32 {
        let off = match side {
            crate::Side::Server => OFF_SERVER_PID,
            crate::Side::Client => OFF_CLIENT_PID,
        };
        // SAFETY: as for `epoch`: in bounds, 4-aligned, accessed only atomically.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    /// Reads the block once into a private copy (the peer may be writing its atomics).
    pub(crate) fn snapshot(&self) -> [u8; CONTROL_LEN] {
        let mut copy = [0u8; CONTROL_LEN];
        // Word-sized volatile reads: the mapping may be written concurrently by
        // another process; we validate only the copy.
        for (i, chunk) in copy.chunks_exact_mut(8).enumerate() {
            // SAFETY: `i * 8 < CONTROL_LEN`, in bounds and 8-aligned.
            let w = unsafe { self.base.add(i * 8).cast::<u64>().read_volatile() };
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        core::sync::atomic::fence(Ordering::Acquire);
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (Name, Name) {
        (Name::new("srv").unwrap(), Name::new("cli").unwrap())
    }

    #[test]
    fn geometry_is_page_aligned_and_exact() {
        let g = Geometry::new(Capacities { server_to_client: 1 << 12, client_to_server: 1 << 16 });
        assert_eq!(g.s2c_off, 4096);
        assert_eq!(g.c2s_off, 4096 + 8192); // 384 + 4096 rounds up to two pages
        assert_eq!(g.file_len, g.c2s_off + 16 * 4096 + 4096);
        assert_eq!(g.ring(Direction::ClientToServer), (g.c2s_off, 384 + (1 << 16)));
    }

    #[test]
    fn control_roundtrip_and_every_field_checked() {
        let (s, c) = names();
        let caps = Capacities::symmetric(4096);
        let geo = Geometry::new(caps);
        let mut b = [0u8; CONTROL_LEN];
        write_control(&mut b, &geo, &s, &c, 0x1234);
        let p = Path::new("/x");
        let ok = Expect { server: &s, client: &c, caps: Some(caps) };
        assert_eq!(validate_control(&b, geo.file_len as u64, p, &ok).unwrap(), geo);
        let any = Expect { server: &s, client: &c, caps: None };
        assert_eq!(validate_control(&b, geo.file_len as u64, p, &any).unwrap(), geo);

        // Any flipped byte of the immutable part is detected.
        for i in 0..IMMUTABLE_LEN + 8 {
            let mut bad = b;
            bad[i] ^= 0x40;
            assert!(validate_control(&bad, geo.file_len as u64, p, &any).is_err(), "byte {i}");
        }
        // The mutable fields are not covered.
        let mut live = b;
        live[OFF_EPOCH] = 9;
        live[OFF_SERVER_PID] = 1;
        live[OFF_S2C_CONSUMED] = 3;
        live[OFF_C2S_CONSUMED] = 4;
        assert!(validate_control(&live, geo.file_len as u64, p, &any).is_ok());

        let other = Name::new("srv2").unwrap();
        let e = validate_control(&b, geo.file_len as u64, p, &Expect { server: &other, client: &c, caps: None });
        assert!(matches!(e, Err(ShmError::NameMismatch { side: crate::Side::Server, .. })), "{e:?}");
        let e = validate_control(&b, geo.file_len as u64, p, &Expect { server: &s, client: &other, caps: None });
        assert!(matches!(e, Err(ShmError::NameMismatch { side: crate::Side::Client, .. })), "{e:?}");
        let e = validate_control(&b, geo.file_len as u64, p, &Expect { caps: Some(Capacities::symmetric(8192)), ..ok });
        assert!(matches!(e, Err(ShmError::CapacityMismatch { .. })), "{e:?}");
        let e = validate_control(&b, geo.file_len as u64 - 1, p, &ok);
        assert!(matches!(e, Err(ShmError::SizeMismatch { .. })), "{e:?}");
    }
}
