//! cellweave-score: integration metrics (scib-metrics' definitions, the CLAIRE paper's set)
//! of one or more embeddings, in one comparison table.

use cellweave::evaluate::stage::{run_score, ScoreArgs};

cellweave::stage_main! {
    /// Score how well embeddings mix batches and keep cell types apart (scIB metrics as
    /// scib-metrics defines them, and the CLAIRE paper's set), one row per embedding.
    #[command(name = "cellweave-score", version = cellweave::cli::LONG_VERSION, about, long_about = None)]
    struct Args { score: ScoreArgs, common: NoCommon }
    run: |args, step| run_score(&args.score, step)
}
