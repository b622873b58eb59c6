//! Reconnects and restarts over a byte stream (Unix sockets and TCP): what was pushed
//! while down leaves with the next login; what was received but not popped before a
//! cut is delivered again, once; what was popped never comes back — also after both
//! sides are dropped and reopened from disk (a process restart). And the lifecycle
//! edges: lost state refused at login, a login that replaces a live link, a close
//! requested from another thread, detach.

mod common;

use common::{body, open_client, open_server, poll2_until, push, raw_client, unix_pair, RawLogin};
use std::os::unix::net::UnixStream;
use tcpshm_connection::{ConnectError, Connection, ConnectionConfig};
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::{LoginStatus, TransportKind};
use tcpshm_proto::{CloseReason, Nanos, Transport};
use tcpshm_test_support::net::cut;
use tcpshm_test_support::TempDir;
use tcpshm_transport_tcp::ByteStream;

/// How a test makes links: Unix socket pairs or TCP over the loopback.
trait Medium: ByteStream + Send + std::os::fd::AsFd + Sized + 'static {
    fn pair() -> (Self, Self);
}

impl Medium for UnixStream {
    fn pair() -> (Self, Self) {
        unix_pair()
    }
}

impl Medium for std::net::TcpStream {
    fn pair() -> (Self, Self) {
        common::tcp_pair()
    }
}

struct Ends<S> {
    dir: TempDir,
    cfg: ConnectionConfig,
    /// The client: it sends the messages under test.
    a: Connection<S>,
    /// The server: it receives them.
    b: Connection<S>,
    now: Nanos,
}

impl<S: Medium> Ends<S> {
    fn new(tag: &str) -> Ends<S> {
        let dir = TempDir::new(tag);
        let cfg = common::config(&dir);
        let a = open_client(&dir, &cfg, TransportKind::Tcp);
        let b = open_server(&dir, &cfg, TransportKind::Tcp);
        Ends { dir, cfg, a, b, now: 1 }
    }

    /// Drops both connections (as a process exit or `kill -9` would: only the files
    /// remain) and opens them again.
    fn restart(self) -> Ends<S> {
        let Ends { dir, cfg, a, b, now } = self;
        drop((a, b));
        let a = open_client(&dir, &cfg, TransportKind::Tcp);
        let b = open_server(&dir, &cfg, TransportKind::Tcp);
        Ends { dir, cfg, a, b, now }
    }

    fn login(&mut self) -> Result<tcpshm_connection::Connected, ConnectError> {
        common::login(&mut self.a, &mut self.b, S::pair(), TransportKind::Tcp, self.now)
    }

    fn link(&mut self) {
        self.login().unwrap_or_else(|e| panic!("login: {e}"));
    }

    fn poll_until(&mut self, what: &str, done: impl FnMut(&mut Connection<S>, &mut Connection<S>) -> bool) {
        poll2_until(&mut self.a, &mut self.b, &mut self.now, 1_000, what, done);
    }

    /// Pops at `b` (checking each message) until `next` reaches `upto`.
    fn pop_upto(&mut self, next: &mut u64, upto: u64) {
        self.poll_until("messages", |_, b| {
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

    /// Nothing more arrives at `b` for a while of polling (no duplicate).
    fn nothing_more(&mut self) {
        for _ in 0..50 {
            self.now += 1000;
            self.a.poll(self.now);
            self.b.poll(self.now);
            assert!(self.b.front().is_none(), "a duplicate arrived");
        }
    }
}

fn len(k: u64) -> usize {
    (k as usize * 37) % 300
}

fn push_n<S: Medium>(t: &mut Connection<S>, from: u64, to: u64) {
    for k in from..to {
        push(t, (k % 7) as u16, &body(k, len(k)));
    }
}

fn received_not_popped_is_redelivered_once_popped_never<S: Medium>(tag: &str) {
    let mut e = Ends::<S>::new(tag);
    e.link();
    push_n(&mut e.a, 0, 10);
    let mut next = 0;
    e.pop_upto(&mut next, 4);
    e.poll_until("all to arrive", |_, b| b.counters().received >= 10);
    assert_eq!(e.b.front().map(|m| m.seq), Some(4), "6 received, not popped");
    cut(e.a.stream().unwrap());
    e.poll_until("both ends to notice the cut", |a, b| !a.is_connected() && !b.is_connected());
    assert!(e.b.front().is_none(), "unpopped messages are dropped with the link");
    assert_eq!(e.b.store().consumed(), 4);
    let resent_before = e.a.counters().resent;
    let done = e.login().unwrap();
    assert_eq!(done.to_resend, 6, "the login says how many leave again");
    e.pop_upto(&mut next, 10);
    assert_eq!(e.a.counters().resent - resent_before, 6, "exactly the 6 not consumed were written again");
    e.nothing_more();
    assert_eq!(e.b.counters().popped, 10);
}

#[test]
fn received_not_popped_is_redelivered_once_popped_never_unix() {
    received_not_popped_is_redelivered_once_popped_never::<UnixStream>("redeliver-unix");
}

#[test]
fn received_not_popped_is_redelivered_once_popped_never_tcp() {
    received_not_popped_is_redelivered_once_popped_never::<std::net::TcpStream>("redeliver-tcp");
}

#[test]
fn pushed_while_disconnected_is_delivered_after_the_login() {
    let mut e = Ends::<UnixStream>::new("pushdown");
    // Never logged in yet: both sides push.
    assert!(!e.a.is_connected());
    assert_eq!(e.a.close_reason(), Some(&CloseReason::NotConnected));
    push_n(&mut e.a, 0, 5);
    push_n(&mut e.b, 0, 3);
    assert!(!e.a.poll(1) && !e.b.poll(1));
    let c = e.a.counters();
    assert_eq!((c.pushed, c.sent, c.next_seq, c.queued()), (5, 0, 5, 5));
    e.link();
    let mut nb = 0;
    e.pop_upto(&mut nb, 5);
    let mut na = 0;
    poll2_until(&mut e.a, &mut e.b, &mut e.now, 1000, "b's messages", |a, _| {
        while let Some(m) = a.front() {
            assert_eq!((m.seq, m.payload), (na, &body(na, len(na))[..]));
            a.pop();
            na += 1;
        }
        na == 3
    });
    // Down again (detach: the peer is not told), more pushed on both sides.
    let _ = e.a.detach(CloseReason::Requested);
    push_n(&mut e.a, 5, 9);
    push_n(&mut e.b, 3, 4);
    e.poll_until("b to notice", |_, b| !b.is_connected());
    assert_eq!(e.b.close_reason(), Some(&CloseReason::RemoteClosed));
    e.link();
    e.pop_upto(&mut nb, 9);
    e.poll_until("b's last message", |a, _| {
        if let Some(m) = a.front() {
            assert_eq!(m.seq, 3);
            a.pop();
            return true;
        }
        false
    });
    poll2_until(&mut e.a, &mut e.b, &mut e.now, common::HB, "the last acks", |a, b| {
        a.counters().queued() == 0 && b.counters().queued() == 0
    });
    assert_eq!((e.a.store().queue_depth(), e.b.store().queue_depth()), (0, 0));
}

/// Drop both connections (what a process exit or `kill -9` leaves: the files),
/// reopen, log in again: the consumed count survived, so popped messages are not
/// delivered again and the rest are, once.
#[test]
fn pops_are_committed_across_a_restart() {
    let mut e = Ends::<UnixStream>::new("restart");
    e.link();
    push_n(&mut e.a, 0, 12);
    let mut next = 0;
    e.pop_upto(&mut next, 5);
    e.poll_until("all to arrive", |_, b| b.counters().received >= 12);
    // Both "crash", b with 7 received and not popped.
    let mut e = e.restart();
    assert_eq!(e.b.store().consumed(), 5, "the pop commit point survived");
    assert_eq!(e.b.counters().consumed, 5);
    assert_eq!(e.a.counters().next_seq, 12, "the resume point of a restarted sender");
    assert!(e.a.store().first_unacked() <= 5, "a cannot have been told more than b consumed");
    // a pushes 3 more before the login.
    push_n(&mut e.a, 12, 15);
    e.now += 1;
    e.link();
    e.pop_upto(&mut next, 15);
    e.nothing_more();
    poll2_until(&mut e.a, &mut e.b, &mut e.now, common::HB, "the last acks", |a, _| a.store().queue_depth() == 0);
}

/// The receiver lost its state (its files are gone): the login is refused with a
/// sequence mismatch, nothing is reset silently, and the sender's queue is intact.
#[test]
fn a_login_after_lost_state_is_refused_and_changes_nothing() {
    let dir = TempDir::new("mismatch");
    let cfg = common::config(&dir);
    let mut a: Connection<UnixStream> = open_client(&dir, &cfg, TransportKind::Tcp);
    let mut now = 1;
    {
        let mut b: Connection<UnixStream> = open_server(&dir, &cfg, TransportKind::Tcp);
        common::link_unix(&mut a, &mut b, TransportKind::Tcp, now);
        push_n(&mut a, 0, 4);
        let mut next = 0;
        poll2_until(&mut a, &mut b, &mut now, 1000, "4 messages", |_, b| {
            while let Some(m) = b.front() {
                assert_eq!(m.seq, next);
                b.pop();
                next += 1;
            }
            next == 4
        });
        poll2_until(&mut a, &mut b, &mut now, common::HB, "acks", |a, _| a.store().first_unacked() == 4);
    }
    push_n(&mut a, 4, 6);
    // b lost its state: its files are gone; a fresh b.
    std::fs::remove_dir_all(dir.join("server")).unwrap();
    let mut b: Connection<UnixStream> = open_server(&dir, &cfg, TransportKind::Tcp);
    assert_eq!((b.store().consumed(), b.store().next_seq()), (0, 0), "a fresh server");
    match common::login(&mut a, &mut b, unix_pair(), TransportKind::Tcp, now) {
        Err(ConnectError::Refused { status: LoginStatus::SeqMismatch, text }) => {
            assert!(text.contains("lost"), "{text}");
        }
        Err(ConnectError::SeqMismatch(m)) => assert!(m.peer_lost_state(), "{m}"),
        other => panic!("a login after lost state was not refused: {other:?}"),
    }
    assert!(!a.is_connected() && !b.is_connected());
    assert_eq!((a.store().first_unacked(), a.store().next_seq()), (4, 6), "nothing changed");
    assert_eq!(b.store().consumed(), 0);
}

/// A second login for the same session while one is linked replaces it: the old
/// peer is told why (a `CLOSE` with the "replaced" code), and the session goes on
/// with the new one, exactly once.
#[test]
fn a_new_login_replaces_a_live_link() {
    let dir = TempDir::new("replace");
    let cfg = common::config(&dir);
    let mut srv: Connection<UnixStream> = open_server(&dir, &cfg, TransportKind::Tcp);
    push(&mut srv, 1, b"m0");
    let mut first = raw_client(&mut srv, unix_pair(), RawLogin::default(), 1);
    let f = tcpshm_test_support::wait_until("m0", || {
        srv.poll(1);
        first.fill().unwrap();
        first.next_frame()
    });
    assert_eq!(f.0.seq, 0);
    // The same client logs in again (it did not see m0 arrive: it consumed nothing).
    let mut second = raw_client(&mut srv, unix_pair(), RawLogin::default(), 2);
    assert!(srv.is_connected());
    let frames = first.frames_until_eof();
    let (h, p) = frames.last().expect("a close frame on the replaced link");
    assert_eq!(h.msg_type, msg_type::CLOSE);
    assert_eq!(CloseFrame::parse(p).unwrap().code, CloseCode::REPLACED);
    let f = tcpshm_test_support::wait_until("m0 again", || {
        srv.poll(2);
        second.fill().unwrap();
        second.next_frame()
    });
    assert_eq!((f.0.seq, f.1.as_slice()), (0, &b"m0"[..]), "resent on the new link");
}

#[test]
fn a_close_from_another_thread_happens_in_the_owners_poll() {
    let mut e = Ends::<UnixStream>::new("handle");
    e.link();
    let h = e.a.close_handle();
    std::thread::spawn(move || h.close()).join().unwrap();
    assert!(e.a.close_handle().is_requested());
    assert!(e.a.is_connected(), "the close happens in the owner's poll, not in the other thread");
    assert!(!e.a.poll(e.now));
    assert_eq!(e.a.close_reason(), Some(&CloseReason::Requested));
    assert!(!e.a.close_handle().is_requested(), "carried out");
    e.poll_until("b to notice", |_, b| !b.is_connected());
    match e.b.close_reason() {
        Some(CloseReason::RemoteRequested { code, .. }) => assert_eq!(*code, CloseCode::REQUESTED),
        other => panic!("b reports {other:?}"),
    }
    // A request made while down does not close the next link.
    e.a.close_handle().close();
    e.link();
    assert!(e.a.poll(e.now) && e.a.is_connected());
    // The readiness-driven pieces honour it too.
    e.a.close_handle().close();
    assert!(!e.a.check_timers(e.now));
    assert_eq!(e.a.close_reason(), Some(&CloseReason::Requested));
    e.link();
    e.a.close_handle().close();
    assert!(!e.a.on_readable(e.now));
    e.link();
    e.a.close_handle().close();
    assert!(!e.a.on_writable(e.now));
}

#[test]
fn detach_gives_the_stream_back_and_keeps_the_queue() {
    let mut e = Ends::<UnixStream>::new("detach");
    e.link();
    push_n(&mut e.a, 0, 3);
    let s = e.a.detach(CloseReason::Replaced);
    assert!(s.is_some() && !e.a.is_connected());
    assert_eq!(e.a.close_reason(), Some(&CloseReason::Replaced));
    // Detaching or closing a closed connection keeps the first reason.
    assert!(e.a.detach(CloseReason::Requested).is_none(), "nothing left to detach");
    e.a.close(CloseReason::RemoteClosed);
    assert_eq!(e.a.close_reason(), Some(&CloseReason::Replaced));
    assert_eq!(e.a.store().next_seq(), 3);
    // The detached stream is still the live socket: b sees nothing until it drops.
    assert!(e.b.poll(e.now), "b was told nothing");
    drop(s);
    e.poll_until("b to notice", |_, b| !b.is_connected());
    // into_parts gives the store back with the queue.
    let Ends { a, .. } = e;
    let (store, rings) = a.into_parts();
    assert!(rings.is_none());
    assert_eq!((store.first_unacked(), store.next_seq()), (0, 3));
}
