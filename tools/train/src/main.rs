//! cellweave-train: train an integration model (`--model`, CLAIRE by default) and write
//! the model directory and the embedding of every cell.

use cellweave_models::stage::{run_train, TrainArgs};

/// Large buffers (weights, optimiser moments, batches) on transparent huge pages.
#[global_allocator]
static ALLOC: cellweave_models::kernels::huge::HugePageAlloc =
    cellweave_models::kernels::huge::HugePageAlloc;

cellweave::stage_main! {
    /// Train an integration model on a log-normalized, HVG-subset cells table. CLAIRE (the
    /// default) also takes the seed pairs and KNN lists of cellweave-pairs: by default one call
    /// runs stage 1, refines the seed pairs with a Gaussian mixture on their similarities, then
    /// continues with stage 2. Writes the model directory (-o: weights, model card, training
    /// state, log) and the embedding (--embedding).
    #[command(name = "cellweave-train", version = cellweave::cli::LONG_VERSION)]
    struct Args { train: TrainArgs }
    run: |args, step| {
        cellweave_models::kernels::huge::reuse_freed_memory();
        run_train(&args.train, &step)
    }
}
