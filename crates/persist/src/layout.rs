//! The store file layout: a 4096-byte store header page, then a `tcpshm-ring` var
//! queue region. The table is in the crate documentation; this module owns the
//! offsets, the encoding of the immutable header and its checksum, and the raw word
//! accessors that recovery uses on a byte image of the file.

use crate::error::HeaderError;
use tcpshm_proto::Name;
use tcpshm_ring::var;

/// Magic number at offset 0 (`"TSHMSTOR"` little-endian).
pub const MAGIC: u64 = u64::from_le_bytes(*b"TSHMSTOR");
/// Format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of the store header page (the ring region starts here).
pub const HEADER_PAGE: usize = 4096;
/// Frame alignment of the send queue: the wire's (frames in the queue are byte for
/// byte the frames on the wire, which are padded to 8).
pub const FRAME_ALIGN: usize = tcpshm_proto::frame::FRAME_ALIGN;

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 12;
pub(crate) const OFF_CAPACITY: usize = 16;
pub(crate) const OFF_ALIGN: usize = 24;
pub(crate) const OFF_RESERVED0: usize = 28;
pub(crate) const OFF_CREATED: usize = 32;
pub(crate) const OFF_LOCAL_LEN: usize = 40;
pub(crate) const OFF_REMOTE_LEN: usize = 41;
pub(crate) const OFF_EPOCH_LEN: usize = 42;
pub(crate) const OFF_LOCAL: usize = 48;
pub(crate) const OFF_REMOTE: usize = 112;
pub(crate) const OFF_EPOCH: usize = 176;
/// End of the checksummed immutable fields; the CRC32 is stored here.
pub(crate) const OFF_CRC: usize = 240;
pub(crate) const OFF_ACKED: usize = 256;
pub(crate) const OFF_CONSUMED: usize = 264;
pub(crate) const OFF_SEND_CURSOR: usize = 272;
pub(crate) const OFF_NEXT_SEQ: usize = 280;
/// The connection layer's session words (4 × u64), live copies.
pub(crate) const OFF_SESSION: usize = 288;
/// Boot id (16 bytes) of the machine session that last opened the file for writing:
/// tells recovery whether the page cache it reads is the one the writer wrote.
pub(crate) const OFF_BOOT: usize = 320;
/// The two commit record slots, each alone in its 512-byte sector.
pub(crate) const OFF_COMMIT: [usize; 2] = [512, 1024];

/// Number of session words.
pub const SESSION_WORDS: usize = 4;

/// Offsets inside the ring region (the `tcpshm_ring::var` layout, version 1): the
/// write and read indices. Recovery reads them from an image and installs repaired
/// values before attaching the ring.
pub(crate) const RING_OFF_WRITE: usize = 128;
pub(crate) const RING_OFF_READ: usize = 256;
/// File offset of the ring's data area.
pub(crate) const DATA: usize = HEADER_PAGE + var::HEADER_LEN;

/// Counters are sequence numbers; a value at or above this is impossible (it would
/// take 292 years at one message per nanosecond) and marks a corrupt word.
pub(crate) const COUNTER_LIMIT: u64 = 1 << 63;

const NAME_SLOT: usize = tcpshm_proto::MAX_NAME_LEN;
const _: () = assert!(OFF_LOCAL + NAME_SLOT == OFF_REMOTE && OFF_REMOTE + NAME_SLOT == OFF_EPOCH);
const _: () = assert!(OFF_EPOCH + NAME_SLOT == OFF_CRC && OFF_CRC + 4 <= OFF_ACKED);
// The live words share the first 512-byte sector with the immutable header, each on
// an 8-byte boundary; each commit slot has a sector of its own, so writing one slot
// never tears the other, whatever the device's write granularity.
const _: () = assert!(OFF_BOOT + 16 <= 512 && OFF_ACKED.is_multiple_of(8) && OFF_SESSION.is_multiple_of(8));
const _: () = assert!(OFF_COMMIT[0] >= 512 && OFF_COMMIT[1] >= OFF_COMMIT[0] + 512);
const _: () = assert!(OFF_COMMIT[1] + crate::commit::RECORD_LEN <= HEADER_PAGE);

/// Length of a store file whose send queue has `capacity` data bytes.
///
/// ```
/// assert_eq!(tcpshm_persist::file_len(1 << 20), 4096 + 384 + (1 << 20));
/// ```
pub const fn file_len(capacity: usize) -> usize {
    HEADER_PAGE + var::region_size(capacity)
}

/// The immutable part of the store header: written once when the file is built and
/// never in place again (a change of epoch or capacity builds a new file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Format version.
    pub version: u32,
    /// Data bytes of the send queue ring.
    pub capacity: usize,
    /// Frame alignment of the ring.
    pub align: usize,
    /// Creation time given by the caller when the file was built (ns since the Unix epoch).
    pub created_unix_ns: u64,
    /// This side's name.
    pub local: Name,
    /// The peer's name.
    pub remote: Name,
    /// The remote's epoch (e.g. the server name of the trading day), if known.
    pub epoch: Option<Name>,
}

/// Writes the immutable header and its checksum into the first page. The caller has
/// exclusive access to `page` (a file being built, not yet visible under its name).
pub(crate) fn write_header(page: &mut [u8], h: &HeaderInfo) {
    page[..HEADER_PAGE].fill(0);
    put_u64(page, OFF_MAGIC, MAGIC);
    put_u32(page, OFF_VERSION, h.version);
    put_u32(page, OFF_HEADER_LEN, HEADER_PAGE as u32);
    put_u64(page, OFF_CAPACITY, h.capacity as u64);
    put_u32(page, OFF_ALIGN, h.align as u32);
    put_u64(page, OFF_CREATED, h.created_unix_ns);
    put_name(page, OFF_LOCAL_LEN, OFF_LOCAL, Some(&h.local));
    put_name(page, OFF_REMOTE_LEN, OFF_REMOTE, Some(&h.remote));
    put_name(page, OFF_EPOCH_LEN, OFF_EPOCH, h.epoch.as_ref());
    let crc = crc32fast::hash(&page[..OFF_CRC]);
    put_u32(page, OFF_CRC, crc);
}

/// Reads and checks the immutable header from a copy of the first page, in the order
/// that gives the most useful error: ours at all, version, checksum, then each field.
pub(crate) fn read_header(page: &[u8; HEADER_PAGE]) -> Result<HeaderInfo, HeaderError> {
    let magic = get_u64(page, OFF_MAGIC);
    if magic != MAGIC {
        return Err(HeaderError::NotOurs { magic });
    }
    let version = get_u32(page, OFF_VERSION);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version { found: version, expected: FORMAT_VERSION });
    }
    let stored = get_u32(page, OFF_CRC);
    let computed = crc32fast::hash(&page[..OFF_CRC]);
    if stored != computed {
        return Err(HeaderError::Checksum { stored, computed });
    }
    // The checksum matched, so anything odd below was written that way by a build of
    // this version (a bug), not torn or flipped: still refused field by field.
    let header_len = get_u32(page, OFF_HEADER_LEN);
    if header_len as usize != HEADER_PAGE {
        return Err(HeaderError::Field { field: "header length", value: header_len as u64 });
    }
    let reserved = get_u32(page, OFF_RESERVED0) as u64 | (page[43..48].iter().fold(0u64, |a, &b| a << 8 | b as u64));
    if reserved != 0 {
        return Err(HeaderError::Field { field: "reserved bytes", value: reserved });
    }
    let capacity = get_u64(page, OFF_CAPACITY);
    let align = get_u32(page, OFF_ALIGN) as usize;
    if align != FRAME_ALIGN {
        return Err(HeaderError::Field { field: "frame alignment", value: align as u64 });
    }
    let cfg = var::Config { capacity: capacity as usize, align };
    if capacity > var::MAX_CAPACITY as u64 || cfg.validate().is_err() {
        return Err(HeaderError::Field { field: "capacity", value: capacity });
    }
    let local = get_name(page, OFF_LOCAL_LEN, OFF_LOCAL, "local name")?
        .ok_or(HeaderError::Field { field: "local name length", value: 0 })?;
    let remote = get_name(page, OFF_REMOTE_LEN, OFF_REMOTE, "remote name")?
        .ok_or(HeaderError::Field { field: "remote name length", value: 0 })?;
    let epoch = get_name(page, OFF_EPOCH_LEN, OFF_EPOCH, "epoch")?;
    Ok(HeaderInfo {
        version,
        capacity: capacity as usize,
        align,
        created_unix_ns: get_u64(page, OFF_CREATED),
        local,
        remote,
        epoch,
    })
}

pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn put_name(b: &mut [u8], len_off: usize, off: usize, name: Option<&Name>) {
    let bytes = name.map(Name::as_bytes).unwrap_or(&[]);
    b[len_off] = bytes.len() as u8;
    b[off..off + bytes.len()].copy_from_slice(bytes);
}

/// A name slot: length byte 0 means "none"; bytes past the length must be zero.
fn get_name(b: &[u8], len_off: usize, off: usize, field: &'static str) -> Result<Option<Name>, HeaderError> {
    let len = b[len_off] as usize;
    if len > NAME_SLOT {
        return Err(HeaderError::Field { field, value: len as u64 });
    }
    if b[off + len..off + NAME_SLOT].iter().any(|&c| c != 0) {
        return Err(HeaderError::Field { field, value: len as u64 });
    }
    if len == 0 {
        return Ok(None);
    }
    Name::from_bytes(&b[off..off + len]).map(Some).map_err(|source| HeaderError::Name { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> HeaderInfo {
        HeaderInfo {
            version: FORMAT_VERSION,
            capacity: 4096,
            align: FRAME_ALIGN,
            created_unix_ns: 1_531_526_400_000_000_000,
            local: Name::new("client-1").unwrap(),
            remote: Name::new("server").unwrap(),
            epoch: Some(Name::new("Server20180714").unwrap()),
        }
    }

    fn page(h: &HeaderInfo) -> [u8; HEADER_PAGE] {
        let mut p = [0xAAu8; HEADER_PAGE];
        write_header(&mut p, h);
        p
    }

    #[test]
    fn round_trip_with_and_without_epoch() {
        let h = info();
        assert_eq!(read_header(&page(&h)).unwrap(), h);
        let h = HeaderInfo { epoch: None, ..info() };
        assert_eq!(read_header(&page(&h)).unwrap(), h);
    }

    #[test]
    fn every_checksummed_byte_is_covered() {
        let good = page(&info());
        for i in 0..OFF_CRC + 4 {
            let mut p = good;
            p[i] ^= 0x10;
            let e = read_header(&p).unwrap_err();
            let expected_kind = match i {
                0..=7 => matches!(e, HeaderError::NotOurs { .. }),
                8..=11 => matches!(e, HeaderError::Version { .. }),
                _ => matches!(e, HeaderError::Checksum { .. }),
            };
            assert!(expected_kind, "byte {i}: {e:?}");
        }
    }

    #[test]
    fn bad_fields_with_valid_checksum_are_named() {
        let reseal = |p: &mut [u8; HEADER_PAGE]| {
            let crc = crc32fast::hash(&p[..OFF_CRC]);
            put_u32(p, OFF_CRC, crc);
        };
        type Corruption = Box<dyn Fn(&mut [u8; HEADER_PAGE])>;
        let cases: Vec<(Corruption, &str)> = vec![
            (Box::new(|p| put_u32(p, OFF_HEADER_LEN, 8192)), "header length"),
            (Box::new(|p| p[44] = 1), "reserved bytes"),
            (Box::new(|p| put_u32(p, OFF_ALIGN, 64)), "frame alignment"),
            (Box::new(|p| put_u64(p, OFF_CAPACITY, 4000)), "capacity"),
            (Box::new(|p| put_u64(p, OFF_CAPACITY, 1 << 60)), "capacity"),
            (Box::new(|p| p[OFF_LOCAL_LEN] = 0), "local name"),
            (
                Box::new(|p| {
                    p[OFF_LOCAL_LEN] = 0;
                    p[OFF_LOCAL..OFF_REMOTE].fill(0)
                }),
                "local name length",
            ),
            (
                Box::new(|p| {
                    p[OFF_REMOTE_LEN] = 0;
                    p[OFF_REMOTE..OFF_EPOCH].fill(0)
                }),
                "remote name length",
            ),
            (Box::new(|p| p[OFF_LOCAL_LEN] = 65), "local name"),
            (Box::new(|p| p[OFF_LOCAL + 60] = b'x'), "local name"),
            (Box::new(|p| p[OFF_EPOCH_LEN] = 0), "epoch"),
        ];
        for (corrupt, field) in cases {
            let mut p = page(&info());
            corrupt(&mut p);
            reseal(&mut p);
            match read_header(&p) {
                Err(HeaderError::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut p = page(&info());
        p[OFF_REMOTE] = b'/';
        reseal(&mut p);
        assert!(matches!(read_header(&p), Err(HeaderError::Name { field: "remote name", .. })));
    }
}
