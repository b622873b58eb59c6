//! Request/response round trip (`tcpshm-rpc`) against the plain echo of the same
//! sizes, over SHM and over TCP: what the helper costs.
//!
//! * **Ours**: an `RpcClient` over a `Client` sends each payload as a request
//!   (`request`: the call id is the request's seq), polls until `next` reports its
//!   `Reply`, and checks the body; the server's handler answers with
//!   `Responder::reply` (the id in front of the body).
//! * **Reference**: the echo suite's plain echo — the same `Client` pushing the same
//!   payload and popping the echo, the server's handler copying it back.
//!
//! Payloads of 16/36/68/200 bytes at random, the same sequence for both, every answer
//! checked byte for byte. Each server is a separate process pinned to the second cpu,
//! the client this process on the first; the server not measured is paused. Judged in
//! back-to-back pairs (`tcpshm_bench::pairs`): a chain of windows `R O R O ... R`, per
//! pair the ratio of ours to the reference's two windows at p50, p99, p99.9 (and
//! p99.99), pairs whose reference p50 moved by more than 10% discarded, the median of
//! the rest. Goal: ≤ 1.1x at p50, over each medium.
//!
//! `cargo xtask bench rpc` runs it; `--quick` is a smoke run of a few seconds.

use hdrhistogram::Histogram;
use std::time::Duration;
use tcpshm_bench::child::{self, Child};
use tcpshm_bench::clock::Clock;
use tcpshm_bench::common::{self, progress, Opts, Report, Row, Summary};
use tcpshm_bench::floors::{Ours, Pinger};
use tcpshm_bench::ours::{self, Echo, DATA};
use tcpshm_bench::pairs::{self, LatencyPairs, Turn, QUANTILES};
use tcpshm_bench::payload::Payloads;
use tcpshm_bench::round_trips::measure;
use tcpshm_bench::scratch::{Scratch, ShmPrefix};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_rpc::{Event, Responder, RpcClient, RpcConfig};
use tcpshm_server::{Conn, GroupHandler, Handled};

/// The goal at p50: ours over the plain echo.
const GOAL_P50: f64 = 1.1;

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
    fn kind(self) -> TransportKind {
        match self {
            Medium::Shm => TransportKind::Shm,
            Medium::Tcp => TransportKind::Tcp,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Medium::Shm => "SHM",
            Medium::Tcp => "TCP",
        }
    }
}

/// The server's handler for ours: answers each request with its payload.
#[derive(Debug, Default, Clone, Copy)]
struct Answer {
    rpc: Responder,
}

impl GroupHandler for Answer {
    #[inline]
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match self.rpc.reply(conn, &msg, msg.payload) {
            Ok(true) => Handled::Pop,
            Ok(false) => Handled::Keep,
            Err(e) => {
                conn.close_with(e.to_string());
                Handled::Keep
            }
        }
    }
}

/// The client side of ours: one call at a time, spinning until its answer.
struct Caller(RpcClient<Client>);

impl Pinger for Caller {
    #[inline]
    fn ping(&mut self, msg: &[u8], now: u64) -> bool {
        let id = loop {
            match self.0.request(DATA, msg, u64::MAX) {
                Ok(Some(id)) => break id,
                Ok(None) => {
                    self.0.poll(now);
                }
                Err(e) => panic!("request: {e}"),
            }
        };
        loop {
            match self.0.next(now) {
                Some(Event::Reply { id: got, body }) => {
                    let ok = got == id && body == msg;
                    self.0.done();
                    return ok;
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => {
                    if !self.0.poll(now) {
                        panic!("connection lost during a call: {:?}", self.0.transport().close_reason());
                    }
                }
            }
        }
    }
}

enum Side {
    Echo(Box<Ours<Client>>),
    Rpc(Box<Caller>),
}

/// A contender: its server process (paused between windows) and its client.
struct Live {
    side: Side,
    child: Child,
    seq: u64,
    gen: Payloads,
    _dir: Scratch,
    _shm: ShmPrefix,
}

impl Live {
    fn start(rpc: bool, m: Medium, opts: &Opts, clock: &Clock) -> Live {
        let dir = Scratch::new("rpc");
        let shm = ShmPrefix::new();
        let role = if rpc { "rpc" } else { "echo" };
        let mut child = Child::spawn(
            role,
            opts.cpus.1,
            &["--storage".into(), dir.join("server"), "--shm-prefix".into(), shm.as_str().into()],
        );
        let addr = child.expect("ready").parse().expect("server address");
        let cfg = ours::client_config("bench", &dir.path().join("client"), shm.as_str(), 1 << 20, 64 * 1024);
        let client = ours::connect(cfg, addr, m.kind(), clock);
        let side = if rpc {
            Side::Rpc(Box::new(Caller(RpcClient::new(client, RpcConfig::default()))))
        } else {
            Side::Echo(Box::new(Ours(client)))
        };
        let mut live = Live { side, child, seq: 0, gen: Payloads::new(), _dir: dir, _shm: shm };
        live.child.stop();
        live
    }

    fn window(&mut self, clock: &Clock, warm: Duration, span: Duration) -> Histogram<u64> {
        self.child.resume();
        let (g, s) = (&mut self.gen, &mut self.seq);
        let h = match &mut self.side {
            Side::Echo(p) => measure(&mut **p, g, s, clock, warm, span),
            Side::Rpc(p) => measure(&mut **p, g, s, clock, warm, span),
        };
        self.child.stop();
        h
    }
}

fn durations(opts: &Opts, m: Medium) -> (Duration, Duration) {
    match (opts.quick, m) {
        (true, _) => (Duration::from_millis(10), Duration::from_millis(40)),
        (false, Medium::Shm) => (Duration::from_millis(50), Duration::from_millis(300)),
        (false, Medium::Tcp) => (Duration::from_millis(100), Duration::from_millis(1000)),
    }
}

fn pair_count(opts: &Opts) -> usize {
    match (opts.runs_given, opts.quick) {
        (Some(n), _) => n.max(1),
        (None, true) => 2,
        (None, false) => 12,
    }
}

fn role(name: &str, args: &[String]) {
    child::become_child(args);
    let clock = Clock::calibrate(Duration::from_millis(5));
    let storage = child::arg(args, "--storage").expect("--storage");
    let prefix = child::arg(args, "--shm-prefix").expect("--shm-prefix");
    let cfg = ours::server_config(std::path::Path::new(storage), prefix, 1 << 20, 64 * 1024);
    match name {
        "echo" => ours::serve(cfg, vec![Echo], clock),
        "rpc" => ours::serve(cfg, vec![Answer::default()], clock),
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
        eprintln!("warning: could not pin the client to cpu {}; running unpinned", opts.cpus.0);
    }
    let clock = Clock::calibrate(Duration::from_millis(if opts.quick { 5 } else { 50 }));
    let media: Vec<Medium> =
        [Medium::Shm, Medium::Tcp].into_iter().filter(|m| opts.wants(&format!("rpc.{}", m.key()))).collect();
    let n = pair_count(&opts);
    let total = media.len() * (2 * n + 1);
    let mut step = 0;
    let mut report = Report::new("rpc");
    let mut data = serde_json::Map::new();
    for &m in &media {
        let mut reference = Live::start(false, m, &opts, &clock);
        let mut mine = Live::start(true, m, &opts, &clock);
        let (warm, span) = durations(&opts, m);
        let (refs, ours) = pairs::chain(n, |turn, i| {
            let (live, what) = match turn {
                Turn::Reference => (&mut reference, format!("rpc {}: plain echo window {}/{}", m.name(), i + 1, n + 1)),
                Turn::Ours => (&mut mine, format!("rpc {}: request/response window {}/{}", m.name(), i + 1, n)),
            };
            progress(step, total, &what);
            step += 1;
            live.window(&clock, warm, span)
        });
        let p = LatencyPairs::judge(&refs, &ours);
        let best = |mine: bool| {
            p.pairs
                .iter()
                .filter(|x| x.kept)
                .map(|x| if mine { x.ours.p50 } else { x.reference.p50 })
                .fold(f64::NAN, f64::min)
        };
        let rep = p.representative.map(|i| &p.pairs[i]);
        let echo_name = format!("plain echo {}", m.name());
        let mut row = Row::new(
            &format!("rpc.{}", m.key()),
            &format!("request/response (tcpshm-rpc) {} round trip", m.name()),
            "ns",
            Summary { median: p.median_ours(0), best: best(true) },
        );
        for (k, (_, q, _)) in QUANTILES.iter().enumerate() {
            row = row.ratio(&format!("{echo_name} ({q}, median of pairs)"), p.median[k]);
        }
        row = row
            .check(&format!("p50 / {echo_name}"), p.median[0], GOAL_P50, false)
            .param("pairs_kept", (p.pairs.len() - p.discarded()) as f64)
            .param("pairs_discarded", p.discarded() as f64);
        if let Some(r) = rep {
            row = row.latency(r.ours.clone());
        }
        report.push(row);
        let mut erow = Row::reference(
            &format!("rpc.echo.{}", m.key()),
            &format!("plain echo {} round trip (the same client and server, no rpc)", m.name()),
            "ns",
            Summary { median: p.median_reference(0), best: best(false) },
        );
        if let Some(r) = rep {
            erow = erow.latency(r.reference.clone());
        }
        report.push(erow);
        report.section(
            &format!("Request/response against the plain echo, {}", m.name()),
            format!("{}\n{}", p.markdown("rpc", &echo_name), p.states_markdown(&echo_name)),
        );
        data.insert(format!("rpc.{}", m.key()), p.json());
    }
    progress(total, total, "rpc done");
    report.data("pairs", serde_json::Value::Object(data));
    let (sw, ss) = durations(&opts, Medium::Shm);
    let (tw, ts) = durations(&opts, Medium::Tcp);
    report.note(&format!(
        "Per medium, a chain of windows R O R O ... R (R: the plain echo, O: request/response), each a warm-up \
         then round trips for a fixed time (SHM: {} + {} ms, TCP: {} + {} ms), one call in flight; each O pairs \
         with the R before and after it: ratios are ours over the two R windows merged, at p50, p99, p99.9 and \
         p99.99; a pair is discarded when the R p50s before and after differ by more than {:.0}%. Rows show the \
         median over the kept pairs ({} pairs). Both servers are separate processes pinned to cpu {} (the one not \
         measured paused), the client this process on cpu {}.",
        sw.as_millis(),
        ss.as_millis(),
        tw.as_millis(),
        ts.as_millis(),
        pairs::MOVE_LIMIT * 100.0,
        n,
        opts.cpus.1,
        opts.cpus.0,
    ));
    report.note(
        "Payloads of 16/36/68/200 bytes at random (the same sequence for both), every answer checked. What ours \
         adds: on the client, the call's bookkeeping (its id is the request's seq; a deadline; the answer \
         matched and the call resolved) and 8 more bytes per answer (the call id); on the server, the id \
         written in front of the answer's body.",
    );
    report.finish(&opts);
}
