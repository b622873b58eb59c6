//! One-way throughput, 8 B to 1 MiB messages: tcpshm's client streams to the server
//! (a separate process pinned to the second cpu, its handler reading every byte and
//! checking each message's number) over SHM and over TCP, against the bare medium
//! doing the same work (`tcpshm_bench::streams`):
//!
//! * SHM against **the bare ring**: a `tcpshm-ring` var queue of the same capacity in
//!   shared memory, the same fill per message and the same read-and-check per message;
//! * TCP against **the bare socket carrying the same frames**: tcpshm's wire frames
//!   written in 256 KiB writes, read in large reads, walked and checked.
//!
//! Each size is judged in back-to-back pairs (`tcpshm_bench::pairs`): windows of a
//! fixed time `R O R O ... R`, the rate ratio within each pair, pairs whose reference
//! rate moved by more than 10% discarded, the median of the rest. Goals: 64 B over SHM
//! ≥ 0.5x the bare ring; 64 B over TCP ≥ 0.5x the bare socket; 1 MiB over SHM ≥ 0.7x
//! the bare ring. Then the **system calls per streamed message** over SHM (64 B).
//!
//! `cargo xtask bench stream` runs it; `--quick` is a smoke run of a few seconds.

use std::time::Duration;
use tcpshm_bench::child::{self, Child};
use tcpshm_bench::clock::Clock;
use tcpshm_bench::common::{self, fmt_num, progress, Opts, Report, Row, Summary};
use tcpshm_bench::ours::{self, Sink};
use tcpshm_bench::pairs::{self, RatePairs, Turn};
use tcpshm_bench::scratch::{Scratch, ShmPrefix};
use tcpshm_bench::streams::{self, RingSender, SocketSender, Window};
use tcpshm_bench::syscalls::{self, Strace};
use tcpshm_client::{Client, TransportKind};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Queue bytes of the stream sessions (both ways, both transports), and the bare
/// ring's capacity.
const QUEUE: usize = 8 * MIB;
/// Largest message.
const MAX_MESSAGE: usize = MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Medium {
    Shm,
    Tcp,
}

impl Medium {
    fn key(self) -> &'static str {
        match self {
            Medium::Shm => "shm",
            Medium::Tcp => "tcp",
        }
    }
    fn ref_key(self) -> &'static str {
        match self {
            Medium::Shm => "ring",
            Medium::Tcp => "socket",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Medium::Shm => "tcpshm SHM",
            Medium::Tcp => "tcpshm TCP",
        }
    }
    fn ref_label(self) -> &'static str {
        match self {
            Medium::Shm => "bare ring, same fill and check",
            Medium::Tcp => "bare socket, same frames",
        }
    }
    fn ref_short(self) -> &'static str {
        match self {
            Medium::Shm => "bare ring",
            Medium::Tcp => "bare socket",
        }
    }
    /// The goal at `size`: the least ratio to the reference.
    fn goal(self, size: usize) -> Option<f64> {
        match (self, size) {
            (Medium::Shm, 64) => Some(0.5),
            (Medium::Tcp, 64) => Some(0.5),
            (Medium::Shm, MIB) => Some(0.7),
            _ => None,
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

fn span(opts: &Opts) -> Duration {
    Duration::from_millis(if opts.quick { 30 } else { 300 })
}

fn pair_count(opts: &Opts, goal: bool) -> usize {
    match (opts.runs_given, opts.quick, goal) {
        (Some(n), _, _) => n.max(1),
        (None, true, _) => 1,
        (None, false, true) => 7,
        (None, false, false) => 3,
    }
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

/// The processes and connections of one medium: ours (client + sink server) and the
/// reference (sender + sink role). Both sinks are paused while not measured.
struct Setup {
    ours_server: Child,
    client: Client,
    ref_server: Child,
    reference: Reference,
    _dir: Scratch,
    _shm: ShmPrefix,
}

enum Reference {
    Ring(RingSender),
    Socket(SocketSender),
}

impl Setup {
    fn start(m: Medium, opts: &Opts, clock: &Clock) -> Setup {
        let dir = Scratch::new("stream");
        let shm = ShmPrefix::new();
        let cpu = opts.cpus.1;
        let mut ours_server = Child::spawn(
            "sink",
            cpu,
            &["--storage".into(), dir.join("server"), "--shm-prefix".into(), shm.as_str().into()],
        );
        let addr = ours_server.expect("ready").parse().expect("address");
        let kind = if m == Medium::Shm { TransportKind::Shm } else { TransportKind::Tcp };
        let cfg = ours::client_config("stream", &dir.path().join("client"), shm.as_str(), QUEUE, MAX_MESSAGE);
        let client = ours::connect(cfg, addr, kind, clock);
        ours_server.stop();
        let (mut ref_server, reference) = match m {
            Medium::Shm => {
                let file = shm.file("ring");
                let sender = RingSender::create(&file, QUEUE);
                let mut ch = Child::spawn(
                    "ring-sink",
                    cpu,
                    &["--file".into(), file.display().to_string(), "--cap".into(), QUEUE.to_string()],
                );
                ch.expect("ready");
                (ch, Reference::Ring(sender))
            }
            Medium::Tcp => {
                let mut ch = Child::spawn("socket-sink", cpu, &["--max".into(), MAX_MESSAGE.to_string()]);
                let addr = ch.expect("ready");
                (ch, Reference::Socket(SocketSender::connect(&addr, MAX_MESSAGE)))
            }
        };
        ref_server.stop();
        Setup { ours_server, client, ref_server, reference, _dir: dir, _shm: shm }
    }

    fn ours(&mut self, size: usize, span: Duration, clock: &Clock, src: &[u8]) -> Window {
        self.ours_server.resume();
        // A short warm-up window (not counted): caches, the ring's pages.
        streams::ours(&mut self.client, size, span / 10, clock, src);
        let w = streams::ours(&mut self.client, size, span, clock, src);
        self.ours_server.stop();
        w
    }

    fn reference(&mut self, size: usize, span: Duration, clock: &Clock, src: &[u8]) -> Window {
        self.ref_server.resume();
        let w = match &mut self.reference {
            Reference::Ring(r) => {
                r.window(size, span / 10, clock, src);
                r.window(size, span, clock, src)
            }
            Reference::Socket(s) => {
                s.window(size, span / 10, clock, src);
                s.window(size, span, clock, src)
            }
        };
        self.ref_server.stop();
        w
    }
}

fn role(name: &str, args: &[String]) {
    child::become_child(args);
    match name {
        "sink" => {
            let clock = Clock::calibrate(Duration::from_millis(5));
            let storage = child::arg(args, "--storage").expect("--storage");
            let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
            let cfg = ours::server_config(std::path::Path::new(storage), prefix, QUEUE, MAX_MESSAGE);
            ours::serve(cfg, vec![Sink::default()], clock)
        }
        "ring-sink" => streams::ring_sink(args),
        "socket-sink" => streams::socket_sink(args),
        other => panic!("unknown role {other}"),
    }
}

/// Calls per streamed message over SHM at `size`: exact counts, and the names.
fn count_calls(s: &mut Setup, size: usize, opts: &Opts, clock: &Clock, src: &[u8], report: &mut Report) {
    let span = if opts.quick { Duration::from_millis(50) } else { Duration::from_millis(1000) };
    s.ours_server.resume();
    streams::ours(&mut s.client, size, span / 4, clock, src);
    let pid = s.ours_server.pid();
    let client = &mut s.client;
    let per = syscalls::count(pid, || streams::ours(client, size, span, clock, src).messages + 1);
    let dir = Scratch::new("strace");
    let mut names = |target: u32, file: &str| -> Result<String, String> {
        let own = target == std::process::id();
        let st = Strace::attach(target, !own, &dir.path().join(file))?;
        streams::ours(&mut s.client, size, span / 2, clock, src);
        st.finish(own).map(|m| syscalls::names_text(&m))
    };
    let server_names = names(pid, "server");
    let client_names = names(std::process::id(), "client");
    s.ours_server.stop();
    let text = |r: &Result<String, String>| match r {
        Ok(t) => t.clone(),
        Err(e) => format!("not measured: {e}"),
    };
    match &per {
        Ok(p) => {
            report.section(
                &format!("System calls per streamed message (SHM, {})", size_name(size)),
                format!(
                    "{} messages (and the FINISH) streamed in {:.2} s: the server's polling thread made {} calls \
                     ({:.5} per message, {} per second), the client {} ({:.5} per message). By name (strace, a \
                     separate window): server: {}; client: {}.\n",
                    p.messages,
                    p.secs,
                    p.server,
                    p.server_per(),
                    fmt_num(p.server as f64 / p.secs),
                    p.client,
                    p.client_per(),
                    text(&server_names),
                    text(&client_names)
                ),
            );
            let sum = Summary { median: p.server_per(), best: p.server_per() };
            let csum = Summary { median: p.client_per(), best: p.client_per() };
            report.push(
                Row::new(
                    &format!("stream.shm.{size}.syscalls"),
                    &format!("{} SHM stream: system calls per message, server (client beside)", size_name(size)),
                    "calls/msg",
                    sum,
                )
                .also(csum, "client calls/msg")
                .check("server calls per message", p.server_per(), 0.01, false)
                .check("client calls per message", p.client_per(), 0.01, false),
            );
            report.data(
                "syscalls",
                serde_json::json!({"shm_64": {"messages": p.messages, "server_calls": p.server, "client_calls": p.client,
                    "server_per_message": p.server_per(), "client_per_message": p.client_per(), "seconds": p.secs,
                    "server_names": server_names.as_ref().ok(), "client_names": client_names.as_ref().ok()}}),
            );
        }
        Err(e) => report.skip("SHM stream: system calls per message", e),
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
    let clock = Clock::calibrate(Duration::from_millis(if opts.quick { 5 } else { 50 }));
    let sizes = sizes(&opts);
    let media: Vec<Medium> =
        [Medium::Shm, Medium::Tcp].into_iter().filter(|m| opts.wants(&format!("stream.{}", m.key()))).collect();
    let src: Vec<u8> = (0..MIB).map(|i| (i * 131 % 251) as u8).collect();
    let total: usize = media.len()
        * sizes.iter().map(|&s| 2 * pair_count(&opts, Medium::Shm.goal(s).is_some()) + 1).sum::<usize>()
        + usize::from(media.contains(&Medium::Shm));
    let mut step = 0;
    let mut report = Report::new("stream");
    let mut data = serde_json::Map::new();
    let mut md = String::from(
        "| size | transport | ours (M msg/s) | reference (M msg/s) | ratio per pair | median ratio | discarded |\n\
         |---|---|---:|---:|---|---:|---:|\n",
    );
    for &m in &media {
        let mut s = Setup::start(m, &opts, &clock);
        for &size in &sizes {
            let n = pair_count(&opts, m.goal(size).is_some());
            let span = span(&opts);
            let (refs, ours) = pairs::chain(n, |turn, i| {
                let who = if turn == Turn::Ours { m.label() } else { m.ref_short() };
                let of = if turn == Turn::Ours { n } else { n + 1 };
                progress(step, total, &format!("stream {who} {} window {}/{of}", size_name(size), i + 1));
                step += 1;
                match turn {
                    Turn::Reference => s.reference(size, span, &clock, &src).mmsgs(),
                    Turn::Ours => s.ours(size, span, &clock, &src).mmsgs(),
                }
            });
            let j = RatePairs::judge(&refs, &ours);
            let gb = |mm: f64| mm * size as f64 / 1000.0;
            let best_o = j.pairs.iter().filter(|p| p.kept).map(|p| p.ours).fold(f64::NAN, f64::max);
            let best_r =
                j.pairs.iter().filter(|p| p.kept).map(|p| p.reference.0.max(p.reference.1)).fold(f64::NAN, f64::max);
            let osum = Summary { median: j.median_ours(), best: best_o };
            let rsum = Summary { median: j.median_reference(), best: best_r };
            let key = format!("stream.{}.{size}", m.key());
            let mut row = Row::new(&key, &format!("{} messages: {}", size_name(size), m.label()), "Mmsg/s", osum)
                .also(Summary { median: gb(osum.median), best: gb(osum.best) }, "GB/s")
                .param("bytes", size as f64)
                .param("pairs_discarded", j.discarded() as f64)
                .ratio(&format!("{} (median of pairs)", m.ref_short()), j.median);
            if let Some(g) = m.goal(size) {
                row = row.check(&format!("rate / {}", m.ref_short()), j.median, g, true);
            }
            report.push(row);
            report.push(
                Row::reference(
                    &format!("stream.{}.{size}", m.ref_key()),
                    &format!("{} messages: {}", size_name(size), m.ref_label()),
                    "Mmsg/s",
                    rsum,
                )
                .also(Summary { median: gb(rsum.median), best: gb(rsum.best) }, "GB/s")
                .param("bytes", size as f64),
            );
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} | {} |\n",
                size_name(size),
                m.label(),
                fmt_num(j.median_ours()),
                fmt_num(j.median_reference()),
                j.compact(),
                j.median,
                j.discarded()
            ));
            data.insert(key, j.json());
        }
        if m == Medium::Shm {
            progress(step, total, "stream tcpshm SHM 64 B: counting system calls");
            step += 1;
            count_calls(&mut s, 64, &opts, &clock, &src, &mut report);
        }
    }
    progress(total, total, "stream done");
    report.section("Pairs", md);
    report.data("pairs", serde_json::Value::Object(data));
    report.note(&format!(
        "Per size, a chain of windows R O R O ... R (reference, ours), each a warm-up of a tenth of a window then \
         {} ms of messages sent as fast as the receiver takes them, then a FINISH the receiver answers with the \
         count it got (each message's number checked); rate = messages / (first message .. answer). Each O pairs \
         with the R before and after it: ratio = ours / the mean of the two; a pair is discarded when the two \
         reference windows differ by more than {:.0}%; rows show the median over the kept pairs ({} pairs at the \
         goal sizes, {} elsewhere). All sinks stay up; the one not measured is paused (SIGSTOP).",
        span(&opts).as_millis(),
        pairs::RATE_MOVE_LIMIT * 100.0,
        pair_count(&opts, true),
        pair_count(&opts, false),
    ));
    report.note(&format!(
        "Sender and receiver do the same work for ours and the references: the sender copies the message from \
         a source buffer and writes its number in its first 8 bytes, staging {} and publishing every ~16 KiB or \
         64 messages; the receiver reads every byte (8 at a time) and checks the number. Queues and the bare ring \
         hold {} MiB. tcpshm's server is `tcpshm-server` with its defaults (256 messages per connection per \
         poll); the bare socket writes 256 KiB at a time.",
        "with push_more",
        QUEUE / MIB
    ));
    report.finish(&opts);
}
