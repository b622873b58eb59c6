//! No heap allocation per message in steady state: a server (control and a group)
//! and a client echo over TCP and over shared memory on this one thread, and a
//! counting allocator sees no allocation while thousands of messages go round.

mod common;

use common::*;
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_server::{AcceptAll, RoundRobin, Server};
use tcpshm_test_support::alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `n` echoes, one at a time, polling the server and the client from this thread.
fn echoes(server: &mut Server<AcceptAll, RoundRobin, Echo>, c: &mut Client, n: u64) {
    const SIZES: [usize; 4] = [16, 36, 68, 200];
    let mut sent = [0u8; 200];
    for i in 0..n {
        let len = SIZES[(i % 4) as usize];
        for (k, b) in sent[..len].iter_mut().enumerate() {
            *b = (i as usize).wrapping_add(k) as u8;
        }
        loop {
            if let Some(buf) = c.alloc(len).unwrap() {
                buf.copy_from_slice(&sent[..len]);
                c.push((i % 1000) as u16).unwrap();
                break;
            }
            server.poll(now());
            c.poll(now());
        }
        // No `wait_until` here: its panic message would be formatted (allocated) only
        // on failure, but the closure itself must not allocate either; a plain loop
        // with the same deadline keeps the measured path obvious.
        let deadline = now() + tcpshm_test_support::WAIT.as_nanos() as u64;
        loop {
            server.poll(now());
            assert!(c.poll(now()), "disconnected");
            if let Some(m) = c.front() {
                assert!(m.msg_type == (i % 1000) as u16 && m.payload == &sent[..len], "bad echo");
                c.pop();
                break;
            }
            assert!(now() < deadline, "no echo");
        }
    }
}

#[test]
fn steady_state_echo_allocates_nothing_per_message() {
    let dir = TempDir::new("no-alloc");
    let server = Server::bind(server_config("Srv", &dir), AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
    let addr = server.local_addrs()[0];
    // Connect while another thread polls the server (connect blocks), then take the
    // server back and drive everything from this thread.
    let polled = Polled::spawn(server, |s| s.poll(now()));
    let mut tcp = connect(&client_config("tcp", &dir, "tcp"), addr, TransportKind::Tcp);
    let mut shm = connect(&client_config("shm", &dir, "shm"), addr, TransportKind::Shm);
    let mut server = polled.stop();

    for (what, c) in [("TCP", &mut tcp), ("SHM", &mut shm)] {
        // Warm up: buffers reach their working size, first-time paths run.
        echoes(&mut server, c, 20_000);
        let (n, ()) = count(|| echoes(&mut server, c, 20_000));
        assert_eq!(n, 0, "{what}: {n} heap allocations in 20,000 echoes (server + client)");
        // The counter works: an allocation in the same closure is seen.
        let (n, v) = count(|| vec![0u8; 16]);
        assert_eq!((n, v.len()), (1, 16));
    }
}
