//! Skips that are not passes: a test that cannot run here (no root, no `ip`) records
//! why in `target/test-skips/`, which `cargo xtask ci` lists at the end ("N tests
//! did NOT run"); with `TCPSHM_REQUIRE_ALL=1` (set by `.ci/run` where everything can
//! run) a skip fails the test instead.

use std::path::PathBuf;

/// The environment variable that turns skips into failures.
pub const REQUIRE_VAR: &str = "TCPSHM_REQUIRE_ALL";

/// Where skips are recorded: `$CARGO_TARGET_DIR/test-skips`, or `target/test-skips`
/// of the workspace.
pub fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-skips")
}

/// Records that the test `name` did not run and why — or panics with the reason if
/// skips are not allowed here. Returns so the test can return early.
///
/// ```
/// // A test that needs root:
/// # fn is_root() -> bool { true }
/// if !is_root() {
///     tcpshm_test_support::skip::skip("netns_cut", "needs root for network namespaces");
///     return;
/// }
/// ```
pub fn skip(name: &str, why: &str) {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{name} cannot run here ({why}), and {REQUIRE_VAR}=1 says every test must run");
    }
    eprintln!("SKIPPED {name}: {why}");
    let d = dir();
    let _ = std::fs::create_dir_all(&d);
    let _ = std::fs::write(d.join(name), why);
}
