//! The child processes: server and client roles, started by re-executing the test
//! binary with the role in `TCPSHM_TEST_ROLE` (see [`child_main`]). The streaming
//! roles send their numbered messages, verify every inbound message byte for byte,
//! and report through [`Reporter`] in the order that makes the reports
//! crash-consistent:
//!
//! * `@R` (the persisted commit points, as the session resumes them) before anything
//!   else;
//! * `@D k` after verifying message `k` and BEFORE popping it; `@P` after `pop`
//!   returned;
//! * `@Q n` after the pushes of `0..n` returned and were published.
//!
//! A role runs until the parent kills it (SIGKILL) or closes its stdin (then it
//! exits 0). The roles have no workarounds: they use the API the way its docs say.

use super::content::{server_target, Stream};
use super::records::Reporter;
use std::net::SocketAddr;
use std::path::PathBuf;
use tcpshm_client::{Client, ClientConfig, ConnectError, LoginStatus, Transport, TransportKind};
use tcpshm_connection::Connection;
use tcpshm_proto::{CloseReason, Msg, Name};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig, ServerError};
use tcpshm_test_support::{child, now};

const ENV_TRANSPORT: &str = "TCPSHM_E2E_TRANSPORT";
const ENV_ADDR: &str = "TCPSHM_E2E_ADDR";
const ENV_DIR: &str = "TCPSHM_E2E_DIR";
const ENV_SHM_PREFIX: &str = "TCPSHM_E2E_SHM_PREFIX";
const ENV_MESSAGES: &str = "TCPSHM_E2E_MESSAGES";
const ENV_HEARTBEAT_MS: &str = "TCPSHM_E2E_HEARTBEAT_MS";
const ENV_TIMEOUT_MS: &str = "TCPSHM_E2E_TIMEOUT_MS";
const ENV_CONNECT_TIMEOUT_MS: &str = "TCPSHM_E2E_CONNECT_TIMEOUT_MS";
const ENV_CLIENT_DIR: &str = "TCPSHM_E2E_CLIENT_DIR";
const ENV_LIMIT: &str = "TCPSHM_E2E_LIMIT";

/// The server's name (the session's epoch: constant, so sessions persist).
pub const SERVER_NAME: &str = "E2eSrv";
/// The client's name.
pub const CLIENT_NAME: &str = "e2ecli";
/// Bytes of each send queue (store): small, so backpressure happens.
pub const QUEUE: usize = 1 << 18;
/// Bytes of each shared-memory ring: small, many wrap-arounds, backpressure.
pub const RING: usize = 1 << 16;
/// Largest message the configurations allow.
pub const MAX_MESSAGE: u32 = 1024;

/// A client that cannot connect for this long gives up (reports an error): far
/// beyond any restart, so only a hang reaches it.
const CONNECT_GIVE_UP_NS: u64 = 120_000_000_000;

/// Which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The streaming server process.
    Server,
    /// The streaming client process.
    Client,
    /// A server whose handler replies to each request and pops it, but ends the
    /// process at once (`exit`: no destructor runs, as after a SIGKILL) when it is
    /// handed a request whose first byte is 1: a crash at a chosen point.
    AbortServer,
    /// A server that echoes, and reports logons (`@C`) and disconnects (`@X`).
    EchoServer,
    /// A client that opens its session, reports `@R`, logs in once and reports the
    /// outcome (`@L ok ...`, or `@L err <kind>: <error>`), then ends.
    LoginOnce,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::AbortServer => "abort-server",
            Role::EchoServer => "echo-server",
            Role::LoginOnce => "login-once",
        }
    }

    fn from_name(s: &str) -> Role {
        [Role::Server, Role::Client, Role::AbortServer, Role::EchoServer, Role::LoginOnce]
            .into_iter()
            .find(|r| r.name() == s)
            .unwrap_or_else(|| panic!("unknown role {s}"))
    }
}

/// Everything a role needs, passed in environment variables.
#[derive(Debug, Clone)]
pub struct RoleEnv {
    /// Which role.
    pub role: Role,
    /// The transport of the client's logins (the server accepts both).
    pub kind: TransportKind,
    /// The server's listen address (the client connects to it).
    pub addr: SocketAddr,
    /// Base directory: the server's store in `server/`, the client's in `client/`
    /// (unless `client_dir` says otherwise).
    pub dir: PathBuf,
    /// The client's store directory, if not `dir/client`.
    pub client_dir: Option<PathBuf>,
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
    /// The client pushes messages `0..limit` only (`None`: all); the parent raises
    /// the limit with a line `limit N` on the client's stdin. This is how a test
    /// knows the stream is still running when it acts (a kill, a network cut),
    /// whatever the speed of the machine.
    pub limit: Option<u64>,
}

impl RoleEnv {
    /// The environment variables that describe this role.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (ENV_TRANSPORT, self.kind.to_string()),
            (ENV_ADDR, self.addr.to_string()),
            (ENV_DIR, self.dir.display().to_string()),
            (ENV_SHM_PREFIX, self.shm_prefix.clone()),
            (ENV_MESSAGES, self.messages.to_string()),
            (ENV_HEARTBEAT_MS, self.heartbeat_ms.to_string()),
            (ENV_TIMEOUT_MS, self.timeout_ms.to_string()),
            (ENV_CONNECT_TIMEOUT_MS, self.connect_timeout_ms.to_string()),
        ];
        if let Some(d) = &self.client_dir {
            v.push((ENV_CLIENT_DIR, d.display().to_string()));
        }
        if let Some(l) = self.limit {
            v.push((ENV_LIMIT, l.to_string()));
        }
        v
    }

    fn from_env() -> Option<RoleEnv> {
        let role = Role::from_name(&child::role()?);
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
        let num = |k: &str| var(k).parse::<u64>().unwrap_or_else(|e| panic!("{k}: {e}"));
        Some(RoleEnv {
            role,
            kind: if var(ENV_TRANSPORT) == "tcp" { TransportKind::Tcp } else { TransportKind::Shm },
            addr: var(ENV_ADDR).parse().expect("address"),
            dir: var(ENV_DIR).into(),
            client_dir: std::env::var(ENV_CLIENT_DIR).ok().map(PathBuf::from),
            shm_prefix: var(ENV_SHM_PREFIX),
            messages: num(ENV_MESSAGES),
            heartbeat_ms: num(ENV_HEARTBEAT_MS),
            timeout_ms: num(ENV_TIMEOUT_MS),
            connect_timeout_ms: num(ENV_CONNECT_TIMEOUT_MS),
            limit: std::env::var(ENV_LIMIT).ok().map(|l| l.parse().expect("limit")),
        })
    }

    /// The role's name.
    pub fn role_name(&self) -> &'static str {
        self.role.name()
    }
}

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

/// If this process is a child role, runs it (it never returns, or ends the process);
/// otherwise returns.
pub fn child_main() {
    let Some(env) = RoleEnv::from_env() else { return };
    // The parent holds our stdin: when it closes it (end of test) or dies, we exit.
    if env.role != Role::Client {
        child::exit_when_stdin_closes();
    }
    match env.role {
        Role::Server => run_server(&env),
        Role::Client => run_client(&env),
        Role::AbortServer => run_abort_server(&env),
        Role::EchoServer => run_echo_server(&env),
        Role::LoginOnce => run_login_once(&env),
    }
}

/// The server's configuration for `env`: both transports.
pub fn server_config(env: &RoleEnv) -> ServerConfig {
    let mut cfg = ServerConfig::new(name(SERVER_NAME), env.dir.join("server"));
    cfg.listen = vec![env.addr];
    cfg.connection.shm.prefix = env.shm_prefix.clone();
    // The counters file of a killed server stays: in the test's directory, its
    // cleanup removes it (and the test's shared-memory files stay the sessions' only).
    cfg.stats.dir = env.dir.clone();
    cfg.connection.queue_bytes = QUEUE;
    cfg.connection.shm.ring_bytes = RING;
    cfg.connection.session.max_message = MAX_MESSAGE;
    cfg.connection.session.liveness.heartbeat_interval = env.heartbeat_ms * 1_000_000;
    cfg.connection.session.liveness.timeout = env.timeout_ms * 1_000_000;
    cfg.login_timeout = 2_000_000_000;
    cfg
}

/// The client's configuration for `env` (pushes before a login go where `env.kind`
/// says: into the last shared-memory session's rings for SHM).
pub fn client_config(env: &RoleEnv) -> ClientConfig {
    let dir = env.client_dir.clone().unwrap_or_else(|| env.dir.join("client"));
    let mut cfg = ClientConfig::new(name(CLIENT_NAME), dir);
    cfg.connection.shm.prefix = env.shm_prefix.clone();
    cfg.connection.queue_bytes = QUEUE;
    cfg.connection.shm.ring_bytes = RING;
    cfg.connection.session.max_message = MAX_MESSAGE;
    cfg.connection.session.liveness.heartbeat_interval = env.heartbeat_ms * 1_000_000;
    cfg.connection.session.liveness.timeout = env.timeout_ms * 1_000_000;
    cfg.connect_timeout = std::time::Duration::from_millis(env.connect_timeout_ms);
    cfg.transport = env.kind;
    cfg
}

/// The server side's persisted commit points of the session with our client, as the
/// session resumes them: (consumed, next seq). Opened and closed again before the
/// server opens it (it is locked while open).
pub fn server_commit_points(cfg: &ServerConfig) -> Result<(u64, u64), String> {
    let conn: Connection = Connection::open_session(
        &cfg.storage_dir,
        cfg.name,
        name(CLIENT_NAME),
        tcpshm_transport_shm::Side::Server,
        TransportKind::Tcp,
        cfg.connection.clone(),
        0,
    )
    .map_err(|e| format!("cannot open the server's session: {e}"))?;
    let c = conn.counters();
    Ok((c.consumed, c.next_seq))
}

/// Binds the server, retrying while the killed one's port is still held.
fn bind<H: GroupHandler>(
    rep: &mut Reporter,
    cfg: &ServerConfig,
    handler: impl Fn() -> H,
) -> Server<AcceptAll, RoundRobin, H> {
    let t0 = now();
    loop {
        match Server::bind(cfg.clone(), AcceptAll, RoundRobin::default(), vec![handler()]) {
            Ok(s) => return s,
            Err(ServerError::Bind { .. }) if now() - t0 < CONNECT_GIVE_UP_NS => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => rep.fail(&format!("server: cannot start: {e}")),
        }
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
    let mut rep = Reporter::stdout();
    let mut server = bind(&mut rep, &server_config(env), || ReplyThenAbort);
    rep.text('S', "listening");
    loop {
        server.poll(now());
    }
}

/// Echoes, and reports logons and disconnects.
struct EchoReporting {
    rep: Reporter,
}

impl GroupHandler for EchoReporting {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        self.rep.text('C', &format!("client {} logged on", conn.client()));
    }
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match conn.alloc(msg.payload.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg.payload);
                conn.push(msg.msg_type).expect("allocated");
                Handled::Pop
            }
            Ok(None) => Handled::Keep,
            Err(e) => self.rep.fail(&format!("echo server: alloc: {e}")),
        }
    }
    fn on_disconnected(&mut self, client: &Name, reason: &CloseReason) {
        self.rep.text('X', &format!("client {client}: {reason}"));
    }
}

fn run_echo_server(env: &RoleEnv) -> ! {
    let mut rep = Reporter::stdout();
    let cfg = server_config(env);
    let mut server = bind(&mut rep, &cfg, || EchoReporting { rep: Reporter::stdout() });
    // Listening: the parent may connect now.
    rep.text('S', "listening");
    loop {
        server.poll(now());
    }
}

/// How a failed login is reported by `login-once`: a kind the parent matches, then
/// the error.
pub fn login_error_kind(e: &ConnectError) -> &'static str {
    match e {
        ConnectError::Refused { status: LoginStatus::SeqMismatch, .. } | ConnectError::SeqMismatch(_) => "seq-mismatch",
        _ if e.is_retryable() => "retryable",
        _ => "other",
    }
}

fn run_login_once(env: &RoleEnv) {
    let mut rep = Reporter::stdout();
    let mut client = <Client>::open(client_config(env), now()).unwrap_or_else(|e| rep.fail(&format!("open: {e}")));
    let c = client.counters();
    rep.resume(c.consumed, c.next_seq);
    match client.connect(env.addr, env.kind, now()) {
        Ok(c) => rep.text(
            'L',
            &format!("ok {:?} to {}, {} to resend, reset {:?}", c.transport, c.server, c.to_resend, c.reset),
        ),
        Err(e) => rep.text('L', &format!("err {}: {e}", login_error_kind(&e))),
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
        if msg.seq != k {
            self.rep.fail(&format!("server: message {k} arrived with seq {}", msg.seq));
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

fn run_server(env: &RoleEnv) -> ! {
    let mut rep = Reporter::stdout();
    let cfg = server_config(env);
    let (consumed, pushed) = server_commit_points(&cfg).unwrap_or_else(|e| rep.fail(&format!("server: {e}")));
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
    let mut server = bind(&mut rep, &cfg, verifier);
    loop {
        server.poll(now());
        server.groups()[0].handler().after_poll();
    }
}

/// A limit the parent raises (`limit N` lines on stdin).
fn limit_from_parent(initial: Option<u64>) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let limit = std::sync::Arc::new(AtomicU64::new(initial.unwrap_or(u64::MAX)));
    let l = limit.clone();
    child::read_stdin(move |line| {
        if let Some(n) = line.strip_prefix("limit ").and_then(|n| n.parse().ok()) {
            l.fetch_max(n, Ordering::Release);
        }
    });
    limit
}

fn run_client(env: &RoleEnv) -> ! {
    let limit = limit_from_parent(env.limit);
    let mut rep = Reporter::stdout();
    let mut client =
        <Client>::open(client_config(env), now()).unwrap_or_else(|e| rep.fail(&format!("client: cannot open: {e}")));
    // The commit points as the session resumes them (store and rings): what a
    // restarted application reads (`resume_point`, `counters().consumed`).
    let c = client.counters();
    if client.resume_point() != c.next_seq {
        rep.fail(&format!("client: resume point {} but next seq {}", client.resume_point(), c.next_seq));
    }
    let (consumed, pushed0) = (c.consumed, c.next_seq);
    rep.resume(consumed, pushed0);
    let (n_out, n_in) = (env.messages, server_target(env.messages));
    let (mut next, mut pushed, mut reported_pushed) = (consumed, pushed0, pushed0);
    let (mut up, mut finished) = (false, false);
    let (mut next_attempt, mut last_up) = (0u64, now());
    let mut last_error = String::new();
    loop {
        let t = now();
        if !up && t >= next_attempt {
            match client.connect(env.addr, env.kind, t) {
                Ok(c) => {
                    up = true;
                    last_error.clear();
                    if c.reset.is_some() || c.transport != env.kind {
                        rep.fail(&format!("client: unexpected login outcome {c:?}"));
                    }
                    rep.text('C', &format!("{} to {}, {} to resend", c.transport, c.server, c.to_resend));
                }
                Err(e) if e.is_retryable() => {
                    let text = e.to_string();
                    if text != last_error {
                        rep.text('W', &text);
                        last_error = text;
                    }
                    if t - last_up > CONNECT_GIVE_UP_NS {
                        rep.fail(&format!("client: no connection for 120 s; last error: {e}"));
                    }
                    next_attempt = t + 5_000_000;
                }
                Err(e) => rep.fail(&format!("client: connect (not retryable): {e:?}")),
            }
        }
        if up {
            last_up = t;
        }
        // Pushes go to the persistent queue whether connected or not.
        let mut batch = 0;
        let allowed = n_out.min(limit.load(std::sync::atomic::Ordering::Acquire));
        while pushed < allowed && batch < 64 {
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
        // `poll` publishes what `push_more` staged (and sends it when connected).
        client.poll(t);
        if client.resume_point() != pushed {
            rep.fail(&format!("client: resume point {} after {pushed} pushes", client.resume_point()));
        }
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
            if m.seq != next {
                rep.fail(&format!("client: message {next} arrived with seq {}", m.seq));
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
