//! The scan's address index: source address → listing slot number, in an open-addressing
//! table whose slot for a key can be fetched before it is looked up ([`Table::prefetch`]).
//!
//! A scan of a large log sees tens of thousands of sources; a lookup that waits for memory
//! costs as much as parsing a line. Hashing a packet's source and asking for its table slot
//! one packet ahead hides that wait. The hash is seeded per table (foldhash), so addresses
//! chosen by an attacker cannot be made to collide.
//!
//! This module must never hold more than the keys and their slot numbers, and never let the
//! table fill beyond five eighths (probes stay short).

use std::hash::BuildHasher;

/// An empty slot's value.
const EMPTY: u32 = u32::MAX;

/// Linear probing over `(key, value)` pairs, a power of two of them.
pub struct Table<K> {
    slots: Vec<(K, u32)>,
    len: usize,
    hasher: foldhash::quality::RandomState,
}

impl<K: Copy + Default + Eq + std::hash::Hash> Table<K> {
    pub fn new() -> Table<K> {
        Table {
            slots: vec![(K::default(), EMPTY); 1024],
            len: 0,
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn hash(&self, k: K) -> u64 {
        self.hasher.hash_one(k)
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Ask the CPU for the slot `h` starts probing at (a hint; it changes nothing).
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        if let Some(s) = self.slots.get(h as usize & self.mask()) {
            super::scan::prefetch(s);
        }
    }

    /// The value of `k` (hashed `h`), or `next` inserted as its value.
    pub fn get_or_insert(&mut self, k: K, h: u64, next: u32) -> u32 {
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.grow();
        }
        let mask = self.mask();
        let mut p = h as usize & mask;
        loop {
            let (key, v) = self.slots[p];
            if v == EMPTY {
                self.slots[p] = (k, next);
                self.len += 1;
                return next;
            }
            if key == k {
                return v;
            }
            p = (p + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let bigger = vec![(K::default(), EMPTY); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.mask();
        for (k, v) in old.into_iter().filter(|(_, v)| *v != EMPTY) {
            let mut p = self.hash(k) as usize & mask;
            while self.slots[p].1 != EMPTY {
                p = (p + 1) & mask;
            }
            self.slots[p] = (k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn finds_what_it_holds_across_growth() {
        let mut t = Table::<u32>::new();
        let mut m = HashMap::new();
        // Keys 0 (a valid address) and dense runs, which a weak hash would cluster.
        for k in (0..20_000u32).chain((0..20_000).map(|i| i << 16)) {
            let next = m.len() as u32;
            let got = t.get_or_insert(k, t.hash(k), next);
            assert_eq!(got, *m.entry(k).or_insert(next), "{k}");
        }
        assert_eq!(t.len(), m.len());
        assert!(t.slots.len() * 5 >= t.len() * 8);
        for (k, v) in &m {
            assert_eq!(t.get_or_insert(*k, t.hash(*k), u32::MAX - 1), *v);
        }
        assert_eq!(t.len(), m.len(), "lookups insert nothing");
    }
}
