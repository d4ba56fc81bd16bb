//! A small, fast, portable random generator (xoshiro256++ seeded by SplitMix64).
//!
//! Training derives one generator per (seed, epoch, purpose) with [`Rng::derive`], so the
//! random state at an epoch boundary is a pure function of the seed and the epoch: a run
//! resumed from a checkpoint draws exactly what the uninterrupted run drew.

/// The xoshiro256++ generator: 256 bits of state, 64-bit outputs.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator whose state is four SplitMix64 outputs from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Rng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// A generator for one purpose of one seed, e.g. `derive(seed, &[epoch, STREAM_VIEWS])`.
    pub fn derive(seed: u64, path: &[u64]) -> Self {
        let mut x = seed;
        let mut h = splitmix64(&mut x);
        for &p in path {
            let mut y = h ^ p.wrapping_mul(0xd6e8_feb8_6659_fd93);
            h = splitmix64(&mut y);
        }
        Rng::new(h)
    }

    /// The next 64 uniformly random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 random bits.
    #[inline]
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (n > 0), without modulo bias worth mentioning (Lemire's
    /// multiply-shift on 64 bits).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Pick one element of a non-empty slice.
    #[inline]
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }

    /// Fill `out` with standard normal draws (Box-Muller on pairs of 53-bit uniforms).
    pub fn fill_normal(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let u1 = 1.0 - self.f64(); // (0, 1]: the logarithm stays finite
            let u2 = self.f64();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            pair[0] = (r * a.cos()) as f32;
            if let Some(v) = pair.get_mut(1) {
                *v = (r * a.sin()) as f32;
            }
        }
    }

    /// Fill `out` with a dropout mask: 0 with probability `p` (to 2^-16), else `1 / (1 - p)`.
    pub fn dropout_mask(&mut self, out: &mut [f32], p: f32) {
        if p <= 0.0 {
            out.fill(1.0);
            return;
        }
        let keep = 1.0 / (1.0 - p);
        // Compare 16-bit uniforms against p (resolution 2^-16), four per 64-bit draw.
        let threshold = (p as f64 * 65536.0).round() as u64;
        // By blocks of 64: the 16 draws first (the 16-bit uniforms in draw order, low bits
        // first), then the comparisons, which vectorise.
        let mut blocks = out.chunks_exact_mut(64);
        for block in &mut blocks {
            let mut u = [0u16; 64];
            for four in u.chunks_exact_mut(4) {
                let r = self.next_u64();
                for (k, x) in four.iter_mut().enumerate() {
                    *x = (r >> (16 * k)) as u16;
                }
            }
            for (v, &x) in block.iter_mut().zip(&u) {
                *v = if (x as u64) < threshold { 0.0 } else { keep };
            }
        }
        let mut chunks = blocks.into_remainder().chunks_exact_mut(4);
        for four in &mut chunks {
            let r = self.next_u64();
            for (k, v) in four.iter_mut().enumerate() {
                *v = if (r >> (16 * k)) & 0xffff < threshold {
                    0.0
                } else {
                    keep
                };
            }
        }
        for v in chunks.into_remainder() {
            *v = if self.next_u64() & 0xffff < threshold {
                0.0
            } else {
                keep
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked mask is the one-value-at-a-time definition, draw for draw.
    #[test]
    fn dropout_mask_matches_its_definition() {
        for &p in &[0.1f32, 0.3, 0.5, 0.999] {
            for len in [0usize, 1, 3, 4, 5, 63, 64, 65, 130, 1001] {
                let (mut a, mut b) = (Rng::new(7), Rng::new(7));
                let mut got = vec![-1.0f32; len];
                a.dropout_mask(&mut got, p);
                let keep = 1.0 / (1.0 - p);
                let threshold = (p as f64 * 65536.0).round() as u64;
                let mut want = Vec::with_capacity(len);
                while want.len() + 4 <= len {
                    let r = b.next_u64();
                    for k in 0..4 {
                        let drop = (r >> (16 * k)) & 0xffff < threshold;
                        want.push(if drop { 0.0 } else { keep });
                    }
                }
                while want.len() < len {
                    let drop = b.next_u64() & 0xffff < threshold;
                    want.push(if drop { 0.0 } else { keep });
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "p {p}, {len} values");
                assert_eq!(
                    a.next_u64(),
                    b.next_u64(),
                    "p {p}, {len} values: the stream"
                );
            }
        }
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::derive(7, &[3, 1]);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::derive(7, &[3, 1]);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::derive(7, &[3, 2]);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_and_dropout_statistics() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let mean: f64 = (0..n).map(|_| r.f32() as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        let mut counts = [0usize; 7];
        for _ in 0..n {
            counts[r.below(7)] += 1;
        }
        for c in counts {
            assert!((c as f64 / n as f64 - 1.0 / 7.0).abs() < 0.005);
        }
        let mut m = vec![0f32; n + 1];
        r.dropout_mask(&mut m, 0.3);
        let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / m.len() as f64;
        assert!((dropped - 0.3).abs() < 0.005, "{dropped}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    }

    #[test]
    fn normal_statistics() {
        let mut r = Rng::new(3);
        let mut z = vec![0f32; 200_001];
        r.fill_normal(&mut z);
        let n = z.len() as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
            "{mean} {var}"
        );
    }
}
