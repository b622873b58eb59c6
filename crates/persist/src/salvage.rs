//! Salvage: the valid prefix of a store file that `open` refuses, into a fresh file.
//!
//! `open` refuses only a file that no crash can produce: what a completed sync made
//! durable is damaged, or the live state contradicts itself (a bug, or a foreign
//! write). Salvage then keeps what can still be trusted, oldest first, up to the first
//! message it cannot vouch for:
//!
//! * after a machine restart of a `Sync` store, from a commit record: the messages of
//!   earlier syncs (kept intact by the no-overwrite rule), and those of the record's
//!   own batch if its checksum matches — from the record that yields the most;
//! * otherwise (same machine session, or a `Process` store): the live queue, up to the
//!   first impossible frame or broken seq.
//!
//! The original file is kept beside the new one as `<file>.damaged`.

use crate::boot::BootId;
use crate::check::{evaluate, Verdict};
use crate::commit::{ring_crc, Commit};
use crate::error::OpenError;
use crate::files::{self, io_err, Dir};
use crate::layout::{file_len, read_header, HeaderInfo, HEADER_PAGE};
use crate::lifecycle::{Counters, Source};
use crate::options::Options;
use crate::outcome::Recovery;
use crate::recovery::Image;
use crate::store::Store;
use crate::walk::frames;
use std::path::PathBuf;
use tcpshm_proto::Name;

/// Suffix of the damaged original kept beside a salvaged store.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// What [`Store::salvage`] kept and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Salvage {
    /// What a [check](crate::check) said about the original (why `open` refused it,
    /// or how it would have opened).
    pub verdict: Verdict,
    /// The original, kept as `<file>.damaged`.
    pub original: PathBuf,
    /// Where the kept messages come from.
    pub source: SalvageSource,
    /// Every kept message is vouched for (synced and intact, or the page cache of the
    /// same machine session). `false` when they come from the live state after a
    /// restart (a `Process` store, or no valid commit record): structurally valid,
    /// not verified.
    pub verified: bool,
    /// The kept messages are seqs `first_unacked..next_seq`.
    pub first_unacked: u64,
    /// See `first_unacked`.
    pub next_seq: u64,
    /// Messages missing in front of the kept ones (the source's first unacknowledged
    /// seq up to the oldest kept).
    pub lost_front: u64,
    /// Messages the source knew of after the kept ones, dropped (at least).
    pub dropped: u64,
}

/// Where salvaged messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SalvageSource {
    /// The file would have opened: the state `open` recovers, all of it.
    Recovered(Recovery),
    /// A commit record (the state of one completed sync), cut at the first message it
    /// cannot vouch for.
    Commit {
        /// Its number.
        number: u64,
    },
    /// The live words and ring, cut at the first impossible frame.
    Live,
}

/// A prefix chosen from an image.
struct Prefix {
    counters: Counters,
    /// Ring index of the first kept frame, and the bound of the walk.
    from: u64,
    to: u64,
    count: u64,
    source: SalvageSource,
    verified: bool,
    lost_front: u64,
    dropped: u64,
}

impl Store {
    /// Recovers the valid prefix of the store of `local@remote` in `dir` into a fresh
    /// file of `opts.capacity` (built under a temporary name, then renamed into
    /// place; the original is kept as `<file>.damaged`) and opens it. For a file that
    /// `open` refuses as [`OpenError::Inconsistent`] or [`OpenError::Ring`]; on a file
    /// `open` accepts it keeps exactly what `open` would. Refused on a store that is
    /// open ([`OpenError::Locked`]), and when the header itself is unreadable
    /// ([`OpenError::Header`]: nothing says what the bytes are).
    ///
    /// ```
    /// use tcpshm_persist::{Options, Store, SalvageSource};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-salvage-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let opts = Options::new(4096);
    /// let (mut s, _) = Store::open(&dir, me, peer, &opts, None, 0).unwrap();
    /// for i in 0..3u8 {
    ///     s.alloc(1).unwrap().unwrap()[0] = i;
    ///     s.push(1, 0).unwrap();
    /// }
    /// drop(s);
    /// // Damage the third frame's type (at ring offset 64, file offset 4096 + 384 + 64).
    /// let path = dir.join(tcpshm_persist::file_name(&me, &peer));
    /// let mut bytes = std::fs::read(&path).unwrap();
    /// bytes[4096 + 384 + 64 + 4..][..2].copy_from_slice(&0xFF00u16.to_le_bytes());
    /// std::fs::write(&path, &bytes).unwrap();
    /// assert!(Store::open(&dir, me, peer, &opts, None, 0).is_err());
    /// let (s, report) = Store::salvage(&dir, me, peer, &opts).unwrap();
    /// assert_eq!((report.source, report.first_unacked, report.next_seq), (SalvageSource::Live, 0, 2));
    /// assert_eq!(s.queue_depth(), 2);
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn salvage(
        dir: impl AsRef<std::path::Path>,
        local: Name,
        remote: Name,
        opts: &Options,
    ) -> Result<(Store, Salvage), OpenError> {
        opts.validate()?;
        let dir = Dir::open(dir.as_ref(), false)?;
        let name = files::file_name(&local, &remote);
        let path = dir.join(&name);
        let file = dir
            .open_locked(&name, false)?
            .ok_or_else(|| io_err(&path, "open", std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        let len = file.metadata().map_err(|e| io_err(&path, "fstat", e))?.len();
        if len < HEADER_PAGE as u64 {
            return Err(OpenError::Truncated { path, len });
        }
        // SAFETY: we hold the file's exclusive lock (no cooperating writer), and map it
        // read-only; every byte read is validated.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(&path, "mmap", e))?;
        let page: &[u8; HEADER_PAGE] = map[..HEADER_PAGE].try_into().expect("a page");
        let info = read_header(page).map_err(|source| OpenError::Header { path: path.clone(), source })?;
        if (info.local, info.remote) != (local, remote) {
            return Err(OpenError::NamesDiffer {
                path,
                found: Box::new((info.local, info.remote)),
                expected: Box::new((local, remote)),
            });
        }
        let expected = file_len(info.capacity) as u64;
        if len != expected {
            return Err(OpenError::LengthMismatch { path, len, expected });
        }
        let img = Image::new(&map, info.capacity);
        let now = BootId::current();
        let (report, plan) = evaluate(&img, now);
        let p = match plan {
            Some(plan) => {
                let st = plan.state;
                Prefix {
                    counters: Counters {
                        acked: st.acked,
                        consumed: st.consumed,
                        send_cursor: st.send_cursor,
                        next_seq: st.next_seq,
                        session: st.session,
                    },
                    from: st.first,
                    to: st.write,
                    count: st.next_seq - st.acked,
                    source: SalvageSource::Recovered(plan.recovery),
                    verified: !matches!(plan.recovery, Recovery::Unverified { .. }),
                    lost_front: 0,
                    dropped: match plan.recovery {
                        Recovery::RolledBack { dropped, .. } => dropped,
                        _ => 0,
                    },
                }
            }
            None => best_prefix(&img, now),
        };
        let keep = format!("{name}{DAMAGED_SUFFIX}");
        dir.keep_as(&name, &keep)?;
        let new_info = HeaderInfo { capacity: opts.capacity, ..info };
        let source = Source {
            path: &path,
            data: img.data(),
            from: p.from,
            to: p.to,
            count: p.count,
            max_payload: img.max_payload,
        };
        let store =
            Store::build(&dir, &new_info, p.counters, Some(source), opts.durability, false)?.expect("replacing rename");
        drop(map);
        drop(file);
        let salvage = Salvage {
            verdict: report.verdict,
            original: dir.join(&keep),
            source: p.source,
            verified: p.verified,
            first_unacked: p.counters.acked,
            next_seq: p.counters.next_seq,
            lost_front: p.lost_front,
            dropped: p.dropped,
        };
        Ok((store, salvage))
    }
}

/// The kept run of a walk: from the first frame of seq `>= acked`, consecutive seqs
/// up to the first impossible or out-of-order frame.
struct Run {
    from: u64,
    first_seq: u64,
    count: u64,
}

fn run_from(img: &Image<'_>, from: u64, to: u64, acked: u64) -> Run {
    let mut run = Run { from: to, first_seq: acked, count: 0 };
    for f in frames(img.data(), from, to, img.max_payload) {
        let Ok(f) = f else { break };
        if run.count == 0 {
            if f.seq < acked {
                continue;
            }
            run = Run { from: f.index, first_seq: f.seq, count: 1 };
        } else if f.seq == run.first_seq + run.count {
            run.count += 1;
        } else {
            break;
        }
    }
    run
}

fn best_prefix(img: &Image<'_>, now: BootId) -> Prefix {
    let live = img.live();
    let restart = !live.boot.same_session(&now);
    let mut records: Vec<Commit> = img.slots().into_iter().flatten().filter(|c| c.sync).collect();
    records.sort_by_key(|c| std::cmp::Reverse(c.number));
    let mut best: Option<Prefix> = None;
    if restart && !records.is_empty() {
        let batch_ok = |c: &Commit| ring_crc(img.data(), c.check_from, c.write) == c.batch_crc;
        for c in &records {
            // The record's own batch counts only if its checksum matches. Before it,
            // the bytes of earlier syncs were never overwritten while this record
            // rested on them; an older record whose batch lies wholly in this queue
            // and fails its checksum marks damage there: stop before it.
            let mut bound = if batch_ok(c) { c.write } else { c.check_from };
            for x in &records {
                if x.number < c.number && x.check_from >= c.read && x.check_from < bound && !batch_ok(x) {
                    bound = x.check_from;
                }
            }
            let c = *c;
            let run = run_from(img, c.read, bound, c.acked);
            let start = if run.count == 0 { c.acked } else { run.first_seq };
            let next = start + run.count;
            let p = Prefix {
                counters: Counters {
                    acked: start,
                    consumed: c.consumed,
                    send_cursor: c.send_cursor.clamp(start, next),
                    next_seq: next,
                    session: c.session,
                },
                from: run.from,
                to: bound,
                count: run.count,
                source: SalvageSource::Commit { number: c.number },
                verified: true,
                lost_front: start - c.acked,
                dropped: c.next_seq.saturating_sub(next),
            };
            if best.as_ref().is_none_or(|b| p.counters.next_seq > b.counters.next_seq) {
                best = Some(p);
            }
        }
        return best.expect("a record");
        // (`records` is not empty.)
    }
    let cap = img.capacity as u64;
    let plausible = live.read <= live.write && live.write - live.read <= cap && live.read.is_multiple_of(8);
    let run = if plausible && live.acked < crate::layout::COUNTER_LIMIT {
        run_from(img, live.read, live.write, live.acked)
    } else {
        Run { from: 0, first_seq: 0, count: 0 }
    };
    let acked = if live.acked < crate::layout::COUNTER_LIMIT { live.acked } else { 0 };
    let start = if run.count == 0 { acked } else { run.first_seq };
    let next = start + run.count;
    let known = acked.max(if live.hint < crate::layout::COUNTER_LIMIT { live.hint } else { 0 });
    Prefix {
        counters: Counters {
            acked: start,
            consumed: if live.consumed < crate::layout::COUNTER_LIMIT { live.consumed } else { 0 },
            send_cursor: live.send_cursor.clamp(start, next),
            next_seq: next,
            session: live.session,
        },
        from: run.from,
        to: if run.count == 0 { run.from } else { live.write },
        count: run.count,
        source: SalvageSource::Live,
        verified: !restart,
        lost_front: start.saturating_sub(acked),
        dropped: known.saturating_sub(next),
    }
}
