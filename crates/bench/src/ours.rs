//! tcpshm's server and client as the benches use them: configurations, the echo and
//! sink handlers, the server role's busy-poll loop (one thread calling `Server::poll`,
//! the clock read once per [`POLLS_PER_CLOCK_READ`] polls), a client connected over a
//! chosen transport, and a session over a Unix socket (a user's own byte stream).

use crate::child::{announce, arg};
use crate::clock::{ticks, Clock};
use crate::payload;
use crate::tail::{ServerTrace, TRACE_DUMP, TRACE_START};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::handshake::ServerRules;
use tcpshm_proto::{Msg, Name, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};

/// Message type of ordinary bench messages.
pub const DATA: u16 = 1;
/// Message type that asks the sink to answer (end of a stream).
pub const FINISH: u16 = 2;

/// `Server::poll` calls between two reads of the clock: `now` lags by at most this
/// many polls (well under a microsecond over shared memory), far below every interval
/// the library keeps (20 µs readiness, 1 ms control check, 1 s heartbeat).
pub const POLLS_PER_CLOCK_READ: u32 = 32;

/// A session's liveness timeout in the benches: long, because a bench pauses one
/// side (`SIGSTOP`) for seconds while it measures a reference. The heartbeat
/// interval keeps its default (1 s): heartbeats are part of what is measured.
pub const TIMEOUT_NS: u64 = 120_000_000_000;

/// The connection settings of both sides: send queues and rings of `queue_bytes`,
/// messages up to `max_message`, shared-memory files named `<shm_prefix>...`.
pub fn connection_config(queue_bytes: usize, max_message: usize, shm_prefix: &str) -> ConnectionConfig {
    let mut c = ConnectionConfig { queue_bytes, ..ConnectionConfig::default() };
    c.shm.ring_bytes = queue_bytes;
    c.shm.prefix = shm_prefix.to_string();
    c.session.max_message = u32::try_from(max_message).expect("max message fits u32");
    c.session.liveness.timeout = TIMEOUT_NS;
    c
}

/// The bench's server configuration: listen on an ephemeral loopback port, files in
/// `storage` and `/dev/shm/<shm_prefix>*` (its counters file too).
pub fn server_config(storage: &Path, shm_prefix: &str, queue_bytes: usize, max_message: usize) -> ServerConfig {
    let mut cfg = ServerConfig::new("BenchServer".parse().expect("name"), storage);
    cfg.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    cfg.connection = connection_config(queue_bytes, max_message, shm_prefix);
    // A killed server child's counters file stays: under the bench's prefix, its
    // cleanup removes it.
    cfg.stats.prefix = format!("{shm_prefix}stats-");
    cfg
}

/// The bench's client configuration (the same settings as the server's).
pub fn client_config(
    name: &str,
    storage: &Path,
    shm_prefix: &str,
    queue_bytes: usize,
    max_message: usize,
) -> ClientConfig {
    let mut cfg = ClientConfig::new(name.parse().expect("client name"), storage);
    cfg.connection = connection_config(queue_bytes, max_message, shm_prefix);
    cfg.connect_timeout = Duration::from_secs(10);
    cfg
}

/// Opens a client session and logs in over `kind`.
pub fn connect(mut cfg: ClientConfig, addr: SocketAddr, kind: TransportKind, clock: &Clock) -> Client {
    cfg.transport = kind;
    let mut c = Client::open(cfg, clock.now_ns()).expect("open client session");
    c.connect(addr, kind, clock.now_ns()).unwrap_or_else(|e| panic!("connect {kind:?} to {addr}: {e}"));
    c
}

/// Echoes `msg` back through `conn`, zero-copy from the received message into the
/// send queue.
#[inline]
fn echo(conn: &mut Conn<'_>, msg: &Msg<'_>) -> Handled {
    match conn.alloc(msg.payload.len()) {
        Ok(Some(buf)) => {
            buf.copy_from_slice(msg.payload);
            conn.push(msg.msg_type).expect("allocated");
            Handled::Pop
        }
        Ok(None) => Handled::Keep,
        Err(e) => {
            conn.close_with(e.to_string());
            Handled::Keep
        }
    }
}

/// Echoes every message back (the reference's echo server).
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl GroupHandler for Echo {
    #[inline]
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        echo(conn, &msg)
    }
}

/// [`Echo`] that records when it handled each message (by the seq in its first 8
/// bytes) and obeys the trace commands ([`TRACE_START`], [`TRACE_DUMP`]).
pub struct TracedEcho {
    /// The records.
    pub trace: ServerTrace,
    /// A [`TRACE_START`] arrived: forget the records after this iteration.
    pub reset: bool,
    /// A [`TRACE_DUMP`] arrived for seqs `(first, last)`.
    pub dump: Option<(u64, u64)>,
}

impl GroupHandler for TracedEcho {
    #[inline]
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        match msg.msg_type {
            TRACE_START => self.reset = true,
            TRACE_DUMP if msg.payload.len() >= 16 => {
                let u = |i: usize| u64::from_le_bytes(msg.payload[i..i + 8].try_into().expect("8 bytes"));
                self.dump = Some((u(0), u(8)));
            }
            _ if msg.payload.len() >= 8 => {
                self.trace.handled(u64::from_le_bytes(msg.payload[..8].try_into().expect("8 bytes")));
            }
            _ => {}
        }
        echo(conn, &msg)
    }
}

/// Consumes a one-way stream per connection: reads every byte of each message,
/// checks its sequence number, and answers a `FINISH` message with the count received
/// since the last one (so the sender's clock stops when everything arrived and was
/// consumed).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sink {
    received: u64,
}

impl GroupHandler for Sink {
    #[inline]
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        if msg.msg_type == FINISH {
            let Ok(Some(buf)) = conn.alloc(8) else { return Handled::Keep };
            buf.copy_from_slice(&self.received.to_le_bytes());
            conn.push(FINISH).expect("allocated");
            self.received = 0;
            return Handled::Pop;
        }
        std::hint::black_box(payload::fold(msg.payload));
        if !payload::check(msg.payload, self.received) {
            conn.close_with(format!("stream sink: message {} is out of order or corrupt", self.received));
            return Handled::Keep;
        }
        self.received += 1;
        Handled::Pop
    }
}

/// The server role: binds with `handlers` (one group each), announces
/// `ready <addr>`, then polls until it is killed: one group from this thread with
/// `Server::poll`; several groups from one thread each (not pinned: the process's
/// affinity decides), the control part from this thread, which sleeps between its
/// polls (it has no busy cpu to itself).
pub fn serve<H: GroupHandler + 'static>(cfg: ServerConfig, handlers: Vec<H>, clock: Clock) -> ! {
    let groups = handlers.len();
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), handlers).expect("bind server");
    let addr = server.local_addrs()[0];
    announce(&format!("ready {addr}"));
    if groups == 1 {
        let mut server = server;
        loop {
            let now = clock.now_ns();
            for _ in 0..POLLS_PER_CLOCK_READ {
                server.poll(now);
            }
        }
    }
    let (mut control, gs) = server.split();
    for mut g in gs {
        std::thread::spawn(move || loop {
            let now = clock.now_ns();
            for _ in 0..POLLS_PER_CLOCK_READ {
                g.poll(now);
            }
        });
    }
    loop {
        control.poll(clock.now_ns());
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The server role of a traced echo (`--trace FILE --slow-ns N`): the loop of
/// [`serve`] with its two parts timed (see [`crate::tail`]); on [`TRACE_DUMP`] it
/// writes its records to FILE and announces `dumped`.
pub fn serve_traced(cfg: ServerConfig, clock: Clock, args: &[String]) -> ! {
    let path = std::path::PathBuf::from(arg(args, "--trace").expect("--trace FILE"));
    let slow_ns: f64 = crate::child::parsed(args, "--slow-ns");
    let trace = ServerTrace::new(clock.ticks_in(slow_ns), clock.ticks_in(crate::tail::LOOK_NS));
    let handler = TracedEcho { trace, reset: false, dump: None };
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![handler]).expect("bind server");
    let addr = server.local_addrs()[0];
    announce(&format!("ready {addr}"));
    let mut n = 0u32;
    let mut now = clock.now_ns();
    loop {
        let a = ticks();
        if n.is_multiple_of(POLLS_PER_CLOCK_READ) {
            now = clock.at(a);
        }
        n = n.wrapping_add(1);
        server.control().poll(now);
        let b = ticks();
        server.groups()[0].poll(now);
        let c = ticks();
        let h = server.groups()[0].handler();
        h.trace.iteration(a, b, c);
        if std::mem::take(&mut h.reset) {
            h.trace.clear();
        }
        if let Some((first, last)) = h.dump.take() {
            h.trace.dump(&path, first, last).expect("write the trace");
            announce("dumped");
        }
    }
}

/// Sends `msg` as one message of type `msg_type` and spins until its echo arrives;
/// returns whether the echo is byte-identical (type and payload). `now` is passed to
/// every poll: the caller reads the clock once per round trip.
#[inline]
pub fn ping_typed<T: Transport>(t: &mut T, msg_type: u16, msg: &[u8], now: u64) -> bool {
    loop {
        match t.alloc(msg.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg);
                break;
            }
            Ok(None) => {
                t.poll(now);
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    t.push(msg_type).expect("push");
    loop {
        if let Some(m) = t.front() {
            let ok = m.msg_type == msg_type && m.payload == msg;
            t.pop();
            return ok;
        }
        if !t.poll(now) {
            panic!("connection lost during echo: {:?}", t.close_reason());
        }
    }
}

/// [`ping_typed`] with [`DATA`].
#[inline]
pub fn ping<T: Transport>(t: &mut T, msg: &[u8], now: u64) -> bool {
    ping_typed(t, DATA, msg, now)
}

// ---- tcpshm over a Unix socket ---------------------------------------------------

/// Queue bytes of the Unix-socket sessions.
const UNIX_QUEUE: usize = 1 << 20;
/// Largest message of the Unix-socket sessions.
const UNIX_MAX: usize = 64 * 1024;

fn unix_blocking(s: &UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("write timeout");
}

fn name(s: &str) -> Name {
    s.parse().expect("valid name")
}

/// The client side of tcpshm over a Unix socket: the session's store in `dir`,
/// logged in over a connection to `path` (`Connection<UnixStream>`: the connection
/// type of every medium; only connecting is the medium's own part).
pub fn unix_client(path: &str, dir: &Path, clock: &Clock) -> Connection<UnixStream> {
    let s = UnixStream::connect(path).expect("connect unix socket");
    unix_blocking(&s);
    let cfg = connection_config(UNIX_QUEUE, UNIX_MAX, "unused-");
    let now = clock.now_ns();
    let mut c = Connection::open_session(
        dir,
        name("client"),
        name("server"),
        tcpshm_transport_shm::Side::Client,
        TransportKind::Tcp,
        cfg,
        now,
    )
    .expect("open the client's session");
    c.login_client(s, TransportKind::Tcp, b"", now).expect("log in over the Unix socket");
    c
}

/// The server role of tcpshm over a Unix socket: `--path SOCKET --storage DIR`;
/// accepts one login and echoes (zero-copy, as [`Echo`]) until killed.
pub fn unix_server(args: &[String]) {
    use tcpshm_proto::decode::frame_limit;
    use tcpshm_proto::login::MAX_REQUEST_LEN;
    use tcpshm_proto::{Control, Decoded};
    use tcpshm_transport_tcp::{exchange, FrameReader};
    let clock = Clock::calibrate(Duration::from_millis(5));
    let path = arg(args, "--path").expect("--path");
    let dir = Path::new(arg(args, "--storage").expect("--storage"));
    let l = UnixListener::bind(path).expect("bind unix socket");
    announce("ready");
    let (mut s, _) = l.accept().expect("accept");
    unix_blocking(&s);
    let mut reader = FrameReader::new(4096, frame_limit(MAX_REQUEST_LEN));
    let f = exchange::recv_blocking(&mut s, &mut reader).expect("read the login request");
    let Ok(Decoded::Frame { frame, .. }) = tcpshm_proto::decode(reader.frame_bytes(&f), u32::MAX) else {
        panic!("the login request does not decode");
    };
    let Ok(Some(Control::Login(req))) = frame.control() else { panic!("not a login request") };
    let now = clock.now_ns();
    let mut c: Connection<UnixStream> = Connection::open_session(
        dir,
        name("server"),
        req.client,
        tcpshm_transport_shm::Side::Server,
        TransportKind::Tcp,
        connection_config(UNIX_QUEUE, UNIX_MAX, "unused-"),
        now,
    )
    .expect("open the server's session");
    s.set_nonblocking(true).expect("non-blocking");
    let rules = ServerRules { name: name("server"), tcp: true, shm: false, limits: c.limits() };
    if let Err((refusal, mut s)) = c.accept(s, &req, &rules, now) {
        tcpshm_connection::write_refusal(&mut s, rules.name, &refusal);
        panic!("login refused: {refusal:?}");
    }
    loop {
        let now = clock.now_ns();
        for _ in 0..POLLS_PER_CLOCK_READ {
            if !c.poll(now) {
                return;
            }
            while let Some((m, mut tx)) = c.front_split() {
                let Ok(Some(buf)) = tx.alloc(m.payload.len()) else { break };
                buf.copy_from_slice(m.payload);
                tx.push(m.msg_type).expect("allocated");
                c.pop();
            }
            if c.wants_write() {
                c.on_writable(now);
            }
        }
    }
}
