//! The one configuration of a session's connection, shared by clients and servers.

use std::path::PathBuf;
use tcpshm_persist::Durability;
use tcpshm_proto::session::{ConfigError, LivenessConfig, SessionConfig};
use tcpshm_proto::Nanos;
use tcpshm_transport_tcp::StreamConfig;

/// Where and how big the shared-memory files are.
///
/// ```
/// let s = tcpshm_connection::ShmSettings::default();
/// assert_eq!((s.dir.to_str(), s.prefix.as_str(), s.ring_bytes), (Some("/dev/shm"), "tcpshm-", 4 << 20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmSettings {
    /// Directory of the shared-memory files (default `/dev/shm`); both sides must
    /// agree.
    pub dir: PathBuf,
    /// Prefix of their names (default `tcpshm-`); both sides must agree.
    pub prefix: String,
    /// Bytes of each ring (one per direction) of a file this side creates (the
    /// server: the client takes the file's). Default 4 MiB.
    pub ring_bytes: usize,
}

impl Default for ShmSettings {
    fn default() -> Self {
        ShmSettings { dir: PathBuf::from("/dev/shm"), prefix: "tcpshm-".into(), ring_bytes: 4 << 20 }
    }
}

/// Everything a connection needs to know, with documented defaults: the session
/// rules (liveness, acks, the largest message), the persistent send queue, the
/// byte-stream medium and the shared-memory files.
///
/// ```
/// use tcpshm_connection::ConnectionConfig;
/// let mut cfg = ConnectionConfig::default();
/// cfg.session.max_message = 4096;
/// cfg.queue_bytes = 1 << 16;
/// cfg.validate().unwrap();
/// cfg.queue_bytes = 1000;
/// assert!(cfg.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Liveness, acks and the largest message.
    pub session: SessionConfig,
    /// Bytes of the persistent send queue (the store: every message of a TCP session,
    /// and of a shared-memory session those pushed before its rings exist). A power
    /// of two holding two of the largest frames. Default 4 MiB.
    pub queue_bytes: usize,
    /// Durability of the store. Default [`Durability::Process`].
    pub durability: Durability,
    /// Buffers and budgets of the byte stream.
    pub stream: StreamConfig,
    /// The shared-memory files.
    pub shm: ShmSettings,
    /// How often a shared-memory session does its control work in `poll` (read the
    /// control stream, heartbeat, timeout, note the peer's consumed count in the
    /// store): at most once per this interval, so a busy polling loop makes few
    /// system calls. A peer that closes is noticed within it. Default 1 ms.
    pub check_interval: Nanos,
    /// Bytes of the session's producers' queue, when this side creates it (the first
    /// [`Connection::producer`](crate::Connection::producer) of the session; an
    /// existing queue keeps its size): where [`Producer`](crate::Producer) handles
    /// push from other threads. A power of two, 64 bytes to 1 GiB; a producer's
    /// message is at most half of it, less 8 bytes. Default 1 MiB.
    pub producer_queue_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            session: SessionConfig::default(),
            queue_bytes: 4 << 20,
            durability: Durability::Process,
            stream: StreamConfig::default(),
            shm: ShmSettings::default(),
            check_interval: 1_000_000,
            producer_queue_bytes: 1 << 20,
        }
    }
}

impl ConnectionConfig {
    /// The liveness timings.
    pub fn liveness(&self) -> &LivenessConfig {
        &self.session.liveness
    }

    /// Checks the configuration.
    ///
    /// ```
    /// use tcpshm_connection::ConnectionConfig;
    /// let mut cfg = ConnectionConfig::default();
    /// assert!(cfg.validate().is_ok());
    /// cfg.producer_queue_bytes = 1000; // not a power of two
    /// assert!(cfg.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.session.validate()?;
        self.session.validate_queue("send queue", self.queue_bytes)?;
        self.session.validate_queue("shared-memory ring", self.shm.ring_bytes)?;
        if !tcpshm_transport_shm::prefix_ok(&self.shm.prefix) {
            return Err(ConfigError::ShmPrefix(self.shm.prefix.clone()));
        }
        if self.check_interval == 0 {
            return Err(ConfigError::Timing("the check interval must be more than 0"));
        }
        if tcpshm_ring::mpsc::check_capacity(self.producer_queue_bytes).is_err() {
            return Err(ConfigError::QueueSize {
                which: "producers' queue",
                bytes: self.producer_queue_bytes,
                min: tcpshm_ring::mpsc::MIN_CAPACITY,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut ConnectionConfig)) -> Result<(), ConfigError> {
        let mut c = ConnectionConfig::default();
        f(&mut c);
        c.validate()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(ConnectionConfig::default().validate(), Ok(()));
    }

    #[test]
    fn queues_hold_two_largest_frames() {
        // max 1 MiB: a frame is 1 MiB + 32; two of them need 4 MiB as a power of two.
        assert_eq!(
            with(|c| c.queue_bytes = 2 << 20),
            Err(ConfigError::QueueSize { which: "send queue", bytes: 2 << 20, min: 4 << 20 })
        );
        assert_eq!(
            with(|c| c.shm.ring_bytes = (4 << 20) + 8),
            Err(ConfigError::QueueSize { which: "shared-memory ring", bytes: (4 << 20) + 8, min: 4 << 20 })
        );
        assert_eq!(
            with(|c| {
                c.session.max_message = 8;
                c.queue_bytes = 256;
                c.shm.ring_bytes = 256;
            }),
            Ok(())
        );
    }

    #[test]
    fn prefixes_and_timings() {
        for bad in ["a/b", "../x", "x y", "é", ".hidden", &"p".repeat(65)] {
            assert_eq!(with(|c| c.shm.prefix = bad.into()), Err(ConfigError::ShmPrefix(bad.into())), "{bad:?}");
        }
        for good in ["", "tcpshm-", "a.b_c-1", &"p".repeat(64)] {
            assert_eq!(with(|c| c.shm.prefix = good.into()), Ok(()), "{good:?}");
        }
        assert!(matches!(with(|c| c.check_interval = 0), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.session.liveness.timeout = 1), Err(ConfigError::Timing(_))));
    }

    #[test]
    fn errors_read_well() {
        let e = with(|c| c.queue_bytes = 1000).unwrap_err();
        assert!(e.to_string().contains("send queue of 1000 bytes"), "{e}");
    }
}
