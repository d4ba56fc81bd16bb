//! Exact search: blocked matrix multiplies for Euclidean and cosine distance (one pass can
//! serve both directions, [`knn_both_ways`]), direct tiles for Manhattan distance.

use super::*;
use crate::numerics::scan::{norms, tiles, REF_TILE};

pub(super) const QUERY_BLOCK: usize = 128;

/// Exact search (see the module notes).
pub fn exact_query(reference: &[f32], query: &[f32], d: usize, k: usize, metric: Metric) -> Knn {
    search(reference, query, d, k, metric, |w| exact_rows(w, metric))
}

/// The exact top-k of every query row among the reference rows.
pub(super) fn exact_rows(w: Work, metric: Metric) -> Rows {
    let Work { r, q, d, k } = w;
    if metric == Metric::Manhattan {
        q.par_chunks(QUERY_BLOCK * d)
            .flat_map_iter(|qb| manhattan_block(r, qb, d, k))
            .collect()
    } else {
        let r_norm = norms(r, d);
        q.par_chunks(QUERY_BLOCK * d)
            .flat_map_iter(|qb| euclidean_block(r, &r_norm, qb, d, k))
            .collect()
    }
}

/// Top-k by squared Euclidean distance of one block of query rows, one matrix multiply per
/// reference tile.
pub(super) fn euclidean_block(
    r: &[f32],
    r_norm: &[f32],
    qb: &[f32],
    d: usize,
    k: usize,
) -> Vec<Vec<(f32, u32)>> {
    let q_norm: Vec<f32> = qb.chunks(d).map(|x| dot(x, x)).collect();
    two_way_block(r, r_norm, qb, &q_norm, 0, d, k, None)
}

/// The `k` nearest `b` rows of every `a` row and the `k` nearest `a` rows of every `b` row
/// (what mutual-nearest-neighbour search needs), exact. For Euclidean and cosine distance
/// both directions come from one pass over the `a x b` distances; each is identical to
/// the corresponding [`knn_query`].
pub fn knn_both_ways(a: &[f32], b: &[f32], d: usize, k: usize, metric: Metric) -> (Knn, Knn) {
    let n_a = a.len().checked_div(d).unwrap_or(0);
    let n_b = b.len().checked_div(d).unwrap_or(0);
    if metric == Metric::Manhattan || n_a == 0 || n_b == 0 {
        return (
            exact_query(b, a, d, k, metric),
            exact_query(a, b, d, k, metric),
        );
    }
    let (ra, rb) = (searched_rows(a, d, metric), searched_rows(b, d, metric));
    let (ra, rb) = (&ra[..], &rb[..]);
    let (k_ab, k_ba) = (k.min(n_b), k.min(n_a));
    let (a_norm, b_norm) = (norms(ra, d), norms(rb, d));
    type Acc = (Vec<(usize, Vec<Vec<(f32, u32)>>)>, Vec<TopK>);
    let new_acc = || -> Acc { (Vec::new(), (0..n_b).map(|_| TopK::new(k_ba)).collect()) };
    let (mut row_blocks, col_tops) = ra
        .par_chunks(QUERY_BLOCK * d)
        .enumerate()
        .fold(new_acc, |(mut rows, mut cols), (blk, qb)| {
            let first = blk * QUERY_BLOCK;
            rows.push((
                blk,
                two_way_block(
                    rb,
                    &b_norm,
                    qb,
                    &a_norm[first..first + qb.len() / d],
                    first,
                    d,
                    k_ab,
                    Some(&mut cols),
                ),
            ));
            (rows, cols)
        })
        .reduce(new_acc, |(mut r1, mut c1), (r2, c2)| {
            r1.extend(r2);
            c1.iter_mut().zip(&c2).for_each(|(x, y)| x.merge(y));
            (r1, c1)
        });
    row_blocks.sort_unstable_by_key(|(blk, _)| *blk);
    let rows: Vec<Vec<(f32, u32)>> = row_blocks.into_iter().flat_map(|(_, r)| r).collect();
    let cols: Vec<Vec<(f32, u32)>> = col_tops.into_iter().map(|t| t.items).collect();
    (
        finish(rows, k_ab, b, a, d, metric),
        finish(cols, k_ba, a, b, d, metric),
    )
}

/// One block of `a` rows (the first is row `first` of `a`) against all of `b`, one matrix
/// multiply per tile of `b`: returns the rows' top-k and, when `cols` is given, offers every
/// distance to the columns' top-k.
#[allow(clippy::too_many_arguments)]
fn two_way_block(
    rb: &[f32],
    b_norm: &[f32],
    qb: &[f32],
    q_norm: &[f32],
    first: usize,
    d: usize,
    k: usize,
    cols: Option<&mut [TopK]>,
) -> Vec<Vec<(f32, u32)>> {
    let mut tops: Vec<TopK> = q_norm.iter().map(|_| TopK::new(k)).collect();
    match cols {
        Some(cols) => {
            let mut bound: Vec<f32> = cols.iter().map(|t| t.bound()).collect();
            tiles(
                &mut tops,
                rb,
                b_norm,
                qb,
                q_norm,
                0,
                d,
                Some((cols, &mut bound, first)),
            );
        }
        None => tiles(&mut tops, rb, b_norm, qb, q_norm, 0, d, None),
    }
    tops.into_iter().map(|t| t.items).collect()
}

fn manhattan_block(r: &[f32], qb: &[f32], d: usize, k: usize) -> Vec<Vec<(f32, u32)>> {
    let nq = qb.len() / d;
    let n_ref = r.len() / d;
    let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
    let mut start = 0;
    while start < n_ref {
        let nt = REF_TILE.min(n_ref - start);
        for (qi, top) in tops.iter_mut().enumerate() {
            let qv = &qb[qi * d..(qi + 1) * d];
            let mut bound = top.bound();
            for t in start..start + nt {
                let dist = manhattan(qv, &r[t * d..(t + 1) * d]);
                if dist < bound {
                    top.push(dist, t as u32);
                    bound = top.bound();
                }
            }
        }
        start += nt;
    }
    tops.into_iter().map(|t| t.items).collect()
}
