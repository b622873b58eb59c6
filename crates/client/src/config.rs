//! Client configuration with documented defaults.

use std::path::PathBuf;
use std::time::Duration;
use tcpshm_persist::Durability;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{Name, Nanos};

/// Why a client configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The queue size is not a power of two or too small for the maximum message.
    #[error(
        "queue size {bytes} is invalid: it must be a power of two of at least {min} bytes (twice the largest frame)"
    )]
    QueueSize {
        /// The size given.
        bytes: usize,
        /// The smallest valid size.
        min: usize,
    },
    /// The maximum message size is zero or too large.
    #[error("max message size {0} is invalid (1..=2^31)")]
    MaxMessage(usize),
    /// A duration is zero or inconsistent.
    #[error("timing is invalid: {0}")]
    Timing(&'static str),
    /// The credential is longer than the protocol allows.
    #[error("credential of {0} bytes exceeds the protocol's 256")]
    Credential(usize),
    /// The shared-memory file prefix is not usable in a file name.
    #[error("shm prefix {0:?} is invalid: use up to 64 ASCII letters, digits, '_', '-' or '.', not starting with a dot, not starting with '.'")]
    ShmPrefix(String),
}

/// Everything a client needs to know, with documented defaults ([`ClientConfig::new`]).
///
/// ```
/// use tcpshm_client::ClientConfig;
/// let cfg = ClientConfig::new("trader-1".parse().unwrap(), "/var/lib/myapp/client");
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This client's name: with the server's, it identifies the persistent session.
    pub name: Name,
    /// Which server this session talks to, as a stable label (default `server`). The
    /// store file is `<client>@<service>`; the server's actual name (which may change
    /// every trading day) is remembered inside it as the session's epoch.
    pub service: Name,
    /// Directory of the persistent session store (created 0700; files 0600).
    pub storage_dir: PathBuf,
    /// Directory of the shared-memory files. Default `/dev/shm`; must match the
    /// server's.
    pub shm_dir: PathBuf,
    /// Prefix of the shared-memory file names. Default `tcpshm-`; must match the
    /// server's.
    pub shm_prefix: String,
    /// Bytes of the persistent TCP send queue. Default 4 MiB.
    pub queue_bytes: usize,
    /// Largest message in bytes. Default 1 MiB.
    pub max_message: usize,
    /// Heartbeat after this much silence. Default 1 s.
    pub heartbeat_interval: Nanos,
    /// Disconnect after this much silence from the server. Default 10 s.
    pub connection_timeout: Nanos,
    /// Bound on each blocking step of `connect` (TCP connect, login write, reply read).
    /// Default 5 s. (The kernel enforces it through socket timeouts: the library reads
    /// no clock.)
    pub connect_timeout: Duration,
    /// Opaque bytes for the server's login handler (at most 256).
    pub credential: Vec<u8>,
    /// Durability of the send queue. Default [`Durability::Process`].
    pub durability: Durability,
    /// The transport this client uses, which decides where messages pushed before the
    /// first `connect` of a process are queued: TCP (the session store), or shared
    /// memory (the rings of the last session, mapped at `open`). Default TCP.
    pub transport: TransportKind,
}

impl ClientConfig {
    /// A configuration with the defaults above.
    pub fn new(name: Name, storage_dir: impl Into<PathBuf>) -> ClientConfig {
        ClientConfig {
            name,
            service: Name::new("server").expect("valid name"),
            storage_dir: storage_dir.into(),
            shm_dir: PathBuf::from("/dev/shm"),
            shm_prefix: "tcpshm-".into(),
            queue_bytes: 4 << 20,
            max_message: 1 << 20,
            heartbeat_interval: 1_000_000_000,
            connection_timeout: 10_000_000_000,
            connect_timeout: Duration::from_secs(5),
            credential: Vec::new(),
            durability: Durability::Process,
            transport: TransportKind::Tcp,
        }
    }

    /// Checks the configuration.
    ///
    /// ```
    /// use tcpshm_client::{ClientConfig, ConfigError};
    /// let mut cfg = ClientConfig::new("c".parse().unwrap(), "/tmp/c");
    /// cfg.queue_bytes = 1000;
    /// assert!(matches!(cfg.validate(), Err(ConfigError::QueueSize { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message == 0 || self.max_message > 1 << 31 {
            return Err(ConfigError::MaxMessage(self.max_message));
        }
        let min = tcpshm_proto::frame::min_queue_bytes(self.max_message);
        if !self.queue_bytes.is_power_of_two() || self.queue_bytes < min {
            return Err(ConfigError::QueueSize { bytes: self.queue_bytes, min });
        }
        if self.heartbeat_interval == 0 || self.connection_timeout <= self.heartbeat_interval {
            return Err(ConfigError::Timing(
                "the connection timeout must be longer than a non-zero heartbeat interval",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::Timing("connect timeout must be > 0"));
        }
        if self.credential.len() > tcpshm_proto::login::MAX_CREDENTIAL_LEN {
            return Err(ConfigError::Credential(self.credential.len()));
        }
        if !tcpshm_transport_shm::prefix_ok(&self.shm_prefix) {
            return Err(ConfigError::ShmPrefix(self.shm_prefix.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut ClientConfig)) -> Result<(), ConfigError> {
        let mut c = ClientConfig::new(Name::new("c").unwrap(), "/tmp/unused");
        f(&mut c);
        c.validate()
    }

    #[test]
    fn the_defaults_are_valid() {
        let c = ClientConfig::new(Name::new("c").unwrap(), "/x");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.service.as_str(), "server");
        assert_eq!((c.queue_bytes, c.max_message, c.connect_timeout), (4 << 20, 1 << 20, Duration::from_secs(5)));
        assert_eq!((c.heartbeat_interval, c.connection_timeout), (1_000_000_000, 10_000_000_000));
        assert_eq!((c.shm_dir.to_str(), c.shm_prefix.as_str()), (Some("/dev/shm"), "tcpshm-"));
        assert!(c.credential.is_empty());
    }

    #[test]
    fn max_message_bounds() {
        assert_eq!(with(|c| c.max_message = 0), Err(ConfigError::MaxMessage(0)));
        assert_eq!(with(|c| c.max_message = (1 << 31) + 1), Err(ConfigError::MaxMessage((1 << 31) + 1)));
        assert_eq!(
            with(|c| {
                c.max_message = 1;
                c.queue_bytes = 256;
            }),
            Ok(())
        );
    }

    #[test]
    fn queue_size_is_a_power_of_two_holding_two_largest_frames() {
        assert_eq!(with(|c| c.queue_bytes = 2 << 20), Err(ConfigError::QueueSize { bytes: 2 << 20, min: 4 << 20 }));
        assert_eq!(
            with(|c| c.queue_bytes = (4 << 20) + 8),
            Err(ConfigError::QueueSize { bytes: (4 << 20) + 8, min: 4 << 20 })
        );
        assert_eq!(with(|c| c.queue_bytes = 8 << 20), Ok(()));
        assert_eq!(
            with(|c| {
                c.max_message = 100;
                c.queue_bytes = 256;
            }),
            Err(ConfigError::QueueSize { bytes: 256, min: 512 })
        );
    }

    #[test]
    fn timings() {
        assert!(matches!(with(|c| c.heartbeat_interval = 0), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.connection_timeout = c.heartbeat_interval), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.connect_timeout = Duration::ZERO), Err(ConfigError::Timing(_))));
        assert_eq!(with(|c| c.connect_timeout = Duration::from_nanos(1)), Ok(()));
    }

    #[test]
    fn credential_up_to_256_bytes() {
        assert_eq!(with(|c| c.credential = vec![0; 256]), Ok(()));
        assert_eq!(with(|c| c.credential = vec![0; 257]), Err(ConfigError::Credential(257)));
    }

    #[test]
    fn shm_prefixes() {
        for bad in ["a/b", "../x", "x y", "é", ".hidden", &"p".repeat(65)] {
            assert_eq!(with(|c| c.shm_prefix = bad.into()), Err(ConfigError::ShmPrefix(bad.into())), "{bad:?}");
        }
        for good in ["", "tcpshm-", "a.b_c-1", &"p".repeat(64)] {
            assert_eq!(with(|c| c.shm_prefix = good.into()), Ok(()), "{good:?}");
        }
    }
}
