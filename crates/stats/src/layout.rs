//! The counters file layout, in one place: a 4096-byte header, then fixed-size
//! session records. Every field is a little-endian `u64` word (names and texts are
//! packed into words), so every store and load is one aligned 8-byte atomic access.
//!
//! **Header** (written once before the file appears under its name, except where
//! marked live):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"TSHMSTAT"` |
//! | 8 | 8 | layout version (1) |
//! | 16 | 8 | header length (4096) |
//! | 24 | 8 | record length (512) |
//! | 32 | 8 | record count (the file's capacity) |
//! | 40 | 8 | file length (`4096 + 512 × count`) |
//! | 48 | 8 | server pid |
//! | 56 | 8 | server name length |
//! | 64 | 64 | server name, zero-padded |
//! | 128 | 8 | storage directory length in bytes (at most 1024; longer paths are cut) |
//! | 256 | 8 | live: records handed out so far (a high-water mark; freed records are reused) |
//! | 264 | 8 | live: sessions that found no free record (the file is full) |
//! | 512 | 8 | live: server block version (seqlock word: odd while being written) |
//! | 520 | 8 | server block: the control thread's `now` at this update |
//! | 528 | 8 | server block: connections accepted |
//! | 536 | 8 | server block: logins admitted |
//! | 544 | 8 | server block: logins refused |
//! | 552 | 8 | server block: logins timed out |
//! | 560 | 8 | server block: logins pending |
//! | 568 | 8 | server block: connections live |
//! | 576 | 8 | server block: sessions removed by the retention policy |
//! | 584 | 8 | server block: retention sweeps run |
//! | 1024 | 1024 | storage directory, zero-padded |
//!
//! **Session record** (at `4096 + 512 × i`; all live, behind the record's version
//! word):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | version (seqlock word: odd while being written) |
//! | 8 | 8 | state: 0 free, 1 up (logged in), 2 down (disconnected; the session is kept) |
//! | 16 | 8 | transport: 0 none yet, 1 TCP, 2 shared memory |
//! | 24 | 8 | group |
//! | 32 | 8 | client name length |
//! | 40 | 64 | client name, zero-padded |
//! | 104 | 8 | the group's `now` at this update |
//! | 112 | 8 | last activity: when a message or heartbeat last moved either way (server's `now`) |
//! | 120 | 8 | the `now` of the last login |
//! | 128 | 8 | logins in this process |
//! | 136 | 8 | messages pushed (in this process) |
//! | 144 | 8 | messages sent for the first time |
//! | 152 | 8 | messages sent again after a reconnect |
//! | 160 | 8 | messages acknowledged by the client |
//! | 168 | 8 | messages received |
//! | 176 | 8 | messages popped by the handler |
//! | 184 | 8 | heartbeats sent |
//! | 192 | 8 | heartbeats received |
//! | 200 | 8 | session: next seq |
//! | 208 | 8 | session: consumed count |
//! | 216 | 8 | session: the client's consumed count (as last heard) |
//! | 224 | 8 | queued: messages not yet consumed by the client |
//! | 232 | 8 | bytes queued: the store's ring and the outbound shared-memory ring |
//! | 240 | 8 | last close code (`u64::MAX`: none yet) |
//! | 248 | 8 | last close text length |
//! | 256 | 128 | last close text (UTF-8, cut at 128 bytes) |
//! | 384 | 8 | peer address length |
//! | 392 | 48 | peer address (text, e.g. `127.0.0.1:40522`) |
//!
//! **The seqlock.** Each block has one writer (a record: its group's thread; the
//! server block: the control thread). A writer stores the version + 1 (odd), a release
//! fence, the fields (relaxed), then version + 2 with release. A reader loads the
//! version with acquire (retries while odd), the fields (relaxed), an acquire fence,
//! and the version again: equal means the copy is one update, whole. The writer makes
//! no system call and takes no lock; a reader never blocks it.

/// Magic number at offset 0 (`"TSHMSTAT"` little-endian).
pub const MAGIC: u64 = u64::from_le_bytes(*b"TSHMSTAT");
/// Layout version this code writes and reads.
pub const VERSION: u64 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 4096;
/// Bytes of a session record.
pub const RECORD_LEN: usize = 512;
/// Longest storage directory path kept in the header (bytes).
pub const MAX_DIR_LEN: usize = 1024;
/// Longest close text kept in a record (bytes).
pub const MAX_CLOSE_TEXT: usize = 128;
/// Longest peer address text kept in a record (bytes).
pub const MAX_PEER_TEXT: usize = 48;

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 16;
pub(crate) const OFF_RECORD_LEN: usize = 24;
pub(crate) const OFF_RECORDS: usize = 32;
pub(crate) const OFF_FILE_LEN: usize = 40;
pub(crate) const OFF_PID: usize = 48;
pub(crate) const OFF_SERVER_LEN: usize = 56;
pub(crate) const OFF_SERVER: usize = 64;
pub(crate) const OFF_DIR_LEN: usize = 128;
pub(crate) const OFF_IN_USE: usize = 256;
pub(crate) const OFF_NO_RECORD: usize = 264;
pub(crate) const OFF_SERVER_BLOCK: usize = 512;
/// Words of the server block after its version word.
pub(crate) const SERVER_WORDS: usize = 9;
pub(crate) const OFF_DIR: usize = 1024;

/// Words of a record after its version word.
pub(crate) const RECORD_WORDS: usize = RECORD_LEN / 8 - 1;

// Record offsets (bytes from the record's start).
pub(crate) const R_STATE: usize = 8;
pub(crate) const R_TRANSPORT: usize = 16;
pub(crate) const R_GROUP: usize = 24;
pub(crate) const R_CLIENT_LEN: usize = 32;
pub(crate) const R_CLIENT: usize = 40;
pub(crate) const R_NOW: usize = 104;
pub(crate) const R_LAST_ACTIVITY: usize = 112;
pub(crate) const R_LOGGED_IN_AT: usize = 120;
pub(crate) const R_LOGINS: usize = 128;
pub(crate) const R_PUSHED: usize = 136;
pub(crate) const R_SENT: usize = 144;
pub(crate) const R_RESENT: usize = 152;
pub(crate) const R_ACKED: usize = 160;
pub(crate) const R_RECEIVED: usize = 168;
pub(crate) const R_POPPED: usize = 176;
pub(crate) const R_HB_SENT: usize = 184;
pub(crate) const R_HB_RECEIVED: usize = 192;
pub(crate) const R_NEXT_SEQ: usize = 200;
pub(crate) const R_CONSUMED: usize = 208;
pub(crate) const R_PEER_CONSUMED: usize = 216;
pub(crate) const R_QUEUED: usize = 224;
pub(crate) const R_QUEUED_BYTES: usize = 232;
pub(crate) const R_CLOSE_CODE: usize = 240;
pub(crate) const R_CLOSE_LEN: usize = 248;
pub(crate) const R_CLOSE_TEXT: usize = 256;
pub(crate) const R_PEER_LEN: usize = 384;
pub(crate) const R_PEER: usize = 392;

const _: () = assert!(R_CLOSE_TEXT + MAX_CLOSE_TEXT == R_PEER_LEN);
const _: () = assert!(R_PEER + MAX_PEER_TEXT <= RECORD_LEN);
const _: () = assert!(OFF_SERVER_BLOCK + 8 * (SERVER_WORDS + 1) <= OFF_DIR && OFF_DIR + MAX_DIR_LEN <= HEADER_LEN);
const _: () = assert!(OFF_SERVER + tcpshm_proto::MAX_NAME_LEN <= OFF_DIR_LEN);

/// Length of a counters file with `records` session records.
///
/// ```
/// assert_eq!(tcpshm_stats::file_len(2), 4096 + 2 * 512);
/// ```
pub const fn file_len(records: usize) -> usize {
    HEADER_LEN + records * RECORD_LEN
}

/// Packs `bytes` (at most `8 * words.len()`) into little-endian words, zero-padded.
pub(crate) fn pack(bytes: &[u8], words: &mut [u64]) {
    words.fill(0);
    for (i, chunk) in bytes.chunks(8).enumerate().take(words.len()) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        words[i] = u64::from_le_bytes(w);
    }
}

/// The first `len` bytes of little-endian `words`.
pub(crate) fn unpack(words: &[u64], len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.truncate(len.min(words.len() * 8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_cuts() {
        let mut w = [0u64; 3];
        pack(b"hello, world", &mut w);
        assert_eq!(unpack(&w, 12), b"hello, world");
        pack(&[7u8; 40], &mut w);
        assert_eq!(unpack(&w, 40), vec![7u8; 24]);
        assert_eq!(unpack(&w, 0), b"");
    }
}
