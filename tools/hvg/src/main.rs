//! cellweave-hvg: highly variable genes as scanpy 1.11 selects them (flavors seurat,
//! cell_ranger, seurat_v3; per batch by default).

use cellweave::preprocess::hvg::stage::{run_hvg, HvgArgs};

cellweave::stage_main! {
    /// Select highly variable genes; write the cells table restricted to them (genes keep
    /// their order) and, with --genes-out, the per-gene statistics with the selection order
    /// (`highly_variable_rank`).
    #[command(name = "cellweave-hvg", version = cellweave::cli::LONG_VERSION)]
    struct Args { hvg: HvgArgs }
    run: |args, step| run_hvg(&args.hvg, &step)
}
