//! Fairness over a byte stream: one call writes at most the write budget and reads
//! at most the read budget, and says so (`wants_write` without `write_blocked`,
//! `read_more`), so a thread polling many connections is not held by one busy link.

mod common;

use common::{open_server, raw_client, tcp_pair, RawLogin};
use std::net::TcpStream;
use tcpshm_connection::Connection;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::Transport;
use tcpshm_test_support::net::{frame, RawPeer};
use tcpshm_test_support::{wait_until, TempDir};
use tcpshm_transport_tcp::ByteStream;

fn fixture(
    tag: &str,
    budgets: impl FnOnce(&mut tcpshm_transport_tcp::StreamConfig),
) -> (TempDir, Connection<TcpStream>, RawPeer<TcpStream>) {
    let dir = TempDir::new(tag);
    let mut cfg = common::config(&dir);
    budgets(&mut cfg.stream);
    let mut conn = open_server(&dir, &cfg, TransportKind::Tcp);
    let peer = raw_client(&mut conn, tcp_pair(), RawLogin::default(), 1);
    (dir, conn, peer)
}

/// Reads everything the peer has been sent so far (a few read timeouts' worth).
fn drain(peer: &mut RawPeer<TcpStream>) -> usize {
    let before = peer.buf.len();
    for _ in 0..3 {
        peer.fill().unwrap();
    }
    peer.buf.len() - before
}

#[test]
fn a_call_writes_at_most_the_write_budget() {
    let (_dir, mut conn, mut peer) = fixture("wbudget", |s| s.write_budget = 1000);
    // 50 frames of 128 bytes, queued without writing.
    for k in 0..50u64 {
        conn.alloc(100).unwrap().unwrap().fill(k as u8);
        conn.push_more(1).unwrap();
    }
    assert!(conn.wants_write());
    let mut total = 0;
    let mut calls = 0;
    while total < 50 * 128 {
        assert!(conn.on_writable(1));
        calls += 1;
        let n = drain(&mut peer);
        assert!(n <= 1000, "one call wrote {n} bytes, over the 1000-byte budget");
        total += n;
        if total < 50 * 128 {
            assert!(conn.wants_write() && !conn.write_blocked(), "stopped by the budget, not by the socket");
        }
        assert!(calls < 100);
    }
    assert!(calls >= 7, "6400 bytes in {calls} calls of at most 1000");
    assert!(!conn.wants_write());
    // Every frame arrived whole and in order (the budget cut inside frames).
    for k in 0..50u64 {
        let (h, p) = peer.next_frame().expect("a frame");
        assert_eq!((h.seq, p), (k, vec![k as u8; 100]));
    }
    assert_eq!(conn.counters().sent, 50);
}

#[test]
fn a_call_reads_at_most_the_read_budget() {
    let (_dir, mut conn, mut peer) = fixture("rbudget", |s| s.read_budget = 1000);
    let wire: Vec<u8> = (0..50u64).flat_map(|k| frame(2, k, 0, &[k as u8; 100])).collect();
    peer.send(&wire);
    // Wait until it all sits in the connection's socket.
    wait_until("the bytes to arrive", || (conn.stream().unwrap().unread() == Some(wire.len())).then_some(()));
    assert!(conn.on_readable(1));
    assert!(conn.read_more(), "the budget stopped the read: more to read");
    assert!(conn.has_buffered());
    assert_eq!(conn.counters().received, 7, "1000 bytes hold 7 whole 128-byte frames");
    let mut calls = 1;
    while conn.read_more() {
        assert!(conn.on_readable(1));
        calls += 1;
    }
    assert_eq!(conn.counters().received, 50);
    assert_eq!(calls, 7, "6400 bytes, 1000 per call, the last call meets WouldBlock");
    for k in 0..50u64 {
        let m = conn.front().unwrap();
        assert_eq!((m.seq, m.payload), (k, &[k as u8; 100][..]));
        conn.pop();
    }
    assert!(!conn.has_buffered());
}

/// `poll` honours both budgets too: a busy link gives the thread back after a
/// bounded amount of work each way, and the rest follows at the next calls.
#[test]
fn poll_is_bounded_by_both_budgets() {
    let (_dir, mut conn, mut peer) = fixture("pbudget", |s| {
        s.read_budget = 2048;
        s.write_budget = 2048;
    });
    let wire: Vec<u8> = (0..100u64).flat_map(|k| frame(2, k, 0, &[1u8; 200])).collect();
    peer.send(&wire);
    for _ in 0..100 {
        conn.alloc(200).unwrap().unwrap().fill(9);
        conn.push_more(1).unwrap();
    }
    wait_until("the bytes to arrive", || (conn.stream().unwrap().unread() == Some(wire.len())).then_some(()));
    assert!(conn.poll(1));
    assert!(conn.counters().received < 100 && conn.read_more());
    assert!(conn.counters().sent < 100 && conn.wants_write());
    let mut calls = 1;
    wait_until("everything both ways", || {
        conn.poll(1);
        calls += 1;
        drain(&mut peer);
        (conn.counters().received == 100 && conn.counters().sent == 100).then_some(())
    });
    assert!(calls >= 10, "{calls} polls for 22 KiB each way at 2 KiB per poll");
}

/// The poller reports the peer's end once (edge-triggered). When the read budget
/// stops that read, the calls that carry on (`read_more`, `on_readable`) still read
/// to the end: the end behind the last bytes is seen, not left for a timeout.
#[test]
fn an_end_behind_the_read_budget_is_seen() {
    let (_dir, mut conn, mut peer) = fixture("rbudget_end", |s| s.read_budget = 1000);
    let wire: Vec<u8> = (0..50u64).flat_map(|k| frame(2, k, 0, &[k as u8; 100])).collect();
    peer.send(&wire);
    peer.s.shutdown(std::net::Shutdown::Write).unwrap();
    wait_until("the bytes to arrive", || (conn.stream().unwrap().unread() == Some(wire.len())).then_some(()));
    assert!(conn.on_read_closed(1), "the budget holds the end back");
    assert!(conn.read_more());
    let mut calls = 1;
    while conn.read_more() {
        conn.on_readable(1);
        calls += 1;
        assert!(calls < 100);
    }
    assert_eq!(conn.counters().received, 50);
    assert!(!conn.is_connected(), "the end was seen");
    assert_eq!(conn.close_reason(), Some(&tcpshm_proto::CloseReason::RemoteClosed));
}
