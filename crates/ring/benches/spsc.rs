//! Typed SPSC queue benchmark: `tcpshm_ring::spsc` against `rtrb` and crossbeam's
//! `ArrayQueue`, producer and consumer pinned to two cpus.
//!
//! * Throughput of `u64`s, one at a time and in batches of 64 and 256.
//! * Ping-pong round trip through two queues, against a bare cache-line ping-pong
//!   (the floor: the cost of moving one line to the other core and back).
//! * The waiting helpers (feature `wait`): `push_wait`/`pop_wait` throughput beside the
//!   plain calls, rtrb and `ArrayQueue` (which busy-poll); ping-pong with the default
//!   policy (spin first), with parking on every wait (the futex wake-up cost), and std's
//!   blocking `sync_channel` (crossbeam-channel's algorithm inside) as the blocking
//!   reference.
//!
//! `cargo xtask bench ring` runs it; `--quick` is a smoke run.

// The bench plumbing shared by every crate of the workspace (see its header).

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use rtrb::CopyToUninit;
use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpshm_bench_common::{pair, rounds, Opts, Report, Row, Summary};
use tcpshm_ring::wait::Wait;

/// Queue capacity (items) of every contender.
const CAP: usize = 4096;
/// Round trips per timed batch in the mean-RTT phase.
const RTT_BATCH: usize = 100;

/// The producing end of a contender.
trait Push: Send {
    /// Pushes one item; false if full.
    fn push1(&mut self, v: u64) -> bool;
    /// Pushes a prefix of `v` (as much as fits); returns its length.
    fn push_n(&mut self, v: &[u64]) -> usize;
}

/// The consuming end of a contender.
trait Pop: Send {
    /// Pops one item, if any.
    fn pop1(&mut self) -> Option<u64>;
    /// Pops up to `out.len()` items into `out`; returns how many.
    fn pop_n(&mut self, out: &mut [u64]) -> usize;
}

impl Push for tcpshm_ring::spsc::Producer<u64> {
    #[inline(always)]
    fn push1(&mut self, v: u64) -> bool {
        self.push(v).is_ok()
    }
    #[inline(always)]
    fn push_n(&mut self, v: &[u64]) -> usize {
        self.push_slice(v)
    }
}

impl Pop for tcpshm_ring::spsc::Consumer<u64> {
    #[inline(always)]
    fn pop1(&mut self) -> Option<u64> {
        self.pop()
    }
    #[inline(always)]
    fn pop_n(&mut self, out: &mut [u64]) -> usize {
        self.pop_slice(out)
    }
}

impl Push for rtrb::Producer<u64> {
    #[inline(always)]
    fn push1(&mut self, v: u64) -> bool {
        self.push(v).is_ok()
    }
    /// rtrb's chunk API: reserve `n` slots (an error says how many are free, then
    /// reserve those), copy into the two slices, commit with one index store.
    #[inline(always)]
    fn push_n(&mut self, v: &[u64]) -> usize {
        let mut chunk = match self.write_chunk_uninit(v.len()) {
            Ok(c) => c,
            Err(rtrb::chunks::ChunkError::TooFewSlots(0)) => return 0,
            Err(rtrb::chunks::ChunkError::TooFewSlots(k)) => self.write_chunk_uninit(k).expect("k slots are free"),
        };
        let (a, b) = chunk.as_mut_slices();
        let (na, nb) = (a.len(), b.len());
        v[..na].copy_to_uninit(a);
        v[na..na + nb].copy_to_uninit(b);
        // SAFETY: both slices of the chunk were initialised just above.
        unsafe { chunk.commit_all() };
        na + nb
    }
}

impl Pop for rtrb::Consumer<u64> {
    #[inline(always)]
    fn pop1(&mut self) -> Option<u64> {
        self.pop().ok()
    }
    #[inline(always)]
    fn pop_n(&mut self, out: &mut [u64]) -> usize {
        let chunk = match self.read_chunk(out.len()) {
            Ok(c) => c,
            Err(rtrb::chunks::ChunkError::TooFewSlots(0)) => return 0,
            Err(rtrb::chunks::ChunkError::TooFewSlots(k)) => self.read_chunk(k).expect("k slots are readable"),
        };
        let (a, b) = chunk.as_slices();
        let (na, nb) = (a.len(), b.len());
        out[..na].copy_from_slice(a);
        out[na..na + nb].copy_from_slice(b);
        chunk.commit_all();
        na + nb
    }
}

/// Crossbeam's bounded MPMC queue, shared by both ends. It has no batch API: the
/// batch methods loop over single pushes and pops.
struct Aq(Arc<ArrayQueue<u64>>);

impl Push for Aq {
    #[inline(always)]
    fn push1(&mut self, v: u64) -> bool {
        self.0.push(v).is_ok()
    }
    #[inline(always)]
    fn push_n(&mut self, v: &[u64]) -> usize {
        v.iter().take_while(|&&x| self.0.push(x).is_ok()).count()
    }
}

impl Pop for Aq {
    #[inline(always)]
    fn pop1(&mut self) -> Option<u64> {
        self.0.pop()
    }
    #[inline(always)]
    fn pop_n(&mut self, out: &mut [u64]) -> usize {
        let mut n = 0;
        while n < out.len() {
            match self.0.pop() {
                Some(v) => out[n] = v,
                None => break,
            }
            n += 1;
        }
        n
    }
}

/// A one-value mailbox on its own 128-byte line: the ping-pong floor. Pushing
/// overwrites (ping-pong has one value in flight); popping returns a value not seen
/// before. Values must be non-zero and each different from the previous one.
#[repr(C, align(128))]
struct Line(AtomicU64);

struct MailTx(Arc<Line>);
struct MailRx(Arc<Line>, u64);

impl Push for MailTx {
    #[inline(always)]
    fn push1(&mut self, v: u64) -> bool {
        self.0 .0.store(v, Ordering::Release);
        true
    }
    fn push_n(&mut self, _: &[u64]) -> usize {
        unreachable!("the mailbox is only used for ping-pong")
    }
}

impl Pop for MailRx {
    #[inline(always)]
    fn pop1(&mut self) -> Option<u64> {
        let v = self.0 .0.load(Ordering::Acquire);
        if v != self.1 {
            self.1 = v;
            Some(v)
        } else {
            None
        }
    }
    fn pop_n(&mut self, _: &mut [u64]) -> usize {
        unreachable!("the mailbox is only used for ping-pong")
    }
}

/// The typed queue through its waiting helpers: each call waits (spin, yield, park)
/// instead of failing, and notifies the other end (a fence and a load, a futex wake only
/// when it is parked). Only single-item calls exist.
struct WaitTx(tcpshm_ring::spsc::Producer<u64>, Wait);
struct WaitRx(tcpshm_ring::spsc::Consumer<u64>, Wait);

impl Push for WaitTx {
    #[inline(always)]
    fn push1(&mut self, v: u64) -> bool {
        self.0.push_wait(v, &self.1).is_ok()
    }
    fn push_n(&mut self, _: &[u64]) -> usize {
        unreachable!("the waiting helpers are measured one item at a time")
    }
}

impl Pop for WaitRx {
    #[inline(always)]
    fn pop1(&mut self) -> Option<u64> {
        self.0.pop_wait(&self.1).ok()
    }
    fn pop_n(&mut self, _: &mut [u64]) -> usize {
        unreachable!("the waiting helpers are measured one item at a time")
    }
}

/// std's bounded blocking channel: `send` and `recv` wait (spinning briefly, then
/// parking the thread) like our waiting helpers.
struct StdTx(std::sync::mpsc::SyncSender<u64>);
struct StdRx(std::sync::mpsc::Receiver<u64>);

impl Push for StdTx {
    #[inline(always)]
    fn push1(&mut self, v: u64) -> bool {
        self.0.send(v).is_ok()
    }
    fn push_n(&mut self, _: &[u64]) -> usize {
        unreachable!("std's channel is measured one item at a time")
    }
}

impl Pop for StdRx {
    #[inline(always)]
    fn pop1(&mut self) -> Option<u64> {
        self.0.recv().ok()
    }
    fn pop_n(&mut self, _: &mut [u64]) -> usize {
        unreachable!("std's channel is measured one item at a time")
    }
}

/// Parks as soon as the queue is empty or full: every wait is a futex sleep and every
/// hand-over a futex wake (the cost a waiting helper pays when the other end is slow).
const PARK_AT_ONCE: Wait = Wait { spins: 0, yields: 0, ..Wait::new() };

fn ours_wait(w: Wait) -> (WaitTx, WaitRx) {
    let (tx, rx) = tcpshm_ring::spsc::channel(CAP);
    (WaitTx(tx, w), WaitRx(rx, w))
}
fn std_sync() -> (StdTx, StdRx) {
    let (tx, rx) = std::sync::mpsc::sync_channel(CAP);
    (StdTx(tx), StdRx(rx))
}

fn ours() -> (tcpshm_ring::spsc::Producer<u64>, tcpshm_ring::spsc::Consumer<u64>) {
    tcpshm_ring::spsc::channel(CAP)
}
fn rtrb_q() -> (rtrb::Producer<u64>, rtrb::Consumer<u64>) {
    rtrb::RingBuffer::new(CAP)
}
fn aq() -> (Aq, Aq) {
    let q = Arc::new(ArrayQueue::new(CAP));
    (Aq(q.clone()), Aq(q))
}
fn mailbox() -> (MailTx, MailRx) {
    let l = Arc::new(Line(AtomicU64::new(0)));
    (MailTx(l.clone()), MailRx(l, 0))
}

/// Moves `n` items `0..n` from one pinned thread to the other, `batch` at a time
/// (1 = push/pop), and returns millions of items per second as seen by the consumer
/// (from the common start to its last pop). The consumer checks the sum of what it
/// received.
fn throughput<P: Push, C: Pop>(opts: &Opts, (mut p, mut c): (P, C), n: u64, batch: usize) -> f64 {
    let (_, secs) = pair(
        opts,
        move || {
            if batch == 1 {
                for i in 0..n {
                    while !p.push1(i) {
                        spin_loop();
                    }
                }
            } else {
                let mut buf = [0u64; 256];
                let mut i = 0;
                while i < n {
                    let k = (batch as u64).min(n - i) as usize;
                    for (j, slot) in buf[..k].iter_mut().enumerate() {
                        *slot = i + j as u64;
                    }
                    let mut off = 0;
                    while off < k {
                        let m = p.push_n(&buf[off..k]);
                        if m == 0 {
                            spin_loop();
                        }
                        off += m;
                    }
                    i += k as u64;
                }
            }
        },
        move || {
            let t0 = Instant::now();
            let mut got = 0u64;
            let mut sum = 0u64;
            if batch == 1 {
                while got < n {
                    match c.pop1() {
                        Some(v) => {
                            sum = sum.wrapping_add(v);
                            got += 1;
                        }
                        None => spin_loop(),
                    }
                }
            } else {
                let mut buf = [0u64; 256];
                while got < n {
                    let m = c.pop_n(&mut buf[..batch]);
                    if m == 0 {
                        spin_loop();
                        continue;
                    }
                    for v in &buf[..m] {
                        sum = sum.wrapping_add(*v);
                    }
                    got += m as u64;
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2, "items lost or corrupted");
            black_box(sum);
            secs
        },
    );
    n as f64 / secs / 1e6
}

/// One ping-pong run's figures (ns), and how many round trips each phase timed.
#[derive(Debug, Clone, Copy)]
struct Rtt {
    mean: f64,
    batch_p50: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    batched: usize,
    sampled: usize,
}

/// The value that tells the echoing thread to stop (never a round-trip value).
const STOP: u64 = u64::MAX;

/// Ping-pong: thread A pushes a value into `ping` and waits for it to come back
/// through `pong`; thread B echoes. After a warm-up, phase 1 times batches of
/// `RTT_BATCH` round trips (the mean, and the median batch, which a preemption of
/// either thread does not move; both free of clock overhead), phase 2 takes one
/// `Instant::now()` per round trip (the percentiles; each sample includes one clock
/// read). Each phase stops early after `budget / 2` so that a descheduled thread on a
/// busy machine cannot stretch a run to minutes.
fn ping_pong<P1: Push, C1: Pop, P2: Push, C2: Pop>(
    opts: &Opts,
    (mut ping_tx, mut ping_rx): (P1, C1),
    (mut pong_tx, mut pong_rx): (P2, C2),
    batches: usize,
    samples: usize,
    budget: Duration,
) -> Rtt {
    let warmup = 10_000.min(samples);
    let (rtt, ()) = pair(
        opts,
        move || {
            let mut seq = 0u64;
            let mut rtt = || {
                seq += 1;
                while !ping_tx.push1(seq) {
                    spin_loop();
                }
                let v = loop {
                    if let Some(v) = pong_rx.pop1() {
                        break v;
                    }
                };
                assert_eq!(v, seq, "ping-pong value lost or corrupted");
            };
            for _ in 0..warmup {
                rtt();
            }
            let mut timed = Duration::ZERO;
            let mut batched = 0;
            let mut hb = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram bounds");
            while batched < batches * RTT_BATCH && timed < budget / 2 {
                let t0 = Instant::now();
                for _ in 0..RTT_BATCH {
                    rtt();
                }
                let dt = t0.elapsed();
                timed += dt;
                hb.saturating_record(dt.as_nanos() as u64);
                batched += RTT_BATCH;
            }
            let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("histogram bounds");
            let start = Instant::now();
            let mut prev = start;
            let mut sampled = 0;
            while sampled < samples {
                rtt();
                let now = Instant::now();
                h.saturating_record(now.duration_since(prev).as_nanos() as u64);
                prev = now;
                sampled += 1;
                if now.duration_since(start) > budget / 2 {
                    break;
                }
            }
            while !ping_tx.push1(STOP) {
                spin_loop();
            }
            Rtt {
                mean: timed.as_nanos() as f64 / batched as f64,
                batch_p50: hb.value_at_quantile(0.50) as f64 / RTT_BATCH as f64,
                p50: h.value_at_quantile(0.50) as f64,
                p99: h.value_at_quantile(0.99) as f64,
                p999: h.value_at_quantile(0.999) as f64,
                batched,
                sampled,
            }
        },
        move || loop {
            let v = loop {
                if let Some(v) = ping_rx.pop1() {
                    break v;
                }
            };
            if v == STOP {
                break;
            }
            while !pong_tx.push1(v) {
                spin_loop();
            }
        },
    );
    rtt
}

/// Nanoseconds one `Instant::now()` costs on this machine (included once in every
/// per-round-trip sample).
fn instant_cost(n: u32) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        black_box(Instant::now());
    }
    t0.elapsed().as_nanos() as f64 / n as f64
}

fn hi(v: Vec<f64>) -> Summary {
    Summary::of_higher_is_better(v)
}
fn lo(v: Vec<f64>) -> Summary {
    Summary::of_lower_is_better(v)
}

fn main() {
    let opts = Opts::from_args();
    let mut report = Report::new("ring.spsc");
    let n = opts.scale(20_000_000, 200_000);

    // Throughput: one at a time, then batches of 64 and 256.
    for (batch, tag, what) in
        [(1usize, "single", "one at a time"), (64, "batch64", "batches of 64"), (256, "batch256", "batches of 256")]
    {
        if !opts.wants(&format!("spsc.u64.{tag}")) {
            continue;
        }
        let o = &opts;
        let what_runs = format!("u64 {tag} (ours, rtrb, ArrayQueue), Mitems/s");
        let mut r = rounds(
            o,
            &what_runs,
            &mut [&mut || throughput(o, ours(), n, batch), &mut || throughput(o, rtrb_q(), n, batch), &mut || {
                throughput(o, aq(), n, batch)
            }],
        );
        let (aq_s, rtrb_s, ours_s) = (hi(r.pop().unwrap()), hi(r.pop().unwrap()), hi(r.pop().unwrap()));
        let (vs_rtrb, vs_aq) = (ours_s.median / rtrb_s.median, ours_s.median / aq_s.median);
        let api = if batch == 1 { String::new() } else { " (push_slice/pop_slice)".to_string() };
        report.push(
            Row::new(&format!("spsc.u64.{tag}.ours"), &format!("u64 {what}: tcpshm-ring{api}"), "Mitems/s", ours_s)
                .ratio("rtrb", vs_rtrb)
                .ratio("ArrayQueue", vs_aq)
                .goal(">= 1.0x rtrb and > ArrayQueue", vs_rtrb >= 1.0 && vs_aq > 1.0),
        );
        let rapi = if batch == 1 { "" } else { " (write_chunk_uninit/read_chunk)" };
        report.push(Row::reference(
            &format!("spsc.u64.{tag}.rtrb"),
            &format!("u64 {what}: rtrb{rapi}"),
            "Mitems/s",
            rtrb_s,
        ));
        let aapi = if batch == 1 { "" } else { " (no batch API: single push/pop in a loop)" };
        report.push(Row::reference(
            &format!("spsc.u64.{tag}.arrayqueue"),
            &format!("u64 {what}: crossbeam ArrayQueue{aapi}"),
            "Mitems/s",
            aq_s,
        ));
    }

    // Ping-pong round trip.
    let batches = opts.scale(5_000, 50) as usize;
    let samples = opts.scale(500_000, 5_000) as usize;
    let budget = Duration::from_millis(if opts.quick { 400 } else { 4000 });
    let mut least = (batches * RTT_BATCH, samples);
    if opts.wants("spsc.pingpong") {
        let o = &opts;
        let mut r = rounds(
            o,
            "ping-pong (floor, rtrb, ours)",
            &mut [
                &mut || ping_pong(o, mailbox(), mailbox(), batches, samples, budget),
                &mut || ping_pong(o, rtrb_q(), rtrb_q(), batches, samples, budget),
                &mut || ping_pong(o, ours(), ours(), batches, samples, budget),
            ],
        );
        let (ours_r, rtrb_r, floor_r) = (r.pop().unwrap(), r.pop().unwrap(), r.pop().unwrap());
        for x in ours_r.iter().chain(&rtrb_r).chain(&floor_r) {
            least = (least.0.min(x.batched), least.1.min(x.sampled));
        }
        let names = [("floor", "bare cache-line ping-pong (floor)"), ("rtrb", "rtrb"), ("ours", "tcpshm-ring")];
        type Stat = (&'static str, &'static str, fn(&Rtt) -> f64);
        let stats: [Stat; 5] = [
            ("batch_p50", "RTT of the median 100-RTT batch (clock-free)", |r| r.batch_p50),
            ("mean", "mean RTT over all 100-RTT batches (clock-free)", |r| r.mean),
            ("p50", "p50 per RTT (+1 clock read)", |r| r.p50),
            ("p99", "p99 per RTT (+1 clock read)", |r| r.p99),
            ("p999", "p99.9 per RTT (+1 clock read)", |r| r.p999),
        ];
        for (stat, what, get) in stats {
            let s = |v: &[Rtt]| lo(v.iter().map(get).collect());
            let (f, q, t) = (s(&floor_r), s(&rtrb_r), s(&ours_r));
            for ((name, label), v) in names.iter().zip([f, q, t]) {
                let (key, label) = (format!("spsc.pingpong.{stat}.{name}"), format!("ping-pong {what}: {label}"));
                let mut row = if *name == "ours" {
                    Row::new(&key, &label, "ns", v)
                } else {
                    Row::reference(&key, &label, "ns", v)
                };
                if *name == "ours" {
                    let x = v.median / q.median;
                    row = row.ratio("rtrb", x).ratio("floor", v.median / f.median);
                    if stat == "batch_p50" {
                        row = row.goal("<= 1.2x rtrb", x <= 1.2);
                    }
                } else if *name == "rtrb" {
                    row = row.ratio("floor", v.median / f.median);
                }
                report.push(row);
            }
        }
        let ic = lo((0..opts.runs).map(|_| instant_cost(1_000_000)).collect());
        report.push(Row::reference("spsc.instant_now", "Instant::now() cost (in every per-RTT sample once)", "ns", ic));
    }

    // The waiting helpers: throughput beside the plain calls and the busy-polling
    // references, then ping-pong.
    if opts.wants("spsc.wait.u64") {
        let o = &opts;
        let mut r = rounds(
            o,
            "u64 waiting helpers (ours wait, ours, rtrb, ArrayQueue, std sync_channel)",
            &mut [
                &mut || throughput(o, ours_wait(Wait::new()), n, 1),
                &mut || throughput(o, ours(), n, 1),
                &mut || throughput(o, rtrb_q(), n, 1),
                &mut || throughput(o, aq(), n, 1),
                &mut || throughput(o, std_sync(), n, 1),
            ],
        );
        let std_s = hi(r.pop().unwrap());
        let (aq_s, rtrb_s, plain_s, wait_s) =
            (hi(r.pop().unwrap()), hi(r.pop().unwrap()), hi(r.pop().unwrap()), hi(r.pop().unwrap()));
        report.push(
            Row::new(
                "spsc.wait.u64.ours",
                "u64 one at a time: tcpshm-ring push_wait/pop_wait (Wait::new(), notifying)",
                "Mitems/s",
                wait_s,
            )
            .ratio("push/pop", wait_s.median / plain_s.median)
            .ratio("rtrb", wait_s.median / rtrb_s.median)
            .ratio("ArrayQueue", wait_s.median / aq_s.median)
            .ratio("sync_channel", wait_s.median / std_s.median),
        );
        report.push(Row::reference(
            "spsc.wait.u64.plain",
            "u64 one at a time: tcpshm-ring push/pop, busy-polling (same run)",
            "Mitems/s",
            plain_s,
        ));
        report.push(Row::reference(
            "spsc.wait.u64.rtrb",
            "u64 one at a time: rtrb, busy-polling (same run)",
            "Mitems/s",
            rtrb_s,
        ));
        report.push(Row::reference(
            "spsc.wait.u64.arrayqueue",
            "u64 one at a time: crossbeam ArrayQueue, busy-polling (same run)",
            "Mitems/s",
            aq_s,
        ));
        report.push(Row::reference(
            "spsc.wait.u64.sync_channel",
            "u64 one at a time: std::sync::mpsc::sync_channel send/recv, blocking",
            "Mitems/s",
            std_s,
        ));
    }
    if opts.wants("spsc.wait.pingpong") {
        let o = &opts;
        let mut r = rounds(
            o,
            "ping-pong waiting (rtrb, ours, ours wait, ours park, std sync_channel)",
            &mut [
                &mut || ping_pong(o, rtrb_q(), rtrb_q(), batches, samples, budget),
                &mut || ping_pong(o, ours(), ours(), batches, samples, budget),
                &mut || ping_pong(o, ours_wait(Wait::new()), ours_wait(Wait::new()), batches, samples, budget),
                &mut || ping_pong(o, ours_wait(PARK_AT_ONCE), ours_wait(PARK_AT_ONCE), batches, samples, budget),
                &mut || ping_pong(o, std_sync(), std_sync(), batches, samples, budget),
            ],
        );
        let runs: Vec<Vec<Rtt>> = (0..5).map(|_| r.remove(0)).collect();
        for x in runs.iter().flatten() {
            least = (least.0.min(x.batched), least.1.min(x.sampled));
        }
        let names = [
            ("rtrb", "rtrb, busy-polling"),
            ("plain", "tcpshm-ring push/pop, busy-polling"),
            ("ours", "tcpshm-ring push_wait/pop_wait, Wait::new() (spin, yield, park)"),
            ("park", "tcpshm-ring push_wait/pop_wait, parking at once (a futex wake per hand-over)"),
            ("sync_channel", "std sync_channel send/recv, blocking"),
        ];
        type Stat = (&'static str, &'static str, fn(&Rtt) -> f64);
        let stats: [Stat; 4] = [
            ("batch_p50", "RTT of the median 100-RTT batch (clock-free)", |r| r.batch_p50),
            ("p50", "p50 per RTT (+1 clock read)", |r| r.p50),
            ("p99", "p99 per RTT (+1 clock read)", |r| r.p99),
            ("p999", "p99.9 per RTT (+1 clock read)", |r| r.p999),
        ];
        for (stat, what, get) in stats {
            let s: Vec<Summary> = runs.iter().map(|v| lo(v.iter().map(get).collect())).collect();
            let (rtrb_m, plain_m, std_m) = (s[0].median, s[1].median, s[4].median);
            for ((name, label), v) in names.iter().zip(&s) {
                let key = format!("spsc.wait.pingpong.{stat}.{name}");
                let label = format!("ping-pong {what}: {label}");
                let row = if *name == "ours" {
                    Row::new(&key, &label, "ns", *v)
                        .ratio("rtrb", v.median / rtrb_m)
                        .ratio("push/pop", v.median / plain_m)
                } else if *name == "park" {
                    // Parking is compared with the other blocking queue, not with spinning.
                    Row::new(&key, &label, "ns", *v).ratio("sync_channel", v.median / std_m)
                } else {
                    Row::reference(&key, &label, "ns", *v)
                };
                report.push(row);
            }
        }
    }

    if opts.wants("spsc.u64") {
        report.note(&format!(
            "Throughput: {n} u64 per run, queue capacity {CAP}, producer on cpu {} and consumer on cpu {}; \
             time from a common start to the consumer's last pop; the consumer checks the sum of what it got.",
            opts.cpus.0, opts.cpus.1
        ));
    }
    if opts.wants("spsc.wait") {
        report.note(
            "Waiting helpers: push_wait/pop_wait notify the other end on every call (a SeqCst fence and a load; \
             a futex wake only when it is parked); Wait::new() spins 128 times, yields 16 times, then parks in \
             1 ms rounds; 'parking at once' spins and yields 0 times, so every empty/full wait is a futex sleep. \
             rtrb and ArrayQueue busy-poll (no waiting API); std's sync_channel blocks.",
        );
    }
    if opts.wants("spsc.pingpong") {
        report.note(&format!(
            "Ping-pong: two queues of capacity {CAP} (or two 128-byte-aligned AtomicU64 lines for the floor), \
             both threads busy-poll without pause. Clock-free figures come from batches of {RTT_BATCH} round \
             trips, each timed with two Instant::now() and divided by {RTT_BATCH} (at least {} round trips per \
             run): the median batch (the goal's measure: a preemption of either thread on this shared machine \
             moves the mean, not the median) and the mean of all; percentiles come from per-round-trip samples \
             (hdrhistogram; at least {} per run), each of which includes one Instant::now(). Each phase stops \
             after {:?} if not done.",
            least.0,
            least.1,
            budget / 2
        ));
    }
    report.note(&format!(
        "{} runs of each, interleaved (ours, rtrb, ArrayQueue, ours, ...); median and best run reported; \
         ratios are of medians.",
        opts.runs
    ));
    report.finish(&opts);
}
