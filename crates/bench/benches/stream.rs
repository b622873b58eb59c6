//! One-way throughput, 8 B to 1 MiB messages: tcpshm's client streams N messages to
//! the server (a separate process pinned to the second cpu) over SHM and over TCP —
//! acknowledgements flowing back as the server pops, so the sender's queue never
//! waits for a heartbeat — and then one `FINISH` message that the server answers with
//! the count it received (in order, checked); the clock stops at that answer.
//!
//! Beside them, in the same run: the bare socket (the same N × size payload bytes
//! written through a loopback TCP socket in 256 KiB writes and read in 256 KiB reads:
//! the medium's ceiling, with no framing) and memcpy bandwidth (one thread copying
//! the messages into an 8 MiB ring buffer: the cost of touching the bytes once).
//!
//! `cargo xtask bench stream` runs it; `--quick` is a smoke run of a few seconds.

mod common;
mod support;

use common::{progress, Opts, Report, Row, Summary};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::child::{self, Child};
use support::clock::Clock;
use support::ours::{self, Sink, DATA, FINISH};
use support::{Scratch, ShmPrefix};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Queue bytes of the stream sessions (both ways, both transports).
const QUEUE: usize = 8 * MIB;
/// Largest message.
const MAX_MESSAGE: usize = MIB;
/// The bare socket's write and read size.
const CHUNK: usize = 256 * KIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Shm,
    Tcp,
    Socket,
    Memcpy,
}

impl Who {
    const ALL: [Who; 4] = [Who::Shm, Who::Tcp, Who::Socket, Who::Memcpy];

    fn key(self) -> &'static str {
        match self {
            Who::Shm => "shm",
            Who::Tcp => "tcp",
            Who::Socket => "socket",
            Who::Memcpy => "memcpy",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Who::Shm => "tcpshm SHM",
            Who::Tcp => "tcpshm TCP",
            Who::Socket => "bare TCP socket, same bytes (256 KiB writes)",
            Who::Memcpy => "memcpy into a ring buffer (one thread)",
        }
    }
}

fn sizes(opts: &Opts) -> Vec<usize> {
    if opts.quick {
        vec![8, 64, 4 * KIB, MIB]
    } else {
        vec![8, 64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB]
    }
}

/// Messages per run of `size`-byte messages.
fn count(opts: &Opts, size: usize) -> u64 {
    let (bytes, max) = if opts.quick { (4 * MIB, 200_000) } else { (512 * MIB, 10_000_000) };
    ((bytes / size) as u64).clamp(16, max)
}

fn size_name(size: usize) -> String {
    if size >= MIB {
        format!("{} MiB", size / MIB)
    } else if size >= KIB {
        format!("{} KiB", size / KIB)
    } else {
        format!("{size} B")
    }
}

/// Messages per published batch: `push_more` stages, a `push` every batch publishes
/// (and, over TCP, writes the batch in one system call). About 16 KiB or 64 messages.
fn batch(size: usize) -> u64 {
    (16 * KIB / size).clamp(1, 64) as u64
}

/// Streams `n` messages of `size` bytes and waits for the sink's count; returns the
/// elapsed time.
fn stream_ours(c: &mut Client, size: usize, n: u64, clock: &Clock, src: &[u8]) -> Duration {
    let b = batch(size);
    let t0 = Instant::now();
    for i in 0..n {
        let buf = loop {
            match c.alloc(size) {
                Ok(Some(_)) => break c.alloc(size).expect("alloc").expect("room"),
                Ok(None) => {
                    // Full: publish what is staged, send, take acks.
                    c.poll(clock.now_ns());
                }
                Err(e) => panic!("alloc {size}: {e}"),
            }
        };
        buf.copy_from_slice(&src[..size]);
        if size >= 8 {
            buf[..8].copy_from_slice(&i.to_le_bytes());
        }
        if (i + 1) % b == 0 {
            c.push(DATA).expect("push");
        } else {
            c.push_more(DATA).expect("push_more");
        }
    }
    loop {
        match c.alloc(0) {
            Ok(Some(_)) => break,
            Ok(None) => {
                c.poll(clock.now_ns());
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    c.push(FINISH).expect("push");
    loop {
        if let Some(m) = c.front() {
            assert_eq!(m.msg_type, FINISH, "the sink answers only FINISH");
            let got = u64::from_le_bytes(m.payload.try_into().expect("8-byte count"));
            assert_eq!(got, n, "the sink received {got} of {n} messages");
            c.pop();
            break;
        }
        if !c.poll(clock.now_ns()) {
            panic!("connection lost while streaming: {:?}", c.close_reason());
        }
    }
    t0.elapsed()
}

/// Sends `n * size` bytes through the bare socket and waits for the sink's answer.
fn stream_socket(s: &mut std::net::TcpStream, size: usize, n: u64, src: &[u8]) -> Duration {
    let total = n * size as u64;
    let t0 = Instant::now();
    s.write_all(&total.to_le_bytes()).expect("write");
    let mut left = total;
    while left > 0 {
        let k = (left as usize).min(CHUNK);
        s.write_all(&src[..k]).expect("write");
        left -= k as u64;
    }
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).expect("read the sink's answer");
    assert_eq!(u64::from_le_bytes(ack), total, "the socket sink counted other bytes");
    t0.elapsed()
}

/// Copies `n` messages of `size` bytes into an 8 MiB ring buffer.
fn stream_memcpy(size: usize, n: u64, src: &[u8], dst: &mut [u8]) -> Duration {
    let t0 = Instant::now();
    let mut at = 0usize;
    for _ in 0..n {
        if at + size > dst.len() {
            at = 0;
        }
        dst[at..at + size].copy_from_slice(&src[..size]);
        at += size;
        std::hint::black_box(&mut dst[at - 1]);
    }
    t0.elapsed()
}

/// The socket sink role: echoes nothing, counts bytes; per stream, reads the 8-byte
/// total, then that many bytes, then answers the total.
fn socket_sink() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    child::announce(&format!("ready {}", l.local_addr().expect("addr")));
    let (mut s, _) = l.accept().expect("accept");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut head = [0u8; 8];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let total = u64::from_le_bytes(head);
        let mut got = 0u64;
        while got < total {
            let k = ((total - got) as usize).min(CHUNK);
            match s.read(&mut buf[..k]) {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n as u64,
            }
        }
        if s.write_all(&got.to_le_bytes()).is_err() {
            return;
        }
    }
}

fn role(name: &str, args: &[String]) {
    child::pin_from_args(args);
    match name {
        "sink" => {
            let clock = Clock::calibrate(Duration::from_millis(5));
            let storage = child::arg(args, "--storage").expect("--storage");
            let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
            let cfg = ours::server_config(std::path::Path::new(storage), prefix, QUEUE, MAX_MESSAGE);
            ours::serve(cfg, vec![Sink::default()], clock)
        }
        "socket-sink" => socket_sink(),
        other => panic!("unknown role {other}"),
    }
}

fn main() {
    if let Some((name, args)) = child::role_args() {
        role(&name, &args);
        return;
    }
    let opts = Opts::from_args();
    if !common::pin_to_cpu(opts.cpus.0) {
        eprintln!("warning: could not pin the sender to cpu {}; running unpinned", opts.cpus.0);
    }
    let clock = Clock::calibrate(Duration::from_millis(5));
    let sizes = sizes(&opts);
    let plan: Vec<Who> = Who::ALL.into_iter().filter(|w| opts.wants(&format!("stream.{}", w.key()))).collect();
    let src: Vec<u8> = (0..MIB.max(CHUNK)).map(|i| (i * 131 % 251) as u8).collect();
    // Touched once, so memcpy measures copying, not first-touch page faults.
    let mut dst = vec![1u8; 8 * MIB];

    // results[who][size] = elapsed per run
    let mut results: Vec<Vec<Vec<Duration>>> =
        plan.iter().map(|_| sizes.iter().map(|_| Vec::new()).collect()).collect();
    let total = opts.runs * plan.len() * sizes.len();
    let mut done = 0;
    for round in 0..opts.runs {
        for (wi, who) in plan.iter().enumerate() {
            let dir = Scratch::new("stream");
            let shm = ShmPrefix::new();
            let mut server: Option<Child> = None;
            let mut client: Option<Client> = None;
            let mut socket: Option<std::net::TcpStream> = None;
            match who {
                Who::Shm | Who::Tcp => {
                    let d = dir.path().join("server").display().to_string();
                    let mut ch = Child::spawn(
                        "sink",
                        opts.cpus.1,
                        &["--storage".into(), d, "--shm-prefix".into(), shm.as_str().into()],
                    );
                    let addr = ch.expect("ready").parse().expect("address");
                    let kind = if *who == Who::Shm { TransportKind::Shm } else { TransportKind::Tcp };
                    let cfg =
                        ours::client_config("stream", &dir.path().join("client"), shm.as_str(), QUEUE, MAX_MESSAGE);
                    client = Some(ours::connect(cfg, addr, kind, &clock));
                    server = Some(ch);
                }
                Who::Socket => {
                    let mut ch = Child::spawn("socket-sink", opts.cpus.1, &[]);
                    let addr = ch.expect("ready");
                    let s = std::net::TcpStream::connect(addr).expect("connect");
                    s.set_nodelay(true).expect("nodelay");
                    socket = Some(s);
                    server = Some(ch);
                }
                Who::Memcpy => {}
            }
            for (si, &size) in sizes.iter().enumerate() {
                progress(
                    done,
                    total,
                    &format!("stream {} {} (run {}/{})", who.label(), size_name(size), round + 1, opts.runs),
                );
                done += 1;
                let n = count(&opts, size);
                let t = match who {
                    Who::Shm | Who::Tcp => stream_ours(client.as_mut().expect("client"), size, n, &clock, &src),
                    Who::Socket => stream_socket(socket.as_mut().expect("socket"), size, n, &src),
                    Who::Memcpy => stream_memcpy(size, n, &src, &mut dst),
                };
                if opts.verbose {
                    eprintln!(
                        "stream.{}.{size} run {round}: {:.1} Mmsg/s",
                        who.key(),
                        n as f64 / t.as_secs_f64() / 1e6
                    );
                }
                results[wi][si].push(t);
            }
            drop(client);
            drop(socket);
            drop(server);
        }
    }
    progress(total, total, "stream done");

    let mut report = Report::new("stream");
    // Median throughputs for the ratios: [who][size] -> (msgs/s, GB/s) summaries.
    let mut med: Vec<Vec<(Summary, Summary)>> = Vec::new();
    for per_size in &results {
        let mut v = Vec::new();
        for (si, runs) in per_size.iter().enumerate() {
            let size = sizes[si];
            let n = count(&opts, size) as f64;
            let msgs: Vec<f64> = runs.iter().map(|t| n / t.as_secs_f64() / 1e6).collect();
            let gbs: Vec<f64> = runs.iter().map(|t| n * size as f64 / t.as_secs_f64() / 1e9).collect();
            v.push((Summary::of_higher_is_better(msgs), Summary::of_higher_is_better(gbs)));
        }
        med.push(v);
    }
    let find = |w: Who, si: usize| plan.iter().position(|x| *x == w).map(|i| med[i][si]);
    for (si, &size) in sizes.iter().enumerate() {
        for (wi, who) in plan.iter().enumerate() {
            let (msgs, gbs) = med[wi][si];
            let key = format!("stream.{}.{size}", who.key());
            let label = format!("{} B messages: {}", size, who.label());
            let mut row = match who {
                Who::Shm | Who::Tcp => Row::new(&key, &label, "Mmsg/s", msgs),
                _ => Row::reference(&key, &label, "Mmsg/s", msgs),
            };
            row = row.also(gbs, "GB/s").param("bytes", size as f64);
            match who {
                Who::Shm => {
                    if let Some((_, m)) = find(Who::Memcpy, si) {
                        row = row.ratio("memcpy", gbs.median / m.median);
                    }
                    if let Some((_, t)) = find(Who::Tcp, si) {
                        row = row.ratio("tcpshm TCP", gbs.median / t.median);
                    }
                    if size == 64 {
                        row = row.goal(">= 50 M msgs/s over SHM", msgs.median >= 50.0);
                    }
                }
                Who::Tcp => {
                    if let Some((_, s)) = find(Who::Socket, si) {
                        row = row.ratio("bare socket", gbs.median / s.median);
                    }
                }
                _ => {}
            }
            report.push(row);
        }
    }
    report.note(&format!(
        "Per run and size: N messages (about {} of payload, at least 16 and at most {} messages), then a FINISH \
         that the server answers with the count it received (each message's sequence number checked); \
         throughput = N / (first push .. answer). The sender stages with push_more and publishes every ~16 KiB \
         or 64 messages; a full queue is polled (flush, acks) until there is room. Queues of {} MiB each way; \
         the server is `tcpshm-server` with its default per-poll budget.",
        if opts.quick { "4 MiB" } else { "512 MiB" },
        if opts.quick { 200_000 } else { 10_000_000 },
        QUEUE / MIB
    ));
    report.note(&format!(
        "{} runs per size in interleaved rounds; median and best run. Ratios are of GB/s medians. The bare socket \
         moves the payload bytes only (no frame headers); memcpy is one thread copying the same messages.",
        opts.runs
    ));
    report.finish(&opts);
}
