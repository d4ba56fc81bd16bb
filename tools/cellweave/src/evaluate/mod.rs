//! Integration metrics: the scIB set as scib-metrics 0.5 defines it, the CLAIRE paper's set,
//! and their aggregates.
//!
//! [`score_embedding`] computes the selected metrics of one embedding from one pass over all
//! cell pairs ([`pairwise`]: silhouette sums and the exact kNN), the fuzzy connectivities of
//! the kNN graph ([`crate::numerics::graph::fuzzy_connectivities`], as scanpy and scib-metrics build
//! them) and the clusterings of [`crate::numerics::cluster`]. Names follow scib-metrics; the CLAIRE
//! paper's metrics carry a `claire_` prefix. Definitions and every known difference from
//! scib-metrics are in `schemas/scores.md`.

pub mod aggregate;
pub mod clustering;
pub mod connectivity;
pub mod imputation;
pub mod input;
pub mod kbet;
pub mod lisi;
pub mod pairwise;
pub mod pcr;
pub mod report;
pub mod silhouette;
pub mod stage;

use crate::numerics::cluster::Graph;
use crate::numerics::neighbors::{Knn, Method, Metric, Search};
use crate::{bail, Result};
use pairwise::{truncate, Needs};
use std::time::Instant;

/// A metric that can be selected (`--metrics`). Several produce two values (`_nmi`, `_ari`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricId {
    /// `silhouette_label`.
    SilhouetteLabel,
    /// `silhouette_batch`.
    SilhouetteBatch,
    /// `bras`.
    Bras,
    /// `isolated_labels`.
    IsolatedLabels,
    /// `clisi_knn`.
    ClisiKnn,
    /// `ilisi_knn`.
    IlisiKnn,
    /// `kbet_per_label`.
    KbetPerLabel,
    /// `graph_connectivity`.
    GraphConnectivity,
    /// `nmi_ari_cluster_labels_leiden`.
    Leiden,
    /// `nmi_ari_cluster_labels_kmeans`.
    Kmeans,
    /// `pcr_comparison`.
    PcrComparison,
    /// `claire_casw`.
    ClaireCasw,
    /// `claire_basw`.
    ClaireBasw,
    /// `claire_kbet`.
    ClaireKbet,
    /// `claire_louvain`.
    ClaireLouvain,
}

impl MetricId {
    /// Every metric, in the order of the scores table.
    pub const ALL: [MetricId; 15] = [
        MetricId::SilhouetteLabel,
        MetricId::SilhouetteBatch,
        MetricId::Bras,
        MetricId::IsolatedLabels,
        MetricId::ClisiKnn,
        MetricId::IlisiKnn,
        MetricId::KbetPerLabel,
        MetricId::GraphConnectivity,
        MetricId::Leiden,
        MetricId::Kmeans,
        MetricId::PcrComparison,
        MetricId::ClaireCasw,
        MetricId::ClaireBasw,
        MetricId::ClaireKbet,
        MetricId::ClaireLouvain,
    ];

    /// The name used on the command line (scib-metrics' function names).
    pub fn name(self) -> &'static str {
        match self {
            MetricId::SilhouetteLabel => "silhouette_label",
            MetricId::SilhouetteBatch => "silhouette_batch",
            MetricId::Bras => "bras",
            MetricId::IsolatedLabels => "isolated_labels",
            MetricId::ClisiKnn => "clisi_knn",
            MetricId::IlisiKnn => "ilisi_knn",
            MetricId::KbetPerLabel => "kbet_per_label",
            MetricId::GraphConnectivity => "graph_connectivity",
            MetricId::Leiden => "nmi_ari_cluster_labels_leiden",
            MetricId::Kmeans => "nmi_ari_cluster_labels_kmeans",
            MetricId::PcrComparison => "pcr_comparison",
            MetricId::ClaireCasw => "claire_casw",
            MetricId::ClaireBasw => "claire_basw",
            MetricId::ClaireKbet => "claire_kbet",
            MetricId::ClaireLouvain => "claire_louvain",
        }
    }

    /// The names of the values it produces.
    pub fn outputs(self) -> Vec<String> {
        match self {
            MetricId::Leiden | MetricId::Kmeans | MetricId::ClaireLouvain => {
                vec![
                    format!("{}_nmi", self.name()),
                    format!("{}_ari", self.name()),
                ]
            }
            other => vec![other.name().to_string()],
        }
    }

    /// Bio conservation (true) or batch correction (false), as scib-metrics groups them.
    pub fn is_bio(self) -> bool {
        matches!(
            self,
            MetricId::SilhouetteLabel
                | MetricId::IsolatedLabels
                | MetricId::ClisiKnn
                | MetricId::Leiden
                | MetricId::Kmeans
                | MetricId::ClaireCasw
                | MetricId::ClaireLouvain
        )
    }

    /// Parse a comma-separated selection: metric names, the output names (`..._nmi`), or the
    /// groups `all`, `scib`, `claire`, `bio`, `batch`.
    pub fn parse_list(spec: &str) -> Result<Vec<MetricId>> {
        let mut out: Vec<MetricId> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let group: Vec<MetricId> = match item {
                "all" => MetricId::ALL.to_vec(),
                "scib" => MetricId::ALL
                    .iter()
                    .copied()
                    .filter(|m| !m.name().starts_with("claire_"))
                    .collect(),
                "claire" => MetricId::ALL
                    .iter()
                    .copied()
                    .filter(|m| m.name().starts_with("claire_"))
                    .collect(),
                "bio" => MetricId::ALL
                    .iter()
                    .copied()
                    .filter(|m| m.is_bio())
                    .collect(),
                "batch" => MetricId::ALL
                    .iter()
                    .copied()
                    .filter(|m| !m.is_bio())
                    .collect(),
                name => match MetricId::ALL
                    .iter()
                    .find(|m| m.name() == name || m.outputs().iter().any(|o| o == name))
                {
                    Some(m) => vec![*m],
                    None => {
                        let names: Vec<&str> = MetricId::ALL.iter().map(|m| m.name()).collect();
                        bail!("unknown metric '{item}' (expected all, scib, claire, bio, batch or one of: {})", names.join(", "))
                    }
                },
            };
            for m in group {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        if out.is_empty() {
            bail!("no metric selected");
        }
        out.sort();
        Ok(out)
    }
}

/// Labels as codes `0..n` over sorted category names (the order numpy's `unique` gives).
#[derive(Debug, Clone)]
pub struct Codes {
    /// Per cell, the position of its label in `names`.
    pub codes: Vec<u32>,
    /// The distinct labels, sorted.
    pub names: Vec<String>,
}

impl Codes {
    /// Number of distinct labels.
    pub fn n(&self) -> usize {
        self.names.len()
    }
    /// From per-cell strings; categories sorted by name.
    pub fn from_strings<S: AsRef<str>>(values: &[S]) -> Codes {
        let mut names: Vec<String> = values.iter().map(|s| s.as_ref().to_string()).collect();
        names.sort();
        names.dedup();
        let codes = values
            .iter()
            .map(|s| {
                names
                    .binary_search_by(|n| n.as_str().cmp(s.as_ref()))
                    .unwrap() as u32
            })
            .collect();
        Codes { codes, names }
    }
}

/// How the kNN graph is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KnnMode {
    /// Exact (within the all-pairs pass that the silhouettes need anyway).
    Exact,
    /// Approximate (an inverted file, `numerics::ivf`), as scib-metrics' Benchmarker uses
    /// pynndescent.
    Approx,
    /// Exact up to [`APPROX_KNN_CELLS`] cells, approximate above.
    #[default]
    Auto,
}

/// Above this many cells `--knn auto` searches neighbours approximately (IVF; where exact
/// search starts to cost minutes, see `neighbors::auto_method` and `docs/scale.md`).
pub const APPROX_KNN_CELLS: usize = 200_000;

/// Default `--silhouette-cells`: above this many cells the silhouettes are computed on a
/// stratified subsample of this size (see [`stratified_subsample`]).
pub const SILHOUETTE_CELLS: usize = 50_000;

impl KnnMode {
    /// Exact or approximate for `n` cells.
    pub fn resolve(self, n: usize) -> KnnMode {
        match self {
            KnnMode::Auto if n > APPROX_KNN_CELLS => KnnMode::Approx,
            KnnMode::Auto => KnnMode::Exact,
            m => m,
        }
    }
}

/// About `m` of the `n` cells, each (label, batch) stratum represented in proportion (at
/// least one cell each), chosen within a stratum by a seeded hash of the cell: sorted
/// positions. All cells when `m >= n`.
pub fn stratified_subsample(labels: &[u32], batches: &[u32], m: usize, seed: u64) -> Vec<usize> {
    let n = labels.len();
    if m >= n {
        return (0..n).collect();
    }
    let mut strata: std::collections::BTreeMap<(u32, u32), Vec<usize>> = Default::default();
    for i in 0..n {
        strata.entry((labels[i], batches[i])).or_default().push(i);
    }
    let mut out = Vec::with_capacity(m + strata.len());
    for cells in strata.values_mut() {
        let take =
            ((cells.len() as f64 * m as f64 / n as f64).round() as usize).clamp(1, cells.len());
        cells.sort_by_key(|&i| {
            crate::numerics::nndescent::mix(crate::numerics::nndescent::mix(seed) ^ i as u64)
        });
        out.extend_from_slice(&cells[..take]);
    }
    out.sort_unstable();
    out
}

/// Settings of [`score_embedding`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The metrics to compute.
    pub metrics: Vec<MetricId>,
    /// Exact or approximate neighbours.
    pub knn: KnnMode,
    /// Silhouettes on a stratified subsample of this many cells when there are more (0: all).
    pub silhouette_cells: usize,
    /// Seed of k-means, Leiden, Louvain (and HNSW).
    pub seed: u64,
    /// k-means restarts (scib-metrics: 1).
    pub kmeans_n_init: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            metrics: MetricId::ALL.to_vec(),
            knn: KnnMode::Auto,
            silhouette_cells: SILHOUETTE_CELLS,
            seed: 0,
            kmeans_n_init: 1,
        }
    }
}

/// The scores of one embedding.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// (output name, value), in metric order.
    pub values: Vec<(String, f64)>,
    /// (step, seconds).
    pub timings: Vec<(String, f64)>,
    /// Per-label kBET (when computed).
    pub kbet_labels: Vec<kbet::LabelKbet>,
    /// Best resolutions of the sweeps (name, resolution, clusters).
    pub sweeps: Vec<(String, f64, usize)>,
    /// The neighbour search used ("exact", "ivf"; empty when no metric needs one).
    pub knn_search: String,
    /// Cells the silhouettes were computed on (all cells unless subsampled).
    pub silhouette_cells: usize,
}

impl Scores {
    /// The value of an output by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// An `n x d` embedding (row-major) with its cell labels and batches.
pub struct Input<'a> {
    /// Values, `n x d` row-major.
    pub x: &'a [f32],
    /// Dimensions per cell.
    pub d: usize,
    /// The cell labels (cell types).
    pub labels: &'a Codes,
    /// The batches.
    pub batches: &'a Codes,
    /// The unintegrated embedding for `pcr_comparison` (same cells, same order).
    pub pre: Option<(&'a [f32], usize)>,
}

struct Clock(Instant, Vec<(String, f64)>);
impl Clock {
    fn lap(&mut self, what: &str) {
        let t = self.0.elapsed().as_secs_f64();
        self.1.push((what.to_string(), t));
        crate::info!("  {what}: {t:.2} s");
        self.0 = Instant::now();
    }
}

/// Compute the selected metrics of one embedding.
pub fn score_embedding(input: &Input, opts: &Options) -> Result<Scores> {
    let (x, d) = (input.x, input.d);
    let n = input.labels.codes.len();
    if input.batches.codes.len() != n || x.len() != n * d {
        bail!("embedding, labels and batches disagree on the number of cells");
    }
    if n < 3 {
        bail!("{n} cells: at least 3 are needed to score an embedding");
    }
    let has = |m: MetricId| opts.metrics.contains(&m);
    let (lab, nl) = (&input.labels.codes[..], input.labels.n());
    let (bat, nb) = (&input.batches.codes[..], input.batches.n());
    let mut clock = Clock(Instant::now(), Vec::new());
    let mut out = Scores::default();

    // Neighbours needed: 90 for LISI, 50 for kBET per label, 15 for the graph metrics.
    let k_needed = if has(MetricId::ClisiKnn) || has(MetricId::IlisiKnn) {
        90
    } else if has(MetricId::KbetPerLabel) {
        50
    } else if [
        MetricId::GraphConnectivity,
        MetricId::Leiden,
        MetricId::ClaireKbet,
        MetricId::ClaireLouvain,
    ]
    .iter()
    .any(|&m| has(m))
    {
        15
    } else {
        0
    };
    let k_needed = k_needed.min(n);
    let label_sums = [
        MetricId::SilhouetteLabel,
        MetricId::IsolatedLabels,
        MetricId::ClaireCasw,
    ]
    .iter()
    .any(|&m| has(m));
    let batch_sums = has(MetricId::SilhouetteBatch) || has(MetricId::ClaireBasw);
    let mode = opts.knn.resolve(n);
    let sil_any = label_sums || batch_sums || has(MetricId::Bras);
    // The silhouettes' cells: all, or a stratified subsample.
    let sub = (sil_any && opts.silhouette_cells > 0 && n > opts.silhouette_cells)
        .then(|| stratified_subsample(lab, bat, opts.silhouette_cells, opts.seed));
    let picked = |v: &[u32]| -> Vec<u32> {
        sub.as_ref()
            .map_or_else(Vec::new, |s| s.iter().map(|&i| v[i]).collect())
    };
    let (sub_lab, sub_bat) = (picked(lab), picked(bat));
    let sub_x: Vec<f32> = sub.as_ref().map_or_else(Vec::new, |s| {
        s.iter()
            .flat_map(|&i| &x[i * d..(i + 1) * d])
            .copied()
            .collect()
    });
    let (sx, slab, sbat) = if sub.is_some() {
        (&sub_x[..], &sub_lab[..], &sub_bat[..])
    } else {
        (x, lab, bat)
    };
    out.silhouette_cells = slab.len();
    let exact_k = if mode == KnnMode::Exact { k_needed } else { 0 };
    let needs = Needs {
        label_sums,
        batch_sums,
        batch_sums_cosine: has(MetricId::Bras),
        // The exact kNN rides on the silhouettes' pass when that pass covers every cell.
        knn: if sub.is_none() { exact_k } else { 0 },
    };
    let p = if needs.label_sums || needs.batch_sums || needs.batch_sums_cosine || needs.knn > 0 {
        let p = pairwise::pairwise(sx, d, slab, sbat, needs);
        clock.lap(if sub.is_some() {
            "all-pairs pass (silhouette sums, subsample)"
        } else {
            "all-pairs pass (silhouette sums, exact kNN)"
        });
        p
    } else {
        pairwise::Pairwise::default()
    };
    let knn90: Option<Knn> = match (k_needed, mode) {
        (0, _) => None,
        (k, KnnMode::Exact) if p.knn.is_none() => {
            let only = Needs {
                label_sums: false,
                batch_sums: false,
                batch_sums_cosine: false,
                knn: k,
            };
            let r = pairwise::pairwise(x, d, lab, bat, only).knn;
            clock.lap("exact kNN");
            r
        }
        (_, KnnMode::Exact) => p.knn.clone(),
        (k, _) => {
            let s = Search::new(Method::Ivf, opts.seed);
            let r = crate::numerics::neighbors::knn_with(x, d, k, Metric::Euclidean, true, &s);
            clock.lap("approximate kNN (IVF)");
            Some(r)
        }
    };
    out.knn_search = match (k_needed, mode) {
        (0, _) => String::new(),
        (_, KnnMode::Exact) => "exact".into(),
        _ => "ivf".into(),
    };

    let samples = if label_sums {
        silhouette::silhouette_samples(&p.label_sums, slab, nl)
    } else {
        Vec::new()
    };
    let mut values: Vec<(String, f64)> = Vec::new();
    let knn = |k: usize| truncate(knn90.as_ref().expect("kNN computed"), k);
    let mut conn15: Option<Graph> = None;
    let mut lisi_w: Option<lisi::Weights> = None;
    for &m in &opts.metrics {
        match m {
            MetricId::SilhouetteLabel | MetricId::ClaireCasw => {
                values.push((m.name().into(), silhouette::silhouette_label(&samples)));
            }
            MetricId::IsolatedLabels => {
                values.push((
                    m.name().into(),
                    silhouette::isolated_labels(&samples, slab, sbat, nl, nb),
                ));
            }
            MetricId::SilhouetteBatch | MetricId::ClaireBasw | MetricId::Bras => {
                // BRAS: cosine distances and the mean over the other batches.
                let (sums, between) = match m {
                    MetricId::Bras => (&p.batch_sums_cosine, silhouette::Between::MeanOther),
                    _ => (&p.batch_sums, silhouette::Between::Nearest),
                };
                let v = silhouette::batch_silhouette(sums, slab, sbat, nl, nb, between);
                values.push((m.name().into(), v));
            }
            MetricId::ClisiKnn | MetricId::IlisiKnn => {
                let k90 = knn(90);
                if lisi_w.is_none() {
                    lisi_w = Some(lisi::weights(&k90, None));
                    clock.lap("LISI neighbour weights (k = 90)");
                }
                let w = lisi_w.as_ref().expect("just computed");
                let v = if m == MetricId::ClisiKnn {
                    lisi::clisi_knn(w, &k90, lab, nl)
                } else {
                    lisi::ilisi_knn(w, &k90, bat, nb)
                };
                values.push((m.name().into(), v));
                clock.lap(m.name());
            }
            MetricId::KbetPerLabel => {
                let conn = crate::numerics::graph::fuzzy_connectivities(&knn(50));
                clock.lap("connectivities (k = 50)");
                let (v, report) = kbet::kbet_per_label(&conn, bat, lab, nl);
                values.push((m.name().into(), v));
                out.kbet_labels = report;
                clock.lap("kbet_per_label");
            }
            MetricId::GraphConnectivity => {
                values.push((
                    m.name().into(),
                    connectivity::graph_connectivity(&knn(15), lab, nl),
                ));
            }
            MetricId::ClaireKbet => {
                values.push((m.name().into(), kbet::kbet(&knn(15), bat)));
            }
            MetricId::Leiden | MetricId::ClaireLouvain => {
                if conn15.is_none() {
                    conn15 = Some(Graph::from_csr(
                        &crate::numerics::graph::fuzzy_connectivities(&knn(15)),
                    ));
                    clock.lap("connectivities (k = 15)");
                }
                let g = conn15.as_ref().expect("just built");
                let s = if m == MetricId::Leiden {
                    clustering::leiden_sweep(g, lab, &clustering::leiden_resolutions(), opts.seed)
                } else {
                    clustering::louvain_sweep(g, lab, &clustering::louvain_resolutions(), opts.seed)
                };
                values.push((format!("{}_nmi", m.name()), s.nmi));
                values.push((format!("{}_ari", m.name()), s.ari));
                out.sweeps
                    .push((m.name().into(), s.resolution, s.n_clusters));
                clock.lap(m.name());
            }
            MetricId::Kmeans => {
                let (a, b) = clustering::kmeans_nmi_ari(x, d, lab, opts.kmeans_n_init, opts.seed);
                values.push((format!("{}_nmi", m.name()), a));
                values.push((format!("{}_ari", m.name()), b));
                clock.lap(m.name());
            }
            MetricId::PcrComparison => {
                if let Some((pre, dp)) = input.pre {
                    if pre.len() != n * dp {
                        bail!("the unintegrated embedding has {} values for {n} cells x {dp} dimensions", pre.len());
                    }
                    values.push((m.name().into(), pcr::pcr_comparison(pre, dp, x, d, bat)));
                }
            }
        }
    }
    clock.lap("other metrics");
    out.values = values;
    out.timings = clock.1;
    Ok(out)
}
