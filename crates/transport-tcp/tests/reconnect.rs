//! Reconnects and restarts: what was pushed while down is delivered after attach;
//! what was received but not popped before a cut is delivered again, once; what was
//! popped is never delivered again — also after the stores are dropped and reopened
//! (a process restart). Plus the lifecycle edges: a login mismatch, a replaced link,
//! a close from another thread, detach.

mod common;

use common::{body, link, open_store, poll2_until, push, TempDir};
use std::time::{Duration, Instant};
use tcpshm_proto::session::{SeqMismatch, SeqRange};
use tcpshm_proto::{CloseReason, Nanos, ProtocolError, Transport};
use tcpshm_transport_tcp::{AttachError, PeerLogin, TcpConnection, UnixConnection};

type Conn = TcpConnection;

fn pair(dir: &TempDir) -> (Conn, Conn) {
    let a = Conn::new(open_store(dir.path(), "a", "b", 1 << 16), common::config());
    let b = Conn::new(open_store(dir.path(), "b", "a", 1 << 16), common::config());
    (a, b)
}

fn len(k: u64) -> usize {
    (k as usize * 37) % 300
}

fn push_n(t: &mut Conn, from: u64, to: u64) {
    for k in from..to {
        push(t, (k % 7) as u16, &body(k, len(k)));
    }
}

/// Pops (checking content) until `expect_next` reaches `upto`.
fn pop_upto(a: &mut Conn, b: &mut Conn, now: &mut Nanos, next: &mut u64, upto: u64) {
    poll2_until(a, b, now, 1000, "messages", |_, b| {
        while *next < upto {
            let Some(m) = b.front() else { break };
            assert_eq!(m.seq, *next, "lost, repeated or reordered");
            assert_eq!((m.msg_type, m.payload), ((*next % 7) as u16, &body(*next, len(*next))[..]));
            b.pop();
            *next += 1;
        }
        *next == upto
    });
}

/// Waits until `b` holds every message up to `upto` received (not popped).
fn wait_received(a: &mut Conn, b: &mut Conn, now: &mut Nanos, upto: u64) {
    poll2_until(a, b, now, 1000, "messages to arrive", |_, b| b.counters().received >= upto);
}

fn cut(a: &Conn, b: &Conn) {
    for t in [a, b] {
        if let Some(s) = t.stream() {
            socket2::SockRef::from(s).shutdown(std::net::Shutdown::Both).unwrap();
        }
    }
}

#[test]
fn received_not_popped_is_redelivered_once_popped_never() {
    let dir = TempDir::new("redeliver");
    let (mut a, mut b) = pair(&dir);
    let mut now = 1;
    link(&mut a, &mut b, now);
    push_n(&mut a, 0, 10);
    let mut next = 0;
    pop_upto(&mut a, &mut b, &mut now, &mut next, 4);
    wait_received(&mut a, &mut b, &mut now, 10);
    assert_eq!(b.front().map(|m| m.seq), Some(4), "6 received, not popped");
    cut(&a, &b);
    poll2_until(&mut a, &mut b, &mut now, 1000, "both ends to notice the cut", |a, b| {
        !a.is_connected() && !b.is_connected()
    });
    assert!(b.front().is_none(), "unpopped messages are dropped with the link");
    assert_eq!(b.store().consumed(), 4);
    let resent_before = a.counters().resent;
    link(&mut a, &mut b, now);
    pop_upto(&mut a, &mut b, &mut now, &mut next, 10);
    assert_eq!(a.counters().resent - resent_before, 6, "exactly the 6 not consumed were written again");
    // Nothing more arrives (no duplicate of 0..4 nor of 4..10).
    for _ in 0..50 {
        now += 1000;
        a.poll(now);
        b.poll(now);
        assert!(b.front().is_none(), "a duplicate arrived");
    }
    assert_eq!(b.counters().popped, 10);
}

#[test]
fn pushed_while_disconnected_is_delivered_after_attach() {
    let dir = TempDir::new("pushdown");
    let (mut a, mut b) = pair(&dir);
    // Never linked yet: both sides push.
    push_n(&mut a, 0, 5);
    push_n(&mut b, 0, 3);
    assert!(!a.poll(1) && !b.poll(1));
    assert_eq!((a.counters().queue_depth, a.counters().sent), (5, 0));
    let mut now = 2;
    link(&mut a, &mut b, now);
    let (mut nb, mut na) = (0, 0);
    pop_upto(&mut a, &mut b, &mut now, &mut nb, 5);
    pop_upto(&mut b, &mut a, &mut now, &mut na, 3);
    // Down again (detach: the peer is not told), more pushed on both sides.
    let _ = a.detach(CloseReason::Requested);
    push_n(&mut a, 5, 9);
    push_n(&mut b, 3, 4);
    poll2_until(&mut a, &mut b, &mut now, 1000, "b to notice", |_, b| !b.is_connected());
    link(&mut a, &mut b, now);
    pop_upto(&mut a, &mut b, &mut now, &mut nb, 9);
    pop_upto(&mut b, &mut a, &mut now, &mut na, 4);
    poll2_until(&mut a, &mut b, &mut now, 1_000_000, "the last acks", |a, b| {
        a.counters().queue_depth == 0 && b.counters().queue_depth == 0
    });
}

/// Drop both connections and their stores (what a process exit or `kill -9` leaves:
/// the mapped files), reopen, relink: the consumed count survived, so popped
/// messages are not delivered again and the rest are, once.
#[test]
fn pops_are_committed_across_a_restart() {
    let dir = TempDir::new("restart");
    let mut now = 1;
    let mut next = 0;
    {
        let (mut a, mut b) = pair(&dir);
        link(&mut a, &mut b, now);
        push_n(&mut a, 0, 12);
        pop_upto(&mut a, &mut b, &mut now, &mut next, 5);
        wait_received(&mut a, &mut b, &mut now, 12);
        // b "crashes" with 7 received and not popped; a pushes 3 more, then exits too.
        drop(b);
        push_n(&mut a, 12, 15);
    }
    let (mut a, mut b) = pair(&dir);
    assert_eq!(b.store().consumed(), 5, "the pop commit point survived");
    assert_eq!(a.store().next_seq(), 15);
    assert!(a.store().first_unacked() <= 5, "a cannot have been told more than b consumed");
    now += 1;
    link(&mut a, &mut b, now);
    pop_upto(&mut a, &mut b, &mut now, &mut next, 15);
    for _ in 0..50 {
        now += 1000;
        a.poll(now);
        b.poll(now);
        assert!(b.front().is_none(), "a duplicate arrived after the restart");
    }
    poll2_until(&mut a, &mut b, &mut now, 1_000_000, "the last acks", |a, _| a.store().queue_depth() == 0);
}

#[test]
fn attach_refuses_a_sequence_mismatch_and_check_login_says_so_first() {
    let dir = TempDir::new("mismatch");
    let (mut a, mut b) = pair(&dir);
    let mut now = 1;
    link(&mut a, &mut b, now);
    push_n(&mut a, 0, 4);
    let mut next = 0;
    pop_upto(&mut a, &mut b, &mut now, &mut next, 4);
    poll2_until(&mut a, &mut b, &mut now, 1_000_000, "acks", |a, _| a.store().first_unacked() == 4);
    // b lost its state: a fresh peer that consumed nothing.
    let lost = PeerLogin { consumed: 0, send_range: SeqRange::default(), queue_capacity: 0 };
    let want = SeqMismatch::PeerLostReceived { peer_consumed: 0, acked: 4 };
    a.login_state();
    assert_eq!(a.check_login(&lost), Err(want));
    let (s, _keep) = common::Link::pair();
    match a.attach(s, lost, now) {
        Err(AttachError::SeqMismatch(m)) => assert_eq!(m, want),
        other => panic!("attach accepted a peer that lost state: {other:?}"),
    }
    assert!(!a.is_connected());
    assert_eq!(a.close_reason(), Some(&CloseReason::Protocol(ProtocolError::SeqMismatch(want))));
    assert_eq!((a.store().first_unacked(), a.store().next_seq()), (4, 4), "nothing changed");
    // The real peer still fits.
    link(&mut a, &mut b, now);
    push_n(&mut a, 4, 6);
    pop_upto(&mut a, &mut b, &mut now, &mut next, 6);
}

#[test]
fn login_state_on_a_live_link_replaces_it() {
    let dir = TempDir::new("replace");
    let (mut a, mut b) = pair(&dir);
    let mut now = 1;
    link(&mut a, &mut b, now);
    a.login_state();
    assert!(!a.is_connected());
    assert_eq!(a.close_reason(), Some(&CloseReason::Replaced));
    poll2_until(&mut a, &mut b, &mut now, 1000, "b to notice", |_, b| !b.is_connected());
    match b.close_reason() {
        Some(CloseReason::RemoteRequested(text)) => assert!(text.starts_with("replaced"), "{text}"),
        other => panic!("b reports {other:?}"),
    }
}

#[test]
fn close_from_another_thread_happens_in_the_owners_poll() {
    let dir = TempDir::new("handle");
    let (mut a, mut b) = pair(&dir);
    let mut now = 1;
    link(&mut a, &mut b, now);
    let h = a.close_handle();
    std::thread::spawn(move || h.close()).join().unwrap();
    assert!(a.is_connected(), "the close happens in the owner's poll, not in the other thread");
    assert!(!a.poll(now));
    assert_eq!(a.close_reason(), Some(&CloseReason::Requested));
    poll2_until(&mut a, &mut b, &mut now, 1000, "b to notice", |_, b| !b.is_connected());
    assert_eq!(b.close_reason(), Some(&CloseReason::RemoteRequested("requested: closed by request".into())));
    // A request made while down does not close the next link.
    a.close_handle().close();
    link(&mut a, &mut b, now);
    assert!(a.poll(now) && a.is_connected());
    // The readiness-driven pieces honour it too.
    a.close_handle().close();
    assert!(!a.check_timers(now));
    assert_eq!(a.close_reason(), Some(&CloseReason::Requested));
}

#[test]
fn detach_gives_the_stream_back_and_keeps_the_queue() {
    let dir = TempDir::new("detach");
    let (mut a, mut b) = pair(&dir);
    link(&mut a, &mut b, 1);
    push_n(&mut a, 0, 3);
    let s = a.detach(CloseReason::Replaced);
    assert!(s.is_some() && !a.is_connected());
    assert!(a.detach(CloseReason::Requested).is_none(), "nothing left to detach");
    assert_eq!(a.close_reason(), Some(&CloseReason::Requested));
    assert_eq!(a.store().next_seq(), 3);
    // close() on a closed connection keeps the first reason.
    a.close(CloseReason::RemoteClosed);
    assert_eq!(a.close_reason(), Some(&CloseReason::Requested));
}

/// The Unix-socket flavour resumes the same way (a thin alias over the same engine).
#[test]
fn unix_connection_resumes_after_a_cut() {
    let dir = TempDir::new("unix");
    let mut a = UnixConnection::new(open_store(dir.path(), "a", "b", 1 << 16), common::config());
    let mut b = UnixConnection::new(open_store(dir.path(), "b", "a", 1 << 16), common::config());
    let mut now = 1;
    link(&mut a, &mut b, now);
    for k in 0..5 {
        push(&mut a, 1, &body(k, 50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.counters().received < 5 {
        assert!(Instant::now() < deadline);
        now += 1000;
        a.poll(now);
        b.poll(now);
    }
    b.pop();
    b.pop();
    common::Link::cut(a.stream().unwrap());
    link(&mut a, &mut b, now);
    let mut got = Vec::new();
    common::poll2_until(&mut a, &mut b, &mut now, 1000, "the resend", |_, b| {
        while let Some(m) = b.front() {
            got.push(m.seq);
            b.pop();
        }
        got.len() == 3
    });
    assert_eq!(got, [2, 3, 4]);
}
