//! Pushing from other threads: 1, 2 and 4 producer threads push 64 B messages through
//! producer handles (`Client::producer`) into one client connection, whose polling
//! thread drains them into the session and sends them to a sink server (a separate
//! process pinned to the second cpu, checking every message's order per producer) —
//! against **one thread pushing directly** into the same connection (the polling
//! thread itself: `alloc` + copy + `push_more`, a `push` every 64 messages), over
//! shared memory and over TCP.
//!
//! Each thread count is judged in back-to-back pairs (`tcpshm_bench::pairs`): windows
//! `R O R O ... R` (R: the direct push, O: the producers), the ratio of aggregate
//! rates within each pair, pairs whose reference moved by more than 20% discarded,
//! the median of the rest. There is no goal: the row shows what the handoff costs.
//!
//! The producer threads are spawned by the polling thread, so they share its cpu
//! (the sink has the other one of the two the benches use): on a machine with cpus to
//! spare the producers would run beside the polling thread; here the figure is the
//! handoff's cost per message (a claim, a copy in, a copy out) plus the threads'
//! time-sharing, not a parallel speed-up.
//!
//! That the handoff allocates nothing per message is proven by the connection's
//! `no_alloc` test (a counting allocator in the pushing threads and the polling thread).
//!
//! `cargo xtask bench producers` runs it; `--quick` is a smoke run of a few seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tcpshm_bench::child::{self, Child};
use tcpshm_bench::clock::{ticks, Clock};
use tcpshm_bench::common::{self, fmt_num, progress, Opts, Report, Row, Summary};
use tcpshm_bench::ours::{self, DATA, FINISH};
use tcpshm_bench::pairs::{self, RatePairs, Turn};
use tcpshm_bench::scratch::{Scratch, ShmPrefix};
use tcpshm_bench::streams::Window;
use tcpshm_client::{Client, Producer, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_server::{Conn, GroupHandler, Handled};

const MIB: usize = 1024 * 1024;
/// Queue bytes of the sessions (both ways, both transports) and of the producers'
/// queue.
const QUEUE: usize = 8 * MIB;
const MAX_MESSAGE: usize = 4096;
/// The message size.
const SIZE: usize = 64;
/// Messages staged with `push_more` per `push` by the direct pusher.
const BATCH: u64 = 64;
/// Most producer threads (the sink's per-producer counters).
const MAX_THREADS: usize = 8;
const THREADS: [usize; 3] = [1, 2, 4];

/// The tag in a message's first 8 bytes: its producer (top byte) and its number in
/// that producer's stream.
fn tag(producer: usize, i: u64) -> u64 {
    (producer as u64) << 56 | i
}

#[inline]
fn fill(buf: &mut [u8], src: &[u8], tag: u64) {
    buf.copy_from_slice(&src[..buf.len()]);
    buf[..8].copy_from_slice(&tag.to_le_bytes());
}

/// Consumes the stream of one connection: checks each producer's messages arrive in
/// order, once each, and answers a `FINISH` with the count since the last one.
#[derive(Debug, Default)]
struct TaggedSink {
    next: [u64; MAX_THREADS],
    received: u64,
}

impl GroupHandler for TaggedSink {
    #[inline]
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        if msg.msg_type == FINISH {
            let Ok(Some(buf)) = conn.alloc(8) else { return Handled::Keep };
            buf.copy_from_slice(&self.received.to_le_bytes());
            conn.push(FINISH).expect("allocated");
            *self = TaggedSink::default();
            return Handled::Pop;
        }
        std::hint::black_box(tcpshm_bench::payload::fold(msg.payload));
        let t = msg.payload.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let (p, i) = t.map_or((usize::MAX, 0), |t| ((t >> 56) as usize, t & ((1 << 56) - 1)));
        if p >= MAX_THREADS || i != self.next[p] {
            conn.close_with(format!("producers sink: producer {p}'s message {i} out of order or corrupt"));
            return Handled::Keep;
        }
        self.next[p] += 1;
        self.received += 1;
        Handled::Pop
    }
}

fn role(name: &str, args: &[String]) {
    child::become_child(args);
    match name {
        "sink" => {
            let clock = Clock::calibrate(Duration::from_millis(5));
            let storage = child::arg(args, "--storage").expect("--storage");
            let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
            let mut cfg = ours::server_config(std::path::Path::new(storage), prefix, QUEUE, MAX_MESSAGE);
            cfg.messages_per_poll = 1024;
            ours::serve(cfg, vec![TaggedSink::default()], clock)
        }
        other => panic!("unknown role {other}"),
    }
}

/// Sends `FINISH` after everything pushed and waits for the sink's count, which must
/// be `n`.
fn finish(c: &mut Client, n: u64, clock: &Clock) {
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
            return;
        }
        assert!(c.poll(clock.now_ns()), "connection lost: {:?}", c.close_reason());
    }
}

/// The reference: the polling thread pushes directly for `span`.
fn direct(c: &mut Client, span: Duration, clock: &Clock, src: &[u8]) -> Window {
    let t0 = Instant::now();
    let deadline = ticks() + clock.ticks_in(span.as_nanos() as f64);
    let mut n = 0u64;
    loop {
        let buf = loop {
            match c.alloc(SIZE) {
                Ok(Some(_)) => break c.alloc(SIZE).expect("alloc").expect("room"),
                Ok(None) => {
                    c.poll(clock.now_ns());
                }
                Err(e) => panic!("alloc {SIZE}: {e}"),
            }
        };
        fill(buf, src, tag(0, n));
        n += 1;
        if n.is_multiple_of(BATCH) {
            c.push(DATA).expect("push");
            if ticks() >= deadline {
                break;
            }
        } else {
            c.push_more(DATA).expect("push_more");
        }
    }
    finish(c, n, clock);
    Window { messages: n, elapsed: t0.elapsed() }
}

/// Ours: `threads` producer threads push for `span` while this thread polls (and so
/// drains them into the session); then the rest is drained and the sink counts.
fn producers(c: &mut Client, p: &Producer, threads: usize, span: Duration, clock: &Clock, src: &[u8]) -> Window {
    let stop = AtomicBool::new(false);
    let before = c.counters().pushed;
    let t0 = Instant::now();
    let deadline = ticks() + clock.ticks_in(span.as_nanos() as f64);
    let pushed: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (mut p, stop) = (p.clone(), &stop);
                s.spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let pushed = p.push_with(DATA, SIZE, |buf| fill(buf, src, tag(t, i))).expect("push");
                        if pushed {
                            i += 1;
                        } else {
                            // Full: the polling thread (on this cpu) is behind.
                            std::thread::yield_now();
                        }
                    }
                    i
                })
            })
            .collect();
        while ticks() < deadline {
            let moved = c.counters().pushed;
            assert!(c.poll(clock.now_ns()), "connection lost: {:?}", c.close_reason());
            if c.counters().pushed == moved {
                // Nothing to move: let the producers (on this cpu) run.
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("producer thread")).sum()
    });
    while c.counters().pushed - before < pushed {
        assert!(c.poll(clock.now_ns()), "connection lost: {:?}", c.close_reason());
    }
    assert_eq!(c.counters().pushed - before, pushed, "every message pushed was moved once");
    finish(c, pushed, clock);
    Window { messages: pushed, elapsed: t0.elapsed() }
}

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
    fn label(self) -> &'static str {
        match self {
            Medium::Shm => "SHM",
            Medium::Tcp => "TCP",
        }
    }
}

fn main() {
    if let Some((name, args)) = child::role_args() {
        role(&name, &args);
        return;
    }
    let opts = Opts::from_args();
    if !common::pin_to_cpu(opts.cpus.0) {
        eprintln!("warning: could not pin the polling thread to cpu {}; running unpinned", opts.cpus.0);
    }
    let clock = Clock::calibrate(Duration::from_millis(if opts.quick { 5 } else { 50 }));
    let span = Duration::from_millis(if opts.quick { 30 } else { 300 });
    let n = match (opts.runs_given, opts.quick) {
        (Some(n), _) => n.max(1),
        (None, true) => 1,
        (None, false) => 5,
    };
    let media: Vec<Medium> =
        [Medium::Shm, Medium::Tcp].into_iter().filter(|m| opts.wants(&format!("producers.{}", m.key()))).collect();
    let src: Vec<u8> = (0..SIZE).map(|i| (i * 131 % 251) as u8).collect();
    let total = media.len() * THREADS.len() * (2 * n + 1);
    let mut step = 0;
    let mut report = Report::new("producers");
    let mut data = serde_json::Map::new();
    let mut md = String::from(
        "| transport | producer threads | ours, aggregate (M msg/s) | one thread pushing directly (M msg/s) | \
         ratio per pair | median ratio | discarded |\n|---|---:|---:|---:|---|---:|---:|\n",
    );
    for &m in &media {
        let dir = Scratch::new("producers");
        let shm = ShmPrefix::new();
        let mut server = Child::spawn(
            "sink",
            opts.cpus.1,
            &["--storage".into(), dir.join("server"), "--shm-prefix".into(), shm.as_str().into()],
        );
        let addr = server.expect("ready").parse().expect("address");
        let kind = if m == Medium::Shm { TransportKind::Shm } else { TransportKind::Tcp };
        let mut cfg = ours::client_config("producers", &dir.path().join("client"), shm.as_str(), QUEUE, MAX_MESSAGE);
        cfg.connection.producer_queue_bytes = QUEUE;
        let mut client = ours::connect(cfg, addr, kind, &clock);
        let producer = client.producer().expect("the producers' queue");
        for &threads in &THREADS {
            let (refs, mine) = pairs::chain(n, |turn, i| {
                let who = if turn == Turn::Ours { format!("{threads} producers") } else { "direct".into() };
                let of = if turn == Turn::Ours { n } else { n + 1 };
                progress(step, total, &format!("producers {} {who} window {}/{of}", m.label(), i + 1));
                step += 1;
                // A short warm-up window (not counted) before each.
                match turn {
                    Turn::Reference => {
                        direct(&mut client, span / 10, &clock, &src);
                        direct(&mut client, span, &clock, &src).mmsgs()
                    }
                    Turn::Ours => {
                        producers(&mut client, &producer, threads, span / 10, &clock, &src);
                        producers(&mut client, &producer, threads, span, &clock, &src).mmsgs()
                    }
                }
            });
            let j = RatePairs::judge(&refs, &mine);
            let best_o = j.pairs.iter().filter(|p| p.kept).map(|p| p.ours).fold(f64::NAN, f64::max);
            let best_r =
                j.pairs.iter().filter(|p| p.kept).map(|p| p.reference.0.max(p.reference.1)).fold(f64::NAN, f64::max);
            let key = format!("producers.{}.{threads}", m.key());
            report.push(
                Row::new(
                    &key,
                    &format!("{threads} producer thread(s), 64 B, {}: aggregate", m.label()),
                    "Mmsg/s",
                    Summary { median: j.median_ours(), best: best_o },
                )
                .param("threads", threads as f64)
                .param("pairs_discarded", j.discarded() as f64)
                .ratio("one thread pushing directly (median of pairs)", j.median),
            );
            report.push(
                Row::reference(
                    &format!("producers.{}.direct.{threads}", m.key()),
                    &format!("64 B, {}: one thread pushing directly (pairs of the {threads}-thread row)", m.label()),
                    "Mmsg/s",
                    Summary { median: j.median_reference(), best: best_r },
                )
                .param("threads", 0.0),
            );
            md.push_str(&format!(
                "| {} | {threads} | {} | {} | {} | {:.2} | {} |\n",
                m.label(),
                fmt_num(j.median_ours()),
                fmt_num(j.median_reference()),
                j.compact(),
                j.median,
                j.discarded()
            ));
            data.insert(key, j.json());
        }
        drop((producer, client, server));
    }
    progress(total, total, "producers done");
    report.section("Pairs", md);
    report.data("pairs", serde_json::Value::Object(data));
    report.note(&format!(
        "Per thread count, a chain of windows R O R O ... R (R: the polling thread pushes directly; O: the \
         producer threads push through producer handles and the polling thread only polls), each a warm-up of a \
         tenth of a window then {} ms of messages pushed as fast as they go, then a FINISH the sink answers with \
         the count it got (each producer's order checked); rate = messages / (first push .. answer). Each O pairs \
         with the R before and after it: ratio = ours / the mean of the two; a pair is discarded when the two \
         reference windows differ by more than {:.0}%; rows show the median over the kept pairs ({n} pairs).",
        span.as_millis(),
        pairs::RATE_MOVE_LIMIT * 100.0,
    ));
    report.note(&format!(
        "64 B messages; the session's queue, the rings and the producers' queue hold {} MiB. The direct pusher \
         stages {BATCH} messages with push_more per push; the drain moves up to 1024 per poll and publishes them \
         at once. The producer threads share the polling thread's cpu (cpu {}); the sink server (tcpshm-server, \
         1024 messages per poll) has cpu {}. No allocation per message: the tcpshm-connection no_alloc test.",
        QUEUE / MIB,
        opts.cpus.0,
        opts.cpus.1
    ));
    report.finish(&opts);
}
