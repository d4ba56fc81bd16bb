//! What `cellweave-score` does: read the embeddings (or imputed matrices), their labels and
//! batches, score them and write the scores table and its siblings.

use super::imputation::{self, ImputedScale};
use super::{input, report, KnnMode, MetricId, Options};
use crate::contract::Step;
use crate::io::atomic::{Kind, Outputs};
use crate::io::{table, Format};
use crate::{info, Error, Result};
use std::path::{Path, PathBuf};

/// The flags of `cellweave-score`.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct ScoreArgs {
    /// Embeddings to score: embedding tables (.arrow/.parquet), cells tables (scored on their
    /// 50-component PCA: the unintegrated baseline) or TSV embeddings (cell id, then values)
    #[arg(required_unless_present = "impute", value_name = "EMB")]
    pub inputs: Vec<PathBuf>,
    /// Imputation mode: score these imputed matrices (cellweave-impute tables, or TSV / h5ad,
    /// cells x genes) against --truth on the entries that --masked hid: held-out MSE and
    /// median Pearson per gene and per cell on log10(x+1), as impute_eval.py
    #[arg(long, value_name = "IMPUTED", num_args = 1.., conflicts_with_all = ["inputs", "unintegrated", "obs", "metrics"], requires_all = ["truth", "masked"])]
    pub impute: Vec<PathBuf>,
    /// Imputation mode: the complete counts (cells table, h5ad, 10x folder, TSV)
    #[arg(long, value_name = "TRUTH", requires = "impute")]
    pub truth: Option<PathBuf>,
    /// Imputation mode: the counts the imputation was given (the truth with entries hidden)
    #[arg(long, value_name = "MASKED", requires = "impute")]
    pub masked: Option<PathBuf>,
    /// Imputation mode: scale of imputed values in files that do not record it (TSV, h5ad)
    #[arg(long, value_enum, default_value_t = ImputedScale::Log10)]
    pub impute_scale: ImputedScale,
    /// Scores table: .arrow/.parquet (long: embedding, metric, value, group), .tsv (wide, one
    /// row per embedding) or .json
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Per-cell column with the cell types
    #[arg(long, default_value = "cell_type")]
    pub label_key: String,
    /// Per-cell column with the batches
    #[arg(long, default_value = "batch")]
    pub batch_key: String,
    /// Labels and batches from this TSV/CSV (cell id first), joined by cell id; needed for TSV
    /// embeddings
    #[arg(long, value_name = "OBS")]
    pub obs: Option<PathBuf>,
    /// The unintegrated embedding (or a cells table, PCA 50 inside) for pcr_comparison
    #[arg(long, value_name = "EMB|CELLS")]
    pub unintegrated: Option<PathBuf>,
    /// Neighbour search: exact (free within the silhouettes' all-pairs pass), approx
    /// (IVF), or auto: exact up to 200,000 cells, approx above
    #[arg(long, value_enum, default_value_t = KnnMode::Auto)]
    pub knn: KnnMode,
    /// Silhouettes on a stratified (cell type x batch) subsample of this many cells when
    /// there are more (0: all cells; all pairs cost O(cells^2))
    #[arg(long, default_value_t = super::SILHOUETTE_CELLS, value_name = "N")]
    pub silhouette_cells: usize,
    /// Comma-separated metrics or groups (all, scib, claire, bio, batch)
    #[arg(long, default_value = "all")]
    pub metrics: String,
    /// Also write the wide TSV (default path: OUTPUT with .tsv)
    #[arg(long, value_name = "TSV", num_args = 0..=1)]
    pub tsv: Option<Option<PathBuf>>,
    /// Also write JSON with timings and per-label detail (default path: OUTPUT with .json)
    #[arg(long, value_name = "JSON", num_args = 0..=1)]
    pub json: Option<Option<PathBuf>>,
    /// Min-max scale each metric across the embeddings before aggregating (the default of
    /// scib-metrics' Benchmarker table; off: raw means, as the reference JSONs)
    #[arg(long)]
    pub min_max_scale: bool,
    /// k-means restarts (scib-metrics: 1) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 1)]
    pub kmeans_n_init: usize,
    /// Seed of k-means, Leiden and Louvain (and HNSW)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--tsv` / `--json`: absent, given without a path (OUTPUT with `ext`), or with one.
fn sibling(output: &Path, opt: &Option<Option<PathBuf>>, ext: &str) -> Option<PathBuf> {
    opt.as_ref()
        .map(|p| p.clone().unwrap_or_else(|| output.with_extension(ext)))
}

/// `cellweave-score`: score the embeddings (or, with `--impute`, the imputed matrices) of
/// `args` and write the scores table and its `--tsv` / `--json` siblings; `step` (the
/// tool's parsed arguments) goes in their provenance.
pub fn run_score(args: &ScoreArgs, step: Step) -> Result<()> {
    let metrics = MetricId::parse_list(&args.metrics).map_err(|e| e.flag("--metrics"))?;
    let tsv = sibling(&args.output, &args.tsv, "tsv");
    let json = sibling(&args.output, &args.json, "json");
    let inputs: Vec<&Path> = args
        .inputs
        .iter()
        .chain(&args.impute)
        .map(PathBuf::as_path)
        .chain(args.obs.as_deref())
        .chain(args.unintegrated.as_deref())
        .chain(args.truth.as_deref())
        .chain(args.masked.as_deref())
        .collect();
    let mut outputs = Outputs::new(&inputs)?;
    outputs
        .file(&args.output, Kind::Scores)?
        .file_opt(tsv.as_deref(), Kind::Scores)?
        .file_opt(json.as_deref(), Kind::Scores)?;
    let scored = if args.impute.is_empty() {
        score_embeddings(args, metrics)?
    } else {
        score_imputations(args)?
    };
    let params = step.params.clone();
    let write = |out: &Path| -> Result<()> {
        match Format::of(out) {
            Some(Format::Tsv) => report::write_wide_tsv(out, &scored),
            Some(Format::Arrow | Format::Parquet) => {
                let f =
                    report::scores_frame(&scored, step.clone(), &args.label_key, &args.batch_key);
                table::write_frame(out, &f)
            }
            _ => report::write_json(out, &report::to_json(&scored, params.clone())),
        }
    };
    write(&args.output)?;
    for extra in tsv.iter().chain(json.iter()) {
        write(extra)?;
    }
    outputs.commit()
}

/// A name not yet taken: `base`, `base_2`, ...
fn unique_name(base: &str, scored: &[report::Scored]) -> String {
    let mut name = base.to_string();
    let mut i = 2;
    while scored.iter().any(|o| o.name == name) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// `--impute`: one row per imputed matrix.
fn score_imputations(args: &ScoreArgs) -> Result<Vec<report::Scored>> {
    let (Some(truth), Some(masked)) = (&args.truth, &args.masked) else {
        return Err(Error::new("--impute needs --truth and --masked").flag("--impute"));
    };
    let reference = imputation::read_reference(truth, masked)?;
    info!(
        "truth {}: {} cells x {} genes",
        truth.display(),
        reference.cell_ids.len(),
        reference.gene_ids.len()
    );
    let mut scored: Vec<report::Scored> = Vec::new();
    for path in &args.impute {
        let name = unique_name(&input::stem(path), &scored);
        let (scale, values) =
            imputation::score_imputed(path, &name, &reference, args.impute_scale)?;
        for (n, v) in &values {
            info!("{name}\t{n}\t{v:.6}");
        }
        scored.push(report::Scored {
            name,
            path: path.display().to_string(),
            kind: format!("imputed ({})", scale.as_str()),
            n_cells: reference.cell_ids.len(),
            dim: reference.gene_ids.len(),
            label_names: Vec::new(),
            scores: super::Scores {
                values,
                ..Default::default()
            },
            aggregates: Vec::new(),
        });
    }
    Ok(scored)
}

fn score_embeddings(args: &ScoreArgs, metrics: Vec<MetricId>) -> Result<Vec<report::Scored>> {
    let obs = match &args.obs {
        Some(p) => Some(crate::io::formats::obs::read_obs(p)?),
        None => None,
    };
    let obs_ref = obs.as_ref().zip(args.obs.as_deref());
    let pre = match &args.unintegrated {
        Some(p) => {
            let s = input::read_scorable(p, args.seed)?;
            info!(
                "unintegrated baseline: {} ({}, {} cells x {})",
                p.display(),
                s.kind,
                s.cell_ids.len(),
                s.d
            );
            Some(s)
        }
        None => None,
    };
    let opts = Options {
        metrics,
        knn: args.knn,
        silhouette_cells: args.silhouette_cells,
        seed: args.seed,
        kmeans_n_init: args.kmeans_n_init,
    };
    let mut scored: Vec<report::Scored> = Vec::new();
    for path in &args.inputs {
        let s = input::read_scorable(path, args.seed)?;
        let labels = input::codes_for(&s, &args.label_key, obs_ref)?;
        let batches = input::codes_for(&s, &args.batch_key, obs_ref)?;
        let pre_x = match &pre {
            Some(p) => Some(input::align(&s.cell_ids, p)?),
            None => None,
        };
        let name = unique_name(&s.name, &scored);
        info!(
            "scoring {name} ({}: {} cells x {} dims, {} labels, {} batches)",
            s.kind,
            s.cell_ids.len(),
            s.d,
            labels.n(),
            batches.n()
        );
        let timer = std::time::Instant::now();
        let inp = super::Input {
            x: &s.x,
            d: s.d,
            labels: &labels,
            batches: &batches,
            pre: pre_x.as_deref().zip(pre.as_ref().map(|p| p.d)),
        };
        let scores = super::score_embedding(&inp, &opts).map_err(|e| e.file(path))?;
        info!("  total: {:.2} s", timer.elapsed().as_secs_f64());
        scored.push(report::Scored {
            name,
            path: path.display().to_string(),
            kind: s.kind.to_string(),
            n_cells: s.cell_ids.len(),
            dim: s.d,
            label_names: labels.names.clone(),
            scores,
            aggregates: Vec::new(),
        });
    }
    report::add_aggregates(&mut scored, args.min_max_scale);
    for s in &scored {
        for (n, v) in s.all_values() {
            info!("{}\t{n}\t{v:.4}", s.name);
        }
    }
    Ok(scored)
}
