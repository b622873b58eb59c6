//! The durable counts a restarted process reads before it does anything: how many of
//! the peer's messages were popped and how many of its own were pushed, according to
//! the transport's persistent state — its commit points themselves.
//!
//! * TCP: the session store's `consumed` count (stored by `pop`) and `next_seq`
//!   (the seq the next push gets), through `tcpshm_persist`'s public API.
//! * Shared memory: there are no counters, the rings are the state: the inbound
//!   ring's read index (stored by `pop`) and the outbound ring's write index (stored
//!   by `push`), free-running byte counters read from the file at the offsets its
//!   documented layout gives. A byte index becomes a message count by replaying the
//!   ring's documented frame placement (8-byte header, payload padded to the frame
//!   alignment, a frame that does not fit before the end starts at offset 0) over
//!   the stream's message lengths, which are a function of the message number
//!   ([`Stream::len`]). An index that falls on no frame boundary is an error.
//!
//! Each side reads only indices that it alone writes (its inbound read index, its
//! outbound write index), so the live peer cannot change them under the read.

use super::content::Stream;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tcpshm_persist::{Options, Store};
use tcpshm_proto::Name;

/// Popped inbound and pushed outbound messages, per the persistent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durable {
    /// Inbound messages popped.
    pub consumed: u64,
    /// Outbound messages pushed.
    pub pushed: u64,
}

/// The TCP session store `local@remote` in `dir`: its consumed count and next seq.
/// No file yet: nothing happened (0, 0). The store is opened and closed again (it is
/// locked while open: call this before the server or client opens it).
pub fn tcp_store(dir: &Path, local: Name, remote: Name, capacity: usize) -> Result<Durable, String> {
    if !dir.join(tcpshm_persist::file_name(&local, &remote)).exists() {
        return Ok(Durable::default());
    }
    let (store, _) = Store::open(dir, local, remote, &Options::new(capacity), None, 0)
        .map_err(|e| format!("cannot open the store {local}@{remote} in {}: {e}", dir.display()))?;
    Ok(Durable { consumed: store.consumed(), pushed: store.next_seq() })
}

/// Offsets in the shared-memory file (transport-shm's `layout` table).
const S2C_RING_OFF: u64 = 24;
const C2S_RING_OFF: u64 = 40;
/// Offsets in a ring region (tcpshm-ring's `var::layout` table).
const RING_ALIGN: u64 = 12;
const RING_CAPACITY: u64 = 16;
const RING_WRITE: u64 = 128;
const RING_READ: u64 = 256;
/// The ring's frame header.
const FRAME_HEADER: u64 = 8;

/// One ring's shape and indices as read from the file.
#[derive(Debug, Clone, Copy)]
pub struct RingState {
    /// Data capacity (bytes).
    pub capacity: u64,
    /// Frame alignment.
    pub align: u64,
    /// Bytes ever published.
    pub write: u64,
    /// Bytes ever released.
    pub read: u64,
}

fn read_u64(f: &std::fs::File, off: u64) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off)?;
    Ok(u64::from_le_bytes(b))
}

fn ring(f: &std::fs::File, region: u64) -> std::io::Result<RingState> {
    let mut a = [0u8; 4];
    f.read_exact_at(&mut a, region + RING_ALIGN)?;
    Ok(RingState {
        capacity: read_u64(f, region + RING_CAPACITY)?,
        align: u32::from_le_bytes(a) as u64,
        write: read_u64(f, region + RING_WRITE)?,
        read: read_u64(f, region + RING_READ)?,
    })
}

/// Both rings of the connection file at `path` (server→client, client→server);
/// `None` if there is no file yet.
pub fn shm_rings(path: &Path) -> Result<Option<(RingState, RingState)>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let read = || -> std::io::Result<(RingState, RingState)> {
        let s2c = read_u64(&f, S2C_RING_OFF)?;
        let c2s = read_u64(&f, C2S_RING_OFF)?;
        Ok((ring(&f, s2c)?, ring(&f, c2s)?))
    };
    read().map(Some).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// How many messages of `stream` end exactly at byte index `index` of a ring of this
/// shape (replaying the frame placement from index 0); an error if `index` is not
/// the end of a message.
pub fn messages_at(stream: Stream, ring: &RingState, index: u64) -> Result<u64, String> {
    let mask = ring.capacity - 1;
    let (mut at, mut k) = (0u64, 0u64);
    while at < index {
        let frame = (FRAME_HEADER + stream.len(k) as u64).div_ceil(ring.align) * ring.align;
        let to_end = ring.capacity - (at & mask);
        if frame > to_end {
            at += to_end; // the wrap marker's skip
        }
        at += frame;
        k += 1;
    }
    if at != index {
        return Err(format!(
            "ring index {index} is not the end of a message of the {} stream (message {} ends at {at})",
            stream.name(),
            k - 1
        ));
    }
    Ok(k)
}

/// The durable counts of the `server` side (`true`) or the client side of the
/// connection file at `path`. No file yet: (0, 0).
pub fn shm(path: &Path, server: bool) -> Result<Durable, String> {
    let Some((s2c, c2s)) = shm_rings(path)? else { return Ok(Durable::default()) };
    Ok(if server {
        Durable {
            consumed: messages_at(Stream::CLIENT, &c2s, c2s.read)?,
            pushed: messages_at(Stream::SERVER, &s2c, s2c.write)?,
        }
    } else {
        Durable {
            consumed: messages_at(Stream::SERVER, &s2c, s2c.read)?,
            pushed: messages_at(Stream::CLIENT, &c2s, c2s.write)?,
        }
    })
}
