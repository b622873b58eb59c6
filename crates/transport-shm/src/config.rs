//! The connection's timing and size settings.

use crate::error::ShmError;
use tcpshm_proto::Nanos;

/// Settings of a shared-memory connection. All times are nanoseconds on the caller's
/// clock (the `now` given to `poll`).
///
/// ```
/// let cfg = tcpshm_transport_shm::ShmConfig::default();
/// assert_eq!(cfg.heartbeat_interval, 1_000_000_000);
/// assert!(cfg.validate().is_ok());
/// let bad = tcpshm_transport_shm::ShmConfig { timeout: 10, ..cfg };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmConfig {
    /// A heartbeat frame goes out on the control channel when nothing was sent on it
    /// for this long. Default 1 s.
    pub heartbeat_interval: Nanos,
    /// A peer from which nothing arrived on the control channel for longer than this
    /// is disconnected with `CloseReason::Timeout`. Must be more than the heartbeat
    /// interval. Default 10 s.
    pub timeout: Nanos,
    /// How often `poll` does the control work (read the control stream, check the
    /// peer's lock, send a heartbeat): at most once per this interval, so a busy
    /// polling loop makes few system calls. 0 = at every poll. A crashed peer is seen
    /// within this interval. Default 100 µs.
    pub check_interval: Nanos,
    /// Largest message `alloc` accepts, if smaller than the ring allows (half the
    /// outbound ring less 8 bytes). Default: no extra limit.
    pub max_payload: usize,
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig {
            heartbeat_interval: 1_000_000_000,
            timeout: 10_000_000_000,
            check_interval: 100_000,
            max_payload: usize::MAX,
        }
    }
}

impl ShmConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ShmError> {
        if self.heartbeat_interval == 0 {
            return Err(ShmError::Config("heartbeat_interval must be more than 0"));
        }
        if self.timeout <= self.heartbeat_interval {
            return Err(ShmError::Config("timeout must be more than heartbeat_interval"));
        }
        Ok(())
    }
}
