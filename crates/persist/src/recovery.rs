//! Recovery: from a byte image of a store file to the state the store resumes from.
//!
//! A pure function of the bytes and of the current [`BootId`], so that `open`, the
//! read-only inspection, the check and salvage all decide the same way, and the
//! power-loss tests can feed it every torn image they generate.
//!
//! * **Same machine session** (the file's boot id is the current one): the page cache
//!   holds exactly what the last writer stored, so the *live* words and the ring are
//!   authoritative. Every rule a process crash cannot break is checked strictly; an
//!   interrupted acknowledgement is finished; the `next_seq` hint is repaired.
//! * **After a machine restart**, in `Sync` mode (the newest valid commit record was
//!   made in `Sync`): the live words and ring indices may be any mix of old and new,
//!   so they are ignored; the store rolls back to the newest commit whose batch
//!   matches its checksum — the newest record if its sync completed, otherwise the
//!   previous one (whose sync had completed before the newest began).
//! * **After a machine restart**, in `Process` mode: no promise was made; the live
//!   state is taken if it is consistent (hints repaired), and reported as unverified.

use crate::boot::BootId;
use crate::check::Finding;
use crate::commit::{ring_crc, Commit};
use crate::error::Inconsistency;
use crate::layout::{
    get_u32, get_u64, COUNTER_LIMIT, FRAME_ALIGN, HEADER_PAGE, OFF_ACKED, OFF_BOOT, OFF_COMMIT, OFF_CONSUMED,
    OFF_NEXT_SEQ, OFF_SEND_CURSOR, OFF_SESSION, RING_OFF_READ, RING_OFF_WRITE, SESSION_WORDS,
};
use crate::outcome::Recovery;
use crate::walk::frames;
use tcpshm_ring::var::{self, AttachError};

/// A byte image of a whole store file whose immutable header was validated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Image<'a> {
    /// The header page.
    pub(crate) page: &'a [u8],
    /// The ring region: its header, then `capacity` data bytes.
    pub(crate) ring: &'a [u8],
    pub(crate) capacity: usize,
    /// The largest ring payload (the ring's `max_payload`).
    pub(crate) max_payload: usize,
}

impl<'a> Image<'a> {
    /// `file` must be exactly `file_len(capacity)` bytes.
    pub(crate) fn new(file: &'a [u8], capacity: usize) -> Image<'a> {
        debug_assert_eq!(file.len(), crate::file_len(capacity));
        let max_payload = var::Config { capacity, align: FRAME_ALIGN }.max_payload();
        Image { page: &file[..HEADER_PAGE], ring: &file[HEADER_PAGE..], capacity, max_payload }
    }

    pub(crate) fn data(&self) -> &'a [u8] {
        &self.ring[var::HEADER_LEN..]
    }

    pub(crate) fn live(&self) -> Live {
        let w = |off| get_u64(self.page, off);
        Live {
            acked: w(OFF_ACKED),
            consumed: w(OFF_CONSUMED),
            send_cursor: w(OFF_SEND_CURSOR),
            hint: w(OFF_NEXT_SEQ),
            session: std::array::from_fn(|i| w(OFF_SESSION + 8 * i)),
            boot: BootId(self.page[OFF_BOOT..OFF_BOOT + 16].try_into().expect("16 bytes")),
            read: get_u64(self.ring, RING_OFF_READ),
            write: get_u64(self.ring, RING_OFF_WRITE),
        }
    }

    /// The two commit slots, decoded (`None`: no valid record).
    pub(crate) fn slots(&self) -> [Option<Commit>; 2] {
        OFF_COMMIT.map(|off| Commit::decode(&self.page[off..], self.capacity as u64))
    }

    /// The immutable fields of the ring header (the `tcpshm_ring::var` layout), in
    /// the order the ring itself checks them.
    fn check_ring_header(&self) -> Result<(), AttachError> {
        let magic = get_u64(self.ring, 0);
        if magic != var::MAGIC {
            return Err(AttachError::BadMagic(magic));
        }
        let version = get_u32(self.ring, 8);
        if version != var::VERSION {
            return Err(AttachError::BadVersion { found: version, expected: var::VERSION });
        }
        let data = get_u64(self.ring, 24);
        if data != var::HEADER_LEN as u64 {
            return Err(AttachError::BadDataOffset(data));
        }
        let align = get_u32(self.ring, 12);
        if !align.is_power_of_two() || !(8..=4096).contains(&align) {
            return Err(AttachError::BadAlign(align));
        }
        let capacity = get_u64(self.ring, 16);
        if !capacity.is_power_of_two() || capacity < 4 * align as u64 || capacity > var::MAX_CAPACITY as u64 {
            return Err(AttachError::BadCapacity(capacity));
        }
        let found = (capacity as usize, align as usize);
        if found != (self.capacity, FRAME_ALIGN) {
            return Err(AttachError::ConfigMismatch { found, expected: (self.capacity, FRAME_ALIGN) });
        }
        Ok(())
    }
}

/// The live words of the header page and the ring indices, as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) acked: u64,
    pub(crate) consumed: u64,
    pub(crate) send_cursor: u64,
    pub(crate) hint: u64,
    pub(crate) session: [u64; SESSION_WORDS],
    pub(crate) boot: BootId,
    pub(crate) read: u64,
    pub(crate) write: u64,
}

/// The state a store resumes from: what to install in the live words and the ring
/// indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct State {
    pub(crate) acked: u64,
    pub(crate) next_seq: u64,
    pub(crate) consumed: u64,
    pub(crate) send_cursor: u64,
    pub(crate) session: [u64; SESSION_WORDS],
    /// Ring read index: frames are stored from here.
    pub(crate) read: u64,
    /// Ring index of the frame of seq `acked` (`read..first` holds acknowledged frames
    /// not yet released), or `write`.
    pub(crate) first: u64,
    /// Number of those acknowledged frames.
    pub(crate) acked_frames: u64,
    /// Ring write index.
    pub(crate) write: u64,
}

/// Why recovery refuses an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The ring header's immutable fields are wrong.
    Ring(AttachError),
    /// The state is inconsistent, or what a completed sync made durable is damaged.
    Inconsistent(Inconsistency),
}

impl From<Inconsistency> for Refusal {
    fn from(e: Inconsistency) -> Refusal {
        Refusal::Inconsistent(e)
    }
}

/// What recovery decided.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) state: State,
    /// The live words and ring indices as found.
    pub(crate) live: Live,
    pub(crate) slots: [Option<Commit>; 2],
    /// After a restart of a `Sync` store: the slot and record rolled back to, which
    /// is durable (its batch was read back from the disk) and the next commit's base.
    pub(crate) base: Option<(usize, Commit)>,
    pub(crate) recovery: Recovery,
}

/// Decides the state to resume from (see the module documentation); everything
/// notable goes to `findings`, also when the image is refused.
pub(crate) fn plan(img: &Image<'_>, now: BootId, findings: &mut Vec<Finding>) -> Result<Plan, Refusal> {
    img.check_ring_header().map_err(Refusal::Ring)?;
    let live = img.live();
    let slots = img.slots();
    let same_session = live.boot.same_session(&now);
    let plan = |state, base, recovery| Plan { state, live, slots, base, recovery };
    if same_session {
        let (state, acked_frames) = live_state(img, &live, true, findings)?;
        return Ok(plan(state, None, Recovery::Resumed { acked_frames }));
    }
    findings.push(Finding::MachineRestarted { recorded: live.boot });
    let Some((slot, newest)) = newest(&slots) else {
        return Err(Inconsistency::NoCommit.into());
    };
    if !newest.sync {
        let (state, acked_frames) = live_state(img, &live, false, findings)?;
        findings.push(Finding::Unverified);
        return Ok(plan(state, None, Recovery::Unverified { acked_frames }));
    }
    let (slot, commit, cut_sync) = match verify(img, &newest)? {
        Ok(()) => (slot, newest, false),
        Err((stored, computed)) => {
            findings.push(Finding::CommitIncomplete { commit: newest.number, stored, computed });
            match slots[1 - slot] {
                // The newest record's sync was cut; the one before it had completed.
                Some(prev) if prev.sync && prev.number < newest.number => match verify(img, &prev)? {
                    Ok(()) => (1 - slot, prev, true),
                    Err((stored, computed)) => {
                        return Err(Inconsistency::SyncedBatch { commit: prev.number, stored, computed }.into())
                    }
                },
                // The first sync after a `Process` period was cut: nothing was promised.
                Some(prev) if !prev.sync && prev.number < newest.number => {
                    let (state, acked_frames) = live_state(img, &live, false, findings)?;
                    findings.push(Finding::Unverified);
                    return Ok(plan(state, None, Recovery::Unverified { acked_frames }));
                }
                _ => return Err(Inconsistency::SyncedBatch { commit: newest.number, stored, computed }.into()),
            }
        }
    };
    let state = State {
        acked: commit.acked,
        next_seq: commit.next_seq,
        consumed: commit.consumed,
        send_cursor: commit.send_cursor,
        session: commit.session,
        read: commit.read,
        first: commit.read,
        acked_frames: 0,
        write: commit.write,
    };
    let dropped = unsynced_after(img, &commit, &live);
    if dropped > 0 {
        findings.push(Finding::UnsyncedDropped { from_seq: commit.next_seq, count: dropped });
    }
    for (field, found, resumed) in [
        ("acked", live.acked, commit.acked),
        ("consumed", live.consumed, commit.consumed),
        ("send_cursor", live.send_cursor, commit.send_cursor),
    ] {
        if found != resumed {
            findings.push(Finding::CounterRepaired { field, found, repaired: resumed });
        }
    }
    let recovery = Recovery::RolledBack { commit: commit.number, cut_sync, dropped };
    Ok(plan(state, Some((slot, commit)), recovery))
}

/// The newest valid record and its slot.
pub(crate) fn newest(slots: &[Option<Commit>; 2]) -> Option<(usize, Commit)> {
    match slots {
        [Some(a), Some(b)] if b.number > a.number => Some((1, *b)),
        [Some(a), _] => Some((0, *a)),
        [None, Some(b)] => Some((1, *b)),
        [None, None] => None,
    }
}

/// Checks a record against the frames: `Ok(Err((stored, computed)))` when its batch
/// does not match its checksum (its sync did not complete); an error when the batch
/// matches but the frames are not the ones the record describes (damage).
pub(crate) fn verify(img: &Image<'_>, c: &Commit) -> Result<Result<(), (u32, u32)>, Inconsistency> {
    let computed = ring_crc(img.data(), c.check_from, c.write);
    if computed != c.batch_crc {
        return Ok(Err((c.batch_crc, computed)));
    }
    let mut count = 0u64;
    let mut in_order = true;
    for f in frames(img.data(), c.read, c.write, img.max_payload) {
        in_order &= f?.seq == c.acked + count;
        count += 1;
    }
    if !in_order || count != c.next_seq - c.acked {
        let (acked, next_seq) = (c.acked, c.next_seq);
        return Err(Inconsistency::CommitMismatch { commit: c.number, acked, next_seq, found: count });
    }
    Ok(Ok(()))
}

/// Messages the file shows were pushed after commit `c`: the `next_seq` hint, or the
/// frames with consecutive seqs found after the commit's write index, whichever says
/// more. A lower bound: what never reached the disk leaves no trace.
fn unsynced_after(img: &Image<'_>, c: &Commit, live: &Live) -> u64 {
    let mut seq = c.next_seq;
    for f in frames(img.data(), c.write, c.read + img.capacity as u64, img.max_payload) {
        match f {
            Ok(f) if f.seq == seq => seq += 1,
            _ => break,
        }
    }
    let hint = if live.hint < COUNTER_LIMIT { live.hint } else { 0 };
    seq.max(hint) - c.next_seq
}

/// The live state: strictly checked in the same machine session (every rule a
/// process crash keeps), leniently after a restart of a `Process` store (hints and
/// the informational send cursor are repaired instead of refused). Returns the state
/// and the number of acknowledged frames still queued.
fn live_state(
    img: &Image<'_>,
    l: &Live,
    strict: bool,
    findings: &mut Vec<Finding>,
) -> Result<(State, u64), Inconsistency> {
    for (field, value) in
        [("acked", l.acked), ("consumed", l.consumed), ("send_cursor", l.send_cursor), ("next_seq", l.hint)]
    {
        if value >= COUNTER_LIMIT {
            return Err(Inconsistency::CounterRange { field, value });
        }
    }
    let (read, write) = (l.read, l.write);
    let align = FRAME_ALIGN as u64;
    if read > write || write - read > img.capacity as u64 || !read.is_multiple_of(align) || !write.is_multiple_of(align)
    {
        return Err(Inconsistency::RingIndices { read, write });
    }
    let mut oldest = None;
    let mut end = 0;
    let mut first = None;
    let mut acked_frames = 0;
    for f in frames(img.data(), read, write, img.max_payload) {
        let f = f?;
        if f.seq >= COUNTER_LIMIT {
            return Err(Inconsistency::CounterRange { field: "queued frame seq", value: f.seq });
        }
        match oldest {
            None => oldest = Some(f.seq),
            // Seqs are consecutive, except among acknowledged frames still queued
            // (below `acked`, their space waiting for the next commit in `Sync` mode):
            // each `ack_beyond` left a jump there, up to at most `acked`.
            Some(_) if f.seq != end && !(end <= l.acked && f.seq > end && f.seq <= l.acked) => {
                return Err(Inconsistency::SeqBroken { index: f.index, expected: end, found: f.seq })
            }
            Some(_) => {}
        }
        end = f.seq + 1;
        if f.seq < l.acked {
            acked_frames += 1;
        } else if first.is_none() {
            first = Some(f.index);
        }
    }
    if let Some(oldest) = oldest {
        if l.acked < oldest {
            return Err(Inconsistency::Gap { acked: l.acked, oldest });
        }
    }
    // The seq after the last queued frame; with none queued, the hint is the witness
    // (`ack_beyond` raises the hint before `acked`; everything else keeps
    // `acked <= hint` whenever the ring is empty).
    let queued_end = oldest.map_or(l.hint.min(l.acked), |_| end);
    // `acked` beyond the queued frames: an `ack_beyond`, which raises the hint first.
    if l.acked > queued_end && l.acked > l.hint {
        if strict {
            return Err(Inconsistency::Ahead { field: "acked", value: l.acked, next_seq: queued_end });
        }
        findings.push(Finding::CounterRepaired { field: "next_seq", found: l.hint, repaired: l.acked });
    }
    let next_seq = queued_end.max(l.acked);
    let mut send_cursor = l.send_cursor;
    if send_cursor > next_seq {
        if strict {
            return Err(Inconsistency::Ahead { field: "send_cursor", value: send_cursor, next_seq });
        }
        findings.push(Finding::CounterRepaired { field: "send_cursor", found: send_cursor, repaired: next_seq });
        send_cursor = next_seq;
    }
    if l.hint > next_seq {
        findings.push(Finding::CounterRepaired { field: "next_seq", found: l.hint, repaired: next_seq });
    }
    if acked_frames > 0 {
        findings.push(Finding::AckedFramesQueued { count: acked_frames });
    }
    let state = State {
        acked: l.acked,
        next_seq,
        consumed: l.consumed,
        send_cursor,
        session: l.session,
        read,
        first: first.unwrap_or(write),
        acked_frames,
        write,
    };
    Ok((state, acked_frames))
}
