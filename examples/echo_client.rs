//! # An echo client that survives anything: the reconnect loop
//!
//! ```sh
//! cargo run --release --example echo_server &
//! cargo run --release --example echo_client -- --mode ping --messages 100000
//! cargo run --release --example echo_client -- --mode stream --messages 1000000 --transport shm
//! cargo run --release --example echo_client -- --mode stream --until-reconnects 2   # kill -9 the server twice
//! ```
//!
//! Kill the server (`kill -9`) and start it again while the client runs: the client
//! notices, retries with backoff, keeps queueing its messages meanwhile, and carries
//! on where the session left off when the server is back.
//!
//! ## Staying connected
//!
//! The library starts no thread and reads no clock, so reconnecting is not hidden
//! inside it: [`Reconnect`] is a helper on top that does it from its own
//! `poll(now)`. Wrap the client in it, poll it as you would the client, and read its
//! events:
//!
//! * Down is noticed from the connection itself (the peer closed, a read failed, the
//!   heartbeat timeout expired, the shared-memory peer's lock vanished):
//!   `ReconnectEvent::Disconnected` says why.
//! * It logs in again at once, then with exponential backoff (doubling from
//!   `--retry-min-ms` to `--retry-max-ms`), on the caller's clock, so a restarting
//!   server is found quickly and a dead one is not hammered; each attempt blocks for
//!   at most the configured `connect_timeout` per step.
//! * It retries exactly the errors [`ConnectError::is_retryable`] says are worth it
//!   (no server yet, a timeout, a server that still sees our previous connection)
//!   and stops on the others with an event the application acts on: lost state
//!   (`LostState`: the two sides' sequence numbers do not fit — a human decides; the
//!   library never resets a session silently), a refusal (`Failed`), or
//!   `--give-up-secs` of outage (`GaveUp`).
//! * Meanwhile the application keeps pushing: `alloc`/`push` work while
//!   disconnected, the messages wait in the session's queue (the store, a file; or the
//!   shared-memory ring) and leave after the next login, over whichever transport,
//!   with everything the server had not consumed. `alloc` returns `None` when the
//!   queue is full: that is the only limit.
//! * `Connected` says what the login resumed: how many queued messages leave (again)
//!   from the server's consumed count on; `SessionReset` follows if the server came
//!   back under another name (the old session was dropped, by design: a new trading
//!   day).
//!
//! ## Modes
//!
//! * `ping`: one message in flight, as the benchmark; prints round-trip percentiles
//!   (a reconnect shows as the maximum).
//! * `stream`: up to `--window` numbered messages in flight; every echo is checked
//!   to arrive exactly once and in order, across disconnects and server restarts.
//!   The one repeat allowed is the echo of the message the server was handling when
//!   it died: its handler had pushed the echo but not yet popped the request (the
//!   commit point), so it handles that request again after the restart. The check
//!   accepts it only in that shape — the same number as the previous echo, at most
//!   once per reconnect since that message was pushed — drops it, and reports how
//!   many there were. Anything else out of order fails the run. With
//!   `--until-reconnects N` it streams on past `--messages` until the connection
//!   came back N times: kill the server (`kill -9`) and restart it meanwhile.
//!
//! The client's session (its queue, and how many echoes it consumed) persists in
//! `--storage-dir` across runs of this program too; echoes left over from an earlier
//! run (it was killed with messages in flight) arrive first and are counted apart.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tcpshm::clock;
use tcpshm::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "tcpshm echo client with a reconnect loop: ping (latency) or stream (exactly-once check) mode")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:12345")]
    connect: SocketAddr,
    /// This client's name (with the server's, it names the persistent session).
    #[arg(long, default_value = "echo-client")]
    name: String,
    /// Directory of this client's session store [default: <temp dir>/tcpshm-echo-client].
    #[arg(long)]
    storage_dir: Option<PathBuf>,
    /// Transport to use.
    #[arg(long, value_enum, default_value_t = Mode::Tcp)]
    transport: Mode,
    /// Directory of the shared-memory files (the server's).
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Prefix of the shared-memory file names (the server's).
    #[arg(long, default_value = "tcpshm-")]
    shm_prefix: String,
    /// What to do.
    #[arg(long, value_enum, default_value_t = Run::Ping)]
    mode: Run,
    /// Messages to send (and echoes to check).
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Payload sizes in bytes, comma-separated, chosen at random per message (each at
    /// least 16: the stream check puts two numbers in every message).
    #[arg(long, value_delimiter = ',', default_values_t = [16, 36, 68, 200])]
    sizes: Vec<usize>,
    /// Stream mode: most messages in flight (sent, echo not yet checked).
    #[arg(long, default_value_t = 1024)]
    window: u64,
    /// Largest message in bytes (the server's).
    #[arg(long, default_value_t = 64 * 1024)]
    max_message: u32,
    /// Bytes of the persistent send queue (a power of two).
    #[arg(long, default_value_t = 4 << 20)]
    queue_bytes: usize,
    /// Heartbeat after this many milliseconds of silence.
    #[arg(long, default_value_t = 1_000)]
    heartbeat_ms: u64,
    /// Consider the server gone after this many milliseconds of silence.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Bound on each connect attempt, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    connect_timeout_ms: u64,
    /// First retry delay after a failed connect, in milliseconds (then doubling).
    #[arg(long, default_value_t = 10)]
    retry_min_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    retry_max_ms: u64,
    /// Stream mode: keep streaming past --messages until the connection came back this
    /// many times (kill the server meanwhile, restart it, watch the check hold).
    #[arg(long, default_value_t = 0)]
    until_reconnects: u64,
    /// Give up after being disconnected this many seconds (0: never).
    #[arg(long, default_value_t = 60)]
    give_up_secs: u64,
    /// Seed of the random payload sizes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// TCP.
    Tcp,
    /// Shared memory (login over TCP).
    Shm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Run {
    /// One message in flight; print round-trip percentiles.
    Ping,
    /// Many in flight; check every echo arrives exactly once, in order.
    Stream,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("echo_client: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if args.sizes.is_empty() || args.sizes.iter().any(|&s| s < 16 || s > args.max_message as usize) {
        bail!("--sizes must be between 16 and --max-message ({}) bytes", args.max_message);
    }
    let name: Name = args.name.parse().map_err(|e| anyhow!("invalid --name {:?}: {e}", args.name))?;
    let storage = args.storage_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("tcpshm-echo-client"));
    let kind = match args.transport {
        Mode::Tcp => TransportKind::Tcp,
        Mode::Shm => TransportKind::Shm,
    };
    let mut cfg = ClientConfig::new(name, &storage);
    cfg.connect_timeout = Duration::from_millis(args.connect_timeout_ms.max(1));
    // Where messages pushed before the first login wait: the store, or the rings of
    // this session's last shared-memory connection. Either way they leave with the
    // first login, whatever its transport.
    cfg.transport = kind;
    // The session's settings, the same type the server configures.
    let c = &mut cfg.connection;
    c.shm.dir = args.shm_dir.clone();
    c.shm.prefix = args.shm_prefix.clone();
    c.queue_bytes = args.queue_bytes;
    c.session.max_message = args.max_message;
    c.session.liveness.heartbeat_interval = args.heartbeat_ms * 1_000_000;
    c.session.liveness.timeout = args.timeout_ms * 1_000_000;

    let client = Client::open(cfg, clock::now())
        .with_context(|| format!("cannot open the session of {name} in {}", storage.display()))?;
    println!(
        "{name}: session in {} (last server: {}), {kind} to {}",
        storage.display(),
        client.last_server().map_or_else(|| "none".to_string(), |n| n.to_string()),
        args.connect
    );
    let retry = ReconnectConfig {
        first_retry: args.retry_min_ms.max(1) * 1_000_000,
        max_retry: args.retry_max_ms.max(args.retry_min_ms.max(1)) * 1_000_000,
        give_up_after: (args.give_up_secs > 0).then(|| args.give_up_secs * 1_000_000_000),
    };
    let mut link = Link { r: Reconnect::new(client, args.connect, kind, retry), reconnects: 0, resent: 0 };
    // The first connection goes through the same helper: a server not up yet is
    // simply retried.
    while !link.r.is_connected() {
        link.poll()?;
        std::thread::sleep(Duration::from_millis(1));
    }

    match args.mode {
        Run::Ping => ping(&args, &mut link)?,
        Run::Stream => stream(&args, &mut link)?,
    }
    println!("counters: {}", link.r.counters());
    link.r.close(CloseReason::Requested);
    Ok(())
}

// ---------------------------------------------------------------------------------
// Staying connected
// ---------------------------------------------------------------------------------

/// The client behind the reconnect helper, and what this program counts of it.
struct Link {
    r: Reconnect,
    /// Successful logins after the first.
    reconnects: u64,
    /// Messages queued in this client that left (again) at logins.
    resent: u64,
}

impl Link {
    /// One turn: polls (logging in again when due) and reports what happened.
    /// Returns whether the client is connected; `Err` for what retrying cannot fix.
    fn poll(&mut self) -> Result<bool> {
        let up = self.r.poll(clock::now());
        while let Some(event) = self.r.next_event() {
            match event {
                ReconnectEvent::Connected { server, transport, resent, first, down_for, attempts, .. } => {
                    let what = format!("{resent} queued messages (re)sent from the server's consumed count");
                    if first {
                        println!("connected to {server} over {transport}: {what}");
                    } else {
                        self.reconnects += 1;
                        let after = Duration::from_nanos(down_for);
                        println!("reconnected to {server} over {transport} after {after:.0?} and {attempts} attempts: {what}");
                    }
                    self.resent += resent;
                }
                ReconnectEvent::SessionReset { server, previous, dropped } => println!(
                    "NEW SESSION: the server is now {server} (was {}); the old session's {dropped} queued messages \
                     were dropped",
                    previous.map_or_else(|| "none".to_string(), |n| n.to_string())
                ),
                ReconnectEvent::Disconnected { reason } => {
                    println!("disconnected: {reason}; {} messages queued, reconnecting", self.r.counters().queued());
                }
                ReconnectEvent::Retrying { error, attempt, retry_in } => {
                    if attempt == 1 || attempt.is_power_of_two() {
                        println!(
                            "connect attempt {attempt} failed: {error}; retrying in {:?}",
                            Duration::from_nanos(retry_in)
                        );
                    }
                }
                ReconnectEvent::LostState { error } => {
                    return Err(error)
                        .context("one side lost its state: the session cannot resume (decide, then reset)");
                }
                ReconnectEvent::Failed { error } => {
                    return Err(error).context("the server refused the session for good")
                }
                ReconnectEvent::GaveUp { down_for, attempts } => {
                    bail!("no connection for {:?} ({attempts} attempts), giving up", Duration::from_nanos(down_for))
                }
                other => println!("{other:?}"),
            }
        }
        Ok(up)
    }
}

// ---------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------

/// A message: `[run id: u64][number: u64][pattern...]`, length chosen from `sizes`
/// by the number, so the receiver can check every byte and the length.
struct Content {
    run: u64,
    sizes: Vec<usize>,
    seed: u64,
}

impl Content {
    fn len(&self, k: u64) -> usize {
        let h = (k ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.sizes[(h >> 40) as usize % self.sizes.len()]
    }

    fn fill(&self, buf: &mut [u8], k: u64) {
        buf[..8].copy_from_slice(&self.run.to_le_bytes());
        buf[8..16].copy_from_slice(&k.to_le_bytes());
        for (i, b) in buf[16..].iter_mut().enumerate() {
            *b = (k as u8).wrapping_mul(13).wrapping_add(i as u8);
        }
    }

    /// The (run, number) of a message, if its bytes are what that number's message
    /// holds.
    fn check(&self, payload: &[u8]) -> Result<(u64, u64)> {
        if payload.len() < 16 {
            bail!("echo of {} bytes: too short to be ours", payload.len());
        }
        let run = u64::from_le_bytes(payload[..8].try_into()?);
        let k = u64::from_le_bytes(payload[8..16].try_into()?);
        if run == self.run {
            if payload.len() != self.len(k) {
                bail!("echo of message {k} has {} bytes, {} were sent", payload.len(), self.len(k));
            }
            let bad = payload[16..]
                .iter()
                .enumerate()
                .position(|(i, b)| *b != (k as u8).wrapping_mul(13).wrapping_add(i as u8));
            if let Some(i) = bad {
                bail!("echo of message {k} differs at byte {}", 16 + i);
            }
        }
        Ok((run, k))
    }
}

/// Pushes message `k`; `Ok(false)` if the queue is full now.
fn push(client: &mut Reconnect, content: &Content, k: u64) -> Result<bool> {
    let len = content.len(k);
    let Some(buf) = client.alloc(len)? else { return Ok(false) };
    content.fill(buf, k);
    client.push((k % 0xFF00) as u16)?;
    Ok(true)
}

fn ping(args: &Args, link: &mut Link) -> Result<()> {
    let content = Content { run: run_id(), sizes: args.sizes.clone(), seed: args.seed };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)?;
    let started = Instant::now();
    // The previous message's (reconnects when pushed, repeats seen): see `stream`.
    let mut last = (0u64, 0u64);
    let mut repeats = 0;
    for k in 0..args.messages {
        let t = Instant::now();
        let pushed_at = link.reconnects;
        while !push(&mut link.r, &content, k)? {
            link.poll()?;
        }
        loop {
            if let Some(m) = link.r.front() {
                let rtt = t.elapsed().as_nanos() as u64;
                let (run, got) = content.check(m.payload)?;
                link.r.pop();
                if run != content.run {
                    continue; // an echo of an earlier run of this client
                }
                if got + 1 == k && link.reconnects - last.0 > last.1 {
                    // The previous request, handled again by a restarted server.
                    last.1 += 1;
                    repeats += 1;
                    continue;
                }
                if got != k {
                    bail!("expected the echo of message {k}, got {got}");
                }
                hist.record(rtt)?;
                last = (pushed_at, 0);
                break;
            }
            link.poll()?;
        }
    }
    println!(
        "ping: {} round trips in {:.2?}: mean {}, p50 {}, p99 {}, p99.9 {}, max {}; {} reconnects, {} repeated \
         echoes dropped",
        hist.len(),
        started.elapsed(),
        duration(hist.mean() as u64),
        duration(hist.value_at_quantile(0.5)),
        duration(hist.value_at_quantile(0.99)),
        duration(hist.value_at_quantile(0.999)),
        duration(hist.max()),
        link.reconnects,
        repeats
    );
    Ok(())
}

fn stream(args: &Args, link: &mut Link) -> Result<()> {
    let content = Content { run: run_id(), sizes: args.sizes.clone(), seed: args.seed };
    let window = args.window.max(1);
    let (mut sent, mut echoed) = (0u64, 0u64);
    let (mut repeats, mut earlier_run) = (0u64, 0u64);
    // For each message in flight, the reconnect count when it was pushed. A repeated
    // echo is possible only if the server restarted while it held the request: at
    // most one repeat per reconnect since the push.
    let mut pushed_at: VecDeque<u64> = VecDeque::with_capacity(window as usize);
    // The last echoed message's: (reconnects when pushed, repeats seen).
    let mut last = (0u64, 0u64);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let more = |sent: u64, link: &Link| sent < args.messages || link.reconnects < args.until_reconnects;
    while echoed < sent || more(sent, link) {
        // Keep pushing, connected or not: the queue holds what the server has not
        // consumed and the next login sends it.
        while more(sent, link) && sent - echoed < window && push(&mut link.r, &content, sent)? {
            pushed_at.push_back(link.reconnects);
            sent += 1;
        }
        link.poll()?;
        while let Some(m) = link.r.front() {
            let (run, k) = content.check(m.payload)?;
            link.r.pop();
            if run != content.run {
                earlier_run += 1;
            } else if k == echoed && k < sent {
                echoed += 1;
                last = (pushed_at.pop_front().unwrap_or(0), 0);
            } else if k + 1 == echoed && link.reconnects - last.0 > last.1 {
                repeats += 1;
                last.1 += 1;
            } else {
                bail!(
                    "echo of message {k} arrived when {echoed} was expected ({})",
                    if k < echoed { "a duplicate" } else { "messages lost or reordered" }
                );
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            println!(
                "stream: {echoed}/{} echoed in order, {} in flight, {} reconnects",
                args.messages.max(sent),
                sent - echoed,
                link.reconnects
            );
        }
    }
    println!(
        "stream: all {} echoes arrived exactly once and in order in {:.2?} ({} reconnects, {} messages sent again \
         at logins, {} repeated echoes of a message the server was handling when it died, dropped; {} echoes of \
         an earlier run)",
        echoed,
        started.elapsed(),
        link.reconnects,
        link.resent,
        repeats,
        earlier_run
    );
    Ok(())
}

/// An id for this run, so echoes of messages an earlier run left in the session are
/// told apart (the session outlives the process).
fn run_id() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// A duration in nanoseconds, with about three significant digits.
fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.3} µs", ns as f64 / 1e3),
        _ => format!("{:.3} ms", ns as f64 / 1e6),
    }
}
