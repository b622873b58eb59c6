//! Request/response against a real server, over TCP and shared memory: answers match
//! their calls among messages the server pushes unprompted; deadlines on the caller's
//! clock, late answers reported once; a second answer to a call dropped; answers a
//! dead client never consumed come back as orphans, once; the blocking call; a reset
//! session abandons its calls. (SIGKILL of either side: `crash.rs`.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_rpc::{CallError, Event, Responder, RpcClient, RpcConfig};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};
use tcpshm_test_support::{now, wait_until, TempDir};

/// Request types.
const ECHO: u16 = 1;
/// Answered twice (as a server that died between answer and pop would).
const TWICE: u16 = 2;
/// Held until the test releases it.
const HELD: u16 = 3;
/// A notice pushed before the answer.
const NOTICE_FIRST: u16 = 4;
const NOTICE: u16 = 50;

#[derive(Clone, Default)]
struct Svc {
    release: Arc<AtomicBool>,
}

impl GroupHandler for Svc {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let rpc = Responder::default();
        match msg.msg_type {
            HELD if !self.release.load(Ordering::SeqCst) => return Handled::Keep,
            TWICE => {
                assert!(rpc.reply(conn, &msg, msg.payload).unwrap());
            }
            NOTICE_FIRST => {
                conn.alloc(6).unwrap().unwrap().copy_from_slice(b"notice");
                conn.push(NOTICE).unwrap();
            }
            _ => {}
        }
        match rpc.reply(conn, &msg, msg.payload) {
            Ok(true) => Handled::Pop,
            _ => Handled::Keep,
        }
    }
}

struct Env {
    dir: TempDir,
    svc: Svc,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl Env {
    fn new(tag: &str, server_name: &str) -> Env {
        let dir = TempDir::new(tag);
        let svc = Svc::default();
        let (stop, thread, addr) = serve(&dir, server_name, svc.clone());
        Env { dir, svc, stop, thread: Some(thread), addr }
    }

    fn restart(&mut self, server_name: &str) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let (stop, thread, addr) = serve(&self.dir, server_name, self.svc.clone());
        (self.stop, self.thread, self.addr) = (stop, Some(thread), addr);
    }

    fn client(&self, kind: TransportKind) -> Client {
        let mut cfg = ClientConfig::new("caller".parse().unwrap(), self.dir.join("client"));
        cfg.connection.shm.prefix = self.dir.shm_prefix().to_string();
        cfg.transport = kind;
        let mut c = <Client>::open(cfg, now()).unwrap();
        c.connect(self.addr, kind, now()).unwrap();
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(dir: &TempDir, name: &str, svc: Svc) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>, SocketAddr) {
    let mut cfg = ServerConfig::new(name.parse().unwrap(), dir.join("server"));
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.connection.shm.prefix = dir.shm_prefix().to_string();
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![svc]).unwrap();
    let addr = server.local_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            server.poll(now());
            std::thread::yield_now();
        }
    });
    (stop, thread, addr)
}

/// An owned copy of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Reply(u64, Vec<u8>),
    TimedOut(u64),
    Late(u64, Vec<u8>),
    Orphan(u64, Vec<u8>),
    Message(u16, Vec<u8>),
}

fn owned(e: Event<'_>) -> Ev {
    match e {
        Event::Reply { id, body } => Ev::Reply(id, body.to_vec()),
        Event::TimedOut { id } => Ev::TimedOut(id),
        Event::Late { id, body } => Ev::Late(id, body.to_vec()),
        Event::Orphan { id, body } => Ev::Orphan(id, body.to_vec()),
        Event::Message(m) => Ev::Message(m.msg_type, m.payload.to_vec()),
    }
}

/// Polls until `n` events arrived (with `now` as the clock).
fn events<T: Transport>(rpc: &mut RpcClient<T>, n: usize) -> Vec<Ev> {
    let mut got = vec![];
    wait_until(&format!("{n} events"), || {
        rpc.poll(now());
        while let Some(e) = rpc.next(now()) {
            got.push(owned(e));
        }
        (got.len() >= n).then_some(())
    });
    got
}

const LONG: u64 = 3_600_000_000_000;

fn answers_among_messages(kind: TransportKind) {
    let env = Env::new(&format!("rpc-basic-{kind}"), "Srv");
    let mut rpc = RpcClient::new(env.client(kind), RpcConfig::default());
    let mut want = vec![];
    for k in 0..200u32 {
        let ty = if k % 7 == 0 { NOTICE_FIRST } else { ECHO };
        let body = k.to_le_bytes();
        let id = rpc.request(ty, &body, now() + LONG).unwrap().unwrap();
        if ty == NOTICE_FIRST {
            want.push(Ev::Message(NOTICE, b"notice".to_vec()));
        }
        want.push(Ev::Reply(id, body.to_vec()));
    }
    assert_eq!(events(&mut rpc, want.len()), want);
    assert_eq!(rpc.outstanding(), 0);
    let s = rpc.stats();
    assert_eq!((s.calls, s.replies, s.duplicates, s.orphans, s.timed_out), (200, 200, 0, 0, 0));
}

#[test]
fn answers_match_their_calls_among_pushed_messages_tcp() {
    answers_among_messages(TransportKind::Tcp);
}

#[test]
fn answers_match_their_calls_among_pushed_messages_shm() {
    answers_among_messages(TransportKind::Shm);
}

fn duplicates_timeouts_and_late(kind: TransportKind) {
    let env = Env::new(&format!("rpc-dup-{kind}"), "Srv");
    let mut rpc = RpcClient::new(env.client(kind), RpcConfig::default());
    // Answered twice: reported once.
    let a = rpc.request(TWICE, b"a", now() + LONG).unwrap().unwrap();
    let b = rpc.request(ECHO, b"b", now() + LONG).unwrap().unwrap();
    assert_eq!(events(&mut rpc, 2), [Ev::Reply(a, b"a".to_vec()), Ev::Reply(b, b"b".to_vec())]);
    assert_eq!(rpc.stats().duplicates, 1);
    // Held by the server past the caller's deadline (the caller's clock decides).
    let t0 = 1_000;
    let h = rpc.request(HELD, b"h", t0 + 100).unwrap().unwrap();
    rpc.poll(now());
    assert!(rpc.next(t0 + 99).is_none() && rpc.is_waiting(h));
    assert_eq!(rpc.next_deadline(), Some(t0 + 100));
    assert_eq!(rpc.next(t0 + 100).map(owned), Some(Ev::TimedOut(h)));
    assert!(rpc.next(t0 + 100).is_none(), "reported once");
    env.svc.release.store(true, Ordering::SeqCst);
    assert_eq!(events(&mut rpc, 1), [Ev::Late(h, b"h".to_vec())]);
    let s = rpc.stats();
    assert_eq!((s.timed_out, s.late, s.replies, s.outstanding_is_zero()), (1, 1, 2, true));
}

trait Zero {
    fn outstanding_is_zero(&self) -> bool;
}

impl Zero for tcpshm_rpc::RpcStats {
    fn outstanding_is_zero(&self) -> bool {
        self.calls == self.replies + self.timed_out + self.abandoned
    }
}

#[test]
fn duplicates_are_dropped_and_late_answers_reported_once_tcp() {
    duplicates_timeouts_and_late(TransportKind::Tcp);
}

#[test]
fn duplicates_are_dropped_and_late_answers_reported_once_shm() {
    duplicates_timeouts_and_late(TransportKind::Shm);
}

/// A client that goes away without consuming its answers finds them as orphans in
/// its next incarnation, once each; answers it consumed never come back.
fn orphans(kind: TransportKind) {
    let env = Env::new(&format!("rpc-orphans-{kind}"), "Srv");
    let mut rpc = RpcClient::new(env.client(kind), RpcConfig::default());
    let ids: Vec<u64> = (0..5u8).map(|k| rpc.request(ECHO, &[k], now() + LONG).unwrap().unwrap()).collect();
    let first = wait_until("the first answer", || {
        rpc.poll(now());
        rpc.next(now()).map(owned)
    });
    assert_eq!(first, Ev::Reply(ids[0], vec![0]));
    rpc.done(); // answer 0 consumed, the others not
    wait_until("the server to answer every call", || {
        rpc.transport_mut().poll(now());
        (rpc.transport().counters().peer_consumed >= 5).then_some(())
    });
    drop(rpc); // the process "dies": answers 1..5 not consumed
    let mut rpc = RpcClient::new(env.client(kind), RpcConfig::default());
    let got = events(&mut rpc, 4);
    let want: Vec<Ev> = (1..5u8).map(|k| Ev::Orphan(ids[k as usize], vec![k])).collect();
    assert_eq!(got, want);
    let id = rpc.request(ECHO, b"new", now() + LONG).unwrap().unwrap();
    assert_eq!(events(&mut rpc, 1), [Ev::Reply(id, b"new".to_vec())], "nothing else came back");
}

#[test]
fn unconsumed_answers_come_back_as_orphans_once_tcp() {
    orphans(TransportKind::Tcp);
}

#[test]
fn unconsumed_answers_come_back_as_orphans_once_shm() {
    orphans(TransportKind::Shm);
}

#[test]
fn the_blocking_call_hands_other_events_over_and_times_out() {
    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let env = Env::new(&format!("rpc-call-{kind}"), "Srv");
        let mut rpc = RpcClient::new(env.client(kind), RpcConfig::default());
        let other_id = rpc.request(NOTICE_FIRST, b"x", now() + LONG).unwrap().unwrap();
        let seen = Arc::new(Mutex::new(vec![]));
        let s = seen.clone();
        let answer = rpc.call(ECHO, b"blocking", 60_000_000_000, now, move |e| s.lock().unwrap().push(owned(e)));
        assert_eq!(answer.unwrap(), b"blocking");
        assert_eq!(
            *seen.lock().unwrap(),
            [Ev::Message(NOTICE, b"notice".to_vec()), Ev::Reply(other_id, b"x".to_vec())],
            "everything before the answer, in order"
        );
        // Held: the call times out on its clock; the answer comes later as Late.
        let mut t = 0;
        let r = rpc.call(
            HELD,
            b"held",
            1_000,
            || {
                t += 10;
                t
            },
            |e| panic!("{e:?}"),
        );
        let Err(CallError::TimedOut { id }) = r else { panic!("{r:?}") };
        env.svc.release.store(true, Ordering::SeqCst);
        assert_eq!(events(&mut rpc, 1), [Ev::Late(id, b"held".to_vec())]);
    }
}

/// The server comes back under another name: the session was reset, the calls in
/// flight abandoned; new calls work.
#[test]
fn a_reset_session_abandons_its_calls() {
    let mut env = Env::new("rpc-reset", "Srv");
    env.svc.release.store(false, Ordering::SeqCst);
    let mut rpc = RpcClient::new(env.client(TransportKind::Tcp), RpcConfig::default());
    let held = rpc.request(HELD, b"never", now() + LONG).unwrap().unwrap();
    let id = rpc.request(ECHO, b"e", now() + LONG).unwrap().unwrap();
    // The server handles in order: the held request blocks the echo behind it.
    env.restart("Srv2");
    let addr = env.addr;
    let c = rpc.transport_mut();
    c.close(tcpshm_proto::CloseReason::Requested);
    let connected = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    assert!(connected.reset.is_some(), "a new server name resets the session");
    assert_eq!(rpc.reset(), [held, id]);
    assert_eq!(rpc.stats().abandoned, 2);
    env.svc.release.store(true, Ordering::SeqCst);
    let n = rpc.request(ECHO, b"fresh", now() + LONG).unwrap().unwrap();
    assert_eq!(events(&mut rpc, 1), [Ev::Reply(n, b"fresh".to_vec())]);
}
