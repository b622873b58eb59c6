//! Variable-length queue benchmark: `tcpshm_ring::var` throughput from 16 B to 1 MiB
//! messages, producer and consumer pinned to two cpus, every payload byte written by
//! the producer and read by the consumer; 1 MiB messages against a single-thread
//! memcpy of the same size; frame alignment 8 against 64 for small messages; the
//! waiting helpers (`alloc_wait`/`push_notify`, `front_wait`/`pop_notify`) against the
//! plain calls.
//!
//! `cargo xtask bench ring` runs it; `--quick` is a smoke run.

// The bench plumbing shared by every crate of the workspace (see its header).

use std::hint::{black_box, spin_loop};
use std::time::Instant;
use tcpshm_bench_common::{pair, pinned, Opts, Report, Row, Summary};
use tcpshm_ring::var::{Config, VarQueue};
use tcpshm_ring::wait::Wait;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// One measured configuration.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// Key suffix, e.g. `64b.batch`.
    key: &'static str,
    /// Payload bytes per message.
    payload: usize,
    /// Ring data bytes.
    capacity: usize,
    /// Frame alignment.
    align: usize,
    /// Messages per `publish` / `release` (1: `push` and `pop` each message).
    batch: usize,
    /// Messages per run in a full run.
    full: u64,
    /// Through the waiting helpers (`alloc_wait`/`push_notify`, `front_wait`/
    /// `pop_notify`, `Wait::new()`), one message at a time.
    wait: bool,
}

/// Throughput of one run.
#[derive(Debug, Clone, Copy)]
struct Tput {
    msgs_per_s: f64,
    bytes_per_s: f64,
}

/// XOR-fold of every byte of `p` (8 at a time), so the consumer really reads the
/// payload; the compiler vectorises it.
#[inline(always)]
fn fold(p: &[u8]) -> u64 {
    let (words, rest) = p.as_chunks::<8>();
    let mut acc = 0u64;
    for w in words {
        acc ^= u64::from_ne_bytes(*w);
    }
    for &b in rest {
        acc ^= b as u64;
    }
    acc
}

/// Moves `n` messages through a fresh queue and returns the consumer's view of the
/// rate (from the common start to its last pop). The producer copies every payload
/// from a prepared buffer and stamps its first 8 bytes with the sequence number; the
/// consumer folds every payload byte and checks length and sequence.
fn run(opts: &Opts, case: Case, n: u64) -> Tput {
    let (mut p, mut c) =
        VarQueue::with_config(Config { capacity: case.capacity, align: case.align }).expect("valid bench config");
    let len = case.payload;
    let batch = case.batch;
    let src: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
    if case.wait {
        return run_waiting(opts, case, n);
    }
    let (_, secs) = pair(
        opts,
        move || {
            let mut staged = 0;
            for seq in 0..n {
                loop {
                    if let Some(buf) = p.alloc(len).expect("payload fits the ring") {
                        buf[8..].copy_from_slice(&src[8..]);
                        buf[..8].copy_from_slice(&seq.to_le_bytes());
                        break;
                    }
                    // Full: make what is staged visible, then wait for the consumer.
                    p.publish();
                    staged = 0;
                    spin_loop();
                }
                if batch == 1 {
                    p.push(1).expect("allocated");
                } else {
                    p.push_more(1).expect("allocated");
                    staged += 1;
                    if staged == batch {
                        p.publish();
                        staged = 0;
                    }
                }
            }
            p.publish();
        },
        move || {
            let t0 = Instant::now();
            let mut got = 0u64;
            let mut acc = 0u64;
            let mut popped = 0;
            while got < n {
                let Some(m) = c.front().expect("queue not corrupt") else {
                    // Empty: hand back what was consumed, then wait for the producer.
                    c.release();
                    popped = 0;
                    spin_loop();
                    continue;
                };
                let pl = m.payload();
                assert_eq!(pl.len(), len, "wrong message length");
                let seq = u64::from_le_bytes(pl[..8].try_into().unwrap());
                assert_eq!(seq, got, "message lost, repeated or reordered");
                acc ^= fold(pl);
                if batch == 1 {
                    c.pop().expect("front was Some");
                } else {
                    c.pop_more().expect("front was Some");
                    popped += 1;
                    if popped == batch {
                        c.release();
                        popped = 0;
                    }
                }
                got += 1;
            }
            c.release();
            black_box(acc);
            t0.elapsed().as_secs_f64()
        },
    );
    Tput { msgs_per_s: n as f64 / secs, bytes_per_s: (n * len as u64) as f64 / secs }
}

/// [`run`] through the waiting helpers: each end waits instead of polling and notifies
/// the other after every message.
fn run_waiting(opts: &Opts, case: Case, n: u64) -> Tput {
    let (mut p, mut c) =
        VarQueue::with_config(Config { capacity: case.capacity, align: case.align }).expect("valid bench config");
    let len = case.payload;
    let src: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
    let w = Wait::new();
    let (_, secs) = pair(
        opts,
        move || {
            for seq in 0..n {
                let buf = p.alloc_wait(len, &w).expect("the consumer is there");
                buf[8..].copy_from_slice(&src[8..]);
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                p.push_notify(1).expect("allocated");
            }
        },
        move || {
            let t0 = Instant::now();
            let mut acc = 0u64;
            for got in 0..n {
                let m = c.front_wait(&w).expect("the producer is there");
                let pl = m.payload();
                assert_eq!(pl.len(), len, "wrong message length");
                let seq = u64::from_le_bytes(pl[..8].try_into().unwrap());
                assert_eq!(seq, got, "message lost, repeated or reordered");
                acc ^= fold(pl);
                c.pop_notify().expect("front was Some");
            }
            black_box(acc);
            t0.elapsed().as_secs_f64()
        },
    );
    Tput { msgs_per_s: n as f64 / secs, bytes_per_s: (n * len as u64) as f64 / secs }
}

/// Single-thread memcpy of `len` bytes, `n` times, from one buffer to another
/// (both warm): bytes per second.
fn memcpy(opts: &Opts, len: usize, n: u64) -> f64 {
    pinned(opts.cpus.0, move || {
        let src: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
        let mut dst = vec![0u8; len];
        dst.copy_from_slice(&src);
        let t0 = Instant::now();
        for _ in 0..n {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        (n * len as u64) as f64 / t0.elapsed().as_secs_f64()
    })
}

fn hi(v: Vec<f64>) -> Summary {
    Summary::of_higher_is_better(v)
}

fn size_name(b: usize) -> String {
    match b {
        b if b >= MIB => format!("{} MiB", b / MIB),
        b if b >= KIB => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

fn main() {
    let opts = Opts::from_args();
    let mut report = Report::new("ring.var");

    let small = 256 * KIB;
    let cases = [
        Case { key: "16b.batch", payload: 16, capacity: small, align: 8, batch: 64, full: 30_000_000, wait: false },
        Case {
            key: "16b.batch.align64",
            payload: 16,
            capacity: small,
            align: 64,
            batch: 64,
            full: 30_000_000,
            wait: false,
        },
        Case { key: "64b.single", payload: 64, capacity: small, align: 8, batch: 1, full: 5_000_000, wait: false },
        Case { key: "64b.single.wait", payload: 64, capacity: small, align: 8, batch: 1, full: 5_000_000, wait: true },
        Case { key: "64b.batch", payload: 64, capacity: small, align: 8, batch: 64, full: 30_000_000, wait: false },
        Case {
            key: "64b.batch.align64",
            payload: 64,
            capacity: small,
            align: 64,
            batch: 64,
            full: 30_000_000,
            wait: false,
        },
        Case { key: "256b.batch", payload: 256, capacity: small, align: 8, batch: 64, full: 10_000_000, wait: false },
        Case { key: "1k.batch", payload: KIB, capacity: small, align: 8, batch: 32, full: 4_000_000, wait: false },
        Case { key: "64k.single", payload: 64 * KIB, capacity: MIB, align: 8, batch: 1, full: 40_000, wait: false },
        Case { key: "1m.single", payload: MIB, capacity: 4 * MIB, align: 8, batch: 1, full: 2_000, wait: false },
    ];
    let cases: Vec<Case> = cases.into_iter().filter(|c| opts.wants(&format!("var.{}", c.key))).collect();
    let with_memcpy = opts.wants("var.1m.memcpy");
    let memcpy_n = opts.scale(4_000, 20);

    // Each round runs every case once (then the memcpy reference), so the machine's
    // noise falls evenly on all of them.
    let mut results: Vec<Vec<Tput>> = cases.iter().map(|_| Vec::new()).collect();
    let mut memcpy_runs = Vec::new();
    for _ in 0..opts.runs {
        for (case, out) in cases.iter().zip(results.iter_mut()) {
            let r = run(&opts, *case, opts.scale(case.full, 20));
            if opts.verbose {
                eprintln!("var.{}: {:.1} Mmsg/s, {:.2} GB/s", case.key, r.msgs_per_s / 1e6, r.bytes_per_s / 1e9);
            }
            out.push(r);
        }
        if with_memcpy {
            let r = memcpy(&opts, MIB, memcpy_n);
            if opts.verbose {
                eprintln!("var.1m.memcpy: {:.2} GB/s", r / 1e9);
            }
            memcpy_runs.push(r);
        }
    }
    let memcpy_gbs = with_memcpy.then(|| hi(memcpy_runs.iter().map(|b| b / 1e9).collect()));
    // (messages/s in millions, GB/s) of a case, if it ran.
    let rate = |key: &str| -> Option<(Summary, Summary)> {
        let i = cases.iter().position(|c| c.key == key)?;
        let r = &results[i];
        Some((hi(r.iter().map(|t| t.msgs_per_s / 1e6).collect()), hi(r.iter().map(|t| t.bytes_per_s / 1e9).collect())))
    };

    for case in &cases {
        let (msgs, gbs) = rate(case.key).expect("case ran");
        let mode = if case.wait {
            "alloc_wait/push_notify, front_wait/pop_notify each".to_string()
        } else if case.batch == 1 {
            "push/pop each".to_string()
        } else {
            format!("push_more/pop_more, publish/release every {}", case.batch)
        };
        let label = format!(
            "{} messages, {mode}, align {}, ring {}",
            size_name(case.payload),
            case.align,
            size_name(case.capacity)
        );
        let key = format!("var.{}", case.key);
        let mut row = if case.payload >= 64 * KIB {
            let kmsgs = Summary { median: msgs.median * 1e3, best: msgs.best * 1e3 };
            Row::new(&key, &label, "GB/s", gbs).also(kmsgs, "kmsg/s")
        } else {
            Row::new(&key, &label, "Mmsg/s", msgs).also(gbs, "GB/s")
        };
        match case.key {
            "64b.batch" => {
                if let Some((single, _)) = rate("64b.single") {
                    row = row.ratio("push/pop each", msgs.median / single.median);
                }
                row = row.goal(">= 150 M msgs/s", msgs.median >= 150.0);
            }
            "64b.single.wait" => {
                if let Some((single, _)) = rate("64b.single") {
                    row = row.ratio("push/pop each", msgs.median / single.median);
                }
            }
            "16b.batch.align64" | "64b.batch.align64" => {
                if let Some((base, _)) = rate(case.key.trim_end_matches(".align64")) {
                    row = row.ratio("align 8", msgs.median / base.median);
                }
            }
            "1m.single" => {
                if let Some(m) = memcpy_gbs {
                    row = row.ratio("memcpy 1 MiB", gbs.median / m.median);
                }
            }
            _ => {}
        }
        report.push(row);
    }
    if let Some(m) = memcpy_gbs {
        report.push(Row::reference("var.1m.memcpy", "single-thread memcpy of 1 MiB (warm buffers)", "GB/s", m));
    }

    report.note(&format!(
        "Producer on cpu {} fills every payload byte (copy from a prepared buffer, sequence number in the first \
         8 bytes); consumer on cpu {} reads every byte (XOR-fold) and checks length and sequence. Rate = messages \
         (payload bytes for GB/s, 1 GB = 1e9 B) from a common start to the consumer's last pop.",
        opts.cpus.0, opts.cpus.1
    ));
    report.note(&format!(
        "{} runs of each, interleaved across cases; median and best run reported; ratios are of medians.",
        opts.runs
    ));
    report.finish(&opts);
}
