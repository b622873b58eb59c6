//! # tcpshm-rpc
//!
//! Request/response over a tcpshm session, as a layer on top: the core protocol is
//! unchanged, and a request is an ordinary message. What this crate adds is what
//! every program wrote by hand, with the one subtle case handled:
//!
//! * **correlation ids** without an extra byte on the request: a call's id is the
//!   request message's sequence number in the session (unique for the session's
//!   life, across restarts of either side), which the server reads as
//!   [`Msg::seq`](tcpshm_proto::Msg::seq); an answer carries it in front of its body;
//! * **timeouts the caller drives**: each call has a deadline on the caller's clock,
//!   checked when the caller polls — no clock is read;
//! * **duplicate answers filtered**: a server that dies after pushing an answer and
//!   before popping the request (its commit point) answers that request again after
//!   its restart; the second answer never reaches the caller;
//! * a **blocking [`call`](RpcClient::call)** for code that is not latency-critical,
//!   and [`Responder::reply`] on the server.
//!
//! ## What is guaranteed, exactly
//!
//! For every call made through an [`RpcClient`] (sent: [`RpcClient::send`] returned
//! its id), the caller sees **exactly one** of:
//!
//! * [`Event::Reply`] — the first answer to arrive;
//! * [`Event::TimedOut`] — the deadline the caller gave passed first. The request is
//!   not withdrawn (it is in a persistent queue: the server may well carry it out);
//!   if its answer still arrives while this `RpcClient` lives, it is reported once as
//!   [`Event::Late`];
//! * inclusion in the list [`RpcClient::reset`] returns — the session was reset (the
//!   server came back under another name, [`ReconnectEvent::SessionReset`]): its
//!   queues were dropped and the call will never be answered.
//!
//! A second answer to a call already resolved is dropped and counted
//! ([`RpcStats::duplicates`]), never reported. Connection losses, reconnects and
//! restarts of the server change nothing of this: requests and answers wait in the
//! sessions' persistent queues.
//!
//! **Answers are consumed like any message.** An event borrows its answer in place; it
//! is popped — the commit point — when the caller moves on (the next
//! [`next`](RpcClient::next), [`poll`](RpcClient::poll) or
//! [`done`](RpcClient::done)). A client process that dies before that finds the
//! answer again after its restart; the new process made no such call, so the answer
//! is reported as an [`Event::Orphan`] (once: duplicates of orphans are filtered in
//! the same way). Handling an answer and popping it are not one atomic step —
//! nothing can make them one — so a caller whose handling must happen once across
//! its own crashes records what it handled, by call id, before moving on.
//!
//! **The one case no client-side filter catches** needs both sides to die at the
//! wrong moments: the client consumed an answer and died, and the server had died
//! before popping that request; the restarted server answers again and the restarted
//! client, which has no record of the first answer, reports the second as an orphan.
//!
//! ## Wire format
//!
//! A request is any user message (its type is the caller's). An answer is a message
//! of type [`RpcConfig::reply_type`] (default [`REPLY_TYPE`], the last user type:
//! keep it for answers) whose payload is the call id (u64, little-endian) followed by
//! the body.
//!
//! ```
//! use tcpshm_rpc::{Event, RpcClient, RpcConfig};
//! # use tcpshm_rpc::doc_pair as pair;
//! // `client` is any tcpshm Transport (a Client, a Reconnect, a Connection);
//! // `server` answers in its GroupHandler with `Responder::reply`.
//! let (client, mut server) = pair("rpc-doc-lib");
//! let mut rpc = RpcClient::new(client, RpcConfig::default());
//! let mut now = 1_000;
//! let id = rpc.request(7, b"price AAPL?", now + 1_000_000_000).unwrap().expect("room");
//! loop {
//!     now += 1_000;
//!     rpc.poll(now);
//!     server.step(now); // the other side answers "189.5"
//!     if let Some(Event::Reply { id: got, body }) = rpc.next(now) {
//!         assert_eq!((got, body), (id, &b"189.5"[..]));
//!         break;
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

mod calls;
mod client;
#[doc(hidden)]
pub mod doc_support;
mod responder;

pub use calls::RpcStats;
pub use client::{CallError, Event, RpcClient, RpcConfig};
#[doc(hidden)]
pub use doc_support::doc_pair;
pub use responder::{reply_id, Outbox, Responder, Via, ID_LEN};
pub use tcpshm_client::ReconnectEvent;

/// The default message type of answers: the last user type (`0xFEFF`).
pub const REPLY_TYPE: u16 = 0xFEFF;

/// A call's id: the sequence number of its request message in the session.
pub type CallId = u64;
