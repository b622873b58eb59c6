//! Client configuration with documented defaults, validated when the client opens.

use std::path::PathBuf;
use std::time::Duration;
use tcpshm_connection::ConnectionConfig;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::session::ConfigError;
use tcpshm_proto::Name;

/// Everything a client needs to know, with documented defaults ([`ClientConfig::new`]).
///
/// ```
/// use tcpshm_client::ClientConfig;
/// let mut cfg = ClientConfig::new("trader-1".parse().unwrap(), "/var/lib/myapp/client");
/// cfg.connection.session.max_message = 64 * 1024;
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
    /// The session's rules, queue, durability, stream and shared-memory settings
    /// (the same type as the server's; see [`ConnectionConfig`]).
    pub connection: ConnectionConfig,
    /// Bound on each blocking step of `connect` (TCP connect, login write, reply
    /// read). Default 5 s. (The kernel enforces it through socket timeouts: the
    /// library reads no clock.)
    pub connect_timeout: Duration,
    /// Opaque bytes for the server's login handler (at most 256).
    pub credential: Vec<u8>,
    /// How this client carries its messages until a login says otherwise: messages
    /// pushed before the first `connect` of a process go into the rings of the last
    /// shared-memory session if this is [`TransportKind::Shm`] (and there are any),
    /// else into the store. Either way they leave with the next login, whatever its
    /// transport. Default TCP.
    pub transport: TransportKind,
}

impl ClientConfig {
    /// A configuration with the defaults above.
    pub fn new(name: Name, storage_dir: impl Into<PathBuf>) -> ClientConfig {
        ClientConfig {
            name,
            service: Name::new("server").expect("valid name"),
            storage_dir: storage_dir.into(),
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(5),
            credential: Vec::new(),
            transport: TransportKind::Tcp,
        }
    }

    /// Checks the configuration.
    ///
    /// ```
    /// use tcpshm_client::ClientConfig;
    /// use tcpshm_proto::session::ConfigError;
    /// let mut cfg = ClientConfig::new("c".parse().unwrap(), "/tmp/c");
    /// cfg.connection.queue_bytes = 1000;
    /// assert!(matches!(cfg.validate(), Err(ConfigError::QueueSize { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate()?;
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::Timing("connect timeout must be > 0"));
        }
        if self.credential.len() > tcpshm_proto::login::MAX_CREDENTIAL_LEN {
            return Err(ConfigError::Credential(self.credential.len()));
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
        assert_eq!((c.connect_timeout, c.transport), (Duration::from_secs(5), TransportKind::Tcp));
        assert!(c.credential.is_empty());
    }

    #[test]
    fn connect_timeout_and_credential() {
        assert!(matches!(with(|c| c.connect_timeout = Duration::ZERO), Err(ConfigError::Timing(_))));
        assert_eq!(with(|c| c.connect_timeout = Duration::from_nanos(1)), Ok(()));
        assert_eq!(with(|c| c.credential = vec![0; 256]), Ok(()));
        assert_eq!(with(|c| c.credential = vec![0; 257]), Err(ConfigError::Credential(257)));
    }

    #[test]
    fn the_connection_is_validated() {
        assert!(matches!(with(|c| c.connection.queue_bytes = 3), Err(ConfigError::QueueSize { .. })));
        assert!(matches!(with(|c| c.connection.shm.prefix = "a/b".into()), Err(ConfigError::ShmPrefix(_))));
    }
}
