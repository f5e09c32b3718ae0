//! Helpers shared by the fuzz targets in `fuzz_targets/` (see fuzz/README.md).

pub mod memstore;
pub mod provider;
pub mod upstream;

/// A small deterministic PRNG (SplitMix64), so a given input always gets the same splits and
/// a crash reproduces from its artifact alone.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the bytes themselves (FNV-1a): every mutation of an input also moves its
    /// split points.
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `data` cut into chunks as a network might deliver it: mostly short reads (1 to 16 bytes,
/// so every boundary, including inside a UTF-8 sequence or between `\r` and `\n`, gets
/// hit), sometimes long ones, sometimes empty ones.
pub fn random_chunks(data: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = match rng.below(8) {
            0 => 0,
            1 => 1 + rng.below(512),
            _ => 1 + rng.below(16),
        }
        .min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}

/// One chunk per byte: the worst case for a streaming parser.
pub fn byte_chunks(data: &[u8]) -> Vec<Vec<u8>> {
    data.iter().map(|b| vec![*b]).collect()
}
