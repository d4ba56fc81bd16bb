//! CLAIRE's pairs: seed pairs (mutual nearest neighbours across every pair of batches,
//! filtered as Seurat filters its anchors) and intra-batch nearest neighbours.
//!
//! The work splits into independent jobs (one per batch pair, plus the KNN lists) so a
//! workflow can scatter them and [`merge`] the shards into exactly what one run writes:
//! seed rows (kind `mnn`, `i < j`) sorted by (i, j), then KNN rows (kind `knn`) by cell
//! and rank. Which jobs a table holds is recorded in its last provenance step
//! (`params.shard`), which is what [`merge`] checks for completeness.

use crate::contract::{Categorical, CellsTable, Column, PairKind, PairsTable, Step, ValueKind};
use crate::integrate::cca::{cca, cca_csr, top_dim_features, CcaOptions};
use crate::integrate::mnn::{filter_pairs, mutual_nearest, Pair};
use crate::numerics::blocked::pca_rows;
use crate::numerics::neighbors::{knn_with, l2_normalize_rows, Metric, Search};
use crate::numerics::pca::{pca_with, Solver};
use crate::{bail, Error, Result};
use serde::{Deserialize, Serialize};

/// Space in which seeds are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// Seurat-style CCA of each batch pair (CLAIRE's released pipeline).
    #[default]
    Cca,
    /// The joint PCA of all cells (cheaper).
    Pca,
}

impl Params {
    /// The filter's k against a partner batch of `n` cells.
    pub fn k_filter_for(&self, n: usize) -> usize {
        if self.k_filter_frac > 0.0 {
            let k = (self.k_filter_frac * n as f64).ceil() as usize;
            k.max(self.k_anchor).min(self.k_filter)
        } else {
            self.k_filter
        }
    }
}

/// Parameters of the pairs stage (`integrate::stage::PairsArgs::params`; its flags' defaults
/// are CLAIRE's / Seurat's `FindIntegrationAnchors`).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub space: Space,
    pub k_anchor: usize,
    pub k_filter: usize,
    /// With a positive value the filter's k scales with the partner batch: `ceil(frac * n)`,
    /// at least `k_anchor` and at most `k_filter` (see [`Params::k_filter_for`]).
    pub k_filter_frac: f64,
    /// Genes used by the filter at most (Seurat's `max.features`).
    pub max_features: usize,
    pub n_cca: usize,
    /// Power iterations of the randomized SVD behind the CCA.
    pub cca_iters: usize,
    pub knn: usize,
    pub n_pcs: usize,
    pub knn_metric: Metric,
    pub seed: u64,
    pub search: Search,
    /// Densify at most this many MiB of expression (f32) for one CCA or the joint PCA; above,
    /// work on blocks of rows of the sparse matrix ([`crate::numerics::blocked`]).
    pub max_dense_mb: usize,
}

/// What one run (or shard) computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// All batches of the cells table, in order.
    pub batches: Vec<String>,
    /// Batch pairs whose seeds are included (names, in batch order).
    pub pairs: Vec<(String, String)>,
    /// Whether the intra-batch KNN rows are included.
    pub knn: bool,
}

impl Shard {
    /// The seeds of one batch pair (names put in batch order).
    pub fn pair(batches: &[String], a: &str, b: &str) -> Result<Shard> {
        let pos = |name: &str| -> Result<usize> {
            batches.iter().position(|c| c == name).ok_or_else(|| {
                Error::new(format!(
                    "no batch '{}' (batches: {})",
                    name,
                    batches.join(", ")
                ))
                .field("batch")
            })
        };
        let (pa, pb) = (pos(a)?, pos(b)?);
        if pa == pb {
            bail!("--batch-a and --batch-b name the same batch '{a}'");
        }
        let (lo, hi) = (pa.min(pb), pa.max(pb));
        Ok(Shard {
            batches: batches.to_vec(),
            pairs: vec![(batches[lo].clone(), batches[hi].clone())],
            knn: false,
        })
    }
    /// Every batch pair and the KNN lists.
    pub fn full(batches: &[String]) -> Shard {
        let mut pairs = Vec::new();
        for a in 0..batches.len() {
            for b in a + 1..batches.len() {
                pairs.push((batches[a].clone(), batches[b].clone()));
            }
        }
        Shard {
            batches: batches.to_vec(),
            pairs,
            knn: true,
        }
    }
}

/// Seed counts of one batch pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairReport {
    pub a: String,
    pub b: String,
    pub mutual: usize,
    pub kept: usize,
    /// (same type, labelled) among kept seeds, when labels are given.
    pub accuracy: Option<(usize, usize)>,
    /// Seconds spent in the search space (CCA), the mutual search and the filter.
    pub seconds: [f64; 3],
}

/// Whether `rows` cells x all genes of `cells` fit in `max_dense_mb` MiB as dense f32.
fn fits_dense(cells: &CellsTable, rows: usize, max_dense_mb: usize) -> bool {
    (rows as u128) * (cells.n_genes() as u128) * 4 <= (max_dense_mb as u128) << 20
}

/// Dense copy of columns `cols` (in that order) of some rows of a CSR matrix (`rows x cols`).
fn csr_columns(x: &crate::contract::Csr, rows: &[usize], cols: &[usize]) -> Vec<f32> {
    let m = cols.len();
    let mut pos = vec![u32::MAX; x.n_cols];
    for (t, &c) in cols.iter().enumerate() {
        pos[c] = t as u32;
    }
    let mut out = vec![0f32; rows.len() * m];
    for (o, &r) in out.chunks_mut(m.max(1)).zip(rows) {
        let (idx, val) = x.row(r);
        for (&c, &v) in idx.iter().zip(val) {
            let t = pos[c as usize];
            if t != u32::MAX {
                o[t as usize] = v;
            }
        }
    }
    out
}

/// The neighbour search each part of a shard uses (`auto` resolved by the batch sizes as
/// [`compute`] resolves it), for provenance: `"knn B"` and `"mnn A--B"` -> "exact",
/// "nndescent" or "hnsw".
pub fn searches_used(cells: &CellsTable, shard: &Shard, search: &Search) -> serde_json::Value {
    let members = batch_members(&cells.batch);
    let names = &cells.batch.categories;
    let size = |name: &str| {
        names
            .iter()
            .position(|c| c == name)
            .map_or(0, |c| members[c].len())
    };
    let mut m = serde_json::Map::new();
    if shard.knn {
        for (name, rows) in names.iter().zip(&members) {
            let n = rows.len();
            let used = search.method.resolve(n, n, 0).name();
            m.insert(format!("knn {name}"), used.into());
        }
    }
    for (a, b) in &shard.pairs {
        let (na, nb) = (size(a), size(b));
        let used = search.method.resolve(na.max(nb), na.min(nb), 0).name();
        m.insert(format!("mnn {a}--{b}"), used.into());
    }
    serde_json::Value::Object(m)
}

/// Cells of each batch (ascending rows).
fn batch_members(batch: &Categorical) -> Vec<Vec<usize>> {
    let mut m = vec![Vec::new(); batch.categories.len()];
    for (i, &c) in batch.codes.iter().enumerate() {
        m[c as usize].push(i);
    }
    m
}

/// Joint PCA of all cells, rows L2-normalised: `n x k` and the components (`k x g`). From a
/// dense copy when it fits in `max_dense_mb`, else from blocks of rows of the sparse matrix
/// (the same result: bit for bit on the exact route, within float rounding on the
/// randomized one).
fn joint_pca(cells: &CellsTable, p: &Params) -> (Vec<f32>, usize, Vec<f32>) {
    let (n, g) = (cells.n_cells(), cells.n_genes());
    let all: Vec<usize> = (0..n).collect();
    let (k, mut scores, components) = if fits_dense(cells, n, p.max_dense_mb) {
        let x = cells.x.to_dense_rows(&all);
        let r = pca_with(&x, n, g, p.n_pcs, p.seed, Solver::Auto);
        (r.k, r.scores, r.components)
    } else {
        crate::info!(
            "joint PCA on row blocks of the sparse matrix ({n} x {g} dense would exceed --max-dense-mb {})",
            p.max_dense_mb
        );
        pca_rows(&cells.x, &all, p.n_pcs, p.seed, Solver::Auto)
    };
    l2_normalize_rows(&mut scores, k);
    (scores, k, components)
}

/// Check the cells table can feed the pairs stage.
pub fn check_input(cells: &CellsTable) -> Result<()> {
    if cells.values == ValueKind::Counts {
        return Err(Error::new(
            "expected log-normalized expression, found raw counts (run cellweave-normalize first)",
        )
        .field("values"));
    }
    if cells.n_genes() == 0 {
        return Err(Error::new("no genes").field("genes"));
    }
    Ok(())
}

/// Seeds between batches `a` and `b` (codes) as global (i < j) pairs.
fn seeds_between(
    cells: &CellsTable,
    members: &[Vec<usize>],
    pca_space: Option<&(Vec<f32>, usize, Vec<f32>)>,
    a: usize,
    b: usize,
    p: &Params,
) -> (Vec<(u32, u32, f32)>, usize, [f64; 3]) {
    let clock = std::time::Instant::now();
    let (ra, rb) = (&members[a], &members[b]);
    let g = cells.n_genes();
    // the space of the mutual search and the genes of the filter
    let (ea, eb, k, features) = match (p.space, pca_space) {
        (Space::Pca, Some((scores, kp, comps))) => {
            let k = p.n_cca.min(*kp);
            let pick = |rows: &[usize]| -> Vec<f32> {
                let mut e = Vec::with_capacity(rows.len() * k);
                for &c in rows {
                    e.extend_from_slice(&scores[c * kp..c * kp + k]);
                }
                e
            };
            // loadings = components^T (genes x k)
            let mut load = vec![0f32; g * k];
            for c in 0..k {
                for j in 0..g {
                    load[j * k + c] = comps[c * g + j];
                }
            }
            let feats = top_dim_features(&load, g, k, 100, p.max_features);
            (pick(ra), pick(rb), k, feats)
        }
        _ => {
            let opts = CcaOptions {
                k: p.n_cca,
                oversample: 10,
                n_iter: p.cca_iters,
                seed: p.seed,
            };
            let c = if fits_dense(cells, ra.len() + rb.len(), p.max_dense_mb) {
                let xa = cells.x.to_dense_rows(ra);
                let xb = cells.x.to_dense_rows(rb);
                cca(&xa, &xb, g, &opts)
            } else {
                cca_csr(&cells.x, ra, rb, &opts)
            };
            let feats = top_dim_features(&c.loadings, c.genes.len(), c.k, 100, p.max_features)
                .into_iter()
                .map(|t| c.genes[t])
                .collect();
            (c.emb_a, c.emb_b, c.k, feats)
        }
    };
    if k == 0 {
        return (vec![], 0, [0.0; 3]);
    }
    let t_space = clock.elapsed().as_secs_f64();
    let (mut ea, mut eb) = (ea, eb);
    l2_normalize_rows(&mut ea, k);
    l2_normalize_rows(&mut eb, k);
    let mutual: Vec<Pair> = mutual_nearest(&ea, &eb, k, p.k_anchor, Metric::Euclidean, &p.search);
    let n_mutual = mutual.len();
    let t_mutual = clock.elapsed().as_secs_f64();
    let fa = csr_columns(&cells.x, ra, &features);
    let fb = csr_columns(&cells.x, rb, &features);
    let keep = filter_pairs(&mutual, &fa, &fb, features.len(), p.k_filter_for(rb.len()));
    let seeds = mutual
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(q, _)| {
            let (i, j) = (ra[q.i as usize] as u32, rb[q.j as usize] as u32);
            (i.min(j), i.max(j), q.distance)
        })
        .collect();
    let t_filter = clock.elapsed().as_secs_f64();
    (
        seeds,
        n_mutual,
        [t_space, t_mutual - t_space, t_filter - t_mutual],
    )
}

/// Intra-batch kNN rows (cell, neighbour, distance), by cell then rank; self excluded.
fn intra_batch_knn(
    members: &[Vec<usize>],
    emb: &[f32],
    d: usize,
    p: &Params,
) -> Vec<(u32, u32, f32)> {
    let n = emb.len() / d.max(1);
    let mut lists: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for rows in members {
        let mut sub = Vec::with_capacity(rows.len() * d);
        for &c in rows {
            sub.extend_from_slice(&emb[c * d..(c + 1) * d]);
        }
        let nn = knn_with(&sub, d, p.knn, p.knn_metric, false, &p.search);
        nn.relabel_into(&mut lists, rows, rows);
    }
    lists
        .into_iter()
        .enumerate()
        .flat_map(|(i, l)| l.into_iter().map(move |(j, dd)| (i as u32, j, dd)))
        .collect()
}

/// Fraction of seeds joining cells with the same label: (same, labelled).
pub fn seed_accuracy(t: &PairsTable, labels: &Categorical) -> (usize, usize) {
    let (mut same, mut total) = (0, 0);
    for r in 0..t.len() {
        if t.kind[r] != PairKind::Mnn {
            continue;
        }
        let (a, b) = (labels.codes[t.i[r] as usize], labels.codes[t.j[r] as usize]);
        if a == Categorical::MISSING || b == Categorical::MISSING {
            continue;
        }
        total += 1;
        same += (a == b) as usize;
    }
    (same, total)
}

/// Compute the pairs of `shard` (which must name batches of `cells`). `labels`, when
/// given, only feeds the per-pair accuracy report.
pub fn compute(
    cells: &CellsTable,
    shard: &Shard,
    p: &Params,
    labels: Option<&Categorical>,
    mut log: impl FnMut(&PairReport),
) -> Result<PairsTable> {
    check_input(cells)?;
    let members = batch_members(&cells.batch);
    let code = |name: &str| -> Result<usize> {
        cells
            .batch
            .categories
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| {
                Error::new(format!(
                    "no batch '{}' (batches: {})",
                    name,
                    cells.batch.categories.join(", ")
                ))
                .field("batch")
            })
    };
    let mut jobs = Vec::new();
    for (a, b) in &shard.pairs {
        let (ca, cb) = (code(a)?, code(b)?);
        if ca == cb {
            bail!("--batch-a and --batch-b name the same batch '{a}'");
        }
        jobs.push((ca.min(cb), ca.max(cb)));
    }
    let need_all = shard.knn || (p.space == Space::Pca && !jobs.is_empty());
    let pca_space = need_all.then(|| {
        let timer = crate::cli::Timer::start("joint PCA");
        let r = joint_pca(cells, p);
        timer.done();
        r
    });

    let mut table = PairsTable {
        n_cells: cells.n_cells(),
        fingerprint: cells.fingerprint(),
        ..Default::default()
    };
    let mut seeds = Vec::new();
    for &(a, b) in &jobs {
        let (s, mutual, seconds) = seeds_between(cells, &members, pca_space.as_ref(), a, b, p);
        let accuracy = labels.map(|l| {
            let same = s.iter().filter(|(i, j, _)| {
                let (x, y) = (l.codes[*i as usize], l.codes[*j as usize]);
                x != Categorical::MISSING && x == y
            });
            let labelled = s.iter().filter(|(i, j, _)| {
                l.codes[*i as usize] != Categorical::MISSING
                    && l.codes[*j as usize] != Categorical::MISSING
            });
            (same.count(), labelled.count())
        });
        log(&PairReport {
            a: cells.batch.categories[a].clone(),
            b: cells.batch.categories[b].clone(),
            mutual,
            kept: s.len(),
            accuracy,
            seconds,
        });
        seeds.extend(s);
    }
    seeds.sort_by_key(|&(i, j, _)| (i, j));
    for (i, j, d) in seeds {
        table.push(PairKind::Mnn, i, j, d, f32::NAN);
    }
    if shard.knn {
        let (emb, d, _) = pca_space.as_ref().expect("PCA computed for the KNN");
        let timer = crate::cli::Timer::start("intra-batch KNN");
        for (i, j, dd) in intra_batch_knn(&members, emb, *d, p) {
            table.push(PairKind::Knn, i, j, dd, f32::NAN);
        }
        timer.done();
    }
    Ok(table)
}

/// The shard description recorded in a table's last provenance step, if any.
pub fn shard_of(t: &PairsTable) -> Option<Shard> {
    let step = t.provenance.last()?;
    serde_json::from_value(step.params.get("shard")?.clone()).ok()
}

/// A provenance step whose parameters are `args` plus the shard description.
pub fn step_with_shard(tool: &str, args: &impl Serialize, shard: &Shard) -> Step {
    let mut step = Step::new(tool, args);
    if let serde_json::Value::Object(m) = &mut step.params {
        m.insert(
            "shard".into(),
            serde_json::to_value(shard).unwrap_or_default(),
        );
    }
    step
}

/// A seed accuracy `(same label, seeds)` as the logs print it: `0.912 (456/500)`, or `n/a`
/// without seeds.
pub fn accuracy_text((same, total): (usize, usize)) -> String {
    if total == 0 {
        "n/a".into()
    } else {
        format!("{:.3} ({same}/{total})", same as f64 / total as f64)
    }
}

/// Join shards into the table one run over all batch pairs writes. Every shard must refer
/// to the same cells; together they must cover every batch pair once and the KNN once.
/// `names` label the shards in errors. Returns the table (without a merge step) and the
/// combined shard description.
pub fn merge(shards: &[PairsTable], names: &[String]) -> Result<(PairsTable, Shard)> {
    let first = shards
        .first()
        .ok_or_else(|| Error::new("nothing to merge"))?;
    let mut desc: Vec<Shard> = Vec::new();
    for (t, name) in shards.iter().zip(names) {
        t.check_cells(&first.fingerprint)
            .map_err(|e| e.file(name))?;
        if t.n_cells != first.n_cells {
            return Err(Error::new(format!(
                "{} cells here, {} in {}",
                t.n_cells, first.n_cells, names[0]
            ))
            .field(crate::contract::meta::N_CELLS)
            .file(name));
        }
        let s = shard_of(t).ok_or_else(|| {
            Error::new("no shard description in the provenance (expected a table written by cellweave-pairs)")
                .field("cellweave.provenance")
                .file(name)
        })?;
        if s.batches
            != desc
                .first()
                .map(|d| d.batches.clone())
                .unwrap_or_else(|| s.batches.clone())
        {
            return Err(Error::new("the shards were computed on different batches")
                .file(name)
                .field("batch"));
        }
        desc.push(s);
    }
    let batches = desc[0].batches.clone();
    let full = Shard::full(&batches);
    let mut seen: Vec<Option<usize>> = vec![None; full.pairs.len()];
    let mut knn_from: Option<usize> = None;
    for (s_idx, s) in desc.iter().enumerate() {
        for pair in &s.pairs {
            let pos = full.pairs.iter().position(|q| q == pair).ok_or_else(|| {
                Error::new(format!(
                    "batch pair {} / {} is not one of the batch pairs",
                    pair.0, pair.1
                ))
                .file(&names[s_idx])
            })?;
            if let Some(prev) = seen[pos] {
                bail!(
                    "batch pair {} / {} is in both {} and {}",
                    pair.0,
                    pair.1,
                    names[prev],
                    names[s_idx]
                );
            }
            seen[pos] = Some(s_idx);
        }
        if s.knn {
            if let Some(prev) = knn_from {
                bail!(
                    "the KNN lists are in both {} and {}",
                    names[prev],
                    names[s_idx]
                );
            }
            knn_from = Some(s_idx);
        }
    }
    let missing: Vec<String> = full
        .pairs
        .iter()
        .zip(&seen)
        .filter(|(_, s)| s.is_none())
        .map(|(p, _)| format!("{} / {}", p.0, p.1))
        .collect();
    if !missing.is_empty() {
        bail!("no shard holds the seeds of batch pair(s) {} (run cellweave-pairs --batch-a A --batch-b B for each)", missing.join(", "));
    }
    let knn_from = knn_from.ok_or_else(|| {
        Error::new("no shard holds the KNN lists (run cellweave-pairs --knn-only)")
    })?;
    let mut out = PairsTable {
        n_cells: first.n_cells,
        fingerprint: first.fingerprint.clone(),
        ..Default::default()
    };
    let mut seeds: Vec<(u32, u32, f32, f32)> = Vec::new();
    for t in shards {
        for r in 0..t.len() {
            if t.kind[r] == PairKind::Mnn {
                seeds.push((t.i[r], t.j[r], t.distance[r], t.posterior[r]));
            }
        }
    }
    seeds.sort_by_key(|s| (s.0, s.1));
    for (i, j, d, p) in seeds {
        out.push(PairKind::Mnn, i, j, d, p);
    }
    let k = &shards[knn_from];
    for r in 0..k.len() {
        if k.kind[r] == PairKind::Knn {
            out.push(PairKind::Knn, k.i[r], k.j[r], k.distance[r], k.posterior[r]);
        }
    }
    // the cells' history once, then each shard's own step
    out.provenance = first.provenance[..first.provenance.len() - 1].to_vec();
    out.provenance
        .extend(shards.iter().filter_map(|t| t.provenance.last().cloned()));
    Ok((out, full))
}

/// What [`refine`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Refinement {
    pub seeds_before: usize,
    pub seeds_after: usize,
    /// The mixture fitted to the seeds' cosine similarities (None when there were fewer
    /// than two distinct similarities: every seed is then kept with posterior 1).
    pub gmm: Option<crate::numerics::gmm::Gmm>,
    /// The mixture's overlap ([`Gmm::overlap`](crate::numerics::gmm::Gmm::overlap); None without a mixture).
    pub overlap: Option<f64>,
    /// The overlap was above `max_overlap`: every seed was kept (with its posterior).
    pub kept_all: bool,
    /// Mean cosine similarity of the seeds before and after.
    pub mean_similarity: [f64; 2],
}

/// CLAIRE's refinement: the cosine similarity of each seed pair in an embedding (`dim`
/// numbers per cell, rows in the order of the pairs table's cells), a two-component
/// Gaussian mixture fitted to them, and the seeds whose posterior of the higher-mean
/// component is at least `threshold` kept, with that posterior recorded. When the two
/// components overlap more than `max_overlap` ([`Gmm::overlap`](crate::numerics::gmm::Gmm::overlap): the mixture
/// does not separate two groups of seeds) every seed is kept. KNN rows are kept unchanged.
pub fn refine(
    t: &PairsTable,
    emb: &[f32],
    dim: usize,
    threshold: f64,
    max_overlap: f64,
) -> Result<(PairsTable, Refinement)> {
    if emb.len() != t.n_cells * dim {
        bail!(
            "the embedding has {} values, expected {} cells x {dim}",
            emb.len(),
            t.n_cells
        );
    }
    let seeds: Vec<usize> = (0..t.len())
        .filter(|&r| t.kind[r] == PairKind::Mnn)
        .collect();
    let sim: Vec<f64> = seeds
        .iter()
        .map(|&r| {
            let (i, j) = (t.i[r] as usize, t.j[r] as usize);
            1.0 - crate::numerics::neighbors::distance(
                &emb[i * dim..(i + 1) * dim],
                &emb[j * dim..(j + 1) * dim],
                Metric::Cosine,
            ) as f64
        })
        .collect();
    let distinct = sim.iter().any(|&v| v != sim[0]);
    let gmm = if distinct {
        Some(crate::numerics::gmm::fit(&sim, 1000, 1e-9)?)
    } else {
        None
    };
    let overlap = gmm.as_ref().map(|g| g.overlap());
    let kept_all = overlap.is_some_and(|o| o > max_overlap);
    let threshold = if kept_all { 0.0 } else { threshold };
    let mut out = PairsTable {
        n_cells: t.n_cells,
        fingerprint: t.fingerprint.clone(),
        provenance: t.provenance.clone(),
        ..Default::default()
    };
    let mut post = vec![1.0f64; t.len()];
    let mut sim_of = vec![f64::NAN; t.len()];
    for (&r, &s) in seeds.iter().zip(&sim) {
        sim_of[r] = s;
        if let Some(g) = &gmm {
            post[r] = g.posterior(s)[1];
        }
    }
    let (mut kept_sum, mut kept) = (0.0, 0usize);
    for (r, (&p, &s)) in post.iter().zip(&sim_of).enumerate() {
        if t.kind[r] != PairKind::Mnn {
            out.push(t.kind[r], t.i[r], t.j[r], t.distance[r], t.posterior[r]);
        } else if p >= threshold {
            out.push(PairKind::Mnn, t.i[r], t.j[r], t.distance[r], p as f32);
            kept_sum += s;
            kept += 1;
        }
    }
    let mean = |v: f64, n: usize| if n == 0 { f64::NAN } else { v / n as f64 };
    let report = Refinement {
        seeds_before: seeds.len(),
        seeds_after: kept,
        gmm,
        overlap,
        kept_all,
        mean_similarity: [mean(sim.iter().sum(), sim.len()), mean(kept_sum, kept)],
    };
    Ok((out, report))
}

/// The labels column used for seed accuracy, if the cells table has it.
pub fn labels(cells: &CellsTable, name: &str) -> Option<Categorical> {
    cells.column(name).map(|c| match c {
        Column::Cat(c) => c,
        other => other.to_categorical(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(seeds: &[(u32, u32)], knn: &[(u32, u32)], shard: &Shard) -> PairsTable {
        let mut t = PairsTable {
            n_cells: 10,
            fingerprint: "10:abc".into(),
            ..Default::default()
        };
        for &(i, j) in seeds {
            t.push(PairKind::Mnn, i, j, 0.5, f32::NAN);
        }
        for &(i, j) in knn {
            t.push(PairKind::Knn, i, j, 0.1, f32::NAN);
        }
        t.provenance.push(step_with_shard(
            "cellweave-pairs",
            &serde_json::json!({}),
            shard,
        ));
        t
    }

    #[test]
    fn refine_keeps_the_similar_seeds() {
        // 20 cells on the unit circle, 0.1 rad apart: seeds 0.1-0.2 rad apart (cosine
        // ~0.99) are true, seeds 1.5 rad apart (cosine ~0.07) are not
        let emb: Vec<f32> = (0..20)
            .flat_map(|i| [(0.1 * i as f32).cos(), (0.1 * i as f32).sin()])
            .collect();
        let mut t = PairsTable {
            n_cells: 20,
            fingerprint: "20:x".into(),
            ..Default::default()
        };
        let good = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 12)];
        let bad = [(0, 15), (1, 16), (2, 17), (3, 18), (4, 19)];
        for &(i, j) in good.iter().chain(&bad) {
            t.push(PairKind::Mnn, i, j, 0.0, f32::NAN);
        }
        t.push(PairKind::Knn, 0, 4, 0.1, f32::NAN);
        let (r, rep) = refine(&t, &emb, 2, 0.5, 1.0).unwrap();
        assert_eq!(rep.seeds_before, 11);
        let kept: Vec<(u32, u32)> = (0..r.len())
            .filter(|&q| r.kind[q] == PairKind::Mnn)
            .map(|q| (r.i[q], r.j[q]))
            .collect();
        assert_eq!(kept, good.to_vec());
        assert!(r.posterior[..6].iter().all(|p| (0.5..=1.0).contains(p)));
        assert_eq!(r.kind.last(), Some(&PairKind::Knn));
        assert!(rep.mean_similarity[1] > rep.mean_similarity[0]);
        assert!(refine(&t, &emb[..10], 2, 0.5, 1.0).is_err());
    }

    #[test]
    fn merge_checks_coverage() {
        let batches: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let sh = |pairs: &[(&str, &str)], knn: bool| Shard {
            batches: batches.clone(),
            pairs: pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            knn,
        };
        let t1 = table(&[(3, 7), (0, 5)], &[], &sh(&[("x", "y")], false));
        let t2 = table(&[(1, 2)], &[], &sh(&[("x", "z"), ("y", "z")], false));
        let t3 = table(&[], &[(0, 1), (1, 0)], &sh(&[], true));
        let names: Vec<String> = (1..=3).map(|i| format!("s{i}")).collect();
        let (m, full) = merge(&[t1.clone(), t2.clone(), t3.clone()], &names).unwrap();
        assert_eq!(full, Shard::full(&batches));
        assert_eq!(m.i, vec![0, 1, 3, 0, 1]);
        assert_eq!(m.j, vec![5, 2, 7, 1, 0]);
        assert_eq!(m.kind[3], PairKind::Knn);
        // a missing pair, a repeated pair, missing KNN, other cells
        let e = merge(&[t1.clone(), t3.clone()], &names).unwrap_err();
        assert!(e.to_string().contains("x / z, y / z"), "{e}");
        let e = merge(&[t1.clone(), t1.clone(), t2.clone(), t3.clone()], &names).unwrap_err();
        assert!(e.to_string().contains("in both"), "{e}");
        assert!(merge(&[t1.clone(), t2.clone()], &names)
            .unwrap_err()
            .to_string()
            .contains("KNN"));
        let mut other = t3.clone();
        other.fingerprint = "10:def".into();
        let e = merge(&[t1, t2, other], &names).unwrap_err();
        assert!(
            e.to_string().contains("s3") && e.to_string().contains("fingerprint"),
            "{e}"
        );
    }
}
