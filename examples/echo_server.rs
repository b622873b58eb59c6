//! # An echo server
//!
//! ```sh
//! cargo run --release --example echo_server -- --listen 127.0.0.1:12345
//! cargo run --release --example echo_client -- --connect 127.0.0.1:12345 --mode stream
//! ```
//!
//! Every message a client sends comes back to it, same type, same bytes. Clients may
//! use TCP or shared memory (they choose at login). `--groups N` spreads the clients
//! over N groups, each polled by its own thread; the main thread accepts and logs
//! clients in (the server's control part) and prints statistics. (For the lowest
//! latency with one group, poll everything from one thread with `Server::poll`, as
//! the `echo` example does.)
//!
//! ## Persistence, and how to stop it
//!
//! Each client's session lives in files: its store (send queue, consumed count) under
//! `--storage-dir`, and — once it has used shared memory — its rings in
//! `<shm-dir>/<shm-prefix><server>@<client>.shm`. A session is one numbered sequence
//! whatever carries it: a client may log in over TCP one time and over shared memory
//! the next, and resumes where it was. Stop the
//! server any way you like — Ctrl-C, `kill -9` — and start it again with the same
//! `--name` and directories: every client resumes where it was; nothing is lost or
//! repeated up to the commit point (`pop`). A server started under another `--name`
//! starts fresh sessions (the "server renamed every trading day" rule). The files
//! stay until you remove them (`rm -r <storage-dir>`, `rm <shm-dir>/<shm-prefix>*`).
//!
//! ## What "exactly once" means for a handler
//!
//! The library delivers each message to the handler until the handler pops it, and
//! never after. The echo handler pushes the reply, then returns `Handled::Pop`; if the
//! process dies between the two (a window of nanoseconds), the request is delivered
//! again after the restart and echoed a second time. Replies of a handler are thus
//! at-least-once across a crash of the handler's process; a handler whose effect must
//! be exactly-once makes it idempotent (e.g. by an id in the message, as the
//! `echo_client --mode stream` check does on its side).

use anyhow::{anyhow, Context, Result};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpshm::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "tcpshm echo server: every message goes back to its sender (TCP and shared memory)")]
struct Args {
    /// Address to listen on (repeat for several, e.g. an IPv4 and an IPv6 one).
    #[arg(long, default_value = "127.0.0.1:12345")]
    listen: Vec<SocketAddr>,
    /// This server's name. Clients resume their sessions only with a server of the
    /// same name; a new name starts fresh sessions.
    #[arg(long, default_value = "EchoServer")]
    name: String,
    /// Directory of the per-client session stores [default: <temp dir>/tcpshm-echo-server].
    #[arg(long)]
    storage_dir: Option<PathBuf>,
    /// Transports clients may use.
    #[arg(long, value_enum, default_value_t = Transports::Both)]
    transport: Transports,
    /// Number of groups, each polled by its own thread.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Directory of the shared-memory files (clients must use the same).
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Prefix of the shared-memory file names (clients must use the same).
    #[arg(long, default_value = "tcpshm-")]
    shm_prefix: String,
    /// Largest message in bytes (clients must use the same).
    #[arg(long, default_value_t = 64 * 1024)]
    max_message: u32,
    /// Bytes of each send queue and of each shared-memory ring (a power of two, at
    /// least twice the largest message's frame).
    #[arg(long, default_value_t = 4 << 20)]
    queue_bytes: usize,
    /// Most connections at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Heartbeat after this many milliseconds of silence.
    #[arg(long, default_value_t = 1_000)]
    heartbeat_ms: u64,
    /// Disconnect a client silent for this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Messages handled per connection per poll (fairness between connections).
    #[arg(long, default_value_t = 256)]
    messages_per_poll: usize,
    /// Sync the TCP queues to disk every N operations (survives power loss; slow).
    /// Default: page cache only (survives a crash of the process, not of the machine).
    #[arg(long)]
    sync_every: Option<u32>,
    /// Sleep this many microseconds when a group thread finds nothing to do for a
    /// while. 0 busy-polls (lowest latency; one cpu per group thread).
    #[arg(long, default_value_t = 0)]
    idle_sleep_us: u64,
    /// Print statistics every this many seconds (0: never).
    #[arg(long, default_value_t = 5)]
    stats_secs: u64,
    /// Do not print logons and disconnects.
    #[arg(long)]
    quiet: bool,
    /// Crash test of the commit point: once N echoes were pushed, kill this process
    /// (SIGKILL) right after pushing an echo, before its request is popped, at a
    /// message that is not the first one handled in its poll (so the replies to the
    /// requests popped just before are at stake too; with one message in flight, as
    /// in `echo_client --mode ping`, that never happens). After a restart that last
    /// request is handled again; nothing may be lost (see the module docs).
    #[arg(long, value_name = "N")]
    kill_self_after_echo: Option<u64>,
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

/// What a group's thread shares with the main thread, for the statistics.
#[derive(Default)]
struct GroupStats {
    connections: AtomicUsize,
    echoed: AtomicU64,
}

/// Echoes every message, zero-copy from the request into the reply's place in the
/// send queue.
struct Echo {
    stats: Arc<GroupStats>,
    quiet: bool,
    kill_after: Option<u64>,
    echoed: u64,
    /// Messages handled in the current poll (reset by the polling loop).
    in_this_poll: u32,
}

impl GroupHandler for Echo {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        if !self.quiet {
            println!("group {}: {} logged on from {}", conn.group(), conn.client(), conn.peer());
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match conn.alloc(msg.payload.len()) {
            Ok(Some(buf)) => buf.copy_from_slice(msg.payload),
            // The client is not reading its echoes and our queue to it is full: keep
            // the request (it is offered again next poll). Backpressure, not loss.
            Ok(None) => return Handled::Keep,
            Err(e) => {
                conn.close_with(format!("cannot echo a {}-byte message: {e}", msg.payload.len()));
                return Handled::Keep;
            }
        }
        if let Err(e) = conn.push(msg.msg_type) {
            conn.close_with(format!("cannot echo: {e}"));
            return Handled::Keep;
        }
        self.stats.echoed.fetch_add(1, Ordering::Relaxed);
        self.echoed += 1;
        self.in_this_poll += 1;
        if self.kill_after.is_some_and(|n| self.echoed >= n) && self.in_this_poll >= 2 {
            println!("killing this process after echo {} of {}, before its pop", self.echoed, conn.client());
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        }
        Handled::Pop
    }

    fn on_disconnected(&mut self, client: &Name, reason: &CloseReason) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        if !self.quiet {
            println!("{client} disconnected: {reason}");
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("echo_server: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let name: Name = args.name.parse().map_err(|e| anyhow!("invalid --name {:?}: {e}", args.name))?;
    let storage = args.storage_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("tcpshm-echo-server"));
    let mut cfg = ServerConfig::new(name, &storage);
    cfg.listen = args.listen.clone();
    cfg.enable_tcp = args.transport != Transports::Shm;
    cfg.enable_shm = args.transport != Transports::Tcp;
    cfg.max_connections = args.max_connections;
    cfg.messages_per_poll = args.messages_per_poll;
    // Every session's settings, the same type a client configures.
    let c = &mut cfg.connection;
    c.shm.dir = args.shm_dir.clone();
    c.shm.prefix = args.shm_prefix.clone();
    c.shm.ring_bytes = args.queue_bytes;
    c.queue_bytes = args.queue_bytes;
    c.session.max_message = args.max_message;
    c.session.liveness.heartbeat_interval = args.heartbeat_ms * 1_000_000;
    c.session.liveness.timeout = args.timeout_ms * 1_000_000;
    if let Some(every) = args.sync_every {
        c.durability = Durability::Sync { every };
    }

    let stats: Vec<Arc<GroupStats>> = (0..args.groups.max(1)).map(|_| Arc::default()).collect();
    let handlers = stats
        .iter()
        .map(|s| Echo {
            stats: s.clone(),
            quiet: args.quiet,
            kill_after: args.kill_self_after_echo,
            echoed: 0,
            in_this_poll: 0,
        })
        .collect();
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), handlers).context("cannot start the server")?;
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    println!(
        "echo server {name} listening on {} ({:?} transport, {} group{}), sessions in {} and {}/{}*",
        addrs.join(", "),
        args.transport,
        stats.len(),
        if stats.len() == 1 { "" } else { "s" },
        storage.display(),
        args.shm_dir.display(),
        args.shm_prefix,
    );

    // One clock for every thread: `now` values must be comparable within a process.
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_nanos() as Nanos;

    let (mut control, groups) = server.split();
    let idle_sleep = Duration::from_micros(args.idle_sleep_us);
    for mut group in groups {
        let stats = stats[group.id()].clone();
        std::thread::Builder::new()
            .name(format!("group-{}", group.id()))
            .spawn(move || {
                // Busy-poll while messages flow; after a while without any, sleep
                // between polls if asked to (a latency/cpu trade-off that is yours).
                let mut seen = 0;
                let mut idle_polls = 0u32;
                loop {
                    group.handler().in_this_poll = 0;
                    group.poll(now());
                    let echoed = stats.echoed.load(Ordering::Relaxed);
                    if echoed != seen {
                        seen = echoed;
                        idle_polls = 0;
                    } else if !idle_sleep.is_zero() {
                        idle_polls = idle_polls.saturating_add(1);
                        if idle_polls > 10_000 {
                            std::thread::sleep(idle_sleep);
                        }
                    }
                }
            })
            .context("cannot start a group thread")?;
    }

    // The main thread: logins (rare, so it sleeps between polls) and statistics.
    let mut next_stats = Instant::now() + Duration::from_secs(args.stats_secs);
    let mut last_echoed = vec![0u64; stats.len()];
    let mut last_at = Instant::now();
    loop {
        control.poll(now());
        std::thread::sleep(Duration::from_micros(500));
        if args.stats_secs > 0 && Instant::now() >= next_stats {
            let secs = last_at.elapsed().as_secs_f64();
            last_at = Instant::now();
            next_stats += Duration::from_secs(args.stats_secs);
            let per_group: Vec<String> = stats
                .iter()
                .enumerate()
                .map(|(g, s)| {
                    let echoed = s.echoed.load(Ordering::Relaxed);
                    let rate = (echoed - last_echoed[g]) as f64 / secs;
                    last_echoed[g] = echoed;
                    format!("g{g}: {} conn, {echoed} echoed ({rate:.0}/s)", s.connections.load(Ordering::Relaxed))
                })
                .collect();
            let c = control.stats();
            println!(
                "stats: {} | logins: {} accepted, {} admitted, {} refused, {} timed out",
                per_group.join(" | "),
                c.accepted,
                c.admitted,
                c.refused,
                c.timed_out
            );
        }
    }
}
