//! Echo round-trip time, the reference's method: one message out, wait for its echo,
//! payload sizes drawn at random from 16/36/68/200 bytes, every echo checked byte for
//! byte. The server side is a separate process (this binary re-executed in a role)
//! pinned to the second cpu; the client is this process, pinned to the first.
//!
//! Contenders, measured in interleaved rounds (each round runs every contender once,
//! so the noise of a shared machine spreads evenly), each run a fresh server process:
//! tcpshm over SHM and TCP (the real `tcpshm-server` and `tcpshm-client`), tcpshm's
//! stream transport over a Unix socket, and the references — the bare shared-memory
//! floor, two `tcpshm-ring` queues, bare busy-poll TCP and Unix-socket ping-pongs, and
//! ZeroMQ REQ/REP over tcp:// and ipc:// (`--with-zmq`, feature `zmq`).
//!
//! Each run: a warm-up, then round trips for a fixed time; HdrHistogram of the RTTs
//! (each sample includes two clock reads, reported); the median run by p50 is
//! reported with its whole distribution.
//!
//! `cargo xtask bench echo` runs it; `--quick` is a smoke run of a few seconds.

mod common;
mod support;

use common::{progress, Latency, Opts, Report, Row};
use std::time::Duration;
use support::child::{self, Child};
use support::clock::{ticks, Clock};
use support::floors::{self, Ours, Pinger, RingPinger, Shared, SlotPinger, StreamPinger};
use support::hist;
use support::ours::{self, Echo};
use support::payload::{self, Payloads};
use support::{Scratch, ShmPrefix};
use tcpshm_client::TransportKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Shm,
    Tcp,
    Unix,
    FloorShm,
    Ring,
    FloorTcp,
    FloorUnix,
    ZmqTcp,
    ZmqIpc,
}

impl Who {
    const ALL: [Who; 9] = [
        Who::Shm,
        Who::Tcp,
        Who::Unix,
        Who::FloorShm,
        Who::Ring,
        Who::FloorTcp,
        Who::FloorUnix,
        Who::ZmqTcp,
        Who::ZmqIpc,
    ];

    fn key(self) -> &'static str {
        match self {
            Who::Shm => "echo.shm",
            Who::Tcp => "echo.tcp",
            Who::Unix => "echo.unix",
            Who::FloorShm => "echo.floor.shm",
            Who::Ring => "echo.ring",
            Who::FloorTcp => "echo.floor.tcp",
            Who::FloorUnix => "echo.floor.unix",
            Who::ZmqTcp => "echo.zmq.tcp",
            Who::ZmqIpc => "echo.zmq.ipc",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Who::Shm => "tcpshm SHM (server + client)",
            Who::Tcp => "tcpshm TCP (server + client)",
            Who::Unix => "tcpshm stream transport over a Unix socket",
            Who::FloorShm => "shared-memory floor (one slot per direction)",
            Who::Ring => "tcpshm-ring: two var queues in shared memory",
            Who::FloorTcp => "TCP floor (busy-poll loopback, TCP_NODELAY)",
            Who::FloorUnix => "Unix-socket floor (busy-poll)",
            Who::ZmqTcp => "ZeroMQ REQ/REP tcp://",
            Who::ZmqIpc => "ZeroMQ REQ/REP ipc://",
        }
    }

    fn ours(self) -> bool {
        matches!(self, Who::Shm | Who::Tcp | Who::Unix)
    }

    fn zmq(self) -> bool {
        matches!(self, Who::ZmqTcp | Who::ZmqIpc)
    }
}

/// Warm-up and measured time of one run.
fn durations(opts: &Opts) -> (Duration, Duration) {
    if opts.quick {
        (Duration::from_millis(20), Duration::from_millis(80))
    } else {
        (Duration::from_millis(200), Duration::from_millis(1500))
    }
}

/// Round trips for `warm` (not recorded) then for `span`; every echo is checked.
fn measure<P: Pinger>(p: &mut P, clock: &Clock, warm: Duration, span: Duration) -> Latency {
    let mut gen = Payloads::new();
    let mut buf = [0u8; payload::MAX];
    let mut h = hist::new_hist();
    let ns = |d: Duration| d.as_nanos() as f64;
    let start = ticks();
    let mut seq = 0u64;
    // Warm-up.
    while clock.ns(ticks() - start) < ns(warm) {
        for _ in 0..64 {
            let len = gen.next(seq, &mut buf);
            seq += 1;
            assert!(p.ping(&buf[..len], clock.now_ns()), "echo {seq} came back corrupt");
        }
    }
    let start = ticks();
    let mut t0 = start;
    loop {
        for _ in 0..64 {
            let len = gen.next(seq, &mut buf);
            seq += 1;
            t0 = ticks();
            let ok = p.ping(&buf[..len], clock.at(t0));
            let t1 = ticks();
            assert!(ok, "echo {seq} came back corrupt");
            hist::record(&mut h, clock.ns(t1 - t0));
        }
        if clock.ns(t0 - start) >= ns(span) || h.len() >= 20_000_000 {
            break;
        }
    }
    hist::latency(&h)
}

/// One run of `who`: a fresh server process, a fresh client, the measurement.
fn run(who: Who, opts: &Opts, clock: &Clock) -> Latency {
    let (warm, span) = durations(opts);
    let cpu = opts.cpus.1;
    let dir = Scratch::new("echo");
    let shm = ShmPrefix::new();
    let d = |p: &str| dir.path().join(p).display().to_string();
    match who {
        Who::Shm | Who::Tcp => {
            let mut child = Child::spawn(
                "ours",
                cpu,
                &["--storage".into(), d("server"), "--shm-prefix".into(), shm.as_str().into()],
            );
            let addr = child.expect("ready").parse().expect("server address");
            let kind = if who == Who::Shm { TransportKind::Shm } else { TransportKind::Tcp };
            let cfg = ours::client_config("bench", &dir.path().join("client"), shm.as_str(), 1 << 20, 64 * 1024);
            let mut c = Ours(ours::connect(cfg, addr, kind, clock));
            let l = measure(&mut c, clock, warm, span);
            drop(c);
            drop(child);
            l
        }
        Who::Unix => {
            let sock = d("echo.sock");
            std::fs::create_dir_all(dir.path().join("server")).expect("dir");
            std::fs::create_dir_all(dir.path().join("client")).expect("dir");
            let mut child =
                Child::spawn("ours-unix", cpu, &["--path".into(), sock.clone(), "--storage".into(), d("server")]);
            child.expect("ready");
            let mut c = Ours(ours::unix_client(&sock, &dir.path().join("client"), clock));
            measure(&mut c, clock, warm, span)
        }
        Who::FloorShm | Who::Ring => {
            let file = format!("/dev/shm/{}floor", shm.as_str());
            let mut sh = Shared::create(std::path::Path::new(&file), floors::shared_len());
            let role = if who == Who::Ring { "ring" } else { "slot" };
            if who == Who::Ring {
                floors::ring_init(&mut sh);
            }
            let mut child = Child::spawn(role, cpu, &["--file".into(), file]);
            child.expect("ready");
            if who == Who::Ring {
                measure(&mut RingPinger::new(sh), clock, warm, span)
            } else {
                measure(&mut SlotPinger::new(sh), clock, warm, span)
            }
        }
        Who::FloorTcp => {
            let mut child = Child::spawn("tcp", cpu, &[]);
            let addr = child.expect("ready");
            measure(&mut StreamPinger::new(floors::tcp_connect(&addr)), clock, warm, span)
        }
        Who::FloorUnix => {
            let sock = d("floor.sock");
            let mut child = Child::spawn("unix", cpu, &["--path".into(), sock.clone()]);
            child.expect("ready");
            measure(&mut StreamPinger::new(floors::unix_connect(&sock)), clock, warm, span)
        }
        Who::ZmqTcp | Who::ZmqIpc => run_zmq(who, &dir, cpu, clock, warm, span),
    }
}

#[cfg(feature = "zmq")]
fn run_zmq(who: Who, dir: &Scratch, cpu: usize, clock: &Clock, warm: Duration, span: Duration) -> Latency {
    let endpoint = if who == Who::ZmqTcp {
        "tcp://127.0.0.1:*".to_string()
    } else {
        format!("ipc://{}", dir.path().join("zmq.ipc").display())
    };
    let mut child = Child::spawn("zmq", cpu, &["--endpoint".into(), endpoint]);
    let bound = child.expect("ready");
    measure(&mut floors::ZmqPinger::new(&bound), clock, warm, span)
}

#[cfg(not(feature = "zmq"))]
fn run_zmq(_: Who, _: &Scratch, _: usize, _: &Clock, _: Duration, _: Duration) -> Latency {
    unreachable!("ZeroMQ contenders are only planned with the `zmq` feature")
}

/// The child roles of this binary.
fn role(name: &str, args: &[String]) {
    child::pin_from_args(args);
    match name {
        "ours" => {
            let clock = Clock::calibrate(Duration::from_millis(5));
            let storage = child::arg(args, "--storage").expect("--storage");
            let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
            let cfg = ours::server_config(std::path::Path::new(storage), prefix, 1 << 20, 64 * 1024);
            ours::serve(cfg, vec![Echo], clock)
        }
        "ours-unix" => ours::unix_server(args),
        "slot" => floors::slot_server(args),
        "ring" => floors::ring_server(args),
        "tcp" => floors::tcp_server(args),
        "unix" => floors::unix_server(args),
        #[cfg(feature = "zmq")]
        "zmq" => floors::zmq_server(args),
        other => panic!("unknown role {other}"),
    }
}

/// Why the ZeroMQ references are not measured, if they are not.
fn zmq_skip_reason(opts: &Opts) -> Option<String> {
    if let Some(r) = &opts.zmq_skip {
        return Some(r.clone());
    }
    if !opts.with_zmq {
        return Some("not requested (run `cargo xtask bench echo --with-zmq`)".into());
    }
    if cfg!(feature = "zmq") {
        None
    } else {
        Some("this binary was built without the `zmq` feature (`cargo xtask bench --with-zmq` enables it)".into())
    }
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
    let zmq_skip = zmq_skip_reason(&opts);
    let plan: Vec<Who> =
        Who::ALL.into_iter().filter(|w| opts.wants(w.key())).filter(|w| !w.zmq() || zmq_skip.is_none()).collect();

    let mut results: Vec<Vec<Latency>> = plan.iter().map(|_| Vec::new()).collect();
    let total = plan.len() * opts.runs;
    for round in 0..opts.runs {
        for (i, who) in plan.iter().enumerate() {
            progress(round * plan.len() + i, total, &format!("echo {} (run {}/{})", who.label(), round + 1, opts.runs));
            let l = run(*who, &opts, &clock);
            if opts.verbose {
                eprintln!("{} run {round}: p50 {:.0} ns, p99 {:.0} ns, n {}", who.key(), l.p50, l.p99, l.count);
            }
            results[i].push(l);
        }
    }
    progress(total, total, "echo done");

    let mut med: Vec<(Who, Latency, common::Summary)> = Vec::new();
    for (who, runs) in plan.iter().zip(results) {
        let (l, s) = hist::median_run(runs);
        med.push((*who, l, s));
    }
    let find = |w: Who| med.iter().find(|(x, _, _)| *x == w).map(|(_, l, _)| l.clone());

    let mut report = Report::new("echo");
    for (who, l, s) in &med {
        let mut row = if who.ours() {
            Row::new(who.key(), who.label(), "ns", *s)
        } else {
            Row::reference(who.key(), who.label(), "ns", *s)
        };
        let refs: &[(Who, &str)] = match who {
            Who::Shm => &[(Who::FloorShm, "SHM floor"), (Who::Ring, "tcpshm-ring"), (Who::ZmqIpc, "ZeroMQ ipc")],
            Who::Tcp => &[(Who::FloorTcp, "TCP floor"), (Who::ZmqTcp, "ZeroMQ tcp")],
            Who::Unix => &[(Who::FloorUnix, "Unix floor"), (Who::ZmqIpc, "ZeroMQ ipc")],
            Who::Ring => &[(Who::FloorShm, "SHM floor")],
            _ => &[],
        };
        for (r, name) in refs {
            if let Some(rl) = find(*r) {
                row = row.ratio(&format!("{name} (p50)"), l.p50 / rl.p50);
                row = row.ratio(&format!("{name} (p99)"), l.p99 / rl.p99);
            }
        }
        match who {
            Who::Shm => {
                if let Some(f) = find(Who::FloorShm) {
                    row = row.goal("p50 <= 1.5x the SHM floor", l.p50 <= 1.5 * f.p50);
                }
            }
            Who::Tcp => {
                if let Some(f) = find(Who::FloorTcp) {
                    row = row.goal("p50 <= 1.05x the TCP floor", l.p50 <= 1.05 * f.p50);
                }
            }
            _ => {}
        }
        report.push(row.latency(l.clone()));
    }
    // The ZeroMQ goal, on rows of their own so each has one verdict.
    for (ours_w, zmq_w, name) in [(Who::Shm, Who::ZmqIpc, "ZeroMQ ipc"), (Who::Tcp, Who::ZmqTcp, "ZeroMQ tcp")] {
        if let (Some(o), Some(z)) = (find(ours_w), find(zmq_w)) {
            let s = common::Summary { median: z.p50 / o.p50, best: z.p50 / o.p50 };
            report.push(
                Row::new(
                    &format!("{}.vs_zmq", ours_w.key()),
                    &format!("{}: speed-up over {name} (p50)", ours_w.label()),
                    "x",
                    s,
                )
                .goal(">= 4x faster than ZeroMQ", s.median >= 4.0),
            );
        }
    }
    if let Some(why) = &zmq_skip {
        report.skip("ZeroMQ REQ/REP tcp:// and ipc://", why);
        report.skip("goal: SHM and TCP echo >= 4x faster than ZeroMQ", "ZeroMQ was not measured (see above)");
    }
    let clock_cost = clock.pair_cost_ns();
    report.push(Row::reference(
        "echo.clock_pair",
        "clock: two reads (in every RTT sample)",
        "ns",
        common::Summary { median: clock_cost, best: clock_cost },
    ));
    let (warm, span) = durations(&opts);
    report.note(&format!(
        "Each run: a fresh server process pinned to cpu {}, the client pinned to cpu {}; {} ms warm-up, then \
         round trips for {} ms; payloads of 16/36/68/200 bytes at random (the same sequence for every \
         contender), every echo checked. {} runs in interleaved rounds; the run with the median p50 is shown \
         with its whole distribution (HdrHistogram, 3 significant digits).",
        opts.cpus.1,
        opts.cpus.0,
        warm.as_millis(),
        span.as_millis(),
        opts.runs
    ));
    report.note(
        "Ratios are ours / reference on the median runs (p50 and p99). The SHM floor is one 256-byte slot \
         per direction published by a sequence number: the cost of moving the bytes between two cores and \
         back, nothing else.",
    );
    report.note(
        "tcpshm over a Unix socket is the TCP transport's engine (`StreamConnection<UnixStream>`) with the \
         login numbers exchanged by hand, as a user's Unix-socket transport would.",
    );
    report.finish(&opts);
}
