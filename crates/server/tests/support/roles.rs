//! The child processes: a server role and a client role, started by re-executing the
//! test binary with `TCPSHM_E2E_ROLE` set (see [`child_main`]). Each streams its
//! numbered messages, verifies every inbound message byte for byte, and reports
//! through [`Reporter`] in the order that makes the reports crash-consistent:
//!
//! * `@R` (the durable counts) before anything else;
//! * `@D k` after verifying message `k` and BEFORE popping it; `@P` after `pop`
//!   returned;
//! * `@Q n` after the pushes of `0..n` returned (published).
//!
//! A role never returns: it runs until the parent kills it (SIGKILL) or closes its
//! stdin (then it exits 0).

use super::content::{server_target, Stream};
use super::durable::{self, Durable};
use super::records::Reporter;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;
use tcpshm_client::{Client, ClientConfig, ConnectError, LoginStatus, Transport, TransportKind};
use tcpshm_proto::{CloseReason, Msg, Name};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig, ServerError};

/// The environment variable that makes the test binary a child role.
pub const ENV_ROLE: &str = "TCPSHM_E2E_ROLE";
const ENV_TRANSPORT: &str = "TCPSHM_E2E_TRANSPORT";
const ENV_ADDR: &str = "TCPSHM_E2E_ADDR";
const ENV_DIR: &str = "TCPSHM_E2E_DIR";
const ENV_SHM_PREFIX: &str = "TCPSHM_E2E_SHM_PREFIX";
const ENV_MESSAGES: &str = "TCPSHM_E2E_MESSAGES";
const ENV_HEARTBEAT_MS: &str = "TCPSHM_E2E_HEARTBEAT_MS";
const ENV_TIMEOUT_MS: &str = "TCPSHM_E2E_TIMEOUT_MS";
const ENV_CONNECT_TIMEOUT_MS: &str = "TCPSHM_E2E_CONNECT_TIMEOUT_MS";

/// The server's name (the session's epoch: constant, so sessions persist).
pub const SERVER_NAME: &str = "E2eSrv";
/// The client's name.
pub const CLIENT_NAME: &str = "e2ecli";
/// Bytes of each TCP send queue (small, so backpressure happens).
pub const TCP_QUEUE: usize = 1 << 18;
/// Bytes of each shared-memory ring (small: many wrap-arounds, backpressure).
pub const SHM_QUEUE: usize = 1 << 16;
/// Largest message the configs allow.
pub const MAX_MESSAGE: usize = 1024;
/// How many requests are answered once `received` server messages arrived: the
/// largest `n` with `server_target(n) <= received`.
fn answered(received: u64) -> u64 {
    let mut n = received * 4 / 5;
    while server_target(n + 1) <= received {
        n += 1;
    }
    while n > 0 && server_target(n) > received {
        n -= 1;
    }
    n
}

/// A client that cannot connect for this long gives up (reports an error).
const CONNECT_GIVE_UP_NS: u64 = 30_000_000_000;

/// Which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server process.
    Server,
    /// The client process.
    Client,
    /// A server whose handler replies to each request and pops it, but ends the
    /// process at once (`exit`: no destructor runs, as after a SIGKILL) when it is
    /// handed a request whose first byte is 1: a crash at a chosen point
    /// (`tcp_reply_survives_a_crash_after_its_pop`).
    AbortServer,
}

/// Everything a role needs, passed in environment variables.
#[derive(Debug, Clone)]
pub struct RoleEnv {
    /// Which role.
    pub role: Role,
    /// The transport of the session.
    pub kind: TransportKind,
    /// The server's listen address (the client connects to it).
    pub addr: SocketAddr,
    /// Base directory: the server's store in `server/`, the client's in `client/`.
    pub dir: PathBuf,
    /// Shared-memory file prefix (unique per test run).
    pub shm_prefix: String,
    /// Client messages (the server sends `server_target(messages)`).
    pub messages: u64,
    /// Heartbeat interval.
    pub heartbeat_ms: u64,
    /// Connection timeout.
    pub timeout_ms: u64,
    /// Bound on each blocking step of the client's `connect`.
    pub connect_timeout_ms: u64,
}

impl RoleEnv {
    /// The environment variables that describe this role.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_ROLE, self.role_name().into()),
            (ENV_TRANSPORT, if self.kind == TransportKind::Tcp { "tcp" } else { "shm" }.into()),
            (ENV_ADDR, self.addr.to_string()),
            (ENV_DIR, self.dir.display().to_string()),
            (ENV_SHM_PREFIX, self.shm_prefix.clone()),
            (ENV_MESSAGES, self.messages.to_string()),
            (ENV_HEARTBEAT_MS, self.heartbeat_ms.to_string()),
            (ENV_TIMEOUT_MS, self.timeout_ms.to_string()),
            (ENV_CONNECT_TIMEOUT_MS, self.connect_timeout_ms.to_string()),
        ]
    }

    fn from_env() -> Option<RoleEnv> {
        let role = match std::env::var(ENV_ROLE).ok()?.as_str() {
            "server" => Role::Server,
            "client" => Role::Client,
            "abort-server" => Role::AbortServer,
            other => panic!("{ENV_ROLE}={other}: expected server or client"),
        };
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
        let num = |k: &str| var(k).parse::<u64>().unwrap_or_else(|e| panic!("{k}: {e}"));
        Some(RoleEnv {
            role,
            kind: if var(ENV_TRANSPORT) == "tcp" { TransportKind::Tcp } else { TransportKind::Shm },
            addr: var(ENV_ADDR).parse().expect("address"),
            dir: var(ENV_DIR).into(),
            shm_prefix: var(ENV_SHM_PREFIX),
            messages: num(ENV_MESSAGES),
            heartbeat_ms: num(ENV_HEARTBEAT_MS),
            timeout_ms: num(ENV_TIMEOUT_MS),
            connect_timeout_ms: num(ENV_CONNECT_TIMEOUT_MS),
        })
    }

    /// The role's name.
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Server => "server",
            Role::Client => "client",
            Role::AbortServer => "abort-server",
        }
    }

    /// The shared-memory file of the session.
    pub fn shm_path(&self) -> PathBuf {
        let dir = tcpshm_transport_shm::ShmDir::new("/dev/shm", &self.shm_prefix).expect("valid prefix");
        dir.path(&name(SERVER_NAME), &name(CLIENT_NAME))
    }
}

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

/// Nanoseconds since the process started (the roles' clock; the library reads none).
fn now() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// If this process is a child role, runs it (never returns); otherwise returns.
pub fn child_main() {
    let Some(env) = RoleEnv::from_env() else { return };
    // The parent holds our stdin: when it closes it (end of test) or dies, we exit.
    std::thread::spawn(|| {
        let mut b = [0u8; 64];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut b) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {}
            }
        }
    });
    match env.role {
        Role::Server => run_server(&env),
        Role::Client => run_client(&env),
        Role::AbortServer => run_abort_server(&env),
    }
}

/// Replies to each request (one byte) and pops it; ends the process on a request
/// starting with 1.
struct ReplyThenAbort;

impl GroupHandler for ReplyThenAbort {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        if msg.payload.first() == Some(&1) {
            std::process::exit(86);
        }
        match conn.alloc(1) {
            Ok(Some(buf)) => buf[0] = 0xAA,
            _ => return Handled::Keep,
        }
        conn.push(7).expect("allocated");
        Handled::Pop
    }
}

fn run_abort_server(env: &RoleEnv) -> ! {
    let mut server = Server::bind(server_config(env), AcceptAll, RoundRobin::default(), vec![ReplyThenAbort])
        .expect("abort server: bind");
    loop {
        server.poll(now());
    }
}

/// The server's handler: verifies each client message, pushes the server stream up
/// to the target for the requests handled, reports, pops.
struct Verifier {
    rep: Reporter,
    /// The next client message expected.
    next: u64,
    /// Server messages pushed (durable count at start, then counted).
    pushed: u64,
    reported_pushed: u64,
    /// The message whose `Handled::Pop` was returned and not yet reported `@P`.
    unreported_pop: Option<u64>,
    n_in: u64,
    n_out: u64,
    finished: bool,
}

impl Verifier {
    /// After `Group::poll` returned: every `Handled::Pop` of it was popped.
    fn after_poll(&mut self) {
        if let Some(k) = self.unreported_pop.take() {
            self.rep.popped(k);
        }
        if self.pushed != self.reported_pushed {
            self.rep.pushed(self.pushed);
            self.reported_pushed = self.pushed;
        }
        if !self.finished && self.next == self.n_in && self.pushed == self.n_out {
            self.rep.finished();
            self.finished = true;
        }
    }
}

impl GroupHandler for Verifier {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        let text = format!("client {} logged on from {}", conn.client(), conn.peer());
        self.rep.text('C', &text);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let k = self.next;
        if k >= self.n_in {
            self.rep.fail(&format!("server: a client message beyond the stream's {} arrived", self.n_in));
        }
        if let Err(e) = Stream::CLIENT.check(k, msg.msg_type, msg.payload) {
            self.rep.fail(&format!("server: {e}"));
        }
        // The replies to this request are pushed before it is popped: a crash in
        // between redelivers the request, and `pushed` (durable) says they exist.
        let target = server_target(k + 1);
        while self.pushed < target {
            let j = self.pushed;
            match conn.alloc(Stream::SERVER.len(j)) {
                Ok(Some(buf)) => Stream::SERVER.fill(j, buf),
                Ok(None) => return Handled::Keep, // full: offered again later
                Err(e) => self.rep.fail(&format!("server: alloc of message {j}: {e}")),
            }
            if let Err(e) = conn.push(Stream::SERVER.msg_type(j)) {
                self.rep.fail(&format!("server: push of message {j}: {e}"));
            }
            self.pushed += 1;
        }
        self.rep.delivered(k);
        self.next = k + 1;
        self.unreported_pop = Some(k);
        Handled::Pop
    }

    fn on_disconnected(&mut self, client: &Name, reason: &CloseReason) {
        self.rep.text('X', &format!("client {client}: {reason}"));
    }
}

/// The server's configuration for `env`.
pub fn server_config(env: &RoleEnv) -> ServerConfig {
    let mut cfg = ServerConfig::new(name(SERVER_NAME), env.dir.join("server"));
    cfg.listen = vec![env.addr];
    cfg.shm_prefix = env.shm_prefix.clone();
    cfg.tcp_queue_bytes = TCP_QUEUE;
    cfg.shm_queue_bytes = SHM_QUEUE;
    cfg.max_message = MAX_MESSAGE;
    cfg.heartbeat_interval = env.heartbeat_ms * 1_000_000;
    cfg.connection_timeout = env.timeout_ms * 1_000_000;
    cfg.login_timeout = 2_000_000_000;
    cfg.enable_tcp = true;
    cfg.enable_shm = env.kind == TransportKind::Shm;
    cfg
}

/// The client's configuration for `env`.
pub fn client_config(env: &RoleEnv) -> ClientConfig {
    let mut cfg = ClientConfig::new(name(CLIENT_NAME), env.dir.join("client"));
    cfg.shm_prefix = env.shm_prefix.clone();
    cfg.queue_bytes = TCP_QUEUE;
    cfg.max_message = MAX_MESSAGE;
    cfg.heartbeat_interval = env.heartbeat_ms * 1_000_000;
    cfg.connection_timeout = env.timeout_ms * 1_000_000;
    cfg.connect_timeout = std::time::Duration::from_millis(env.connect_timeout_ms);
    cfg.transport = env.kind;
    cfg
}

fn run_server(env: &RoleEnv) -> ! {
    let mut rep = Reporter::stdout();
    let cfg = server_config(env);
    let durable = match env.kind {
        TransportKind::Tcp => durable::tcp_store(&cfg.storage_dir, name(SERVER_NAME), name(CLIENT_NAME), TCP_QUEUE),
        TransportKind::Shm => durable::shm(&env.shm_path(), true),
    };
    let Durable { consumed, pushed } = durable.unwrap_or_else(|e| rep.fail(&format!("server: {e}")));
    rep.resume(consumed, pushed);
    let n_in = env.messages;
    let verifier = || Verifier {
        rep: Reporter::stdout(),
        next: consumed,
        pushed,
        reported_pushed: pushed,
        unreported_pop: None,
        n_in,
        n_out: server_target(n_in),
        finished: false,
    };
    // The port of the killed server may still be held for a moment (a client's
    // connect caught in the middle): retry the bind.
    let t0 = now();
    let mut server = loop {
        match Server::bind(cfg.clone(), AcceptAll, RoundRobin::default(), vec![verifier()]) {
            Ok(s) => break s,
            Err(ServerError::Bind { .. }) if now() - t0 < 10_000_000_000 => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => rep.fail(&format!("server: cannot start: {e}")),
        }
    };
    loop {
        server.poll(now());
        server.groups()[0].handler().after_poll();
    }
}

/// Whether a failed connect is worth another try (the server is down, restarting,
/// or has not yet noticed that our previous process died) or a real failure.
fn retryable(e: &ConnectError) -> bool {
    match e {
        ConnectError::Io { .. } | ConnectError::Protocol(_) | ConnectError::Shm(_) => true,
        ConnectError::Refused { status, .. } => *status == LoginStatus::AlreadyLoggedIn,
        ConnectError::SeqMismatch(_) | ConnectError::Storage(_) => false,
    }
}

fn run_client(env: &RoleEnv) -> ! {
    let mut rep = Reporter::stdout();
    let mut client =
        Client::open(client_config(env), now()).unwrap_or_else(|e| rep.fail(&format!("client: cannot open: {e}")));
    let durable = match env.kind {
        TransportKind::Tcp => {
            let s = client.tcp().store();
            Ok(Durable { consumed: s.consumed(), pushed: s.next_seq() })
        }
        TransportKind::Shm => durable::shm(&env.shm_path(), false),
    };
    let Durable { consumed, pushed: pushed0 } = durable.unwrap_or_else(|e| rep.fail(&format!("client: {e}")));
    rep.resume(consumed, pushed0);
    let (n_out, n_in) = (env.messages, server_target(env.messages));
    let (mut next, mut pushed, mut reported_pushed) = (consumed, pushed0, pushed0);
    let (mut up, mut finished) = (false, false);
    let (mut next_attempt, mut last_up) = (0u64, now());
    let mut last_error = String::new();
    let window = match (env.kind, std::env::var("TCPSHM_E2E_WINDOW").ok().and_then(|v| v.parse::<u64>().ok())) {
        (_, Some(0)) | (_, None) => None,
        (_, Some(w)) => Some(w),
    };
    loop {
        let t = now();
        if !up && t >= next_attempt {
            match client.connect(env.addr, env.kind, t) {
                Ok(c) => {
                    up = true;
                    last_error.clear();
                    rep.text('C', &format!("{:?} to {}, {} to resend", c.transport, c.server, c.to_resend));
                }
                Err(e) if retryable(&e) => {
                    let text = e.to_string();
                    if text != last_error {
                        rep.text('W', &text);
                        last_error = text;
                    }
                    if t - last_up > CONNECT_GIVE_UP_NS {
                        rep.fail(&format!("client: no connection for 30 s; last error: {e}"));
                    }
                    next_attempt = t + 5_000_000;
                }
                Err(e) => rep.fail(&format!("client: connect: {e}")),
            }
        }
        if up {
            last_up = t;
        }
        // Pushes go to the persistent queue whether connected or not. A shared-memory
        // client that never had a session has no rings to queue into (the server
        // creates them at the first login; `alloc` says so): it waits for that login.
        let can_push = env.kind == TransportKind::Tcp || client.shm().is_some();
        let limit = match window {
            Some(w) => n_out.min(answered(next) + w),
            None => n_out,
        };
        if pushed < limit && can_push {
            let mut batch = 0;
            while pushed < limit && batch < 64 {
                match client.alloc(Stream::CLIENT.len(pushed)) {
                    Ok(Some(buf)) => Stream::CLIENT.fill(pushed, buf),
                    Ok(None) => break,
                    Err(e) => rep.fail(&format!("client: alloc of message {pushed}: {e}")),
                }
                if let Err(e) = client.push_more(Stream::CLIENT.msg_type(pushed)) {
                    rep.fail(&format!("client: push of message {pushed}: {e}"));
                }
                pushed += 1;
                batch += 1;
            }
        }
        // `poll` publishes what `push_more` staged (and sends it when connected).
        client.poll(t);
        if pushed != reported_pushed {
            rep.pushed(pushed);
            reported_pushed = pushed;
        }
        let mut got = 0;
        while let Some(m) = client.front() {
            if next >= n_in {
                rep.fail(&format!("client: a server message beyond the stream's {n_in} arrived"));
            }
            if let Err(e) = Stream::SERVER.check(next, m.msg_type, m.payload) {
                rep.fail(&format!("client: {e}"));
            }
            rep.delivered(next);
            client.pop();
            next += 1;
            got += 1;
        }
        if got > 0 {
            rep.popped(next - 1);
        }
        if up && !client.is_connected() {
            up = false;
            let reason = client.close_reason().map(|r| r.to_string()).unwrap_or_default();
            rep.text('X', &reason);
            next_attempt = t;
        }
        if !finished && next == n_in && pushed == n_out {
            rep.finished();
            finished = true;
        }
    }
}
