//! cellweave-import: bring 10x MTX folders, 10x `.h5`, AnnData `.h5ad` and dense CSV/TSV
//! matrices into a cells table (`.arrow` or `.parquet`).

use cellweave::convert::stage::{run_import, ImportArgs};

cellweave::stage_main! {
    /// Import single-cell expression matrices into a cellweave cells table.
    ///
    /// Inputs: a 10x folder (matrix.mtx[.gz], features.tsv[.gz] or genes.tsv[.gz],
    /// barcodes.tsv[.gz]; an obs.tsv inside it is joined), a `<prefix>matrix.mtx[.gz]` file,
    /// a 10x `.h5`, an AnnData `.h5ad`, a dense `.csv`/`.tsv[.gz]` (cells as rows), or a cells
    /// table. Several inputs are concatenated with genes aligned by id. Many samples: a
    /// samplesheet (`--samplesheet sheet.csv`, columns sample,path[,obs] and any per-sample
    /// columns), each sample a batch.
    #[command(name = "cellweave-import", version = cellweave::cli::LONG_VERSION)]
    struct Args { import: ImportArgs, common: NoCommon }
    run: |args, step| run_import(&args.import, step)
}
