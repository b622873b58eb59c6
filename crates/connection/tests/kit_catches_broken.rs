//! The conformance kit can fail: a connection with one deliberate fault fails it, in
//! the case meant to catch that fault.
//!
//! [`Broken`] wraps a real [`Connection`] over the in-memory pipe and breaks one
//! thing: a message lost, duplicated or corrupted, a reserved type accepted, a wrong
//! close reason, wrong counters, a queue that never fills, an eager pop — and the
//! session rules: an end connected before any login (fresh, or reopened from an
//! earlier session), pushes before the first login lost, a login that hides a
//! sequence mismatch or a limit refusal, one that silently repairs a mismatch, a
//! rename that reports nothing dropped, ends that report connected after a refused
//! login, a limit of the peer ignored or misnamed, a queue dropped at a restart, a
//! resume point not told, a discarded batch delivered or its seqs kept. Configurations that break liveness or acks are caught too.
#![cfg(feature = "testkit")]

use tcpshm_connection::testkit::{ConnectionHarness, MemPipe, PipeLinks};
use tcpshm_connection::Connection;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::SessionNumbers;
use tcpshm_proto::testkit::{self, Failure, Harness, LoginFailure, LoginOk, Side, CASE_NAMES};
use tcpshm_proto::{CloseReason, Counters, Limit, Msg, Nanos, SendError, Transport};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// None: the wrapper alone.
    Faithful,
    /// The message with this seq is silently skipped by `front`.
    Drop(u64),
    /// The message with this seq is delivered twice (its first `pop` does nothing).
    Duplicate(u64),
    /// One byte of the message with this seq is flipped.
    Corrupt(u64),
    /// Reserved types are accepted (pushed as a user type).
    AcceptReserved,
    /// A remote close is reported as an I/O error.
    WrongCloseReason,
    /// `sent` counts one more than was written.
    WrongCounters,
    /// `alloc` never says "full": when the queue is full the message goes to a
    /// scratch buffer and is lost.
    NeverFull,
    /// `pop` on an empty receiver consumes the next message to arrive.
    EagerPop,
    /// An end that never logged in reports connected.
    ConnectedBeforeLogin,
    /// An end reopened from an earlier session reports connected before its login
    /// (as a client that finds an old shared-memory mapping did).
    ConnectedWhenReopened,
    /// Messages pushed before the end's first login go nowhere.
    PushesBeforeLoginLost,
    /// The login reports success when the numbers do not fit.
    HideMismatch,
    /// The login repairs a mismatch by moving both sides' numbers forward until they
    /// fit, and logs in again: a silent resume after a lost state.
    SilentRepair,
    /// After a refused login the ends report connected (until a login succeeds).
    ConnectedAfterRefusal,
    /// The login reports success when a queued message is over the peer's limit.
    HideLimitRefusal,
    /// A login to a renamed server reports that nothing was dropped.
    RenameUnreported,
    /// `alloc` accepts a message above the peer's limit (up to this side's own) and
    /// the push drops it.
    IgnorePeerLimit,
    /// A message above the peer's limit is refused, naming this side's limit.
    MisnamedLimit,
    /// `discard_staged` reports the staged messages dropped but leaves them, to be
    /// published with the next poll.
    DiscardIgnored,
    /// `discard_staged` drops the staged messages but their seqs stay used (here by
    /// an empty placeholder message).
    DiscardKeepsSeqs,
    /// An end reopened from its state drops its unacknowledged queue.
    DropQueueAtRestart,
    /// The counters of an end reopened from its state start at zero until its login:
    /// the resume point is not told.
    NoResumePoint,
}

/// A connection with one fault.
struct Broken {
    inner: Option<Connection<MemPipe>>,
    fault: Fault,
    /// The fault already happened (one-shot faults).
    fired: bool,
    scratch: Vec<u8>,
    /// `NeverFull`, `PushesBeforeLoginLost`, `IgnorePeerLimit`: the last alloc went
    /// to the scratch buffer.
    discard: bool,
    /// `EagerPop`: a pop is owed to the next message.
    owed_pop: bool,
    /// Messages staged by `push_more` since the last publish (as far as this wrapper
    /// knows: `push`, `pop` and `poll` publish).
    staged: u64,
    /// A login of this end succeeded (as the harness reported it).
    logged_in: bool,
    /// Opened with a session's numbers (not fresh).
    reopened: bool,
    /// The last login of this end was refused.
    refused: bool,
    fake_reason: CloseReason,
}

impl Broken {
    fn new(inner: Connection<MemPipe>, fault: Fault) -> Broken {
        let c = inner.counters();
        Broken {
            reopened: c.next_seq > 0 || c.consumed > 0,
            inner: Some(inner),
            fault,
            fired: false,
            scratch: Vec::new(),
            discard: false,
            owed_pop: false,
            staged: 0,
            logged_in: false,
            refused: false,
            fake_reason: CloseReason::Io { op: "read", errno: 5 },
        }
    }

    fn c(&self) -> &Connection<MemPipe> {
        self.inner.as_ref().expect("the connection is open")
    }

    fn m(&mut self) -> &mut Connection<MemPipe> {
        self.inner.as_mut().expect("the connection is open")
    }

    /// The fault makes this end claim a link it does not have.
    fn pretends_connected(&self) -> bool {
        match self.fault {
            Fault::ConnectedBeforeLogin => !self.logged_in,
            Fault::ConnectedWhenReopened => !self.logged_in && self.reopened,
            Fault::ConnectedAfterRefusal => self.refused,
            _ => false,
        }
    }

    /// The seq of the next received message, if any.
    fn front_seq(&mut self) -> Option<u64> {
        self.m().front().map(|m| m.seq)
    }

    /// A scratch buffer for a message that will be dropped.
    fn scratch(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.discard = true;
        self.scratch.resize(len, 0);
        Ok(Some(&mut self.scratch[..]))
    }
}

impl Transport for Broken {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.discard = false;
        // `NeverFull` decides with a probe first, so the borrow of `inner` ends.
        if self.fault == Fault::NeverFull && self.m().alloc(len)?.is_none() {
            return self.scratch(len);
        }
        match self.fault {
            Fault::PushesBeforeLoginLost if !self.logged_in && len <= self.c().max_payload() => self.scratch(len),
            Fault::IgnorePeerLimit if len > self.c().max_payload() && len <= self.c().limits().max_message as usize => {
                self.scratch(len)
            }
            Fault::MisnamedLimit => match self.m().alloc(len) {
                Err(SendError::TooLarge { len, max, limit: Limit::Peer }) => {
                    Err(SendError::TooLarge { len, max, limit: Limit::Local })
                }
                r => r,
            },
            _ => self.m().alloc(len),
        }
    }

    fn push(&mut self, t: u16) -> Result<(), SendError> {
        if std::mem::take(&mut self.discard) {
            return Ok(());
        }
        self.staged = 0;
        if self.fault == Fault::AcceptReserved && !msg_type::is_user(t) {
            return self.m().push(t & 0x0FFF);
        }
        self.m().push(t)
    }

    fn push_more(&mut self, t: u16) -> Result<(), SendError> {
        if std::mem::take(&mut self.discard) {
            return Ok(());
        }
        if self.fault == Fault::AcceptReserved && !msg_type::is_user(t) {
            return self.m().push_more(t & 0x0FFF);
        }
        self.m().push_more(t)?;
        self.staged += 1;
        Ok(())
    }

    fn discard_staged(&mut self) -> u64 {
        let staged = std::mem::take(&mut self.staged);
        match self.fault {
            Fault::DiscardIgnored => staged,
            Fault::DiscardKeepsSeqs if staged > 0 => {
                self.m().discard_staged();
                // The seqs stay used: here by an empty placeholder.
                if let Ok(Some(_)) = self.m().alloc(0) {
                    let _ = self.m().push_more(0);
                }
                staged
            }
            _ => self.m().discard_staged(),
        }
    }

    fn front(&mut self) -> Option<Msg<'_>> {
        if self.owed_pop && self.m().front().is_some() {
            self.owed_pop = false;
            self.m().pop();
        }
        let seq = self.front_seq();
        match self.fault {
            Fault::Drop(k) if !self.fired && seq == Some(k) => {
                self.fired = true;
                self.m().pop();
            }
            Fault::Corrupt(k) => {
                let inner = self.inner.as_mut().expect("the connection is open");
                let m = inner.front()?;
                if m.seq == k && !m.payload.is_empty() {
                    let (t, seq) = (m.msg_type, m.seq);
                    self.scratch.clear();
                    self.scratch.extend_from_slice(m.payload);
                    self.scratch[0] ^= 0x40;
                    return Some(Msg { msg_type: t, seq, payload: &self.scratch });
                }
            }
            _ => {}
        }
        self.m().front()
    }

    fn pop(&mut self) {
        self.staged = 0;
        let seq = self.front_seq();
        match self.fault {
            Fault::Duplicate(k) if !self.fired && seq == Some(k) => self.fired = true,
            Fault::EagerPop if seq.is_none() => self.owed_pop = true,
            _ => self.m().pop(),
        }
    }

    fn poll(&mut self, now: Nanos) -> bool {
        self.staged = 0;
        self.m().poll(now) || self.pretends_connected()
    }

    fn close(&mut self, reason: CloseReason) {
        self.m().close(reason)
    }

    fn is_connected(&self) -> bool {
        self.pretends_connected() || self.c().is_connected()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        if self.pretends_connected() {
            return None;
        }
        match self.c().close_reason() {
            Some(CloseReason::RemoteRequested { .. } | CloseReason::RemoteClosed)
                if self.fault == Fault::WrongCloseReason =>
            {
                Some(&self.fake_reason)
            }
            r => r,
        }
    }

    fn counters(&self) -> Counters {
        let mut c = self.c().counters();
        if self.fault == Fault::WrongCounters && c.pushed > 0 {
            c.sent += 1;
        }
        if self.fault == Fault::NoResumePoint && self.reopened && !self.logged_in {
            (c.next_seq, c.consumed, c.peer_consumed) = (0, 0, 0);
        }
        c
    }

    fn next_deadline(&self) -> Option<Nanos> {
        self.c().next_deadline()
    }

    fn max_payload(&self) -> usize {
        self.c().max_payload()
    }
}

/// The kit's harness over the pipe, handing out [`Broken`] ends and breaking the
/// login as the fault says.
struct BrokenHarness {
    inner: ConnectionHarness<PipeLinks>,
    fault: Fault,
    /// Reported to the kit; the ends really use `inner`'s (maybe different) timeout.
    timeout: Nanos,
}

impl BrokenHarness {
    fn new(fault: Fault) -> BrokenHarness {
        BrokenHarness::with_links(fault, PipeLinks::default())
    }

    fn with_links(fault: Fault, links: PipeLinks) -> BrokenHarness {
        let inner = ConnectionHarness::new(links, "broken");
        let timeout = inner.timeout();
        BrokenHarness { inner, fault, timeout }
    }

    /// Moves the numbers of `x` forward so that they fit the peer's `p` (the engine's
    /// login rules seen from `x`: `p.seen <= x.next`, `p.first_unacked <=
    /// x.consumed`), skipping whatever is in the way. Returns whether it changed
    /// anything (the end must then be reopened to read its store again).
    fn force_fit(x: &mut Connection<MemPipe>, p: &SessionNumbers) -> bool {
        let xs = x.session().seq().numbers();
        let mut changed = false;
        if p.seen > xs.send_range.next() {
            x.store_mut().ack_beyond(p.seen).expect("skipping the queue forward");
            changed = true;
        }
        if p.send_range.first_unacked() > xs.consumed {
            x.store_mut().set_consumed(p.send_range.first_unacked()).expect("skipping the received forward");
            changed = true;
        }
        changed
    }

    /// `SilentRepair`: moves both ends' numbers forward until they fit (each side's
    /// fix covers the other's half of the rules), reopening them to take effect.
    fn repair(&mut self, client: &mut Broken, server: &mut Broken, now: Nanos) {
        loop {
            let (cn, sn) = (client.c().session().seq().numbers(), server.c().session().seq().numbers());
            let fixed = Self::force_fit(client.m(), &sn) | Self::force_fit(server.m(), &cn);
            if !fixed {
                return;
            }
            for (end, side) in [(&mut *client, Side::Client), (&mut *server, Side::Server)] {
                drop(end.inner.take());
                end.inner = Some(self.inner.open(side, now));
            }
        }
    }
}

impl Harness for BrokenHarness {
    type T = Broken;

    fn open(&mut self, side: Side, now: Nanos) -> Broken {
        let mut c = self.inner.open(side, now);
        if self.fault == Fault::DropQueueAtRestart && c.store().first_unacked() < c.store().next_seq() {
            let next = c.store().next_seq();
            c.store_mut().ack_beyond(next).expect("dropping the queue");
            drop(c);
            c = self.inner.open(side, now);
        }
        Broken::new(c, self.fault)
    }

    fn login(&mut self, client: &mut Broken, server: &mut Broken, now: Nanos) -> Result<LoginOk, LoginFailure> {
        let mut r = self.inner.login(client.m(), server.m(), now);
        if self.fault == Fault::SilentRepair && matches!(r, Err(LoginFailure::SeqMismatch(_))) {
            self.repair(client, server, now);
            r = self.inner.login(client.m(), server.m(), now);
        }
        let r = match (self.fault, r) {
            (Fault::HideMismatch, Err(LoginFailure::SeqMismatch(_)))
            | (Fault::HideLimitRefusal, Err(LoginFailure::LimitExceeded(_))) => Ok(LoginOk::default()),
            (Fault::RenameUnreported, Ok(ok)) => Ok(LoginOk { reset_dropped: ok.reset_dropped.map(|_| 0) }),
            (_, r) => r,
        };
        for end in [client, server] {
            end.logged_in |= r.is_ok();
            end.refused = r.is_err();
        }
        r
    }

    fn cut(&mut self, a: &mut Broken, b: &mut Broken) {
        self.inner.cut(a.m(), b.m());
    }

    fn lose_state(&mut self, side: Side) {
        self.inner.lose_state(side);
    }

    fn rename_server(&mut self) {
        self.inner.rename_server();
    }

    fn limit_server_message(&mut self, max: usize) {
        self.inner.limit_server_message(max);
    }

    fn timeout(&self) -> Nanos {
        self.timeout
    }

    fn heartbeat_interval(&self) -> Nanos {
        self.inner.heartbeat_interval()
    }
}

/// Runs the kit's cases in order, each on a fresh harness from `make` (as the
/// per-case tests do), stopping at the first failure.
fn run_kit(make: impl Fn() -> BrokenHarness) -> Result<(), Failure> {
    for case in CASE_NAMES {
        testkit::run_case(&mut make(), case)?;
    }
    Ok(())
}

/// Runs the kit on harnesses from `make`, expecting it to fail in `case`; returns
/// the failure's message.
fn fails_in(make: impl Fn() -> BrokenHarness, case: &str) -> String {
    let fault = make().fault;
    match run_kit(make) {
        Ok(()) => panic!("the kit passed a transport with fault {fault:?}"),
        Err(f) => {
            assert_eq!(f.case, case, "fault {fault:?} was caught by another case than expected: {f}");
            f.message
        }
    }
}

fn fault(f: Fault) -> impl Fn() -> BrokenHarness {
    move || BrokenHarness::new(f)
}

#[test]
fn the_unbroken_wrapper_passes() {
    // The wrapper itself (with a fault that never fires) is faithful.
    run_kit(fault(Fault::Faithful)).unwrap();
    run_kit(fault(Fault::Drop(u64::MAX))).unwrap();
}

// ---- messages ------------------------------------------------------------------

#[test]
fn a_lost_message_fails() {
    let m = fails_in(fault(Fault::Drop(7)), "stream_both_ways");
    assert!(m.contains("expected message seq 7, received seq 8"), "{m}");
}

#[test]
fn a_duplicate_fails() {
    let m = fails_in(fault(Fault::Duplicate(5)), "stream_both_ways");
    assert!(m.contains("a duplicate"), "{m}");
}

#[test]
fn a_corrupt_byte_fails() {
    let m = fails_in(fault(Fault::Corrupt(3)), "stream_both_ways");
    assert!(m.contains("content differs at byte 0"), "{m}");
}

#[test]
fn an_accepted_reserved_type_fails() {
    let m = fails_in(fault(Fault::AcceptReserved), "reserved_type_refused");
    assert!(m.contains("expected ReservedType"), "{m}");
}

#[test]
fn a_wrong_close_reason_fails() {
    let m = fails_in(fault(Fault::WrongCloseReason), "close_requested");
    assert!(m.contains("expected a remote-closed reason"), "{m}");
}

#[test]
fn wrong_counters_fail() {
    let m = fails_in(fault(Fault::WrongCounters), "counters_consistent");
    assert!(m.contains("counters"), "{m}");
}

#[test]
fn a_queue_that_never_fills_fails() {
    // The stream fills the queue first: the lost message shows as the next one
    // arriving in its place.
    let m = fails_in(fault(Fault::NeverFull), "stream_both_ways");
    assert!(m.contains("pushed with") || m.contains("content differs"), "{m}");
}

#[test]
fn an_eager_pop_fails() {
    let m = fails_in(fault(Fault::EagerPop), "front_stable_until_pop");
    assert!(m.contains("expected message seq 0, received seq 1"), "{m}");
}

// ---- configurations ------------------------------------------------------------

/// A faithful wrapper over ends configured by `tweak` (the kit is told the
/// harness's original timings).
fn configured(tweak: fn(&mut tcpshm_connection::ConnectionConfig)) -> impl Fn() -> BrokenHarness {
    move || {
        let mut h = BrokenHarness::new(Fault::Faithful);
        tweak(h.inner.config_mut());
        h
    }
}

#[test]
fn a_transport_without_timeout_fails() {
    let m = fails_in(configured(|c| c.session.liveness.timeout = u64::MAX / 4), "silent_peer_times_out");
    assert!(m.contains("expected Timeout"), "{m}");
}

#[test]
fn a_transport_that_acks_only_with_heartbeats_fails() {
    // Standalone acks effectively disabled: the one-way stream with a frozen clock stalls.
    let m = fails_in(
        configured(|c| {
            c.session.acks.every_msgs = u64::MAX;
            c.session.ack_by_peer_queue = false;
        }),
        "one_way_stream_acks",
    );
    assert!(m.contains("stalled"), "{m}");
}

#[test]
fn a_transport_that_times_out_too_early_fails() {
    // The ends time out after a fifth of what the kit was told (twice the heartbeat
    // interval): a peer silent for half the told timeout is dropped.
    let m = fails_in(
        configured(|c| c.session.liveness.timeout = 2 * c.session.liveness.heartbeat_interval),
        "silent_peer_times_out",
    );
    assert!(m.contains("closed after half the timeout"), "{m}");
}

#[test]
fn a_small_config_does_not_hide_faults() {
    let make = || {
        let mut links = PipeLinks::default();
        links.max_chunk = 1;
        let mut h = BrokenHarness::with_links(Fault::Drop(2), links);
        let c = h.inner.config_mut();
        c.session.max_message = 500;
        c.queue_bytes = 4096;
        h
    };
    let _ = fails_in(make, "stream_both_ways");
}

// ---- sessions ------------------------------------------------------------------

#[test]
fn connected_before_any_login_fails() {
    let m = fails_in(fault(Fault::ConnectedBeforeLogin), "pushes_before_first_login");
    assert!(m.contains("never logged in reports connected true"), "{m}");
}

#[test]
fn connected_when_reopened_fails() {
    let m = fails_in(fault(Fault::ConnectedWhenReopened), "not_connected_until_login");
    assert!(m.contains("reopened from an earlier session reports connected true"), "{m}");
}

#[test]
fn pushes_before_the_first_login_lost_fail() {
    let m = fails_in(fault(Fault::PushesBeforeLoginLost), "pushes_before_first_login");
    assert!(m.contains("message 0 "), "{m}");
}

#[test]
fn a_login_that_hides_a_mismatch_fails() {
    let m = fails_in(fault(Fault::HideMismatch), "server_state_loss_live_client");
    assert!(m.contains("connect after a login"), "{m}");
}

#[test]
fn a_silent_repair_of_a_mismatch_fails() {
    let m = fails_in(fault(Fault::SilentRepair), "server_state_loss_live_client");
    assert!(m.contains("the login succeeded") && m.contains("lost its state"), "{m}");
}

#[test]
fn connected_after_a_refused_login_fails() {
    let m = fails_in(fault(Fault::ConnectedAfterRefusal), "server_state_loss_live_client");
    assert!(m.contains("connected after"), "{m}");
}

/// Every state-loss case on its own catches a silent repair, and a login that hides
/// the mismatch.
#[test]
fn every_state_loss_case_catches_a_silent_resume() {
    for case in [
        "server_state_loss_live_client",
        "server_state_loss_restarted_client",
        "client_state_loss_restarted",
        "client_state_loss_live_server",
    ] {
        for f in [Fault::SilentRepair, Fault::HideMismatch, Fault::ConnectedAfterRefusal] {
            let r = testkit::run_case(&mut BrokenHarness::new(f), case);
            assert!(r.is_err(), "{case} passed a transport with fault {f:?}");
        }
        testkit::run_case(&mut BrokenHarness::new(Fault::Faithful), case).unwrap();
    }
}

#[test]
fn a_login_that_hides_a_limit_refusal_fails() {
    let m = fails_in(fault(Fault::HideLimitRefusal), "queued_over_peer_limit_refuses_login");
    assert!(m.contains("connect after a login"), "{m}");
}

#[test]
fn an_unreported_rename_fails() {
    let m = fails_in(fault(Fault::RenameUnreported), "server_rename_drops_the_old_session");
    assert!(m.contains("reported Some(0) dropped messages; 15 were queued"), "{m}");
}

#[test]
fn an_ignored_peer_limit_fails() {
    let m = fails_in(fault(Fault::IgnorePeerLimit), "over_peer_limit_refused_at_alloc");
    assert!(m.contains("alloc(1001) towards a peer that accepts 1000 returned Ok"), "{m}");
}

#[test]
fn a_misnamed_limit_fails() {
    let m = fails_in(fault(Fault::MisnamedLimit), "over_peer_limit_refused_at_alloc");
    assert!(m.contains("limit: Local"), "{m}");
}

#[test]
fn an_ignored_discard_fails() {
    let m = fails_in(fault(Fault::DiscardIgnored), "discarded_batches_never_arrive");
    assert!(m.contains("seqs must be given back"), "{m}");
}

#[test]
fn a_discard_that_keeps_the_seqs_fails() {
    let m = fails_in(fault(Fault::DiscardKeepsSeqs), "discarded_batches_never_arrive");
    assert!(m.contains("seqs must be given back"), "{m}");
}

#[test]
fn a_queue_dropped_at_restart_fails() {
    let m = fails_in(fault(Fault::DropQueueAtRestart), "resume_point_after_restart");
    assert!(m.contains("the login after a restart failed: sequence mismatch"), "{m}");
}

#[test]
fn an_untold_resume_point_fails() {
    // The first case to reopen an end reads the resume point to know which seq comes
    // next after the login...
    let m = fails_in(fault(Fault::NoResumePoint), "not_connected_until_login");
    assert!(m.contains("expected seq 0, got"), "{m}");
    // ...and the case about it says what is wrong.
    let f = testkit::run_case(&mut BrokenHarness::new(Fault::NoResumePoint), "resume_point_after_restart").unwrap_err();
    assert!(f.message.contains("after a restart: client next_seq 0"), "{f}");
}
