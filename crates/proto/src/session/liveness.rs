//! Liveness: when a side sends a heartbeat, when it gives up on a silent peer, and
//! the next moment either can happen — one timer table for every medium.

use crate::transport::Nanos;

/// The liveness timings of a session, on the caller's clock.
///
/// ```
/// use tcpshm_proto::session::LivenessConfig;
/// let c = LivenessConfig::default();
/// assert_eq!((c.heartbeat_interval, c.timeout), (1_000_000_000, 10_000_000_000));
/// assert!(c.validate().is_ok());
/// assert!(LivenessConfig { timeout: c.heartbeat_interval, ..c }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Send a heartbeat when nothing was sent for this long (default 1 s).
    pub heartbeat_interval: Nanos,
    /// The peer is gone when nothing arrived from it for longer than this (default
    /// 10 s). Must be longer than `heartbeat_interval`.
    pub timeout: Nanos,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig { heartbeat_interval: 1_000_000_000, timeout: 10_000_000_000 }
    }
}

impl LivenessConfig {
    /// Checks the timings: both non-zero, the timeout longer than the interval.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.heartbeat_interval == 0 {
            return Err("the heartbeat interval must be more than 0");
        }
        if self.timeout <= self.heartbeat_interval {
            return Err("the timeout must be longer than the heartbeat interval");
        }
        Ok(())
    }
}

/// The liveness clocks of one link: when a frame last arrived and last left.
///
/// ```
/// use tcpshm_proto::session::{Liveness, LivenessConfig};
/// let cfg = LivenessConfig { heartbeat_interval: 100, timeout: 1000 };
/// let mut l = Liveness::new(cfg, 5000);
/// assert!(!l.heartbeat_due(5099));
/// assert!(l.heartbeat_due(5100));
/// assert_eq!(l.next_deadline(), 5100);
/// l.on_sent(5100);
/// assert_eq!(l.next_deadline(), 5200);
/// assert_eq!(l.timed_out(6001), Some(1001)); // nothing arrived since 5000
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    cfg: LivenessConfig,
    last_recv: Nanos,
    last_send: Nanos,
}

impl Liveness {
    /// Clocks started at `now` (a link that just came up).
    pub fn new(cfg: LivenessConfig, now: Nanos) -> Liveness {
        Liveness { cfg, last_recv: now, last_send: now }
    }

    /// The timings.
    pub fn config(&self) -> &LivenessConfig {
        &self.cfg
    }

    /// Something arrived from the peer at `now`. A clock that goes backwards never
    /// moves the liveness clocks back.
    #[inline]
    pub fn on_received(&mut self, now: Nanos) {
        self.last_recv = self.last_recv.max(now);
    }

    /// A frame left at `now`.
    #[inline]
    pub fn on_sent(&mut self, now: Nanos) {
        self.last_send = self.last_send.max(now);
    }

    /// When something last arrived.
    pub fn last_received(&self) -> Nanos {
        self.last_recv
    }

    /// When something last left.
    pub fn last_sent(&self) -> Nanos {
        self.last_send
    }

    /// Whether a heartbeat is due: nothing left for the heartbeat interval.
    #[inline]
    pub fn heartbeat_due(&self, now: Nanos) -> bool {
        now.saturating_sub(self.last_send) >= self.cfg.heartbeat_interval
    }

    /// `Some(silent_ns)` if nothing arrived for longer than the timeout.
    #[inline]
    pub fn timed_out(&self, now: Nanos) -> Option<Nanos> {
        let silent = now.saturating_sub(self.last_recv);
        (silent > self.cfg.timeout).then_some(silent)
    }

    /// The earliest moment at which [`heartbeat_due`](Self::heartbeat_due) or
    /// [`timed_out`](Self::timed_out) can become true: a caller with nothing else to
    /// do may sleep until then.
    #[inline]
    pub fn next_deadline(&self) -> Nanos {
        let hb = self.last_send.saturating_add(self.cfg.heartbeat_interval);
        let to = self.last_recv.saturating_add(self.cfg.timeout).saturating_add(1);
        hb.min(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_and_timeout() {
        let cfg = LivenessConfig { heartbeat_interval: 100, timeout: 1000 };
        let mut l = Liveness::new(cfg, 5000);
        assert!(!l.heartbeat_due(5000));
        assert!(!l.heartbeat_due(5099));
        assert!(l.heartbeat_due(5100));
        l.on_sent(5100);
        assert!(!l.heartbeat_due(5150));
        assert_eq!(l.timed_out(6000), None, "exactly the timeout is not yet longer than it");
        assert_eq!(l.timed_out(6001), Some(1001));
        l.on_received(5500);
        assert_eq!(l.timed_out(6001), None);
        // A caller clock that goes backwards never underflows, and never moves the
        // liveness clocks back.
        assert_eq!(l.timed_out(0), None);
        assert!(!l.heartbeat_due(0));
        l.on_received(10);
        assert_eq!(l.last_received(), 5500);
    }

    #[test]
    fn next_deadline_is_the_earlier_timer_and_saturates() {
        let cfg = LivenessConfig { heartbeat_interval: 100, timeout: 1000 };
        let mut l = Liveness::new(cfg, 0);
        assert_eq!(l.next_deadline(), 100);
        l.on_sent(950);
        assert_eq!(l.next_deadline(), 1001);
        let mut l = Liveness::new(cfg, u64::MAX - 10);
        l.on_sent(u64::MAX);
        assert_eq!(l.next_deadline(), u64::MAX);
    }

    #[test]
    fn deadlines_are_exact() {
        // At next_deadline a timer fires; one tick before, none does.
        let cfg = LivenessConfig { heartbeat_interval: 70, timeout: 300 };
        for (sent, recv) in [(0, 0), (250, 0), (10, 200), (299, 1)] {
            let mut l = Liveness::new(cfg, 0);
            l.on_sent(sent);
            l.on_received(recv);
            let d = l.next_deadline();
            assert!(l.heartbeat_due(d) || l.timed_out(d).is_some(), "nothing due at {d}");
            assert!(!l.heartbeat_due(d - 1) && l.timed_out(d - 1).is_none(), "due before {d}");
        }
    }
}
