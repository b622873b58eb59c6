//! End to end: a server (two groups) and clients in one process exchange echoes over
//! TCP and shared memory — one at a time and streamed — then reconnect from a new
//! client object and resume.

mod common;

use common::*;
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_server::{AcceptAll, RoundRobin, Server};

/// `n` echoes with at most 8 in flight; lengths 0..200, types and bytes follow the
/// count, each checked.
fn echo_round_trips(client: &mut Client, n: u64) {
    let (mut sent, mut got) = (0u64, 0u64);
    wait_until(&format!("{n} echoes"), || {
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
        assert!(client.poll(now()), "disconnected at {got}/{n}: {:?}", client.close_reason());
        while let Some(m) = client.front() {
            assert_eq!(m.msg_type, (got % 1000) as u16);
            assert_eq!(m.payload.len(), (got % 200) as usize);
            assert!(m.payload.iter().enumerate().all(|(k, b)| *b == (got as usize + k) as u8));
            client.pop();
            got += 1;
        }
        (got == n).then_some(())
    });
}

/// `n` messages pushed as fast as the queue takes them while the echoes are read.
fn streamed(client: &mut Client, n: u32) {
    let (mut sent, mut got) = (0u32, 0u32);
    wait_until(&format!("{n} streamed echoes"), || {
        while sent < n {
            let Some(buf) = client.alloc(4).unwrap() else { break };
            buf.copy_from_slice(&sent.to_le_bytes());
            client.push_more(2).unwrap();
            sent += 1;
        }
        assert!(client.poll(now()), "disconnected at {got}/{n}: {:?}", client.close_reason());
        while let Some(m) = client.front() {
            assert_eq!((m.msg_type, m.payload), (2, &got.to_le_bytes()[..]));
            client.pop();
            got += 1;
        }
        (got == n).then_some(())
    });
}

#[test]
fn echo_over_tcp_and_shm() {
    let dir = TempDir::new("echo");
    let mut cfg = server_config("Srv", &dir);
    cfg.connection.queue_bytes = 1 << 20;
    cfg.connection.shm.ring_bytes = 1 << 20;
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo, Echo]).unwrap();
    let addr = server.local_addrs()[0];
    let srv = Polled::spawn(server, |s| s.poll(now()));

    for (i, kind) in [TransportKind::Tcp, TransportKind::Shm].into_iter().enumerate() {
        let mut ccfg = client_config(&format!("client{i}"), &dir, "client");
        ccfg.connection.queue_bytes = 1 << 20;
        let mut client = <Client>::open(ccfg.clone(), now()).unwrap();
        let c = client.connect(addr, kind, now()).unwrap();
        assert_eq!((c.server.as_str(), c.transport, c.reset, c.to_resend), ("Srv", kind, None, 0));
        echo_round_trips(&mut client, 20_000);
        streamed(&mut client, 50_000);
        // A new client object (a restarted process): the session resumes.
        drop(client);
        let mut client = <Client>::open(ccfg, now()).unwrap();
        assert_eq!(client.resume_point(), 70_000, "{kind}");
        let c = client.connect(addr, kind, now()).unwrap();
        assert_eq!((c.reset, c.to_resend), (None, 0), "{kind}");
        echo_round_trips(&mut client, 1_000);
        assert_eq!(client.counters().consumed, 71_000, "{kind}");
    }
    drop(srv.stop());
}
