//! The proto conformance kit against `ShmConnection`, with a Unix socket pair as the
//! control channel: `cut` shuts the sockets down, `reconnect` reattaches both ends to
//! a new pair. Run with the control work at every poll, and gated by a check
//! interval longer than the kit's clock tick.

mod common;

use common::{name, socket_pair, TestDir};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use tcpshm_proto::testkit::Harness;
use tcpshm_proto::Nanos;
use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmFile};

type Conn = ShmConnection<UnixStream>;

/// The kit harness: fresh files under a unique prefix, Unix socket pairs.
pub struct ShmHarness {
    dir: TestDir,
    cfg: ShmConfig,
    caps: Capacities,
    pairs: u64,
}

impl ShmHarness {
    fn new(check_interval: Nanos) -> ShmHarness {
        let cfg =
            ShmConfig { heartbeat_interval: 10_000_000, timeout: 40_000_000, check_interval, max_payload: usize::MAX };
        // Small and asymmetric rings: the kit fills them.
        let caps = Capacities { server_to_client: 1 << 16, client_to_server: 1 << 17 };
        ShmHarness { dir: TestDir::new("kit"), cfg, caps, pairs: 0 }
    }
}

impl Harness for ShmHarness {
    type T = Conn;

    fn pair(&mut self, _now: Nanos) -> (Conn, Conn) {
        self.pairs += 1;
        let (s, c) = (name(&format!("srv{}", self.pairs)), name("cli"));
        let server_file = ShmFile::create_or_open(&self.dir.dir, &s, &c, self.caps).unwrap();
        let client_file = ShmFile::open(&self.dir.dir, &s, &c).unwrap();
        let (x, y) = socket_pair();
        let server = ShmConnection::server(server_file, x, self.cfg).unwrap();
        let client = ShmConnection::client(client_file, y, self.cfg).unwrap();
        (client, server)
    }

    fn cut(&mut self, a: &mut Conn, b: &mut Conn) {
        for t in [a, b] {
            if let Some(s) = t.control().stream() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn reconnect(&mut self, a: &mut Conn, b: &mut Conn, _now: Nanos) {
        let (x, y) = socket_pair();
        a.reattach(x);
        b.reattach(y);
    }

    fn timeout(&self) -> Nanos {
        self.cfg.timeout
    }

    fn heartbeat_interval(&self) -> Nanos {
        self.cfg.heartbeat_interval
    }
}

mod every_poll {
    tcpshm_proto::conformance_tests!(super::ShmHarness::new(0));
}

mod gated {
    // The kit's tick is heartbeat_interval / 8 = 1.25 ms: control work every other round.
    tcpshm_proto::conformance_tests!(super::ShmHarness::new(2_000_000));
}
