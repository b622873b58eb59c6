//! Fairness: one call writes at most the write budget and reads at most the read
//! budget, and says so (`wants_write` without `write_blocked`, `read_more`), so a
//! thread polling many connections is not held by one busy link.

mod common;

use common::{frame, open_store, tcp_pair, RawPeer, TempDir};
use std::time::{Duration, Instant};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::Transport;
use tcpshm_transport_tcp::{tcp, PeerLogin, StreamConfig, TcpConnection};

fn fixture(cfg: StreamConfig) -> (TempDir, TcpConnection, RawPeer) {
    let dir = TempDir::new("budget");
    let mut conn = TcpConnection::new(open_store(dir.path(), "me", "peer", 1 << 16), cfg);
    let (a, b) = tcp_pair();
    conn.login_state();
    let peer = PeerLogin { send_range: SeqRange::default(), ..PeerLogin::default() };
    conn.attach(tcp::from_std(a).unwrap(), peer, 1).unwrap();
    (dir, conn, RawPeer::new(b))
}

/// Reads everything the peer has been sent so far.
fn drain(peer: &mut RawPeer) -> usize {
    let before = peer.buf.len();
    for _ in 0..3 {
        peer.fill().unwrap();
    }
    peer.buf.len() - before
}

#[test]
fn a_poll_writes_at_most_the_write_budget() {
    let cfg = StreamConfig { write_budget: 1000, ..common::config() };
    let (_dir, mut conn, mut peer) = fixture(cfg);
    // 50 frames of 128 bytes, queued without writing.
    for k in 0..50u64 {
        conn.alloc(100).unwrap().unwrap().fill(k as u8);
        conn.push_more(1).unwrap();
    }
    let mut total = 0;
    let mut polls = 0;
    while total < 50 * 128 {
        assert!(conn.on_writable(1));
        polls += 1;
        let n = drain(&mut peer);
        assert!(n <= 1000, "one call wrote {n} bytes, over the 1000-byte budget");
        total += n;
        if total < 50 * 128 {
            assert!(conn.wants_write() && !conn.write_blocked(), "stopped by the budget, not by the socket");
        }
        assert!(polls < 100);
    }
    assert!(polls >= 7, "6400 bytes in {polls} calls of at most 1000");
    assert!(!conn.wants_write());
    // Every frame arrived whole and in order (the budget cut inside frames).
    for k in 0..50u64 {
        let (h, p) = peer.next_frame().expect("a frame");
        assert_eq!((h.seq, p), (k, vec![k as u8; 100]));
    }
}

#[test]
fn a_poll_reads_at_most_the_read_budget() {
    let cfg = StreamConfig { read_budget: 1000, ..common::config() };
    let (_dir, mut conn, mut peer) = fixture(cfg);
    let wire: Vec<u8> = (0..50u64).flat_map(|k| frame(2, k, 0, &[k as u8; 100])).collect();
    peer.send(&wire);
    // Wait until it all sits in the connection's socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rustix::io::ioctl_fionread(conn.stream().unwrap()).unwrap() < wire.len() as u64 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(conn.on_readable(1));
    assert!(conn.read_more(), "the budget stopped the read: more to read");
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
}
