//! What `cellweave-hvg` does: select the genes (streamed for the dispersion flavors, on the
//! whole table for seurat_v3), log the selection, write the genes table and the cells table
//! restricted to them.

use super::{
    align_counts, check_values, highly_variable_genes, highly_variable_genes_stream, subset_file,
    subset_genes, Flavor, Groups, HvgParams,
};
use crate::contract::{Column, Frame, Step};
use crate::io::atomic::{Kind, Outputs};
use crate::io::stream::CellsInput;
use crate::io::table;
use crate::{info, Error, Result};
use std::path::PathBuf;

/// The flags of `cellweave-hvg`.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct HvgArgs {
    /// Input cells table: log1p values (seurat, cell_ranger) or raw counts (seurat_v3)
    pub input: PathBuf,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long)]
    pub output: PathBuf,
    /// The selection's parameters (flavor, number of genes, cut-offs)
    #[command(flatten)]
    #[serde(flatten)]
    pub params: HvgParams,
    /// Select per batch of this per-cell column (scanpy's batch_key)
    #[arg(long, default_value = "batch")]
    pub batch_key: String,
    /// Treat all cells as one batch (scanpy's batch_key=None)
    #[arg(long)]
    pub ignore_batch: bool,
    /// Raw counts for seurat_v3 when the input holds log1p values (cells and genes matched by id)
    #[arg(long)]
    pub counts: Option<PathBuf>,
    /// Write the genes table here (.arrow, .parquet or .tsv)
    #[arg(long)]
    pub genes_out: Option<PathBuf>,
    /// Keep every gene in the output cells table (needs --genes-out to be useful)
    #[arg(long)]
    pub no_subset: bool,
}

/// `cellweave-hvg`: select the highly variable genes of `args.input` and write the outputs;
/// `step` (the tool's parsed arguments) goes in their provenance.
pub fn run_hvg(args: &HvgArgs, step: &Step) -> Result<()> {
    if args.no_subset && args.genes_out.is_none() {
        return Err(Error::new(
            "--no-subset keeps every gene: give --genes-out to record the selection",
        )
        .flag("--no-subset"));
    }
    let mut inputs = vec![args.input.as_path()];
    inputs.extend(args.counts.as_deref());
    let mut outputs = Outputs::new(&inputs)?;
    outputs
        .file(&args.output, Kind::Table)?
        .file_opt(args.genes_out.as_deref(), Kind::TableOrTsv)?;
    let timer = crate::cli::Timer::start("hvg");
    if args.params.flavor == Flavor::SeuratV3 {
        whole_table(args, step)?;
    } else {
        streamed(args, step)?;
    }
    outputs.commit()?;
    timer.done();
    Ok(())
}

/// The dispersion flavors: one pass over the input's batches for the statistics, a second
/// one to write the selected genes.
fn streamed(args: &HvgArgs, step: &Step) -> Result<()> {
    let params = &args.params;
    if args.counts.is_some() {
        return Err(Error::new("only flavor seurat_v3 uses raw counts").flag("--counts"));
    }
    let input = CellsInput::open(&args.input)?;
    let file = |e: Error| e.file(&args.input);
    check_values(input.values, params.flavor).map_err(file)?;
    let groups = if args.ignore_batch {
        Groups::single(input.n_cells())
    } else {
        let col = input.column(&args.batch_key).map_err(file)?;
        Groups::of_column(&col, &args.batch_key, |i| input.cell_id(i).to_string()).map_err(file)?
    };
    let result = highly_variable_genes_stream(&input, &groups, params).map_err(file)?;
    let provenance = report(args, step, result.genes, &groups, &input.provenance)?;
    let keep = (!args.no_subset).then_some(result.selected.as_slice());
    subset_file(&input, &args.output, keep, &provenance)
}

/// seurat_v3 (raw counts, a loess fit per batch): on the whole table.
fn whole_table(args: &HvgArgs, step: &Step) -> Result<()> {
    let params = &args.params;
    let cells = table::read_cells(&args.input)?;
    let groups = if args.ignore_batch {
        Groups::single(cells.n_cells())
    } else {
        Groups::by_column(&cells, &args.batch_key).map_err(|e| e.file(&args.input))?
    };
    let counts = match &args.counts {
        Some(raw) => {
            let raw_t = table::read_cells(raw)?;
            Some(align_counts(&cells, &raw_t).map_err(|e| e.file(raw))?)
        }
        None => {
            check_values(cells.values, params.flavor).map_err(|e| e.file(&args.input))?;
            None
        }
    };
    let x = counts.as_ref().unwrap_or(&cells.x);
    let result = highly_variable_genes(x, &cells.gene_ids, &cells.gene_names, &groups, params)
        .map_err(|e| e.file(&args.input))?;
    let provenance = report(args, step, result.genes, &groups, &cells.provenance)?;
    let mut out = if args.no_subset {
        cells
    } else {
        subset_genes(&cells, &result.selected)
    };
    out.provenance = provenance;
    table::write_cells(&args.output, &out)
}

/// Log the selection and write the genes table (--genes-out); the output's provenance.
fn report(
    args: &HvgArgs,
    step: &Step,
    genes: Frame,
    groups: &Groups,
    provenance: &[Step],
) -> Result<Vec<Step>> {
    let n_genes = genes.n_rows(); // one row per input gene
    let selected = match genes.column("highly_variable") {
        Some(Column::Bool(v)) => v.iter().filter(|b| **b == Some(true)).count(),
        _ => 0,
    };
    info!(
        "{selected} of {n_genes} genes selected ({}, {} batch(es))",
        args.params.flavor.as_str(),
        groups.rows.len()
    );
    let mut provenance = provenance.to_vec();
    provenance.push(step.clone());
    if let Some(p) = &args.genes_out {
        let mut g = genes;
        g.provenance = provenance.clone();
        g.meta.insert(
            "cellweave.hvg_flavor".into(),
            args.params.flavor.as_str().into(),
        );
        let key = if args.ignore_batch {
            String::new()
        } else {
            args.batch_key.clone()
        };
        g.meta.insert("cellweave.batch_key".into(), key);
        table::write_side(p, &g)?;
    }
    Ok(provenance)
}
