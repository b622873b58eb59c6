//! Backpressure, both ways and over both transports: a peer that does not pop makes
//! the other side's `alloc` return `None` (never an error, never a disconnect), and
//! when it pops again everything arrives, in order, exactly once.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{CloseReason, Msg, Name, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};

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
    /// Replies pushed.
    replies: AtomicU64,
    /// Disconnects seen.
    disconnects: Mutex<Vec<CloseReason>>,
    /// An order or content error.
    error: Mutex<Option<String>>,
}

/// Answers a request `n` (u64, type 2) with `n` replies, each carrying its index.
/// When the queue is full it keeps the request and resumes where it stopped at the
/// next poll. While `hold` is set, it keeps every message without popping (a server
/// that does not pop); otherwise it pops and checks that message `k` carries `k`.
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
            let done = self.progress.entry(*conn.client()).or_insert(0);
            while *done < value {
                match conn.alloc(8) {
                    Ok(Some(buf)) => {
                        buf.copy_from_slice(&done.to_le_bytes());
                        conn.push(1).unwrap();
                        *done += 1;
                        self.seen.replies.fetch_add(1, Ordering::Relaxed);
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

fn small(mut cfg: ServerConfig) -> ServerConfig {
    cfg.connection.session.max_message = 1024;
    cfg.connection.queue_bytes = 16 << 10;
    cfg.connection.shm.ring_bytes = 16 << 10;
    cfg
}

struct Setup {
    seen: Arc<Seen>,
    hold: Arc<AtomicBool>,
    client: Client,
    _srv: Polled<Server<AcceptAll, RoundRobin, Burst>>,
    _dir: TempDir,
}

fn setup(kind: TransportKind, tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let seen = Arc::new(Seen::default());
    let hold = Arc::new(AtomicBool::new(false));
    let handler = Burst { seen: seen.clone(), hold: hold.clone(), progress: HashMap::new() };
    let server =
        Server::bind(small(server_config("Srv", &dir)), AcceptAll, RoundRobin::default(), vec![handler]).unwrap();
    let addr = server.local_addrs()[0];
    let srv = Polled::spawn(server, |s| s.poll(now()));
    let mut ccfg = client_config("slowpoke", &dir, "client");
    ccfg.connection.session.max_message = 1024;
    ccfg.connection.queue_bytes = 16 << 10;
    let client = connect(&ccfg, addr, kind);
    Setup { seen, hold, client, _srv: srv, _dir: dir }
}

/// The server pushes far more than its queue holds to a client that does not pop.
fn server_to_a_client_that_does_not_pop(kind: TransportKind) {
    let mut s = setup(kind, "bp-s2c");
    let (seen, c) = (&s.seen, &mut s.client);
    c.alloc(8).unwrap().unwrap().copy_from_slice(&BURST.to_le_bytes());
    c.push(2).unwrap();
    // Poll without popping until the server met a full queue many times.
    wait_until("the server's queue to fill", || {
        assert!(c.poll(now()), "the client was disconnected: {:?}", c.close_reason());
        (seen.full.load(Ordering::Relaxed) >= 100).then_some(())
    });
    // The server is stuck at a full queue: no reply leaves it while the client does
    // not pop, and nobody disconnects, over many more of its attempts.
    let replies = seen.replies.load(Ordering::Relaxed);
    assert!(replies < BURST, "{replies}");
    let full = seen.full.load(Ordering::Relaxed);
    wait_until("many more full attempts", || {
        assert!(c.poll(now()), "disconnected while not popping: {:?}", c.close_reason());
        (seen.full.load(Ordering::Relaxed) >= full + 1000).then_some(())
    });
    assert_eq!(seen.replies.load(Ordering::Relaxed), replies, "replies pushed into a full queue");
    assert!(seen.disconnects.lock().unwrap().is_empty());
    // Now pop: everything arrives, in order, once.
    let mut next = 0u64;
    wait_until("every reply", || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        while let Some(m) = c.front() {
            assert_eq!(m.msg_type, 1);
            assert_eq!(u64::from_le_bytes(m.payload.try_into().unwrap()), next, "reply out of order");
            c.pop();
            next += 1;
        }
        (next == BURST).then_some(())
    });
    // Nothing beyond the burst: one more request's replies come right after it.
    c.alloc(8).unwrap().unwrap().copy_from_slice(&1u64.to_le_bytes());
    c.push(2).unwrap();
    let (t, _, payload) = next_message(c);
    assert_eq!((t, payload), (1, 0u64.to_le_bytes().to_vec()), "a reply beyond the burst (a duplicate?)");
    c.pop();
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
    // Push until alloc says the queue is full.
    loop {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        let Some(buf) = c.alloc(8).unwrap() else { break };
        buf.copy_from_slice(&pushed.to_le_bytes());
        c.push(1).unwrap();
        pushed += 1;
        assert!(pushed < 100_000, "the queue never filled");
    }
    assert!(pushed > 100, "{pushed}");
    // The server is offered the messages and keeps them, many times over, and the
    // client's queue stays full meanwhile.
    wait_until("the server to keep messages", || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        assert!(c.alloc(8).unwrap().is_none(), "the queue freed while the server popped nothing");
        (seen.kept.load(Ordering::Relaxed) > 1000).then_some(())
    });
    assert_eq!(seen.popped.load(Ordering::Relaxed), 0);
    // The server pops again: the client's queue drains and the rest goes through.
    hold.store(false, Ordering::Relaxed);
    let total = pushed + 5_000;
    wait_until("every message popped by the server", || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        while pushed < total {
            let Some(buf) = c.alloc(8).unwrap() else { break };
            buf.copy_from_slice(&pushed.to_le_bytes());
            c.push(1).unwrap();
            pushed += 1;
        }
        (seen.popped.load(Ordering::Relaxed) == total).then_some(())
    });
    assert_eq!(*seen.error.lock().unwrap(), None);
    assert!(seen.disconnects.lock().unwrap().is_empty());
    // Every message acknowledged, and nothing more popped (no duplicate).
    wait_until("every message acknowledged", || {
        c.poll(now());
        (c.counters().queued() == 0).then_some(())
    });
    echo_marker(c, seen);
    assert_eq!(seen.popped.load(Ordering::Relaxed), total + 1, "nothing delivered twice");
}

/// One more message: once the server popped it, everything before was popped too.
fn echo_marker(c: &mut Client, seen: &Seen) {
    let n = seen.popped.load(Ordering::Relaxed);
    c.alloc(8).unwrap().unwrap().copy_from_slice(&n.to_le_bytes());
    c.push(1).unwrap();
    wait_until("the marker popped", || {
        c.poll(now());
        (c.counters().queued() == 0).then_some(())
    });
}

#[test]
fn a_client_waits_for_a_server_that_does_not_pop_tcp() {
    client_to_a_server_that_does_not_pop(TransportKind::Tcp);
}

#[test]
fn a_client_waits_for_a_server_that_does_not_pop_shm() {
    client_to_a_server_that_does_not_pop(TransportKind::Shm);
}

/// Answers the first message (type 8) with a hello, then pops (and counts)
/// everything else without replying.
struct Sink {
    popped: Arc<AtomicU64>,
}

impl GroupHandler for Sink {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        if msg.msg_type == 8 {
            let Ok(Some(buf)) = conn.alloc(5) else { return Handled::Keep };
            buf.copy_from_slice(b"hello");
            conn.push(9).unwrap();
            return Handled::Pop;
        }
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
    let popped = Arc::new(AtomicU64::new(0));
    let sink = Sink { popped: popped.clone() };
    let server = Server::bind(small(server_config("Srv", &dir)), AcceptAll, RoundRobin::default(), vec![sink]).unwrap();
    let addr = server.local_addrs()[0];
    let _srv = Polled::spawn(server, |s| s.poll(now()));
    let mut ccfg = client_config("holder", &dir, "client");
    ccfg.connection.session.max_message = 1024;
    ccfg.connection.queue_bytes = 16 << 10;
    let mut c = connect(&ccfg, addr, kind);
    c.alloc(0).unwrap().unwrap();
    c.push(8).unwrap();
    assert_eq!(next_message(&mut c).2, b"hello");
    const N: u64 = 20_000;
    let mut pushed = 0u64;
    wait_until("the server to pop every message while the client holds one", || {
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        assert_eq!(c.front().map(|m| m.payload), Some(&b"hello"[..]), "still held");
        while pushed < N {
            let Some(buf) = c.alloc(8).unwrap() else { break };
            buf.copy_from_slice(&pushed.to_le_bytes());
            c.push(1).unwrap();
            pushed += 1;
        }
        (popped.load(Ordering::Relaxed) == N).then_some(())
    });
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
