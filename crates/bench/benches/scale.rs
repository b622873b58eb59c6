//! Scale: does one connection's echo round trip stay fast, at the tail too, while the
//! server holds many others? The measuring client (this process, first cpu) runs the
//! echo benchmark's method over TCP (16/36/68/200-byte payloads, every echo checked)
//! against two servers pinned to the second cpu, identical but for their other
//! connections:
//!
//! * **alone**: a server with only the measuring client;
//! * **crowded**: a server that also holds a crowd (the `crowd` role, processes on the
//!   first cpu): other clients logged in over TCP, idle (they poll every 2 s,
//!   heartbeat 5 s) or each sending 1,000 messages/s (echoed; the senders spread over
//!   the millisecond, 100 µs apart).
//!
//! The two are measured in back-to-back pairs (`tcpshm_bench::pairs`): windows
//! `A C A C ... A`; while one is measured the other (and the crowd with the crowded
//! one) is paused (`SIGSTOP`). Per pair the ratio crowded / alone at p50, p99, p99.9
//! and p99.99; pairs whose "alone" p50 moved by more than 10% are discarded; the
//! median of the rest is judged. Cases: 100, 1,000 and 10,000 idle connections, and
//! 10 and 100 senders (quick: 100 idle, 10 senders). Goals: beside 10,000 idle
//! connections p50 ≤ 1.2x, p99 and p99.9 ≤ 1.5x alone; beside 100 senders p50, p99
//! and p99.9 ≤ 2x alone.
//!
//! The descriptor limit is raised as needed (`RLIMIT_NOFILE`); the crowd is split
//! over as many processes as the limit needs (2 descriptors per client); if the
//! server's limit (2 per connection) cannot be raised far enough, the largest count it
//! can hold is used, the report says why, and a goal stated for 10,000 is judged at
//! the count reached only if that is at least 9,000.
//!
//! Then the aggregate echo throughput with 1..64 active clients (this process, one
//! thread, each client keeping 16 messages of 64 B in flight) against a server of 1
//! and of 2 groups (for information).
//!
//! `cargo xtask bench scale` runs it; `--quick` is a smoke run of a few seconds.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tcpshm_bench::child::{self, Child};
use tcpshm_bench::clock::{ticks, Clock};
use tcpshm_bench::common::{self, fmt_num, progress, Opts, Report, Row, Summary};
use tcpshm_bench::floors::Shared;
use tcpshm_bench::hist;
use tcpshm_bench::ours::{self, Echo, DATA};
use tcpshm_bench::pairs::{self, LatencyPairs, Turn, QUANTILES};
use tcpshm_bench::payload::{self, Payloads};
use tcpshm_bench::scratch::{Scratch, ShmPrefix};
use tcpshm_bench::sys::{self, raise_nofile};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;

/// Server-side queue bytes per connection, and the largest message.
const SERVER_QUEUE: usize = 16 * 1024;
const CLIENT_QUEUE: usize = 16 * 1024;
const MAX_MESSAGE: usize = 1024;
/// Messages/s each sender of the crowd sends.
const RATE: u64 = 1000;
/// Sub-ticks of the crowd's millisecond: senders are spread over them.
const SUBTICKS: u64 = 10;
/// Messages in flight per client in the throughput test.
const WINDOW: usize = 16;
/// Payload of the throughput test.
const TPUT_BYTES: usize = 64;
/// How often the crowd polls its idle clients (heartbeats), and their heartbeat.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Liveness timeout of every session here: the measuring client is not polled while a
/// crowd of 10,000 connects, and servers are paused between windows.
const TIMEOUT_NS: u64 = 600_000_000_000;

fn idle_counts(opts: &Opts) -> Vec<usize> {
    if opts.quick {
        vec![100]
    } else {
        vec![100, 1000, 10_000]
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

fn pair_count(opts: &Opts) -> usize {
    opts.runs_given.unwrap_or(if opts.quick { 1 } else { 6 }).max(1)
}

/// Warm-up and measured time of one RTT window, and one throughput window.
fn spans(opts: &Opts) -> (Duration, Duration, Duration) {
    if opts.quick {
        (Duration::from_millis(30), Duration::from_millis(100), Duration::from_millis(80))
    } else {
        (Duration::from_millis(500), Duration::from_millis(2000), Duration::from_millis(500))
    }
}

/// The goal of a case: limits at p50, p99, p99.9.
fn goal(idle: usize, active: usize) -> Option<[f64; 3]> {
    match (idle, active) {
        (10_000, 0) => Some([1.2, 1.5, 1.5]),
        (0, 100) => Some([2.0, 2.0, 2.0]),
        _ => None,
    }
}

fn client_cfg(name: &str, dir: &std::path::Path, heartbeat: Duration) -> tcpshm_client::ClientConfig {
    let mut cfg = ours::client_config(name, dir, "unused-", CLIENT_QUEUE, MAX_MESSAGE);
    cfg.connection.session.liveness.heartbeat_interval = heartbeat.as_nanos() as u64;
    cfg.connection.session.liveness.timeout = TIMEOUT_NS;
    cfg
}

/// A gap in the measuring client's loop longer than this means it lost its cpu (the
/// crowd shares it): its loop otherwise polls every microsecond or two.
const CLIENT_GAP_NS: f64 = 10_000.0;

/// One echo round trip over `t` (as `ours::ping`), also returning the longest time
/// the loop went without polling: a gap of [`CLIENT_GAP_NS`] or more means the client
/// was off its cpu during the round trip.
#[inline]
fn ping_gap<T: Transport>(t: &mut T, msg: &[u8], now: u64) -> (bool, u64) {
    loop {
        match t.alloc(msg.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg);
                break;
            }
            Ok(None) => {
                t.poll(now);
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    t.push(DATA).expect("push");
    let mut prev = ticks();
    let mut gap = 0;
    loop {
        if let Some(m) = t.front() {
            let ok = m.msg_type == DATA && m.payload == msg;
            t.pop();
            return (ok, gap);
        }
        assert!(t.poll(now), "connection lost during echo: {:?}", t.close_reason());
        let x = ticks();
        gap = gap.max(x - prev);
        prev = x;
    }
}

/// A window's round trips: all of them, and those during which the client kept its
/// cpu.
struct Rtts {
    all: Histogram<u64>,
    on_cpu: Histogram<u64>,
}

/// Round trips for `warm` (not recorded) then for `span` on `c`.
fn rtt(c: &mut Client, gen: &mut Payloads, seq: &mut u64, clock: &Clock, warm: Duration, span: Duration) -> Rtts {
    let mut buf = [0u8; payload::MAX];
    let (mut all, mut on_cpu) = (hist::new_hist(), hist::new_hist());
    let w = Instant::now();
    while w.elapsed() < warm {
        let len = gen.next(*seq, &mut buf);
        *seq += 1;
        assert!(ours::ping(c, &buf[..len], clock.now_ns()), "echo {seq} came back corrupt");
    }
    let start = ticks();
    let span_ticks = clock.ticks_in(span.as_nanos() as f64);
    let gap_ticks = clock.ticks_in(CLIENT_GAP_NS);
    loop {
        let mut t0 = 0;
        for _ in 0..64 {
            let len = gen.next(*seq, &mut buf);
            *seq += 1;
            t0 = ticks();
            let (ok, gap) = ping_gap(c, &buf[..len], clock.at(t0));
            let t1 = ticks();
            assert!(ok, "echo {seq} came back corrupt");
            let ns = clock.ns(t1 - t0);
            hist::record(&mut all, ns);
            if gap < gap_ticks {
                hist::record(&mut on_cpu, ns);
            }
        }
        if t0 - start >= span_ticks {
            break;
        }
    }
    Rtts { all, on_cpu }
}

/// Descriptors one client of the crowd holds, and one server-side TCP connection
/// (the socket and the session store's file; a store does not keep its directory
/// open).
const FDS_PER_CLIENT: u64 = 2;
const FDS_PER_CONN: u64 = 2;
/// Descriptors kept free for everything else in a process.
const FDS_SPARE: u64 = 64;

/// A server started in the `server` role.
struct Srv {
    child: Child,
    addr: std::net::SocketAddr,
}

fn start_server(opts: &Opts, dir: &Scratch, shm: &ShmPrefix, name: &str, groups: usize, conns: usize) -> Srv {
    let want = FDS_PER_CONN * conns as u64 + 1024;
    let mut child = Child::spawn(
        "server",
        opts.cpus.1,
        &[
            "--storage".into(),
            dir.join(name),
            "--shm-prefix".into(),
            shm.as_str().into(),
            "--groups".into(),
            groups.to_string(),
            "--fds".into(),
            want.to_string(),
        ],
    );
    let addr = child.expect("ready").parse().expect("address");
    Srv { child, addr }
}

/// The crowd's processes, and the counter of messages its senders sent (a shared
/// word each crowd process adds to).
struct Crowd {
    procs: Vec<Child>,
    sent: Shared,
    reached: usize,
    why: Option<String>,
}

impl Crowd {
    fn sent(&mut self) -> u64 {
        let p = self.sent.base().cast::<AtomicU64>();
        // SAFETY: the mapping is 8-aligned, at least 8 bytes, alive while `self` is; the
        // crowd processes only touch the word atomically.
        unsafe { (*p).load(Ordering::Relaxed) }
    }

    fn stop(&mut self) {
        self.procs.iter_mut().for_each(Child::stop);
    }

    fn resume(&mut self) {
        self.procs.iter_mut().for_each(Child::resume);
    }

    fn cpu_ticks(&self) -> u64 {
        self.procs.iter().filter_map(|c| sys::cpu_ticks(c.pid())).sum()
    }
}

/// Connects `idle` idle clients and `active` senders to `addr` (in as many crowd
/// processes as the descriptor limit needs), leaving the server room for the
/// measuring client.
fn crowd(opts: &Opts, dir: &Scratch, shm: &ShmPrefix, addr: std::net::SocketAddr, idle: usize, active: usize) -> Crowd {
    let want = FDS_PER_CONN * (idle + active + 1) as u64 + 1024;
    let (nofile, nofile_short) = raise_nofile(want);
    let server_room = ((nofile.saturating_sub(FDS_SPARE)) / FDS_PER_CONN).saturating_sub(8) as usize;
    let mut why = None;
    let mut idle_left = idle;
    if idle + active > server_room {
        idle_left = server_room.saturating_sub(active);
        why = Some(format!(
            "the server holds {FDS_PER_CONN} descriptors per TCP connection (socket and store file) and \
             RLIMIT_NOFILE is {nofile}: {}",
            nofile_short.clone().unwrap_or_else(|| "it could not be raised".into())
        ));
    }
    let counter = shm.file("crowd-sent");
    let sent = Shared::create(&counter, 4096);
    let per_process = ((nofile.saturating_sub(FDS_SPARE)) / FDS_PER_CLIENT).max(1) as usize;
    let mut active_left = active;
    let mut reached = 0;
    let mut procs = Vec::new();
    while idle_left + active_left > 0 {
        let a = active_left.min(per_process);
        let i = idle_left.min(per_process - a);
        active_left -= a;
        idle_left -= i;
        let mut c = Child::spawn(
            "crowd",
            opts.cpus.0,
            &[
                "--addr".into(),
                addr.to_string(),
                "--storage".into(),
                dir.join(&format!("crowd{}", procs.len())),
                "--idle".into(),
                i.to_string(),
                "--active".into(),
                a.to_string(),
                "--fds".into(),
                (FDS_PER_CLIENT * (i + a) as u64 + FDS_SPARE).to_string(),
                "--first".into(),
                reached.to_string(),
                "--counter".into(),
                counter.display().to_string(),
            ],
        );
        let answer = c.expect("ready");
        let (got, short) = answer.split_once(' ').unwrap_or((&answer, ""));
        let got: usize = got.parse().expect("crowd count");
        reached += got;
        procs.push(c);
        if got < i + a {
            why.get_or_insert(short.to_string());
            break;
        }
    }
    Crowd { procs, sent, reached, why }
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
        for c in sys::online_cpus() {
            set.set(c);
        }
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
    let clock = Clock::calibrate(Duration::from_millis(5));
    let storage = child::arg(args, "--storage").expect("--storage");
    let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
    let mut cfg = ours::server_config(std::path::Path::new(storage), prefix, SERVER_QUEUE, MAX_MESSAGE);
    cfg.max_connections = 100_000;
    cfg.connection.session.liveness.timeout = TIMEOUT_NS;
    cfg.enable_shm = false;
    ours::serve(cfg, vec![Echo; groups], clock)
}

/// The crowd role: `--addr A --idle M --active K --fds N --storage DIR --first F
/// --counter FILE` (F numbers the clients' names across crowds). Connects M + K
/// clients (stopping early, with the reason, at a limit), announces
/// `ready COUNT [why fewer]`, then: each of the K senders sends one message per
/// millisecond (`RATE` per second) and pops its echoes, the senders spread over
/// `SUBTICKS` slots of the millisecond; after a pause it does not catch up. The idle
/// ones are polled every `IDLE_POLL`. Adds what it sent to the word in FILE.
fn crowd_role(args: &[String]) {
    let clock = Clock::calibrate(Duration::from_millis(5));
    let addr: std::net::SocketAddr = child::parsed(args, "--addr");
    let idle: usize = child::parsed(args, "--idle");
    let active: usize = child::parsed(args, "--active");
    let fds: u64 = child::parsed(args, "--fds");
    let first: usize = child::parsed(args, "--first");
    let dir = std::path::PathBuf::from(child::arg(args, "--storage").expect("--storage"));
    let mut counter = Shared::open(std::path::Path::new(child::arg(args, "--counter").expect("--counter")));
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
    let sent_word = counter.base().cast::<AtomicU64>();
    let senders = active.min(n);
    let payload = [7u8; 64];
    let slot = Duration::from_micros(1_000_000 / RATE / SUBTICKS);
    let mut next = Instant::now();
    let mut last_idle = Instant::now();
    let mut sub = 0u64;
    loop {
        let now = clock.now_ns();
        let mut sent = 0u64;
        for c in clients[..senders].iter_mut().skip(sub as usize).step_by(SUBTICKS as usize) {
            if let Ok(Some(buf)) = c.alloc(payload.len()) {
                buf.copy_from_slice(&payload);
                let _ = c.push(DATA);
                sent += 1;
            }
            c.poll(now);
            while c.front().is_some() {
                c.pop();
            }
        }
        // SAFETY: the counter file's mapping is 8-aligned and at least 8 bytes; every
        // process touches the word only atomically.
        unsafe { (*sent_word).fetch_add(sent, Ordering::Relaxed) };
        sub = (sub + 1) % SUBTICKS;
        if last_idle.elapsed() >= IDLE_POLL {
            last_idle = Instant::now();
            for c in clients[senders..].iter_mut() {
                c.poll(now);
                while c.front().is_some() {
                    c.pop();
                }
            }
        }
        if senders == 0 {
            // Only idle clients: wake for their polls, nothing else (a crowd that woke
            // every slot would take the measuring client's cpu for nothing).
            std::thread::sleep(IDLE_POLL.saturating_sub(last_idle.elapsed()).max(Duration::from_millis(1)));
            continue;
        }
        next += slot;
        let t = Instant::now();
        if next > t {
            std::thread::sleep(next - t);
        } else if t - next > 2 * slot * SUBTICKS as u32 {
            // Paused or far behind: go on from now, no burst.
            next = t;
        }
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

/// What happened around the windows of one side of a case.
#[derive(Debug, Default, Clone, Copy)]
struct Around {
    windows: u64,
    client_switches: u64,
    server_switches: u64,
    crowd_ticks: u64,
    crowd_sent: u64,
    secs: f64,
}

fn main() {
    if let Some((name, args)) = child::role_args() {
        child::become_child(&args);
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
    let clock = Clock::calibrate(Duration::from_millis(if opts.quick { 5 } else { 50 }));
    let (warm, span, tput_span) = spans(&opts);
    let idle = idle_counts(&opts);
    let active = active_counts(&opts);
    let clients = client_counts(&opts);
    let n_pairs = pair_count(&opts);
    let cases: Vec<(usize, usize)> = idle.iter().map(|&n| (n, 0)).chain(active.iter().map(|&k| (0, k))).collect();
    let cases: Vec<(usize, usize)> = cases
        .into_iter()
        .filter(|(i, a)| opts.wants(&if *a > 0 { format!("scale.active.{a}") } else { format!("scale.idle.{i}") }))
        .collect();
    let want_tput = opts.wants("scale.tput");
    let total = cases.len() * (2 * n_pairs + 2) + if want_tput { 2 * clients.len() } else { 0 };
    let mut step = 0;
    let mut report = Report::new("scale");
    let mut data = serde_json::Map::new();
    let (me, tid) = sys::this_task();
    let hz = 100.0; // USER_HZ: /proc's cpu times are in hundredths of a second on Linux.

    for (n_idle, n_active) in cases {
        let key = if n_active > 0 { format!("scale.active.{n_active}") } else { format!("scale.idle.{n_idle}") };
        let what = if n_active > 0 {
            format!("{n_active} others sending {RATE} msg/s each")
        } else {
            format!("{n_idle} idle connections")
        };
        progress(step, total, &format!("scale: starting the servers and {what}"));
        step += 1;
        // The stores of thousands of sessions on tmpfs: creating each is crash-safe
        // (synced), which on a disk would make the setup take minutes; the hot path
        // does not touch the disk either way (Durability::Process).
        let shm_dir = std::path::Path::new("/dev/shm");
        let dir = if shm_dir.is_dir() { Scratch::in_dir(shm_dir, "tcpshm-scale") } else { Scratch::new("scale") };
        let shm = ShmPrefix::new();
        let mut alone = start_server(&opts, &dir, &shm, "alone", 1, 1);
        let mut crowded = start_server(&opts, &dir, &shm, "crowded", 1, n_idle + n_active + 1);
        let hb = Duration::from_secs(1);
        let mut c_alone = ours::connect(
            client_cfg("measure", &dir.path().join("m-alone"), hb),
            alone.addr,
            TransportKind::Tcp,
            &clock,
        );
        let mut c_crowd = ours::connect(
            client_cfg("measure", &dir.path().join("m-crowd"), hb),
            crowded.addr,
            TransportKind::Tcp,
            &clock,
        );
        progress(step, total, &format!("scale: connecting {what}"));
        step += 1;
        let mut cr = crowd(&opts, &dir, &shm, crowded.addr, n_idle, n_active);
        cr.stop();
        crowded.child.stop();
        alone.child.stop();
        let (mut gen, mut seq) = (Payloads::new(), 0u64);
        let mut around = (Around::default(), Around::default());
        let (refs, ours) = pairs::chain(n_pairs, |turn, i| {
            let crowded_side = turn == Turn::Ours;
            let (srv, c, a) = if crowded_side {
                (&mut crowded, &mut c_crowd, &mut around.1)
            } else {
                (&mut alone, &mut c_alone, &mut around.0)
            };
            progress(
                step,
                total,
                &format!(
                    "scale: echo RTT {} (window {}/{})",
                    if crowded_side { format!("beside {what}") } else { "alone".into() },
                    i + 1,
                    if crowded_side { n_pairs } else { n_pairs + 1 }
                ),
            );
            step += 1;
            srv.child.resume();
            if crowded_side {
                cr.resume();
            }
            let pid = srv.child.pid();
            let switches =
                || (sys::involuntary_switches(me, tid).unwrap_or(0), sys::involuntary_switches(pid, pid).unwrap_or(0));
            let sw0 = switches();
            let (ct0, cs0, t0) = (cr.cpu_ticks(), cr.sent(), Instant::now());
            let h = rtt(c, &mut gen, &mut seq, &clock, warm, span);
            let sw1 = switches();
            a.windows += 1;
            a.client_switches += sw1.0 - sw0.0;
            a.server_switches += sw1.1 - sw0.1;
            a.crowd_ticks += cr.cpu_ticks() - ct0;
            a.crowd_sent += cr.sent() - cs0;
            a.secs += t0.elapsed().as_secs_f64();
            if crowded_side {
                cr.stop();
            }
            srv.child.stop();
            h
        });
        let all = |v: &[Rtts]| v.iter().map(|r| r.all.clone()).collect::<Vec<_>>();
        let on_cpu = |v: &[Rtts]| v.iter().map(|r| r.on_cpu.clone()).collect::<Vec<_>>();
        let j = LatencyPairs::judge(&all(&refs), &all(&ours));
        let jc = LatencyPairs::judge(&on_cpu(&refs), &on_cpu(&ours));
        let off = |v: &[Rtts]| {
            let (a, o): (u64, u64) = v.iter().fold((0, 0), |(a, o), r| (a + r.all.len(), o + r.on_cpu.len()));
            1.0 - o as f64 / a.max(1) as f64
        };
        let (off_alone, off_crowded) = (off(&refs), off(&ours));
        let reached = cr.reached;
        let label = if reached < n_idle + n_active {
            format!("echo RTT, TCP, beside {reached} idle connections (of {n_idle} wanted)")
        } else if n_active > 0 {
            format!("echo RTT, TCP, while {n_active} others send {RATE} msg/s each")
        } else {
            format!("echo RTT, TCP, beside {n_idle} idle connections")
        };
        let best = j.pairs.iter().filter(|p| p.kept).map(|p| p.ours.p50).fold(f64::NAN, f64::min);
        let mut row = Row::new(&key, &label, "ns", Summary { median: j.median_ours(0), best })
            .param("idle", reached.min(n_idle) as f64)
            .param("active", n_active.min(reached) as f64)
            .param("pairs_discarded", j.discarded() as f64);
        for (k, (_, name, _)) in QUANTILES.iter().enumerate() {
            row = row.ratio(&format!("alone ({name}, median of pairs)"), j.median[k]);
        }
        row = row.ratio("alone, client on cpu (p99)", jc.median[1]).ratio("alone, client on cpu (p99.9)", jc.median[2]);
        match goal(n_idle, n_active) {
            Some(limits) if n_active > 0 || reached >= 9_000 => {
                let at = if reached < n_idle { format!(" (at {reached} idle)") } else { String::new() };
                for (k, lim) in limits.iter().enumerate() {
                    row = row.check(&format!("{} / alone{at}", QUANTILES[k].1), j.median[k], *lim, false);
                }
            }
            Some(_) => report.skip(
                "goal: RTT beside 10,000 idle connections",
                &format!("only {reached} connections could be made: {}", cr.why.clone().unwrap_or_default()),
            ),
            None => {}
        }
        if let Some(r) = j.representative {
            row = row.latency(j.pairs[r].ours.clone());
        }
        report.push(row);
        if let Some(why) = &cr.why {
            report
                .skip(&format!("{} of the {} connections wanted", n_idle + n_active - reached, n_idle + n_active), why);
        }
        let (a, c) = around;
        let per = |x: u64, w: u64| x as f64 / w.max(1) as f64;
        report.section(
            &format!("{label}: pairs"),
            format!(
                "{}\n{}Per window: the measuring client was switched out involuntarily {:.1} times alone and {:.1} times \
                 beside the crowd; the server {:.1} / {:.1} times. The crowd used {:.0}% of a cpu (it shares the \
                 client's) and sent {} msg/s in all. The client lost its cpu (a gap of {} µs or more in its loop) \
                 during {:.3}% of the round trips alone and {:.3}% beside the crowd; the round trips during which \
                 it kept its cpu, paired the same way (the server's share of the tail):\n\n{}",
                j.markdown("crowded", "alone"),
                j.states_markdown("alone"),
                per(a.client_switches, a.windows),
                per(c.client_switches, c.windows),
                per(a.server_switches, a.windows),
                per(c.server_switches, c.windows),
                100.0 * c.crowd_ticks as f64 / hz / c.secs.max(1e-9),
                fmt_num(c.crowd_sent as f64 / c.secs.max(1e-9)),
                CLIENT_GAP_NS / 1000.0,
                100.0 * off_alone,
                100.0 * off_crowded,
                jc.markdown("crowded, client on cpu", "alone, client on cpu"),
            ),
        );
        let mut js = j.json();
        js["reached"] = serde_json::json!(reached);
        js["client_switches_per_window"] =
            serde_json::json!([per(a.client_switches, a.windows), per(c.client_switches, c.windows)]);
        js["server_switches_per_window"] =
            serde_json::json!([per(a.server_switches, a.windows), per(c.server_switches, c.windows)]);
        js["crowd_cpu_share"] = serde_json::json!(c.crowd_ticks as f64 / hz / c.secs.max(1e-9));
        js["crowd_sent_per_s"] = serde_json::json!(c.crowd_sent as f64 / c.secs.max(1e-9));
        js["client_off_cpu_share"] = serde_json::json!([off_alone, off_crowded]);
        js["client_on_cpu"] = jc.json();
        data.insert(key, js);
        drop((c_alone, c_crowd, cr, alone, crowded));
    }

    // ---- aggregate throughput ----
    if want_tput {
        for groups in [1usize, 2] {
            let mut one: Option<f64> = None;
            for &k in &clients {
                progress(step, total, &format!("scale: throughput of {k} clients, {groups} group(s)"));
                step += 1;
                let dir = Scratch::new("scale-tput");
                let shm = ShmPrefix::new();
                let s = start_server(&opts, &dir, &shm, "server", groups, k + 1);
                let mut cs: Vec<Client> = (0..k)
                    .map(|i| {
                        ours::connect(
                            client_cfg(&format!("tput-{i}"), &dir.path().join("clients"), Duration::from_secs(1)),
                            s.addr,
                            TransportKind::Tcp,
                            &clock,
                        )
                    })
                    .collect();
                let v: Vec<f64> = (0..opts.runs.min(3)).map(|_| throughput(&mut cs, &clock, tput_span) / 1e6).collect();
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
    if !idle.contains(&10_000) {
        report.skip(
            "goal: RTT beside 10,000 idle connections",
            &format!("this run measured only {idle:?} idle connections (--quick); the full run measures 10,000"),
        );
    }
    if !active.contains(&100) {
        report.skip(
            "goal: RTT beside 100 senders",
            "this run measured only 10 senders (--quick); the full run measures 100",
        );
    }
    report.data("pairs", serde_json::Value::Object(data));
    let cpus = sys::online_cpus().len();
    report.note(&format!(
        "RTT rows: both servers (one group each) pinned to cpu {}, the measuring client and the crowd's processes on \
         cpu {}. Per case a chain of windows alone / crowded / alone ... ({} pairs; each window {} ms of warm-up, \
         then {} ms of round trips); the side not measured is paused (SIGSTOP), the crowd with its server. Ratios \
         are crowded over the two alone windows around it (merged), at p50, p99, p99.9, p99.99; a pair is discarded \
         when the alone p50 before and after differ by more than {:.0}%; rows show the median over the kept pairs \
         and the distribution of the pair with the median p50 ratio. p99.99 is shown, not judged: a window holds \
         about 10^5 round trips, so it rests on a handful of samples.",
        opts.cpus.1,
        opts.cpus.0,
        n_pairs,
        warm.as_millis(),
        span.as_millis(),
        pairs::MOVE_LIMIT * 100.0,
    ));
    report.note(
        "On a machine of 2 cpus the crowd's processes share the measuring client's cpu: a crowd that is busy (the \
         senders) takes the client's cpu now and then; the per-case section gives how often the client was switched \
         out and how much cpu the crowd used, to tell that cost (the bench's) from the server's. Idle clients poll \
         every 2 s (heartbeat 5 s); the servers keep their default 1 s heartbeat to each.",
    );
    report.note(&format!(
        "Throughput rows: one thread of this process drives all clients (each keeps {WINDOW} messages of \
         {TPUT_BYTES} B in flight, batched with push_more); {} windows of {} ms, median and best. With 2 groups \
         the server runs two threads over all {cpus} cpus, beside the client thread: on a machine with fewer \
         than 3 cpus they compete.",
        opts.runs.min(3),
        tput_span.as_millis()
    ));
    report.finish(&opts);
}
