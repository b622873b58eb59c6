//! # Order entry: requests and responses, fills pushed unprompted, market data
//!
//! ```sh
//! # Runs by itself in a few seconds (a temp dir, a free port), then cleans up.
//! cargo run --release --example order_entry
//! cargo run --release --example order_entry -- --alice tcp --bob shm
//! ```
//!
//! An exchange (a tcpshm server on threads [`tcpshm::runner`] starts) and two
//! traders in this process, each with its own session:
//!
//! 1. **alice** logs in (`--alice`, shared memory by default), places a buy order
//!    with a *request* ([`RpcClient::request`]) and gets its *answer* (the order
//!    id: it rests in the book), watches the market data for a while, and logs off.
//! 2. **bob** logs in (`--bob`, TCP by default) and sells into alice's order with a
//!    blocking [`RpcClient::call`]; the answer says it filled.
//! 3. The exchange **pushes alice her fill unprompted**, from its per-poll hook
//!    ([`GroupHandler::on_poll`] with [`Sessions`]), while alice is **offline**: the
//!    fill waits in her session's persistent queue.
//! 4. alice logs in again (a [`Reconnect`] over a new `Client`, as a restarted
//!    process would) and receives the fill, then more market data.
//!
//! Throughout, a **market-data thread** — not the thread that polls the exchange —
//! pushes ticks to each trader through a producer handle ([`Group::producer`]):
//! every trader gets every tick once, in order, including the ticks published while
//! it was away (they wait in its session's queue, like the fill).
//!
//! Message types:
//!
//! | type | direction | payload |
//! |---:|---|---|
//! | 1 `NEW_ORDER` | request | `[side: u8 (0 buy, 1 sell)][qty: u32][price: u32]` |
//! | answer | to the caller | `[order id: u64][filled now: u32]` (see `tcpshm::rpc`) |
//! | 2 `FILL` | pushed | `[order id: u64][qty: u32][price: u32]` |
//! | 3 `TICK` | pushed | `[tick: u64][bid: u32][ask: u32]` |
//!
//! The book lives in memory (it starts empty when the exchange restarts); the
//! sessions — orders not yet handled, answers and fills not yet read — survive.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tcpshm::clock;
use tcpshm::prelude::*;
use tcpshm::rpc::{Event, Responder, RpcClient, RpcConfig};
use tcpshm::runner::{self, Idle, RunConfig};
use tcpshm::shm::ShmDir;

const NEW_ORDER: u16 = 1;
const FILL: u16 = 2;
const TICK: u16 = 3;

/// A wait that only a hang reaches (the example normally takes well under a second).
const HANG: Nanos = 60_000_000_000;

#[derive(Parser, Debug)]
#[command(about = "tcpshm order entry: requests and answers, fills pushed to an offline trader, a market-data thread")]
struct Args {
    /// The transport alice uses.
    #[arg(long, value_enum, default_value_t = Kind::Shm)]
    alice: Kind,
    /// The transport bob uses.
    #[arg(long, value_enum, default_value_t = Kind::Tcp)]
    bob: Kind,
    /// Ticks alice waits for each time she is logged in.
    #[arg(long, default_value_t = 3)]
    ticks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Tcp,
    Shm,
}

impl From<Kind> for TransportKind {
    fn from(k: Kind) -> TransportKind {
        match k {
            Kind::Tcp => TransportKind::Tcp,
            Kind::Shm => TransportKind::Shm,
        }
    }
}

// ---------------------------------------------------------------------------------
// The exchange
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Order {
    owner: Name,
    id: u64,
    buy: bool,
    qty: u32,
    price: u32,
}

/// One group's handler: the book, the answers, the fills and the market data.
struct Exchange {
    rpc: Responder,
    book: Vec<Order>,
    next_id: u64,
    /// Fills to push to resting orders' owners (from `on_poll`: connected or not).
    fills: Vec<(Name, [u8; 16])>,
    /// Set when alice's connection goes down (the example waits for it).
    alice_gone: Arc<AtomicBool>,
    fills_pushed: u64,
}

fn order_of(payload: &[u8]) -> Option<(bool, u32, u32)> {
    let p: &[u8; 9] = payload.try_into().ok()?;
    let qty = u32::from_le_bytes(p[1..5].try_into().ok()?);
    let price = u32::from_le_bytes(p[5..9].try_into().ok()?);
    Some((p[0] == 0, qty, price))
}

impl Exchange {
    /// Pushes a fill to `owner`'s session, connected or not. `false`: not now (its
    /// queue is full, or its session is not open in the group yet: `on_poll` opens it).
    fn push_fill(&mut self, sessions: &mut Sessions<'_>, owner: Name, fill: [u8; 16]) -> bool {
        let mut conn = match sessions.open(&owner) {
            Ok(conn) => conn,
            Err(SessionError::NotOpen { .. }) => return false,
            Err(e) => {
                eprintln!("exchange: a fill for {owner} is dropped: {e}");
                return true;
            }
        };
        let online = conn.is_connected();
        match conn.alloc(fill.len()) {
            Ok(Some(buf)) => buf.copy_from_slice(&fill),
            Ok(None) => return false,
            Err(e) => {
                eprintln!("exchange: a fill for {owner} is dropped: {e}");
                return true;
            }
        }
        match conn.push(FILL) {
            Ok(()) => {
                let state = if online { "online" } else { "offline: kept for the next login" };
                println!("exchange: pushed a fill to {owner} ({state})");
                self.fills_pushed += 1;
            }
            Err(e) => eprintln!("exchange: a fill for {owner} is dropped: {e}"),
        }
        true
    }
}

impl GroupHandler for Exchange {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let Some((buy, qty, price)) = order_of(msg.payload).filter(|_| msg.msg_type == NEW_ORDER) else {
            conn.close_with(format!("message type {} is not an order", msg.msg_type));
            return Handled::Keep;
        };
        // Match against the best resting order of the other side that crosses.
        let cross = self
            .book
            .iter()
            .enumerate()
            .filter(|(_, o)| o.buy != buy && if buy { o.price <= price } else { o.price >= price })
            .min_by_key(|(_, o)| if buy { o.price } else { u32::MAX - o.price })
            .map(|(i, _)| i);
        let id = self.next_id;
        let filled = cross.map_or(0, |i| self.book[i].qty.min(qty));
        // Answer first: if our queue to this trader is full, nothing happened yet and
        // the order is offered again at the next poll.
        let mut answer = [0u8; 12];
        answer[..8].copy_from_slice(&id.to_le_bytes());
        answer[8..].copy_from_slice(&filled.to_le_bytes());
        match self.rpc.reply(conn, &msg, &answer) {
            Ok(true) => {}
            Ok(false) => return Handled::Keep,
            Err(e) => {
                conn.close_with(e.to_string());
                return Handled::Keep;
            }
        }
        self.next_id += 1;
        if let Some(i) = cross {
            let rest = &mut self.book[i];
            let mut fill = [0u8; 16];
            fill[..8].copy_from_slice(&rest.id.to_le_bytes());
            fill[8..12].copy_from_slice(&filled.to_le_bytes());
            fill[12..].copy_from_slice(&rest.price.to_le_bytes());
            let owner = rest.owner;
            rest.qty -= filled;
            if rest.qty == 0 {
                self.book.remove(i);
            }
            // The resting order's owner gets its fill now, whether connected or not
            // (`conn.sessions()`: the group's other sessions); if its queue is full,
            // at a later poll.
            if !conn.sessions().is_some_and(|others| self.push_fill(others, owner, fill)) {
                self.fills.push((owner, fill));
            }
        }
        if qty > filled {
            self.book.push(Order { owner: *conn.client(), id, buy, qty: qty - filled, price });
        }
        Handled::Pop
    }

    /// Once per poll: fills that did not fit when they happened.
    fn on_poll(&mut self, sessions: &mut Sessions<'_>, _now: Nanos) {
        while let Some(&(owner, fill)) = self.fills.first() {
            if !self.push_fill(sessions, owner, fill) {
                break; // that queue is full: next poll
            }
            self.fills.remove(0);
        }
    }

    fn on_disconnected(&mut self, client: &Name, _reason: &CloseReason) {
        println!("exchange: {client} disconnected");
        if client.as_str() == "alice" {
            self.alice_gone.store(true, Ordering::Release);
        }
    }
}

/// The market-data thread: a tick every half millisecond to each subscriber until
/// told to stop, pushed through the subscribers' producer handles (the exchange's
/// polling thread moves them into the sessions). Returns how many it published.
fn market_data(mut feeds: Vec<Producer>, stop: Arc<AtomicBool>) -> Result<u64> {
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let mut tick = [0u8; 16];
        tick[..8].copy_from_slice(&n.to_le_bytes());
        tick[8..12].copy_from_slice(&(49 + (n % 3) as u32).to_le_bytes());
        tick[12..].copy_from_slice(&(51 + (n % 2) as u32).to_le_bytes());
        for feed in &mut feeds {
            // `false`: that queue is full (backpressure); try again, the tick is owed.
            while !feed.push(TICK, &tick)? {
                if stop.load(Ordering::Acquire) {
                    return Ok(n);
                }
                std::thread::yield_now();
            }
        }
        n += 1;
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------
// The traders
// ---------------------------------------------------------------------------------

struct Place<'a> {
    dir: &'a Path,
    prefix: &'a str,
    addr: SocketAddr,
}

/// A trader's session (opened from its directory: a second call is what a restarted
/// process does), kept connected by a `Reconnect`, with request/response on top.
fn log_in(place: &Place<'_>, name: &str, kind: Kind) -> Result<RpcClient<Reconnect>> {
    let mut cfg = ClientConfig::new(name.parse()?, place.dir.join(name));
    cfg.connection.shm.prefix = place.prefix.to_string();
    cfg.transport = kind.into();
    let client = <Client>::open(cfg, clock::now()).with_context(|| format!("open {name}'s session"))?;
    let mut link = Reconnect::new(client, place.addr, kind.into(), ReconnectConfig::default());
    let deadline = clock::now() + HANG;
    while !link.poll(clock::now()) {
        if let Some(ReconnectEvent::Failed { error } | ReconnectEvent::LostState { error }) = link.next_event() {
            bail!("{name} cannot log in: {error}");
        }
        if clock::now() > deadline {
            bail!("{name}: no login");
        }
        std::thread::yield_now();
    }
    println!("{name}: logged in over {}", TransportKind::from(kind));
    Ok(RpcClient::new(link, RpcConfig::default()))
}

fn order(buy: bool, qty: u32, price: u32) -> [u8; 9] {
    let mut o = [0u8; 9];
    o[0] = u8::from(!buy);
    o[1..5].copy_from_slice(&qty.to_le_bytes());
    o[5..].copy_from_slice(&price.to_le_bytes());
    o
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What a trader saw.
#[derive(Default)]
struct Seen {
    answer: Option<(u64, u32)>,
    fills: Vec<(u64, u32, u32)>,
    ticks: u64,
    last_tick: Option<(u32, u32)>,
    /// The number of the next tick due: each arrives once, in order.
    next_tick: u64,
}

impl Seen {
    fn note(&mut self, name: &str, event: Event<'_>) -> Result<()> {
        match event {
            Event::Reply { body, .. } => self.answer = Some((u64_at(body, 0), u32_at(body, 8))),
            Event::Message(m) if m.msg_type == FILL => {
                let fill = (u64_at(m.payload, 0), u32_at(m.payload, 8), u32_at(m.payload, 12));
                println!("{name}: fill: order {} filled {} @ {}", fill.0, fill.1, fill.2);
                self.fills.push(fill);
            }
            Event::Message(m) if m.msg_type == TICK => {
                let n = u64_at(m.payload, 0);
                if n != self.next_tick {
                    bail!("{name}: tick {n} where tick {} was due", self.next_tick);
                }
                self.next_tick += 1;
                self.ticks += 1;
                self.last_tick = Some((u32_at(m.payload, 8), u32_at(m.payload, 12)));
            }
            other => bail!("{name}: unexpected {other:?}"),
        }
        Ok(())
    }
}

/// Polls until `done(seen)`; every event is noted.
fn until(rpc: &mut RpcClient<Reconnect>, name: &str, seen: &mut Seen, done: impl Fn(&Seen) -> bool) -> Result<()> {
    let deadline = clock::now() + HANG;
    while !done(seen) {
        let now = clock::now();
        if now > deadline {
            bail!("{name}: waited too long");
        }
        rpc.poll(now);
        while let Some(event) = rpc.next(now) {
            seen.note(name, event)?;
        }
        std::thread::yield_now();
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("tcpshm-order-entry-{pid}"));
    let prefix = format!("tcpshm-order-entry-{pid}-");
    let result = run(&args, &dir, &prefix);
    // Clean up whatever happened.
    let _ = std::fs::remove_dir_all(&dir);
    let shm = ShmDir::new(ConnectionConfig::default().shm.dir, &prefix)?;
    for e in shm.list().unwrap_or_default() {
        shm.remove(&e.server, &e.client)?;
    }
    result
}

fn run(args: &Args, dir: &Path, prefix: &str) -> Result<()> {
    // The exchange, on threads the runner starts.
    let mut cfg = ServerConfig::new("exchange".parse()?, dir.join("exchange"));
    cfg.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    cfg.connection.shm.prefix = prefix.to_string();
    let alice_gone = Arc::new(AtomicBool::new(false));
    let exchange = Exchange {
        rpc: Responder::default(),
        book: Vec::new(),
        next_id: 1,
        fills: Vec::new(),
        alice_gone: alice_gone.clone(),
        fills_pushed: 0,
    };
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![exchange])?;
    // A producer handle per subscriber, for the market-data thread (taken before the
    // runner moves the group to its thread).
    let feeds = ["alice", "bob"]
        .into_iter()
        .map(|name| Ok(server.groups()[0].producer(&name.parse()?)?))
        .collect::<Result<Vec<Producer>>>()?;
    let running = runner::run(server, RunConfig { idle: Idle::Yield })?;
    let place = Place { dir, prefix, addr: running.local_addrs()[0] };
    println!("exchange: listening on {}", place.addr);

    let stop_md = Arc::new(AtomicBool::new(false));
    let md = {
        let stop = stop_md.clone();
        std::thread::Builder::new().name("market-data".into()).spawn(move || market_data(feeds, stop))?
    };

    // 1. alice: a buy order (request, answer), market data, then she logs off.
    let mut alice = log_in(&place, "alice", args.alice)?;
    let mut seen = Seen::default();
    let id = alice.request(NEW_ORDER, &order(true, 100, 50), clock::now() + HANG)?.ok_or(anyhow!("queue full"))?;
    until(&mut alice, "alice", &mut seen, |s| s.answer.is_some())?;
    let (order_id, filled) = seen.answer.expect("answered");
    println!("alice: call {id} answered: order {order_id} resting (buy 100 @ 50, {filled} filled now)");
    until(&mut alice, "alice", &mut seen, |s| s.ticks >= args.ticks)?;
    let (bid, ask) = seen.last_tick.expect("a tick");
    println!("alice: {} ticks of market data, last {bid}/{ask}", seen.ticks);
    drop(alice);
    println!("alice: logged off");
    let deadline = clock::now() + HANG;
    while !alice_gone.load(Ordering::Acquire) {
        if clock::now() > deadline {
            bail!("the exchange did not see alice leave");
        }
        std::thread::yield_now();
    }

    // 2. bob sells into alice's order, with a blocking call.
    let mut bob = log_in(&place, "bob", args.bob)?;
    let mut bob_seen = Seen::default();
    let mut meanwhile = Ok(());
    let answer = bob.call(NEW_ORDER, &order(false, 100, 49), HANG, clock::now, |event| {
        if meanwhile.is_ok() {
            meanwhile = bob_seen.note("bob", event);
        }
    })?;
    meanwhile?;
    println!("bob: sold 100 @ 49 as order {}: {} filled", u64_at(&answer, 0), u32_at(&answer, 8));
    drop(bob);
    println!("bob: logged off");

    // 3. alice's next login: the fill pushed while she was away, then market data.
    let mut alice = log_in(&place, "alice", args.alice)?;
    // Her ticks go on where they stopped: those published while she was away first.
    let mut seen = Seen { next_tick: seen.next_tick, ..Seen::default() };
    until(&mut alice, "alice", &mut seen, |s| !s.fills.is_empty() && s.ticks >= args.ticks)?;
    if seen.fills != [(order_id, 100, 50)] {
        bail!("alice expected one fill of order {order_id}, 100 @ 50; got {:?}", seen.fills);
    }
    println!("alice: got the fill pushed while she was offline, and {} more ticks", seen.ticks);
    drop(alice);

    stop_md.store(true, Ordering::Release);
    let published = md.join().map_err(|_| anyhow!("the market-data thread panicked"))??;
    let (_control, mut groups) = running.join()?;
    let ex = groups[0].handler();
    println!(
        "exchange: {} fills pushed, {} orders resting; market data: {published} ticks to each trader",
        ex.fills_pushed,
        ex.book.len()
    );
    println!("done");
    Ok(())
}
