//! Distances between two vectors, summed over 8 lanes so the compiler vectorises them:
//! the kernels of every neighbour search (exact, HNSW, NN-descent).

/// Sum over 8 lanes so the compiler vectorises it (f32 adds are not reassociated).
#[inline]
fn lanes8(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f(x[l], y[l]);
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += f(*x, *y);
    }
    acc.iter().sum::<f32>() + s
}

/// Squared Euclidean distance.
#[inline]
pub fn squared_euclidean(a: &[f32], b: &[f32]) -> f32 {
    lanes8(a, b, |x, y| (x - y) * (x - y))
}

/// Manhattan (L1) distance.
#[inline]
pub fn manhattan(a: &[f32], b: &[f32]) -> f32 {
    lanes8(a, b, |x, y| (x - y).abs())
}

/// Dot product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lanes8(a, b, |x, y| x * y)
}
