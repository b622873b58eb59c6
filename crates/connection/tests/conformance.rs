//! The conformance kit on every medium: an in-memory pipe, TCP, Unix sockets, and
//! shared memory (with a Unix socket as the control stream).
#![cfg(feature = "testkit")]

use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use tcpshm_connection::testkit::{ConnectionHarness, Links, PipeLinks};
use tcpshm_proto::login::TransportKind;

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

struct Tcp(TcpListener);

impl Links for Tcp {
    type S = TcpStream;
    fn transport(&self) -> TransportKind {
        TransportKind::Tcp
    }
    fn link(&mut self) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(self.0.local_addr().unwrap()).unwrap();
        let (s, _) = self.0.accept().unwrap();
        for t in [&c, &s] {
            t.set_nodelay(true).unwrap();
            t.set_read_timeout(WAIT).unwrap();
            t.set_write_timeout(WAIT).unwrap();
        }
        (c, s)
    }
}

struct Unix(TransportKind);

impl Links for Unix {
    type S = UnixStream;
    fn transport(&self) -> TransportKind {
        self.0
    }
    fn link(&mut self) -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        for t in [&a, &b] {
            t.set_read_timeout(WAIT).unwrap();
            t.set_write_timeout(WAIT).unwrap();
        }
        (a, b)
    }
}

mod pipe {
    tcpshm_proto::conformance_tests!(super::ConnectionHarness::new(super::PipeLinks::default(), "pipe"));
}

mod tcp {
    tcpshm_proto::conformance_tests!(super::ConnectionHarness::new(
        super::Tcp(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
        "tcp"
    ));
}

mod unix {
    tcpshm_proto::conformance_tests!(super::ConnectionHarness::new(
        super::Unix(tcpshm_proto::login::TransportKind::Tcp),
        "unix"
    ));
}

mod shm {
    tcpshm_proto::conformance_tests!(super::ConnectionHarness::new(
        super::Unix(tcpshm_proto::login::TransportKind::Shm),
        "shm"
    ));
}
