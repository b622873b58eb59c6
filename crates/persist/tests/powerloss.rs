//! Power loss under `Durability::Sync`: crash-state exploration on torn images.
//!
//! A scenario drives a store through random operations (pushes, batches, acks that
//! let the ring wrap over freed space, `ack_beyond`, consumed counts, send cursors,
//! session words, flushes, process kills followed by a reopen), and records after
//! every step the file image (the page cache: what the disk would hold if every
//! dirty page were written back), the model state, and whether a sync completed in
//! the step. For a crash at step `c`, with `s` the last sync point before `c`, the
//! disk holds the image of step `s` with any subset of the pages written since
//! replaced by a later version: the version of step `c` (the pages that "reached the
//! disk"), or of any step in between (pages the kernel wrote back earlier). When `c`
//! itself ended with a sync, the tear models a power cut in the middle of that
//! sync's `msync`.
//!
//! Generated images: every subset of the dirty pages when there are few of them;
//! otherwise page-order prefixes (an `msync` writing pages in index order, cut after
//! `j` of them) and random choices of versions, plus 512-byte-sector tears (a page
//! written in part). Each image is opened as after a reboot (the boot id in the file
//! is changed), and must open with **exactly** the state of sync `s` — or, when the
//! cut landed in the sync of step `c`, exactly the state of `c` — never refuse,
//! never show another state, never a damaged message. `Store::check` must agree, and
//! `Store::salvage` must recover the same state.
//!
//! Some scenarios chain: a torn image is recovered and the scenario continues from
//! it, and is torn again (power loss after a recovery).
//!
//! The files live in `/dev/shm` when there is one: the test models the disk itself,
//! so real syncs would only cost time.
//!
//! The gate runs a fixed set of scenarios (a few thousand images, seconds). The long
//! mode (`cargo xtask powerloss --images N`) sets `TCPSHM_POWERLOSS_IMAGES` (and
//! optionally `TCPSHM_POWERLOSS_SEED`) and runs random scenarios until N images.

mod common;

use common::{name, Rng, TempDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tcpshm_persist::{Durability, Options, Recovery, SessionWord, Store, Verdict};
use tcpshm_proto::Name;

const PAGE: usize = 4096;
const SECTOR: usize = 512;
/// File offset of the writer's boot id (crate docs, file layout).
const OFF_BOOT: usize = 320;

fn pair() -> (Name, Name) {
    (name("alice"), name("bob"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    seq: u64,
    msg_type: u16,
    ack: u64,
    payload: Vec<u8>,
}

/// The logical state of a store: what a recovery must reproduce exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct State {
    acked: u64,
    next_seq: u64,
    consumed: u64,
    send_cursor: u64,
    session: [u64; 4],
    queue: Vec<Msg>,
}

impl State {
    fn of(s: &mut Store) -> State {
        let mut queue = vec![];
        let mut c = s.cursor_at(s.first_unacked()).expect("cursor");
        while let Some((f, next)) = s.frame(c).expect("frame") {
            queue.push(Msg { seq: f.seq, msg_type: f.msg_type, ack: f.ack, payload: f.payload.to_vec() });
            c = next;
        }
        State {
            acked: s.first_unacked(),
            next_seq: s.next_seq(),
            consumed: s.consumed(),
            send_cursor: s.send_cursor(),
            session: SessionWord::ALL.map(|w| s.session_word(w)),
            queue,
        }
    }

    fn short(&self) -> String {
        format!(
            "acked {} next_seq {} consumed {} send_cursor {} session {:?} ({} queued)",
            self.acked,
            self.next_seq,
            self.consumed,
            self.send_cursor,
            self.session,
            self.queue.len()
        )
    }
}

/// One recorded step: the page-cache image after it, the model state, the file ranges
/// the store `msync`ed in it, and whether it wrote a new commit record.
struct Step {
    image: Vec<u8>,
    /// For a step that wrote a commit record: the image as the commit's last `msync`
    /// wrote it. Writes after the commit in the same step (`alloc` zeroing padding,
    /// the caller's payload, the ring's read index) go to the space that commit
    /// released, and a cut inside the `msync` happens before them.
    at_sync: Option<Vec<u8>>,
    /// The same without the new record: what `msync`s before the record's write (the
    /// whole-file one of a handle's first commit) wrote.
    pre_record: Option<Vec<u8>>,
    /// Ranges `msync`ed in this step that completed, in order.
    ranges: Vec<(usize, usize)>,
    /// The step's commit completed (all its `msync`s returned).
    completed: bool,
    state: State,
    what: &'static str,
}

impl Step {
    fn wrote_record(&self) -> bool {
        self.at_sync.is_some()
    }
}

/// File offsets (crate docs, file layout): the commit slots, the ring read index, the
/// ring data.
const OFF_COMMIT: [usize; 2] = [512, 1024];
const OFF_RING_READ: usize = PAGE + 256;
const DATA: usize = PAGE + 384;

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The slot offset and number of the newest commit record in a page-cache image
/// (between steps a record is never half-written there).
fn newest_commit(image: &[u8]) -> (usize, u64) {
    OFF_COMMIT
        .iter()
        .filter(|&&off| &image[off..off + 8] == b"TSHMCMIT")
        .map(|&off| (off, u64_at(image, off + 8)))
        .max_by_key(|&(_, n)| n)
        .expect("a commit record")
}

/// Whether the newest commit record was made in `Durability::Sync` (else no
/// power-loss promise is in force).
fn newest_is_sync(image: &[u8]) -> bool {
    let (off, _) = newest_commit(image);
    u64_at(image, off + 16) & 1 == 1
}

/// `image` as it was at the `msync` of its newest commit: ring bytes outside the queue
/// that commit holds, and the ring's read index, as in `prev` (the image before the
/// step).
fn at_sync(prev: &[u8], image: &[u8], cap: usize) -> Vec<u8> {
    let (newest, _) = newest_commit(image);
    let (read, write) = (u64_at(image, newest + 40), u64_at(image, newest + 48));
    let mut out = image.to_vec();
    out[OFF_RING_READ..OFF_RING_READ + 8].copy_from_slice(&prev[OFF_RING_READ..OFF_RING_READ + 8]);
    for pos in 0..cap as u64 {
        // Ring index in read..write with this position?
        let idx = read + (pos + cap as u64 - read % cap as u64) % cap as u64;
        if idx >= write {
            let f = DATA + pos as usize;
            out[f] = prev[f];
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    cap: usize,
    every: u32,
    /// Message lengths: `lo..=hi`.
    sizes: (usize, usize),
    steps: usize,
    seed: u64,
    /// Simulated process kills (then a reopen in the same machine session).
    kills: bool,
    /// Chained phases: recover a torn image and go on from it.
    phases: usize,
    /// Switches to `Durability::Process` and back now and then (no promise holds
    /// until the first sync after switching back).
    switches: bool,
    /// Crash points explored per phase (all if 0).
    crash_points: usize,
    /// Random images per crash point (beyond the exhaustive or prefix ones).
    random: usize,
    /// Drives the steps instead of random operations (one phase).
    script: Option<fn(&mut Driver)>,
}

impl Scenario {
    fn opts(&self) -> Options {
        Options::new(self.cap).durability(Durability::Sync { every: self.every })
    }
}

/// Drives a store and records the steps of one phase.
struct Driver<'a> {
    sc: &'a Scenario,
    rng: Rng,
    dir: &'a TempDir,
    store: Store,
    model: State,
    steps: Vec<Step>,
    /// Stores "killed": leaked so that nothing of theirs runs (no drop, no sync).
    killed: Vec<Store>,
    /// In `Durability::Sync` (else `Process`, during a switch).
    sync: bool,
}

impl Driver<'_> {
    fn path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// Records a step: the image, the ranges the store `msync`ed, and whether a new
    /// commit record appeared.
    fn record(&mut self, what: &'static str) {
        let image = std::fs::read(self.path()).expect("read image");
        let prev = &self.steps.last().expect("a start").image;
        let wrote = newest_commit(&image).1 > newest_commit(prev).1;
        let ranges = self.store.take_synced_ranges();
        assert_eq!(wrote, !ranges.is_empty(), "a record without a sync or a sync without a record, in {what}");
        // The store itself agrees with the model after every step.
        let seen = State::of(&mut self.store);
        assert_eq!(seen, self.model, "store and model differ after {what}");
        let at_sync = wrote.then(|| at_sync(prev, &image, self.sc.cap));
        let pre_record = at_sync.as_ref().map(|a| {
            let (slot, _) = newest_commit(a);
            let mut p = a.clone();
            p[slot..slot + 128].copy_from_slice(&prev[slot..slot + 128]);
            p
        });
        let completed = wrote;
        self.steps.push(Step { image, at_sync, pre_record, ranges, completed, state: self.model.clone(), what });
    }

    fn message(&mut self, seq: u64) -> Msg {
        let (lo, hi) = self.sc.sizes;
        let len = lo + self.rng.below((hi - lo + 1) as u64) as usize;
        let fill = self.rng.next();
        let payload = (0..len).map(|i| (fill >> (i % 8 * 8)) as u8 ^ i as u8).collect();
        Msg { seq, msg_type: (self.rng.below(0xFF00)) as u16, ack: self.model.consumed, payload }
    }

    /// alloc (recorded as a step if it synced to reclaim acknowledged space).
    fn alloc(&mut self, m: &Msg) -> bool {
        let got = self.store.alloc(m.payload.len()).expect("alloc").is_some();
        let now = std::fs::read(self.path()).expect("read image");
        if newest_commit(&now).1 > newest_commit(&self.steps.last().expect("a start").image).1 {
            self.record("alloc (reclaim sync)");
        }
        if got {
            // `record` reads the queue: alloc again (it replaces the first).
            self.store.alloc(m.payload.len()).expect("alloc").expect("room").copy_from_slice(&m.payload);
        }
        got
    }

    fn counted(&mut self, what: &'static str) {
        self.record(what);
    }

    fn step(&mut self) {
        let r = self.rng.below(100);
        let depth = self.model.next_seq - self.model.acked;
        if r < 40 {
            let m = self.message(self.model.next_seq);
            if self.alloc(&m) {
                assert_eq!(self.store.push(m.msg_type, m.ack).expect("push"), m.seq);
                self.model.next_seq += 1;
                self.model.queue.push(m);
                self.counted("push");
            } else {
                self.ack_some(depth.max(1));
            }
        } else if r < 50 {
            let n = 2 + self.rng.below(4);
            let mut batch = vec![];
            for k in 0..n {
                let m = self.message(self.model.next_seq + k);
                if !self.alloc(&m) {
                    break;
                }
                assert_eq!(self.store.push_more(m.msg_type, m.ack).expect("push_more"), m.seq);
                batch.push(m);
            }
            if batch.is_empty() {
                return self.ack_some(depth.max(1));
            }
            self.store.publish().expect("publish");
            self.model.next_seq += batch.len() as u64;
            self.model.queue.extend(batch);
            self.counted("batch");
        } else if r < 78 {
            self.ack_some(depth + 1);
        } else if r < 84 {
            let to = self.model.consumed + 1 + self.rng.below(3);
            self.store.set_consumed(to).expect("consumed");
            self.model.consumed = to;
            self.counted("consume");
        } else if r < 89 {
            let to = self.model.acked + self.rng.below(depth + 1);
            self.store.set_send_cursor(to).expect("send cursor");
            self.model.send_cursor = to;
            self.record("send cursor");
        } else if r < 92 {
            let w = SessionWord::ALL[self.rng.below(4) as usize];
            let v = self.rng.next() >> 1;
            self.store.set_session_word(w, v);
            self.model.session[w.index()] = v;
            self.record("session word");
        } else if r < 94 {
            let upto = self.model.next_seq + 1 + self.rng.below(5);
            let dropped = self.store.ack_beyond(upto).expect("ack_beyond");
            assert_eq!(dropped, self.model.queue.len() as u64);
            self.model.queue.clear();
            self.model.acked = upto;
            self.model.next_seq = upto;
            self.counted("ack_beyond");
        } else if r < 97 || (self.sc.every == 0 && r < 99) {
            self.store.flush().expect("flush");
            self.record("flush");
        } else if self.sc.kills && r < 99 {
            self.kill_and_reopen();
        } else if self.sc.switches {
            self.sync = !self.sync;
            let d = if self.sync { Durability::Sync { every: self.sc.every } } else { Durability::Process };
            self.store.set_durability(d).expect("switch");
            self.record(if self.sync { "switch to Sync" } else { "switch to Process" });
            if self.sc.kills && self.rng.below(2) == 1 {
                // Killed inside the sync that leaving `Sync` makes.
                self.kill_and_reopen_at(true);
            }
        }
    }

    fn push_len(&mut self, len: usize) {
        let mut m = self.message(self.model.next_seq);
        m.payload.resize(len, 0xA5);
        assert!(self.alloc(&m), "room for a scripted push");
        assert_eq!(self.store.push(m.msg_type, m.ack).expect("push"), m.seq);
        self.model.next_seq += 1;
        self.model.queue.push(m);
        self.record("push");
    }

    fn ack_to(&mut self, upto: u64) {
        self.store.ack(upto).expect("ack");
        self.model.queue.retain(|m| m.seq >= upto);
        self.model.acked = self.model.acked.max(upto);
        self.record("ack");
    }

    fn flush(&mut self) {
        self.store.flush().expect("flush");
        self.record("flush");
    }

    fn switch(&mut self, to_sync: bool) {
        self.sync = to_sync;
        let d = if to_sync { Durability::Sync { every: self.sc.every } } else { Durability::Process };
        self.store.set_durability(d).expect("switch");
        self.record(if to_sync { "switch to Sync" } else { "switch to Process" });
    }

    fn ack_some(&mut self, span: u64) {
        let upto = self.model.acked + self.rng.below(span + 1).min(self.model.next_seq - self.model.acked);
        self.store.ack(upto).expect("ack");
        self.model.queue.retain(|m| m.seq >= upto);
        self.model.acked = self.model.acked.max(upto);
        self.counted("ack");
    }

    /// The process dies (nothing of the store runs: no drop, no sync) and a new one
    /// opens the file in the same machine session: the page cache is what it finds.
    /// If the last step synced, half the time the process dies inside that sync,
    /// after writing its record and before its `msync`: the page cache holds a record
    /// that never reached the disk for sure.
    fn kill_and_reopen(&mut self) {
        let inside = self.rng.below(2) == 1;
        self.kill_and_reopen_at(inside);
    }

    fn kill_and_reopen_at(&mut self, inside_last_sync: bool) {
        let last = self.steps.last_mut().expect("a step");
        let image = if last.completed && inside_last_sync {
            // Its last `msync` never returned; earlier ones (before the record) did.
            last.ranges.pop();
            last.completed = false;
            last.image = last.at_sync.clone().expect("synced");
            last.what = "killed inside its sync";
            last.image.clone()
        } else {
            std::fs::read(self.path()).expect("read image")
        };
        let sub = self.dir.path().join(format!("k{}", self.killed.len()));
        std::fs::create_dir_all(&sub).unwrap();
        let (a, b) = pair();
        std::fs::write(sub.join(tcpshm_persist::file_name(&a, &b)), &image).unwrap();
        let opts = if self.sync { self.sc.opts() } else { Options::new(self.sc.cap) };
        let (store, _) = Store::open(&sub, a, b, &opts, None, 0).expect("reopen after a kill");
        let dead = std::mem::replace(&mut self.store, store);
        self.killed.push(dead);
        assert!(matches!(self.store.recovery(), Recovery::Resumed { .. }), "{:?}", self.store.recovery());
        self.record("kill + reopen");
    }
}

fn empty_step() -> Step {
    Step {
        image: vec![],
        at_sync: None,
        pre_record: None,
        ranges: vec![],
        completed: false,
        state: State::default(),
        what: "",
    }
}

/// A torn image and how it was made.
struct Torn {
    image: Vec<u8>,
    kind: &'static str,
    /// Which pages (or sectors) took which step's version.
    how: String,
}

/// Where the disk's sure version of a page comes from: a step, and whether the
/// version is the one with that step's new record (its last `msync`) or without it
/// (`msync`s before the record's write).
type Durable = (usize, bool);

/// The disk model: for each page, the version the disk holds for sure after each step
/// (made durable by an `msync` range covering it).
fn durable_map(steps: &[Step]) -> Vec<Vec<Durable>> {
    let pages = steps[0].image.len().div_ceil(PAGE);
    let mut out = vec![vec![(0, true); pages]];
    for (i, st) in steps.iter().enumerate().skip(1) {
        let mut d = out[i - 1].clone();
        mark_step(&mut d, st, i, st.completed);
        out.push(d);
    }
    out
}

/// Marks the ranges of step `i` durable; with `with_last`, its last range carries the
/// record (else every completed range predates it).
fn mark_step(d: &mut [Durable], st: &Step, i: usize, with_last: bool) {
    let n = st.ranges.len();
    for (k, &(a, b)) in st.ranges.iter().enumerate() {
        let with_record = with_last && k + 1 == n;
        for (p, v) in d.iter_mut().enumerate() {
            if p * PAGE < b && (p + 1) * PAGE > a {
                *v = (i, with_record);
            }
        }
    }
}

/// The version of the file a step made durable (step 0: the start, durable whole).
fn durable_version(steps: &[Step], (k, with_record): Durable) -> &[u8] {
    if k == 0 {
        &steps[0].image
    } else if with_record {
        steps[k].at_sync.as_deref().expect("a synced step wrote a record")
    } else {
        steps[k].pre_record.as_deref().expect("a synced step wrote a record")
    }
}

fn with_pages(base: &[u8], pages: &[(usize, &[u8])]) -> Vec<u8> {
    let mut img = base.to_vec();
    for &(p, from) in pages {
        let r = p * PAGE..((p + 1) * PAGE).min(img.len());
        img[r.clone()].copy_from_slice(&from[r]);
    }
    img
}

/// The torn images of a power cut at step `c`: each page holds its durable version
/// or any later one up to `c`. If `c`'s commit completed, the cut lands inside its
/// last `msync` (its earlier ones completed), before the writes that followed it.
fn tears(steps: &[Step], durable: &[Vec<Durable>], c: usize, random: usize, rng: &mut Rng) -> Vec<Torn> {
    let cut = steps[c].completed;
    let est = if cut {
        let mut est = durable[c - 1].clone();
        let mut before_last = Step { ranges: steps[c].ranges.clone(), ..empty_step() };
        before_last.ranges.pop();
        mark_step(&mut est, &before_last, c, false);
        est
    } else {
        durable[c].clone()
    };
    // Per page: its durable version first, then every later version.
    let candidates: Vec<Vec<&[u8]>> = est
        .iter()
        .map(|&e| {
            let mut v: Vec<&[u8]> = vec![durable_version(steps, e)];
            if e.0 == c && !cut {
                // Made durable in this very step, nothing later.
                return v;
            }
            let last = if cut { c - 1 } else { c };
            v.extend(steps[e.0.max(1)..=last].iter().map(|st| &st.image[..]));
            if cut {
                v.push(steps[c].at_sync.as_deref().expect("synced"));
            }
            v
        })
        .collect();
    let page = |img: &[u8], p: usize| img[p * PAGE..((p + 1) * PAGE).min(img.len())].to_vec();
    let base_pages: Vec<(usize, &[u8])> = candidates.iter().enumerate().map(|(p, v)| (p, v[0])).collect();
    let base = with_pages(&steps[c].image, &base_pages);
    let dirty: Vec<usize> =
        (0..candidates.len()).filter(|&p| candidates[p].iter().any(|v| page(v, p) != page(&base, p))).collect();
    let newest = |p: usize| *candidates[p].last().unwrap();
    let mut out = vec![];
    if dirty.len() <= 5 {
        for mask in 0u32..1 << dirty.len() {
            let pages: Vec<(usize, &[u8])> =
                dirty.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, &p)| (p, newest(p))).collect();
            let how = format!("newest pages {:?} of dirty {dirty:?}", pages.iter().map(|p| p.0).collect::<Vec<_>>());
            out.push(Torn { image: with_pages(&base, &pages), kind: "subset", how });
        }
    } else {
        for j in 0..=dirty.len() {
            let pages: Vec<(usize, &[u8])> = dirty[..j].iter().map(|&p| (p, newest(p))).collect();
            let how = format!("first {j} of dirty {dirty:?}");
            out.push(Torn { image: with_pages(&base, &pages), kind: "prefix", how });
        }
    }
    for _ in 0..random {
        let picks: Vec<(usize, usize)> =
            dirty.iter().map(|&p| (p, rng.below(candidates[p].len() as u64) as usize)).collect();
        let pages: Vec<(usize, &[u8])> = picks.iter().map(|&(p, k)| (p, candidates[p][k])).collect();
        let how = format!("(page, version) {picks:?}");
        out.push(Torn { image: with_pages(&base, &pages), kind: "random versions", how });
    }
    if !dirty.is_empty() {
        // Pages written in part: each 512-byte sector old or newest.
        for _ in 0..random.div_ceil(2) {
            let mut img = base.clone();
            for &p in &dirty {
                let new = newest(p);
                for sec in (p * PAGE..((p + 1) * PAGE).min(img.len())).step_by(SECTOR) {
                    if rng.below(2) == 1 {
                        let end = (sec + SECTOR).min(img.len());
                        img[sec..end].copy_from_slice(&new[sec..end]);
                    }
                }
            }
            out.push(Torn { image: img, kind: "sectors", how: String::new() });
        }
    }
    out
}

/// What the exploration saw.
#[derive(Debug, Default)]
struct Tally {
    images: usize,
    scenarios: usize,
    /// Opened with the state of the last completed sync.
    at_last_sync: usize,
    /// Opened with the state of the sync that was cut (it had reached the disk whole).
    at_cut_sync: usize,
    /// Unsynced messages reported dropped, summed.
    dropped: u64,
    by_kind: BTreeMap<&'static str, usize>,
    salvaged: usize,
    /// Images under no promise (`Durability::Process` in force): opened
    /// `Unverified` or refused, as `check` said.
    no_promise: usize,
    failures: Vec<String>,
}

/// Opens a torn image as after a reboot; checks it against the allowed states. An
/// image whose newest commit record is a `Process` one (a switch to `Process` that
/// reached the disk), or whose last completed sync was in `Process` mode
/// (`after_process`), is under no promise: it must open `Unverified` or be refused
/// (or, in the second case, open with an allowed state).
#[allow(clippy::too_many_arguments)]
fn check_image(
    sc: &Scenario,
    ctx: &str,
    dir: &Path,
    torn: &Torn,
    allowed: &[&State],
    after_process: bool,
    tally: &mut Tally,
    salvage: bool,
) -> Option<(Store, State)> {
    let (a, b) = pair();
    let path = dir.join(tcpshm_persist::file_name(&a, &b));
    let mut img = torn.image.clone();
    // A reboot: the boot id in the file is no longer the machine's.
    for x in &mut img[OFF_BOOT..OFF_BOOT + 16] {
        *x = !*x;
    }
    std::fs::write(&path, &img).unwrap();
    tally.images += 1;
    *tally.by_kind.entry(torn.kind).or_default() += 1;
    let fail = |tally: &mut Tally, msg: String| {
        tally.failures.push(format!("{sc:?} {ctx} [{} {}]: {msg}", torn.kind, torn.how));
        None
    };
    let report = match Store::check(&path) {
        Ok(r) => r,
        Err(e) => return fail(tally, format!("check failed: {e}")),
    };
    let no_promise = !newest_is_sync(&img) || after_process;
    if no_promise && !matches!(report.verdict, Verdict::Opens(Recovery::RolledBack { .. })) {
        // Nothing promised: `Unverified`, or refused; open must agree with check.
        tally.no_promise += 1;
        return match (Store::open(dir, a, b, &sc.opts(), None, 0), &report.verdict) {
            (Ok((s, _)), Verdict::Opens(r)) if s.recovery() == *r && matches!(r, Recovery::Unverified { .. }) => None,
            (Err(_), Verdict::Damaged(_) | Verdict::RingDamaged(_)) => None,
            (r, v) => {
                fail(tally, format!("no promise, but check said {v:?} and open did {:?}", r.map(|s| s.0.recovery())))
            }
        };
    }
    if !matches!(report.verdict, Verdict::Opens(Recovery::RolledBack { .. })) {
        return fail(tally, format!("check says {:?} ({:?})", report.verdict, report.findings));
    }
    if salvage {
        let (st, _) = match Store::salvage(dir, a, b, &sc.opts()) {
            Ok(x) => x,
            Err(e) => return fail(tally, format!("salvage refused: {e}")),
        };
        drop(st);
        std::fs::write(&path, &img).unwrap();
        tally.salvaged += 1;
    }
    let (mut s, _) = match Store::open(dir, a, b, &sc.opts(), None, 0) {
        Ok(x) => x,
        Err(e) => return fail(tally, format!("refused: {e}")),
    };
    let seen = State::of(&mut s);
    let Some(i) = allowed.iter().position(|st| **st == seen) else {
        let want: Vec<String> = allowed.iter().map(|s| s.short()).collect();
        return fail(tally, format!("opened with {} — expected one of {want:?}", seen.short()));
    };
    match s.recovery() {
        Recovery::RolledBack { dropped, .. } => tally.dropped += dropped,
        r => return fail(tally, format!("recovery {r:?}")),
    }
    if Verdict::Opens(s.recovery()) != report.verdict {
        return fail(tally, format!("check said {:?}, open did {:?}", report.verdict, s.recovery()));
    }
    if i == 0 {
        tally.at_last_sync += 1;
    } else {
        tally.at_cut_sync += 1;
    }
    Some((s, seen))
}

/// Runs a scenario: records the steps of each phase, tears and checks images, and
/// chains phases through a recovered torn image.
fn run(sc: &Scenario, tally: &mut Tally, budget: usize) {
    tally.scenarios += 1;
    let work = TempDir::in_memory("powerloss");
    let check_dir = work.path().join("check");
    std::fs::create_dir_all(&check_dir).unwrap();
    let (a, b) = pair();
    let first = work.path().join("p0");
    let (store, _) = Store::open(&first, a, b, &sc.opts(), None, 0).expect("create");
    let mut rng = Rng::new(sc.seed);
    let mut store = store;
    let mut model = State::default();
    // The disk image of the first step: a new store is synced whole before it is
    // renamed into place (Sync mode).
    let mut start_image = std::fs::read(store.path()).unwrap();
    let mut killed = vec![];
    for phase in 0..sc.phases {
        let phase_dir = TempDir::in_memory("powerloss-phase");
        let mut d = Driver {
            sc,
            rng: Rng::new(rng.next()),
            dir: &phase_dir,
            store,
            model,
            steps: vec![],
            killed: vec![],
            sync: true,
        };
        d.steps.push(Step { image: start_image, state: d.model.clone(), what: "start", ..empty_step() });
        match sc.script {
            Some(script) => script(&mut d),
            None => {
                for _ in 0..sc.steps {
                    d.step();
                }
            }
        }
        let steps = std::mem::take(&mut d.steps);
        killed.append(&mut d.killed);
        let Driver { store: s, .. } = d;
        // The last store must not sync on drop (the torn images are of a crash).
        killed.push(s);
        let durable = durable_map(&steps);
        let mut crash_points: Vec<usize> = (1..steps.len()).collect();
        if sc.crash_points > 0 && crash_points.len() > sc.crash_points {
            for i in (1..crash_points.len()).rev() {
                crash_points.swap(i, rng.below(i as u64 + 1) as usize);
            }
            crash_points.truncate(sc.crash_points);
            crash_points.sort();
        }
        let mut next_start = None;
        for &c in &crash_points {
            if tally.images >= budget {
                break;
            }
            // Allowed: the state of the last completed sync before the cut, or of any
            // commit record written since (its batch may have reached the disk whole).
            let s = (0..c).rev().find(|&k| k == 0 || steps[k].completed).expect("step 0");
            // A `Process` record withdraws the promise; a `Sync` period that began after
            // one promises nothing until its first sync completes.
            let record_of = |k: usize| steps[k].at_sync.as_deref().unwrap_or(&steps[k].image);
            let after_process = !newest_is_sync(record_of(s));
            let allowed: Vec<&State> = std::iter::once(&steps[s].state)
                .chain((s + 1..=c).filter(|&k| steps[k].wrote_record()).map(|k| &steps[k].state))
                .collect();
            let images = tears(&steps, &durable, c, sc.random, &mut rng);
            let ctx = format!(
                "phase {phase} sync at step {s}, crash at step {c}: {:?}",
                steps[s..=c].iter().map(|st| (st.what, st.completed, st.wrote_record())).collect::<Vec<_>>()
            );
            let n = images.len();
            for (k, torn) in images.into_iter().enumerate() {
                let salvage = k == n / 2;
                if let Some((st, state)) =
                    check_image(sc, &ctx, &check_dir, &torn, &allowed, after_process, tally, salvage)
                {
                    drop(st);
                    if phase + 1 < sc.phases && next_start.is_none() && c == *crash_points.last().unwrap() {
                        next_start = Some((state, torn.image));
                    }
                }
                if !tally.failures.is_empty() && tally.failures.len() > 20 {
                    return;
                }
            }
        }
        match next_start {
            Some((state, image)) => {
                // Go on from the recovered store, in a directory of its own.
                let dir = work.path().join(format!("p{}", phase + 1));
                std::fs::create_dir_all(&dir).unwrap();
                // The disk holds the torn image (the repairs were never synced).
                let mut disk = image.clone();
                for x in &mut disk[OFF_BOOT..OFF_BOOT + 16] {
                    *x = !*x;
                }
                std::fs::write(dir.join(tcpshm_persist::file_name(&a, &b)), &disk).unwrap();
                let (s2, _) = Store::open(&dir, a, b, &sc.opts(), None, 0).expect("reopen the recovered image");
                store = s2;
                model = state;
                start_image = image;
            }
            None => break,
        }
    }
    // Killed stores hold leaked mappings and locks of their (removed) directories.
    std::mem::forget(killed);
}

fn report(t: &Tally) -> String {
    format!(
        "power-loss exploration: {} scenarios, {} torn images ({:?}); opened with the last completed sync's state: {}, \
         with the state of a sync the cut interrupted (it had reached the disk whole): {}; under no promise \
         (Process in force): {}; refused or wrong: {}; unsynced messages reported dropped: {}; salvaged: {}",
        t.scenarios,
        t.images,
        t.by_kind,
        t.at_last_sync,
        t.at_cut_sync,
        t.no_promise,
        t.failures.len(),
        t.dropped,
        t.salvaged
    )
}

fn gate_scenarios() -> Vec<Scenario> {
    let base = Scenario {
        cap: 1024,
        every: 1,
        sizes: (0, 40),
        steps: 40,
        seed: 1,
        kills: false,
        phases: 1,
        switches: false,
        crash_points: 0,
        random: 2,
        script: None,
    };
    vec![
        // The geometry: 2 pages (counters | ring indices + frames).
        Scenario { ..base },
        Scenario { every: 2, sizes: (0, 120), seed: 2, kills: true, ..base },
        Scenario { cap: 256, every: 1, sizes: (0, 60), seed: 3, ..base },
        Scenario { cap: 4096, every: 3, sizes: (0, 40), steps: 60, seed: 4, crash_points: 30, ..base },
        Scenario { cap: 4096, every: 1, sizes: (0, 300), seed: 5, kills: true, crash_points: 25, ..base },
        Scenario { cap: 4096, every: 8, sizes: (0, 300), steps: 60, seed: 6, crash_points: 25, ..base },
        Scenario { cap: 16384, every: 8, sizes: (900, 3000), steps: 50, seed: 7, crash_points: 20, ..base },
        Scenario { cap: 16384, every: 64, sizes: (0, 600), steps: 80, seed: 8, crash_points: 20, ..base },
        Scenario { cap: 16384, every: 0, sizes: (0, 1500), steps: 50, seed: 9, kills: true, crash_points: 20, ..base },
        Scenario { cap: 4096, every: 2, sizes: (0, 200), steps: 30, seed: 10, phases: 3, crash_points: 10, ..base },
        Scenario {
            cap: 16384,
            every: 3,
            sizes: (500, 2500),
            steps: 40,
            seed: 11,
            kills: true,
            phases: 2,
            crash_points: 12,
            ..base
        },
        Scenario {
            cap: 8192,
            every: 4,
            sizes: (0, 900),
            steps: 80,
            seed: 12,
            kills: true,
            switches: true,
            crash_points: 30,
            ..base
        },
    ]
}

/// The gate: a fixed set of scenarios, every tear checked.
#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn torn_images_open_with_exactly_the_synced_state() {
    if let Ok(n) = std::env::var("TCPSHM_POWERLOSS_IMAGES") {
        return long_mode(n.parse().expect("TCPSHM_POWERLOSS_IMAGES=N"));
    }
    let mut tally = Tally::default();
    for sc in gate_scenarios() {
        run(&sc, &mut tally, usize::MAX);
    }
    eprintln!("{}", report(&tally));
    assert!(
        tally.failures.is_empty(),
        "{} failures, first: {:#?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    assert!(tally.images >= 1000, "too few images: {}", tally.images);
    assert!(tally.at_cut_sync > 0 && tally.salvaged > 0, "{}", report(&tally));
}

/// A `Sync` store leaves for `Process`, and the process dies inside the sync that
/// switch makes (its `Process` record never reaches the disk for sure); the next
/// process opens in `Process` mode and reuses the space of messages acknowledged
/// since the last sync. Until a `Process` record is durable, the `Sync` record on the
/// disk still promises those messages: the new process must sync one first.
#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn a_process_killed_inside_a_switch_to_process_does_not_void_the_last_sync() {
    fn script(d: &mut Driver) {
        // Fill the ring (8 frames of 128 bytes), sync, acknowledge 6 (kept until the
        // next sync).
        for _ in 0..8 {
            d.push_len(100);
        }
        d.flush();
        d.ack_to(6);
        d.switch(false);
        d.kill_and_reopen_at(true);
        // Reuses the space of messages 0..5.
        for _ in 0..5 {
            d.push_len(100);
        }
        d.ack_to(10);
    }
    let sc = Scenario {
        cap: 1024,
        every: 100,
        sizes: (100, 100),
        steps: 0,
        seed: 13,
        kills: true,
        phases: 1,
        switches: true,
        crash_points: 0,
        random: 4,
        script: Some(script),
    };
    let mut tally = Tally::default();
    run(&sc, &mut tally, usize::MAX);
    eprintln!("{}", report(&tally));
    assert!(tally.failures.is_empty(), "{:#?}", &tally.failures[..tally.failures.len().min(5)]);
    assert!(tally.at_last_sync > 0 && tally.no_promise > 0, "{}", report(&tally));
}

/// `cargo xtask powerloss --images N`: random scenarios until N images.
fn long_mode(budget: usize) {
    let seed: u64 = std::env::var("TCPSHM_POWERLOSS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9E37);
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    while tally.images < budget && tally.failures.is_empty() {
        let caps = [256, 1024, 4096, 8192, 16384, 65536];
        let cap = caps[rng.below(caps.len() as u64) as usize];
        let everys = [0, 1, 2, 3, 5, 8, 16, 64, 256];
        let max = cap / 2 - 24;
        let hi = [40, 300, 1500, 5000][rng.below(4) as usize].min(max);
        let sc = Scenario {
            cap,
            every: everys[rng.below(everys.len() as u64) as usize],
            sizes: (rng.below(hi as u64 / 2 + 1) as usize, hi),
            steps: 20 + rng.below(100) as usize,
            seed: rng.next(),
            kills: rng.below(2) == 1,
            phases: 1 + rng.below(3) as usize,
            switches: rng.below(3) == 0,
            script: None,
            crash_points: 10 + rng.below(30) as usize,
            random: 1 + rng.below(4) as usize,
        };
        run(&sc, &mut tally, budget);
        if tally.scenarios % 20 == 0 {
            eprintln!("[{:.0?}] {}", started.elapsed(), report(&tally));
        }
    }
    eprintln!("seed {seed:#x}: {}", report(&tally));
    assert!(
        tally.failures.is_empty(),
        "{} failures, first: {:#?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
}

/// The tear reported in issue 14: `Sync { every: 1 }`, msync writes pages in index
/// order and the power fails after page 0 (the counters) and before page 1 (the ring
/// indices and the first frames). The store must open with the 5 synced messages or
/// with all 6 (the sixth sync was in progress), never refuse.
#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn page_0_new_page_1_old_at_every_1() {
    let d = TempDir::new("tear01");
    let (a, b) = pair();
    let opts = Options::new(1024).durability(Durability::Sync { every: 1 });
    let (mut s, _) = Store::open(d.path(), a, b, &opts, None, 0).unwrap();
    for i in 0..5u8 {
        s.alloc(10).unwrap().unwrap().fill(i);
        s.push(1, 0).unwrap();
    }
    let path = s.path().to_path_buf();
    let old = std::fs::read(&path).unwrap();
    s.alloc(10).unwrap().unwrap().fill(5);
    s.push(1, 0).unwrap();
    let new = std::fs::read(&path).unwrap();
    drop(s);
    let mut torn = old.clone();
    torn[..PAGE].copy_from_slice(&new[..PAGE]);
    for x in &mut torn[OFF_BOOT..OFF_BOOT + 16] {
        *x = !*x;
    }
    std::fs::write(&path, &torn).unwrap();
    let (mut s, _) = Store::open(d.path(), a, b, &opts, None, 0).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(s.next_seq(), 5);
    assert_eq!(s.recovery(), Recovery::RolledBack { commit: 6, cut_sync: true, dropped: 1 });
    let mut c = s.cursor_at(0).unwrap();
    let mut seq = 0;
    while let Some((f, next)) = s.frame(c).unwrap() {
        assert_eq!(f.payload, &[seq as u8; 10]);
        seq += 1;
        c = next;
    }
    assert_eq!(seq, 5);
}
