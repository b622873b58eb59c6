//! All-or-nothing batches, over TCP and shared memory: a handler that answers each
//! request with three messages never half-sends when the queue fills between them
//! (the batch is dropped, the request kept, and the whole batch goes later); a
//! client's batches arrive whole or not at all. (Crashes mid-batch:
//! `batch_crash.rs`.)

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server};

/// Bytes of each part: three of them are a good part of the 64 KiB test queues.
const PART: usize = 3000;

/// Answers request `id` (8 bytes) with parts 0, 1, 2 (type = part), in one batch.
#[derive(Clone, Default)]
struct Triples {
    /// Batches dropped because a part found the queue full.
    aborts: Arc<AtomicU64>,
}

impl GroupHandler for Triples {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let mut batch = conn.batch().unwrap();
        for part in 0..3u8 {
            let Some(buf) = batch.alloc(PART).unwrap() else {
                // Dropping the batch drops the parts staged so far.
                self.aborts.fetch_add(1, Ordering::SeqCst);
                return Handled::Keep;
            };
            buf[..8].copy_from_slice(msg.payload);
            buf[8..].fill(part);
            batch.push(u16::from(part)).unwrap();
        }
        assert_eq!(batch.commit().unwrap(), 3);
        Handled::Pop
    }
}

fn third_part_does_not_fit(kind: TransportKind) {
    let dir = TempDir::new(&format!("batches-{kind}"));
    let h = Triples::default();
    let server = Server::bind(server_config("Srv", &dir), AcceptAll, RoundRobin::default(), vec![h.clone()]).unwrap();
    let addr = server.local_addrs()[0];
    let server = Polled::spawn(server, |s| s.poll(now()));
    let mut c = connect(&client_config("c", &dir, "c"), addr, kind);
    let requests = 60u64; // 540 KB of answers through 64 KiB queues
    let mut next_id = 0u64;
    let mut answered = 0u64;
    let mut part = 0u16;
    wait_until("every request answered", || {
        while next_id < requests {
            let Some(buf) = c.alloc(8).unwrap() else { break };
            buf.copy_from_slice(&next_id.to_le_bytes());
            c.push(1).unwrap();
            next_id += 1;
        }
        assert!(c.poll(now()), "disconnected: {:?}", c.close_reason());
        // Pop only once the server met a full queue mid-batch (then always).
        if h.aborts.load(Ordering::SeqCst) == 0 {
            return None;
        }
        while let Some(m) = c.front() {
            let id = u64::from_le_bytes(m.payload[..8].try_into().unwrap());
            assert_eq!((id, m.msg_type), (answered, part), "parts arrive whole, once, in order");
            assert!(m.payload[8..].iter().all(|&b| u16::from(b) == part) && m.payload.len() == PART);
            c.pop();
            part += 1;
            if part == 3 {
                (part, answered) = (0, answered + 1);
            }
        }
        (answered == requests).then_some(())
    });
    assert!(h.aborts.load(Ordering::SeqCst) >= 1);
    drop(server);
}

#[test]
fn a_batch_whose_third_message_does_not_fit_sends_nothing_until_all_fit_tcp() {
    third_part_does_not_fit(TransportKind::Tcp);
}

#[test]
fn a_batch_whose_third_message_does_not_fit_sends_nothing_until_all_fit_shm() {
    third_part_does_not_fit(TransportKind::Shm);
}

/// A client's batches: committed ones arrive whole, aborted ones and one dropped
/// when its third message found the queue full never arrive, and the numbers have no
/// gap (the server sees consecutive seqs).
fn client_batches(kind: TransportKind) {
    let dir = TempDir::new(&format!("batches-client-{kind}"));
    let mut cfg = client_config("c", &dir, "c");
    cfg.transport = kind;
    // Over shared memory, pushes before the first login go to the store until a
    // session has rings: log in once first, so the batches go to the rings.
    if kind == TransportKind::Shm {
        let server = Server::bind(server_config("Srv", &dir), AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
        let addr = server.local_addrs()[0];
        let server = Polled::spawn(server, |s| s.poll(now()));
        let mut c = connect(&cfg, addr, kind);
        echo_once(&mut c, b"first");
        drop((c, server));
    }
    let mut c = <Client>::open(cfg.clone(), now()).unwrap();
    fn stage(c: &mut Client, tag: u8, parts: usize, len: usize) -> (tcpshm_client::Batch<'_>, bool) {
        let mut b = c.batch().unwrap();
        for p in 0..parts {
            let Some(buf) = b.alloc(len).unwrap() else { return (b, false) };
            buf.fill(tag);
            buf[0] = p as u8;
            b.push(u16::from(tag)).unwrap();
        }
        (b, true)
    }
    let (b, all) = stage(&mut c, 1, 3, 100);
    assert!(all);
    assert_eq!(b.commit().unwrap(), 3);
    let (b, all) = stage(&mut c, 2, 3, 100);
    assert!(all);
    assert_eq!(b.abort(), 3);
    // Fill the queue with one batch until its last message does not fit: dropped.
    let (b, all) = stage(&mut c, 3, 10_000, 1000);
    assert!(!all && b.len() > 3, "the queue took {} parts", b.len());
    drop(b);
    let (b, all) = stage(&mut c, 4, 3, 100);
    assert!(all);
    b.commit().unwrap();
    assert_eq!(c.counters().next_seq, 6 + u64::from(kind == TransportKind::Shm), "no seq lost to the dropped batches");

    let server = Server::bind(server_config("Srv", &dir), AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
    let addr = server.local_addrs()[0];
    let server = Polled::spawn(server, |s| s.poll(now()));
    c.connect(addr, kind, now()).unwrap();
    let mut got = vec![];
    while got.len() < 6 {
        let (t, _, p) = next_message(&mut c);
        c.pop();
        got.push((t, p[0]));
    }
    assert_eq!(got, [(1, 0), (1, 1), (1, 2), (4, 0), (4, 1), (4, 2)]);
    echo_once(&mut c, b"and nothing else");
    drop(server);
}

#[test]
fn client_batches_arrive_whole_or_not_at_all_tcp() {
    client_batches(TransportKind::Tcp);
}

#[test]
fn client_batches_arrive_whole_or_not_at_all_shm() {
    client_batches(TransportKind::Shm);
}
