//! For the documentation's examples only (hidden): a real server that answers every
//! request with `189.5`, and a client logged in to it over TCP, in a temporary
//! directory removed when the server is dropped.

use crate::Responder;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::{Msg, Nanos};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};

/// Answers every request with `189.5`.
#[derive(Debug)]
pub struct Prices;

impl GroupHandler for Prices {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match Responder::default().reply(conn, &msg, b"189.5") {
            Ok(true) => Handled::Pop,
            _ => Handled::Keep,
        }
    }
}

/// The documentation's server.
pub struct DocServer {
    server: Option<Server<AcceptAll, RoundRobin, Prices>>,
    dir: PathBuf,
}

impl std::fmt::Debug for DocServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocServer").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl DocServer {
    /// One poll.
    pub fn step(&mut self, now: Nanos) {
        if let Some(s) = &mut self.server {
            s.poll(now);
        }
    }

    /// Polls on a thread of its own until the returned guard is dropped.
    pub fn spawn(mut self) -> Serving {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut server = self.server.take().expect("not spawned yet");
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                server.poll(start.elapsed().as_nanos() as Nanos);
                std::thread::yield_now();
            }
        });
        Serving { stop, thread: Some(thread), _server: self }
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.server = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A [`DocServer`] polled on its own thread.
#[derive(Debug)]
pub struct Serving {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _server: DocServer,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client logged in to a [`DocServer`] (both in a fresh temporary directory named
/// after `tag`).
pub fn doc_pair(tag: &str) -> (Client, DocServer) {
    let dir = std::env::temp_dir().join(format!("tcpshm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = ServerConfig::new("Prices".parse().expect("a name"), dir.join("server"));
    cfg.listen = vec!["127.0.0.1:0".parse().expect("an address")];
    cfg.enable_shm = false;
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Prices]).expect("a server");
    let addr = server.local_addrs()[0];
    let mut client = Client::open(ClientConfig::new("doc".parse().expect("a name"), dir.join("client")), 0)
        .expect("a client session");
    // The login blocks: the server answers it from another thread meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let serving = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while !s.load(Ordering::Relaxed) {
            server.poll(start.elapsed().as_nanos() as Nanos);
            std::thread::yield_now();
        }
        server
    });
    client.connect(addr, TransportKind::Tcp, 0).expect("a login");
    stop.store(true, Ordering::Relaxed);
    let server = serving.join().expect("the server thread");
    (client, DocServer { server: Some(server), dir })
}
