//! The proto conformance kit against `TcpConnection` over real loopback TCP sockets.

mod common;

use common::StreamHarness;

tcpshm_proto::conformance_tests!(StreamHarness::<mio::net::TcpStream>::new());
