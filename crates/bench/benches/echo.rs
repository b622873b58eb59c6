//! Echo round-trip time, the reference's method: one message out, wait for its echo,
//! payload sizes drawn at random from 16/36/68/200 bytes, every echo checked byte for
//! byte. Each server side is a separate process (this binary re-executed in a role)
//! pinned to the second cpu; the client is this process, pinned to the first. The
//! servers stay up for the whole medium; the one not being measured is paused
//! (`SIGSTOP`), so exactly one server spins at a time.
//!
//! **Goals, judged in back-to-back pairs** (`tcpshm_bench::pairs`): ours and its floor
//! in a chain of short windows `F O F O ... F`; per pair the ratio at p50, p99, p99.9
//! (and p99.99, shown) of ours to the floor's two windows; pairs whose floor p50 moved
//! by more than 10% are discarded; the median over the kept pairs is judged:
//! * SHM through server and client ≤ 1.25x / 1.3x / 1.5x the shared-memory floor;
//! * TCP through server and client ≤ 1.03x / 1.1x / 1.2x the TCP floor.
//!
//! Beside them, for information (paired with their floors the same way): two
//! `tcpshm-ring` queues, tcpshm over a Unix socket against the bare Unix socket, and
//! ZeroMQ REQ/REP over tcp:// and ipc:// (`--with-zmq`, feature `zmq`).
//!
//! Then, for SHM and TCP: **system calls per round trip** of the server's polling
//! thread and of the client (kernel tracepoint counts over an exact window, names
//! from `strace -c`), and with `--trace-tail` (always in `--quick`, to exercise it)
//! **tail attribution**: what ran on each side during the slowest round trips
//! (`tcpshm_bench::tail`).
//!
//! `cargo xtask bench echo` runs it; `--quick` is a smoke run of a few seconds.

use hdrhistogram::Histogram;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use tcpshm_bench::child::{self, Child};
use tcpshm_bench::clock::{ticks, Clock};
use tcpshm_bench::common::{self, fmt_num, progress, Opts, Report, Row, Summary};
use tcpshm_bench::floors::{self, Ours, Pinger, RingPinger, Shared, SlotPinger, StreamPinger};
use tcpshm_bench::ours::{self, Echo};
use tcpshm_bench::pairs::{self, LatencyPairs, Turn, QUANTILES};
use tcpshm_bench::payload::{self, Payloads};
use tcpshm_bench::round_trips::measure;
use tcpshm_bench::scratch::{Scratch, ShmPrefix};
use tcpshm_bench::sys;
use tcpshm_bench::syscalls::{self, Strace};
use tcpshm_bench::tail::{self, ServerRecords};
use tcpshm_bench::tail::{TRACE_DUMP, TRACE_START};
use tcpshm_client::{Client, TransportKind};
use tcpshm_connection::Connection;

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
            Who::Unix => "tcpshm over a Unix socket (Connection<UnixStream>)",
            Who::FloorShm => "shared-memory floor (one slot per direction)",
            Who::Ring => "tcpshm-ring: two var queues in shared memory",
            Who::FloorTcp => "TCP floor (busy-poll loopback, TCP_NODELAY)",
            Who::FloorUnix => "Unix-socket floor (busy-poll)",
            Who::ZmqTcp => "ZeroMQ REQ/REP tcp://",
            Who::ZmqIpc => "ZeroMQ REQ/REP ipc://",
        }
    }

    /// Short name in tables.
    fn short(self) -> &'static str {
        match self {
            Who::Shm => "tcpshm SHM",
            Who::Tcp => "tcpshm TCP",
            Who::Unix => "tcpshm Unix",
            Who::FloorShm => "SHM floor",
            Who::Ring => "ring",
            Who::FloorTcp => "TCP floor",
            Who::FloorUnix => "Unix floor",
            Who::ZmqTcp => "ZeroMQ tcp",
            Who::ZmqIpc => "ZeroMQ ipc",
        }
    }

    fn ours(self) -> bool {
        matches!(self, Who::Shm | Who::Tcp | Who::Unix)
    }

    /// The shared-memory contenders run shorter windows (their round trips are 30x
    /// shorter: a window holds millions of them).
    fn shm_like(self) -> bool {
        matches!(self, Who::Shm | Who::FloorShm | Who::Ring)
    }
}

/// A chain of pairs: the contender, its floor, and the goal's limits at p50 / p99 /
/// p99.9 (none: for information).
struct Plan {
    ours: Who,
    floor: Who,
    goal: Option<[f64; 3]>,
}

const PLANS: [Plan; 6] = [
    Plan { ours: Who::Shm, floor: Who::FloorShm, goal: Some([1.25, 1.3, 1.5]) },
    Plan { ours: Who::Tcp, floor: Who::FloorTcp, goal: Some([1.03, 1.1, 1.2]) },
    Plan { ours: Who::Ring, floor: Who::FloorShm, goal: None },
    Plan { ours: Who::Unix, floor: Who::FloorUnix, goal: None },
    Plan { ours: Who::ZmqTcp, floor: Who::FloorTcp, goal: None },
    Plan { ours: Who::ZmqIpc, floor: Who::FloorUnix, goal: None },
];

/// Warm-up (not recorded) and measured time of one window.
fn durations(opts: &Opts, who: Who) -> (Duration, Duration) {
    match (opts.quick, who.shm_like()) {
        (true, _) => (Duration::from_millis(10), Duration::from_millis(40)),
        (false, true) => (Duration::from_millis(50), Duration::from_millis(300)),
        (false, false) => (Duration::from_millis(100), Duration::from_millis(1000)),
    }
}

/// Pairs of a chain.
fn pair_count(opts: &Opts, goal: bool) -> usize {
    match (opts.runs_given, opts.quick, goal) {
        (Some(n), _, true) => n.max(1),
        (_, true, true) => 2,
        (_, true, false) => 1,
        (_, false, true) => 12,
        (_, false, false) => 4,
    }
}

/// The client side of a contender.
enum Pingers {
    Client(Box<Ours<Client>>),
    Unix(Box<Ours<Connection<UnixStream>>>),
    Slot(SlotPinger),
    Ring(RingPinger),
    Tcp(StreamPinger<std::net::TcpStream>),
    UnixFloor(StreamPinger<UnixStream>),
    #[cfg(feature = "zmq")]
    Zmq(floors::ZmqPinger),
}

/// A contender ready to measure: its server process (paused between windows) and its
/// client side.
struct Live {
    pinger: Pingers,
    child: Child,
    /// The next payload number (continues across windows).
    seq: u64,
    gen: Payloads,
    _dir: Scratch,
    _shm: ShmPrefix,
}

/// Round trips for `span` without recording (a window whose system calls are counted).
fn spin<P: Pinger>(p: &mut P, gen: &mut Payloads, seq: &mut u64, clock: &Clock, span: Duration) -> u64 {
    let mut buf = [0u8; payload::MAX];
    let start = ticks();
    let span_ticks = clock.ticks_in(span.as_nanos() as f64);
    let mut n = 0u64;
    while ticks() - start < span_ticks {
        for _ in 0..64 {
            let len = gen.next(*seq, &mut buf);
            *seq += 1;
            assert!(p.ping(&buf[..len], clock.at(ticks())), "echo {seq} came back corrupt");
        }
        n += 64;
    }
    n
}

impl Live {
    fn start(who: Who, opts: &Opts, clock: &Clock) -> Live {
        let cpu = opts.cpus.1;
        let dir = Scratch::new("echo");
        let shm = ShmPrefix::new();
        let (child, pinger) = match who {
            Who::Shm | Who::Tcp => {
                let mut child = Child::spawn(
                    "ours",
                    cpu,
                    &["--storage".into(), dir.join("server"), "--shm-prefix".into(), shm.as_str().into()],
                );
                let addr = child.expect("ready").parse().expect("server address");
                let kind = if who == Who::Shm { TransportKind::Shm } else { TransportKind::Tcp };
                let cfg = ours::client_config("bench", &dir.path().join("client"), shm.as_str(), 1 << 20, 64 * 1024);
                (child, Pingers::Client(Box::new(Ours(ours::connect(cfg, addr, kind, clock)))))
            }
            Who::Unix => {
                let sock = dir.join("echo.sock");
                let mut child = Child::spawn(
                    "ours-unix",
                    cpu,
                    &["--path".into(), sock.clone(), "--storage".into(), dir.join("server")],
                );
                child.expect("ready");
                (child, Pingers::Unix(Box::new(Ours(ours::unix_client(&sock, &dir.path().join("client"), clock)))))
            }
            Who::FloorShm | Who::Ring => {
                let file = shm.file("floor");
                let mut sh = Shared::create(&file, floors::shared_len());
                if who == Who::Ring {
                    floors::ring_init(&mut sh);
                }
                let role = if who == Who::Ring { "ring" } else { "slot" };
                let mut child = Child::spawn(role, cpu, &["--file".into(), file.display().to_string()]);
                child.expect("ready");
                let p = if who == Who::Ring {
                    Pingers::Ring(RingPinger::new(sh))
                } else {
                    Pingers::Slot(SlotPinger::new(sh))
                };
                (child, p)
            }
            Who::FloorTcp => {
                let mut child = Child::spawn("tcp", cpu, &[]);
                let addr = child.expect("ready");
                (child, Pingers::Tcp(StreamPinger::new(floors::tcp_connect(&addr))))
            }
            Who::FloorUnix => {
                let sock = dir.join("floor.sock");
                let mut child = Child::spawn("unix", cpu, &["--path".into(), sock.clone()]);
                child.expect("ready");
                (child, Pingers::UnixFloor(StreamPinger::new(floors::unix_connect(&sock))))
            }
            Who::ZmqTcp | Who::ZmqIpc => zmq_start(who, &dir, cpu),
        };
        let mut live = Live { pinger, child, seq: 0, gen: Payloads::new(), _dir: dir, _shm: shm };
        live.child.stop();
        live
    }

    /// One window: the server resumed, `warm` then `span` of round trips, paused again.
    fn window(&mut self, clock: &Clock, warm: Duration, span: Duration) -> Histogram<u64> {
        self.child.resume();
        let (g, s) = (&mut self.gen, &mut self.seq);
        let h = match &mut self.pinger {
            Pingers::Client(p) => measure(&mut **p, g, s, clock, warm, span),
            Pingers::Unix(p) => measure(&mut **p, g, s, clock, warm, span),
            Pingers::Slot(p) => measure(p, g, s, clock, warm, span),
            Pingers::Ring(p) => measure(p, g, s, clock, warm, span),
            Pingers::Tcp(p) => measure(p, g, s, clock, warm, span),
            Pingers::UnixFloor(p) => measure(p, g, s, clock, warm, span),
            #[cfg(feature = "zmq")]
            Pingers::Zmq(p) => measure(p, g, s, clock, warm, span),
        };
        self.child.stop();
        h
    }
}

#[cfg(feature = "zmq")]
fn zmq_start(who: Who, dir: &Scratch, cpu: usize) -> (Child, Pingers) {
    let endpoint =
        if who == Who::ZmqTcp { "tcp://127.0.0.1:*".to_string() } else { format!("ipc://{}", dir.join("zmq.ipc")) };
    let mut child = Child::spawn("zmq", cpu, &["--endpoint".into(), endpoint]);
    let bound = child.expect("ready");
    (child, Pingers::Zmq(floors::ZmqPinger::new(&bound)))
}

#[cfg(not(feature = "zmq"))]
fn zmq_start(_: Who, _: &Scratch, _: usize) -> (Child, Pingers) {
    unreachable!("ZeroMQ contenders are only planned with the `zmq` feature")
}

/// The child roles of this binary.
fn role(name: &str, args: &[String]) {
    child::become_child(args);
    let clock = || Clock::calibrate(Duration::from_millis(5));
    let server_cfg = || {
        let storage = child::arg(args, "--storage").expect("--storage");
        let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
        ours::server_config(std::path::Path::new(storage), prefix, 1 << 20, 64 * 1024)
    };
    match name {
        "ours" => ours::serve(server_cfg(), vec![Echo], clock()),
        "ours-traced" => ours::serve_traced(server_cfg(), clock(), args),
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

/// Involuntary context switches of the server and of this thread over a window.
#[derive(Debug, Default, Clone, Copy)]
struct Switches {
    server: u64,
    client: u64,
    windows: u64,
}

fn switches_now(pid: u32) -> (u64, u64) {
    let (me, tid) = sys::this_task();
    (sys::involuntary_switches(pid, pid).unwrap_or(0), sys::involuntary_switches(me, tid).unwrap_or(0))
}

/// Result of one plan.
struct Judged {
    plan: &'static Plan,
    pairs: LatencyPairs,
    /// Involuntary switches over ours' windows, and over the floor's.
    ours_switches: Switches,
    floor_switches: Switches,
}

fn run_plan(plan: &'static Plan, opts: &Opts, clock: &Clock, step: &mut usize, total: usize) -> Judged {
    let n = pair_count(opts, plan.goal.is_some());
    let mut floor = Live::start(plan.floor, opts, clock);
    let mut mine = Live::start(plan.ours, opts, clock);
    let (fw, fs) = durations(opts, plan.floor);
    let (ow, os) = durations(opts, plan.ours);
    let mut sw = (Switches::default(), Switches::default());
    let (refs, ours) = pairs::chain(n, |turn, i| {
        let (live, (warm, span), s, what) = match turn {
            Turn::Reference => (
                &mut floor,
                (fw, fs),
                &mut sw.1,
                format!("echo {} window {}/{} (pairs with {})", plan.floor.short(), i + 1, n + 1, plan.ours.short()),
            ),
            Turn::Ours => {
                (&mut mine, (ow, os), &mut sw.0, format!("echo {} window {}/{}", plan.ours.short(), i + 1, n))
            }
        };
        progress(*step, total, &what);
        *step += 1;
        let a = switches_now(live.child.pid());
        let h = live.window(clock, warm, span);
        let b = switches_now(live.child.pid());
        s.server += b.0 - a.0;
        s.client += b.1 - a.1;
        s.windows += 1;
        h
    });
    let pairs = LatencyPairs::judge(&refs, &ours);
    if opts.verbose {
        eprintln!("{}", pairs.markdown(plan.ours.short(), plan.floor.short()));
    }
    Judged { plan, pairs, ours_switches: sw.0, floor_switches: sw.1 }
}

/// System calls of ours (SHM or TCP): the exact count per round trip, and the names.
struct Calls {
    per: Result<syscalls::PerMessage, String>,
    names_server: Result<std::collections::BTreeMap<String, u64>, String>,
    names_client: Result<std::collections::BTreeMap<String, u64>, String>,
    strace_rts: u64,
}

fn count_calls(who: Who, opts: &Opts, clock: &Clock) -> Calls {
    let mut live = Live::start(who, opts, clock);
    let span = if opts.quick { Duration::from_millis(50) } else { Duration::from_millis(1000) };
    live.child.resume();
    let pid = live.child.pid();
    let (g, s) = (&mut live.gen, &mut live.seq);
    let c: &mut Ours<Client> = match &mut live.pinger {
        Pingers::Client(c) => c,
        _ => unreachable!("ours"),
    };
    // Warm up, then count exactly.
    spin(c, g, s, clock, span / 4);
    let per = syscalls::count(pid, || spin(c, g, s, clock, span));
    // The names, in a window of their own (strace slows the calls it sees).
    let dir = Scratch::new("strace");
    let names = |target: u32, file: &str, c: &mut Ours<Client>, g: &mut Payloads, s: &mut u64| {
        let own = target == std::process::id();
        let st = Strace::attach(target, !own, &dir.path().join(file))?;
        let n = spin(c, g, s, clock, span / 2);
        st.finish(own).map(|m| (m, n))
    };
    let server = names(pid, "server", c, g, s);
    let client = names(std::process::id(), "client", c, g, s);
    let strace_rts = server.as_ref().map(|(_, n)| *n).unwrap_or(0);
    live.child.stop();
    Calls { per, names_server: server.map(|(m, _)| m), names_client: client.map(|(m, _)| m), strace_rts }
}

/// Tail attribution of ours (SHM or TCP).
fn trace_tail(who: Who, opts: &Opts, clock: &Clock) -> Result<tail::Attribution, String> {
    let dir = Scratch::new("trace");
    let shm = ShmPrefix::new();
    // A server iteration longer than this is recorded: over shared memory a quarter
    // of the floor's round trip in the slower machine state (an epoll_wait, a
    // recvfrom are longer); over TCP a fraction of the round trip.
    let slow_ns: f64 = if who == Who::Shm { 400.0 } else { 5_000.0 };
    let file = dir.join("server.trace");
    let mut child = Child::spawn(
        "ours-traced",
        opts.cpus.1,
        &[
            "--storage".into(),
            dir.join("server"),
            "--shm-prefix".into(),
            shm.as_str().into(),
            "--trace".into(),
            file.clone(),
            "--slow-ns".into(),
            slow_ns.to_string(),
        ],
    );
    let addr = child.expect("ready").parse().expect("server address");
    let kind = if who == Who::Shm { TransportKind::Shm } else { TransportKind::Tcp };
    let cfg = ours::client_config("traced", &dir.path().join("client"), shm.as_str(), 1 << 20, 64 * 1024);
    let mut c = ours::connect(cfg, addr, kind, clock);
    let mut gen = Payloads::new();
    let mut buf = [0u8; payload::MAX];
    let mut seq = 0u64;
    let (warm, span) = if opts.quick {
        (Duration::from_millis(20), Duration::from_millis(100))
    } else {
        (Duration::from_millis(300), Duration::from_millis(if who == Who::Shm { 1500 } else { 3000 }))
    };
    let t = ticks();
    while clock.ns(ticks() - t) < warm.as_nanos() as f64 {
        let len = gen.next(seq, &mut buf);
        seq += 1;
        assert!(ours::ping(&mut c, &buf[..len], clock.now_ns()));
    }
    assert!(ours::ping_typed(&mut c, TRACE_START, b"", clock.now_ns()));
    let first = seq;
    let slow_ticks = clock.ticks_in(slow_ns);
    let mut looks = tail::Looks::this_thread();
    // Every page touched before the window: no page fault inside it.
    let mut rts = vec![tail::Rt::default(); tail::HANDLED_SLOTS];
    rts.clear();
    let t = ticks();
    let span_ticks = clock.ticks_in(span.as_nanos() as f64);
    while ticks() - t < span_ticks && rts.len() < tail::HANDLED_SLOTS - 1 {
        let len = gen.next(seq, &mut buf);
        let (ok, rt) = tail::traced_ping(&mut c, &buf[..len], seq, clock, slow_ticks, &mut looks);
        assert!(ok, "echo {seq} came back corrupt");
        rts.push(rt);
        seq += 1;
    }
    let last = seq - 1;
    let mut cmd = [0u8; 16];
    cmd[..8].copy_from_slice(&first.to_le_bytes());
    cmd[8..].copy_from_slice(&last.to_le_bytes());
    assert!(ours::ping_typed(&mut c, TRACE_DUMP, &cmd, clock.now_ns()));
    child.expect("dumped");
    let records = ServerRecords::read(std::path::Path::new(&file)).map_err(|e| format!("reading the trace: {e}"))?;
    Ok(tail::attribute(&rts, &records, clock, slow_ns))
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
    let plans: Vec<&'static Plan> = PLANS
        .iter()
        .filter(|p| opts.wants(p.ours.key()))
        .filter(|p| !matches!(p.ours, Who::ZmqTcp | Who::ZmqIpc) || zmq_skip.is_none())
        .collect();
    let traced: Vec<Who> = [Who::Shm, Who::Tcp].into_iter().filter(|w| plans.iter().any(|p| p.ours == *w)).collect();
    let trace = opts.trace_tail || opts.quick;
    let total = plans.iter().map(|p| 2 * pair_count(&opts, p.goal.is_some()) + 1).sum::<usize>()
        + traced.len() * (1 + usize::from(trace));
    let mut step = 0;
    let mut report = Report::new("echo");
    let mut data_pairs = serde_json::Map::new();
    let mut judged: Vec<Judged> = Vec::new();
    for plan in &plans {
        judged.push(run_plan(plan, &opts, &clock, &mut step, total));
    }

    // Rows: per plan, ours (judged) and its floor.
    for j in &judged {
        let (o, f) = (j.plan.ours, j.plan.floor);
        let p = &j.pairs;
        let rep = p.representative.map(|i| &p.pairs[i]);
        let best = |k: bool| {
            p.pairs
                .iter()
                .filter(|x| x.kept)
                .map(|x| if k { x.ours.p50 } else { x.reference.p50 })
                .fold(f64::NAN, f64::min)
        };
        let sum = Summary { median: p.median_ours(0), best: best(true) };
        let mut row = if o.ours() {
            Row::new(o.key(), o.label(), "ns", sum)
        } else {
            Row::reference(o.key(), o.label(), "ns", sum)
        };
        for (k, (_, name, _)) in QUANTILES.iter().enumerate() {
            row = row.ratio(&format!("{} ({name}, median of pairs)", f.short()), p.median[k]);
        }
        if let Some(limits) = j.plan.goal {
            for (k, lim) in limits.iter().enumerate() {
                row = row.check(&format!("{} / {}", QUANTILES[k].1, f.short()), p.median[k], *lim, false);
            }
        }
        row = row
            .param("pairs_kept", (p.pairs.len() - p.discarded()) as f64)
            .param("pairs_discarded", p.discarded() as f64);
        if let Some(r) = rep {
            row = row.latency(r.ours.clone());
        }
        report.push(row);
        // The floor's row once (several plans share a floor: the first one shows it).
        if !report.rows.iter().any(|r| r.key == f.key()) {
            let fsum = Summary { median: p.median_reference(0), best: best(false) };
            let mut frow = Row::reference(f.key(), f.label(), "ns", fsum);
            if let Some(r) = rep {
                frow = frow.latency(r.reference.clone());
            }
            report.push(frow);
        }
        data_pairs.insert(o.key().to_string(), p.json());
        let per_w = |s: Switches| s.server as f64 / s.windows.max(1) as f64;
        report.section(
            &format!("{} against the {} in pairs", o.label(), f.short()),
            format!(
                "{}\n{}Involuntary context switches per window: {} server {:.1}, client {:.1}; {} server {:.1}, \
                 client {:.1}.\n",
                p.markdown(o.short(), f.short()),
                p.states_markdown(f.short()),
                o.short(),
                per_w(j.ours_switches),
                j.ours_switches.client as f64 / j.ours_switches.windows.max(1) as f64,
                f.short(),
                per_w(j.floor_switches),
                j.floor_switches.client as f64 / j.floor_switches.windows.max(1) as f64,
            ),
        );
    }
    // ZeroMQ against ours, through the floors both were paired with.
    for (zmq, mine) in [(Who::ZmqTcp, Who::Tcp), (Who::ZmqIpc, Who::Unix)] {
        let r = |w: Who| judged.iter().find(|j| j.plan.ours == w).map(|j| j.pairs.median[0]);
        if let (Some(z), Some(o)) = (r(zmq), r(mine)) {
            let x = z / o;
            report.push(
                Row::new(
                    &format!("{}.vs_zmq", mine.key()),
                    &format!("{}: speed-up over {} (p50, via the floor)", mine.label(), zmq.short()),
                    "x",
                    Summary { median: x, best: x },
                )
                .check("speed-up over ZeroMQ", x, 4.0, true),
            );
        }
    }
    report.data("pairs", serde_json::Value::Object(data_pairs));
    if let Some(why) = &zmq_skip {
        report.skip("ZeroMQ REQ/REP tcp:// and ipc://", why);
    }

    // System calls per round trip.
    let mut calls_md = String::from(
        "| transport | round trips counted (per s) | server calls / RT (per s) | client calls / RT (per s) | server \
         calls by name (strace, separate window) | client calls by name |\n|---|---:|---:|---:|---|---|\n",
    );
    let mut calls_json = serde_json::Map::new();
    for &w in &traced {
        progress(step, total, &format!("echo {}: counting system calls", w.short()));
        step += 1;
        let c = count_calls(w, &opts, &clock);
        let names = |r: &Result<std::collections::BTreeMap<String, u64>, String>| match r {
            Ok(m) => syscalls::names_text(m),
            Err(e) => format!("not measured: {e}"),
        };
        match &c.per {
            Ok(per) => {
                calls_md.push_str(&format!(
                    "| {} | {} ({}) | {:.4} ({}) | {:.4} ({}) | {} | {} |\n",
                    w.short(),
                    per.messages,
                    fmt_num(per.rate()),
                    per.server_per(),
                    fmt_num(per.server as f64 / per.secs),
                    per.client_per(),
                    fmt_num(per.client as f64 / per.secs),
                    names(&c.names_server),
                    names(&c.names_client)
                ));
                let sum = Summary { median: per.server_per(), best: per.server_per() };
                let csum = Summary { median: per.client_per(), best: per.client_per() };
                let mut row = Row::new(
                    &format!("{}.syscalls", w.key()),
                    &format!("{}: system calls per round trip, server (client beside)", w.short()),
                    "calls/RT",
                    sum,
                )
                .also(csum, "client calls/RT");
                if w == Who::Shm {
                    row = row.check("server calls per RT", per.server_per(), 0.01, false).check(
                        "client calls per RT",
                        per.client_per(),
                        0.01,
                        false,
                    );
                }
                report.push(row);
            }
            Err(e) => {
                calls_md.push_str(&format!(
                    "| {} | not measured: {e} | | | {} | {} |\n",
                    w.short(),
                    names(&c.names_server),
                    names(&c.names_client)
                ));
                report.skip(&format!("{}: system calls per round trip", w.short()), e);
            }
        }
        calls_json.insert(
            w.key().to_string(),
            serde_json::json!({
                "round_trips": c.per.as_ref().map(|p| p.messages).ok(),
                "server_calls": c.per.as_ref().map(|p| p.server).ok(),
                "client_calls": c.per.as_ref().map(|p| p.client).ok(),
                "server_per_rt": c.per.as_ref().map(|p| p.server_per()).ok(),
                "client_per_rt": c.per.as_ref().map(|p| p.client_per()).ok(),
                "seconds": c.per.as_ref().map(|p| p.secs).ok(),
                "not_measured": c.per.as_ref().err(),
                "strace_round_trips": c.strace_rts,
                "server_names": c.names_server.as_ref().ok(),
                "client_names": c.names_client.as_ref().ok(),
                "names_not_measured": c.names_server.as_ref().err(),
            }),
        );
    }
    if !traced.is_empty() {
        report.section("System calls per round trip", calls_md);
        report.data("syscalls", serde_json::Value::Object(calls_json));
    }

    // Tail attribution.
    if trace {
        let mut md = String::new();
        let mut js = serde_json::Map::new();
        for &w in &traced {
            progress(step, total, &format!("echo {}: tracing the tail", w.short()));
            step += 1;
            match trace_tail(w, &opts, &clock) {
                Ok(a) => {
                    md.push_str(&a.markdown(w.label()));
                    md.push('\n');
                    js.insert(w.key().to_string(), a.json());
                }
                Err(e) => {
                    md.push_str(&format!("{}: not measured: {e}\n\n", w.label()));
                    report.skip(&format!("{}: tail attribution", w.short()), &e);
                }
            }
        }
        md.push_str(
            "Each slow round trip is charged to the longest stretch found on the side that took its excess (the \
             way out: client push to server handler; the way back: handler to client front), with the system \
             calls that ran in it: `epoll_wait` is a readiness check (the group's or the control part's), \
             `recvfrom` a control-stream read (the SHM control check), `sendto`/`write` a heartbeat or an ack, \
             `fcntl` the peer-liveness lock check; \"no system call\" inside a slow Group::poll is user-space \
             work (timer slice, login inbox, dispatch) that only library work counters can split further. The \
             instrumented loops read the clock around every poll and look (one read of kernel counters) after \
             slow stretches, so these windows run a little slower than the judged ones: their figures are for \
             attribution only.\n",
        );
        report.section("Tail attribution (`--trace-tail`)", md);
        report.data("tail", serde_json::Value::Object(js));
    } else {
        report.skip("tail attribution", "not requested (run `cargo xtask bench echo --trace-tail`)");
    }
    progress(total, total, "echo done");

    let clock_cost = clock.pair_cost_ns();
    report.push(Row::reference(
        "echo.clock_pair",
        "clock: two reads (in every RTT sample)",
        "ns",
        Summary { median: clock_cost, best: clock_cost },
    ));
    let (sw, ss) = durations(&opts, Who::Shm);
    let (tw, ts) = durations(&opts, Who::Tcp);
    report.note(&format!(
        "Pairs: each contender's server is a separate process pinned to cpu {}, the client this process on cpu \
         {}; all servers of a medium stay up and all but the measured one are paused (SIGSTOP). A chain of \
         windows F O F O ... F (floor, ours), each window a warm-up then round trips for a fixed time (SHM: {} \
         + {} ms, TCP and Unix: {} + {} ms); each O is a pair with the F before and after it. Ratios are ours \
         over the floor's two windows merged, at p50, p99, p99.9 and p99.99; a pair is discarded when the \
         floor's p50 before and after differ by more than {:.0}% of the smaller (the machine changed speed \
         within the pair). Rows show the median over the kept pairs (value: ours' p50; best: the lowest p50 \
         of a kept pair) and the distributions of the pair whose p50 ratio is the median. Goals are judged on \
         the median ratios at p50, p99 and p99.9: a miss at any one is a miss.",
        opts.cpus.1,
        opts.cpus.0,
        sw.as_millis(),
        ss.as_millis(),
        tw.as_millis(),
        ts.as_millis(),
        pairs::MOVE_LIMIT * 100.0,
    ));
    report.note(
        "Payloads of 16/36/68/200 bytes at random (the same sequence for every contender), every echo checked. \
         The SHM floor is one 256-byte slot per direction published by a sequence number: the cost of moving \
         the bytes between two cores and back, nothing else. Each sample includes two clock reads (the \
         `clock` row).",
    );
    report.note(
        "System calls: the kernel's raw_syscalls:sys_enter tracepoint counted (perf_event_open) on the server's \
         polling thread and on the client thread over an exact window of round trips at full speed; names from \
         `strace -c -p` in a separate window (strace slows every call it sees, so its counts are for the \
         names). The goal for SHM: at most one call per 100 round trips on each side (no call per message).",
    );
    report.finish(&opts);
}
