//! Backpressure, both ways and over both transports: a peer that does not pop makes
//! the other side's `alloc` return `None` (never an error, never a disconnect), and
//! when it pops again everything arrives, in order, exactly once.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{CloseReason, Msg, Name, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server};

const SECOND: Duration = Duration::from_secs(1);
/// Replies per request: far more than the 16 KiB queues hold.
const BURST: u64 = 20_000;

/// Shared between a handler and its test.
#[derive(Default)]
struct Seen {
    /// `alloc` returned `Ok(None)`.
    full: AtomicU64,
    /// Messages offered and kept (not popped).
    kept: AtomicU64,
    /// Messages popped, checked in order.
    popped: AtomicU64,
    /// Disconnects seen.
    disconnects: Mutex<Vec<CloseReason>>,
    /// An order or content error.
    error: Mutex<Option<String>>,
}

/// Answers a request `n` (u64) with `n` replies, each carrying its index. When the
/// queue is full it keeps the request and resumes where it stopped at the next poll.
/// While `hold` is set, it keeps every message without popping (a server that does
/// not pop); otherwise it pops and checks that message `k` carries `k`.
struct Burst {
    seen: Arc<Seen>,
    hold: Arc<AtomicBool>,
    progress: HashMap<Name, u64>,
}

impl GroupHandler for Burst {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        if self.hold.load(Ordering::Relaxed) {
            self.seen.kept.fetch_add(1, Ordering::Relaxed);
            return Handled::Keep;
        }
        let value = u64::from_le_bytes(msg.payload.try_into().unwrap());
        if msg.msg_type == 2 {
            // A request for a burst of replies.
            let done = self.progress.entry(*conn.client()).or_insert(0);
            while *done < value {
                match conn.alloc(8) {
                    Ok(Some(buf)) => {
                        buf.copy_from_slice(&done.to_le_bytes());
                        conn.push(1).unwrap();
                        *done += 1;
                    }
                    Ok(None) => {
                        self.seen.full.fetch_add(1, Ordering::Relaxed);
                        return Handled::Keep;
                    }
                    Err(e) => panic!("alloc failed: {e}"),
                }
            }
            self.progress.remove(conn.client());
        } else {
            let expected = self.seen.popped.load(Ordering::Relaxed);
            if (value, msg.seq) != (expected, expected) {
                self.seen
                    .error
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("message {expected}: got value {value}, seq {}", msg.seq));
            }
            self.seen.popped.fetch_add(1, Ordering::Relaxed);
        }
        Handled::Pop
    }

    fn on_disconnected(&mut self, _client: &Name, reason: &CloseReason) {
        self.seen.disconnects.lock().unwrap().push(reason.clone());
    }
}

struct Setup {
    seen: Arc<Seen>,
    hold: Arc<AtomicBool>,
    client: Client,
    _srv: Polled<Server<AcceptAll, RoundRobin, Burst>>,
    _shm: ShmCleanup,
    _dir: TempDir,
}

fn setup(kind: TransportKind, tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let prefix = unique_shm_prefix();
    let shm = ShmCleanup(prefix.clone());
    let mut cfg = server_config("Srv", &dir.path().join("server"), &prefix);
    cfg.max_message = 1024;
    cfg.tcp_queue_bytes = 16 << 10;
    cfg.shm_queue_bytes = 16 << 10;
    let seen = Arc::new(Seen::default());
    let hold = Arc::new(AtomicBool::new(false));
    let handler = Burst { seen: seen.clone(), hold: hold.clone(), progress: HashMap::new() };
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![handler]).unwrap();
    let addr = server.local_addrs()[0];
    let srv = Polled::spawn(server, |s| {
        s.poll(now());
        std::thread::yield_now();
    });
    let mut ccfg = client_config("slowpoke", &dir.path().join("client"), &prefix);
    ccfg.max_message = 1024;
    ccfg.queue_bytes = 16 << 10;
    let mut client = Client::open(ccfg, now()).unwrap();
    client.connect(addr, kind, now()).unwrap();
    Setup { seen, hold, client, _srv: srv, _shm: shm, _dir: dir }
}

/// The server pushes far more than its queue holds to a client that does not pop.
fn server_to_a_client_that_does_not_pop(kind: TransportKind) {
    let mut s = setup(kind, "bp-s2c");
    let (seen, c) = (&s.seen, &mut s.client);
    c.alloc(8).unwrap().unwrap().copy_from_slice(&BURST.to_le_bytes());
    c.push(2).unwrap();
    // Poll without popping until the server has hit a full queue several times.
    wait_until("the server's queue to fill", 10 * SECOND, || {
        assert!(c.poll(now()), "the client was disconnected: {:?}", c.close_reason());
        seen.full.load(Ordering::Relaxed) >= 100
    });
    // Still no disconnect on either side, a while later.
    let until = now() + 200_000_000;
    while now() < until {
        assert!(c.poll(now()), "disconnected while not popping: {:?}", c.close_reason());
    }
    assert!(seen.disconnects.lock().unwrap().is_empty());
    // Now pop: everything arrives, in order, once.
    let mut next = 0u64;
    let (mut last, mut since) = (0u64, now());
    while next < BURST {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        while let Some(m) = c.front() {
            assert_eq!(m.msg_type, 1);
            assert_eq!(u64::from_le_bytes(m.payload.try_into().unwrap()), next, "reply out of order");
            c.pop();
            next += 1;
        }
        if next > last {
            (last, since) = (next, now());
        }
        assert!(
            now() - since < 5_000_000_000,
            "replies stalled at {next} of {BURST} though the client pops: the server's queue stays full \
             (alloc returned None {} times), so the client's acks are not applied; client: {:?}",
            seen.full.load(Ordering::Relaxed),
            c.counters()
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    c.poll(now());
    assert!(c.front().is_none(), "a reply beyond the burst (a duplicate?)");
    assert!(seen.disconnects.lock().unwrap().is_empty());
}

#[test]
fn the_server_waits_for_a_client_that_does_not_pop_tcp() {
    server_to_a_client_that_does_not_pop(TransportKind::Tcp);
}

#[test]
fn the_server_waits_for_a_client_that_does_not_pop_shm() {
    server_to_a_client_that_does_not_pop(TransportKind::Shm);
}

/// The client pushes to a server that does not pop until the client's queue is full.
fn client_to_a_server_that_does_not_pop(kind: TransportKind) {
    let mut s = setup(kind, "bp-c2s");
    let (seen, hold, c) = (&s.seen, &s.hold, &mut s.client);
    hold.store(true, Ordering::Relaxed);
    let mut pushed = 0u64;
    let mut full_polls = 0;
    // Push until alloc says the queue is full, and it stays full while polling.
    while full_polls < 2000 {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        match c.alloc(8).unwrap() {
            Some(buf) => {
                buf.copy_from_slice(&pushed.to_le_bytes());
                c.push(1).unwrap();
                pushed += 1;
                full_polls = 0;
                assert!(pushed < 100_000, "the queue never filled");
            }
            None => full_polls += 1,
        }
    }
    assert!(pushed > 100, "{pushed}");
    // The server is offered the messages and keeps them (it may lag behind the
    // client's loop: wait for it), and the client's queue stays full meanwhile.
    wait_until("the server to keep messages", 10 * SECOND, || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        seen.kept.load(Ordering::Relaxed) > 100
    });
    assert!(c.alloc(8).unwrap().is_none(), "the queue freed while the server popped nothing");
    assert_eq!(seen.popped.load(Ordering::Relaxed), 0);
    // The server pops again: the client's queue drains and the rest goes through.
    hold.store(false, Ordering::Relaxed);
    let total = pushed + 5_000;
    wait_until("every message popped by the server", 20 * SECOND, || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        while pushed < total {
            let Some(buf) = c.alloc(8).unwrap() else { break };
            buf.copy_from_slice(&pushed.to_le_bytes());
            c.push(1).unwrap();
            pushed += 1;
        }
        seen.popped.load(Ordering::Relaxed) == total
    });
    assert_eq!(*seen.error.lock().unwrap(), None);
    assert!(seen.disconnects.lock().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seen.popped.load(Ordering::Relaxed), total, "nothing delivered twice");
}

#[test]
fn a_client_waits_for_a_server_that_does_not_pop_tcp() {
    client_to_a_server_that_does_not_pop(TransportKind::Tcp);
}

#[test]
fn a_client_waits_for_a_server_that_does_not_pop_shm() {
    client_to_a_server_that_does_not_pop(TransportKind::Shm);
}

/// Says hello at logon, then pops (and counts) everything without replying.
struct Sink {
    popped: Arc<AtomicU64>,
}

impl GroupHandler for Sink {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        conn.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
        conn.push(9).unwrap();
    }
    fn on_message(&mut self, _conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let expected = self.popped.load(Ordering::Relaxed);
        assert_eq!(u64::from_le_bytes(msg.payload.try_into().unwrap()), expected, "out of order");
        self.popped.fetch_add(1, Ordering::Relaxed);
        Handled::Pop
    }
}

/// A client that holds a received message (reads it, does not pop it yet) while it
/// streams: the server's acks must still reach it, or its queue never frees.
fn a_client_holding_a_message_keeps_streaming(kind: TransportKind) {
    let dir = TempDir::new("bp-hold");
    let prefix = unique_shm_prefix();
    let _shm = ShmCleanup(prefix.clone());
    let mut cfg = server_config("Srv", &dir.path().join("server"), &prefix);
    cfg.max_message = 1024;
    cfg.tcp_queue_bytes = 16 << 10;
    cfg.shm_queue_bytes = 16 << 10;
    let popped = Arc::new(AtomicU64::new(0));
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Sink { popped: popped.clone() }]).unwrap();
    let addr = server.local_addrs()[0];
    let _srv = Polled::spawn(server, |s| {
        s.poll(now());
        std::thread::yield_now();
    });
    let mut ccfg = client_config("holder", &dir.path().join("client"), &prefix);
    ccfg.max_message = 1024;
    ccfg.queue_bytes = 16 << 10;
    let mut c = Client::open(ccfg, now()).unwrap();
    c.connect(addr, kind, now()).unwrap();
    wait_until("the hello", 10 * SECOND, || {
        c.poll(now());
        c.front().is_some()
    });
    const N: u64 = 20_000;
    let (mut pushed, mut since) = (0u64, now());
    while popped.load(Ordering::Relaxed) < N {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        assert_eq!(c.front().map(|m| m.payload), Some(&b"hello"[..]), "still held");
        let before = pushed;
        while pushed < N {
            let Some(buf) = c.alloc(8).unwrap() else { break };
            buf.copy_from_slice(&pushed.to_le_bytes());
            c.push(1).unwrap();
            pushed += 1;
        }
        if pushed > before {
            since = now();
        }
        assert!(
            pushed == N || now() - since < 5_000_000_000,
            "the client's queue stays full at {pushed} of {N} pushed while the server popped {}: \
             the server's acks do not reach a client holding a message; client: {:?}",
            popped.load(Ordering::Relaxed),
            c.counters()
        );
    }
    c.pop();
}

#[test]
fn a_client_holding_a_message_keeps_streaming_tcp() {
    a_client_holding_a_message_keeps_streaming(TransportKind::Tcp);
}

#[test]
fn a_client_holding_a_message_keeps_streaming_shm() {
    a_client_holding_a_message_keeps_streaming(TransportKind::Shm);
}
