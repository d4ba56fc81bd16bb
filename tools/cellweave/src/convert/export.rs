//! What `cellweave-export` does: turn a cells table (or an embedding table) into the
//! formats other tools read: `.h5ad` (with raw counts in `layers['counts']` and embeddings
//! in `obsm['X_<name>']`), a 10x MTX folder, or a dense TSV.
//!
//! The `.h5ad` of an integration run is the object scanpy's own tutorial ends with: X the
//! log1p values of every kept gene with `uns['log1p']`, the counts in `layers['counts']`,
//! per-cell QC under scanpy's names, the highly-variable-gene statistics in `var` with
//! `uns['hvg']`, the embeddings in `obsm`, the neighbour graph of the integrated embedding
//! in `obsp` with `uns['neighbors']` (so `sc.tl.leiden` runs directly), the colours
//! cellweave-plot uses in `uns['<key>_colors']`, and the provenance as a nested mapping.

use crate::contract::{
    meta, rows_of, CellsTable, Column, Csr, EmbeddingTable, Frame, Named, Step, TableKind,
    ValueKind,
};
use crate::io::atomic::{Kind, Outputs};
use crate::io::formats::h5ad::{anndata_of, provenance_mapping, write_h5ad, AnnData};
use crate::io::formats::{dense, mtx};
use crate::io::{table, Format};
use crate::numerics::neighbors::{Method, Metric, Search};
use crate::{info, Error, Result};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Options of an export (the flags of `cellweave-export` after its input and output).
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct ExportOptions {
    /// Cells table of raw counts for layers['counts'] (aligned by cell and gene id)
    #[arg(long, value_name = "RAW")]
    pub counts: Option<PathBuf>,
    /// Embedding table for obsm['X_<name>'] (aligned by cell id; repeatable)
    #[arg(long = "embedding", value_name = "EMB")]
    #[serde(rename = "embedding")]
    pub embeddings: Vec<PathBuf>,
    /// Genes table of cellweave-hvg (--genes-out): scanpy's HVG columns in var, uns['hvg']
    #[arg(long, value_name = "GENES")]
    pub hvg: Option<PathBuf>,
    /// Neighbours per cell of the graph in obsp (scanpy's n_neighbors; 0: no graph)
    #[arg(long, default_value_t = 15)]
    pub n_neighbors: usize,
    /// obsm entry to build the neighbour graph on (default: the first non-UMAP embedding)
    #[arg(long, value_name = "NAME")]
    pub neighbors_of: Option<String>,
    /// Principal components of the highly variable genes (with --hvg) in obsm['X_pca'],
    /// varm['PCs'], uns['pca'], as scanpy's sc.pp.pca (0: none)
    #[arg(long, default_value_t = 50)]
    pub n_pcs: usize,
    /// Name prefix of mitochondrial genes (obs pct_counts_mt, var mt)
    #[arg(long, default_value = "MT-")]
    pub mito_prefix: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// The flags of `cellweave-export`: its input, output and options.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct ExportArgs {
    /// Cells table or embedding table (.arrow or .parquet)
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    /// Output: out.h5ad, out.tsv, or a folder for 10x MTX
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// What the output holds besides the input
    #[command(flatten)]
    #[serde(flatten)]
    pub options: ExportOptions,
}

/// `cellweave-export`: declare the outputs (a file, or the folder of a 10x MTX export),
/// export `args.input` to `args.output`, commit them and log the summary.
pub fn run_export(args: &ExportArgs, step: &Step) -> Result<()> {
    let (input, output, opts) = (args.input.as_path(), args.output.as_path(), &args.options);
    let mut inputs = vec![input];
    inputs.extend(opts.counts.as_deref());
    inputs.extend(opts.embeddings.iter().map(|p| p.as_path()));
    let mut outputs = Outputs::new(&inputs)?;
    if output_format(output)? == Format::MtxDir {
        outputs.dir(output)?;
    } else {
        outputs.file(output, Kind::Any)?;
    }
    let timer = crate::cli::Timer::start("export");
    let what = export(input, output, opts, step)?;
    outputs.commit()?;
    info!("{}: {what}", output.display());
    timer.done();
    Ok(())
}

/// Output formats export writes.
/// The format of an export's output: `.h5ad`, `.tsv`, or a folder name (10x MTX).
pub fn output_format(out: &Path) -> Result<Format> {
    let s = out.to_string_lossy();
    let looks_dir = s.ends_with('/') || out.is_dir() || out.extension().is_none();
    match Format::of(out) {
        Some(Format::H5ad) => Ok(Format::H5ad),
        Some(Format::Tsv) => Ok(Format::Tsv),
        _ if looks_dir => Ok(Format::MtxDir),
        _ => Err(Error::new(
            "unknown output format (expected .h5ad, .tsv, or a folder name for 10x MTX)",
        )
        .field("format")
        .file(out)),
    }
}

/// Rows of `ids` in a table whose ids are `have` (error naming `what` when some are missing).
fn rows_by_id(ids: &[String], have: &[String], what: &str, path: &Path) -> Result<Vec<usize>> {
    rows_of(ids, have).map_err(|(missing, first)| {
        Error::new(format!(
            "{missing} of {} {what} are not in this table (first: '{first}')",
            ids.len()
        ))
        .field(if what == "genes" {
            "gene_ids"
        } else {
            "cell_id"
        })
        .file(path)
    })
}

/// The raw-count matrix of `counts_path` aligned to these cells and genes (by id).
fn aligned_counts(cell_ids: &[String], gene_ids: &[String], counts_path: &Path) -> Result<Csr> {
    let (x, values) = read_aligned_counts(cell_ids, gene_ids, counts_path)?;
    if values != ValueKind::Counts {
        info!(
            "warning: {} holds '{}' values, not raw counts",
            counts_path.display(),
            values.as_str()
        );
    }
    Ok(x)
}

/// The matrix of `raw` (read from `path`) with the rows of `cell_ids` and the columns of
/// `gene_ids` in that order, matched by id; an error naming the first id `raw` lacks.
pub fn align_to(
    raw: &CellsTable,
    cell_ids: &[String],
    gene_ids: &[String],
    path: &Path,
) -> Result<Csr> {
    let x = Cow::Borrowed(&raw.x);
    select(x, &raw.cell_ids, &raw.gene_ids, cell_ids, gene_ids, path)
}

/// [`align_to`] taking the table: the matrix itself (no copy) when the table's cells and
/// genes are already these, in this order (the workflow's filtered counts and normalized
/// values); else one selected copy.
fn align_owned(
    raw: CellsTable,
    cell_ids: &[String],
    gene_ids: &[String],
    path: &Path,
) -> Result<Csr> {
    let x = Cow::Owned(raw.x);
    select(x, &raw.cell_ids, &raw.gene_ids, cell_ids, gene_ids, path)
}

/// `x` (whose rows are `have_cells`, columns `have_genes`) with the rows of `cell_ids` and
/// the columns of `gene_ids`, matched by id: `x` itself when both are already in order
/// (a copy only if `x` is borrowed).
fn select(
    x: Cow<'_, Csr>,
    have_cells: &[String],
    have_genes: &[String],
    cell_ids: &[String],
    gene_ids: &[String],
    path: &Path,
) -> Result<Csr> {
    let rows = rows_by_id(cell_ids, have_cells, "cells", path)?;
    let cols = rows_by_id(gene_ids, have_genes, "genes", path)?;
    Ok(
        match (is_identity(&rows, x.n_rows()), is_identity(&cols, x.n_cols)) {
            (true, true) => x.into_owned(),
            (true, false) => x.select_cols(&cols),
            (false, true) => x.select_rows(&rows),
            (false, false) => x.select_rows(&rows).select_cols(&cols),
        },
    )
}

/// `idx` is `0..n` in order.
fn is_identity(idx: &[usize], n: usize) -> bool {
    idx.len() == n && idx.iter().enumerate().all(|(i, &j)| i == j)
}

/// The matrix of the cells table `counts_path` aligned to these cells and genes (by id;
/// an error names the first one missing), with the values kind that table declares.
/// Also used by the models that train on raw counts (`cellweave-train --counts`).
pub fn read_aligned_counts(
    cell_ids: &[String],
    gene_ids: &[String],
    counts_path: &Path,
) -> Result<(Csr, ValueKind)> {
    let raw = table::read_cells(counts_path)?;
    let values = raw.values;
    let x = align_owned(raw, cell_ids, gene_ids, counts_path)?;
    Ok((x, values))
}

/// An embedding aligned to these cells: (obsm name, dim, values).
fn aligned_embedding(cell_ids: &[String], path: &Path) -> Result<(String, usize, Vec<f32>)> {
    let e = table::read_embedding(path)?;
    let rows = rows_by_id(cell_ids, &e.cell_ids, "cells", path)?;
    let mut data = Vec::with_capacity(rows.len() * e.dim);
    for r in rows {
        data.extend_from_slice(e.row(r));
    }
    Ok((obsm_name(&e.name), e.dim, data))
}

fn obsm_name(name: &str) -> String {
    if name.starts_with("X_") {
        name.to_string()
    } else {
        format!("X_{name}")
    }
}

fn provenance_value(mut p: Vec<Step>, step: &Step) -> Value {
    p.push(step.clone());
    provenance_mapping(&p)
}

/// Per-cell QC under scanpy's names (`sc.pp.calculate_qc_metrics(qc_vars=['mt'])`) over the
/// genes of `counts`, replacing obs columns of the same names; and `var['mt']`.
fn add_qc(obs: &mut Vec<Named>, counts: &Csr, names: &[String], prefix: &str) -> Column {
    let mito = crate::preprocess::qc::mito_genes(names, prefix);
    let m = crate::preprocess::qc::cell_metrics(counts, &mito);
    let cols = [
        (
            "n_genes_by_counts",
            Column::I64(m.n_genes.iter().map(|&g| Some(g as i64)).collect()),
        ),
        ("total_counts", Column::F64(m.total_counts)),
        ("pct_counts_mt", Column::F64(m.mito_pct)),
    ];
    for (name, col) in cols {
        obs.retain(|(n, _)| n != name);
        obs.push((name.to_string(), col));
    }
    Column::Bool(mito.into_iter().map(Some).collect())
}

/// scanpy's HVG columns of these genes from a cellweave-hvg genes table (joined by gene id),
/// and `uns['hvg']`. As scanpy: `highly_variable_rank` only with flavor seurat_v3, the
/// per-batch columns only with a batch key.
fn hvg_columns(gene_ids: &[String], path: &Path) -> Result<(Vec<Named>, Value)> {
    let f: Frame = table::read_frame(path, TableKind::Genes)?;
    let ids = f.require("gene_id").map_err(|e| e.file(path))?;
    let have: Vec<String> = (0..ids.len())
        .map(|i| ids.text(i).unwrap_or_default())
        .collect();
    let rows = rows_by_id(gene_ids, &have, "genes", path)?;
    let flavor = f.meta.get("cellweave.hvg_flavor").cloned().ok_or_else(|| {
        Error::new("not a genes table of cellweave-hvg (no flavor recorded)")
            .field("cellweave.hvg_flavor")
            .file(path)
    })?;
    let batched = f.meta.get(meta::BATCH_KEY).is_some_and(|k| !k.is_empty());
    let cols = f
        .columns
        .iter()
        .filter(|(n, _)| match n.as_str() {
            "gene_id" | "gene_name" => false,
            "highly_variable_rank" => flavor == "seurat_v3",
            "highly_variable_nbatches" | "highly_variable_intersection" => batched,
            _ => true,
        })
        .map(|(n, c)| (n.clone(), c.select(&rows)))
        .collect();
    Ok((cols, json!({ "flavor": flavor })))
}

/// `sc.pp.pca(adata, n_comps)` as scanpy 1.11 runs it on an object with
/// `var['highly_variable']`: the highly variable genes of X, centred, not scaled; at most
/// `min(n_cells, n_hvg) - 1` components. Returns `X_pca` (cells x k), `PCs` (every gene x k,
/// zero for the other genes, as scanpy fills `varm['PCs']`) and `uns['pca']`.
fn hvg_pca(x: &Csr, hvg: &[bool], n_comps: usize) -> Option<(usize, Vec<f32>, Vec<f32>, Value)> {
    let cols: Vec<usize> = (0..hvg.len()).filter(|&g| hvg[g]).collect();
    let (n, d) = (x.n_rows(), cols.len());
    let min_dim = n.min(d);
    let k = if min_dim <= n_comps {
        min_dim.saturating_sub(1)
    } else {
        n_comps
    };
    if k == 0 {
        return None;
    }
    // on the sparse rows a block at a time (no dense cells x genes copy; the exact route is
    // bit for bit the dense PCA's, the randomized one equal within rounding)
    let sub = x.select_cols(&cols);
    let all: Vec<usize> = (0..n).collect();
    let p =
        crate::numerics::blocked::pca_of_rows(&sub, &all, k, 0, crate::numerics::pca::Solver::Auto);
    drop(sub);
    let mut pcs = vec![0f32; hvg.len() * p.k];
    for (j, &g) in cols.iter().enumerate() {
        for c in 0..p.k {
            pcs[g * p.k + c] = p.components[c * d + j];
        }
    }
    let uns = json!({
        "params": {
            "zero_center": true,
            "use_highly_variable": true,
            "mask_var": "highly_variable",
        },
        "variance": p.explained_variance,
        "variance_ratio": p.explained_variance_ratio,
    });
    Some((p.k, p.scores, pcs, uns))
}

/// The `obsm` entry the neighbour graph is built on: the one asked for, else the first that
/// is not a UMAP (None when there is none).
fn graph_rep<'a>(
    obsm: &[(String, usize, &'a [f32])],
    asked: Option<&str>,
) -> Result<Option<(String, usize, &'a [f32])>> {
    let found = match asked {
        Some(name) => {
            let name = obsm_name(name);
            let hit = obsm.iter().find(|(n, _, _)| *n == name);
            if hit.is_none() {
                let have: Vec<&str> = obsm.iter().map(|(n, _, _)| n.as_str()).collect();
                return Err(Error::new(format!(
                    "no embedding '{name}' to build the neighbour graph on (have: {})",
                    if have.is_empty() {
                        "none; add --embedding".to_string()
                    } else {
                        have.join(", ")
                    }
                ))
                .field("--neighbors-of"));
            }
            hit
        }
        None => obsm
            .iter()
            .find(|(n, _, _)| !n.to_lowercase().contains("umap")),
    };
    Ok(found.map(|(n, d, x)| (n.clone(), *d, *x)))
}

/// What makes the `.h5ad` scanpy-ready beyond X: categorical obs columns with the colours
/// cellweave-plot gives them, and the neighbour graph of the integrated embedding laid out
/// as `sc.pp.neighbors(use_rep=...)` writes it. Returns the graph's summary.
fn add_scanpy_elements<'a>(
    a: &mut AnnData<'a>,
    graph: &'a mut Option<(Csr, Csr)>,
    opts: &ExportOptions,
) -> Result<String> {
    for (name, col) in a.obs.iter_mut() {
        if !matches!(col, Column::Cat(_) | Column::Str(_)) {
            continue;
        }
        let cat = col.to_categorical();
        let colours: Vec<Value> = crate::viz::plot::scatter::category_colours(&cat)
            .iter()
            .map(|c| Value::String(format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)))
            .collect();
        if !colours.is_empty() {
            a.uns
                .push((format!("{name}_colors"), Value::Array(colours)));
        }
        *col = Column::Cat(cat);
    }
    if opts.n_neighbors == 0 {
        return Ok(String::new());
    }
    let Some((rep, dim, data)) = graph_rep(&a.obsm, opts.neighbors_of.as_deref())? else {
        return Ok(String::new());
    };
    let k = opts.n_neighbors;
    // exact search up to about 200,000 cells, the inverted file above (neighbors::auto_method)
    let n = data.len().checked_div(dim).unwrap_or(0);
    let method = Method::Auto.resolve(n, n, dim);
    let (distances, connectivities): &'a (Csr, Csr) = Option::insert(
        graph,
        crate::numerics::graph::neighbor_graph_with(
            data,
            dim,
            k,
            Metric::Euclidean,
            &Search::new(method, 0),
        ),
    );
    a.obsp.push(("distances".into(), distances));
    a.obsp.push(("connectivities".into(), connectivities));
    a.uns.push((
        "neighbors".into(),
        json!({
            "connectivities_key": "connectivities",
            "distances_key": "distances",
            "params": {
                "n_neighbors": k,
                "method": "umap",
                "random_state": 0,
                "metric": "euclidean",
                "use_rep": rep,
            },
        }),
    ));
    Ok(format!(
        ", {k}-neighbour graph of {rep} in obsp ({} search)",
        method.name()
    ))
}

/// Export `input` (a cells or embedding table) to `output`; returns a one-line summary.
pub fn export(input: &Path, output: &Path, opts: &ExportOptions, step: &Step) -> Result<String> {
    let format = output_format(output)?;
    crate::io::atomic::check_not_input(output, &[input])?;
    if format != Format::H5ad
        && (opts.counts.is_some() || !opts.embeddings.is_empty() || opts.hvg.is_some())
    {
        return Err(
            Error::new("--counts, --embedding and --hvg apply to .h5ad output only")
                .field("counts")
                .file(output),
        );
    }
    match table::peek_kind(input)? {
        TableKind::Cells => {
            let t = table::read_cells(input)?;
            export_cells(&t, output, format, opts, step)
        }
        TableKind::Embedding => {
            let e = table::read_embedding(input)?;
            export_embedding(&e, output, format, opts, step)
        }
        other => Err(Error::new(format!(
            "this is a '{}' table; export takes a cells or an embedding table",
            other.as_str()
        ))
        .field(crate::contract::meta::TABLE)
        .file(input)),
    }
}

fn export_cells(
    t: &CellsTable,
    output: &Path,
    format: Format,
    opts: &ExportOptions,
    step: &Step,
) -> Result<String> {
    // MTX and TSV have no place for provenance; the h5ad gets it in uns.
    match format {
        Format::MtxDir => {
            mtx::write_mtx_dir(output, t)?;
            Ok(format!(
                "{} cells x {} genes as a 10x folder",
                t.n_cells(),
                t.n_genes()
            ))
        }
        Format::Tsv => {
            dense::write_dense_tsv(output, t)?;
            Ok(format!(
                "{} cells x {} genes as a dense TSV",
                t.n_cells(),
                t.n_genes()
            ))
        }
        _ => {
            // The PCA and the neighbour graph first, the raw counts after: the counts matrix
            // (as large as X) is not held while they are computed (peak memory at 1M cells).
            let embs = opts
                .embeddings
                .iter()
                .map(|p| aligned_embedding(&t.cell_ids, p))
                .collect::<Result<Vec<_>>>()?;
            let hvg = match &opts.hvg {
                Some(p) => Some(hvg_columns(&t.gene_ids, p)?),
                None => None,
            };
            let hvg_mask: Option<Vec<bool>> = hvg.as_ref().and_then(|(cols, _)| {
                cols.iter()
                    .find(|(n, _)| n == "highly_variable")
                    .map(|(_, c)| {
                        (0..c.len())
                            .map(|i| c.text(i).as_deref() == Some("true"))
                            .collect()
                    })
            });
            let pca = match &hvg_mask {
                Some(mask) if opts.n_pcs > 0 && t.values != ValueKind::Counts => {
                    hvg_pca(&t.x, mask, opts.n_pcs)
                }
                _ => None,
            };
            let mut a = anndata_of(t);
            a.uns[0].1 = provenance_value(t.provenance.clone(), step);
            if t.values == ValueKind::Log1p {
                // scanpy's mark of log-transformed X (base None: natural log).
                a.uns.push(("log1p".into(), json!({ "base": null })));
            }
            if let Some((cols, uns)) = hvg {
                a.var.extend(cols);
                a.uns.push(("hvg".into(), uns));
            }
            add_obsm(&mut a, &embs)?;
            if let Some((k, scores, pcs, uns)) = &pca {
                // after the embeddings: the graph is built on the integrated one when given
                if a.obsm.iter().any(|(n, _, _)| n == "X_pca") {
                    return Err(Error::new(
                        "an --embedding is named 'X_pca', where the export puts the PCA of the highly variable genes (rename it, or give --n-pcs 0)",
                    )
                    .field("obsm"));
                }
                a.obsm.push(("X_pca".into(), *k, scores));
                a.varm.push(("PCs".into(), *k, pcs));
                a.uns.push(("pca".into(), uns.clone()));
            }
            let mut graph = None;
            let graph_note = add_scanpy_elements(&mut a, &mut graph, opts)?;
            let counts = match &opts.counts {
                Some(p) => Some(aligned_counts(&t.cell_ids, &t.gene_ids, p)?),
                None => None,
            };
            if let Some(c) = &counts {
                // var['mt'] before the HVG columns, the QC columns at the end of obs
                let mt = add_qc(&mut a.obs, c, &t.gene_names, &opts.mito_prefix);
                a.var.insert(0, ("mt".into(), mt));
                a.layers.push(("counts".to_string(), c));
            }
            write_h5ad(output, &a)?;
            Ok(format!(
                "{} cells x {} genes{}{}{}{graph_note}",
                t.n_cells(),
                t.n_genes(),
                if counts.is_some() {
                    ", layers['counts']"
                } else {
                    ""
                },
                embs.iter()
                    .map(|(n, d, _)| format!(", obsm['{n}'] ({d} dims)"))
                    .collect::<String>(),
                pca.as_ref()
                    .map(|(k, ..)| format!(
                        ", obsm['X_pca'] ({k} PCs of the highly variable genes)"
                    ))
                    .unwrap_or_default()
            ))
        }
    }
}

fn add_obsm<'a>(a: &mut AnnData<'a>, embs: &'a [(String, usize, Vec<f32>)]) -> Result<()> {
    for (name, dim, data) in embs {
        if a.obsm.iter().any(|(n, _, _)| n == name) {
            return Err(
                Error::new(format!("two embeddings are both named '{name}'")).field("obsm"),
            );
        }
        a.obsm.push((name.clone(), *dim, data));
    }
    Ok(())
}

/// An embedding table as the main input: obs and `obsm` only (no X, 0 genes), or, with
/// `--counts`, X = the raw counts of these cells (all genes of the counts table).
fn export_embedding(
    e: &EmbeddingTable,
    output: &Path,
    format: Format,
    opts: &ExportOptions,
    step: &Step,
) -> Result<String> {
    match format {
        Format::Tsv => {
            dense::write_embedding_tsv(output, e)?;
            return Ok(format!("{} cells x {} dims as TSV", e.n_cells(), e.dim));
        }
        Format::MtxDir => return Err(Error::new(
            "an embedding table has no expression matrix to write as 10x MTX (use .h5ad or .tsv)",
        )
        .field("format")
        .file(output)),
        _ => {}
    }
    let raw = match &opts.counts {
        Some(p) => {
            let raw = table::read_cells(p)?;
            let rows = rows_by_id(&e.cell_ids, &raw.cell_ids, "cells", p)?;
            Some(raw.select_cells(&rows))
        }
        None => None,
    };
    let mut embs = vec![(obsm_name(&e.name), e.dim, e.data.clone())];
    for p in &opts.embeddings {
        embs.push(aligned_embedding(&e.cell_ids, p)?);
    }
    let no_genes: Vec<String> = Vec::new();
    let obs: Vec<(String, Column)> = e.obs.clone();
    let mut a = AnnData {
        cell_ids: &e.cell_ids,
        obs,
        gene_ids: raw
            .as_ref()
            .map(|r| r.gene_ids.as_slice())
            .unwrap_or(&no_genes),
        gene_names: raw
            .as_ref()
            .map(|r| r.gene_names.as_slice())
            .unwrap_or(&no_genes),
        var: Vec::new(),
        x: raw.as_ref().map(|r| &r.x),
        layers: Vec::new(),
        obsm: Vec::new(),
        varm: Vec::new(),
        obsp: Vec::new(),
        uns: vec![(
            "cellweave_provenance".to_string(),
            provenance_value(e.provenance.clone(), step),
        )],
    };
    if let Some(r) = &raw {
        a.uns
            .push(("cellweave_values".to_string(), r.values.as_str().into()));
    }
    add_obsm(&mut a, &embs)?;
    let mut graph = None;
    let graph_note = add_scanpy_elements(&mut a, &mut graph, opts)?;
    write_h5ad(output, &a)?;
    Ok(format!(
        "{} cells, {}{}{graph_note}",
        e.n_cells(),
        if raw.is_some() {
            "X = raw counts"
        } else {
            "no X"
        },
        embs.iter()
            .map(|(n, d, _)| format!(", obsm['{n}'] ({d} dims)"))
            .collect::<String>()
    ))
}
