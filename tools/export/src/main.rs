//! cellweave-export: write a cells or embedding table as AnnData `.h5ad`, a 10x MTX
//! folder, or a dense TSV.

use cellweave::convert::export::{run_export, ExportArgs};

cellweave::stage_main! {
    /// Export a cellweave table for scanpy, Seurat and other tools.
    ///
    /// Output by name: `.h5ad` (X = the table's values, obs columns as categoricals,
    /// provenance in uns), `.tsv` (dense, cells as rows), or a folder name (10x MTX, gzipped,
    /// genes x cells, plus obs.tsv). An embedding table as INPUT gives obs + obsm only (no X),
    /// or X = the raw counts with --counts.
    ///
    /// The .h5ad of an integration run, as scanpy's tutorial ends with it: INPUT = the
    /// normalized table of every kept gene (cellweave-normalize's output), --counts the
    /// filtered counts, --hvg the genes table of cellweave-hvg, --embedding the integrated
    /// embedding and its UMAP. The neighbour graph of the first embedding that is not a UMAP
    /// goes in obsp/uns['neighbors'], so sc.tl.leiden runs without sc.pp.neighbors.
    #[command(name = "cellweave-export", version = cellweave::cli::LONG_VERSION)]
    struct Args { export: ExportArgs, common: NoCommon }
    run: |args, step| run_export(&args.export, &step)
}
