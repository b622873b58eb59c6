//! 1,000 simultaneous TCP connections through one server, each exchanging messages,
//! driven by a few client threads; then all of them leave and the server's counts
//! go back to zero.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{CloseReason, Msg, Name, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, LeastLoaded, Server};

const CLIENTS: usize = 1000;
const THREADS: usize = 4;
const ROUNDS: u64 = 10;

/// Echoes, and counts the connections up right now.
struct Counted {
    live: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
}

impl GroupHandler for Counted {
    fn on_logged_on(&mut self, _conn: &mut Conn<'_>) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        self.messages.fetch_add(1, Ordering::Relaxed);
        Echo.on_message(conn, msg)
    }
    fn on_disconnected(&mut self, _client: &Name, _reason: &CloseReason) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[test]
fn a_thousand_simultaneous_tcp_connections_each_exchange_messages() {
    // Per connection: the client's socket and store, the server's socket and store.
    let limit = raise_nofile(8 * CLIENTS as u64 + 256);
    assert!(limit >= 4 * CLIENTS as u64 + 64, "RLIMIT_NOFILE is {limit}: too low for {CLIENTS} connections");
    // Stores on tmpfs: each new session's store is synced when created, which on a
    // disk costs milliseconds; this test is about connections, not the disk.
    let dir = TempDir::new_in("/dev/shm", "many");
    let mut cfg = server_config("Srv", &dir);
    cfg.connection.session.max_message = 64;
    cfg.connection.queue_bytes = 4096;
    let live = Arc::new(AtomicUsize::new(0));
    let messages = Arc::new(AtomicUsize::new(0));
    let handlers = (0..2).map(|_| Counted { live: live.clone(), messages: messages.clone() }).collect::<Vec<_>>();
    let server = Server::bind(cfg, AcceptAll, LeastLoaded, handlers).unwrap();
    let addr = server.local_addrs()[0];
    let srv = Polled::spawn(server, |s| s.poll(now()));

    let connected = Arc::new(Barrier::new(THREADS + 1));
    let exchanged = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (connected, exchanged) = (connected.clone(), exchanged.clone());
            let (base, prefix) = (dir.join("clients"), dir.shm_prefix().to_string());
            std::thread::spawn(move || {
                let mut clients: Vec<Client> = Vec::new();
                for k in 0..CLIENTS / THREADS {
                    let mut cfg = tcpshm_client::ClientConfig::new(format!("c{t}-{k}").parse().unwrap(), &base);
                    cfg.connection.shm.prefix = prefix.clone();
                    cfg.connection.session.max_message = 64;
                    cfg.connection.queue_bytes = 4096;
                    cfg.connect_timeout = std::time::Duration::from_secs(30);
                    clients.push(connect(&cfg, addr, TransportKind::Tcp));
                    // Keep the connected ones alive (heartbeats) while the rest connect.
                    for (j, c) in clients.iter_mut().enumerate() {
                        assert!(c.poll(now()), "c{t}-{j} disconnected: {:?}", c.close_reason());
                    }
                }
                connected.wait();
                for round in 0..ROUNDS {
                    for (k, c) in clients.iter_mut().enumerate() {
                        let v = (k as u64) << 32 | round;
                        c.alloc(8).unwrap().expect("room").copy_from_slice(&v.to_le_bytes());
                        c.push(7).unwrap();
                    }
                    let mut waiting: Vec<usize> = (0..clients.len()).collect();
                    wait_until(&format!("round {round}'s echoes"), || {
                        waiting.retain(|&k| {
                            let c = &mut clients[k];
                            assert!(c.poll(now()), "c{t}-{k} disconnected: {:?}", c.close_reason());
                            let Some(m) = c.front() else { return true };
                            let v = (k as u64) << 32 | round;
                            assert_eq!((m.msg_type, m.payload), (7, &v.to_le_bytes()[..]), "c{t}-{k}");
                            c.pop();
                            false
                        });
                        waiting.is_empty().then_some(())
                    });
                }
                exchanged.wait();
                drop(clients);
            })
        })
        .collect();
    connected.wait();
    // Every client is connected at once. (A client's connect returns on the reply;
    // the handler's `on_logged_on` runs just after it was sent.)
    wait_until("every logon reported", || (live.load(Ordering::Relaxed) == CLIENTS).then_some(()));
    let loads = srv.with(|s| s.groups().iter().map(|g| g.live()).collect::<Vec<_>>());
    assert_eq!(loads, [CLIENTS / 2, CLIENTS / 2], "least loaded spreads them evenly");
    exchanged.wait();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    assert_eq!(messages.load(Ordering::Relaxed), CLIENTS * ROUNDS as usize);
    // All gone: the server noticed every one of them and freed their slots.
    wait_until("every disconnect", || (live.load(Ordering::Relaxed) == 0).then_some(()));
    let stats = srv.with(|s| s.control().stats());
    assert_eq!((stats.accepted, stats.admitted, stats.refused), (CLIENTS as u64, CLIENTS as u64, 0));
    assert_eq!(srv.with(|s| s.groups().iter().map(|g| g.live()).sum::<usize>()), 0);
    drop(srv);
}
