//! # A user-written transport: tcpshm over Unix domain sockets
//!
//! ```sh
//! cargo run --release --example unix_transport            # the whole conformance kit, then a demo
//! cargo run --release --example unix_transport -- --case cut_mid_stream
//! cargo run --release --example unix_transport -- --list
//! ```
//!
//! A new medium for tcpshm is only what is specific to it: how to make a connected
//! byte stream (connect, accept). Everything else — the persistent queue, framing,
//! numbering, acks, the login of both sides with its checks (names, epochs, lost
//! state, limits), heartbeats, timeouts, resending after a reconnect — is the one
//! engine every transport runs: [`Connection`] over any [`ByteStream`](tcpshm::tcp::ByteStream)
//! (`std::os::unix::net::UnixStream` is one already; for your own stream, implement
//! the trait: `Read` + `Write`, non-blocking).
//!
//! This file is that medium-specific part for Unix sockets ([`UnixMedium`] and its
//! [`Links`] for the conformance kit, the section marked below), and the proof that
//! it is enough:
//!
//! 1. `main` runs every case of the protocol's conformance kit
//!    ([`tcpshm::proto::testkit`]) on it, through the kit's harness for connections
//!    ([`ConnectionHarness`]) — the same cases TCP and shared memory pass — twice: with
//!    the messages on the socket, and with the messages in shared-memory rings and
//!    the socket as their control stream. It prints each case and exits non-zero if
//!    one fails.
//! 2. Then a small client and server exchange messages over a Unix listener with
//!    [`Connection::login_client`] and [`Connection::accept`], disconnect, and resume
//!    the session at a second login.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tcpshm::connection::testkit::{ConnectionHarness, Links};
use tcpshm::connection::{write_refusal, Connection, ConnectionConfig};
use tcpshm::proto::decode::frame_limit;
use tcpshm::proto::handshake::ServerRules;
use tcpshm::proto::login::{TransportKind, MAX_REQUEST_LEN};
use tcpshm::proto::session::SessionConfig;
use tcpshm::proto::testkit::{self, CASE_NAMES};
use tcpshm::proto::{CloseReason, Control, Decoded, Name, Nanos, Transport};
use tcpshm::shm::Side;
use tcpshm::tcp::{exchange, FrameReader};

// ---------------------------------------------------------------------------------
// The medium: everything a user writes for a new byte stream (UnixStream implements
// `ByteStream` already).
// ---------------------------------------------------------------------------------

/// Unix-domain stream sockets at a path. The login exchange blocks (bounded by the
/// sockets' timeouts: the library reads no clock); the session then makes the
/// stream non-blocking.
pub struct UnixMedium {
    listener: UnixListener,
    path: PathBuf,
}

/// How long one step of a login may block.
const LOGIN_STEP: Option<Duration> = Some(Duration::from_secs(10));

impl UnixMedium {
    /// Listens at `path` (a stale socket file there is replaced).
    pub fn bind(path: PathBuf) -> io::Result<UnixMedium> {
        let _ = std::fs::remove_file(&path);
        Ok(UnixMedium { listener: UnixListener::bind(&path)?, path })
    }

    /// A connection to the listener.
    pub fn connect(&self) -> io::Result<UnixStream> {
        with_timeouts(UnixStream::connect(&self.path)?)
    }

    /// The next connection made to the listener.
    pub fn accept(&self) -> io::Result<UnixStream> {
        with_timeouts(self.listener.accept()?.0)
    }
}

fn with_timeouts(s: UnixStream) -> io::Result<UnixStream> {
    s.set_read_timeout(LOGIN_STEP)?;
    s.set_write_timeout(LOGIN_STEP)?;
    Ok(s)
}

impl Drop for UnixMedium {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The conformance kit's links over the medium: a connect and an accept.
pub struct UnixLinks {
    medium: UnixMedium,
    /// Messages on the socket (`Tcp`: any byte stream), or in shared-memory rings
    /// with the socket as their control stream (`Shm`).
    kind: TransportKind,
}

impl Links for UnixLinks {
    type S = UnixStream;
    fn transport(&self) -> TransportKind {
        self.kind
    }
    fn link(&mut self) -> (UnixStream, UnixStream) {
        let client = self.medium.connect().expect("connect to the kit's socket");
        let server = self.medium.accept().expect("accept the kit's connection");
        (client, server)
    }
}

// ---------------------------------------------------------------------------------
// End of the medium. What follows runs the kit on it, and uses it.
// ---------------------------------------------------------------------------------

#[derive(Parser, Debug)]
#[command(about = "tcpshm over Unix domain sockets: the conformance kit on a user-written medium, then a demo")]
struct Args {
    /// Run only this conformance case (see --list), on both variants; no demo.
    #[arg(long)]
    case: Option<String>,
    /// List the conformance cases and exit.
    #[arg(long)]
    list: bool,
}

fn main() {
    let args = Args::parse();
    if args.list {
        for case in CASE_NAMES {
            println!("{case}");
        }
        return;
    }
    if let Err(e) = run(&args) {
        eprintln!("unix_transport: error: {e:#}");
        std::process::exit(1);
    }
}

/// A private directory for the sockets and the demo's session stores, removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &Args) -> Result<()> {
    let work = WorkDir(std::env::temp_dir().join(format!("tcpshm-unix-transport-{}", std::process::id())));
    std::fs::create_dir_all(&work.0).with_context(|| format!("cannot create {}", work.0.display()))?;

    let cases: Vec<&str> = match &args.case {
        Some(c) if CASE_NAMES.contains(&c.as_str()) => vec![c.as_str()],
        Some(c) => bail!("no conformance case named {c:?} (--list lists them)"),
        None => CASE_NAMES.to_vec(),
    };
    let variants = [("unix", TransportKind::Tcp), ("unix+shm", TransportKind::Shm)];
    let (mut passed, mut failed) = (0, 0);
    for (label, kind) in variants {
        for (i, case) in cases.iter().enumerate() {
            // A fresh harness per case (state in its own directory, removed after).
            let medium = UnixMedium::bind(work.0.join(format!("kit-{label}-{i}.sock")))?;
            let mut h = ConnectionHarness::new(UnixLinks { medium, kind }, "unix-example");
            let started = Instant::now();
            match testkit::run_case(&mut h, case) {
                Ok(()) => {
                    passed += 1;
                    println!("ok     {case:<40} {label:<9} {:>8.1?}", started.elapsed());
                }
                Err(e) => {
                    failed += 1;
                    println!("FAILED {case:<40} {label:<9} {}", e.message);
                }
            }
        }
    }
    if failed > 0 {
        bail!("FAIL: {passed} passed, {failed} failed");
    }
    println!("PASS: {passed} passed, 0 failed (every case of the kit, messages on the socket and in shared memory)");
    if args.case.is_none() {
        demo(&work.0)?;
    }
    Ok(())
}

/// Nanoseconds since `t0`: the `now` the library is given.
fn ns(t0: Instant) -> Nanos {
    t0.elapsed().as_nanos() as Nanos
}

/// A client and a server over the medium: a login, three messages echoed, a
/// disconnect, two messages pushed while down, a second login that delivers them.
fn demo(dir: &Path) -> Result<()> {
    let t0 = Instant::now();
    let medium = UnixMedium::bind(dir.join("demo.sock"))?;
    let (client_name, service, server_name) = (name("demo-client")?, name("demo-service")?, name("DemoServer")?);
    let session = SessionConfig { max_message: 4096, ..SessionConfig::default() };
    let cfg = ConnectionConfig { queue_bytes: 1 << 16, session, ..ConnectionConfig::default() };
    let mut client = Connection::open_session(
        &dir.join("client"),
        client_name,
        service,
        Side::Client,
        TransportKind::Tcp,
        cfg.clone(),
        ns(t0),
    )?;
    let mut server = Connection::open_session(
        &dir.join("server"),
        server_name,
        client_name,
        Side::Server,
        TransportKind::Tcp,
        cfg,
        ns(t0),
    )?;
    let rules = ServerRules { name: server_name, tcp: true, shm: false, limits: server.limits() };

    let mut echoed = Vec::new();
    for (login, messages) in [(1, ["one", "two", "three"].as_slice()), (2, ["four", "five"].as_slice())] {
        if login == 2 {
            // Pushed while disconnected: they wait in the session's store.
            for m in messages {
                push(&mut client, m)?;
            }
        }
        // The client's login blocks until the server answers: the server's side runs
        // on a thread of its own meanwhile.
        let (c, accepted) = std::thread::scope(|s| {
            let srv = s.spawn(|| serve_login(&medium, &mut server, &rules, ns(t0)));
            let stream = medium.connect().context("cannot connect")?;
            let c = client.login_client(stream, TransportKind::Tcp, b"", ns(t0)).context("login refused");
            let accepted = srv.join().map_err(|_| anyhow!("the server thread panicked"))?;
            Ok::<_, anyhow::Error>((c?, accepted?))
        })?;
        println!(
            "login {login}: client logged in to {} ({} queued messages to (re)send); the server accepted {}",
            c.server, c.to_resend, accepted
        );
        if login == 1 {
            for m in messages {
                push(&mut client, m)?;
            }
        }
        // Poll both ends until every echo of this login is back.
        let want = echoed.len() + messages.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while echoed.len() < want {
            let now = ns(t0);
            server.poll(now);
            if let Some((msg, mut reply)) = server.front_split() {
                let buf = reply.alloc(msg.payload.len())?.context("the server's queue is full")?;
                buf.copy_from_slice(msg.payload);
                reply.push(msg.msg_type)?;
                server.pop();
            }
            client.poll(now);
            if let Some(m) = client.front() {
                echoed.push(String::from_utf8_lossy(m.payload).into_owned());
                client.pop();
            }
            if Instant::now() > deadline {
                bail!("no echo within 10 s: client {}, server {}", client.counters(), server.counters());
            }
        }
        println!("login {login}: echoed {:?}", &echoed[want - messages.len()..]);
        client.close(CloseReason::Requested);
    }
    if echoed != ["one", "two", "three", "four", "five"] {
        bail!("the echoes are not the messages sent, once each and in order: {echoed:?}");
    }
    println!("demo: 5 messages echoed once each and in order across two logins over a Unix socket");
    Ok(())
}

/// The server's side of one login: accept a connection, read its login request,
/// and let the connection decide (a refusal is written back).
fn serve_login(
    medium: &UnixMedium,
    server: &mut Connection<UnixStream>,
    rules: &ServerRules,
    now: Nanos,
) -> Result<Name> {
    let mut stream = medium.accept().context("cannot accept")?;
    let mut reader = FrameReader::new(4096, frame_limit(MAX_REQUEST_LEN));
    let f = exchange::recv_blocking(&mut stream, &mut reader).context("no login request")?;
    let Ok(Decoded::Frame { frame, .. }) = tcpshm::proto::decode(reader.frame_bytes(&f), u32::MAX) else {
        bail!("not a frame");
    };
    let Ok(Some(Control::Login(req))) = frame.control() else { bail!("not a login request") };
    stream.set_nonblocking(true)?;
    if let Err((refusal, mut stream)) = server.accept(stream, &req, rules, now) {
        write_refusal(&mut stream, rules.name, &refusal);
        bail!("refused {}: {}", req.client, refusal.text);
    }
    Ok(req.client)
}

fn push(c: &mut Connection<UnixStream>, text: &str) -> Result<()> {
    c.alloc(text.len())?.context("the client's queue is full")?.copy_from_slice(text.as_bytes());
    c.push(1)?;
    Ok(())
}

fn name(s: &str) -> Result<Name> {
    s.parse::<Name>().map_err(|e| anyhow!("invalid name {s:?}: {e}"))
}
