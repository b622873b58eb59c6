//! # A sharded server: N groups on N threads
//!
//! ```sh
//! # A self-contained demonstration: 2 groups, 8 clients in this process, 5 seconds.
//! cargo run --release --example sharded_server -- --groups 2 --policy least-loaded --demo-clients 8 --demo-secs 5
//! # A server for your own clients (message types below), until Ctrl-C.
//! cargo run --release --example sharded_server -- --groups 4 --policy by-name
//! ```
//!
//! A tcpshm server is split into a **control part** (accepts connections, reads and
//! checks logins, decides where each client goes) and **groups** (each a set of
//! connections polled by exactly one thread). [`Server::split`] hands them out; here
//! every group gets its own thread and the control part stays on the main thread,
//! which also prints each group's connection count periodically.
//!
//! Where a new client goes is the [`ShardPolicy`]'s choice (`--policy`): round-robin,
//! least-loaded (fewest live connections) or by-name (a hash of the client's name: the
//! same client always lands in the same group, even across server restarts). A client
//! that reconnects to the same server process returns to the group that holds its
//! session, whatever the policy. `Policy` below shows how to choose a policy at run
//! time: a policy is just a trait with one method.
//!
//! The handler (`Aggregator`) keeps state per client — messages seen and a running
//! total — on its group's thread, so it needs no lock: a client's messages are all
//! handled by one thread. Message types:
//!
//! | type | payload | reply |
//! |---:|---|---|
//! | 1 `ECHO` | anything | the same message |
//! | 2 `ADD` | a u64 (little-endian) | type 3 `TOTAL`: `[total: u64][count: u64]`, the client's running sum and the number of `ADD`s in it |
//!
//! The running totals live in memory: they start again from zero when the server
//! process restarts, while the sessions (unconsumed messages) survive. An application
//! whose state must survive keeps it in its own store, updated before it pops.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpshm::prelude::*;
use tcpshm::server::GroupId;
use tcpshm::shm::ShmDir;

/// Message type: echo the message back.
const ECHO: u16 = 1;
/// Message type: add a u64 to the client's running total.
const ADD: u16 = 2;
/// Reply type: the running total and the count of additions.
const TOTAL: u16 = 3;

#[derive(Parser, Debug)]
#[command(about = "tcpshm sharded server: N groups on N threads, a chosen sharding policy, per-client state")]
struct Args {
    /// Address to listen on (repeatable) [default: 127.0.0.1:12346, or a free port with --demo-clients].
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// This server's name.
    #[arg(long, default_value = "ShardedServer")]
    name: String,
    /// Directory of the per-client session stores [default: <temp dir>/tcpshm-sharded-<pid> with
    /// --demo-clients (removed at exit), else <temp dir>/tcpshm-sharded-server].
    #[arg(long)]
    storage_dir: Option<PathBuf>,
    /// Number of groups (one thread each).
    #[arg(long, default_value_t = 2)]
    groups: usize,
    /// How new clients are spread over the groups.
    #[arg(long, value_enum, default_value_t = PolicyName::RoundRobin)]
    policy: PolicyName,
    /// Transports clients may use (demo clients use TCP unless this is `shm`).
    #[arg(long, value_enum, default_value_t = Transports::Both)]
    transport: Transports,
    /// Directory of the shared-memory files.
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Prefix of the shared-memory file names [default: tcpshm-, or tcpshm-sharded-<pid>- with --demo-clients].
    #[arg(long)]
    shm_prefix: Option<String>,
    /// Print per-group statistics every this many seconds (0: never).
    #[arg(long, default_value_t = 1)]
    stats_secs: u64,
    /// Group threads sleep this many microseconds between polls after a while
    /// without messages; 0 busy-polls (one cpu per group).
    #[arg(long, default_value_t = 50)]
    idle_sleep_us: u64,
    /// Start this many clients in this process (threads) that send ADD and ECHO
    /// messages and check every reply; the server stops when they are done.
    #[arg(long, default_value_t = 0)]
    demo_clients: usize,
    /// How long the demo clients run, in seconds.
    #[arg(long, default_value_t = 5)]
    demo_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyName {
    /// Each new client to the next group in turn.
    RoundRobin,
    /// Each new client to the group with the fewest live connections.
    LeastLoaded,
    /// By a hash of the client's name: stable across restarts.
    ByName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transports {
    /// TCP only.
    Tcp,
    /// Shared memory only (the login still uses TCP).
    Shm,
    /// Both.
    Both,
}

/// A sharding policy chosen at run time: the server is generic over its policy (no
/// virtual call when assigning), so a run-time choice is an enum that delegates.
enum Policy {
    RoundRobin(RoundRobin),
    LeastLoaded(LeastLoaded),
    ByName(ByName),
}

impl ShardPolicy for Policy {
    fn assign(&mut self, client: &Name, loads: &[usize]) -> GroupId {
        match self {
            Policy::RoundRobin(p) => p.assign(client, loads),
            Policy::LeastLoaded(p) => p.assign(client, loads),
            Policy::ByName(p) => p.assign(client, loads),
        }
    }
}

/// What a group's thread shares with the main thread, for the statistics.
#[derive(Default)]
struct GroupStats {
    connections: AtomicUsize,
    messages: AtomicU64,
}

/// One client's state, kept by its group's thread.
#[derive(Default)]
struct ClientState {
    messages: u64,
    total: u64,
    adds: u64,
}

/// Echoes or aggregates, with per-client state (no lock: one thread per group).
struct Aggregator {
    clients: HashMap<Name, ClientState>,
    stats: Arc<GroupStats>,
}

impl GroupHandler for Aggregator {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let known = self.clients.contains_key(conn.client());
        println!(
            "group {}: {} logged on from {}{}",
            conn.group(),
            conn.client(),
            conn.peer(),
            if known { " (returning)" } else { "" }
        );
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        // Compute the reply first; the state changes only once the reply is queued,
        // so a full queue (`Keep`: the message comes again) does not count twice.
        let state = self.clients.entry(*conn.client()).or_default();
        let (reply_type, reply_len, total) = match msg.msg_type {
            ECHO => (ECHO, msg.payload.len(), 0),
            ADD => {
                let Ok(bytes) = <[u8; 8]>::try_from(msg.payload) else {
                    conn.close_with(format!("ADD needs an 8-byte payload, got {} bytes", msg.payload.len()));
                    return Handled::Keep;
                };
                (TOTAL, 16, state.total.wrapping_add(u64::from_le_bytes(bytes)))
            }
            other => {
                conn.close_with(format!("unknown message type {other}"));
                return Handled::Keep;
            }
        };
        let buf = match conn.alloc(reply_len) {
            Ok(Some(buf)) => buf,
            Ok(None) => return Handled::Keep,
            Err(e) => {
                conn.close_with(format!("cannot reply: {e}"));
                return Handled::Keep;
            }
        };
        if reply_type == TOTAL {
            buf[..8].copy_from_slice(&total.to_le_bytes());
            buf[8..].copy_from_slice(&(state.adds + 1).to_le_bytes());
        } else {
            buf.copy_from_slice(msg.payload);
        }
        if let Err(e) = conn.push(reply_type) {
            conn.close_with(format!("cannot reply: {e}"));
            return Handled::Keep;
        }
        state.messages += 1;
        if reply_type == TOTAL {
            state.total = total;
            state.adds += 1;
        }
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        Handled::Pop
    }

    fn on_disconnected(&mut self, client: &Name, reason: &CloseReason) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        let s = self.clients.get(client);
        println!(
            "{client} disconnected ({reason}) after {} messages, total {}",
            s.map_or(0, |s| s.messages),
            s.map_or(0, |s| s.total)
        );
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("sharded_server: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if args.groups == 0 {
        bail!("--groups must be at least 1");
    }
    let demo = args.demo_clients > 0;
    let pid = std::process::id();
    let name: Name = args.name.parse().map_err(|e| anyhow!("invalid --name {:?}: {e}", args.name))?;
    let storage = args.storage_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(if demo { format!("tcpshm-sharded-{pid}") } else { "tcpshm-sharded-server".into() })
    });
    let prefix =
        args.shm_prefix
            .clone()
            .unwrap_or_else(|| if demo { format!("tcpshm-sharded-{pid}-") } else { "tcpshm-".into() });
    let mut cfg = ServerConfig::new(name, storage.join("server"));
    cfg.listen = if !args.listen.is_empty() {
        args.listen.clone()
    } else if demo {
        vec![SocketAddr::from(([127, 0, 0, 1], 0))]
    } else {
        vec![SocketAddr::from(([127, 0, 0, 1], 12346))]
    };
    cfg.enable_tcp = args.transport != Transports::Shm;
    cfg.enable_shm = args.transport != Transports::Tcp;
    connection_config(&mut cfg.connection, &args.shm_dir, &prefix);

    let policy = match args.policy {
        PolicyName::RoundRobin => Policy::RoundRobin(RoundRobin::default()),
        PolicyName::LeastLoaded => Policy::LeastLoaded(LeastLoaded),
        PolicyName::ByName => Policy::ByName(ByName),
    };
    let stats: Vec<Arc<GroupStats>> = (0..args.groups).map(|_| Arc::default()).collect();
    let handlers = stats.iter().map(|s| Aggregator { clients: HashMap::new(), stats: s.clone() }).collect();
    let server = Server::bind(cfg, AcceptAll, policy, handlers).context("cannot start the server")?;
    let addr = *server.local_addrs().first().context("the server listens nowhere")?;
    println!(
        "sharded server {name} on {addr}: {} groups, policy {:?}, sessions in {}",
        args.groups,
        args.policy,
        storage.display()
    );

    let t0 = Instant::now();
    let now = move || t0.elapsed().as_nanos() as Nanos;
    let stop = Arc::new(AtomicBool::new(false));
    let (mut control, groups) = server.split();
    let mut threads = Vec::new();
    for mut group in groups {
        let (stop, stats) = (stop.clone(), stats[group.id()].clone());
        let idle_sleep = Duration::from_micros(args.idle_sleep_us);
        let t = std::thread::Builder::new()
            .name(format!("group-{}", group.id()))
            .spawn(move || {
                // Busy-poll while messages flow; sleep between polls once idle for a
                // while (on a dedicated machine, busy-poll always: --idle-sleep-us 0).
                let (mut seen, mut idle) = (0, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    group.poll(now());
                    let m = stats.messages.load(Ordering::Relaxed);
                    if m != seen {
                        (seen, idle) = (m, 0);
                    } else if !idle_sleep.is_zero() {
                        idle = idle.saturating_add(1);
                        if idle > 1_000 {
                            std::thread::sleep(idle_sleep);
                        }
                    }
                }
            })
            .context("cannot start a group thread")?;
        threads.push(t);
    }

    let kind = if args.transport == Transports::Shm { TransportKind::Shm } else { TransportKind::Tcp };
    let demo_threads: Vec<_> = (0..args.demo_clients)
        .map(|i| {
            let dir = storage.join("clients");
            let prefix = prefix.clone();
            let shm_dir = args.shm_dir.clone();
            let secs = args.demo_secs;
            std::thread::spawn(move || demo_client(i, addr, kind, dir, shm_dir, prefix, Duration::from_secs(secs)))
        })
        .collect();

    // The main thread: the control part (logins are rare: it sleeps between polls)
    // and the statistics.
    let mut next_stats = Instant::now();
    loop {
        control.poll(now());
        if args.stats_secs > 0 && Instant::now() >= next_stats {
            next_stats += Duration::from_secs(args.stats_secs);
            let groups: Vec<String> = stats
                .iter()
                .enumerate()
                .map(|(g, s)| {
                    format!(
                        "group {g}: {} connections, {} messages",
                        s.connections.load(Ordering::Relaxed),
                        s.messages.load(Ordering::Relaxed)
                    )
                })
                .collect();
            println!("{}", groups.join(" | "));
        }
        if demo && demo_threads.iter().all(|t| t.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }

    // Demo mode: collect the clients' verdicts, stop the groups, remove the files.
    let mut failures = 0;
    for t in demo_threads {
        match t.join() {
            Ok(Ok(line)) => println!("{line}"),
            Ok(Err(e)) => {
                failures += 1;
                println!("demo client failed: {e:#}");
            }
            Err(_) => {
                failures += 1;
                println!("a demo client panicked");
            }
        }
    }
    // The clients closed their sessions; let the groups see it (and report it) before
    // they stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.iter().any(|s| s.connections.load(Ordering::Relaxed) > 0) && Instant::now() < deadline {
        control.poll(now());
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| anyhow!("a group thread panicked"))?;
    }
    drop(control);
    let per_group: Vec<String> = stats.iter().map(|s| s.messages.load(Ordering::Relaxed).to_string()).collect();
    println!("messages handled per group: {}", per_group.join(", "));
    if args.storage_dir.is_none() {
        std::fs::remove_dir_all(&storage).with_context(|| format!("cannot remove {}", storage.display()))?;
    }
    if args.shm_prefix.is_none() {
        let dir = ShmDir::new(&args.shm_dir, &prefix)?;
        for e in dir.list().unwrap_or_default() {
            dir.remove(&e.server, &e.client)?;
        }
    }
    if failures > 0 {
        bail!("{failures} demo clients failed");
    }
    Ok(())
}

/// A demo client: alternately ADDs a value and ECHOes a message, checks every reply
/// (the running total must be the sum of its own ADDs, in order), for `run_for`.
/// Sends a message every 100 µs or so: a demo, not a benchmark.
fn demo_client(
    i: usize,
    addr: SocketAddr,
    kind: TransportKind,
    dir: PathBuf,
    shm_dir: PathBuf,
    prefix: String,
    run_for: Duration,
) -> Result<String> {
    let name: Name = format!("demo-{i}").parse().map_err(|e| anyhow!("{e}"))?;
    let mut cfg = ClientConfig::new(name, dir);
    cfg.transport = kind;
    connection_config(&mut cfg.connection, &shm_dir, &prefix);
    let t0 = Instant::now();
    let now = || t0.elapsed().as_nanos() as Nanos;
    let mut client = Client::open(cfg, now()).with_context(|| format!("{name}: cannot open the session"))?;
    client.connect(addr, kind, now()).with_context(|| format!("{name}: cannot log in"))?;
    // The replies we expect, in order: a total after each ADD, the bytes of each ECHO.
    let mut expected: VecDeque<(u16, u64)> = VecDeque::new();
    let (mut sum, mut adds, mut sent, mut checked) = (0u64, 0u64, 0u64, 0u64);
    while t0.elapsed() < run_for || !expected.is_empty() {
        if t0.elapsed() < run_for && expected.len() < 16 {
            let add = sent % 2 == 0;
            let len = if add { 8 } else { 16 + (sent % 48) as usize };
            if let Some(buf) = client.alloc(len)? {
                let value = sent.wrapping_mul(2_654_435_761) % 1000;
                buf[..8].copy_from_slice(&value.to_le_bytes());
                buf[8..].iter_mut().for_each(|b| *b = sent as u8);
                if add {
                    sum += value;
                    adds += 1;
                    expected.push_back((TOTAL, sum));
                } else {
                    expected.push_back((ECHO, value));
                }
                client.push(if add { ADD } else { ECHO })?;
                sent += 1;
            }
        }
        client.poll(now());
        while let Some(m) = client.front() {
            let Some((ty, want)) = expected.pop_front() else { bail!("{name}: a reply nobody asked for") };
            let got = u64::from_le_bytes(m.payload.get(..8).context("short reply")?.try_into()?);
            if m.msg_type != ty || got != want {
                bail!("{name}: reply {checked}: type {} value {got}, expected type {ty} value {want}", m.msg_type);
            }
            if ty == TOTAL
                && m.payload.get(8..16) != Some(&adds.saturating_sub(expected_adds(&expected)).to_le_bytes()[..])
            {
                bail!("{name}: reply {checked}: wrong count of additions");
            }
            client.pop();
            checked += 1;
        }
        if !client.is_connected() {
            bail!("{name}: disconnected: {:?}", client.close_reason());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    client.close(CloseReason::Requested);
    Ok(format!("{name}: {checked} replies checked, total {sum} over {adds} additions"))
}

/// The settings of every session, server side and demo clients alike (one type).
fn connection_config(c: &mut ConnectionConfig, shm_dir: &Path, prefix: &str) {
    c.shm.dir = shm_dir.to_path_buf();
    c.shm.prefix = prefix.to_string();
    c.shm.ring_bytes = 1 << 20;
    c.queue_bytes = 1 << 20;
    c.session.max_message = 4096;
}

/// ADDs still waiting for their reply (the count in a TOTAL reply excludes them).
fn expected_adds(expected: &VecDeque<(u16, u64)>) -> u64 {
    expected.iter().filter(|(t, _)| *t == TOTAL).count() as u64
}
