//! cellweave-plot: UMAP pictures of embeddings (one row per embedding when several are
//! given), metric bar charts of scores tables, loss curves of training logs, one cell type
//! across batches from counterfactual cells and scETM's top genes per topic (PNG or SVG by
//! the output's extension).

use cellweave::viz::plot::stage::{run_plot, PlotArgs};

cellweave::stage_main! {
    /// Draw an embedding as UMAP panels coloured by obs columns (side by side), a scores table
    /// as a bar chart, or a training log as loss curves. The kind of plot follows the input
    /// table's kind; a text table (.tsv/.csv) is a scores table when its columns include metric
    /// and value (or the first is embedding), a training log when they include epoch and a loss,
    /// and otherwise an embedding (cell id, then coordinates). Several embeddings draw one row
    /// of panels each (the UMAP of every model side by side). --topics draws scETM's genes
    /// table as a heatmap of each topic's top genes.
    #[command(name = "cellweave-plot", version = cellweave::cli::LONG_VERSION)]
    struct Args { plot: PlotArgs }
    run: |args, step| run_plot(&args.plot, &step)
}
