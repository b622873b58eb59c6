//! Building a server: bind, then split into a control part and groups, or poll
//! everything from one thread.

use crate::config::ServerConfig;
use crate::control::{Control, GroupLink};
use crate::group::Group;
use crate::handler::{GroupHandler, LoginHandler};
use crate::policy::ShardPolicy;
use crate::slot::Counts;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tcpshm_proto::session::ConfigError;
use tcpshm_proto::Nanos;
use tcpshm_ring::spsc;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("invalid server configuration: {0}")]
    Config(#[from] ConfigError),
    /// No group handler was given.
    #[error("a server needs at least one group (one handler per group)")]
    NoGroups,
    /// Binding a listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating the storage directory or a poller failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Capacity of each group's login queue (logins in flight from control to a group).
const HANDOFF_QUEUE: usize = 1024;

/// A bound server: its control part and its groups. Poll it whole from one thread
/// with [`Server::poll`], or [`split`](Server::split) it and give each group its own
/// thread.
///
/// ```no_run
/// use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};
/// use tcpshm_proto::Msg;
///
/// struct Echo;
/// impl GroupHandler for Echo {
///     fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
///         let Ok(Some(buf)) = conn.alloc(msg.payload.len()) else { return Handled::Keep };
///         buf.copy_from_slice(msg.payload);
///         conn.push(msg.msg_type).unwrap();
///         Handled::Pop
///     }
/// }
///
/// let mut cfg = ServerConfig::new("Server1".parse().unwrap(), "/tmp/tcpshm-server");
/// cfg.listen = vec!["127.0.0.1:12345".parse().unwrap()];
/// let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo, Echo]).unwrap();
/// let (mut control, groups) = server.split();
/// let threads: Vec<_> = groups
///     .into_iter()
///     .map(|mut g| std::thread::spawn(move || loop { g.poll(now_ns()) }))
///     .collect();
/// loop { control.poll(now_ns()) }
/// # fn now_ns() -> u64 { 0 }
/// ```
pub struct Server<L, P, H> {
    control: Control<L, P>,
    groups: Vec<Group<H>>,
}

impl<L: LoginHandler, P: ShardPolicy, H: GroupHandler> Server<L, P, H> {
    /// Validates `cfg`, creates the storage directory, binds every listen address,
    /// and builds one group per handler.
    pub fn bind(cfg: ServerConfig, login: L, policy: P, handlers: Vec<H>) -> Result<Self, ServerError> {
        cfg.validate()?;
        if handlers.is_empty() {
            return Err(ServerError::NoGroups);
        }
        create_private_dir(&cfg.storage_dir)
            .map_err(|source| ServerError::Io { what: "cannot create the storage directory", source })?;
        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            let l = tcpshm_transport_tcp::tcp::listen(*addr, 1024)
                .map_err(|source| ServerError::Bind { addr: *addr, source })?;
            listeners.push(l);
        }
        let cfg = Arc::new(cfg);
        let counts = Arc::new(Counts::default());
        let mut links = Vec::new();
        let mut groups = Vec::new();
        for (id, handler) in handlers.into_iter().enumerate() {
            let (outbox, inbox) = spsc::channel(HANDOFF_QUEUE);
            let load = Arc::new(AtomicUsize::new(0));
            links.push(GroupLink { outbox, load: load.clone() });
            let g = Group::new(id, cfg.clone(), handler, inbox, load, counts.clone())
                .map_err(|source| ServerError::Io { what: "cannot create a group's poller", source })?;
            groups.push(g);
        }
        let control = Control::new(cfg, listeners, links, counts, login, policy)
            .map_err(|source| ServerError::Io { what: "cannot create the control poller", source })?;
        Ok(Server { control, groups })
    }

    /// The control part and the groups, each to be polled by one thread.
    pub fn split(self) -> (Control<L, P>, Vec<Group<H>>) {
        (self.control, self.groups)
    }

    /// Polls the control part (its readiness at most once per
    /// [`readiness_interval`](ServerConfig::readiness_interval)) and every group, from
    /// this one thread.
    pub fn poll(&mut self, now: Nanos) {
        self.control.poll(now);
        for g in &mut self.groups {
            g.poll(now);
        }
    }

    /// The control part.
    pub fn control(&mut self) -> &mut Control<L, P> {
        &mut self.control
    }

    /// The groups.
    pub fn groups(&mut self) -> &mut [Group<H>] {
        &mut self.groups
    }

    /// The addresses the server listens on.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.control.local_addrs()
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
