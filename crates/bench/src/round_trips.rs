//! Timing round trips: the one loop every latency suite measures with.

use crate::clock::{ticks, Clock};
use crate::floors::Pinger;
use crate::hist;
use crate::payload::{self, Payloads};
use hdrhistogram::Histogram;
use std::time::Duration;

/// Round trips for `warm` (not recorded) then for `span`, each timed with two tick
/// reads around [`Pinger::ping`] and recorded; every answer is checked. Shared by the
/// echo and request/response suites so both are timed the same way.
pub fn measure<P: Pinger>(
    p: &mut P,
    gen: &mut Payloads,
    seq: &mut u64,
    clock: &Clock,
    warm: Duration,
    span: Duration,
) -> Histogram<u64> {
    let mut buf = [0u8; payload::MAX];
    let mut h = hist::new_hist();
    let start = ticks();
    let warm_ticks = clock.ticks_in(warm.as_nanos() as f64);
    while ticks() - start < warm_ticks {
        for _ in 0..64 {
            let len = gen.next(*seq, &mut buf);
            *seq += 1;
            assert!(p.ping(&buf[..len], clock.now_ns()), "round trip {seq} came back wrong");
        }
    }
    let start = ticks();
    let span_ticks = clock.ticks_in(span.as_nanos() as f64);
    let mut t0 = start;
    loop {
        for _ in 0..64 {
            let len = gen.next(*seq, &mut buf);
            *seq += 1;
            t0 = ticks();
            let ok = p.ping(&buf[..len], clock.at(t0));
            let t1 = ticks();
            assert!(ok, "round trip {seq} came back wrong");
            hist::record(&mut h, clock.ns(t1 - t0));
        }
        if t0 - start >= span_ticks {
            break;
        }
    }
    h
}
