//! The calls a client is waiting for, and what it remembers of resolved ones to
//! filter duplicates: no clock, no allocation per call in steady state.

use crate::CallId;
use std::collections::VecDeque;
use tcpshm_proto::Nanos;

/// Counters of an [`RpcClient`](crate::RpcClient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcStats {
    /// Calls sent.
    pub calls: u64,
    /// Calls answered in time ([`Event::Reply`](crate::Event::Reply)).
    pub replies: u64,
    /// Calls that timed out ([`Event::TimedOut`](crate::Event::TimedOut)).
    pub timed_out: u64,
    /// Answers after the timeout ([`Event::Late`](crate::Event::Late)).
    pub late: u64,
    /// Answers to calls this client did not make ([`Event::Orphan`](crate::Event::Orphan)).
    pub orphans: u64,
    /// Second answers to resolved calls, dropped.
    pub duplicates: u64,
    /// Timed-out calls forgotten because more than
    /// [`RpcConfig::remember`](crate::RpcConfig::remember) newer ones timed out: a
    /// late answer to one is dropped as a duplicate.
    pub forgotten: u64,
    /// Calls abandoned by [`RpcClient::reset`](crate::RpcClient::reset).
    pub abandoned: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    TimedOut,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Call {
    id: CallId,
    deadline: Nanos,
    state: State,
}

/// How an answer relates to the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Reply,
    Late,
    Orphan,
    Duplicate,
}

/// The calls in id order (ids grow with each send). Resolved calls stay until they
/// reach the front, so a second answer finds them; everything below the front was
/// resolved (or forgotten).
#[derive(Debug)]
pub(crate) struct Calls {
    calls: VecDeque<Call>,
    /// Ids below this were not made by this client (a previous process).
    first_id: CallId,
    /// Ids of this client's calls are below this.
    next_id: CallId,
    /// The earliest deadline of a waiting call (`u64::MAX`: none), so a poll with
    /// nothing due costs one comparison.
    next_deadline: Nanos,
    timed_out: usize,
    /// Orphan ids reported, to filter their duplicates (bounded).
    orphans: VecDeque<CallId>,
    remember: usize,
    pub(crate) stats: RpcStats,
}

impl Calls {
    pub(crate) fn new(first_id: CallId, remember: usize) -> Calls {
        Calls {
            calls: VecDeque::new(),
            first_id,
            next_id: first_id,
            next_deadline: Nanos::MAX,
            timed_out: 0,
            orphans: VecDeque::new(),
            remember: remember.max(1),
            stats: RpcStats::default(),
        }
    }

    /// A call was sent with this id (the session's next seq; only grows).
    #[inline]
    pub(crate) fn sent(&mut self, id: CallId, deadline: Nanos) {
        debug_assert!(id >= self.next_id, "call ids grow");
        self.next_id = id + 1;
        self.calls.push_back(Call { id, deadline, state: State::Waiting });
        self.next_deadline = self.next_deadline.min(deadline);
        self.stats.calls += 1;
    }

    /// Calls sent and not resolved (waiting or timed out).
    pub(crate) fn outstanding(&self) -> usize {
        self.calls.iter().filter(|c| c.state != State::Done).count()
    }

    pub(crate) fn waiting(&self, id: CallId) -> bool {
        self.find(id).is_some_and(|i| self.calls[i].state == State::Waiting)
    }

    pub(crate) fn next_deadline(&self) -> Option<Nanos> {
        (self.next_deadline != Nanos::MAX).then_some(self.next_deadline)
    }

    #[inline]
    fn find(&self, id: CallId) -> Option<usize> {
        let first = self.calls.front()?.id;
        if id < first {
            return None;
        }
        // Ids are sorted; they are dense when every message sent is a call.
        let guess = (id - first) as usize;
        if self.calls.get(guess).is_some_and(|c| c.id == id) {
            return Some(guess);
        }
        self.calls.binary_search_by_key(&id, |c| c.id).ok()
    }

    /// What an answer to `id` is, marking its call resolved.
    #[inline]
    pub(crate) fn answer(&mut self, id: CallId) -> Match {
        if id < self.first_id || id >= self.next_id {
            // Not ours: a call of a previous process (or a message that was no call).
            if self.orphans.contains(&id) {
                self.stats.duplicates += 1;
                return Match::Duplicate;
            }
            if self.orphans.len() == self.remember {
                self.orphans.pop_front();
            }
            self.orphans.push_back(id);
            self.stats.orphans += 1;
            return Match::Orphan;
        }
        let Some(i) = self.find(id) else {
            // Ours and gone from the table: resolved long ago (or no call at all:
            // a message this client sent that was not a call; treated alike).
            self.stats.duplicates += 1;
            return Match::Duplicate;
        };
        let m = match self.calls[i].state {
            State::Waiting => {
                self.stats.replies += 1;
                Match::Reply
            }
            State::TimedOut => {
                self.timed_out -= 1;
                self.stats.late += 1;
                Match::Late
            }
            State::Done => {
                self.stats.duplicates += 1;
                return Match::Duplicate;
            }
        };
        self.calls[i].state = State::Done;
        self.trim();
        m
    }

    /// The next call whose deadline passed at `now`, marked timed out. Inline: the
    /// caller's poll loop asks at every turn, and nothing is due almost always.
    #[inline]
    pub(crate) fn expire(&mut self, now: Nanos) -> Option<CallId> {
        if now < self.next_deadline {
            return None;
        }
        self.expire_due(now)
    }

    #[inline(never)]
    fn expire_due(&mut self, now: Nanos) -> Option<CallId> {
        let mut next = Nanos::MAX;
        let mut hit = None;
        for c in self.calls.iter_mut().filter(|c| c.state == State::Waiting) {
            if hit.is_none() && c.deadline <= now {
                c.state = State::TimedOut;
                hit = Some(c.id);
            } else {
                next = next.min(c.deadline);
            }
        }
        self.next_deadline = next;
        if hit.is_some() {
            self.stats.timed_out += 1;
            self.timed_out += 1;
            self.forget_excess();
        }
        hit
    }

    /// Keeps at most `remember` timed-out calls: the oldest are forgotten.
    fn forget_excess(&mut self) {
        while self.timed_out > self.remember {
            if let Some(c) = self.calls.iter_mut().find(|c| c.state == State::TimedOut) {
                c.state = State::Done;
                self.timed_out -= 1;
                self.stats.forgotten += 1;
            }
        }
        self.trim();
    }

    #[inline]
    fn trim(&mut self) {
        while self.calls.front().is_some_and(|c| c.state == State::Done) {
            self.calls.pop_front();
        }
    }

    /// The session was reset: every unresolved call is abandoned (returned), and
    /// ids start again at `next_id` (the fresh session's numbering).
    pub(crate) fn reset(&mut self, next_id: CallId) -> Vec<CallId> {
        let lost: Vec<CallId> = self.calls.iter().filter(|c| c.state != State::Done).map(|c| c.id).collect();
        self.stats.abandoned += lost.len() as u64;
        self.calls.clear();
        self.orphans.clear();
        self.timed_out = 0;
        self.next_deadline = Nanos::MAX;
        self.first_id = next_id;
        self.next_id = next_id;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_resolves_once() {
        let mut c = Calls::new(10, 4);
        for id in 10..15 {
            c.sent(id, 100 + id);
        }
        assert_eq!(c.answer(12), Match::Reply);
        assert_eq!(c.answer(12), Match::Duplicate);
        assert_eq!(c.expire(105), None);
        assert_eq!(c.expire(110), Some(10));
        assert_eq!(c.expire(110), None);
        assert_eq!(c.answer(10), Match::Late);
        assert_eq!(c.answer(10), Match::Duplicate);
        assert_eq!(c.answer(11), Match::Reply);
        // 10..=12 resolved and trimmed: a duplicate still recognised.
        assert_eq!(c.answer(11), Match::Duplicate);
        assert_eq!(c.outstanding(), 2);
        assert_eq!(c.answer(9), Match::Orphan, "before this client");
        assert_eq!(c.answer(9), Match::Duplicate);
        assert_eq!(c.answer(15), Match::Orphan, "beyond every call made");
        assert_eq!(c.expire(u64::MAX), Some(13));
        assert_eq!(c.expire(u64::MAX), Some(14));
        assert_eq!(c.next_deadline(), None);
        let s = c.stats;
        assert_eq!((s.calls, s.replies, s.timed_out, s.late, s.orphans, s.duplicates), (5, 2, 3, 1, 2, 4));
    }

    #[test]
    fn sparse_ids_are_found() {
        let mut c = Calls::new(0, 4);
        for id in [0, 3, 4, 9, 20] {
            c.sent(id, 1_000);
        }
        assert_eq!(c.answer(9), Match::Reply);
        assert_eq!(c.answer(5), Match::Duplicate, "ours, no call");
        assert_eq!(c.answer(20), Match::Reply);
        assert_eq!(c.answer(0), Match::Reply);
        assert_eq!(c.outstanding(), 2);
    }

    #[test]
    fn timed_out_calls_are_remembered_up_to_the_bound() {
        let mut c = Calls::new(0, 2);
        for id in 0..4 {
            c.sent(id, 10);
        }
        while c.expire(10).is_some() {}
        assert_eq!(c.stats.forgotten, 2);
        assert_eq!(c.answer(0), Match::Duplicate, "forgotten: dropped");
        assert_eq!(c.answer(3), Match::Late);
        assert_eq!(c.answer(2), Match::Late);
    }

    #[test]
    fn deadlines_in_any_order() {
        let mut c = Calls::new(0, 8);
        c.sent(0, 50);
        c.sent(1, 10);
        c.sent(2, 30);
        assert_eq!(c.next_deadline(), Some(10));
        assert_eq!(c.expire(30), Some(1));
        assert_eq!(c.next_deadline(), Some(30));
        assert_eq!(c.expire(30), Some(2));
        assert_eq!(c.expire(49), None);
        assert_eq!(c.answer(0), Match::Reply);
        assert_eq!(c.next_deadline(), Some(50), "a stale deadline costs one scan, nothing more");
        assert_eq!(c.expire(50), None);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_reset_abandons_what_is_unresolved() {
        let mut c = Calls::new(0, 8);
        for id in 0..3 {
            c.sent(id, 10);
        }
        assert_eq!(c.answer(1), Match::Reply);
        assert_eq!(c.reset(0), vec![0, 2]);
        assert_eq!(c.answer(1), Match::Orphan, "a fresh session: old ids mean nothing");
        c.sent(0, 10);
        assert_eq!(c.answer(0), Match::Reply);
    }
}
