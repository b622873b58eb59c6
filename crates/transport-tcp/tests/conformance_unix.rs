//! The proto conformance kit against `StreamConnection<mio::net::UnixStream>`.

mod common;

use common::StreamHarness;

tcpshm_proto::conformance_tests!(StreamHarness::<mio::net::UnixStream>::new());
