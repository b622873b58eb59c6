//! The live counters' cost on the echo round trip (issue 12): the same server with
//! its counters file on (`ServerConfig::stats.enabled`, the default) and off, in
//! back-to-back pairs (`tcpshm_bench::pairs`): each window of the server with
//! counters sits between two windows of the one without, and the ratio is taken
//! within the pair at p50, p99, p99.9 and p99.99. Over shared memory, where a
//! publication would show most (the round trip is a few hundred nanoseconds), and
//! over TCP. Payloads, checks and pinning as in the echo suite: the client is this
//! process on the first cpu, each server a child on the second; the one not being
//! measured is paused (`SIGSTOP`).
//!
//! The counters are published with plain stores once per stats interval (1 ms), a
//! slice of records per poll; between publications a poll costs one comparison. The
//! goal, for information: the ratio's median stays within the pairs' noise (≤ 1.05x
//! at p50).
//!
//! The server's system calls per round trip are counted too (the kernel's counter,
//! `syscalls::count`), with the counters on and off: publishing adds none.
//!
//! `cargo xtask bench stats` runs it; `--quick` is a smoke run.

use hdrhistogram::Histogram;
use std::time::Duration;
use tcpshm_bench::child::{self, Child};
use tcpshm_bench::clock::{ticks, Clock};
use tcpshm_bench::common::{self, progress, Opts, Report, Row, Summary};
use tcpshm_bench::floors::{Ours, Pinger};
use tcpshm_bench::hist;
use tcpshm_bench::ours::{self, Echo};
use tcpshm_bench::pairs::{self, LatencyPairs, Turn, QUANTILES};
use tcpshm_bench::payload::{self, Payloads};
use tcpshm_bench::scratch::{Scratch, ShmPrefix};
use tcpshm_bench::syscalls;
use tcpshm_client::{Client, TransportKind};

/// A server child and the client connected to it.
struct Live {
    child: Child,
    client: Ours<Client>,
    gen: Payloads,
    seq: u64,
    dir: Scratch,
    _shm: ShmPrefix,
}

impl Live {
    fn start(stats: bool, kind: TransportKind, opts: &Opts, clock: &Clock) -> Live {
        let dir = Scratch::new("stats-bench");
        let shm = ShmPrefix::new();
        let mut child = Child::spawn(
            "server",
            opts.cpus.1,
            &[
                "--storage".into(),
                dir.join("server"),
                "--shm-prefix".into(),
                shm.as_str().into(),
                "--stats".into(),
                if stats { dir.join("stats") } else { "off".into() },
            ],
        );
        let addr = child.expect("ready").parse().expect("server address");
        let cfg = ours::client_config("bench", &dir.path().join("client"), shm.as_str(), 1 << 20, 64 * 1024);
        let client = Ours(ours::connect(cfg, addr, kind, clock));
        let mut live = Live { child, client, gen: Payloads::new(), seq: 0, dir, _shm: shm };
        live.child.stop();
        live
    }

    /// One window: the server resumed, `warm` then `span` of checked round trips.
    fn window(&mut self, clock: &Clock, warm: Duration, span: Duration) -> Histogram<u64> {
        self.child.resume();
        let mut buf = [0u8; payload::MAX];
        let mut h = hist::new_hist();
        let mut run = |record: bool, span: Duration, h: &mut Histogram<u64>| {
            let start = ticks();
            let span_ticks = clock.ticks_in(span.as_nanos() as f64);
            loop {
                let mut t0 = start;
                for _ in 0..64 {
                    let len = self.gen.next(self.seq, &mut buf);
                    self.seq += 1;
                    t0 = ticks();
                    let ok = self.client.ping(&buf[..len], clock.at(t0));
                    let t1 = ticks();
                    assert!(ok, "echo {} came back corrupt", self.seq);
                    if record {
                        hist::record(h, clock.ns(t1 - t0));
                    }
                }
                if t0 - start >= span_ticks {
                    break;
                }
            }
        };
        run(false, warm, &mut h);
        run(true, span, &mut h);
        self.child.stop();
        h
    }
}

impl Live {
    /// The server's and this thread's system calls per round trip over `span` (after a
    /// warm-up of a quarter of it), counted exactly (`syscalls::count`).
    fn calls(&mut self, clock: &Clock, span: Duration) -> (Result<syscalls::PerMessage, String>, Names) {
        self.child.resume();
        let mut buf = [0u8; payload::MAX];
        let (client, gen, seq) = (&mut self.client, &mut self.gen, &mut self.seq);
        let mut spin = |span: Duration| {
            let start = ticks();
            let span_ticks = clock.ticks_in(span.as_nanos() as f64);
            let mut n = 0u64;
            while ticks() - start < span_ticks {
                for _ in 0..64 {
                    let len = gen.next(*seq, &mut buf);
                    *seq += 1;
                    assert!(client.ping(&buf[..len], clock.at(ticks())), "echo {seq} came back corrupt");
                }
                n += 64;
            }
            n
        };
        spin(span / 4);
        let per = syscalls::count(self.child.pid(), || spin(span));
        // The names, in a window of their own (strace slows the calls it sees): the
        // server's thread only, as counted above.
        let out = self.dir.path().join("strace");
        let names = syscalls::Strace::attach(self.child.pid(), false, &out).and_then(|st| {
            let n = spin(span / 2);
            st.finish(false).map(|m| (m, n))
        });
        self.child.stop();
        (per, names)
    }
}

/// The server's system calls by name in a strace window, and the round trips in it.
type Names = Result<(std::collections::BTreeMap<String, u64>, u64), String>;

/// The server role: `ours::serve` with the counters file in `--stats DIR`, or off.
fn role(name: &str, args: &[String]) {
    child::become_child(args);
    assert_eq!(name, "server", "unknown role {name}");
    let storage = child::arg(args, "--storage").expect("--storage");
    let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
    let mut cfg = ours::server_config(std::path::Path::new(storage), prefix, 1 << 20, 64 * 1024);
    match child::arg(args, "--stats").expect("--stats") {
        "off" => cfg.stats.enabled = false,
        dir => {
            std::fs::create_dir_all(dir).expect("stats dir");
            cfg.stats.dir = dir.into();
        }
    }
    ours::serve(cfg, vec![Echo], Clock::calibrate(Duration::from_millis(5)));
}

fn main() {
    if let Some((name, args)) = child::role_args() {
        role(&name, &args);
        return;
    }
    let opts = Opts::from_args();
    if !common::pin_to_cpu(opts.cpus.0) {
        eprintln!("warning: could not pin the client to cpu {}; running unpinned", opts.cpus.0);
    }
    let clock = Clock::calibrate(Duration::from_millis(if opts.quick { 5 } else { 50 }));
    let n = match (opts.runs_given, opts.quick) {
        (Some(n), _) => n.max(1),
        (None, true) => 1,
        (None, false) => 8,
    };
    let kinds: Vec<(TransportKind, &str, &str)> =
        [(TransportKind::Shm, "stats.echo.shm", "SHM"), (TransportKind::Tcp, "stats.echo.tcp", "TCP")]
            .into_iter()
            .filter(|(_, key, _)| opts.wants(key))
            .collect();
    let per_kind = 2 * n + 2;
    let total = kinds.len() * per_kind;
    let mut report = Report::new("stats");
    let mut data = serde_json::Map::new();
    for (k, (kind, key, short)) in kinds.into_iter().enumerate() {
        let mut step = k * per_kind;
        let (warm, span) = match (opts.quick, kind) {
            (true, _) => (Duration::from_millis(10), Duration::from_millis(40)),
            (false, TransportKind::Shm) => (Duration::from_millis(50), Duration::from_millis(300)),
            (false, TransportKind::Tcp) => (Duration::from_millis(100), Duration::from_millis(1000)),
        };
        let mut off = Live::start(false, kind, &opts, &clock);
        let mut on = Live::start(true, kind, &opts, &clock);
        let (refs, ours) = pairs::chain(n, |turn, i| {
            let (live, what) = match turn {
                Turn::Reference => (&mut off, format!("{short} echo, counters off: window {}/{}", i + 1, n + 1)),
                Turn::Ours => (&mut on, format!("{short} echo, counters on: window {}/{n}", i + 1)),
            };
            progress(step, total, &what);
            step += 1;
            live.window(&clock, warm, span)
        });
        let p = LatencyPairs::judge(&refs, &ours);
        let best = |ours: bool| {
            p.pairs
                .iter()
                .filter(|x| x.kept)
                .map(|x| if ours { x.ours.p50 } else { x.reference.p50 })
                .fold(f64::NAN, f64::min)
        };
        let off_name = format!("{short} counters off");
        let mut row = Row::new(
            &format!("{key}.on"),
            &format!("tcpshm {short} echo, live counters on (default)"),
            "ns",
            Summary { median: p.median_ours(0), best: best(true) },
        );
        for (k, (_, name, _)) in QUANTILES.iter().enumerate() {
            row = row.ratio(&format!("{off_name} ({name}, median of pairs)"), p.median[k]);
        }
        row = row
            .param("pairs_kept", (p.pairs.len() - p.discarded()) as f64)
            .param("pairs_discarded", p.discarded() as f64);
        if let Some(r) = p.representative.map(|i| &p.pairs[i]) {
            row = row.latency(r.ours.clone());
        }
        report.push(row);
        let mut off_row = Row::reference(
            &format!("{key}.off"),
            &format!("tcpshm {short} echo, live counters off"),
            "ns",
            Summary { median: p.median_reference(0), best: best(false) },
        );
        if let Some(r) = p.representative.map(|i| &p.pairs[i]) {
            off_row = off_row.latency(r.reference.clone());
        }
        report.push(off_row);
        report.section(
            &format!("{short} echo with the live counters on against off, in pairs"),
            format!("{}\n{}", p.markdown("on", "off"), p.states_markdown("off")),
        );
        data.insert(key.to_string(), p.json());
        // System calls: the same count with the counters on as off (their refresh is
        // plain stores into a mapping), per round trip and per second.
        progress(step, total, &format!("{short} echo: counting system calls, counters off and on"));
        let span = if opts.quick { Duration::from_millis(50) } else { Duration::from_millis(1000) };
        let counted = [("off", off.calls(&clock, span)), ("on", on.calls(&clock, span))];
        let mut md = String::from(
            "| counters | round trips counted (per s) | server calls / RT (per s) | client calls / RT (per s) | server \
             calls by name (strace, separate window: round trips) |\n|---|---:|---:|---:|---|\n",
        );
        let mut js = serde_json::Map::new();
        for (which, (per, names)) in &counted {
            let names = match names {
                Ok((m, n)) => format!("{} ({n} RT)", syscalls::names_text(m)),
                Err(e) => format!("not measured: {e}"),
            };
            match per {
                Ok(per) => {
                    md.push_str(&format!(
                        "| {which} | {} ({}) | {:.4} ({}) | {:.4} ({}) | {names} |\n",
                        per.messages,
                        common::fmt_num(per.rate()),
                        per.server_per(),
                        common::fmt_num(per.server as f64 / per.secs),
                        per.client_per(),
                        common::fmt_num(per.client as f64 / per.secs),
                    ));
                    js.insert(
                        which.to_string(),
                        serde_json::json!({
                            "round_trips": per.messages, "server_calls": per.server, "client_calls": per.client,
                            "server_per_rt": per.server_per(), "client_per_rt": per.client_per(), "seconds": per.secs,
                            "server_names": names,
                        }),
                    );
                }
                Err(e) => {
                    md.push_str(&format!("| {which} | not measured: {e} | | | {names} |\n"));
                    js.insert(which.to_string(), serde_json::json!({ "not_measured": e, "server_names": names }));
                }
            }
        }
        if let [(_, (Ok(off_calls), _)), (_, (Ok(on_calls), _))] = &counted {
            let row = Row::new(
                &format!("{key}.syscalls"),
                &format!("{short} echo: server system calls per round trip, counters on (off beside)"),
                "calls/RT",
                Summary { median: on_calls.server_per(), best: on_calls.server_per() },
            )
            .also(Summary { median: off_calls.server_per(), best: off_calls.server_per() }, "calls/RT, counters off");
            report.push(row);
        } else {
            report.skip(&format!("{short} echo: system calls with counters on and off"), "perf_event_open refused");
        }
        report.section(&format!("{short} echo: system calls with the live counters off and on"), md);
        data.insert(format!("{key}.syscalls"), serde_json::Value::Object(js));
    }
    progress(total, total, "done");
    report.data("pairs", serde_json::Value::Object(data));
    report.note(
        "The same server binary and configuration, the counters file on (default: a record per session refreshed \
         every 1 ms with plain stores) or off (`ServerConfig::stats.enabled = false`); ratios are on / off within \
         each back-to-back pair.",
    );
    report.finish(&opts);
}
