//! What `cellweave-plot` does: read the input table, pick the plot its kind calls for (UMAP
//! panels of embeddings, bar charts or the scib-style summary of scores, loss curves of a
//! training log, counterfactual cells across batches), draw it and write the image.

use super::{
    bars::Bars, counterfactual, curves::Curves, rows::Rows, scatter, summary::Summary,
    topics::Topics,
};
use crate::contract::{EmbeddingTable, Step, TableKind};
use crate::io::atomic::{Kind, Outputs};
use crate::io::{table, Format};
use crate::viz::umap::{self, UmapParams};
use crate::{Error, Result};
use std::path::PathBuf;

/// The flags of `cellweave-plot`.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct PlotArgs {
    /// Embedding, scores or training-log table (.arrow/.parquet or .tsv/.csv)
    pub input: PathBuf,
    /// Further embeddings, one row of panels each below the first's, titled by the
    /// embedding's name; with --across-batches, further counterfactual cells tables
    #[arg(value_name = "MORE")]
    pub more: Vec<PathBuf>,
    /// Output image (.png or .svg)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Per-cell column to colour by, one panel each (repeatable; default: batch and cell_type)
    #[arg(long = "color", visible_alias = "colour", value_name = "COLUMN")]
    pub color: Vec<String>,
    /// Per-cell metadata to join by cell id (TSV/CSV with the cell id first)
    #[arg(long, value_name = "TSV")]
    pub obs: Option<PathBuf>,
    /// Also write the 2-D UMAP as an embedding table named "umap" (.arrow/.parquet, or .tsv)
    #[arg(long, value_name = "PATH")]
    pub umap_out: Option<PathBuf>,
    /// Neighbours per cell for the UMAP graph (the cell itself included, as scanpy) (at least 2)
    #[arg(value_parser = crate::cli::range::at_least_2, long, default_value_t = 15)]
    pub n_neighbors: usize,
    /// UMAP min_dist (scanpy's default) (>= 0)
    #[arg(value_parser = crate::cli::range::non_negative::<f64>, long, default_value_t = 0.5)]
    pub min_dist: f64,
    /// UMAP spread (> 0)
    #[arg(value_parser = crate::cli::range::positive::<f64>, long, default_value_t = 1.0)]
    pub spread: f64,
    /// UMAP epochs (default: 500 up to 10,000 cells, else 200) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long)]
    pub n_epochs: Option<usize>,
    /// Plot the first two dimensions as they are (default for a 2-D embedding named umap)
    #[arg(long)]
    pub no_umap: bool,
    /// Seed of the UMAP layout and the drawing order
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image width in pixels (default: from the panels; never narrower than the panels and
    /// their legends)
    #[arg(long)]
    pub width: Option<u32>,
    /// Dots per inch: embedding panels are 4 inches (480 pixels at the default 120); text,
    /// points, bars and lines scale with it (10 to 1200)
    #[arg(value_parser = crate::cli::range::dpi, long, value_name = "DPI")]
    pub dpi: Option<f64>,
    /// Image height in pixels
    #[arg(long)]
    pub height: Option<u32>,
    /// Point radius in pixels (default: from the number of cells, as scanpy's 120000 / n) (> 0)
    #[arg(value_parser = crate::cli::range::positive::<f64>, long)]
    pub point_size: Option<f64>,
    /// Title above the plot
    #[arg(long)]
    pub title: Option<String>,
    /// Draw a scores table (e.g. the workflow's benchmark.tsv) as the scib-style summary: one
    /// row per method sorted by total, a circle per metric, bars for bio, batch and total
    #[arg(long)]
    pub scores: bool,
    /// Draw one cell type across all batches from MEDL's counterfactual cells (the inputs: one
    /// `cellweave-embed MODEL cells --as-batch B` table per batch B): PCA of that type's
    /// counterfactuals, coloured by the batch shown as and the batch measured in.
    /// COLUMN=VALUE, or VALUE of column cell_type
    #[arg(long, value_name = "COLUMN=VALUE")]
    pub across_batches: Option<String>,
    /// Draw scETM's genes table (`cellweave-train --model scetm --genes-out`, or genes.arrow
    /// in its model directory) as a heatmap of each topic's top genes: one column per topic,
    /// one row per gene, alpha rho centred per topic
    #[arg(long)]
    pub topics: bool,
    /// With --topics: genes listed per topic (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 5, value_name = "N")]
    pub top_genes: usize,
}

/// `cellweave-plot`: draw the input(s) of `args` to `--output` (and write `--umap-out`);
/// `step` (the tool's parsed arguments) goes in the provenance of `--umap-out`.
pub fn run_plot(args: &PlotArgs, step: &Step) -> Result<()> {
    let mut inputs = vec![args.input.as_path()];
    inputs.extend(args.more.iter().map(|p| p.as_path()));
    inputs.extend(args.obs.as_deref());
    let mut outputs = Outputs::new(&inputs)?;
    outputs
        .file(&args.output, Kind::Image)?
        .file_opt(args.umap_out.as_deref(), Kind::TableOrText)?;
    super::ImageFormat::of(&args.output)?;
    super::check_size(args.width, args.height)?;
    if let Some(sel) = &args.across_batches {
        plot_across_batches(args, sel)?;
        return outputs.commit();
    }
    let text = !matches!(
        Format::of(&args.input),
        Some(Format::Arrow | Format::Parquet)
    );
    if args.topics {
        plot_topics(args, text)?;
        return outputs.commit();
    }
    let kind = if text {
        super::input::text_kind(&args.input)?
    } else {
        table::peek_kind(&args.input)?
    };
    let read_frame = |kind| {
        if text {
            super::input::read_text_frame(&args.input, kind)
        } else {
            table::read_frame(&args.input, kind)
        }
    };
    // Bar charts and loss curves are laid out in pixels at 120 dpi and drawn at --dpi;
    // --width/--height stay the image's pixels.
    let scale = args.dpi.unwrap_or(scatter::DESIGN_DPI) / scatter::DESIGN_DPI;
    let layout = |px: Option<u32>| px.map(|p| (p as f64 / scale).round() as u32);
    if args.scores && kind != TableKind::Scores {
        return Err(Error::new(format!(
            "--scores draws a scores table; this is a '{}' table",
            kind.as_str()
        ))
        .file(&args.input));
    }
    if !args.more.is_empty() && kind != TableKind::Embedding {
        return Err(Error::new(format!(
            "several inputs are drawn only as embeddings (or counterfactual cells with \
             --across-batches); this is a '{}' table",
            kind.as_str()
        ))
        .file(&args.input));
    }
    match kind {
        TableKind::Embedding if args.more.is_empty() => {
            let s = embedding_scatter(args, &args.input, args.title.clone(), step)?;
            super::save(&s, &args.output)?
        }
        TableKind::Embedding => {
            if args.umap_out.is_some() {
                return Err(
                    Error::new("writes the UMAP of one embedding; give one input")
                        .flag("--umap-out"),
                );
            }
            let rows = std::iter::once(&args.input)
                .chain(&args.more)
                .map(|p| embedding_scatter(args, p, None, step))
                .collect::<Result<Vec<_>>>()?;
            super::save(&Rows(rows), &args.output)?
        }
        TableKind::Scores if args.scores => {
            let mut s = Summary::from_frame(&read_frame(kind)?).map_err(|e| e.file(&args.input))?;
            if let Some(t) = &args.title {
                s.title = t.clone();
            }
            super::save(&s, &args.output)?
        }
        TableKind::Scores => {
            let mut bars = Bars::from_frame(&read_frame(kind)?).map_err(|e| e.file(&args.input))?;
            bars.width = layout(args.width);
            if let Some(t) = &args.title {
                bars.title = t.clone();
            }
            super::save_scaled(&bars, &args.output, scale)?
        }
        TableKind::TrainingLog => {
            let mut curves =
                Curves::from_frame(&read_frame(kind)?).map_err(|e| e.file(&args.input))?;
            (curves.width, curves.height) = (layout(args.width), layout(args.height));
            if let Some(t) = &args.title {
                curves.title = t.clone();
            }
            super::save_scaled(&curves, &args.output, scale)?
        }
        other => {
            return Err(Error::new(format!(
                "cannot plot a '{}' table (expected an embedding, scores or training_log table)",
                other.as_str()
            ))
            .file(&args.input))
        }
    }
    outputs.commit()
}

/// `--topics`: the heatmap of each topic's top genes from a genes table (Arrow/Parquet, or a
/// text table as `--genes-out x.tsv` writes it).
fn plot_topics(args: &PlotArgs, text: bool) -> Result<()> {
    if !args.more.is_empty() || args.umap_out.is_some() {
        return Err(
            Error::new("draws one genes table; give one input and no --umap-out").flag("--topics"),
        );
    }
    let frame = if text {
        super::input::read_text_frame(&args.input, TableKind::Genes)?
    } else {
        table::read_frame(&args.input, TableKind::Genes)?
    };
    let mut t = Topics::from_frame(&frame, args.top_genes).map_err(|e| e.file(&args.input))?;
    if let Some(title) = &args.title {
        t.title = title.clone();
    }
    let scale = args.dpi.unwrap_or(scatter::DESIGN_DPI) / scatter::DESIGN_DPI;
    super::save_scaled(&t, &args.output, scale)
}

/// The UMAP panels of one embedding, titled `title` (None: the embedding's name when several
/// are drawn, --title for one); writes --umap-out when given.
fn embedding_scatter(
    args: &PlotArgs,
    input: &std::path::Path,
    title: Option<String>,
    step: &Step,
) -> Result<scatter::Scatter> {
    let emb = super::input::read_embedding_any(input, args.obs.as_deref())?;
    let panels = scatter::panels_for(&emb, &args.color).map_err(|e| e.file(input))?;
    let direct = args.no_umap || (emb.dim == 2 && emb.name.to_lowercase().contains("umap"));
    let xy = if direct {
        if emb.dim < 2 {
            return Err(
                Error::new(format!("{} dimension(s): need 2 to plot", emb.dim)).file(input),
            );
        }
        (0..emb.n_cells())
            .flat_map(|i| [emb.row(i)[0], emb.row(i)[1]])
            .collect()
    } else {
        let params = UmapParams {
            n_neighbors: args.n_neighbors,
            min_dist: args.min_dist,
            spread: args.spread,
            n_epochs: args.n_epochs,
            seed: args.seed,
            ..UmapParams::default()
        };
        let timer = crate::cli::Timer::start("umap");
        let xy = umap::umap(&emb.data, emb.dim, &params);
        timer.done();
        xy
    };
    if let Some(path) = &args.umap_out {
        let mut provenance = emb.provenance.clone();
        let mut step = step.clone();
        if let (false, serde_json::Value::Object(m)) = (direct, &mut step.params) {
            let search = umap::umap_search(emb.n_cells(), emb.dim);
            m.insert("umap_knn_search".into(), search.name().into());
        }
        provenance.push(step);
        let out = EmbeddingTable {
            name: "umap".into(),
            cell_ids: emb.cell_ids.clone(),
            obs: emb.obs.clone(),
            dim: 2,
            data: xy.clone(),
            provenance,
        };
        match Format::of(path) {
            Some(Format::Tsv | Format::Csv) => {
                crate::io::formats::dense::write_embedding_tsv(path, &out)?
            }
            _ => table::write_embedding(path, &out)?,
        }
    }
    let opts = scatter::ScatterOptions {
        width: args.width,
        height: args.height,
        dpi: args.dpi,
        point_radius: args.point_size,
        title: title.or_else(|| (!args.more.is_empty()).then(|| emb.name.clone())),
        axes: direct.then(|| {
            if emb.name.to_lowercase().contains("umap") {
                ("UMAP1".into(), "UMAP2".into())
            } else {
                (format!("{}1", emb.name), format!("{}2", emb.name))
            }
        }),
        seed: args.seed,
    };
    Ok(scatter::Scatter::new(xy, panels, opts))
}

/// `--across-batches`: one cell type's counterfactual cells from every input table.
fn plot_across_batches(args: &PlotArgs, selector: &str) -> Result<()> {
    let tables = std::iter::once(&args.input)
        .chain(&args.more)
        .map(|p| Ok((p.clone(), table::read_cells(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let (column, value) = counterfactual::parse_selector(selector);
    let (xy, panels) = counterfactual::across_batches(&tables, &column, &value, args.seed)?;
    let opts = scatter::ScatterOptions {
        width: args.width,
        height: args.height,
        dpi: args.dpi,
        point_radius: args.point_size,
        title: Some(args.title.clone().unwrap_or_else(|| {
            format!(
                "{value} across {} batches (counterfactual cells)",
                tables.len()
            )
        })),
        axes: Some(("PC1".into(), "PC2".into())),
        seed: args.seed,
    };
    super::save(&scatter::Scatter::new(xy, panels, opts), &args.output)
}
