//! # The first-run command: tcpshm's echo round trip beside the floors of its media
//!
//! ```sh
//! cargo run --release --example echo                  # SHM and TCP, 5 rounds, about 15 s
//! cargo run --release --example echo -- --messages 2000000 --transport shm
//! ```
//!
//! It starts an echo server as a child process (this same program, re-executed with
//! `--server`), pins the two processes to different cpus, and runs the reference
//! benchmark of the C++ TCPSHM: one message out, wait for its echo, again. Payloads are
//! 16, 36, 68 or 200 bytes at random; every echo is checked byte for byte (after its
//! time is taken). A round trip is timed with two clock reads: before `alloc`, and
//! when the echo is at the front of the receive queue.
//!
//! Each transport is measured beside its **floor**, between the same two processes on
//! the same cpus, with the same payloads in the same order:
//!
//! * **SHM floor**: one 256-byte slot per direction in a `/dev/shm` mapping; the
//!   payload is written in place, then a sequence number is published (release) and
//!   spun on (acquire). No framing, no queue, no persistence: what moving the bytes to
//!   the other core and back costs.
//! * **TCP floor**: a loopback TCP connection (`TCP_NODELAY`), non-blocking, both sides
//!   busy-polling `read`; a message is a 4-byte length and the payload, in one `write`.
//!
//! The run is made of rounds; in each, ours and its floor run back to back (in turns,
//! floor first or ours first). Machines — virtual ones especially — change speed over
//! minutes, so a ratio is taken within a round, and the table gives the median over
//! the rounds of ours/floor at p50, p99 and p99.9.
//!
//! ## What runs where
//!
//! * **The server process**: one thread, pinned. [`Server::poll`] does everything —
//!   logins (the control part looks at its sockets at most once per
//!   `readiness_interval`), the echo, liveness. The loop reads the clock when a
//!   message was handled and otherwise once every 1024 polls: the library needs `now`
//!   for its timers only. Between phases the same thread serves a floor instead, one
//!   thing at a time, as told by the client through a word in the shared mapping.
//! * **The client process**: the main thread, pinned to another cpu, connects a client
//!   for each phase of ours (closing it after, so no idle session of the other
//!   transport sits in the server's poll), and drives the floors itself.
//!
//! Both busy-poll: that is how tcpshm is meant to run on a latency-critical path. On a
//! machine shared with other work the tails show that work. With one cpu both
//! processes yield to each other (expect slow figures).
//!
//! ## Files
//!
//! Everything lives in a fresh directory under the system temp dir
//! (`tcpshm-echo-<pid>`: the server's and the clients' session stores) and in
//! `/dev/shm/tcpshm-echo-<pid>-*` (the shared-memory sessions and the floor's
//! mapping). Both are removed at the end, on success and on error. A run killed before
//! it could clean up (Ctrl-C, `kill -9`) leaves them behind — its server dies with it
//! — and the next run removes the leftovers of any run whose process is gone.

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use std::cell::UnsafeCell;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tcpshm::prelude::*;
use tcpshm::shm::ShmDir;

/// The benchmark's payload sizes, as in the C++ reference.
const SIZES: [usize; 4] = [16, 36, 68, 200];
/// Largest message both sides accept.
const MAX_MESSAGE: u32 = 4096;
/// Bytes of each send queue and ring: plenty for one message in flight.
const QUEUE_BYTES: usize = 1 << 20;
/// The server's name: with each client's name it identifies a persistent session.
const SERVER_NAME: &str = "EchoServer";
/// A round trip that takes longer than this means something is broken.
const STALL: Duration = Duration::from_secs(10);
/// Busy loops read the clock (and look at anything else) once per this many turns.
const SPINS_PER_CHECK: u32 = 1024;

#[derive(Parser, Debug)]
#[command(
    about = "Echo benchmark: starts an echo server as a child process and measures round trips over SHM and TCP, \
             each beside its floor"
)]
struct Args {
    /// Measured round trips per transport (ours; its floor measures as many), spread
    /// over the rounds.
    #[arg(long, default_value_t = 500_000)]
    messages: u64,
    /// Rounds: in each, every transport is measured back to back with its floor.
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Warm-up round trips before each measured phase [default: the smaller of 5,000
    /// and the phase's count].
    #[arg(long)]
    warmup: Option<u64>,
    /// Transports to measure, in this order (comma-separated).
    #[arg(long = "transport", value_enum, value_delimiter = ',', default_values_t = [Medium::Shm, Medium::Tcp])]
    transports: Vec<Medium>,
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
    /// (internal) The shared mapping of the floor and the phase word.
    #[arg(long, hide = true)]
    floor_file: Option<PathBuf>,
    /// (internal) The client's pid (the server dies with it).
    #[arg(long, hide = true)]
    parent: Option<u32>,
    /// (internal) The cpu to pin the server to.
    #[arg(long, hide = true)]
    cpu: Option<usize>,
    /// (internal) Yield in busy loops (one cpu for both processes).
    #[arg(long, hide = true)]
    yield_when_idle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Medium {
    /// Shared memory.
    Shm,
    /// TCP over the loopback interface.
    Tcp,
}

impl Medium {
    fn kind(self) -> TransportKind {
        match self {
            Medium::Shm => TransportKind::Shm,
            Medium::Tcp => TransportKind::Tcp,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Medium::Shm => "shm",
            Medium::Tcp => "tcp",
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

/// Nanoseconds on this process's monotonic clock (the library reads none).
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    #[inline]
    fn now(&self) -> Nanos {
        self.0.elapsed().as_nanos() as Nanos
    }
}

/// What busy loops do while waiting: spin, or yield when both processes share a cpu.
#[derive(Clone, Copy)]
struct Spin {
    yield_now: bool,
}

impl Spin {
    #[inline]
    fn wait(self) {
        if self.yield_now {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

// ---------------------------------------------------------------------------------
// The shared mapping: the phase word and the SHM floor's slots
// ---------------------------------------------------------------------------------

/// What the server process serves now (the client writes [`Shared::phase`]).
const IDLE: u64 = 0;
const OURS: u64 = 1;
const SHM_FLOOR: u64 = 2;
const TCP_FLOOR: u64 = 3;
const STOP: u64 = 4;

/// Bytes of a floor slot's payload area (the largest payload is 200).
const SLOT_DATA: usize = 240;

/// One word alone on its cache line.
#[repr(C, align(64))]
struct Line(AtomicU64);

/// A direction's mailbox of the SHM floor: the payload and its length, published by
/// the sequence number (stored last, with release).
#[repr(C, align(64))]
struct Slot {
    seq: AtomicU64,
    len: AtomicU64,
    data: UnsafeCell<[u8; SLOT_DATA]>,
}

/// The layout of the shared file. All zero is a valid state (phase `IDLE`, no
/// message).
#[repr(C)]
struct Shared {
    /// Client → server: what to serve now.
    phase: Line,
    /// Server → client: what it serves now.
    serving: Line,
    /// Client → server slot.
    ping: Slot,
    /// Server → client slot.
    pong: Slot,
}

/// A `/dev/shm` file mapped by both processes.
struct Mapping {
    map: memmap2::MmapMut,
}

impl Mapping {
    /// Creates the file (it must not exist) with room for [`Shared`], zeroed.
    fn create(path: &Path) -> Result<Mapping> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.set_len(std::mem::size_of::<Shared>().next_multiple_of(4096) as u64)?;
        Mapping::map(&f, path)
    }

    fn open(path: &Path) -> Result<Mapping> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Mapping::map(&f, path)
    }

    fn map(f: &std::fs::File, path: &Path) -> Result<Mapping> {
        // SAFETY: the file is private to this run (a name with the client's pid, created
        // with `create_new`, mode 0600) and never truncated while mapped; the two
        // processes share it only through `Shared`'s atomics and the slot protocol.
        let map = unsafe { memmap2::MmapMut::map_mut(f) }.with_context(|| format!("cannot map {}", path.display()))?;
        ensure!(map.len() >= std::mem::size_of::<Shared>(), "{} is too small", path.display());
        Ok(Mapping { map })
    }

    fn shared(&self) -> &Shared {
        // SAFETY: the mapping is page-aligned (more than `Shared`'s 64-byte alignment)
        // and at least `size_of::<Shared>()` long (checked in `map`); every bit pattern
        // is a valid `Shared` (atomics and bytes); the reference lives no longer than
        // `self`, which owns the mapping. Non-atomic data is behind `UnsafeCell`.
        unsafe { &*self.map.as_ptr().cast::<Shared>() }
    }
}

impl Shared {
    fn phase(&self) -> u64 {
        self.phase.0.load(Ordering::Acquire)
    }
}

impl Slot {
    /// Writes `len` payload bytes with `fill` and publishes them as message `seq`.
    ///
    /// The caller owns the slot: the peer reads it only after it sees `seq` and
    /// answers before this side writes it again (strict ping-pong).
    #[inline]
    fn put(&self, seq: u64, len: usize, fill: impl FnOnce(&mut [u8])) {
        // SAFETY: ping-pong: the peer does not read the data until the release store
        // below, and finished reading the previous message before it answered it.
        let data = unsafe { &mut *self.data.get() };
        fill(&mut data[..len]);
        self.len.store(len as u64, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Release);
    }

    /// The payload of the message this side saw published (with an acquire load of
    /// `seq`); valid until this side answers.
    #[inline]
    fn payload(&self) -> &[u8] {
        let len = (self.len.load(Ordering::Relaxed) as usize).min(SLOT_DATA);
        // SAFETY: the acquire load of `seq` that saw the peer's release store made the
        // data visible, and the peer does not write the slot again until we answer.
        let data = unsafe { &*self.data.get() };
        &data[..len]
    }
}

// ---------------------------------------------------------------------------------
// The server (child process)
// ---------------------------------------------------------------------------------

/// Echoes every message back, zero-copy: the reply is written into the send queue
/// straight from the request, which is still in place in the receive buffer or ring.
#[derive(Default)]
struct Echo {
    /// Messages echoed (the polling loop reads the clock when this moves).
    echoed: u64,
}

impl GroupHandler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match conn.alloc(msg.payload.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg.payload);
                if let Err(e) = conn.push(msg.msg_type) {
                    conn.close_with(format!("echo failed: {e}"));
                    return Handled::Keep;
                }
                self.echoed += 1;
                Handled::Pop
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

type EchoServer = Server<AcceptAll, RoundRobin, Echo>;

fn run_server(args: &Args) -> Result<()> {
    let storage = args.storage.clone().context("--server needs --storage")?;
    let prefix = args.shm_prefix.clone().context("--server needs --shm-prefix")?;
    let floor_file = args.floor_file.clone().context("--server needs --floor-file")?;
    // Die with the client, whatever kills it: no server left busy-polling a cpu.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    if let Some(parent) = args.parent {
        // It may have died before the line above.
        if rustix::process::getppid().map(|p| p.as_raw_pid() as u32) != Some(parent) {
            bail!("the client is gone");
        }
    }
    if let Some(cpu) = args.cpu {
        pin_to(cpu).with_context(|| format!("cannot pin the server to cpu {cpu}"))?;
    }
    let spin = Spin { yield_now: args.yield_when_idle };

    let mut cfg = ServerConfig::new(name(SERVER_NAME)?, storage);
    cfg.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    cfg.connection.shm.prefix = prefix;
    cfg.connection.shm.ring_bytes = QUEUE_BYTES;
    cfg.connection.queue_bytes = QUEUE_BYTES;
    cfg.connection.session.max_message = MAX_MESSAGE;
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo::default()])
        .context("cannot start the server")?;
    let addr = *server.local_addrs().first().context("the server listens nowhere")?;
    let floor = TcpListener::bind("127.0.0.1:0").context("cannot listen for the TCP floor")?;
    let floor_addr = floor.local_addr()?;
    let mapping = Mapping::open(&floor_file)?;
    let shared = mapping.shared();

    // Tell the client where we listen; it connects the TCP floor's socket at once.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr} floor {floor_addr}")
        .and_then(|_| out.flush())
        .context("cannot write to the client")?;
    drop(out);
    let (mut floor_stream, _) = floor.accept().context("no connection for the TCP floor")?;
    floor_stream.set_nodelay(true)?;
    floor_stream.set_nonblocking(true)?;
    drop(floor);

    let clock = Clock::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let phase = shared.phase();
        shared.serving.0.store(phase, Ordering::Release);
        match phase {
            OURS => serve_ours(&mut server, shared, &clock, spin),
            SHM_FLOOR => serve_shm_floor(shared, spin),
            TCP_FLOOR => serve_tcp_floor(&mut floor_stream, &mut buf, shared, spin)?,
            STOP => return Ok(()),
            _ => {
                while shared.phase() == phase {
                    spin.wait();
                }
            }
        }
    }
}

/// The hot loop: busy-poll the server (the echoes happen inside `poll`) until the
/// client asks for something else.
fn serve_ours(server: &mut EchoServer, shared: &Shared, clock: &Clock, spin: Spin) {
    let mut now = clock.now();
    let mut seen = server.groups()[0].handler().echoed;
    let mut spins = 0u32;
    loop {
        server.poll(now);
        let echoed = server.groups()[0].handler().echoed;
        spins = spins.wrapping_add(1);
        if echoed != seen {
            seen = echoed;
            now = clock.now();
        } else if spins.is_multiple_of(SPINS_PER_CHECK) {
            now = clock.now();
            if shared.phase() != OURS {
                return;
            }
        }
        if spin.yield_now {
            std::thread::yield_now();
        }
    }
}

/// The SHM floor's server side: copy each ping into the pong slot.
fn serve_shm_floor(shared: &Shared, spin: Spin) {
    let mut seq = shared.ping.seq.load(Ordering::Acquire);
    let mut spins = 0u32;
    loop {
        let s = shared.ping.seq.load(Ordering::Acquire);
        if s != seq {
            seq = s;
            let msg = shared.ping.payload();
            shared.pong.put(seq, msg.len(), |out| out.copy_from_slice(msg));
            continue;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_PER_CHECK) && shared.phase() != SHM_FLOOR {
            return;
        }
        spin.wait();
    }
}

/// The TCP floor's server side: read what is there, write back each whole message.
fn serve_tcp_floor(s: &mut TcpStream, buf: &mut [u8], shared: &Shared, spin: Spin) -> Result<()> {
    let mut have = 0;
    let mut spins = 0u32;
    loop {
        match s.read(&mut buf[have..]) {
            Ok(0) => bail!("the client closed the TCP floor's connection"),
            Ok(n) => {
                have += n;
                while have >= 4 {
                    let end = 4 + u32::from_le_bytes(buf[..4].try_into()?) as usize;
                    ensure!(end <= buf.len(), "TCP floor: a message of {end} bytes");
                    if have < end {
                        break;
                    }
                    write_all(s, &buf[..end])?;
                    buf.copy_within(end..have, 0);
                    have -= end;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPINS_PER_CHECK) && shared.phase() != TCP_FLOOR {
                    ensure!(have == 0, "TCP floor: a partial message at the end of the phase");
                    return Ok(());
                }
                spin.wait();
            }
            Err(e) => return Err(e).context("TCP floor: read"),
        }
    }
}

/// Writes all of `buf` to a non-blocking stream, spinning while it would block.
fn write_all(s: &mut TcpStream, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => bail!("TCP floor: the connection closed"),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("TCP floor: write"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The client (parent process)
// ---------------------------------------------------------------------------------

fn run_client(args: &Args) -> Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(args.messages >= args.rounds, "--messages must be at least --rounds");
    let per_phase = args.messages / args.rounds;
    let warmup = args.warmup.unwrap_or(per_phase.min(5_000));
    println!("machine: {}", machine());
    sweep_leftovers();

    let mut transports = args.transports.clone();
    transports.dedup();
    let shm_ok = Path::new(ShmDir::DEFAULT_DIR).is_dir();
    if !shm_ok && transports.contains(&Medium::Shm) {
        println!("skipping shm: {} does not exist on this machine", ShmDir::DEFAULT_DIR);
        transports.retain(|m| *m != Medium::Shm);
    }
    ensure!(!transports.is_empty(), "nothing to measure");

    // Cpus: the client on the first allowed one, the server on the second.
    let cpus = allowed_cpus();
    let pin = !args.no_pin && cpus.len() >= 2;
    let one_cpu = cpus.len() < 2;
    let spin = Spin { yield_now: one_cpu };

    let pid = std::process::id();
    let work = std::env::temp_dir().join(format!("tcpshm-echo-{pid}"));
    let prefix = format!("tcpshm-echo-{pid}-");
    let floor_file =
        if shm_ok { Path::new(ShmDir::DEFAULT_DIR).join(format!("{prefix}floor")) } else { work.join("floor") };
    let mut run = Run { child: None, work: work.clone(), shm: ShmDir::new(ShmDir::DEFAULT_DIR, &prefix)?, floor_file };
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mapping = Mapping::create(&run.floor_file)?;
    let shared = mapping.shared();

    let (addr, floor_addr) = run.start_server(&prefix, pin.then(|| cpus[1]), one_cpu)?;
    let server_pid = run.child.as_ref().map_or(0, Child::id);
    let floor_tcp = TcpStream::connect(floor_addr).context("cannot connect the TCP floor")?;
    floor_tcp.set_nodelay(true)?;
    floor_tcp.set_nonblocking(true)?;
    println!(
        "server: pid {server_pid}, one thread{}; tcpshm on {addr}",
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
    println!(
        "{} rounds of {per_phase} round trips per phase (after {warmup} to warm up): {}",
        args.rounds,
        transports.iter().map(|m| format!("{0} beside the {0} floor", m.label())).collect::<Vec<_>>().join(", ")
    );

    let clock = Clock::new();
    let mut clients = Vec::new();
    for m in &transports {
        let mut cfg = ClientConfig::new(name(&format!("echo-{}", m.label()))?, work.join("client"));
        cfg.connection.shm.prefix = prefix.clone();
        cfg.connection.queue_bytes = QUEUE_BYTES;
        cfg.connection.session.max_message = MAX_MESSAGE;
        cfg.transport = m.kind();
        clients.push(Client::open(cfg, clock.now()).context("cannot open the client's session")?);
    }
    let mut phases = Phases { shared, run: &mut run };
    let mut slot = SlotPinger { shared, seq: shared.ping.seq.load(Ordering::Relaxed), spin };
    let mut tcp_floor = TcpPinger { s: floor_tcp, out: vec![0; 4 + 256], inn: vec![0; 4 + 256], spin };

    // One per transport: its rounds' histograms.
    let mut rows: Vec<Rows> = transports.iter().map(|_| Rows::default()).collect();
    let started = Instant::now();
    for round in 0..args.rounds {
        for (t, medium) in transports.iter().enumerate() {
            let seed = args.seed ^ (round * 16 + t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let ours_first = round % 2 == 1;
            let mut ours = None;
            let mut floor = None;
            for step in 0..2 {
                if (step == 0) == ours_first {
                    phases.set(OURS)?;
                    let client = &mut clients[t];
                    connect(client, addr, medium.kind(), &clock)?;
                    let mut p = OursPinger { client, spin };
                    ours = Some(measure(&mut p, &clock, seed, warmup, per_phase)?);
                    p.client.close(CloseReason::Requested);
                } else {
                    let h = match medium {
                        Medium::Shm => {
                            phases.set(SHM_FLOOR)?;
                            measure(&mut slot, &clock, seed, warmup, per_phase)?
                        }
                        Medium::Tcp => {
                            phases.set(TCP_FLOOR)?;
                            measure(&mut tcp_floor, &clock, seed, warmup, per_phase)?
                        }
                    };
                    floor = Some(h);
                }
            }
            let (ours, floor) = (ours.context("ours")?, floor.context("floor")?);
            println!(
                "round {}/{} {}: ours {}  floor {}  ratio {}  (p50 / p99 / p99.9)",
                round + 1,
                args.rounds,
                medium.label(),
                triple(&ours, duration),
                triple(&floor, duration),
                ratio_triple(&ours, &floor)
            );
            rows[t].ours.push(ours);
            rows[t].floor.push(floor);
        }
    }
    phases.set(IDLE)?;
    let elapsed = started.elapsed();
    drop(clients);

    report(&transports, &rows, args.rounds, elapsed)?;
    println!();
    run.finish()
}

/// Prints the table of the whole run and the ratios.
fn report(transports: &[Medium], rows: &[Rows], rounds: u64, elapsed: Duration) -> Result<()> {
    println!();
    println!(
        "echo round trip, one message in flight, payload 16/36/68/200 bytes at random, every echo checked \
         ({rounds} rounds in {elapsed:.1?}):"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "transport", "messages", "mean", "p50", "p99", "p99.9", "max"
    );
    for (medium, Rows { ours, floor }) in transports.iter().zip(rows) {
        for (label, hists) in [(medium.label().to_string(), ours), (format!("{}-floor", medium.label()), floor)] {
            let h = merged(hists)?;
            println!(
                "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                label,
                h.len(),
                duration(h.mean().round() as u64),
                duration(h.value_at_quantile(0.50)),
                duration(h.value_at_quantile(0.99)),
                duration(h.value_at_quantile(0.999)),
                duration(h.max()),
            );
        }
    }
    println!();
    println!("ours / floor, the median over the rounds of the ratio within each round:");
    println!("{:<10} {:>10} {:>10} {:>10}", "transport", "p50", "p99", "p99.9");
    for (medium, Rows { ours, floor }) in transports.iter().zip(rows) {
        let r = |q: f64| format!("{:.2}x", median(ours.iter().zip(floor).map(|(o, f)| ratio(o, f, q)).collect()));
        println!("{:<10} {:>10} {:>10} {:>10}", medium.label(), r(0.50), r(0.99), r(0.999));
        let p50s: Vec<u64> = floor.iter().map(|h| h.value_at_quantile(0.5)).collect();
        let (lo, hi) = (p50s.iter().min().copied().unwrap_or(0), p50s.iter().max().copied().unwrap_or(0));
        if hi > lo + lo / 2 {
            println!(
                "{:<10} note: the floor's p50 moved between rounds ({} to {}): the machine changed speed \
                 during the run; compare within a round",
                "",
                duration(lo),
                duration(hi)
            );
        }
    }
    Ok(())
}

/// The median (of an even count, the mean of the middle two).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A transport's histograms, one per round: ours, and its floor's.
#[derive(Default)]
struct Rows {
    ours: Vec<Histogram<u64>>,
    floor: Vec<Histogram<u64>>,
}

/// Logs `client` in over `kind`. The previous phase's connection of this client may
/// not be seen closed by the server yet: that refusal is retryable, and retried.
fn connect(client: &mut Client, addr: SocketAddr, kind: TransportKind, clock: &Clock) -> Result<()> {
    let deadline = Instant::now() + STALL;
    loop {
        match client.connect(addr, kind, clock.now()) {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e).with_context(|| format!("cannot log in to the server over {kind}")),
        }
    }
}

/// The phase word's writer: tells the server what to serve and waits until it does.
struct Phases<'a> {
    shared: &'a Shared,
    run: &'a mut Run,
}

impl Phases<'_> {
    fn set(&mut self, phase: u64) -> Result<()> {
        self.shared.phase.0.store(phase, Ordering::Release);
        let deadline = Instant::now() + STALL;
        while self.shared.serving.0.load(Ordering::Acquire) != phase {
            if let Some(child) = &mut self.run.child {
                if let Some(status) = child.try_wait()? {
                    bail!("the server exited ({status})");
                }
            }
            ensure!(Instant::now() < deadline, "the server did not switch to phase {phase} within {STALL:?}");
            std::thread::yield_now();
        }
        Ok(())
    }
}

/// One round trip of message `k` of `len` bytes, checked; returns its time in ns.
trait Pinger {
    fn round_trip(&mut self, k: u64, len: usize, clock: &Clock) -> Result<u64>;
}

/// Warms up, then measures `n` round trips; the payload sizes follow `seed`.
fn measure(p: &mut impl Pinger, clock: &Clock, seed: u64, warmup: u64, n: u64) -> Result<Histogram<u64>> {
    let mut rng = Rng(seed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for k in 0..warmup {
        p.round_trip(k, SIZES[rng.below(SIZES.len())], clock)?;
    }
    let mut rng = Rng(seed);
    for k in 0..n {
        let rtt = p.round_trip(k, SIZES[rng.below(SIZES.len())], clock)?;
        hist.record(rtt).context("round trip out of the histogram's range")?;
    }
    Ok(hist)
}

/// The `now` of a wait's turn: `now` as it was, or every `SPINS_PER_CHECK` turns
/// the clock (then a stall is an error). It never goes back: the library takes a
/// `now` far behind its last one for a new clock and does its timed work at once.
#[inline]
fn check_stall(spins: u32, start: Nanos, now: Nanos, clock: &Clock, what: impl FnOnce() -> String) -> Result<Nanos> {
    if !spins.is_multiple_of(SPINS_PER_CHECK) {
        return Ok(now);
    }
    let now = clock.now();
    if now - start > STALL.as_nanos() as Nanos {
        bail!("no echo within {STALL:?} ({})", what());
    }
    Ok(now)
}

/// Ours: a tcpshm client.
struct OursPinger<'a> {
    client: &'a mut Client,
    spin: Spin,
}

impl Pinger for OursPinger<'_> {
    #[inline]
    fn round_trip(&mut self, k: u64, len: usize, clock: &Clock) -> Result<u64> {
        let c = &mut *self.client;
        let start = clock.now();
        let mut now = start;
        let mut spins = 0u32;
        loop {
            if let Some(buf) = c.alloc(len)? {
                fill(buf, k);
                break;
            }
            // Full: only possible if the server stopped popping.
            c.poll(now);
            spins = spins.wrapping_add(1);
            now = check_stall(spins, start, now, clock, || c.counters().to_string())?;
        }
        c.push(msg_type(k))?;
        loop {
            // Look first, poll when nothing is there: over shared memory `front` reads
            // the ring, and `poll` only does the rate-limited control work.
            if let Some(m) = c.front() {
                let rtt = clock.now() - start;
                check_echo(k, len, Some(m.msg_type), m.payload)?;
                c.pop();
                return Ok(rtt);
            }
            c.poll(now);
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPINS_PER_CHECK) && !c.is_connected() {
                bail!(
                    "the connection closed while waiting for echo {k}: {}",
                    c.close_reason().map_or_else(|| "no reason given".to_string(), |r| r.to_string())
                );
            }
            now = check_stall(spins, start, now, clock, || c.counters().to_string())?;
            self.spin.wait_if_yielding();
        }
    }
}

impl Spin {
    #[inline]
    fn wait_if_yielding(self) {
        if self.yield_now {
            std::thread::yield_now();
        }
    }
}

/// The SHM floor's client side.
struct SlotPinger<'a> {
    shared: &'a Shared,
    seq: u64,
    spin: Spin,
}

impl Pinger for SlotPinger<'_> {
    #[inline]
    fn round_trip(&mut self, k: u64, len: usize, clock: &Clock) -> Result<u64> {
        let start = clock.now();
        self.seq += 1;
        self.shared.ping.put(self.seq, len, |buf| fill(buf, k));
        let mut spins = 0u32;
        while self.shared.pong.seq.load(Ordering::Acquire) != self.seq {
            spins = spins.wrapping_add(1);
            check_stall(spins, start, start, clock, || "SHM floor".into())?;
            self.spin.wait();
        }
        let rtt = clock.now() - start;
        check_echo(k, len, None, self.shared.pong.payload())?;
        Ok(rtt)
    }
}

/// The TCP floor's client side.
struct TcpPinger {
    s: TcpStream,
    out: Vec<u8>,
    inn: Vec<u8>,
    spin: Spin,
}

impl Pinger for TcpPinger {
    #[inline]
    fn round_trip(&mut self, k: u64, len: usize, clock: &Clock) -> Result<u64> {
        let start = clock.now();
        let end = 4 + len;
        self.out[..4].copy_from_slice(&(len as u32).to_le_bytes());
        fill(&mut self.out[4..end], k);
        write_all(&mut self.s, &self.out[..end])?;
        let (mut have, mut spins) = (0, 0u32);
        while have < end {
            match self.s.read(&mut self.inn[have..end]) {
                Ok(0) => bail!("the server closed the TCP floor's connection"),
                Ok(n) => have += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                    spins = spins.wrapping_add(1);
                    check_stall(spins, start, start, clock, || "TCP floor".into())?;
                    self.spin.wait_if_yielding();
                }
                Err(e) => return Err(e).context("TCP floor: read"),
            }
        }
        let rtt = clock.now() - start;
        ensure!(self.inn[..4] == self.out[..4], "TCP floor: echo {k} has a wrong length");
        check_echo(k, len, None, &self.inn[4..end])?;
        Ok(rtt)
    }
}

/// The message type of message `k` (any user type; varied so a mix-up shows).
fn msg_type(k: u64) -> u16 {
    (k % 1000) as u16
}

/// Message `k`'s content: its number, then a pattern that depends on it.
#[inline]
fn fill(buf: &mut [u8], k: u64) {
    let (head, tail) = buf.split_at_mut(8.min(buf.len()));
    head.copy_from_slice(&k.to_le_bytes()[..head.len()]);
    for (i, b) in tail.iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
}

fn check_echo(k: u64, len: usize, ty: Option<u16>, payload: &[u8]) -> Result<()> {
    let mut want = [0u8; 256];
    let want = &mut want[..len];
    fill(want, k);
    if ty.is_some_and(|t| t != msg_type(k)) || payload != &want[..] {
        let at = payload.iter().zip(want.iter()).position(|(a, b)| a != b);
        bail!(
            "echo {k} is wrong: type {ty:?} (sent {}), {} bytes (sent {len}), first differing byte {at:?}",
            msg_type(k),
            payload.len()
        );
    }
    Ok(())
}

impl Run {
    /// Starts the server process: this program with `--server`. Returns the addresses
    /// of the tcpshm server and of the TCP floor.
    fn start_server(&mut self, prefix: &str, cpu: Option<usize>, one_cpu: bool) -> Result<(SocketAddr, SocketAddr)> {
        let exe = std::env::current_exe().context("cannot find this program's path to start the server")?;
        let mut cmd = Command::new(exe);
        cmd.arg("--server")
            .arg("--storage")
            .arg(self.work.join("server"))
            .arg("--shm-prefix")
            .arg(prefix)
            .arg("--floor-file")
            .arg(&self.floor_file)
            .arg("--parent")
            .arg(std::process::id().to_string());
        if let Some(cpu) = cpu {
            cmd.arg("--cpu").arg(cpu.to_string());
        }
        if one_cpu {
            cmd.arg("--yield-when-idle");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the server process")?;
        let stdout = child.stdout.take().context("no pipe from the server")?;
        self.child = Some(child);
        wait_listening(stdout, Duration::from_secs(10))
    }
}

/// Waits for the child's "listening <addr> floor <addr>" line, at most `timeout`.
fn wait_listening(stdout: std::process::ChildStdout, timeout: Duration) -> Result<(SocketAddr, SocketAddr)> {
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
    let bad = || anyhow!("the server did not start (it said {:?})", line.trim());
    let rest = line.trim().strip_prefix("listening ").ok_or_else(bad)?;
    let (ours, floor) = rest.split_once(" floor ").ok_or_else(bad)?;
    Ok((ours.parse().map_err(|_| bad())?, floor.parse().map_err(|_| bad())?))
}

/// The child process and the files of this run; stops and removes them when dropped,
/// so an error anywhere still leaves nothing behind.
struct Run {
    child: Option<Child>,
    work: PathBuf,
    shm: ShmDir,
    floor_file: PathBuf,
}

impl Run {
    /// Stops the server (the phase word asks it to exit; it is killed if it does not
    /// within 5 s) and removes every file of the run. Returns what happened, and
    /// whether the server ended cleanly.
    fn stop(&mut self) -> Result<(String, bool)> {
        let mut how = String::from("no server");
        let mut clean = true;
        if let Some(mut child) = self.child.take() {
            if let Ok(m) = Mapping::open(&self.floor_file) {
                m.shared().phase.0.store(STOP, Ordering::Release);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(s) = child.try_wait()? {
                    break Some(s);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
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
        match std::fs::remove_file(&self.floor_file) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", self.floor_file.display())),
        }
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))?;
        }
        Ok((format!("{how}; removed {removed} shared-memory files and {}", self.work.display()), clean))
    }

    fn finish(mut self) -> Result<()> {
        let (said, clean) = self.stop()?;
        println!("cleanup: {said}");
        ensure!(clean, "the server did not end cleanly: {said}");
        Ok(())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.is_some() || self.work.exists() || self.floor_file.exists() {
            if let Err(e) = self.stop() {
                eprintln!("echo: cleanup failed: {e:#}");
            }
        }
    }
}

/// Removes what runs killed before their cleanup left behind: temp dirs and
/// shared-memory files named after a client process that no longer exists (its
/// server died with it).
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
        let prefix = format!("tcpshm-echo-{pid}-");
        if let Ok(rd) = std::fs::read_dir(ShmDir::DEFAULT_DIR) {
            for e in rd.flatten() {
                if e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
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
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown cpu".to_string(), |(_, m)| m.trim().to_string());
    let online = info.lines().filter(|l| l.starts_with("processor")).count();
    let usable = allowed_cpus().len();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {online} cpus ({usable} usable by this process), Linux {}", kernel.trim())
}

/// The rounds' histograms of one row, merged.
fn merged(hists: &[Histogram<u64>]) -> Result<Histogram<u64>> {
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for h in hists {
        all.add(h)?;
    }
    Ok(all)
}

fn ratio(ours: &Histogram<u64>, floor: &Histogram<u64>, q: f64) -> f64 {
    ours.value_at_quantile(q) as f64 / floor.value_at_quantile(q).max(1) as f64
}

/// "p50 / p99 / p99.9" of `h`, each formatted by `f`.
fn triple(h: &Histogram<u64>, f: fn(u64) -> String) -> String {
    format!("{} / {} / {}", f(h.value_at_quantile(0.5)), f(h.value_at_quantile(0.99)), f(h.value_at_quantile(0.999)))
}

fn ratio_triple(ours: &Histogram<u64>, floor: &Histogram<u64>) -> String {
    format!("{:.2}x / {:.2}x / {:.2}x", ratio(ours, floor, 0.5), ratio(ours, floor, 0.99), ratio(ours, floor, 0.999))
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
