//! The reference loopback transport passes the whole conformance kit, under several
//! shapes: byte-at-a-time delivery, tiny queues and pipes, large messages.
#![cfg(feature = "testkit")]

use tcpshm_proto::testkit::loopback::{LoopbackConfig, LoopbackHarness};
use tcpshm_proto::testkit::{self, CASE_NAMES};

/// One `#[test]` per case with the default shape.
mod default_shape {
    tcpshm_proto::conformance_tests!(tcpshm_proto::testkit::loopback::LoopbackHarness::default());
}

#[test]
fn case_list_is_complete() {
    assert_eq!(testkit::all_cases::<LoopbackHarness>().len(), CASE_NAMES.len());
    assert!(CASE_NAMES.len() >= 14);
}

#[test]
fn byte_at_a_time_delivery() {
    let cfg = LoopbackConfig { max_chunk: 1, pipe_capacity: 64, ..LoopbackConfig::default() };
    testkit::run_all(&mut LoopbackHarness::new(cfg)).unwrap();
}

#[test]
fn tiny_queue_and_receive_buffer() {
    // The queue holds a handful of frames; the receive buffer barely one; acks must
    // come from the byte threshold (a quarter of the peer's queue) long before 64
    // messages are popped.
    let cfg = LoopbackConfig {
        queue_capacity: 4096,
        max_payload: 1000,
        recv_buffer: 0,
        pipe_capacity: 512,
        max_chunk: 31,
        ..LoopbackConfig::default()
    };
    testkit::run_all(&mut LoopbackHarness::new(cfg)).unwrap();
}

#[test]
fn large_messages_and_pipes() {
    let cfg = LoopbackConfig {
        queue_capacity: 1 << 20,
        max_payload: 256 * 1024,
        recv_buffer: 1 << 20,
        pipe_capacity: 1 << 16,
        max_chunk: 1 << 16,
        ..LoopbackConfig::default()
    };
    testkit::run_all(&mut LoopbackHarness::new(cfg)).unwrap();
}

#[test]
fn other_seeds() {
    for seed in [2, 3, 0xDEAD_BEEF] {
        let cfg = LoopbackConfig { seed, ..LoopbackConfig::default() };
        testkit::run_all(&mut LoopbackHarness::new(cfg)).unwrap();
    }
}
