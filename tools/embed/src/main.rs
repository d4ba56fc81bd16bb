//! cellweave-embed: apply a trained model to a cells table (e.g. map new batches onto a
//! trained reference).

use cellweave_models::stage::{run_embed, EmbedArgs};

cellweave::stage_main! {
    /// Embed the cells of a table with a model written by cellweave-train (the model's card
    /// says which). Genes are matched to the model's by id (by name when no id matches); genes
    /// the table lacks count as 0.
    #[command(name = "cellweave-embed", version = cellweave::cli::LONG_VERSION)]
    struct Args { embed: EmbedArgs }
    run: |args, step| {
        cellweave_models::kernels::huge::reuse_freed_memory();
        run_embed(&args.embed, &step)
    }
}
