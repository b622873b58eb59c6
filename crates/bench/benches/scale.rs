//! Scale: does one connection's echo round trip stay fast while the server holds
//! many others? Three processes: the server (this binary in the `server` role, one
//! group, pinned to the second cpu), a crowd (the `crowd` role, on the first cpu:
//! other clients, logged in over TCP, idle — they poll only every 2 s — or sending at
//! a fixed rate), and the measuring client (this process, first cpu), which runs the
//! echo benchmark's method over TCP (16/36/68/200-byte payloads, every echo checked).
//!
//! * RTT with 0, 100, 1,000 and 10,000 idle connections (quick: 0 and 100): per case
//!   a fresh server, the measuring client's RTT alone first, then with the crowd
//!   connected; the ratio of the two is the case's verdict (seconds apart, so the
//!   drift of a shared machine between cases stays out of it). The descriptor limit
//!   is raised as needed (`RLIMIT_NOFILE`); the crowd is split over as many processes
//!   as the limit needs (2 descriptors per client); if the server's limit (2 per
//!   connection) cannot be raised far enough, the largest count it can hold is used
//!   and the report says why. Goal: the 10,000-idle p50 within 1.2x of the p50 alone.
//! * RTT while 10 and 100 other clients each send 1,000 messages/s (echoed).
//! * Aggregate echo throughput with 1..64 active clients (this process, one thread,
//!   each client keeping 16 messages of 64 B in flight) against a server of 1 and of 2
//!   groups (2 groups: two server threads, not pinned — with the clients' thread that
//!   is three busy threads on this machine's cpus; the report says how many there are).
//!
//! `cargo xtask bench scale` runs it; `--quick` is a smoke run of a few seconds.

mod common;
mod support;

use common::{progress, Latency, Opts, Report, Row, Summary};
use std::time::{Duration, Instant};
use support::child::{self, Child, Orphan};
use support::clock::{ticks, Clock};
use support::floors::{Ours, Pinger};
use support::hist;
use support::ours::{self, Echo, DATA};
use support::payload::{self, Payloads};
use support::{raise_nofile, Scratch, ShmPrefix};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;

/// Server-side queue bytes per connection, and the largest message.
const SERVER_QUEUE: usize = 16 * 1024;
const CLIENT_QUEUE: usize = 16 * 1024;
const MAX_MESSAGE: usize = 1024;
/// Messages/s each sender of the crowd sends.
const RATE: u64 = 1000;
/// Messages in flight per client in the throughput test.
const WINDOW: usize = 16;
/// Payload of the throughput test.
const TPUT_BYTES: usize = 64;
/// How often the crowd polls its idle clients (heartbeats), and their heartbeat.
const IDLE_POLL: Duration = Duration::from_secs(2);

fn idle_counts(opts: &Opts) -> Vec<usize> {
    if opts.quick {
        vec![0, 100]
    } else {
        vec![0, 100, 1000, 10_000]
    }
}

fn active_counts(opts: &Opts) -> Vec<usize> {
    if opts.quick {
        vec![10]
    } else {
        vec![10, 100]
    }
}

fn client_counts(opts: &Opts) -> Vec<usize> {
    if opts.quick {
        vec![1, 4]
    } else {
        vec![1, 2, 4, 8, 16, 32, 64]
    }
}

/// Measured time of one RTT window, and of one throughput window.
fn spans(opts: &Opts) -> (Duration, Duration) {
    if opts.quick {
        (Duration::from_millis(80), Duration::from_millis(80))
    } else {
        (Duration::from_millis(1000), Duration::from_millis(500))
    }
}

fn client_cfg(name: &str, dir: &std::path::Path, heartbeat: Duration) -> tcpshm_client::ClientConfig {
    let mut cfg = ours::client_config(name, dir, "unused-", CLIENT_QUEUE, MAX_MESSAGE);
    cfg.heartbeat_interval = heartbeat.as_nanos() as u64;
    // Long: the measuring client is not polled while a crowd of 10,000 connects.
    cfg.connection_timeout = 600_000_000_000;
    cfg
}

/// Round trips for `span` (after a short warm-up) on `c`.
fn rtt<P: Pinger>(p: &mut P, clock: &Clock, span: Duration) -> Latency {
    let mut gen = Payloads::new();
    let mut buf = [0u8; payload::MAX];
    let mut h = hist::new_hist();
    let mut seq = 0u64;
    let warm = Instant::now();
    while warm.elapsed() < span / 10 {
        let len = gen.next(seq, &mut buf);
        seq += 1;
        assert!(p.ping(&buf[..len], clock.now_ns()), "echo {seq} came back corrupt");
    }
    let start = ticks();
    loop {
        let mut t0 = 0;
        for _ in 0..64 {
            let len = gen.next(seq, &mut buf);
            seq += 1;
            t0 = ticks();
            let ok = p.ping(&buf[..len], clock.at(t0));
            let t1 = ticks();
            assert!(ok, "echo {seq} came back corrupt");
            hist::record(&mut h, clock.ns(t1 - t0));
        }
        if clock.ns(t0 - start) >= span.as_nanos() as f64 {
            break;
        }
    }
    hist::latency(&h)
}

/// Descriptors one client of the crowd holds, and one server-side TCP connection
/// (the socket and the session store's file; a store does not keep its directory
/// open).
const FDS_PER_CLIENT: u64 = 2;
const FDS_PER_CONN: u64 = 2;
/// Descriptors kept free for everything else in a process.
const FDS_SPARE: u64 = 64;

/// A server (started by [`server`]) and, once [`Setup::crowd`] ran, crowds of other
/// clients.
struct Setup {
    _dir: Scratch,
    _shm: ShmPrefix,
    _server: Child,
    crowds: Vec<Child>,
    addr: std::net::SocketAddr,
    /// Descriptor limit of every process here (after raising it as far as allowed),
    /// and why it is below what was wanted, if so.
    nofile: u64,
    nofile_short: Option<String>,
}

/// A fresh server of `groups` groups, able to hold `conns` connections if the
/// descriptor limit allows.
fn server(opts: &Opts, groups: usize, conns: usize) -> Setup {
    // The stores of thousands of sessions on tmpfs: creating each is crash-safe
    // (synced), which on a disk would make the setup take minutes; the hot path does
    // not touch the disk either way (Durability::Process).
    let shm_dir = std::path::Path::new("/dev/shm");
    let dir = if shm_dir.is_dir() { Scratch::in_dir(shm_dir, "tcpshm-scale") } else { Scratch::new("scale") };
    let shm = ShmPrefix::new();
    let want = FDS_PER_CONN * conns as u64 + 1024;
    // Raise this process's limit first: children inherit it, and it tells how far
    // they can go (raising the hard limit needs CAP_SYS_RESOURCE).
    let (nofile, nofile_short) = raise_nofile(want);
    let mut server = Child::spawn(
        "server",
        opts.cpus.1,
        &[
            "--storage".into(),
            dir.path().join("server").display().to_string(),
            "--shm-prefix".into(),
            shm.as_str().into(),
            "--groups".into(),
            groups.to_string(),
            "--fds".into(),
            want.to_string(),
        ],
    );
    let addr: std::net::SocketAddr = server.expect("ready").parse().expect("address");
    Setup { _dir: dir, _shm: shm, _server: server, crowds: Vec::new(), addr, nofile, nofile_short }
}

impl Setup {
    /// Connects `idle` idle clients and `active` senders (in as many crowd processes
    /// as the descriptor limit needs), leaving the server room for the measuring
    /// client. Returns how many connected and, if fewer, why.
    fn crowd(&mut self, opts: &Opts, idle: usize, active: usize) -> (usize, Option<String>) {
        let server_room = ((self.nofile.saturating_sub(FDS_SPARE)) / FDS_PER_CONN).saturating_sub(8) as usize;
        let mut why = None;
        let mut idle_left = idle;
        if idle + active > server_room {
            idle_left = server_room.saturating_sub(active);
            why = Some(format!(
                "the server holds {FDS_PER_CONN} descriptors per TCP connection (socket and store file) and \
                 RLIMIT_NOFILE is {}: {}",
                self.nofile,
                self.nofile_short.clone().unwrap_or_else(|| "it could not be raised".into())
            ));
        }
        let per_process = ((self.nofile.saturating_sub(FDS_SPARE)) / FDS_PER_CLIENT).max(1) as usize;
        let mut active_left = active;
        let mut reached = 0;
        let mut n = 0;
        while idle_left + active_left > 0 {
            let a = active_left.min(per_process);
            let i = idle_left.min(per_process - a);
            active_left -= a;
            idle_left -= i;
            let mut crowd = Child::spawn(
                "crowd",
                opts.cpus.0,
                &[
                    "--addr".into(),
                    self.addr.to_string(),
                    "--storage".into(),
                    self._dir.path().join(format!("crowd{n}")).display().to_string(),
                    "--idle".into(),
                    i.to_string(),
                    "--active".into(),
                    a.to_string(),
                    "--fds".into(),
                    (FDS_PER_CLIENT * (i + a) as u64 + FDS_SPARE).to_string(),
                    "--first".into(),
                    reached.to_string(),
                ],
            );
            n += 1;
            let answer = crowd.expect("ready");
            let (got, short) = answer.split_once(' ').unwrap_or((&answer, ""));
            let got: usize = got.parse().expect("crowd count");
            reached += got;
            self.crowds.push(crowd);
            if got < i + a {
                why.get_or_insert(short.to_string());
                break;
            }
        }
        (reached, why)
    }
}

/// The server role: `--groups G --fds N --storage DIR --shm-prefix P`.
fn server_role(args: &[String]) -> ! {
    let groups: usize = child::parsed(args, "--groups");
    let fds: u64 = child::parsed(args, "--fds");
    if let (_, Some(why)) = raise_nofile(fds) {
        eprintln!("scale server: {why}");
    }
    if groups > 1 {
        // The groups' threads spread over every cpu (the crowd and clients share them).
        let mut set = rustix::thread::CpuSet::new();
        for c in support::online_cpus() {
            set.set(c);
        }
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
    let clock = Clock::calibrate(Duration::from_millis(5));
    let storage = child::arg(args, "--storage").expect("--storage");
    let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
    let mut cfg = ours::server_config(std::path::Path::new(storage), prefix, SERVER_QUEUE, MAX_MESSAGE);
    cfg.max_connections = 100_000;
    // Long: the measuring client is not polled while a crowd of 10,000 connects.
    cfg.connection_timeout = 600_000_000_000;
    cfg.enable_shm = false;
    ours::serve(cfg, vec![Echo; groups], clock)
}

/// The crowd role: `--addr A --idle M --active K --fds N --storage DIR --first F`
/// (F numbers the clients' names across crowds). Connects
/// M + K clients (stopping early, with the reason, at a limit), announces
/// `ready COUNT [why fewer]`, then: the K senders each send `RATE` messages/s (and
/// pop their echoes) on a 1 ms tick; the idle ones are polled every `IDLE_POLL`.
fn crowd_role(args: &[String]) {
    let clock = Clock::calibrate(Duration::from_millis(5));
    let addr: std::net::SocketAddr = child::parsed(args, "--addr");
    let idle: usize = child::parsed(args, "--idle");
    let active: usize = child::parsed(args, "--active");
    let fds: u64 = child::parsed(args, "--fds");
    let first: usize = child::parsed(args, "--first");
    let dir = std::path::PathBuf::from(child::arg(args, "--storage").expect("--storage"));
    let (limit, mut why) = raise_nofile(fds);
    let mut clients: Vec<Client> = Vec::with_capacity(idle + active);
    for i in 0..idle + active {
        let senders = i < active;
        let name = if senders { format!("active-{}", first + i) } else { format!("idle-{}", first + i) };
        let hb = if senders { Duration::from_secs(1) } else { Duration::from_secs(5) };
        let opened = Client::open(client_cfg(&name, &dir, hb), clock.now_ns());
        let mut c = match opened {
            Ok(c) => c,
            Err(e) => {
                why.get_or_insert(format!("opening client {i} failed: {e} (RLIMIT_NOFILE {limit})"));
                break;
            }
        };
        if let Err(e) = c.connect(addr, TransportKind::Tcp, clock.now_ns()) {
            why.get_or_insert(format!("connecting client {i} failed: {e} (RLIMIT_NOFILE {limit})"));
            break;
        }
        clients.push(c);
    }
    let n = clients.len();
    let short = if n < idle + active { why.unwrap_or_default() } else { String::new() };
    child::announce(format!("ready {n} {short}").trim_end());
    let orphan = Orphan::new();
    let senders = active.min(n);
    let payload = [7u8; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut last_idle = Instant::now();
    let mut tick = 0u64;
    loop {
        tick += 1;
        let now = clock.now_ns();
        // Messages due so far at RATE per sender.
        let due = start.elapsed().as_micros() as u64 * RATE / 1_000_000;
        for c in clients[..senders].iter_mut() {
            for _ in sent..due {
                if let Ok(Some(buf)) = c.alloc(payload.len()) {
                    buf.copy_from_slice(&payload);
                    let _ = c.push_more(DATA);
                }
            }
            c.poll(now);
            while c.front().is_some() {
                c.pop();
            }
        }
        sent = due;
        if last_idle.elapsed() >= IDLE_POLL {
            last_idle = Instant::now();
            for c in clients[senders..].iter_mut() {
                c.poll(now);
                while c.front().is_some() {
                    c.pop();
                }
            }
        }
        if tick.is_multiple_of(256) && orphan.orphaned() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Aggregate echo throughput of `k` clients for `span`: messages echoed per second.
fn throughput(clients: &mut [Client], clock: &Clock, span: Duration) -> f64 {
    let payload = [5u8; TPUT_BYTES];
    let mut inflight = vec![0usize; clients.len()];
    let mut echoed = 0u64;
    let pump = |clients: &mut [Client], inflight: &mut [usize], count: bool| {
        let now = clock.now_ns();
        let mut got = 0u64;
        for (c, f) in clients.iter_mut().zip(inflight.iter_mut()) {
            c.poll(now);
            while let Some(m) = c.front() {
                assert_eq!(m.payload, &payload[..], "echo corrupt");
                c.pop();
                *f -= 1;
                got += 1;
            }
            while *f < WINDOW {
                match c.alloc(TPUT_BYTES) {
                    Ok(Some(buf)) => {
                        buf.copy_from_slice(&payload);
                        c.push_more(DATA).expect("push_more");
                        *f += 1;
                    }
                    _ => break,
                }
            }
            if !c.poll(now) {
                panic!("client lost its connection: {:?}", c.close_reason());
            }
        }
        if count {
            got
        } else {
            0
        }
    };
    let warm = Instant::now();
    while warm.elapsed() < span / 5 {
        pump(clients, &mut inflight, false);
    }
    let t0 = Instant::now();
    while t0.elapsed() < span {
        echoed += pump(clients, &mut inflight, true);
    }
    let el = t0.elapsed();
    // Drain what is in flight, so the next window starts clean.
    let deadline = Instant::now() + Duration::from_secs(10);
    while inflight.iter().any(|f| *f > 0) && Instant::now() < deadline {
        let now = clock.now_ns();
        for (c, f) in clients.iter_mut().zip(inflight.iter_mut()) {
            c.poll(now);
            while c.front().is_some() {
                c.pop();
                *f -= 1;
            }
        }
    }
    echoed as f64 / el.as_secs_f64()
}

fn main() {
    if let Some((name, args)) = child::role_args() {
        child::pin_from_args(&args);
        match name.as_str() {
            "server" => server_role(&args),
            "crowd" => crowd_role(&args),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let opts = Opts::from_args();
    if !common::pin_to_cpu(opts.cpus.0) {
        eprintln!("warning: could not pin the client to cpu {}; running unpinned", opts.cpus.0);
    }
    let clock = Clock::calibrate(Duration::from_millis(5));
    let (rtt_span, tput_span) = spans(&opts);
    let idle = idle_counts(&opts);
    let active = active_counts(&opts);
    let clients = client_counts(&opts);
    let want_rtt = opts.wants("scale.idle") || opts.wants("scale.active");
    let total = if want_rtt { idle.len() + active.len() } else { 0 }
        + if opts.wants("scale.tput") { 2 * clients.len() } else { 0 };
    let mut step = 0;
    let mut report = Report::new("scale");

    // ---- RTT beside idle and active connections ----
    // Each case: a fresh server; the measuring client's RTT first alone (the
    // baseline, seconds before), then with the crowd connected. The ratio of the two
    // is the case's verdict: the shared machine's drift between cases does not enter.
    let mut base: Option<Latency> = None;
    let cases: Vec<(usize, usize)> = idle.iter().map(|&n| (n, 0)).chain(active.iter().map(|&k| (0, k))).collect();
    for (n_idle, n_active) in cases {
        let key = if n_active > 0 { format!("scale.active.{n_active}") } else { format!("scale.idle.{n_idle}") };
        if !opts.wants(&key) {
            continue;
        }
        let what = if n_active > 0 {
            format!("{n_active} others sending {RATE} msg/s each")
        } else {
            format!("{n_idle} idle connections")
        };
        progress(step, total, &format!("scale: echo RTT beside {what}"));
        step += 1;
        let mut s = server(&opts, 1, n_idle + n_active + 1);
        let mut c = Ours(ours::connect(
            client_cfg("measure", &s._dir.path().join("measure"), Duration::from_secs(1)),
            s.addr,
            TransportKind::Tcp,
            &clock,
        ));
        let windows = |c: &mut Ours<Client>, phase: &str| {
            let mut runs = Vec::new();
            for r in 0..opts.runs {
                progress(
                    step - 1,
                    total,
                    &format!("scale: echo RTT beside {what}: {phase} (window {}/{})", r + 1, opts.runs),
                );
                runs.push(rtt(c, &clock, rtt_span));
            }
            hist::median_run(runs)
        };
        let crowd = n_idle + n_active > 0;
        let before = if crowd { Some(windows(&mut c, "alone first").0) } else { None };
        let (reached, short) = if crowd { s.crowd(&opts, n_idle, n_active) } else { (0, None) };
        let (l, sum) = windows(&mut c, if crowd { "with the others" } else { "alone" });
        drop(c);
        let label = if reached < n_idle + n_active {
            format!("echo RTT, TCP, beside {reached} idle connections (of {n_idle} wanted)")
        } else if n_active > 0 {
            format!("echo RTT, TCP, while {n_active} others send {RATE} msg/s each")
        } else {
            format!("echo RTT, TCP, beside {n_idle} idle connections")
        };
        let mut row = Row::new(&key, &label, "ns", sum)
            .param("idle", reached.min(n_idle) as f64)
            .param("active", n_active.min(reached) as f64);
        if let Some(b) = &before {
            row = row
                .ratio("same server alone just before (p50)", l.p50 / b.p50)
                .ratio("same server alone just before (p99)", l.p99 / b.p99);
            // The goal is stated for 10,000; a descriptor limit may stop a little
            // short (the label and the skip list say so), and the verdict is then given
            // at the count reached if that is at least 90% of it.
            if n_idle == 10_000 && reached >= 9_000 {
                let at = if reached < n_idle { format!(" (at {reached} idle)") } else { String::new() };
                row = row.goal(&format!("p50 <= 1.2x the p50 alone{at}"), l.p50 <= 1.2 * b.p50);
            } else if n_idle == 10_000 {
                report.skip(
                    "goal: 10,000-idle RTT within 1.2x of 0-idle",
                    &format!("only {reached} connections could be made: {}", short.clone().unwrap_or_default()),
                );
            }
        }
        if let Some(b) = &base {
            row = row.ratio("the 0-idle case (p50)", l.p50 / b.p50);
        }
        if let Some(why) = &short {
            report
                .skip(&format!("{} of the {} connections wanted", n_idle + n_active - reached, n_idle + n_active), why);
        }
        if !crowd {
            base = Some(l.clone());
        }
        report.push(row.latency(l));
        drop(s);
    }

    // ---- aggregate throughput ----
    if opts.wants("scale.tput") {
        for groups in [1usize, 2] {
            let mut one: Option<f64> = None;
            for &k in &clients {
                progress(step, total, &format!("scale: throughput of {k} clients, {groups} group(s)"));
                step += 1;
                let s = server(&opts, groups, k + 1);
                let mut cs: Vec<Client> = (0..k)
                    .map(|i| {
                        ours::connect(
                            client_cfg(&format!("tput-{i}"), &s._dir.path().join("clients"), Duration::from_secs(1)),
                            s.addr,
                            TransportKind::Tcp,
                            &clock,
                        )
                    })
                    .collect();
                let v: Vec<f64> = (0..opts.runs).map(|_| throughput(&mut cs, &clock, tput_span) / 1e6).collect();
                drop(cs);
                drop(s);
                let sum = Summary::of_higher_is_better(v);
                let mut row = Row::new(
                    &format!("scale.tput.g{groups}.c{k}"),
                    &format!("echo throughput, {k} clients x {WINDOW} in flight, {groups} group(s)"),
                    "Mmsg/s",
                    sum,
                )
                .param("clients", k as f64)
                .param("groups", groups as f64);
                match one {
                    None => one = Some(sum.median),
                    Some(o) => row = row.ratio("1 client", sum.median / o),
                }
                report.push(row);
            }
        }
    }
    progress(total, total, "scale done");
    if !idle.contains(&10_000) && opts.wants("scale.idle") {
        report.skip(
            "goal: 10,000-idle RTT within 1.2x of 0-idle",
            &format!("this run measured only {idle:?} idle connections (--quick); the full run measures 10,000"),
        );
    }

    let cpus = support::online_cpus().len();
    report.note(&format!(
        "RTT rows: the server (one group) pinned to cpu {}, the measuring client and the crowd of other clients \
         on cpu {}; per case a fresh server, {} windows of {} ms of the measuring client alone, then the crowd \
         connects and {} more windows; the window with the median p50 of each phase is used, the one with the \
         crowd is shown, and the ratio to the phase alone is the case's verdict. Idle clients poll every {} s \
         (heartbeat 5 s); the server keeps its default 1 s heartbeat to each.",
        opts.cpus.1,
        opts.cpus.0,
        opts.runs,
        rtt_span.as_millis(),
        opts.runs,
        IDLE_POLL.as_secs()
    ));
    report.note(&format!(
        "Throughput rows: one thread of this process drives all clients (each keeps {WINDOW} messages of \
         {TPUT_BYTES} B in flight, batched with push_more); {} windows of {} ms, median and best. With 2 groups \
         the server runs two threads over all {cpus} cpus, beside the client thread: on a machine with fewer \
         than 3 cpus they compete.",
        opts.runs,
        tput_span.as_millis()
    ));
    report.finish(&opts);
}
