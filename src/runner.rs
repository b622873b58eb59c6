//! Running a server on threads the library starts, for programs that do not need to
//! own them: [`run`] gives the control part and each group a thread of its own, each
//! polling with [`clock::now`], and returns a handle that stops
//! and joins them.
//!
//! **Why this does not break "no internal threads".** The layer crates
//! (`tcpshm-server`, `tcpshm-client`, ...) never start a thread: their types are
//! polled by threads the application owns, which is what a latency-critical program
//! wants (it pins them, chooses their priorities, mixes their work with its own).
//! This module is a separate, opt-in convenience in the facade, written only with the
//! servers' public API — [`Server::split`], [`Control::poll`], [`Group::poll`] — the
//! same few lines every program wrote around them. Nothing in the library depends on
//! it; a program that owns its threads never calls it.
//!
//! ```
//! use tcpshm::prelude::*;
//! use tcpshm::runner::{self, Idle, RunConfig};
//!
//! struct Echo;
//! impl GroupHandler for Echo {
//!     fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
//!         let Ok(Some(buf)) = conn.alloc(msg.payload.len()) else { return Handled::Keep };
//!         buf.copy_from_slice(msg.payload);
//!         conn.push(msg.msg_type).unwrap();
//!         Handled::Pop
//!     }
//! }
//!
//! # let dir = std::env::temp_dir().join(format!("tcpshm-runner-doc-{}", std::process::id()));
//! let mut cfg = ServerConfig::new("Srv".parse().unwrap(), &dir);
//! cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
//! let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo, Echo]).unwrap();
//! let running = runner::run(server, RunConfig { idle: Idle::Yield }).unwrap();
//! let addr = running.local_addrs()[0];
//! // ... clients connect to `addr` ...
//! # let _ = addr;
//! let stopper = running.stop_handle(); // for a signal handler or another thread
//! stopper.stop();
//! let (_control, groups) = running.join().unwrap(); // the handlers come back
//! assert_eq!(groups.len(), 2);
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use crate::clock;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tcpshm_server::{Control, Group, GroupHandler, LoginHandler, Server, ShardPolicy};

/// What [`Running::join`] gives back: the control part and the groups, with their
/// handlers.
pub type Parts<L, P, H> = (Control<L, P>, Vec<Group<H>>);

/// What a thread does between two polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Poll again at once (a spin-loop hint): the lowest latency, one cpu per thread.
    Spin,
    /// Yield the cpu to other threads between polls.
    Yield,
    /// Sleep this long between polls: little cpu, latency up to the sleep.
    Sleep(Duration),
}

/// How [`run`] runs the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunConfig {
    /// Between polls. Default [`Idle::Spin`].
    pub idle: Idle,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { idle: Idle::Spin }
    }
}

/// Why a run ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A thread could not be started.
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread panicked (a handler's panic: the library does not panic on input).
    #[error("thread {name} panicked")]
    Panicked {
        /// The thread's name.
        name: String,
    },
}

/// Stops a [`Running`] server from anywhere (`Send + Sync + Clone`).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks every thread to stop after its current poll.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether a stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A server running on its own threads: `tcpshm-control` and `tcpshm-group-<n>`.
/// [`join`](Self::join) stops them and gives the parts back; dropping it stops and
/// joins too.
pub struct Running<L, P, H> {
    stop: StopHandle,
    addrs: Vec<SocketAddr>,
    control: Option<JoinHandle<Control<L, P>>>,
    groups: Vec<JoinHandle<Group<H>>>,
}

impl<L, P, H> std::fmt::Debug for Running<L, P, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addrs", &self.addrs).field("groups", &self.groups.len()).finish()
    }
}

fn idle(how: Idle) {
    match how {
        Idle::Spin => std::hint::spin_loop(),
        Idle::Yield => std::thread::yield_now(),
        Idle::Sleep(d) => std::thread::sleep(d),
    }
}

fn spawn<T: Send + 'static>(
    name: String,
    stop: &StopHandle,
    how: Idle,
    mut part: T,
    poll: fn(&mut T, u64),
) -> Result<JoinHandle<T>, RunError> {
    let stop = stop.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            while !stop.is_stopped() {
                poll(&mut part, clock::now());
                idle(how);
            }
            part
        })
        .map_err(|source| RunError::Spawn { name, source })
}

/// Splits `server` and polls its control part and each group on a thread of its own
/// until stopped.
pub fn run<L, P, H>(server: Server<L, P, H>, cfg: RunConfig) -> Result<Running<L, P, H>, RunError>
where
    L: LoginHandler + 'static,
    P: ShardPolicy + 'static,
    H: GroupHandler + 'static,
{
    let addrs = server.local_addrs();
    let (control, groups) = server.split();
    let stop = StopHandle(Arc::new(AtomicBool::new(false)));
    let mut running = Running { stop: stop.clone(), addrs, control: None, groups: Vec::new() };
    for (n, g) in groups.into_iter().enumerate() {
        // On an error, dropping `running` stops and joins the threads already started.
        running.groups.push(spawn(format!("tcpshm-group-{n}"), &stop, cfg.idle, g, |g, now| g.poll(now))?);
    }
    running.control = Some(spawn("tcpshm-control".into(), &stop, cfg.idle, control, |c, now| c.poll(now))?);
    Ok(running)
}

impl<L, P, H> Running<L, P, H> {
    /// The addresses the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A handle that stops the threads from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the threads (after their current poll), waits for them, and gives the
    /// control part and the groups (with their handlers) back.
    pub fn join(mut self) -> Result<Parts<L, P, H>, RunError> {
        self.stop.stop();
        let mut groups = Vec::new();
        let mut failed = None;
        for h in std::mem::take(&mut self.groups) {
            match join(h) {
                Ok(g) => groups.push(g),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        let control = self.control.take().map(join);
        if let Some(e) = failed {
            return Err(e);
        }
        match control {
            Some(Ok(c)) => Ok((c, groups)),
            Some(Err(e)) => Err(e),
            None => unreachable!("a Running always has its control thread"),
        }
    }
}

/// Joins a thread, naming it if it panicked.
fn join<T>(h: JoinHandle<T>) -> Result<T, RunError> {
    let name = h.thread().name().unwrap_or("tcpshm").to_string();
    h.join().map_err(|_| RunError::Panicked { name })
}

impl<L, P, H> Drop for Running<L, P, H> {
    fn drop(&mut self) {
        self.stop.stop();
        for h in self.groups.drain(..) {
            let _ = h.join();
        }
        if let Some(h) = self.control.take() {
            let _ = h.join();
        }
    }
}
