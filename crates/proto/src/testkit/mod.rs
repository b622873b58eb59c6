//! The conformance kit: the tests every medium must pass (feature `testkit`).
//!
//! A medium provides a [`Harness`] that opens either side of a session from its
//! persistent state, logs the two in over a new link, cuts links, and can lose a
//! side's persistent state or rename the server; the kit drives both ends from one
//! thread, polling them in turn with a fake clock it advances itself, and checks what
//! users rely on:
//!
//! * **messages**: every message arrives once, in order, with its content, through
//!   backpressure, cuts, closes and reconnects; a discarded batch never arrives and
//!   leaves no gap; limits and reserved types are
//!   refused; a silent peer times out and an idle one does not; a one-way stream is
//!   not throttled to one queue per heartbeat; close reasons and counters are right;
//! * **sessions**: pushes before the first login are delivered; nothing is connected
//!   before a login, nor after a refused one; the resume point survives a restart; a
//!   side that lost its state — a restarted process or a live one — is told at login,
//!   never silently resumed; a renamed server drops the old session and reports
//!   exactly what it dropped; a message above the peer's limit is refused at `alloc`,
//!   and a queued one refuses the login.
//!
//! Real TCP and shared-memory media are non-blocking, so polling both ends from one
//! thread works for them; the kit allows [`Harness::max_rounds`] rounds without
//! progress before it declares a stall. The `tcpshm-connection` crate runs the kit on
//! TCP, Unix sockets, shared memory and an in-memory pipe, and shows that a
//! deliberately broken transport fails it.
//!
//! A medium's crate gets one `#[test]` per case with
//! [`conformance_tests!`](crate::conformance_tests).

pub mod cases;
pub mod gen;
pub mod session_cases;

use crate::{Msg, Nanos, Transport};
use core::fmt;
use gen::{Rng, Spec};

/// A side of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that logs in (initiates).
    Client,
    /// The side that accepts.
    Server,
}

/// What a successful login reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginOk {
    /// The server's name changed: the client dropped its old session, with this many
    /// queued messages.
    pub reset_dropped: Option<u64>,
}

/// Why a login failed, as far as the kit tells failures apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// The two sides' numbers do not fit: a side lost its state.
    SeqMismatch(String),
    /// A queued message exceeds the other side's limit.
    LimitExceeded(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginFailure::SeqMismatch(t) => write!(f, "sequence mismatch: {t}"),
            LoginFailure::LimitExceeded(t) => write!(f, "limit exceeded: {t}"),
            LoginFailure::Other(t) => f.write_str(t),
        }
    }
}

/// What the kit needs from a medium under test.
///
/// Requirements: each harness has its own persistent state (no session exists when it
/// is made), the connection timeout [`timeout`](Self::timeout) and the heartbeat
/// interval [`heartbeat_interval`](Self::heartbeat_interval) at most a quarter of it.
/// The kit is most telling with small send queues (up to a few MiB): it fills them.
pub trait Harness {
    /// The transport under test.
    type T: Transport;

    /// Opens `side`'s end of the session from its persistent state (creating the state
    /// if there is none), not logged in — what a process does when it starts. At most
    /// one end of each side is open at a time (the kit drops one before reopening).
    fn open(&mut self, side: Side, now: Nanos) -> Self::T;

    /// Logs the two ends in over a new link, at clock `now`. The kit then polls both
    /// until both report connected.
    fn login(&mut self, client: &mut Self::T, server: &mut Self::T, now: Nanos) -> Result<LoginOk, LoginFailure>;

    /// A new session, both ends logged in (`a` is the client). The default opens
    /// both ends and logs them in.
    fn pair(&mut self, now: Nanos) -> (Self::T, Self::T) {
        let mut a = self.open(Side::Client, now);
        let mut b = self.open(Side::Server, now);
        if let Err(e) = self.login(&mut a, &mut b, now) {
            panic!("the first login of a new session failed: {e}");
        }
        (a, b)
    }

    /// Breaks the link abruptly, as a network cut or a killed peer would: no close
    /// frame, bytes in flight may be lost. The ends may notice at their next poll or
    /// only by timeout; the kit does not require either.
    fn cut(&mut self, a: &mut Self::T, b: &mut Self::T);

    /// Links the two ends again (after a cut, a close or a timeout) at clock `now`;
    /// the kit then polls both until both report connected, and expects every queued
    /// message to be resent from what the other side consumed. The default logs in.
    fn reconnect(&mut self, a: &mut Self::T, b: &mut Self::T, now: Nanos) {
        if let Err(e) = self.login(a, b, now) {
            panic!("a reconnect failed: {e}");
        }
    }

    /// Deletes `side`'s persistent state, as a lost disk (or a wiped `/dev/shm`)
    /// would; that side's end is closed (dropped) when the kit calls this.
    fn lose_state(&mut self, side: Side);

    /// From now on the server runs under another name (a new trading day): its next
    /// [`open`](Self::open) starts the sessions of that name.
    fn rename_server(&mut self);

    /// From now on the server accepts messages of at most `max` bytes (told at login);
    /// the client's limit stays larger.
    fn limit_server_message(&mut self, max: usize);

    /// The connection timeout the ends were configured with.
    fn timeout(&self) -> Nanos;

    /// The heartbeat interval the ends were configured with (at most
    /// `timeout() / 4`).
    fn heartbeat_interval(&self) -> Nanos;

    /// Consecutive poll rounds without progress before the kit declares a stall.
    fn max_rounds(&self) -> usize {
        2_000
    }

    /// Called after every poll round (e.g. `std::thread::yield_now` for a transport
    /// whose peer needs a moment of real time).
    fn idle(&mut self) {}

    /// Seed of the kit's pseudo-random choices (message sizes, cut points).
    fn seed(&self) -> u64 {
        0x7C5E_ED5E_ED5E_ED00
    }
}

/// A failed conformance case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The case's name.
    pub case: &'static str,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conformance case `{}` failed: {}", self.case, self.message)
    }
}

impl std::error::Error for Failure {}

/// One case of the kit: its name and its function.
pub struct Case<H: Harness> {
    /// The name (also the function's name in [`cases`]).
    pub name: &'static str,
    /// Runs it.
    pub run: fn(&mut H) -> Result<(), String>,
}

impl<H: Harness> fmt::Debug for Case<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The one list of the kit's cases: calls the macro `[$cb]` with `args ; names`.
#[doc(hidden)]
#[macro_export]
macro_rules! __tcpshm_conformance_cases {
    ([$($cb:tt)*] $($args:tt)*) => {
        $($cb)*! { $($args)* ;
            stream_both_ways,
            largest_message,
            reserved_type_refused,
            push_without_alloc,
            front_stable_until_pop,
            push_more_batches,
            discarded_batches_never_arrive,
            backpressure,
            one_way_stream_acks,
            push_while_disconnected,
            cut_mid_stream,
            close_requested,
            silent_peer_times_out,
            heartbeats_keep_idle_alive,
            counters_consistent,
            pushes_before_first_login,
            not_connected_until_login,
            resume_point_after_restart,
            server_state_loss_live_client,
            server_state_loss_restarted_client,
            client_state_loss_restarted,
            client_state_loss_live_server,
            server_rename_drops_the_old_session,
            over_peer_limit_refused_at_alloc,
            peer_limit_survives_a_restart,
            queued_over_peer_limit_refuses_login
        }
    };
}

macro_rules! case_list {
    (; $($name:ident),* $(,)?) => {
        /// Every case of the kit, in the order [`run_all`] runs them.
        pub fn all_cases<H: Harness>() -> Vec<Case<H>> {
            vec![$(Case { name: stringify!($name), run: cases::$name::<H> }),*]
        }

        /// The names of every case, in order.
        pub const CASE_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

crate::__tcpshm_conformance_cases!([case_list]);

/// Runs every case, stopping at the first failure.
pub fn run_all<H: Harness>(h: &mut H) -> Result<(), Failure> {
    for c in all_cases::<H>() {
        (c.run)(h).map_err(|message| Failure { case: c.name, message })?;
    }
    Ok(())
}

/// Runs the case called `name` (see [`CASE_NAMES`]).
pub fn run_case<H: Harness>(h: &mut H, name: &str) -> Result<(), Failure> {
    let c = all_cases::<H>()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Failure { case: "?", message: format!("no conformance case named `{name}`") })?;
    (c.run)(h).map_err(|message| Failure { case: c.name, message })
}

/// Expands to one `#[test]` per conformance case, each building its harness with
/// `$make` (an expression), so a transport's cases run and report separately.
///
/// ```ignore
/// mod conformance {
///     tcpshm_proto::conformance_tests!(my_transport::TestHarness::new());
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__tcpshm_conformance_cases!([$crate::conformance_tests] @cases $make);
    };
    (@cases $make:expr ; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let mut h = $make;
                if let Err(e) = $crate::testkit::run_case(&mut h, stringify!($name)) {
                    panic!("{e}");
                }
            }
        )*
    };
}

/// The kit's driver: a fake clock and polling rounds over one pair.
pub(crate) struct Kit<'h, H: Harness> {
    pub(crate) h: &'h mut H,
    pub(crate) now: Nanos,
    tick: Nanos,
    pub(crate) rng: Rng,
}

impl<'h, H: Harness> Kit<'h, H> {
    pub(crate) fn new(h: &'h mut H, case: u64) -> Kit<'h, H> {
        let tick = (h.heartbeat_interval() / 8).max(1);
        let rng = Rng::new(h.seed() ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Not zero: a transport may treat 0 as "never".
        Kit { h, now: 1_000_000_000, tick, rng }
    }

    /// A seed for a message flow.
    pub(crate) fn flow_seed(&mut self) -> u64 {
        self.rng.next_u64()
    }

    pub(crate) fn pair(&mut self) -> Result<(H::T, H::T), String> {
        let (mut a, mut b) = self.h.pair(self.now);
        self.wait_connected(&mut a, &mut b, "the new pair to connect")?;
        Ok((a, b))
    }

    /// One round: the clock advances by a tick, then `a` and `b` are polled.
    pub(crate) fn round(&mut self, a: &mut H::T, b: &mut H::T) {
        self.now += self.tick;
        self.poll_both(a, b);
    }

    /// One round without advancing the clock.
    pub(crate) fn frozen_round(&mut self, a: &mut H::T, b: &mut H::T) {
        self.poll_both(a, b);
    }

    fn poll_both(&mut self, a: &mut H::T, b: &mut H::T) {
        a.poll(self.now);
        b.poll(self.now);
        self.h.idle();
    }

    pub(crate) fn wait_connected(&mut self, a: &mut H::T, b: &mut H::T, what: &str) -> Result<(), String> {
        for _ in 0..self.h.max_rounds() {
            if a.is_connected() && b.is_connected() {
                return Ok(());
            }
            self.round(a, b);
        }
        Err(format!(
            "timed out waiting for {what}: a connected {} (reason {:?}), b connected {} (reason {:?})",
            a.is_connected(),
            a.close_reason(),
            b.is_connected(),
            b.close_reason()
        ))
    }

    /// Opens `side`'s end from its persistent state.
    pub(crate) fn open(&mut self, side: Side) -> H::T {
        self.h.open(side, self.now)
    }

    /// Logs in and, if that succeeded, polls until both ends are connected.
    pub(crate) fn login(&mut self, a: &mut H::T, b: &mut H::T) -> Result<Result<LoginOk, LoginFailure>, String> {
        let r = self.h.login(a, b, self.now);
        if r.is_ok() {
            self.wait_connected(a, b, "the ends to connect after a login")?;
        }
        Ok(r)
    }

    pub(crate) fn cut(&mut self, a: &mut H::T, b: &mut H::T) {
        self.h.cut(a, b);
    }

    pub(crate) fn reconnect(&mut self, a: &mut H::T, b: &mut H::T) -> Result<(), String> {
        self.h.reconnect(a, b, self.now);
        self.wait_connected(a, b, "the pair to reconnect")?;
        if a.close_reason().is_some() || b.close_reason().is_some() {
            return Err(format!(
                "connected ends still report a close reason: a {:?}, b {:?}",
                a.close_reason(),
                b.close_reason()
            ));
        }
        Ok(())
    }

    /// Rounds (clock advancing unless `frozen`) until `step` reports done. `step`
    /// returns `(done, progress)`; `progress` must change at least every
    /// [`Harness::max_rounds`] rounds or the run fails as stalled.
    pub(crate) fn run(
        &mut self,
        a: &mut H::T,
        b: &mut H::T,
        frozen: bool,
        what: &str,
        mut step: impl FnMut(&mut H::T, &mut H::T) -> Result<(bool, u64), String>,
    ) -> Result<(), String> {
        let mut last = None;
        let mut idle = 0;
        loop {
            let (done, progress) = step(a, b)?;
            if done {
                return Ok(());
            }
            if last == Some(progress) {
                idle += 1;
                if idle > self.h.max_rounds() {
                    return Err(format!(
                        "{what}: stalled, no progress in {idle} poll rounds (a connected {} reason {:?}, \
                         b connected {} reason {:?}, a {}, b {})",
                        a.is_connected(),
                        a.close_reason(),
                        b.is_connected(),
                        b.close_reason(),
                        a.counters(),
                        b.counters()
                    ));
                }
            } else {
                idle = 0;
                last = Some(progress);
            }
            if frozen {
                self.frozen_round(a, b);
            } else {
                self.round(a, b);
            }
        }
    }

    /// Polls a while and checks that nothing more arrives on either side.
    pub(crate) fn expect_quiet(&mut self, a: &mut H::T, b: &mut H::T) -> Result<(), String> {
        for _ in 0..50 {
            self.round(a, b);
            for (side, t) in [("a", &mut *a), ("b", &mut *b)] {
                if let Some(m) = t.front() {
                    return Err(format!(
                        "{side} received an unexpected extra message (seq {}, type {}, {} bytes) after the \
                         whole stream (duplicate or invented)",
                        m.seq,
                        m.msg_type,
                        m.payload.len()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One direction of traffic: the messages pushed on one end and popped on the other,
/// generated from a seed and checked on arrival.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    seed: u64,
    max_len: usize,
    pub(crate) pushed: u64,
    pub(crate) popped: u64,
    pub(crate) pushed_bytes: u64,
    name: &'static str,
}

impl Flow {
    pub(crate) fn new(name: &'static str, seed: u64, max_len: usize) -> Flow {
        Flow { seed, max_len, pushed: 0, popped: 0, pushed_bytes: 0, name }
    }

    fn spec(&self, k: u64) -> Spec {
        Spec::new(self.seed, k, self.max_len)
    }

    /// Pushes the next message if the queue has room; `Ok(false)` when it is full.
    pub(crate) fn push_one<T: Transport>(&mut self, t: &mut T, more: bool) -> Result<bool, String> {
        let spec = self.spec(self.pushed);
        match t.alloc(spec.len) {
            Ok(Some(buf)) => {
                if buf.len() != spec.len {
                    return Err(format!("{}: alloc({}) returned {} bytes", self.name, spec.len, buf.len()));
                }
                spec.fill(buf);
            }
            Ok(None) => return Ok(false),
            Err(e) => return Err(format!("{}: alloc({}) of message {} failed: {e}", self.name, spec.len, self.pushed)),
        }
        let r = if more { t.push_more(spec.msg_type) } else { t.push(spec.msg_type) };
        r.map_err(|e| format!("{}: push of message {} failed: {e}", self.name, self.pushed))?;
        self.pushed += 1;
        self.pushed_bytes += spec.len as u64;
        Ok(true)
    }

    /// The last `n` pushed messages were discarded before they were sent: they will
    /// never arrive, and the next pushes take their numbers (and contents) again.
    pub(crate) fn forget(&mut self, n: u64) {
        for _ in 0..n.min(self.pushed - self.popped) {
            self.pushed -= 1;
            self.pushed_bytes -= self.spec(self.pushed).len as u64;
        }
    }

    /// Pushes until `target` messages were pushed in total or the queue is full.
    pub(crate) fn push_upto<T: Transport>(&mut self, t: &mut T, target: u64) -> Result<u64, String> {
        let start = self.pushed;
        while self.pushed < target && self.push_one(t, false)? {}
        Ok(self.pushed - start)
    }

    /// Checks that `m` is the next expected message.
    pub(crate) fn check(&self, m: &Msg<'_>) -> Result<(), String> {
        let k = self.popped;
        if k >= self.pushed {
            return Err(format!(
                "{}: received message seq {} but only {} were pushed and {} already popped (duplicate or invented)",
                self.name, m.seq, self.pushed, k
            ));
        }
        if m.seq != k {
            return Err(format!(
                "{}: expected message seq {k}, received seq {} ({})",
                self.name,
                m.seq,
                if m.seq < k { "a duplicate" } else { "messages lost or reordered" }
            ));
        }
        let spec = self.spec(k);
        if m.msg_type != spec.msg_type {
            return Err(format!("{}: message {k} has type {}, pushed with {}", self.name, m.msg_type, spec.msg_type));
        }
        if let Some(at) = spec.first_difference(m.payload) {
            return Err(format!(
                "{}: message {k} content differs at byte {at} (received {} bytes, pushed {})",
                self.name,
                m.payload.len(),
                spec.len
            ));
        }
        Ok(())
    }

    /// Pops and checks up to `limit` available messages; returns how many.
    pub(crate) fn pop_upto<T: Transport>(&mut self, t: &mut T, limit: u64) -> Result<u64, String> {
        let mut n = 0;
        while n < limit {
            let Some(m) = t.front() else { break };
            self.check(&m)?;
            t.pop();
            self.popped += 1;
            n += 1;
        }
        Ok(n)
    }

    /// Pops and checks every available message.
    pub(crate) fn pop_all<T: Transport>(&mut self, t: &mut T) -> Result<u64, String> {
        self.pop_upto(t, u64::MAX)
    }

    pub(crate) fn done(&self, target: u64) -> bool {
        self.pushed >= target && self.popped == self.pushed
    }
}
