//! Server configuration with documented defaults, validated when the server is built.

use std::net::SocketAddr;
use std::path::PathBuf;
use tcpshm_connection::ConnectionConfig;
use tcpshm_proto::session::ConfigError;
use tcpshm_proto::{Name, Nanos};

/// Everything a server needs to know, with documented defaults ([`ServerConfig::new`]).
///
/// ```
/// use tcpshm_server::ServerConfig;
/// let mut cfg = ServerConfig::new("Server20180714".parse().unwrap(), "/var/lib/myapp");
/// cfg.listen = vec!["127.0.0.1:12345".parse().unwrap()];
/// cfg.connection.session.max_message = 64 * 1024;
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This server's name. A new name starts fresh sessions with every client (their
    /// old queues are dropped on their side): the "renamed per trading day" rule.
    pub name: Name,
    /// Addresses to listen on (IPv4 and/or IPv6). Default: none (must be set).
    pub listen: Vec<SocketAddr>,
    /// Directory of the persistent per-client session stores. Created (0700) if
    /// missing; files in it are 0600.
    pub storage_dir: PathBuf,
    /// Every session's rules, queue, durability, stream and shared-memory settings
    /// (the same type as the client's; see [`ConnectionConfig`]). The largest message
    /// (`connection.session.max_message`, default 1 MiB; the C++ reference stopped at
    /// 64 KiB) is told to clients at login.
    pub connection: ConnectionConfig,
    /// Most connections (logged in or not) at once. Default 10,000.
    pub max_connections: usize,
    /// Drop a connection that has not completed its login within this. Default 5 s.
    pub login_timeout: Nanos,
    /// Accept TCP sessions. Default true.
    pub enable_tcp: bool,
    /// Accept shared-memory sessions. Default true.
    pub enable_shm: bool,
    /// Messages handed to the handler per connection per poll, so one busy connection
    /// cannot hold a group's thread. Default 256.
    pub messages_per_poll: usize,
    /// How often the readiness of sockets is checked where nothing needs it at every
    /// poll: the control part's listeners and pending logins; and the control streams
    /// of a group whose connections are all shared memory, at the longer of this and
    /// `connection.check_interval` (each session reads its control stream at that
    /// period anyway). A group with live TCP connections checks at every poll (it is
    /// their latency). Default 20 µs.
    pub readiness_interval: Nanos,
}

impl ServerConfig {
    /// A configuration with the defaults above.
    pub fn new(name: Name, storage_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            name,
            listen: Vec::new(),
            storage_dir: storage_dir.into(),
            connection: ConnectionConfig::default(),
            max_connections: 10_000,
            login_timeout: 5_000_000_000,
            enable_tcp: true,
            enable_shm: true,
            messages_per_poll: 256,
            readiness_interval: 20_000,
        }
    }

    /// Checks the configuration; the server refuses to start with an invalid one.
    ///
    /// ```
    /// use tcpshm_server::ServerConfig;
    /// use tcpshm_proto::session::ConfigError;
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
        self.connection.validate()?;
        if self.login_timeout == 0 {
            return Err(ConfigError::Timing("the login timeout must be more than 0"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("max_connections"));
        }
        if self.messages_per_poll == 0 {
            return Err(ConfigError::Zero("messages_per_poll"));
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
            (c.max_connections, c.messages_per_poll, c.login_timeout, c.readiness_interval),
            (10_000, 256, 5_000_000_000, 20_000)
        );
        assert!(c.enable_tcp && c.enable_shm);
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
    fn counts_and_timings() {
        assert_eq!(with(|c| c.max_connections = 0), Err(ConfigError::Zero("max_connections")));
        assert_eq!(with(|c| c.messages_per_poll = 0), Err(ConfigError::Zero("messages_per_poll")));
        assert!(matches!(with(|c| c.login_timeout = 0), Err(ConfigError::Timing(_))));
        assert!(matches!(with(|c| c.connection.queue_bytes = 3), Err(ConfigError::QueueSize { .. })));
    }

    #[test]
    fn errors_read_well() {
        let e = with(|c| c.connection.queue_bytes = 1000).unwrap_err();
        assert!(e.to_string().contains("send queue of 1000 bytes"), "{e}");
        assert_eq!(ConfigError::Zero("max_connections").to_string(), "max_connections must be at least 1");
    }
}
