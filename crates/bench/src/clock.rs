//! A cheap monotonic clock for per-message timestamps: the time-stamp counter on
//! x86_64 (invariant TSC, one `rdtsc`, ~10 ns), calibrated against `Instant` at
//! start; `Instant` elsewhere. Every sample of every contender pays the same two
//! reads, and the report gives their cost.

use std::time::{Duration, Instant};

/// Raw ticks of the clock.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions; it is available on every x86_64 cpu.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Tick-to-nanosecond conversion, measured.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    ns_per_tick: f64,
    origin: u64,
}

impl Clock {
    /// Calibrates over `span` (longer is more exact; 20 ms gives ~0.01%).
    pub fn calibrate(span: Duration) -> Clock {
        let (i0, t0) = (Instant::now(), ticks());
        while i0.elapsed() < span {
            std::hint::spin_loop();
        }
        let (i1, t1) = (Instant::now(), ticks());
        let ns = (i1 - i0).as_nanos() as f64;
        let ns_per_tick = if t1 > t0 { ns / (t1 - t0) as f64 } else { 1.0 };
        Clock { ns_per_tick, origin: t0 }
    }

    /// A clock of `ns_per_tick` without calibration (for tests of code that converts).
    pub fn fixed(ns_per_tick: f64) -> Clock {
        Clock { ns_per_tick, origin: 0 }
    }

    /// Nanoseconds per tick, as calibrated.
    pub fn ns_per_tick(&self) -> f64 {
        self.ns_per_tick
    }

    /// Ticks in `ns` nanoseconds.
    pub fn ticks_in(&self, ns: f64) -> u64 {
        (ns / self.ns_per_tick) as u64
    }

    /// Nanoseconds in `dt` ticks.
    #[inline(always)]
    pub fn ns(&self, dt: u64) -> f64 {
        dt as f64 * self.ns_per_tick
    }

    /// Nanoseconds since calibration: the `now` given to the library's `poll`.
    #[inline(always)]
    pub fn now_ns(&self) -> u64 {
        self.at(ticks())
    }

    /// [`now_ns`](Self::now_ns) at the reading `t` of [`ticks`].
    #[inline(always)]
    pub fn at(&self, t: u64) -> u64 {
        (t.wrapping_sub(self.origin) as f64 * self.ns_per_tick) as u64
    }

    /// Nanoseconds one pair of reads (start and end of a sample) costs: included in
    /// every latency sample.
    pub fn pair_cost_ns(&self) -> f64 {
        let n = 200_000u64;
        let t0 = ticks();
        let mut x = 0u64;
        for _ in 0..n {
            x = x.wrapping_add(std::hint::black_box(ticks()));
            x = x.wrapping_add(std::hint::black_box(ticks()));
        }
        std::hint::black_box(x);
        self.ns(ticks() - t0) / n as f64
    }
}
