//! The conformance kit can fail: transports with one deliberate fault each (a lost
//! message, a duplicate, a corrupted byte, an accepted reserved type, a wrong close
//! reason, wrong counters, a queue that never fills, no timeout) fail it, and in the
//! case meant to catch the fault.
#![cfg(feature = "testkit")]

use tcpshm_proto::frame::msg_type;
use tcpshm_proto::session::SessionConfig;
use tcpshm_proto::testkit::loopback::{Loopback, LoopbackConfig, LoopbackHarness};
use tcpshm_proto::testkit::{self, Harness};
use tcpshm_proto::{CloseReason, Counters, Msg, Nanos, SendError, Transport};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
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
}

struct Broken {
    inner: Loopback,
    fault: Fault,
    /// The fault already happened (one-shot faults).
    fired: bool,
    scratch: Vec<u8>,
    /// `NeverFull`: the last alloc went to the scratch buffer.
    discard: bool,
    /// `EagerPop`: a pop is owed to the next message.
    owed_pop: bool,
    fake_reason: CloseReason,
}

impl Transport for Broken {
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.discard = false;
        if self.fault == Fault::NeverFull {
            // Decide with a probe first, so the borrow of `inner` ends.
            if self.inner.alloc(len)?.is_none() {
                self.discard = true;
                self.scratch.resize(len, 0);
                return Ok(Some(&mut self.scratch[..]));
            }
        }
        self.inner.alloc(len)
    }

    fn push(&mut self, t: u16) -> Result<(), SendError> {
        if std::mem::take(&mut self.discard) {
            return Ok(());
        }
        if self.fault == Fault::AcceptReserved && !msg_type::is_user(t) {
            return self.inner.push(t & 0x0FFF);
        }
        self.inner.push(t)
    }

    fn push_more(&mut self, t: u16) -> Result<(), SendError> {
        if std::mem::take(&mut self.discard) {
            return Ok(());
        }
        if self.fault == Fault::AcceptReserved && !msg_type::is_user(t) {
            return self.inner.push_more(t & 0x0FFF);
        }
        self.inner.push_more(t)
    }

    fn front(&mut self) -> Option<Msg<'_>> {
        if self.owed_pop && self.inner.front().is_some() {
            self.owed_pop = false;
            self.inner.pop();
        }
        match self.fault {
            Fault::Drop(k) if !self.fired && self.inner.front().is_some_and(|m| m.seq == k) => {
                self.fired = true;
                self.inner.pop();
            }
            Fault::Corrupt(k) => {
                let m = self.inner.front()?;
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
        self.inner.front()
    }

    fn pop(&mut self) {
        match self.fault {
            Fault::Duplicate(k) if !self.fired && self.inner.front().is_some_and(|m| m.seq == k) => self.fired = true,
            Fault::EagerPop if self.inner.front().is_none() => self.owed_pop = true,
            _ => self.inner.pop(),
        }
    }

    fn poll(&mut self, now: Nanos) -> bool {
        self.inner.poll(now)
    }

    fn close(&mut self, reason: CloseReason) {
        self.inner.close(reason)
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        match self.inner.close_reason() {
            Some(CloseReason::RemoteRequested(_) | CloseReason::RemoteClosed)
                if self.fault == Fault::WrongCloseReason =>
            {
                Some(&self.fake_reason)
            }
            r => r,
        }
    }

    fn counters(&self) -> Counters {
        let mut c = self.inner.counters();
        if self.fault == Fault::WrongCounters && c.pushed > 0 {
            c.sent += 1;
        }
        c
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
}

struct BrokenHarness {
    inner: LoopbackHarness,
    fault: Fault,
    /// Reported to the kit; the ends really use `inner`'s (maybe different) timeout.
    timeout: Nanos,
}

impl BrokenHarness {
    fn new(fault: Fault) -> BrokenHarness {
        let inner = LoopbackHarness::default();
        let timeout = inner.timeout();
        BrokenHarness { inner, fault, timeout }
    }
}

impl Harness for BrokenHarness {
    type T = Broken;

    fn pair(&mut self, now: Nanos) -> (Broken, Broken) {
        let (a, b) = self.inner.pair(now);
        let wrap = |inner| Broken {
            inner,
            fault: self.fault,
            fired: false,
            scratch: Vec::new(),
            discard: false,
            owed_pop: false,
            fake_reason: CloseReason::Io { op: "read", errno: 5 },
        };
        (wrap(a), wrap(b))
    }

    fn cut(&mut self, a: &mut Broken, b: &mut Broken) {
        self.inner.cut(&mut a.inner, &mut b.inner);
    }

    fn reconnect(&mut self, a: &mut Broken, b: &mut Broken, now: Nanos) {
        self.inner.reconnect(&mut a.inner, &mut b.inner, now);
    }

    fn timeout(&self) -> Nanos {
        self.timeout
    }

    fn heartbeat_interval(&self) -> Nanos {
        self.inner.heartbeat_interval()
    }
}

/// Runs the whole kit on `h`, expecting it to fail in `case`; returns the message.
fn fails_in(mut h: BrokenHarness, case: &str) -> String {
    match testkit::run_all(&mut h) {
        Ok(()) => panic!("the kit passed a transport with fault {:?}", h.fault),
        Err(f) => {
            assert_eq!(f.case, case, "fault {:?} was caught by another case than expected: {f}", h.fault);
            f.message
        }
    }
}

#[test]
fn the_unbroken_wrapper_passes() {
    // The wrapper itself (with a fault that never fires) is faithful.
    testkit::run_all(&mut BrokenHarness::new(Fault::Drop(u64::MAX))).unwrap();
}

#[test]
fn a_lost_message_fails() {
    let m = fails_in(BrokenHarness::new(Fault::Drop(7)), "stream_both_ways");
    assert!(m.contains("expected message seq 7, received seq 8"), "{m}");
}

#[test]
fn a_duplicate_fails() {
    let m = fails_in(BrokenHarness::new(Fault::Duplicate(5)), "stream_both_ways");
    assert!(m.contains("a duplicate"), "{m}");
}

#[test]
fn a_corrupt_byte_fails() {
    let m = fails_in(BrokenHarness::new(Fault::Corrupt(3)), "stream_both_ways");
    assert!(m.contains("content differs at byte 0"), "{m}");
}

#[test]
fn an_accepted_reserved_type_fails() {
    let m = fails_in(BrokenHarness::new(Fault::AcceptReserved), "reserved_type_refused");
    assert!(m.contains("expected ReservedType"), "{m}");
}

#[test]
fn a_wrong_close_reason_fails() {
    let m = fails_in(BrokenHarness::new(Fault::WrongCloseReason), "close_requested");
    assert!(m.contains("expected a remote-closed reason"), "{m}");
}

#[test]
fn wrong_counters_fail() {
    let m = fails_in(BrokenHarness::new(Fault::WrongCounters), "counters_consistent");
    assert!(m.contains("counters"), "{m}");
}

#[test]
fn a_queue_that_never_fills_fails() {
    // The stream fills the queue first: the lost message shows as the next one
    // arriving in its place.
    let m = fails_in(BrokenHarness::new(Fault::NeverFull), "stream_both_ways");
    assert!(m.contains("pushed with"), "{m}");
}

#[test]
fn an_eager_pop_fails() {
    let m = fails_in(BrokenHarness::new(Fault::EagerPop), "front_stable_until_pop");
    assert!(m.contains("expected message seq 0, received seq 1"), "{m}");
}

#[test]
fn a_transport_without_timeout_fails() {
    let mut h = BrokenHarness::new(Fault::Drop(u64::MAX));
    h.inner.config.session.timeout = u64::MAX / 4;
    let m = fails_in(h, "silent_peer_times_out");
    assert!(m.contains("expected Timeout"), "{m}");
}

#[test]
fn a_transport_that_acks_only_with_heartbeats_fails() {
    // Standalone acks effectively disabled: the one-way stream with a frozen clock stalls.
    let mut h = BrokenHarness::new(Fault::Drop(u64::MAX));
    h.inner.config.session = SessionConfig { ack_every_msgs: u64::MAX, ..h.inner.config.session };
    h.inner.config.ack_by_peer_queue = false;
    let m = fails_in(h, "one_way_stream_acks");
    assert!(m.contains("stalled"), "{m}");
}

#[test]
fn a_transport_that_times_out_too_early_fails() {
    // The ends time out after a tenth of what the kit was told: an idle pair drops.
    let mut h = BrokenHarness::new(Fault::Drop(u64::MAX));
    h.inner.config.session.timeout = h.timeout / 10;
    let m = fails_in(h, "backpressure");
    assert!(m.contains("Timeout"), "{m}");
}

#[test]
fn a_small_config_does_not_hide_faults() {
    let mut h = BrokenHarness::new(Fault::Drop(2));
    h.inner.config =
        LoopbackConfig { queue_capacity: 4096, max_payload: 500, max_chunk: 1, ..LoopbackConfig::default() };
    let _ = fails_in(h, "stream_both_ways");
}
