//! The kill tests' randomness: xorshift64*, seeded from the clock and printed, so that a failure
//! can be replayed with `SIPBAN_TEST_SEED`.
#![allow(dead_code)]

pub struct Rng(u64);

impl Rng {
    /// Seeded from `SIPBAN_TEST_SEED` if set, else from the clock; the seed is printed.
    pub fn seeded(what: &str) -> Rng {
        let seed = std::env::var("SIPBAN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{what} seed: {seed} (SIPBAN_TEST_SEED={seed} replays it)");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
