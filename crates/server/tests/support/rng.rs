//! A small seeded generator (splitmix64): the tests print the seed so a failing
//! schedule can be replayed with `TCPSHM_E2E_SEED`.

/// The splitmix64 finaliser: a good 64-bit mix of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A splitmix64 sequence.
pub struct Rng(u64);

impl Rng {
    /// The seed from `TCPSHM_E2E_SEED`, or one from the clock and the pid.
    pub fn from_env_or_clock() -> (Rng, u64) {
        let seed = std::env::var("TCPSHM_E2E_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            mix(t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32))
        });
        (Rng(seed), seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability 1/2.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}
