//! Commit records: what a completed sync made durable.
//!
//! Each sync writes one 128-byte record into one of two slots in the header page
//! (each slot alone in its 512-byte sector), always the slot that does *not* hold the
//! record the store's durable state rests on, so a sync cut by power loss can damage
//! at most the record being written, never the previous one. A record is valid when
//! its magic and CRC32 match and its fields are possible; of two valid records the
//! higher `number` is the newer.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"TSHMCMIT"` |
//! | 8 | 8 | `number` (1, 2, … over the life of the file) |
//! | 16 | 8 | flags: bit 0 = made in [`Durability::Sync`](crate::Durability::Sync) |
//! | 24 | 8 | `acked` |
//! | 32 | 8 | `next_seq` |
//! | 40 | 8 | ring read index (the frame of seq `acked`) |
//! | 48 | 8 | ring write index (the end of the frame of seq `next_seq - 1`) |
//! | 56 | 8 | `check_from`: the batch checksum covers ring bytes `check_from..write` |
//! | 64 | 8 | `consumed` |
//! | 72 | 8 | `send_cursor` |
//! | 80 | 32 | the 4 session words |
//! | 112 | 4 | CRC32 of the ring bytes `check_from..write` (the batch) |
//! | 116 | 8 | reserved, 0 |
//! | 124 | 4 | CRC32 of bytes 0..124 of the record |
//!
//! Why a batch checksum: the sync writes the batch's pages and the record in one
//! `msync`, and the disk may persist them in any order; if the power fails in the
//! middle, the record may be on disk without all of its batch. The checksum tells
//! recovery so, and recovery then uses the previous record, whose sync had completed.

use crate::layout::{get_u32, get_u64, put_u32, put_u64, COUNTER_LIMIT, FRAME_ALIGN, SESSION_WORDS};

/// Bytes of a commit record.
pub(crate) const RECORD_LEN: usize = 128;
/// Magic of a commit record (`"TSHMCMIT"`).
pub(crate) const RECORD_MAGIC: u64 = u64::from_le_bytes(*b"TSHMCMIT");
const FLAG_SYNC: u64 = 1;
const OFF_CRC: usize = 124;

/// A decoded commit record: the complete logical state of the store at a sync, and
/// where its newest bytes lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Commit {
    pub(crate) number: u64,
    /// Made in `Durability::Sync`: recovery after a machine restart rolls back to it.
    /// A record made in `Process` mode only marks that no power-loss promise holds.
    pub(crate) sync: bool,
    pub(crate) acked: u64,
    pub(crate) next_seq: u64,
    pub(crate) read: u64,
    pub(crate) write: u64,
    pub(crate) check_from: u64,
    pub(crate) consumed: u64,
    pub(crate) send_cursor: u64,
    pub(crate) session: [u64; SESSION_WORDS],
    pub(crate) batch_crc: u32,
}

impl Commit {
    pub(crate) fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        put_u64(&mut b, 0, RECORD_MAGIC);
        put_u64(&mut b, 8, self.number);
        put_u64(&mut b, 16, if self.sync { FLAG_SYNC } else { 0 });
        put_u64(&mut b, 24, self.acked);
        put_u64(&mut b, 32, self.next_seq);
        put_u64(&mut b, 40, self.read);
        put_u64(&mut b, 48, self.write);
        put_u64(&mut b, 56, self.check_from);
        put_u64(&mut b, 64, self.consumed);
        put_u64(&mut b, 72, self.send_cursor);
        for (i, w) in self.session.iter().enumerate() {
            put_u64(&mut b, 80 + 8 * i, *w);
        }
        put_u32(&mut b, 112, self.batch_crc);
        let crc = crc32fast::hash(&b[..OFF_CRC]);
        put_u32(&mut b, OFF_CRC, crc);
        b
    }

    /// Decodes a slot; `None` if it holds no valid record (never written, torn, or
    /// damaged), or one whose fields are impossible for a ring of `capacity` bytes.
    pub(crate) fn decode(b: &[u8], capacity: u64) -> Option<Commit> {
        let b = &b[..RECORD_LEN];
        if get_u64(b, 0) != RECORD_MAGIC || get_u32(b, OFF_CRC) != crc32fast::hash(&b[..OFF_CRC]) {
            return None;
        }
        let flags = get_u64(b, 16);
        let c = Commit {
            number: get_u64(b, 8),
            sync: flags & FLAG_SYNC != 0,
            acked: get_u64(b, 24),
            next_seq: get_u64(b, 32),
            read: get_u64(b, 40),
            write: get_u64(b, 48),
            check_from: get_u64(b, 56),
            consumed: get_u64(b, 64),
            send_cursor: get_u64(b, 72),
            session: std::array::from_fn(|i| get_u64(b, 80 + 8 * i)),
            batch_crc: get_u32(b, 112),
        };
        let align = FRAME_ALIGN as u64;
        let possible = flags & !FLAG_SYNC == 0
            && get_u64(b, 116) == 0
            && c.number > 0
            && c.acked <= c.next_seq
            && c.next_seq < COUNTER_LIMIT
            && c.consumed < COUNTER_LIMIT
            && c.send_cursor <= c.next_seq
            && c.read <= c.check_from
            && c.check_from <= c.write
            && c.write - c.read <= capacity
            && c.write < COUNTER_LIMIT
            && [c.read, c.write, c.check_from].iter().all(|i| i.is_multiple_of(align));
        possible.then_some(c)
    }
}

/// CRC32 of the ring bytes `from..to` (free-running indices into a ring whose data
/// area is `data`, `to - from <= data.len()`), following the wrap.
pub(crate) fn ring_crc(data: &[u8], from: u64, to: u64) -> u32 {
    let cap = data.len() as u64;
    debug_assert!(from <= to && to - from <= cap);
    let mut h = crc32fast::Hasher::new();
    if from < to {
        let (a, b) = ((from % cap) as usize, (to % cap) as usize);
        if a < b {
            h.update(&data[a..b]);
        } else {
            h.update(&data[a..]);
            h.update(&data[..b]);
        }
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Commit {
        Commit {
            number: 7,
            sync: true,
            acked: 3,
            next_seq: 9,
            read: 64,
            write: 512,
            check_from: 256,
            consumed: 11,
            send_cursor: 5,
            session: [1, 2, 3, 4],
            batch_crc: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn round_trip_and_every_byte_is_covered() {
        let c = sample();
        let b = c.encode();
        assert_eq!(Commit::decode(&b, 4096), Some(c));
        for i in 0..RECORD_LEN {
            let mut d = b;
            d[i] ^= 0x20;
            assert_eq!(Commit::decode(&d, 4096), None, "byte {i}");
        }
        assert_eq!(Commit::decode(&[0u8; RECORD_LEN], 4096), None);
    }

    #[test]
    fn impossible_fields_are_refused_even_with_a_good_crc() {
        let bad = [
            Commit { number: 0, ..sample() },
            Commit { acked: 10, ..sample() },
            Commit { send_cursor: 10, ..sample() },
            Commit { check_from: 600, ..sample() },
            Commit { check_from: 32, ..sample() },
            Commit { write: 64 + 8192, ..sample() },
            Commit { read: 65, ..sample() },
            Commit { next_seq: COUNTER_LIMIT, ..sample() },
            Commit { consumed: u64::MAX, ..sample() },
        ];
        for c in bad {
            assert_eq!(Commit::decode(&c.encode(), 4096), None, "{c:?}");
        }
    }

    #[test]
    fn ring_crc_follows_the_wrap() {
        let data: Vec<u8> = (0..64u8).collect();
        let whole: Vec<u8> = data[48..].iter().chain(&data[..16]).copied().collect();
        assert_eq!(ring_crc(&data, 48 + 64 * 3, 16 + 64 * 4), crc32fast::hash(&whole));
        assert_eq!(ring_crc(&data, 8, 40), crc32fast::hash(&data[8..40]));
        assert_eq!(ring_crc(&data, 64, 128), crc32fast::hash(&data));
        assert_eq!(ring_crc(&data, 5, 5), crc32fast::hash(&[]));
    }
}
