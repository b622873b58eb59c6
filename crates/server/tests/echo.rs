//! End to end: a server and a client in one process exchange echoes over TCP and
//! shared memory, then reconnect and resume.

mod common;

use common::{now, spawn_poller, Echo, TempDir};
use std::sync::atomic::Ordering;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_server::{AcceptAll, RoundRobin, Server, ServerConfig};

fn echo_round_trips(client: &mut Client, n: u64) {
    let mut sent = 0u64;
    let mut got = 0u64;
    let deadline = now() + 20_000_000_000;
    while got < n {
        assert!(now() < deadline, "stalled at {got}/{n}: {:?} {:?}", client.close_reason(), client.counters());
        if sent < n && sent - got < 8 {
            let len = (sent % 200) as usize;
            if let Some(buf) = client.alloc(len).unwrap() {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = (sent as usize + k) as u8;
                }
                client.push((sent % 1000) as u16).unwrap();
                sent += 1;
            }
        }
        client.poll(now());
        while let Some(m) = client.front() {
            assert_eq!(m.msg_type, (got % 1000) as u16);
            assert_eq!(m.payload.len(), (got % 200) as usize);
            assert!(m.payload.iter().enumerate().all(|(k, b)| *b == (got as usize + k) as u8));
            client.pop();
            got += 1;
        }
    }
}

#[test]
fn echo_over_tcp_and_shm() {
    let dir = TempDir::new("echo");
    let mut cfg = ServerConfig::new("Srv".parse().unwrap(), dir.path().join("server"));
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.shm_prefix = dir.shm_prefix();
    cfg.tcp_queue_bytes = 1 << 20;
    cfg.shm_queue_bytes = 1 << 20;
    cfg.max_message = 4096;
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo, Echo]).unwrap();
    let addr = server.local_addrs()[0];
    let (stop, h) = spawn_poller(server, |s| s.poll(now()));

    for (i, kind) in [TransportKind::Tcp, TransportKind::Shm].into_iter().enumerate() {
        let mut ccfg = ClientConfig::new(format!("client{i}").parse().unwrap(), dir.path().join("client"));
        ccfg.shm_prefix = dir.shm_prefix();
        ccfg.queue_bytes = 1 << 20;
        ccfg.max_message = 4096;
        let mut client = Client::open(ccfg.clone(), now()).unwrap();
        let c = client.connect(addr, kind, now()).unwrap();
        assert_eq!(c.server.as_str(), "Srv");
        echo_round_trips(&mut client, 20_000);
        // Reconnect: the session resumes.
        drop(client);
        let mut client = Client::open(ccfg, now()).unwrap();
        client.connect(addr, kind, now()).unwrap();
        echo_round_trips(&mut client, 1_000);
    }
    stop.store(true, Ordering::Relaxed);
    let server = h.join().unwrap();
    drop(server);
}
