//! Helpers of the separate-process end-to-end tests (`crash.rs`, `netns.rs`,
//! `state_loss.rs`): the message streams and their content, the child roles (server
//! and client processes), the crash-consistent reporting channel, the parent's
//! exactly-once checker and its view of each side's processes. See `crash.rs` for
//! the design.
#![allow(dead_code)]

pub mod check;
pub mod content;
pub mod procs;
pub mod records;
pub mod roles;

/// A seeded generator: the seed from `TCPSHM_E2E_SEED`, or one from the clock and the
/// pid (printed by the tests, so a failing schedule can be replayed).
pub fn rng() -> (tcpshm_test_support::Rng, u64) {
    let seed = std::env::var("TCPSHM_E2E_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        tcpshm_test_support::Rng::new(t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)).next_u64()
    });
    (tcpshm_test_support::Rng::new(seed), seed)
}

/// A `u64` from the environment variable `name`, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")),
        Err(_) => default,
    }
}
