//! loom models of both queues, compiled only for this crate's own unit tests under
//! `--cfg loom` (loom is a dev-dependency; see `sync.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p tcpshm-ring --all-features --lib loom_models`
//! (`cargo xtask ci` does, with `LOOM_MAX_PREEMPTIONS=3`).

mod mpsc;
mod spsc;
mod var;
