//! Server configuration with documented defaults, validated when the server is built.

use std::net::SocketAddr;
use std::path::PathBuf;
use tcpshm_persist::Durability;
use tcpshm_proto::{Name, Nanos};

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No listen address.
    #[error("no listen address configured")]
    NoListenAddress,
    /// Neither TCP nor SHM is enabled.
    #[error("no transport enabled: enable TCP, SHM or both")]
    NoTransport,
    /// A queue size is not a power of two or is too small for the maximum message.
    #[error("{which} queue size {bytes} is invalid: it must be a power of two of at least {min} bytes (twice the largest frame)")]
    QueueSize {
        /// Which queue.
        which: &'static str,
        /// The size given.
        bytes: usize,
        /// The smallest valid size for the configured maximum message.
        min: usize,
    },
    /// The maximum message size is zero or above the protocol's u32 frame length.
    #[error("max message size {0} is invalid (1..=2^31)")]
    MaxMessage(usize),
    /// A duration is zero or inconsistent (timeout must exceed the heartbeat interval).
    #[error("timing is invalid: {0}")]
    Timing(&'static str),
    /// `max_connections` or `messages_per_poll` is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The shared-memory file prefix is not usable in a file name.
    #[error("shm prefix {0:?} is invalid: use up to 64 ASCII letters, digits, '_', '-' or '.', not starting with a dot, not starting with '.'")]
    ShmPrefix(String),
}

/// Everything a server needs to know, with documented defaults ([`ServerConfig::new`]).
///
/// ```
/// use tcpshm_server::ServerConfig;
/// let mut cfg = ServerConfig::new("Server20180714".parse().unwrap(), "/var/lib/myapp");
/// cfg.listen = vec!["127.0.0.1:12345".parse().unwrap()];
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This server's name. A new name starts fresh sessions with every client (their
    /// old queues are dropped on their side): the "renamed per trading day" rule.
    pub name: Name,
    /// Addresses to listen on (IPv4 and/or IPv6). Default: none (must be set).
    pub listen: Vec<SocketAddr>,
    /// Directory of the persistent per-client TCP session stores. Created (0700) if
    /// missing; files in it are 0600.
    pub storage_dir: PathBuf,
    /// Directory of the shared-memory files. Default `/dev/shm`.
    pub shm_dir: PathBuf,
    /// Prefix of the shared-memory file names. Default `tcpshm-`.
    pub shm_prefix: String,
    /// Bytes of each TCP connection's persistent send queue. Default 4 MiB.
    pub tcp_queue_bytes: usize,
    /// Bytes of each shared-memory ring (one per direction). Default 4 MiB.
    pub shm_queue_bytes: usize,
    /// Largest user message in bytes. Default 1 MiB (the C++ reference stopped at
    /// 64 KiB); queues must hold at least two frames of it.
    pub max_message: usize,
    /// Most connections (logged in or not) at once. Default 10,000.
    pub max_connections: usize,
    /// Send a heartbeat after this much silence. Default 1 s.
    pub heartbeat_interval: Nanos,
    /// Disconnect a peer silent for this long. Default 10 s.
    pub connection_timeout: Nanos,
    /// Drop a connection that has not completed its login within this. Default 5 s.
    pub login_timeout: Nanos,
    /// Accept TCP sessions. Default true.
    pub enable_tcp: bool,
    /// Accept shared-memory sessions. Default true.
    pub enable_shm: bool,
    /// Durability of the TCP send queues. Default [`Durability::Process`].
    pub durability: Durability,
    /// Messages handed to the handler per connection per poll. Default 16.
    pub messages_per_poll: usize,
}

impl ServerConfig {
    /// A configuration with the defaults above.
    pub fn new(name: Name, storage_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            name,
            listen: Vec::new(),
            storage_dir: storage_dir.into(),
            shm_dir: PathBuf::from("/dev/shm"),
            shm_prefix: "tcpshm-".into(),
            tcp_queue_bytes: 4 << 20,
            shm_queue_bytes: 4 << 20,
            max_message: 1 << 20,
            max_connections: 10_000,
            heartbeat_interval: 1_000_000_000,
            connection_timeout: 10_000_000_000,
            login_timeout: 5_000_000_000,
            enable_tcp: true,
            enable_shm: true,
            durability: Durability::Process,
            messages_per_poll: 16,
        }
    }

    /// Checks the configuration; the server refuses to start with an invalid one.
    ///
    /// ```
    /// use tcpshm_server::{ConfigError, ServerConfig};
    /// let cfg = ServerConfig::new("S".parse().unwrap(), "/tmp/x");
    /// assert_eq!(cfg.validate(), Err(ConfigError::NoListenAddress));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::NoListenAddress);
        }
        if !self.enable_tcp && !self.enable_shm {
            return Err(ConfigError::NoTransport);
        }
        if self.max_message == 0 || self.max_message > 1 << 31 {
            return Err(ConfigError::MaxMessage(self.max_message));
        }
        // A frame of the largest message must fit in half a ring (the ring's rule),
        // with the 24-byte wire header.
        let min = tcpshm_proto::frame::min_queue_bytes(self.max_message);
        for (which, bytes, on) in
            [("TCP", self.tcp_queue_bytes, self.enable_tcp), ("SHM", self.shm_queue_bytes, self.enable_shm)]
        {
            if on && (!bytes.is_power_of_two() || bytes < min) {
                return Err(ConfigError::QueueSize { which, bytes, min });
            }
        }
        if self.heartbeat_interval == 0 || self.connection_timeout == 0 || self.login_timeout == 0 {
            return Err(ConfigError::Timing("heartbeat interval, connection timeout and login timeout must be > 0"));
        }
        if self.connection_timeout <= self.heartbeat_interval {
            return Err(ConfigError::Timing("the connection timeout must be longer than the heartbeat interval"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("max_connections"));
        }
        if self.messages_per_poll == 0 {
            return Err(ConfigError::Zero("messages_per_poll"));
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

    fn valid() -> ServerConfig {
        let mut c = ServerConfig::new(Name::new("Srv").unwrap(), "/tmp/unused");
        c.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c
    }

    fn with(f: impl FnOnce(&mut ServerConfig)) -> Result<(), ConfigError> {
        let mut c = valid();
        f(&mut c);
        c.validate()
    }

    #[test]
    fn the_defaults_are_valid_once_an_address_is_given() {
        let c = ServerConfig::new(Name::new("Srv").unwrap(), "/x");
        assert_eq!(c.validate(), Err(ConfigError::NoListenAddress));
        assert_eq!(valid().validate(), Ok(()));
        let c = valid();
        assert_eq!(
            (c.tcp_queue_bytes, c.shm_queue_bytes, c.max_message, c.max_connections, c.messages_per_poll),
            (4 << 20, 4 << 20, 1 << 20, 10_000, 16)
        );
        assert_eq!(
            (c.heartbeat_interval, c.connection_timeout, c.login_timeout),
            (1_000_000_000, 10_000_000_000, 5_000_000_000)
        );
        assert_eq!(
            (c.shm_dir.to_str(), c.shm_prefix.as_str(), c.enable_tcp, c.enable_shm),
            (Some("/dev/shm"), "tcpshm-", true, true)
        );
    }

    #[test]
    fn no_transport() {
        assert_eq!(
            with(|c| {
                c.enable_tcp = false;
                c.enable_shm = false;
            }),
            Err(ConfigError::NoTransport)
        );
        assert_eq!(with(|c| c.enable_tcp = false), Ok(()));
        assert_eq!(with(|c| c.enable_shm = false), Ok(()));
    }

    #[test]
    fn max_message_bounds() {
        assert_eq!(with(|c| c.max_message = 0), Err(ConfigError::MaxMessage(0)));
        assert_eq!(with(|c| c.max_message = (1 << 31) + 1), Err(ConfigError::MaxMessage((1 << 31) + 1)));
        assert_eq!(with(|c| c.max_message = 1), Ok(()));
    }

    #[test]
    fn queue_sizes_are_powers_of_two_holding_two_largest_frames() {
        // max 1 MiB: a frame is 1 MiB + 32 with the ring's prefix; two of them need
        // 2 MiB + 64, i.e. 4 MiB as a power of two.
        let min = 4 << 20;
        assert_eq!(
            with(|c| c.tcp_queue_bytes = 2 << 20),
            Err(ConfigError::QueueSize { which: "TCP", bytes: 2 << 20, min })
        );
        assert_eq!(
            with(|c| c.shm_queue_bytes = (4 << 20) + 8),
            Err(ConfigError::QueueSize { which: "SHM", bytes: (4 << 20) + 8, min })
        );
        // A disabled transport's queue is not checked.
        assert_eq!(
            with(|c| {
                c.enable_shm = false;
                c.shm_queue_bytes = 3;
            }),
            Ok(())
        );
        // The smallest valid queue for a small message is 256 bytes.
        assert_eq!(
            with(|c| {
                c.max_message = 8;
                c.tcp_queue_bytes = 128;
            }),
            Err(ConfigError::QueueSize { which: "TCP", bytes: 128, min: 256 })
        );
        assert_eq!(
            with(|c| {
                c.max_message = 8;
                c.tcp_queue_bytes = 256;
                c.shm_queue_bytes = 256;
            }),
            Ok(())
        );
    }

    #[test]
    fn timings() {
        assert!(matches!(with(|c| c.heartbeat_interval = 0), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.connection_timeout = 0), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.login_timeout = 0), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.connection_timeout = c.heartbeat_interval), Err(ConfigError::Timing(_))));
        assert_eq!(with(|c| c.connection_timeout = c.heartbeat_interval + 1), Ok(()));
    }

    #[test]
    fn counts_at_least_one() {
        assert_eq!(with(|c| c.max_connections = 0), Err(ConfigError::Zero("max_connections")));
        assert_eq!(with(|c| c.messages_per_poll = 0), Err(ConfigError::Zero("messages_per_poll")));
        assert_eq!(with(|c| c.messages_per_poll = 1), Ok(()));
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

    #[test]
    fn errors_read_well() {
        let e = with(|c| c.tcp_queue_bytes = 1000).unwrap_err();
        assert!(e.to_string().contains("TCP queue size 1000"), "{e}");
        assert_eq!(ConfigError::Zero("max_connections").to_string(), "max_connections must be at least 1");
    }
}
