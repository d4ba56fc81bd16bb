//! cellweave-pairs: CLAIRE's seed pairs (mutual nearest neighbours between every pair of
//! batches) and intra-batch nearest neighbours, as one pairs table.

use cellweave::integrate::stage::{run_pairs, PairsArgs};

cellweave::stage_main! {
    /// Compute CLAIRE's seed pairs and intra-batch KNN lists from a log-normalized cells table.
    ///
    /// Seeds: for every pair of batches, Seurat-style CCA (features z-scored per batch, 30
    /// canonical vectors, L2-normalized; or the joint PCA with --space pca), mutual nearest
    /// neighbours (k.anchor), kept when the partner is among the cell's k.filter nearest
    /// neighbours in the L2-normalized expression of the top CCA-loading genes. KNN: per
    /// batch, the nearest cells (self excluded) in the L2-normalized joint PCA.
    ///
    /// Scatter/gather: `--batch-a A --batch-b B` computes one batch pair, `--knn-only` the KNN
    /// lists; `--merge SHARD... -o PAIRS` joins them into what one run writes.
    #[command(name = "cellweave-pairs", version = cellweave::cli::LONG_VERSION)]
    struct Args { pairs: PairsArgs, common: NoCommon }
    run: |args, step| run_pairs(&args.pairs, &step)
}
