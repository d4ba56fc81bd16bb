//! Approximate search with an HNSW graph (`instant-distance`), kept for comparison.

use super::*;

/// A row of the data as an `instant-distance` point (squared Euclidean or Manhattan).
#[derive(Clone, Copy)]
struct Row<'a> {
    v: &'a [f32],
    manhattan: bool,
}

impl instant_distance::Point for Row<'_> {
    fn distance(&self, other: &Self) -> f32 {
        if self.manhattan {
            manhattan(self.v, other.v)
        } else {
            squared_euclidean(self.v, other.v)
        }
    }
}

/// Approximate search with an HNSW graph (`instant-distance`). The graph is built on one
/// thread: built in parallel, the order in which points join it depends on scheduling, and
/// so do the neighbours found (different results for one seed under load or with another
/// thread count). The searches, read-only, run in parallel.
pub(super) fn hnsw_rows(w: Work, metric: Metric, s: &Search) -> Rows {
    let Work { r, q, d, k } = w;
    let manhattan = metric == Metric::Manhattan;
    let points: Vec<Row> = r.chunks(d).map(|v| Row { v, manhattan }).collect();
    let ef = s.ef.max(k);
    let builder = instant_distance::Builder::default()
        .ef_construction(ef.max(64))
        .ef_search(ef)
        .seed(s.seed);
    let (index, ids) = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(one) => one.install(|| builder.build_hnsw(points)),
        // No thread to spare (the system refused one): build here, as before.
        Err(_) => builder.build_hnsw(points),
    };
    let mut original = vec![0u32; r.len() / d];
    for (orig, pid) in ids.iter().enumerate() {
        original[pid.into_inner() as usize] = orig as u32;
    }
    q.par_chunks(d)
        .map_init(instant_distance::Search::default, |search, v| {
            let p = Row { v, manhattan };
            let mut row: Vec<(f32, u32)> = index
                .search(&p, search)
                .take(k)
                .map(|it| (it.distance, original[it.pid.into_inner() as usize]))
                .collect();
            // The graph may return fewer than k (tiny or disconnected data): fill exactly.
            if row.len() < k {
                let mut top = TopK::new(k);
                for (j, rv) in r.chunks(d).enumerate() {
                    top.push(Row { v: rv, manhattan }.dist_to(&p), j as u32);
                }
                row = top.items;
            }
            row
        })
        .collect()
}

impl Row<'_> {
    fn dist_to(&self, other: &Self) -> f32 {
        instant_distance::Point::distance(self, other)
    }
}
