mod common;
use common::*;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_server::{AcceptAll, RoundRobin, Server, ServerConfig};

fn run(kind: TransportKind) {
    let dir = TempDir::new(&format!("smoke-{kind}"));
    let mut cfg = ServerConfig::new("Srv".parse().unwrap(), dir.path().join("server"));
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.connection.shm.prefix = dir.shm_prefix();
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
    let addr = server.local_addrs()[0];
    let (stop, h) = spawn_poller(server, |s| s.poll(now()));
    let mut ccfg = ClientConfig::new("cli".parse().unwrap(), dir.path().join("client"));
    ccfg.connection.shm.prefix = dir.shm_prefix();
    let mut c = Client::open(ccfg, now()).unwrap();
    c.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
    c.push(1).unwrap();
    c.connect(addr, kind, now()).unwrap();
    let mut got = 0;
    let t = std::time::Instant::now();
    for i in 0..10_000u32 {
        c.alloc(4).unwrap().unwrap().copy_from_slice(&i.to_le_bytes());
        c.push(2).unwrap();
    }
    while got < 10_001 {
        c.poll(now());
        while let Some(m) = c.front() {
            if got == 0 {
                assert_eq!(m.payload, b"hello");
            } else {
                assert_eq!(m.payload, &((got - 1) as u32).to_le_bytes());
            }
            c.pop();
            got += 1;
        }
        assert!(t.elapsed().as_secs() < 20, "stalled at {got}: {:?} {}", c.close_reason(), c.counters());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
}

#[test]
fn tcp() {
    run(TransportKind::Tcp)
}
#[test]
fn shm() {
    run(TransportKind::Shm)
}
