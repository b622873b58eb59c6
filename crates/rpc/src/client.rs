//! The calling side: send requests, receive their answers (and everything else the
//! server pushes) as events.

use crate::calls::{Calls, Match, RpcStats};
use crate::responder::ID_LEN;
use crate::{CallId, REPLY_TYPE};
use tcpshm_proto::{Msg, Nanos, SendError, Transport};

/// How an [`RpcClient`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcConfig {
    /// The message type of answers (the server's [`Responder`](crate::Responder) must
    /// use the same). Default [`REPLY_TYPE`].
    pub reply_type: u16,
    /// Timed-out calls remembered (to report their late answers) and orphan ids
    /// remembered (to filter their duplicates), each at most this many. Default
    /// 65,536.
    pub remember: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig { reply_type: REPLY_TYPE, remember: 65_536 }
    }
}

/// What [`RpcClient::next`] reports. Answers and messages are borrowed in place; they
/// are consumed when the caller moves on (see [`RpcClient`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The answer to a call.
    Reply {
        /// The call.
        id: CallId,
        /// The answer's body.
        body: &'a [u8],
    },
    /// The caller's deadline for a call passed without an answer. The request stays
    /// queued (the server may carry it out); an answer arriving later is reported as
    /// [`Event::Late`].
    TimedOut {
        /// The call.
        id: CallId,
    },
    /// The answer to a call that timed out.
    Late {
        /// The call.
        id: CallId,
        /// The answer's body.
        body: &'a [u8],
    },
    /// An answer to no call of this client: a call made by a previous process of this
    /// client (it died before consuming the answer), or the answer to a message that
    /// was not a call.
    Orphan {
        /// The id the answer names.
        id: CallId,
        /// The answer's body.
        body: &'a [u8],
    },
    /// A message that is not an answer (the server pushed it unprompted).
    Message(Msg<'a>),
}

/// Why a blocking [`call`](RpcClient::call) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The request was refused (too large, a reserved type, a storage failure).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The send queue stayed full until the deadline: the request was not sent.
    #[error("the send queue stayed full until the deadline: the request was not sent")]
    Full,
    /// No answer before the deadline. The request was sent and stays queued: the
    /// server may carry it out; its answer will be reported as [`Event::Late`].
    #[error("no answer to call {id} before the deadline")]
    TimedOut {
        /// The call.
        id: CallId,
    },
}

/// The calling side of request/response over any tcpshm [`Transport`] (a `Client`, a
/// `Reconnect` that stays connected, a `Connection`). See the [crate
/// documentation](crate) for the guarantee, stated exactly.
///
/// Non-blocking use, as the rest of tcpshm: [`alloc`](Self::alloc) +
/// [`send`](Self::send) (or [`request`](Self::request)) with a deadline on the
/// caller's clock; [`poll`](Self::poll) with `now`; [`next`](Self::next) until `None`.
/// Each event borrows the answer (or message) in place; it is popped when the caller
/// calls `next`, `poll`, `done` or `call` again. For code that is not
/// latency-critical, [`call`](Self::call) blocks until the answer.
///
/// ```
/// use tcpshm_rpc::{Event, RpcClient, RpcConfig};
/// # let (transport, mut server) = tcpshm_rpc::doc_pair("rpc-doc-client");
/// let mut rpc = RpcClient::new(transport, RpcConfig::default());
/// let mut now = 1_000;
/// let id = rpc.request(7, b"price AAPL?", now + 50_000_000).unwrap().expect("room in the queue");
/// let mut answered = false;
/// while !answered {
///     now += 1_000;
///     rpc.poll(now);
/// #   server.step(now);
///     while let Some(event) = rpc.next(now) {
///         match event {
///             Event::Reply { id: got, body } => {
///                 assert_eq!((got, body), (id, &b"189.5"[..]));
///                 answered = true;
///             }
///             Event::TimedOut { id } => panic!("call {id}: no answer in time"),
///             other => println!("{other:?}"),
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct RpcClient<T> {
    t: T,
    cfg: RpcConfig,
    calls: Calls,
    /// The front message was handed out in the last event: pop it when the caller
    /// moves on.
    holding: bool,
}

impl<T: Transport> RpcClient<T> {
    /// Request/response over `t`. Calls are numbered from the session's next seq on:
    /// answers to earlier ids are orphans.
    pub fn new(t: T, cfg: RpcConfig) -> RpcClient<T> {
        let first = t.counters().next_seq;
        RpcClient { t, cfg, calls: Calls::new(first, cfg.remember), holding: false }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.t
    }

    /// The transport, mutably (to push other messages, to connect...). Pops a message
    /// the last event held first.
    pub fn transport_mut(&mut self) -> &mut T {
        self.done();
        &mut self.t
    }

    /// Gives the transport back (a message the last event held is popped first).
    pub fn into_inner(mut self) -> T {
        self.done();
        self.t
    }

    /// Counters.
    pub fn stats(&self) -> RpcStats {
        self.calls.stats
    }

    /// Calls sent and not resolved yet (waiting, or timed out and remembered).
    pub fn outstanding(&self) -> usize {
        self.calls.outstanding()
    }

    /// Whether call `id` is still waiting for its answer (not answered, not timed out).
    pub fn is_waiting(&self, id: CallId) -> bool {
        self.calls.waiting(id)
    }

    /// The earliest deadline of a waiting call (for a caller that sleeps until
    /// something is due).
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.calls.next_deadline()
    }

    /// Reserves `len` bytes for the next request's body, in place in the send queue.
    /// `Ok(None)`: the queue is full now.
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.done();
        self.t.alloc(len)
    }

    /// Sends the allocated request as a message of `msg_type` (not
    /// [`RpcConfig::reply_type`]), to be answered by `deadline` on the caller's clock.
    /// Returns the call's id.
    #[inline]
    pub fn send(&mut self, msg_type: u16, deadline: Nanos) -> Result<CallId, SendError> {
        let id = self.t.counters().next_seq;
        self.t.push(msg_type)?;
        self.calls.sent(id, deadline);
        Ok(id)
    }

    /// Sends a copy of `body` as a request ([`alloc`](Self::alloc) +
    /// [`send`](Self::send)); `Ok(None)` if the queue is full now.
    pub fn request(&mut self, msg_type: u16, body: &[u8], deadline: Nanos) -> Result<Option<CallId>, SendError> {
        let Some(buf) = self.alloc(body.len())? else { return Ok(None) };
        buf.copy_from_slice(body);
        self.send(msg_type, deadline).map(Some)
    }

    /// Polls the transport (I/O, heartbeats, reconnects for a `Reconnect`), after
    /// popping a message the last event held. Returns whether it is connected.
    #[inline]
    pub fn poll(&mut self, now: Nanos) -> bool {
        self.done();
        self.t.poll(now)
    }

    /// Pops the message the last event held (answer or message): it is consumed and
    /// never delivered again. [`next`](Self::next) and [`poll`](Self::poll) do it too.
    #[inline]
    pub fn done(&mut self) {
        if std::mem::take(&mut self.holding) {
            self.t.pop();
        }
    }

    /// The next event: an answer that arrived (duplicates dropped), then a call whose
    /// deadline passed at `now`, then a message that is not an answer. `None` when
    /// nothing is pending now. Pops what the previous event held first.
    pub fn next(&mut self, now: Nanos) -> Option<Event<'_>> {
        self.done();
        let reply_type = self.cfg.reply_type;
        // Drop duplicates at the front; find what the front is.
        let front = loop {
            let Some(m) = self.t.front() else { break None };
            if m.msg_type != reply_type || m.payload.len() < ID_LEN {
                break Some(None);
            }
            let id = crate::reply_id(m.payload).expect("checked length");
            match self.calls.answer(id) {
                Match::Duplicate => self.t.pop(),
                m => break Some(Some((id, m))),
            }
        };
        match front {
            Some(Some((id, m))) => {
                self.holding = true;
                let body = &self.t.front().expect("still in front").payload[ID_LEN..];
                Some(match m {
                    Match::Reply => Event::Reply { id, body },
                    Match::Late => Event::Late { id, body },
                    _ => Event::Orphan { id, body },
                })
            }
            other => {
                if let Some(id) = self.calls.expire(now) {
                    return Some(Event::TimedOut { id });
                }
                other?;
                self.holding = true;
                Some(Event::Message(self.t.front().expect("still in front")))
            }
        }
    }

    /// The session was reset ([`ReconnectEvent::SessionReset`](crate::ReconnectEvent::SessionReset):
    /// the server came back under another name and both queues were dropped): every
    /// call not resolved yet will never be answered. Returns their ids; calls are
    /// numbered in the new session from now on.
    pub fn reset(&mut self) -> Vec<CallId> {
        self.done();
        let next = self.t.counters().next_seq;
        self.calls.reset(next)
    }

    /// Sends a copy of `body` as a request of `msg_type` and **blocks** until its
    /// answer (returned as a copy) or until `timeout` ns have passed on `clock` (the
    /// caller's clock: e.g. `tcpshm::clock::now`; it is read only because the caller
    /// asked to wait). Every other event meanwhile — answers to other calls, messages
    /// the server pushed, timeouts of other calls — is handed to `other` in order, in
    /// place. Busy-polls (yielding the cpu between polls): for code that is not
    /// latency-critical.
    ///
    /// On [`CallError::TimedOut`] the request stays queued; its answer, if it comes,
    /// is reported later as [`Event::Late`].
    ///
    /// ```
    /// use tcpshm_rpc::{RpcClient, RpcConfig};
    /// # let (transport, server) = tcpshm_rpc::doc_pair("rpc-doc-call");
    /// # let _serving = server.spawn();
    /// let mut rpc = RpcClient::new(transport, RpcConfig::default());
    /// let clock = std::time::Instant::now();
    /// let now = move || clock.elapsed().as_nanos() as u64;
    /// let answer = rpc.call(7, b"price AAPL?", 5_000_000_000, now, |event| println!("meanwhile: {event:?}"));
    /// assert_eq!(answer.unwrap(), b"189.5");
    /// ```
    pub fn call(
        &mut self,
        msg_type: u16,
        body: &[u8],
        timeout: Nanos,
        mut clock: impl FnMut() -> Nanos,
        mut other: impl FnMut(Event<'_>),
    ) -> Result<Vec<u8>, CallError> {
        let start = clock();
        let deadline = start.saturating_add(timeout);
        let id = loop {
            if let Some(id) = self.request(msg_type, body, deadline)? {
                break id;
            }
            let now = clock();
            if now >= deadline {
                return Err(CallError::Full);
            }
            self.wait_step(now, &mut other);
        };
        loop {
            let now = clock();
            self.poll(now);
            while let Some(event) = self.next(now) {
                match event {
                    Event::Reply { id: got, body } if got == id => {
                        let answer = body.to_vec();
                        self.done();
                        return Ok(answer);
                    }
                    Event::TimedOut { id: got } if got == id => return Err(CallError::TimedOut { id }),
                    event => other(event),
                }
            }
            std::thread::yield_now();
        }
    }

    /// One turn of waiting for room: poll, hand events over.
    fn wait_step(&mut self, now: Nanos, other: &mut impl FnMut(Event<'_>)) {
        self.poll(now);
        while let Some(event) = self.next(now) {
            other(event);
        }
        std::thread::yield_now();
    }
}
