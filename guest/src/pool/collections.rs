//! Containers behind the pool: records in fixed-size chunks, and a fast
//! hasher for its maps.

use std::collections::HashMap;

/// Records in fixed-size chunks: growing never copies the records nor
/// leaves a doubled vector's slack, so memory stays near what they need
/// (the guest's linear memory never shrinks after a peak).
pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            // Grows by doubling up to CHUNK: a small pool stays small.
            self.chunks.push(Vec::new());
        }
        self.chunks.last_mut().expect("a chunk").push(value);
        self.len += 1;
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// A fast non-cryptographic hasher (the Fx multiply-rotate) for the pool's
/// maps: keys are our own ids and sequence numbers, not attacker-chosen
/// bulk input, and SipHash was a visible share of every call.
#[derive(Clone, Copy, Default)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        // Fold the high bits down: the multiply leaves a key's low bits
        // depending only on its low bytes, and ids that differ only at the
        // end ("c0000001", "c0000002") then all land in one bucket.
        let mut z = self.0;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differing_only_at_the_end_spread_over_buckets() {
        use std::hash::BuildHasher;
        let build = std::hash::BuildHasherDefault::<FxHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..1000)
            .map(|i| build.hash_one(format!("c{i:07}")) & 1023)
            .collect();
        // A uniform hash fills about 63% of 1024 buckets with 1000 keys.
        assert!(buckets.len() > 550, "{}", buckets.len());
    }
}
