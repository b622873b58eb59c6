//! The reference loopback transport beyond the kit: resends really happen after a
//! cut, and a login whose sequence numbers do not fit is refused with the side that
//! lost state named.
#![cfg(feature = "testkit")]

use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::session::SeqMismatch;
use tcpshm_proto::testkit::loopback::{connect, Loopback, LoopbackConfig};
use tcpshm_proto::{CloseReason, Nanos, ProtocolError, Transport};

fn rounds(a: &mut Loopback, b: &mut Loopback, now: &mut Nanos, n: usize) {
    for _ in 0..n {
        *now += 10_000;
        a.poll(*now);
        b.poll(*now);
    }
}

fn send(t: &mut Loopback, body: &[u8]) {
    t.alloc(body.len()).unwrap().expect("room").copy_from_slice(body);
    t.push(9).unwrap();
}

/// Pops everything available, returning the payloads' first bytes.
fn drain(t: &mut Loopback) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(m) = t.front() {
        v.push(m.payload[0]);
        t.pop();
    }
    v
}

#[test]
fn a_cut_resends_what_was_not_popped() {
    let cfg = LoopbackConfig::default();
    let (mut a, mut b) = Loopback::pair(&cfg);
    let mut now = 1;
    connect(&mut a, &mut b, now);
    rounds(&mut a, &mut b, &mut now, 5);
    for i in 0..20u8 {
        send(&mut a, &[i; 100]);
    }
    rounds(&mut a, &mut b, &mut now, 200);
    assert_eq!(b.counters().received, 20);
    // Pop 5 of the 20 received, then cut: 15 are received but not popped.
    for _ in 0..5 {
        b.pop();
    }
    a.cut();
    rounds(&mut a, &mut b, &mut now, 2);
    assert!(!a.is_connected() && !b.is_connected());
    assert!(matches!(a.close_reason(), Some(CloseReason::Io { op: "read", .. })));
    connect(&mut a, &mut b, now);
    rounds(&mut a, &mut b, &mut now, 200);
    assert!(a.is_connected() && b.is_connected());
    assert_eq!(drain(&mut b), (5..20).collect::<Vec<u8>>());
    let (ca, cb) = (a.counters(), b.counters());
    assert_eq!(ca.resent, 15, "the 15 unpopped messages were written again: {ca}");
    assert_eq!(cb.received, 35, "and received again: {cb}");
    assert_eq!(cb.popped, 20);
}

#[test]
fn a_server_that_lost_its_queue_refuses_the_login() {
    let cfg = LoopbackConfig::default();
    let (mut a, mut b) = Loopback::pair(&cfg);
    let mut now = 1;
    connect(&mut a, &mut b, now);
    for i in 0..3u8 {
        send(&mut b, &[i]);
    }
    rounds(&mut a, &mut b, &mut now, 100);
    assert_eq!(drain(&mut a), [0, 1, 2]);
    rounds(&mut a, &mut b, &mut now, 100);
    // The server restarts with nothing (its files were lost): the client has
    // consumed 3 server messages the new server never pushed.
    let (_, mut fresh) = Loopback::pair(&cfg);
    connect(&mut a, &mut fresh, now);
    rounds(&mut a, &mut fresh, &mut now, 100);
    assert!(!a.is_connected() && !fresh.is_connected());
    match a.close_reason() {
        Some(CloseReason::LoginRefused { status: LoginStatus::SeqMismatch, text }) => {
            assert!(text.contains("this side lost send state"), "{text}");
        }
        other => panic!("client reason {other:?}"),
    }
    assert_eq!(
        fresh.close_reason(),
        Some(&CloseReason::Protocol(ProtocolError::SeqMismatch(SeqMismatch::LocalLostSent {
            peer_consumed: 3,
            next_seq: 0
        })))
    );
}

#[test]
fn a_client_that_lost_its_state_is_refused() {
    let cfg = LoopbackConfig::default();
    let (mut a, mut b) = Loopback::pair(&cfg);
    let mut now = 1;
    connect(&mut a, &mut b, now);
    for i in 0..4u8 {
        send(&mut b, &[i]);
    }
    rounds(&mut a, &mut b, &mut now, 100);
    assert_eq!(drain(&mut a), [0, 1, 2, 3]);
    // Let the acks reach the server, so it drops the 4 messages from its queue.
    now += 2 * cfg.session.heartbeat_interval;
    rounds(&mut a, &mut b, &mut now, 100);
    assert_eq!(b.counters().queue_depth, 0);
    let (mut fresh, _) = Loopback::pair(&cfg);
    connect(&mut fresh, &mut b, now);
    rounds(&mut fresh, &mut b, &mut now, 100);
    match fresh.close_reason() {
        Some(CloseReason::LoginRefused { status: LoginStatus::SeqMismatch, text }) => {
            assert!(text.contains("the peer lost receive state"), "{text}");
        }
        other => panic!("client reason {other:?}"),
    }
    assert!(matches!(
        b.close_reason(),
        Some(CloseReason::Protocol(ProtocolError::SeqMismatch(SeqMismatch::PeerLostReceived {
            peer_consumed: 0,
            acked: 4
        })))
    ));
}

#[test]
fn an_orderly_close_carries_its_reason() {
    let (mut a, mut b) = Loopback::pair(&LoopbackConfig::default());
    let mut now = 1;
    connect(&mut a, &mut b, now);
    rounds(&mut a, &mut b, &mut now, 10);
    b.close(CloseReason::Storage("disk full".into()));
    rounds(&mut a, &mut b, &mut now, 10);
    assert_eq!(a.close_reason(), Some(&CloseReason::RemoteRequested("storage error: disk full".into())));
    // Closing again keeps the first reason.
    b.close(CloseReason::Requested);
    assert_eq!(b.close_reason(), Some(&CloseReason::Storage("disk full".into())));
}
