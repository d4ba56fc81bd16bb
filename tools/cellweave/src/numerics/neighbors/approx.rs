//! Approximate search of another set of rows: an NN-descent graph ([`super::nndescent`])
//! or an inverted file ([`super::ivf`]) of the reference rows.

use super::*;
use crate::numerics::ivf;
use crate::numerics::scan::norms;

/// Approximate search: an NN-descent graph of the reference rows, searched from each query
/// row (see [`super::nndescent`]). The graph holds at least 15 neighbours per row.
pub(super) fn descent_rows(w: Work, metric: Metric, s: &Search) -> Rows {
    let Work { r, q, d, k } = w;
    let space = nndescent::Space {
        data: r,
        d,
        manhattan: metric == Metric::Manhattan,
    };
    let n = r.len() / d;
    let kg = k.max(GRAPH_K);
    let g = nndescent::build(&space, kg, &nndescent::Params::for_size(n, kg, s.seed));
    log_rounds(n, &g);
    g.search(&space, q, k, s.ef.max(k), SEARCH_EPSILON)
}

/// Approximate search by an inverted file of the reference rows (see [`super::ivf`]).
pub(super) fn ivf_rows(w: Work, s: &Search) -> Rows {
    let Work { r, q, d, k } = w;
    let n = r.len() / d;
    let p = ivf::Params::for_size(n, k, s.seed);
    let mut rows = ivf::search(r, q, d, k, &p);
    // A query whose probed lists hold fewer than k rows (tiny lists): complete exactly.
    let short: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].len() < k).collect();
    if !short.is_empty() {
        let qs: Vec<f32> = short
            .iter()
            .flat_map(|&i| q[i * d..(i + 1) * d].iter().copied())
            .collect();
        let fill = exact::euclidean_block(r, &norms(r, d), &qs, d, k);
        for (i, row) in short.into_iter().zip(fill) {
            rows[i] = row;
        }
    }
    crate::info!(
        "  IVF on {n} rows: {} lists, {} probes per query, at most {} lists per group",
        p.lists,
        p.probes,
        p.max_lists
    );
    rows
}

/// Log the rounds an NN-descent graph of `n` rows took.
pub(super) fn log_rounds(n: usize, g: &nndescent::Graph) {
    crate::info!(
        "  NN-descent on {n} rows: {} rounds (entries changed: {:?})",
        g.rounds().len(),
        g.rounds()
    );
}

/// Neighbours per row of the graph searched by [`descent_rows`] (at least).
const GRAPH_K: usize = 15;
/// How far beyond the worst kept candidate [`descent_rows`]'s search still expands
/// (relative to the searched distance), as pynndescent's `epsilon`.
const SEARCH_EPSILON: f32 = 0.1;
