//! cellweave-filter: cell QC (genes detected, total counts, mitochondrial share) then the
//! gene filter (cells expressing), with a QC report of what was removed and why.

use cellweave::preprocess::qc::stage::{run_filter, FilterArgs};

cellweave::stage_main! {
    /// Filter cells (min/max genes, min/max counts, max mitochondrial %) then genes (min cells),
    /// on raw counts, in scanpy's order and with scanpy's comparisons (bounds are inclusive).
    #[command(name = "cellweave-filter", version = cellweave::cli::LONG_VERSION)]
    struct Args { filter: FilterArgs }
    run: |args, step| run_filter(&args.filter, step)
}
