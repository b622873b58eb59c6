//! The benchmarks of tcpshm (dev-only, never published) and the plumbing they share.
//!
//! The suites are this package's `benches/` (`harness = false`), run by
//! `cargo xtask bench`:
//!
//! * `echo` — round trips through server and client over shared memory and TCP
//!   against the bare floors of each medium, judged at p50, p99 and p99.9;
//! * `stream` — one-way rates against a bare ring and a bare socket carrying the same
//!   frames;
//! * `scale` — the echo beside thousands of idle connections and beside busy ones.
//!
//! Every goal is judged in back-to-back pairs ([`pairs`]): the machine these run on
//! changes speed under the bench, so ours and the reference are measured in short
//! windows side by side, the ratio taken within each pair, pairs whose reference
//! moved discarded, the median of the rest reported.
//!
//! The plumbing: a calibrated time-stamp clock ([`clock`]), histograms ([`hist`]),
//! child processes in roles, pinned and paused at will ([`child`]), scratch
//! directories ([`scratch`]), machine facts and limits ([`sys`]), message contents
//! ([`payload`]), the echo floors ([`floors`]), the timed round-trip loop
//! ([`round_trips`]), tcpshm's side ([`ours`]), the stream
//! references ([`streams`]), system-call counts ([`syscalls`]), tail attribution
//! ([`tail`]) and the report rows ([`common`]).

pub mod child;
pub mod clock;
pub use tcpshm_bench_common as common;
pub mod floors;
pub mod hist;
pub mod ours;
pub mod pairs;
pub mod payload;
pub mod round_trips;
pub mod scratch;
pub mod streams;
pub mod sys;
pub mod syscalls;
pub mod tail;
