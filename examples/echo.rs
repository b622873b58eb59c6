//! # The first-run command: an echo benchmark over shared memory and TCP
//!
//! ```sh
//! cargo run --release --example echo                  # 100,000 round trips per transport
//! cargo run --release --example echo -- --messages 1000000 --transport shm
//! ```
//!
//! It starts an echo server as a child process (this same program, re-executed with
//! `--server`), then runs the reference benchmark of the C++ TCPSHM as a client: one
//! message out, wait for its echo, again — first over shared memory, then over TCP.
//! Payload sizes are chosen at random from 16, 36, 68 and 200 bytes; every echo is
//! checked byte for byte. After a warm-up, each round trip is timed with
//! `std::time::Instant` (from before `alloc` to the echo in hand, before its check)
//! and recorded in an HDR histogram; the table gives the mean, the percentiles and
//! the maximum per transport.
//!
//! Both processes busy-poll (that is how tcpshm is meant to be run on a latency-critical
//! path) and, when the machine has two cpus or more, each is pinned to its own cpu.
//! On a machine shared with other work, the tail percentiles show that work.
//!
//! The library reads no clock: every `poll(now)` gets the time from here.
//!
//! ## Files
//!
//! Everything lives in a fresh directory under the system temp dir
//! (`tcpshm-echo-<pid>`: the server's and the client's session stores) and in
//! `/dev/shm/tcpshm-echo-<pid>-*` (one file per shared-memory connection). Both are
//! removed at the end, on success and on error. A run killed before it could clean up
//! (Ctrl-C, `kill -9`) leaves them behind; the next run removes the leftovers of any
//! run whose process is gone.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpshm::prelude::*;
use tcpshm::shm::ShmDir;

/// The benchmark's payload sizes, as in the C++ reference.
const SIZES: [usize; 4] = [16, 36, 68, 200];
/// Largest message both sides accept (the two sides must agree on it).
const MAX_MESSAGE: usize = 4096;
/// Bytes of each send queue and ring: plenty for one message in flight.
const QUEUE_BYTES: usize = 1 << 20;
/// The server's name: with each client's name it identifies a persistent session.
const SERVER_NAME: &str = "EchoServer";
/// A round trip that takes longer than this means something is broken.
const STALL: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(about = "Echo benchmark: starts an echo server as a child process and measures round trips over SHM and TCP")]
struct Args {
    /// Measured round trips per transport.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Warm-up round trips per transport before measuring [default: the smaller of
    /// 10,000 and --messages].
    #[arg(long)]
    warmup: Option<u64>,
    /// Transports to measure, in this order (comma-separated).
    #[arg(long = "transport", value_enum, value_delimiter = ',', default_values_t = [Mode::Shm, Mode::Tcp])]
    transports: Vec<Mode>,
    /// Do not pin the client and the server to cpus.
    #[arg(long)]
    no_pin: bool,
    /// Seed of the random choice of payload sizes.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,

    // The server role: this program re-executed by itself.
    /// (internal) Run as the echo server.
    #[arg(long, hide = true)]
    server: bool,
    /// (internal) The server's storage directory.
    #[arg(long, hide = true)]
    storage: Option<PathBuf>,
    /// (internal) The shared-memory file prefix.
    #[arg(long, hide = true)]
    shm_prefix: Option<String>,
    /// (internal) The cpu to pin the server to.
    #[arg(long, hide = true)]
    cpu: Option<usize>,
    /// (internal) Yield in the polling loop (one cpu for both processes).
    #[arg(long, hide = true)]
    yield_when_idle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Shared memory.
    Shm,
    /// TCP over the loopback interface.
    Tcp,
}

impl Mode {
    fn kind(self) -> TransportKind {
        match self {
            Mode::Shm => TransportKind::Shm,
            Mode::Tcp => TransportKind::Tcp,
        }
    }
}

fn main() {
    let args = Args::parse();
    let result = if args.server { run_server(&args) } else { run_client(&args) };
    if let Err(e) = result {
        eprintln!("echo{}: error: {e:#}", if args.server { " server" } else { "" });
        std::process::exit(1);
    }
}

/// Nanoseconds on this process's monotonic clock, for `poll(now)`.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn now(&self) -> Nanos {
        self.0.elapsed().as_nanos() as Nanos
    }
}

// ---------------------------------------------------------------------------------
// The server (child process)
// ---------------------------------------------------------------------------------

/// Echoes every message back, zero-copy: the reply is written into the send queue
/// straight from the request, which is still in place in the receive buffer or ring.
struct Echo;

impl GroupHandler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match conn.alloc(msg.payload.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg.payload);
                match conn.push(msg.msg_type) {
                    Ok(()) => Handled::Pop,
                    Err(e) => {
                        conn.close_with(format!("echo failed: {e}"));
                        Handled::Keep
                    }
                }
            }
            // Our send queue is full (the client is not popping): keep the request,
            // it is offered again at the next poll. Backpressure, not loss.
            Ok(None) => Handled::Keep,
            Err(e) => {
                conn.close_with(format!("cannot echo: {e}"));
                Handled::Keep
            }
        }
    }
}

fn run_server(args: &Args) -> Result<()> {
    let storage = args.storage.clone().context("--server needs --storage")?;
    let prefix = args.shm_prefix.clone().context("--server needs --shm-prefix")?;
    if let Some(cpu) = args.cpu {
        pin_to(cpu).with_context(|| format!("cannot pin the server to cpu {cpu}"))?;
    }
    let mut cfg = ServerConfig::new(name(SERVER_NAME)?, storage);
    cfg.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    cfg.shm_prefix = prefix;
    cfg.max_message = MAX_MESSAGE;
    cfg.tcp_queue_bytes = QUEUE_BYTES;
    cfg.shm_queue_bytes = QUEUE_BYTES;
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo]).context("cannot start the server")?;
    let addr = *server.local_addrs().first().context("the server listens nowhere")?;

    // The parent stops us by closing our stdin (it also closes if the parent dies).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Relaxed);
        });
    }

    // Logins are rare: the control part polls from its own thread, gently, so the
    // echo loop below spends no time on the listener.
    let clock = Clock::new();
    let (mut control, mut groups) = server.split();
    let mut group = groups.pop().context("the server has no group")?;
    let control_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                control.poll(clock.now());
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };

    // Tell the parent where we listen; it waits for this line.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}").and_then(|_| out.flush()).context("cannot write to the parent")?;
    drop(out);

    // The hot loop: busy-poll the group (echoes happen inside `poll`).
    while !stop.load(Ordering::Relaxed) {
        group.poll(clock.now());
        if args.yield_when_idle {
            std::thread::yield_now();
        }
    }
    control_thread.join().map_err(|_| anyhow!("the control thread panicked"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// The client (parent process)
// ---------------------------------------------------------------------------------

fn run_client(args: &Args) -> Result<()> {
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    let warmup = args.warmup.unwrap_or(args.messages.min(10_000));
    println!("machine: {}", machine());
    sweep_leftovers();

    let mut transports = args.transports.clone();
    transports.dedup();
    if transports.contains(&Mode::Shm) && !Path::new(ShmDir::DEFAULT_DIR).is_dir() {
        println!("skipping shm: {} does not exist on this machine", ShmDir::DEFAULT_DIR);
        transports.retain(|m| *m != Mode::Shm);
    }
    if transports.is_empty() {
        bail!("nothing to measure");
    }

    // Cpus: the client on the first allowed one, the server on the second.
    let cpus = allowed_cpus();
    let pin = !args.no_pin && cpus.len() >= 2;
    let one_cpu = cpus.len() < 2;

    let pid = std::process::id();
    let work = std::env::temp_dir().join(format!("tcpshm-echo-{pid}"));
    let prefix = format!("tcpshm-echo-{pid}-");
    let mut run = Run { child: None, stdin: None, work: work.clone(), shm: ShmDir::new(ShmDir::DEFAULT_DIR, &prefix)? };
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let exe = std::env::current_exe().context("cannot find this program's path to start the server")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--server").arg("--storage").arg(work.join("server")).arg("--shm-prefix").arg(&prefix);
    if pin {
        cmd.arg("--cpu").arg(cpus[1].to_string());
    }
    if one_cpu {
        cmd.arg("--yield-when-idle");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the server process")?;
    let stdout = child.stdout.take().context("no pipe from the server")?;
    run.stdin = child.stdin.take();
    let server_pid = child.id();
    run.child = Some(child);
    let addr = wait_listening(stdout, Duration::from_secs(10))?;
    println!(
        "server: pid {server_pid} listening on {addr}{}",
        if pin { format!(", pinned to cpu {}", cpus[1]) } else { String::new() }
    );
    if pin {
        pin_to(cpus[0]).with_context(|| format!("cannot pin the client to cpu {}", cpus[0]))?;
        println!("client: pid {pid}, pinned to cpu {}; both sides busy-poll", cpus[0]);
    } else if one_cpu {
        println!("client: pid {pid}; one cpu for both processes: they yield to each other (expect slow figures)");
    } else {
        println!("client: pid {pid}, not pinned (--no-pin); both sides busy-poll");
    }

    let mut rows = Vec::new();
    for (i, mode) in transports.iter().enumerate() {
        let client_name = format!("echo-{}", if *mode == Mode::Shm { "shm" } else { "tcp" });
        let mut cfg = ClientConfig::new(name(&client_name)?, work.join("client"));
        cfg.shm_prefix = prefix.clone();
        cfg.max_message = MAX_MESSAGE;
        cfg.queue_bytes = QUEUE_BYTES;
        let clock = Clock::new();
        let mut client = Client::open(cfg, clock.now()).context("cannot open the client's session")?;
        let c = client
            .connect(addr, mode.kind(), clock.now())
            .with_context(|| format!("cannot log in to the server over {}", mode.kind()))?;
        println!("{}: logged in to {} as {client_name}", mode.kind(), c.server);
        let mut rng = Rng(args.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let started = Instant::now();
        let mut k = 0;
        for _ in 0..warmup {
            round_trip(&mut client, &clock, k, SIZES[rng.below(SIZES.len())], one_cpu)?;
            k += 1;
        }
        println!("{}: {warmup} warm-up round trips in {:.2?}", mode.kind(), started.elapsed());
        let started = Instant::now();
        for _ in 0..args.messages {
            let rtt = round_trip(&mut client, &clock, k, SIZES[rng.below(SIZES.len())], one_cpu)?;
            hist.record(rtt).context("round trip out of the histogram's range")?;
            k += 1;
        }
        println!(
            "{}: {} measured round trips in {:.2?}, every echo checked",
            mode.kind(),
            args.messages,
            started.elapsed()
        );
        client.close(CloseReason::Requested);
        rows.push((mode.kind(), hist));
    }

    println!();
    println!("echo round trip, one message in flight, payload 16/36/68/200 bytes at random:");
    println!(
        "{:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "transport", "messages", "mean", "p50", "p99", "p99.9", "max"
    );
    for (kind, h) in &rows {
        println!(
            "{:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            kind.to_string(),
            h.len(),
            duration(h.mean().round() as u64),
            duration(h.value_at_quantile(0.50)),
            duration(h.value_at_quantile(0.99)),
            duration(h.value_at_quantile(0.999)),
            duration(h.max()),
        );
    }
    println!();

    run.finish()
}

/// One round trip: push message `k` of `len` bytes, wait for its echo, check it.
/// Returns the round-trip time in nanoseconds (push to echo in hand).
fn round_trip(client: &mut Client, clock: &Clock, k: u64, len: usize, yield_when_idle: bool) -> Result<u64> {
    let start = clock.now();
    loop {
        if let Some(buf) = client.alloc(len)? {
            fill(buf, k);
            break;
        }
        // Full: only possible if the server stopped popping. Poll until room.
        let now = clock.now();
        client.poll(now);
        check_progress(client, now - start, k)?;
    }
    client.push(msg_type(k))?;
    loop {
        // Look first, poll when nothing is there: over shared memory `front` is a
        // read of the ring, and `poll` only matters for the control channel. One
        // clock read per turn serves `poll` and the stall check.
        if let Some(m) = client.front() {
            let rtt = clock.now() - start;
            check_echo(k, len, m.msg_type, m.payload)?;
            client.pop();
            return Ok(rtt);
        }
        let now = clock.now();
        client.poll(now);
        if yield_when_idle {
            std::thread::yield_now();
        }
        check_progress(client, now - start, k)?;
    }
}

/// A closed connection or a stalled benchmark must say so rather than hang.
fn check_progress(client: &Client, waited: Nanos, k: u64) -> Result<()> {
    if !client.is_connected() {
        bail!(
            "the connection closed while waiting for echo {k}: {}",
            client.close_reason().map_or_else(|| "no reason given".to_string(), |r| r.to_string())
        );
    }
    if waited > STALL.as_nanos() as Nanos {
        bail!("no echo of message {k} within {STALL:?} ({})", client.counters());
    }
    Ok(())
}

/// The message type of message `k` (any user type; varied so a mix-up shows).
fn msg_type(k: u64) -> u16 {
    (k % 1000) as u16
}

/// Message `k`'s content: its number, then a pattern that depends on it.
fn fill(buf: &mut [u8], k: u64) {
    let (head, tail) = buf.split_at_mut(8.min(buf.len()));
    head.copy_from_slice(&k.to_le_bytes()[..head.len()]);
    for (i, b) in tail.iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
}

fn check_echo(k: u64, len: usize, ty: u16, payload: &[u8]) -> Result<()> {
    let mut want = [0u8; 256];
    let want = &mut want[..len];
    fill(want, k);
    if ty != msg_type(k) || payload != &want[..] {
        let at = payload.iter().zip(want.iter()).position(|(a, b)| a != b);
        bail!(
            "echo {k} is wrong: type {ty} (sent {}), {} bytes (sent {len}), first differing byte {at:?}",
            msg_type(k),
            payload.len()
        );
    }
    Ok(())
}

/// Waits for the child's "listening <addr>" line, at most `timeout`.
fn wait_listening(stdout: std::process::ChildStdout, timeout: Duration) -> Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    let line = match rx.recv_timeout(timeout) {
        Ok(r) => r.context("cannot read from the server process")?,
        Err(_) => bail!("the server did not start listening within {timeout:?}"),
    };
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| anyhow!("the server did not start (it said {:?})", line.trim()))?;
    addr.parse().with_context(|| format!("the server sent a bad address {addr:?}"))
}

/// The child process and the files of this run; stops and removes them when dropped,
/// so an error anywhere still leaves nothing behind.
struct Run {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    work: PathBuf,
    shm: ShmDir,
}

impl Run {
    /// Stops the server (closing its stdin asks it to exit; it is killed if it does
    /// not within 5 s) and removes every file of the run.
    /// Returns what happened, and whether the server ended cleanly.
    fn stop(&mut self) -> Result<(String, bool)> {
        let mut how = String::from("no server");
        let mut clean = true;
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(s) = child.try_wait()? {
                    break Some(s);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            clean = matches!(status, Some(s) if s.success());
            how = match status {
                Some(s) if s.success() => "server exited".into(),
                Some(s) => format!("server exited with {s}"),
                None => {
                    let _ = child.kill();
                    let s = child.wait()?;
                    format!("server did not exit when asked: killed ({s})")
                }
            };
        }
        // Shared-memory files are never removed implicitly (they are the sessions);
        // this is the explicit removal, possible once neither side holds them.
        let mut removed = 0;
        if self.shm.dir().is_dir() {
            for e in self.shm.list()? {
                if self.shm.remove(&e.server, &e.client)? {
                    removed += 1;
                }
            }
            self.shm.remove_stale_temps()?;
        }
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))?;
        }
        Ok((format!("{how}; removed {removed} shared-memory files and {}", self.work.display()), clean))
    }

    fn finish(mut self) -> Result<()> {
        let (said, clean) = self.stop()?;
        println!("cleanup: {said}");
        if !clean {
            bail!("the server did not end cleanly: {said}");
        }
        Ok(())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.is_some() || self.work.exists() {
            if let Err(e) = self.stop() {
                eprintln!("echo: cleanup failed: {e:#}");
            }
        }
    }
}

/// Removes what runs killed before their cleanup left behind: temp dirs and
/// shared-memory files named after a process that no longer exists.
fn sweep_leftovers() {
    let dead = |name: &str| -> Option<u32> {
        let pid: u32 = name.strip_prefix("tcpshm-echo-")?.split('-').next()?.parse().ok()?;
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
    };
    let mut pids = Vec::new();
    for dir in [std::env::temp_dir(), PathBuf::from(ShmDir::DEFAULT_DIR)] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(dead) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    for pid in pids {
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("tcpshm-echo-{pid}")));
        if let Ok(shm) = ShmDir::new(ShmDir::DEFAULT_DIR, &format!("tcpshm-echo-{pid}-")) {
            for e in shm.list().unwrap_or_default() {
                let _ = shm.remove(&e.server, &e.client);
            }
            let _ = shm.remove_stale_temps();
        }
        println!("removed the files of an interrupted run (pid {pid})");
    }
}

// ---------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------

fn name(s: &str) -> Result<Name> {
    s.parse::<Name>().map_err(|e| anyhow!("invalid name {s:?}: {e}"))
}

/// The cpus this process may run on.
fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => vec![0],
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
fn pin_to(cpu: usize) -> Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// "model, N cpus (M usable), Linux x.y".
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let online = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let usable = allowed_cpus().len();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {online} cpus ({usable} usable by this process), Linux {}", kernel.trim())
}

/// A duration in nanoseconds, with three significant digits.
fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=9_999 => format!("{:.2} µs", ns as f64 / 1e3),
        10_000..=99_999 => format!("{:.1} µs", ns as f64 / 1e3),
        100_000..=999_999 => format!("{:.0} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// xorshift64*: enough randomness to choose payload sizes, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
