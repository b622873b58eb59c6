//! The facade's conveniences: the runner polls a server on threads it starts, stops
//! and joins them, gives the handlers back, and reports a panicking handler; the
//! clock is monotonic.

use std::time::Duration;
use tcpshm::prelude::*;
use tcpshm::runner::{self, Idle, RunConfig, RunError};
use tcpshm_test_support::{wait_until, TempDir};

/// Echoes and counts; panics on a message "panic".
#[derive(Default)]
struct Counting {
    seen: u64,
}

impl GroupHandler for Counting {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        assert_ne!(msg.payload, b"panic", "asked to panic");
        let Ok(Some(buf)) = conn.alloc(msg.payload.len()) else { return Handled::Keep };
        buf.copy_from_slice(msg.payload);
        conn.push(msg.msg_type).unwrap();
        self.seen += 1;
        Handled::Pop
    }
}

fn server(dir: &TempDir) -> Server<AcceptAll, RoundRobin, Counting> {
    let mut cfg = ServerConfig::new("Srv".parse().unwrap(), dir.join("server"));
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.connection.shm.prefix = dir.shm_prefix().to_string();
    Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Counting::default(), Counting::default()]).unwrap()
}

fn client(dir: &TempDir, name: &str, addr: std::net::SocketAddr, kind: TransportKind) -> Client {
    let mut cfg = ClientConfig::new(name.parse().unwrap(), dir.join(name));
    cfg.connection.shm.prefix = dir.shm_prefix().to_string();
    let mut c = Client::open(cfg, tcpshm::clock::now()).unwrap();
    c.connect(addr, kind, tcpshm::clock::now()).unwrap();
    c
}

fn echo(c: &mut Client, text: &[u8]) {
    c.alloc(text.len()).unwrap().unwrap().copy_from_slice(text);
    c.push(1).unwrap();
    let got = wait_until("an echo", || {
        c.poll(tcpshm::clock::now());
        let m = c.front()?.payload.to_vec();
        c.pop();
        Some(m)
    });
    assert_eq!(got, text);
}

#[test]
fn the_runner_serves_until_stopped_and_gives_the_handlers_back() {
    let dir = TempDir::new("runner");
    for idle in [Idle::Yield, Idle::Sleep(Duration::from_micros(50))] {
        let running = runner::run(server(&dir), RunConfig { idle }).unwrap();
        let addr = running.local_addrs()[0];
        let mut a = client(&dir, "a", addr, TransportKind::Tcp);
        let mut b = client(&dir, "b", addr, TransportKind::Shm);
        for _ in 0..3 {
            echo(&mut a, b"over tcp");
            echo(&mut b, b"over shm");
        }
        let stop = running.stop_handle();
        assert!(!stop.is_stopped());
        std::thread::spawn(move || stop.stop()).join().unwrap();
        let (control, groups) = running.join().unwrap();
        let seen: Vec<u64> = groups.into_iter().map(|mut g| g.handler().seen).collect();
        assert_eq!(seen, [3, 3], "RoundRobin: one client per group, every message counted");
        assert!(control.stats().admitted >= 2);
        drop((a, b));
    }
}

#[test]
fn a_panicking_handler_is_reported_by_join() {
    let dir = TempDir::new("runner-panic");
    let running = runner::run(server(&dir), RunConfig { idle: Idle::Yield }).unwrap();
    let mut c = client(&dir, "a", running.local_addrs()[0], TransportKind::Tcp);
    c.alloc(5).unwrap().unwrap().copy_from_slice(b"panic");
    c.push(1).unwrap();
    wait_until("the group thread to die", || {
        c.poll(tcpshm::clock::now());
        (!c.poll(tcpshm::clock::now())).then_some(())
    });
    let Err(e) = running.join() else { panic!("join hid a panicked group") };
    assert!(matches!(&e, RunError::Panicked { name } if name == "tcpshm-group-0"), "{e}");
}

#[test]
fn the_clock_is_monotonic_and_never_zero() {
    let mut last = tcpshm::clock::now();
    assert!(last >= 1_000_000_000);
    for _ in 0..10_000 {
        let t = tcpshm::clock::now();
        assert!(t >= last);
        last = t;
    }
    assert_eq!(tcpshm::clock::since(u64::MAX), 0);
}
