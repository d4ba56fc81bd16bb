//! cellweave-refine: CLAIRE's refinement of seed pairs with a stage-1 embedding.

use cellweave::integrate::refine_stage::{run_refine, RefineArgs};

cellweave::stage_main! {
    /// Refine seed pairs: cosine similarity of each seed in an embedding (e.g. after a few
    /// epochs of cellweave-train), a two-component Gaussian mixture fitted to them, and the
    /// seeds whose posterior of the higher-similarity component is >= --threshold kept (with
    /// that posterior). KNN rows are kept unchanged.
    #[command(name = "cellweave-refine", version = cellweave::cli::LONG_VERSION)]
    struct Args { refine: RefineArgs, common: NoCommon }
    run: |args, step| run_refine(&args.refine, step)
}
