//! The tests' randomness: xorshift64*. The kill tests seed it from the clock and print the seed,
//! so that a failure can be replayed with `SIPBAN_TEST_SEED`; the fuzz runs seed it from a fixed
//! value per generated input ([`Rng::from_seed`]).
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

    /// A generator for `seed` (any value: it is mixed first, so nearby seeds give unrelated
    /// streams, and 0 does not stall xorshift).
    pub fn from_seed(seed: u64) -> Rng {
        // splitmix64's finaliser.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
