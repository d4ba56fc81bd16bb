//! The batch-corrected scETM end to end on simulated data (cellweave-simulate, filter,
//! normalize, hvg, pairs --definition deepmnn): stage by stage by hand (deepMNN with
//! `--pair-space autoencoder --corrected`, then scETM without its batch bias on the
//! corrected table) and in one call (`--model bcscetm --pair-space autoencoder`) give the
//! same embedding bit for bit; the one call's stage 1 defaults to deepMNN's own pair term; the card and provenance record both stages; embed == train's embedding; a run
//! killed in either stage resumes to the same result; and the one-line errors with no
//! output (counts or normalized values where the other is needed, pairs of other cells,
//! an unknown model, flags of another model, a batch the model has not seen); and the
//! Snakemake workflow plans the chain for `models: [..., bcscetm]`.

mod train_support;
mod workflow_support;

use cellweave::contract::ValueKind;
use cellweave::io::table::{read_cells, read_embedding, write_cells};
use cellweave_tests::{assert_has, run_fails, run_fails_one_line, run_ok, s, strs};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use train_support::{args, train_ok};

/// The simulated chain's files (built once): `sim`, `filtered`, `norm`, `hvg`, `pairs`,
/// and `other_hvg` (other cells).
struct Fx {
    dir: PathBuf,
}

impl Fx {
    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn prepare(dir: &Path, prefix: &str, cells: &str) {
    let p = |n: &str| dir.join(format!("{prefix}{n}.arrow"));
    run_ok(
        "simulate",
        &[
            "-o",
            s(&p("sim")),
            "--cells",
            cells,
            "--genes",
            "400",
            "--batches",
            "2",
            "--cell-types",
            "3",
            "--density",
            "0.2",
            "--seed",
            "5",
            "-q",
        ],
    );
    run_ok(
        "filter",
        &[
            s(&p("sim")),
            "-o",
            s(&p("filtered")),
            "--min-cells",
            "1",
            "-q",
        ],
    );
    run_ok("normalize", &[s(&p("filtered")), "-o", s(&p("norm")), "-q"]);
    run_ok(
        "hvg",
        &[
            s(&p("norm")),
            "-o",
            s(&p("hvg")),
            "--n-top-genes",
            "60",
            "-q",
        ],
    );
}

fn fx() -> &'static Fx {
    static FX: OnceLock<Fx> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bcscetm-fx");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        prepare(&dir, "", "240");
        prepare(&dir, "other_", "250");
        let (hvg, pairs) = (dir.join("hvg.arrow"), dir.join("pairs.arrow"));
        run_ok(
            "pairs",
            &[
                s(&hvg),
                "-o",
                s(&pairs),
                "--definition",
                "deepmnn",
                "--deepmnn-pcs",
                "10",
                "-q",
            ],
        );
        Fx { dir }
    })
}

/// Stage 1's flags shared by the hand-run deepMNN and `--model bcscetm`.
const STAGE1: &str = "--pair-space autoencoder --ae-epochs 5 --ae-latent 8 --projection-pcs 10";
/// Stage 2's flags shared by the hand-run scETM and `--model bcscetm`.
const STAGE2: &str = "--epochs 4 --topics 6 --gene-embedding-dim 10 --batch-size 80";

fn split(flags: &str) -> Vec<&str> {
    flags.split_whitespace().collect()
}

/// A `--model bcscetm` command line writing the model `model` and the embedding `emb`
/// into `out`, stage 1 with the autoencoder pair space ([`STAGE1`]).
fn one_call(out: &Path, model: &str, emb: &str, extra: &[&str]) -> Vec<String> {
    one_call_with(STAGE1, out, model, emb, extra)
}

/// [`one_call`] with the stage-1 flags `stage1` (empty: stage 1 at its defaults).
fn one_call_with(stage1: &str, out: &Path, model: &str, emb: &str, extra: &[&str]) -> Vec<String> {
    let f = fx();
    let (m, e) = (out.join(model), out.join(emb));
    let (hvg, pairs) = (f.p("hvg.arrow"), f.p("pairs.arrow"));
    let head = [
        s(&hvg),
        "--model",
        "bcscetm",
        "--pairs",
        s(&pairs),
        "--deepmnn-epochs",
        "3",
        "-o",
        s(&m),
        "--embedding",
        s(&e),
        "--checkpoint-every",
        "1",
        "--threads",
        "1",
    ];
    args(&[&head[..], &split(stage1), &split(STAGE2)].concat(), extra)
}

fn near(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (u, v) in a.iter().zip(b) {
        assert!((u - v).abs() <= 1e-4 * scale, "{what}: {u} vs {v}");
    }
}

#[test]
fn stages_by_hand_and_one_call_give_the_same_model() {
    let f = fx();
    let t = tempfile::tempdir().unwrap();
    let o = |n: &str| t.path().join(n);
    let (hvg, pairs, corrected) = (f.p("hvg.arrow"), f.p("pairs.arrow"), o("corrected.arrow"));
    // By hand: stage 1, deepMNN with the autoencoder pair space ...
    let (dir1, emb1) = (o("stage1"), o("deepmnn.arrow"));
    let stage1 = [
        s(&hvg),
        "--model",
        "deepmnn",
        "--pairs",
        s(&pairs),
        "--epochs",
        "3",
        "--corrected",
        s(&corrected),
        "-o",
        s(&dir1),
        "--embedding",
        s(&emb1),
        "--threads",
        "1",
    ];
    train_ok(&args(&[&stage1[..], &split(STAGE1)].concat(), &[]));
    let card1 = std::fs::read_to_string(o("stage1").join("card.yaml")).unwrap();
    assert_has(
        &card1,
        &[
            "pair_space: autoencoder",
            "pair_weight: 0.1",
            "identity_weight: 0.99",
            "latent: 8",
            "autoencoder_mse:",
            "pair_code: 8",
        ],
    );
    // ... stage 2, scETM without the batch bias on the corrected table
    let (dir2, emb2) = (o("stage2"), o("by_hand.arrow"));
    let stage2 = [
        s(&corrected),
        "--model",
        "scetm",
        "--no-batch-bias",
        "-o",
        s(&dir2),
        "--embedding",
        s(&emb2),
        "--threads",
        "1",
    ];
    train_ok(&args(&[&stage2[..], &split(STAGE2)].concat(), &[]));
    let card2 = std::fs::read_to_string(o("stage2").join("card.yaml")).unwrap();
    assert_has(
        &card2,
        &[
            "values: corrected",
            "batch_bias: false",
            "corrected_as: log1p",
        ],
    );

    // One call.
    let log = o("log.tsv");
    train_ok(&one_call(
        t.path(),
        "m",
        "one.arrow",
        &["--corrected", s(&o("c1.arrow")), "--log", s(&log)],
    ));
    let by_hand = read_embedding(&o("by_hand.arrow")).unwrap();
    let one = read_embedding(&o("one.arrow")).unwrap();
    assert_eq!(
        (one.name.as_str(), one.dim, one.n_cells()),
        ("bcscetm", 6, 240)
    );
    assert_eq!(by_hand.name, "bcscetm");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one.data), bits(&by_hand.data), "one call == by hand");
    let (c0, c1) = (
        read_cells(&o("corrected.arrow")).unwrap(),
        read_cells(&o("c1.arrow")).unwrap(),
    );
    assert_eq!(c1.values, ValueKind::Corrected);
    assert_eq!(bits(&c0.x.data), bits(&c1.x.data));
    // the stages' provenance
    let stages: Vec<String> = one
        .provenance
        .iter()
        .filter_map(|p| p.params.get("stage").and_then(|v| v.as_str()))
        .map(str::to_string)
        .collect();
    assert_eq!(
        stages,
        [
            "bcscetm stage 1 of 2 (deepmnn)",
            "bcscetm stage 2 of 2 (scetm)"
        ]
    );
    // the card: both stages' parameters and summaries, and the stages' directories
    let m = o("m");
    let card = std::fs::read_to_string(m.join("card.yaml")).unwrap();
    assert_has(
        &card,
        &[
            "model: bcscetm",
            "- deepmnn",
            "- scetm",
            "stage2_input: max(corrected, 0), each cell rescaled to a total of 1e4",
            "corrected_as: log1p",
            "pair_space: autoencoder",
            "pair_weight: 0.1",
            "identity_weight: 0.99",
            "batch_bias: false",
            "topics: 6",
            "autoencoder_mse:",
        ],
    );
    for stage in ["deepmnn", "scetm"] {
        assert!(m.join(stage).join("card.yaml").exists(), "{stage}");
        assert!(m.join(stage).join("model.safetensors").exists(), "{stage}");
    }
    assert!(!o(".m.stages").exists(), "the stages are moved in");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().count(), 5, "stage 2's log: header + 4 epochs");
    // embed: both stages applied to the training cells give train's embedding
    let emb = o("embedded.arrow");
    run_ok(
        "embed",
        &[s(&f.p("hvg.arrow")), "--model", s(&m), "-o", s(&emb)],
    );
    let e = read_embedding(&emb).unwrap();
    assert_eq!(e.name, "bcscetm");
    near(&e.data, &one.data, "embed vs train");
    // ... and the stage-2 model embeds the corrected cells the same way
    run_ok(
        "embed",
        &[
            s(&o("corrected.arrow")),
            "--model",
            s(&o("stage2")),
            "-o",
            s(&o("e2.arrow")),
        ],
    );
    near(
        &read_embedding(&o("e2.arrow")).unwrap().data,
        &one.data,
        "stage 2 embed",
    );
    // The pseudo-count reading: recorded, another model, and embed reads new cells as it
    // read the training cells, also for a card written before the choice (no
    // corrected_as: every such model read pseudo-counts).
    let (dir_x, emb_x) = (o("stage2_expm1"), o("expm1.arrow"));
    let mut stage2_x = stage2;
    stage2_x[5] = s(&dir_x);
    stage2_x[7] = s(&emb_x);
    train_ok(&args(
        &[&stage2_x[..], &split(STAGE2)].concat(),
        &["--corrected-as", "expm1"],
    ));
    let card_x = std::fs::read_to_string(dir_x.join("card.yaml")).unwrap();
    assert_has(&card_x, &["corrected_as: expm1"]);
    let trained_x = read_embedding(&emb_x).unwrap();
    assert_ne!(
        bits(&trained_x.data),
        bits(&by_hand.data),
        "another reading"
    );
    let embed_x = |out: &str| {
        let out = o(out);
        let c = s(&corrected);
        run_ok("embed", &[c, "--model", s(&dir_x), "-o", s(&out)]);
        read_embedding(&out).unwrap().data
    };
    let e_x = embed_x("e_x.arrow");
    near(&e_x, &trained_x.data, "expm1 embed");
    let legacy = card_x.replace("  corrected_as: expm1\n", "");
    assert_ne!(legacy, card_x, "the line is there to remove");
    std::fs::write(dir_x.join("card.yaml"), legacy).unwrap();
    assert_eq!(bits(&embed_x("e_legacy.arrow")), bits(&e_x), "legacy card");
    // another seed, another model
    train_ok(&one_call(
        t.path(),
        "m_seed",
        "seed1.arrow",
        &["--seed", "1"],
    ));
    let other = read_embedding(&o("seed1.arrow")).unwrap();
    assert_ne!(bits(&other.data), bits(&one.data));
}

#[test]
fn one_call_killed_in_either_stage_resumes_to_the_same_model() {
    let t = tempfile::tempdir().unwrap();
    let o = |n: &str| t.path().join(n);
    train_ok(&one_call(t.path(), "full", "full.arrow", &[]));
    let want = cellweave_tests::embedding_bits(&o("full.arrow"));
    // killed after stage 1's epoch 2, then after the chain's epoch 5 (stage 2's second)
    for (name, stop) in [("a", "2"), ("b", "5")] {
        let emb = format!("{name}.arrow");
        let a = one_call(t.path(), name, &emb, &["--stop-after-epoch", stop]);
        let err = run_fails("train", &strs(&a), &o(&emb));
        assert!(err.contains("--resume"), "{err}");
        assert!(!o(name).exists(), "no model directory");
        assert!(
            o(&format!(".{name}.stages")).exists(),
            "the stages are kept"
        );
        train_ok(&one_call(t.path(), name, &emb, &["--resume"]));
        assert_eq!(
            cellweave_tests::embedding_bits(&o(&emb)),
            want,
            "stop {stop}"
        );
        assert!(!o(&format!(".{name}.stages")).exists());
    }
}

#[test]
fn stage_1_defaults_to_deepmnns_own_pair_term() {
    // With the autoencoder's 0.1 / 0.99 stage 1 stays near the identity (docs/models.md),
    // so the one call's stage 1 is plain deepMNN unless --pair-space autoencoder is given.
    let t = tempfile::tempdir().unwrap();
    let (m, e) = (t.path().join("m"), t.path().join("e.arrow"));
    train_ok(&one_call_with("", t.path(), "m", "e.arrow", &[]));
    let card = std::fs::read_to_string(m.join("card.yaml")).unwrap();
    assert_has(
        &card,
        &[
            "pair_space: pcs",
            "pair_weight: 1.0",
            "identity_weight: 0.001",
            "corrected_as: log1p",
        ],
    );
    assert!(!card.contains("autoencoder_mse"), "no autoencoder: {card}");
    assert_eq!(read_embedding(&e).unwrap().name, "bcscetm");
}

#[test]
fn bad_input_fails_with_one_line_and_no_output() {
    let f = fx();
    let t = tempfile::tempdir().unwrap();
    let o = |n: &str| t.path().join(n);
    let fails = |a: Vec<String>| -> String {
        let err = run_fails_one_line("train", &strs(&a), &o("x.arrow"));
        assert!(!o("m").exists() && !o(".m.stages").exists(), "no output");
        err
    };
    let base = || one_call(t.path(), "m", "x.arrow", &[]);
    // Pairs of other cells.
    let mut a = base();
    a[0] = s(&f.p("other_hvg.arrow")).into();
    assert_has(&fails(a), &["pairs.arrow", "other cells"]);
    // Raw counts where deepMNN needs log-normalized values.
    let mut a = base();
    a[0] = s(&f.p("filtered.arrow")).into();
    assert_has(
        &fails(a),
        &["filtered.arrow", "values", "counts", "log-normalized"],
    );
    // An unknown model.
    let mut a = base();
    a[2] = "bcsetm".into();
    assert_has(&fails(a), &["bcsetm", "bcscetm"]);
    // A flag of bcscetm given to another model.
    let mut a = base();
    a[2] = "scetm".into();
    assert_has(&fails(a), &["--deepmnn-epochs", "bcscetm"]);
    // scETM: normalized values as the cells table, without counts ...
    let (m, x) = (o("m"), o("x.arrow"));
    let sc = |cells: &Path, extra: &[&str]| {
        let head = [
            s(cells),
            "--model",
            "scetm",
            "-o",
            s(&m),
            "--embedding",
            s(&x),
        ];
        args(&[&head[..], &split(STAGE2)].concat(), extra)
    };
    assert_has(&fails(sc(&f.p("norm.arrow"), &[])), &["counts", "--counts"]);
    // ... normalized (log1p) values given as counts ...
    let err = fails(sc(&f.p("hvg.arrow"), &["--counts", s(&f.p("norm.arrow"))]));
    assert_has(&err, &["norm.arrow", "values", "log1p", "raw counts"]);
    // ... and corrected values with counts besides.
    let corrected = o("corrected.arrow");
    let mut c = read_cells(&f.p("hvg.arrow")).unwrap();
    c.values = ValueKind::Corrected;
    write_cells(&corrected, &c).unwrap();
    let err = fails(sc(&corrected, &["--counts", s(&f.p("filtered.arrow"))]));
    assert_has(&err, &["--counts", "corrected"]);
    // ... and a reading of corrected values given for counts.
    let err = fails(sc(
        &f.p("hvg.arrow"),
        &[
            "--counts",
            s(&f.p("filtered.arrow")),
            "--corrected-as",
            "log1p",
        ],
    ));
    assert_has(&err, &["--corrected-as", "corrected", "hvg.arrow", "log1p"]);
    // embed: a batch the model was not trained on; a stage-2 model given counts
    train_ok(&one_call(t.path(), "ok", "ok.arrow", &[]));
    let mut new = read_cells(&f.p("hvg.arrow")).unwrap();
    new.batch.categories[1] = "zz".into();
    let newp = o("new.arrow");
    write_cells(&newp, &new).unwrap();
    let out = o("new_emb.arrow");
    let err = run_fails_one_line(
        "embed",
        &[s(&newp), "--model", s(&o("ok")), "-o", s(&out)],
        &out,
    );
    assert_has(&err, &["new.arrow", "batch", "'zz'", "trained"]);
    let err = run_fails_one_line(
        "embed",
        &[
            s(&f.p("filtered.arrow")),
            "--model",
            s(&o("ok").join("scetm")),
            "-o",
            s(&out),
        ],
        &out,
    );
    assert_has(&err, &["filtered.arrow", "values", "counts", "corrected"]);
}

#[test]
fn snakemake_runs_the_chain_for_models_bcscetm() {
    let Some(smk) = workflow_support::venv_bin("snakemake") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let config = t.path().join("sim.yaml");
    std::fs::write(
        &config,
        "outdir: out\ndatasets:\n  two: {simulate: {batches: 2}, label_key: cell_type, models: [claire, bcscetm]}\n",
    )
    .unwrap();
    let args = ["--configfile", s(&config), "--dry-run", "--printshellcmds"];
    let out = workflow_support::snakemake(&smk, t.path(), None, &args);
    let text = workflow_support::text(&out);
    assert!(out.status.success(), "dry run failed:\n{text}");
    let jobs = workflow_support::job_counts(&text);
    assert_eq!(jobs.get("pairs_deepmnn"), Some(&1), "{jobs:?}");
    assert_eq!(jobs.get("train_model"), Some(&1), "{jobs:?}");
    assert_has(
        &text,
        &[
            "cellweave-pairs out/two/04_hvg.arrow --definition deepmnn",
            "cellweave-train out/two/04_hvg.arrow --model bcscetm --pairs out/two/05_pairs_deepmnn.arrow",
            "out/two/12_bcscetm_embedding.arrow",
            "--model bcscetm out/two/benchmarks/05_pairs_deepmnn.tsv out/two/benchmarks/12_train_bcscetm.tsv",
        ],
    );
}
