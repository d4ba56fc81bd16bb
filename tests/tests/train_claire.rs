//! cellweave-train / cellweave-embed end to end on a small synthetic data set: outputs and
//! their contract, determinism with a seed, a resumed run equal to an uninterrupted one,
//! a stage-by-stage workflow equal to the one-call schedule, embed == train's embedding,
//! gene alignment, and errors.

mod train_support;

use cellweave::contract::{CellsTable, Column, Csr, PairKind, PairsTable, TableKind, ValueKind};
use cellweave::io::table::{read_embedding, read_frame, read_pairs, write_cells, write_pairs};
use cellweave_tests::{assert_has, refine_args, run_fails, run_fails_one_line, run_ok, s, strs};
use std::path::{Path, PathBuf};
use train_support::{cells_table, Data, Lcg};

const TYPES: usize = 3;

/// log1p values of 3 cell types x 2 batches (batch b shifts a third of the genes), with
/// types recorded in `cell_type`.
fn cells(n: usize, g: usize) -> CellsTable {
    let mut r = Lcg(7);
    let prog: Vec<Vec<f64>> = (0..TYPES)
        .map(|_| (0..g).map(|_| r.next() * 6.0).collect())
        .collect();
    let shift: Vec<f64> = (0..g).map(|j| if j % 3 == 0 { 2.0 } else { 0.0 }).collect();
    let mut dense = vec![0f32; n * g];
    for i in 0..n {
        let (t, b) = (i % TYPES, (i / TYPES) % 2);
        for j in 0..g {
            let mean = prog[t][j] + if b == 1 { shift[j] } else { 0.0 };
            if r.next() < 0.6 {
                dense[i * g + j] = ((mean * (0.5 + r.next())) as f32).ln_1p();
            }
        }
    }
    let batch: Vec<String> = (0..n)
        .map(|i| ["a", "b"][(i / TYPES) % 2].to_string())
        .collect();
    let types: Vec<String> = (0..n).map(|i| format!("T{}", i % TYPES)).collect();
    cells_table("c", g, &dense, &batch, &types, ValueKind::Log1p)
}

/// Seeds between same-type cells of the two batches (every 8th one wrong), and 5 KNN per
/// cell within its batch and type.
fn pairs(c: &CellsTable) -> PairsTable {
    let n = c.n_cells();
    let mut r = Lcg(3);
    let mut t = PairsTable {
        n_cells: n,
        fingerprint: c.fingerprint(),
        ..Default::default()
    };
    let group = |i: usize| (i % TYPES, (i / TYPES) % 2);
    let members =
        |ty: usize, b: usize| -> Vec<usize> { (0..n).filter(|&i| group(i) == (ty, b)).collect() };
    for i in 0..n {
        let (ty, b) = group(i);
        if b == 0 && i % 2 == 0 {
            let wrong = i % 16 == 0;
            let cand = members(if wrong { (ty + 1) % TYPES } else { ty }, 1);
            t.push(
                PairKind::Mnn,
                i as u32,
                cand[r.below(cand.len())] as u32,
                0.5,
                f32::NAN,
            );
        }
        let same = members(ty, b);
        for _ in 0..5 {
            let j = same[r.below(same.len())];
            if j != i {
                t.push(PairKind::Knn, i as u32, j as u32, 0.1, f32::NAN);
            }
        }
    }
    t
}

fn data() -> Data {
    let d = Data::named("cells.arrow", "pairs.arrow", "");
    let c = cells(480, 48);
    let p = pairs(&c);
    write_cells(&d.cells, &c).unwrap();
    write_pairs(&d.pairs, &p).unwrap();
    d
}

/// Fast settings for tests: small batches and queue, 6 epochs, refinement after 2.
fn train_args<'a>(d: &'a Data, model: &'a str, emb: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        s(&d.cells).into(),
        "--pairs".into(),
        s(&d.pairs).into(),
        "-o".into(),
        s(&d.path(model)).into(),
        "--embedding".into(),
        s(&d.path(emb)).into(),
        "--batch-size".into(),
        "32".into(),
        "--queue".into(),
        "128".into(),
        "--checkpoint-every".into(),
        "2".into(),
        "--threads".into(),
        "1".into(),
    ];
    let has = |f: &str| extra.contains(&f);
    if !has("--epochs") && !has("--stage1-only") {
        a.extend(["--epochs".into(), "6".into()]);
    }
    if !has("--stage1-epochs") && !has("--no-refine") {
        a.extend(["--stage1-epochs".into(), "2".into()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn train(d: &Data, model: &str, emb: &str, extra: &[&str]) -> std::process::Output {
    run_ok("train", &strs(&train_args(d, model, emb, extra)))
}

/// A training run that must fail and leave no embedding `emb`: its stderr.
fn train_fails(d: &Data, model: &str, emb: &str, extra: &[&str]) -> String {
    let a = train_args(d, model, emb, extra);
    run_fails("train", &strs(&a), &d.path(emb))
}

#[test]
fn train_writes_model_embedding_and_log() {
    let d = data();
    let out = train(&d, "m", "e.arrow", &["--log", s(&d.path("log.tsv"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("claire stage 1 epoch 1/6"), "{err}");
    assert!(err.contains("claire stage 2 epoch 6/6"), "{err}");
    assert!(err.contains("seed accuracy"), "{err}");
    let e = read_embedding(&d.path("e.arrow")).unwrap();
    assert_eq!(e.name, "claire");
    assert_eq!(e.dim, 128);
    assert_eq!(e.n_cells(), 480);
    assert!(e.column("cell_type").is_some() && e.column("batch").is_some());
    for i in 0..e.n_cells() {
        let n: f32 = e.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4 || n == 0.0, "row {i} has norm {n}");
    }
    assert_eq!(e.provenance.last().unwrap().tool, "cellweave-train");
    let m = d.path("m");
    for f in [
        "card.yaml",
        "model.safetensors",
        "state.safetensors",
        "state.json",
        "refined_pairs.arrow",
        "training_log.arrow",
    ] {
        assert!(m.join(f).exists(), "{f} missing");
    }
    let card = std::fs::read_to_string(m.join("card.yaml")).unwrap();
    assert_has(
        &card,
        &[
            "model: claire",
            "epochs: 6",
            "gene_ids:",
            "- ENSG00047",
            "cells_fingerprint: 480:",
            "lr: 0.0001",
            "refine_max_overlap: 0.1",
            "final_loss:",
            "precision: auto",
        ],
    );
    assert!(
        card.contains("precision_used: bf16-first-layer") || card.contains("precision_used: f32"),
        "{card}"
    );
    let log = read_frame(&m.join("training_log.arrow"), TableKind::TrainingLog).unwrap();
    assert_eq!(log.n_rows(), 6);
    match (log.column("loss").unwrap(), log.column("stage").unwrap()) {
        (Column::F64(l), Column::U32(st)) => {
            assert!(l.iter().all(|v| v.is_finite() && *v > 0.0));
            assert_eq!(st, &vec![1, 1, 2, 2, 2, 2]);
        }
        other => panic!("unexpected log columns {other:?}"),
    }
    let tsv = std::fs::read_to_string(d.path("log.tsv")).unwrap();
    assert!(tsv.starts_with("stage\tepoch\tsteps"), "{tsv}");
    assert_eq!(tsv.lines().count(), 7);
    // The refined seeds are fewer or as many, each with its posterior; when the mixture's
    // components overlap more than --refine-max-overlap (the log says so) every seed stays.
    let n0 = {
        let p = read_pairs(&d.pairs).unwrap();
        p.kind.iter().filter(|k| **k == PairKind::Mnn).count()
    };
    let seeds_of = |dir: &Path| {
        let rp = read_pairs(&dir.join("refined_pairs.arrow")).unwrap();
        let seeds: Vec<f32> = (0..rp.len())
            .filter(|&r| rp.kind[r] == PairKind::Mnn)
            .map(|r| rp.posterior[r])
            .collect();
        seeds
    };
    let post = seeds_of(&m);
    assert!(!post.is_empty() && post.len() <= n0 && post.iter().all(|p| p.is_finite()));
    if err.contains("every seed kept") {
        assert_eq!(post.len(), n0, "{err}");
    } else {
        assert!(post.iter().all(|&p| p >= 0.5), "{err}");
    }
    // Refining always (the published method): the kept seeds carry posteriors >= 0.5.
    let out = train(&d, "always", "always.arrow", &["--refine-max-overlap", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("every seed kept"), "{err}");
    let post = seeds_of(&d.path("always"));
    assert!(!post.is_empty() && post.len() <= n0 && post.iter().all(|&p| p >= 0.5));
}

/// The raw bytes of one tensor of a safetensors file (8-byte header length, JSON header
/// with offsets, then the data).
fn tensor_bytes(path: &Path, name: &str) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let off = &header[name]["data_offsets"];
    let (start, end) = (
        off[0].as_u64().unwrap() as usize,
        off[1].as_u64().unwrap() as usize,
    );
    b[8 + n + start..8 + n + end].to_vec()
}

#[test]
fn embedding_and_model_come_from_the_chosen_encoder() {
    let d = data();
    // Without refinement (which depends on nothing but the query encoder) the runs train
    // identically; the saved weights and the embedding are the momentum (key) encoder's or
    // the query encoder's as asked.
    train(
        &d,
        "mom",
        "mom.arrow",
        &["--no-refine", "--embed-with", "momentum"],
    );
    train(
        &d,
        "qry",
        "qry.arrow",
        &["--no-refine", "--embed-with", "query"],
    );
    // auto (the default): the query encoder while the momentum encoder is mostly its
    // starting weights (6 epochs of 15 steps at m = 0.999: 0.999^90 = 0.91 > 1/e), the
    // momentum encoder once that share is below 1/e (m = 0.9: 0.9^90).
    train(&d, "auto", "auto.arrow", &["--no-refine"]);
    train(
        &d,
        "auto_m09",
        "auto_m09.arrow",
        &["--no-refine", "--momentum", "0.9"],
    );
    train(
        &d,
        "mom_m09",
        "mom_m09.arrow",
        &[
            "--no-refine",
            "--momentum",
            "0.9",
            "--embed-with",
            "momentum",
        ],
    );
    assert_eq!(d.bits("auto.arrow"), d.bits("qry.arrow"));
    assert_eq!(d.bits("auto_m09.arrow"), d.bits("mom_m09.arrow"));
    assert_ne!(d.bits("auto_m09.arrow"), d.bits("auto.arrow"));
    for (model, prefix, other) in [
        ("mom", "encoder_k.", "encoder_q."),
        ("qry", "encoder_q.", "encoder_k."),
    ] {
        let dir = d.path(model);
        for t in ["0.weight", "0.bias", "3.weight", "6.weight", "6.bias"] {
            let saved = tensor_bytes(&dir.join("model.safetensors"), &format!("encoder.{t}"));
            assert_eq!(
                saved,
                tensor_bytes(&dir.join("state.safetensors"), &format!("{prefix}{t}")),
                "{model}: {t}"
            );
            assert_ne!(
                saved,
                tensor_bytes(&dir.join("state.safetensors"), &format!("{other}{t}")),
                "{model}: {t} equals the other encoder's"
            );
        }
        let card = std::fs::read_to_string(dir.join("card.yaml")).unwrap();
        let want = if model == "mom" { "momentum" } else { "query" };
        assert!(card.contains(&format!("embed_with: {want}")), "{card}");
        assert!(card.contains(&format!("encoder: {want}")), "{card}");
    }
    assert_eq!(
        std::fs::read(d.path("mom/state.safetensors")).unwrap(),
        std::fs::read(d.path("qry/state.safetensors")).unwrap(),
        "the choice of output changed the training itself"
    );
    assert_ne!(d.bits("mom.arrow"), d.bits("qry.arrow"));
}

#[test]
fn train_is_deterministic_with_a_seed() {
    let d = data();
    train(&d, "a", "a.arrow", &["--seed", "5"]);
    train(&d, "b", "b.arrow", &["--seed", "5"]);
    train(&d, "c", "c.arrow", &["--seed", "6"]);
    let (a, b, c) = (d.bits("a.arrow"), d.bits("b.arrow"), d.bits("c.arrow"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Thread count does not change the result either.
    let mut args = train_args(&d, "t2", "t2.arrow", &["--seed", "5"]);
    let i = args.iter().position(|x| x == "--threads").unwrap();
    args[i + 1] = "2".into();
    run_ok("train", &strs(&args));
    assert_eq!(a, d.bits("t2.arrow"));
}

#[test]
fn train_resume_equals_an_uninterrupted_run() {
    let d = data();
    train(&d, "full", "full.arrow", &[]);
    // Killed after epoch 5: the last checkpoint is epoch 4 (after refinement).
    // Killed after epoch 3: the last checkpoint is epoch 2 (refinement still to come).
    for stop in ["5", "3"] {
        let model = format!("crash{stop}");
        let emb = format!("crash{stop}.arrow");
        // No embedding from an interrupted run.
        let err = train_fails(&d, &model, &emb, &["--stop-after-epoch", stop]);
        assert!(err.contains("--resume"), "{err}");
        assert!(
            !d.path(&model).join("card.yaml").exists(),
            "no card from an interrupted run"
        );
        let out = train(&d, &model, &emb, &["--resume"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("resuming after epoch"));
        assert_eq!(d.bits("full.arrow"), d.bits(&emb), "stop {stop}");
        let bytes = |m: &str| std::fs::read(d.path(m).join("model.safetensors")).unwrap();
        assert_eq!(bytes("full"), bytes(&model));
    }
    // Resuming with other parameters is refused.
    let err = train_fails(&d, "crash3", "x.arrow", &["--resume", "--lr", "0.001"]);
    assert!(err.contains("other parameters"), "{err}");
}

#[test]
fn train_stage_by_stage_equals_the_one_call_schedule() {
    let d = data();
    train(&d, "one", "one.arrow", &[]);
    // Stage 1 alone: its embedding is the query encoder's, the one the one-call schedule
    // refines with.
    train(
        &d,
        "s1",
        "s1.arrow",
        &["--stage1-only", "--stage1-epochs", "2"],
    );
    let refined = d.path("refined.arrow");
    let s1 = d.path("s1.arrow");
    run_ok("refine", &refine_args(&d.cells, &d.pairs, &s1, &refined));
    let a = vec![
        s(&d.cells).to_string(),
        "--pairs".into(),
        s(&refined).into(),
        "-o".into(),
        s(&d.path("s2")).into(),
        "--embedding".into(),
        s(&d.path("s2.arrow")).into(),
        "--batch-size".into(),
        "32".into(),
        "--queue".into(),
        "128".into(),
        "--threads".into(),
        "1".into(),
        "--epochs".into(),
        "4".into(),
        "--no-refine".into(),
        "--init".into(),
        s(&d.path("s1")).into(),
    ];
    let out = run_ok("train", &strs(&a));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claire stage 2 epoch 3/6"));
    assert_eq!(d.bits("one.arrow"), d.bits("s2.arrow"));
}

#[test]
fn embed_reproduces_the_training_embedding_and_aligns_genes() {
    let d = data();
    train(&d, "m", "e.arrow", &["--epochs", "3", "--no-refine"]);
    let m = d.path("m");
    let e2 = d.path("e2.arrow");
    run_ok(
        "embed",
        &[
            s(&d.cells),
            "--model",
            s(&m),
            "-o",
            s(&e2),
            "--threads",
            "1",
        ],
    );
    let train_emb = read_embedding(&d.path("e.arrow")).unwrap();
    let embed_emb = read_embedding(&e2).unwrap();
    assert_eq!(train_emb.data, embed_emb.data);
    assert_eq!(train_emb.cell_ids, embed_emb.cell_ids);
    assert_eq!(embed_emb.provenance.last().unwrap().tool, "cellweave-embed");

    // Genes in another order give the same embedding; missing genes count as zero (warned).
    let c = cellweave::io::table::read_cells(&d.cells).unwrap();
    let g = c.n_genes();
    let mut rev: Vec<usize> = (0..g).collect();
    rev.reverse();
    let mut shuffled = c.clone();
    shuffled.gene_ids = rev.iter().map(|&j| c.gene_ids[j].clone()).collect();
    shuffled.gene_names = rev.iter().map(|&j| c.gene_names[j].clone()).collect();
    let dense = c.x.to_dense();
    let mut sd = vec![0f32; dense.len()];
    for i in 0..c.n_cells() {
        for (new, &old) in rev.iter().enumerate() {
            sd[i * g + new] = dense[i * g + old];
        }
    }
    shuffled.x = Csr::from_dense(c.n_cells(), g, &sd);
    let sp = d.path("shuffled.arrow");
    write_cells(&sp, &shuffled).unwrap();
    let e3 = d.path("e3.arrow");
    run_ok("embed", &[s(&sp), "--model", s(&m), "-o", s(&e3)]);
    let a = read_embedding(&e3).unwrap();
    let max = a
        .data
        .iter()
        .zip(&train_emb.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "reordered genes changed the embedding by {max}");

    let few = c.select_genes(&(0..g - 5).collect::<Vec<_>>());
    let fp = d.path("few.arrow");
    write_cells(&fp, &few).unwrap();
    let out = run_ok(
        "embed",
        &[s(&fp), "--model", s(&m), "-o", s(&d.path("e4.arrow"))],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 of the model's 48 genes are not in"));

    let most = c.select_genes(&(0..10).collect::<Vec<_>>());
    let mp = d.path("most.arrow");
    write_cells(&mp, &most).unwrap();
    let e5 = d.path("e5.arrow");
    let err = run_fails("embed", &[s(&mp), "--model", s(&m), "-o", s(&e5)], &e5);
    assert_has(
        &err,
        &["most.arrow", "38 of the model's 48 genes are missing"],
    );
}

#[test]
fn train_errors_are_one_line_and_leave_no_output() {
    let d = data();
    // Pairs of other cells.
    let other = cells(300, 48);
    let op = d.path("other_pairs.arrow");
    write_pairs(&op, &pairs(&other)).unwrap();
    let emb = d.path("x.arrow");
    let m = d.path("m");
    let args = [
        s(&d.cells),
        "--pairs",
        s(&op),
        "-o",
        s(&m),
        "--embedding",
        s(&emb),
    ];
    let err = run_fails_one_line("train", &args, &emb);
    assert_has(&err, &["other_pairs.arrow", "fingerprint"]);
    // CUDA without the feature.
    let err = train_fails(&d, "m2", "y.arrow", &["--device", "cuda"]);
    assert!(
        err.contains("built without CUDA support; rebuild with --features cuda"),
        "{err}"
    );
    // Raw counts.
    let mut c = cellweave::io::table::read_cells(&d.cells).unwrap();
    c.values = ValueKind::Counts;
    let cp = d.path("counts.arrow");
    write_cells(&cp, &c).unwrap();
    let m3 = d.path("m3");
    let args = [
        s(&cp),
        "--pairs",
        s(&d.pairs),
        "-o",
        s(&m3),
        "--embedding",
        s(&emb),
    ];
    let err = run_fails("train", &args, &emb);
    assert!(err.contains("log-normalized"), "{err}");
    // A directory that holds no model.
    let args = [s(&d.cells), "--model", s(d.dir.path()), "-o", s(&emb)];
    let err = run_fails("embed", &args, &emb);
    assert!(err.contains("not a cellweave model directory"), "{err}");
}

/// Every file under `dir` (hidden ones too) with its bytes, by path relative to `dir`.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The id of a process that has ended (no longer running).
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// The names in `dir` that start with `prefix`.
fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn a_failed_rerun_leaves_the_previous_model_intact() {
    let d = data();
    train(&d, "m", "e.arrow", &["--no-refine", "--epochs", "2"]);
    let before = tree(&d.path("m"));
    assert!(before.len() >= 5, "{before:?}");
    // Diverges in the first epoch; the model directory of the earlier run stays as it was.
    let a = train_args(
        &d,
        "m",
        "e2.arrow",
        &["--no-refine", "--epochs", "2", "--lr", "1e30"],
    );
    let out = cellweave_tests::run("train", &strs(&a));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lower --lr"), "{err}");
    assert_eq!(
        tree(&d.path("m")),
        before,
        "the failed run changed the model directory"
    );
    assert!(names_with(d.dir.path(), ".m.tmp-").is_empty());
    // A successful rerun replaces it whole.
    train(&d, "m", "e3.arrow", &["--no-refine", "--epochs", "3"]);
    let card = std::fs::read_to_string(d.path("m/card.yaml")).unwrap();
    assert!(card.contains("epochs: 3"), "{card}");
    assert!(!d.path(".m.checkpoint").exists());
}

/// A checkpoint is a folder with a manifest of checksums: `--resume` refuses one that was
/// damaged, mixed with another checkpoint's file, or written by the old two-file layout,
/// and ignores (removes) the temporaries of a writer that was killed.
#[test]
fn resume_verifies_the_checkpoint_and_removes_stale_temporaries() {
    let d = data();
    train(&d, "full", "full.arrow", &[]);
    let err = train_fails(&d, "m", "m.arrow", &["--stop-after-epoch", "5"]);
    assert!(err.contains("--resume"), "{err}");
    assert!(
        !d.path("m").exists(),
        "an interrupted run made the model directory"
    );
    let ck = d.path(".m.checkpoint/epoch-000004");
    for f in [
        "manifest.json",
        "state.safetensors",
        "state.json",
        "refined_pairs.arrow",
    ] {
        assert!(ck.join(f).exists(), "{f} missing from the checkpoint");
    }
    assert_eq!(names_with(&d.path(".m.checkpoint"), ""), ["epoch-000004"]);

    // A flipped byte in the weights: refused with one line.
    let st = ck.join("state.safetensors");
    let good = std::fs::read(&st).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&st, &bad).unwrap();
    let a = train_args(&d, "m", "m.arrow", &["--resume"]);
    let err = cellweave_tests::run_fails_one_line("train", &strs(&a), &d.path("m.arrow"));
    assert_has(&err, &["damaged", "state.safetensors"]);
    std::fs::write(&st, &good).unwrap();

    // The progress of another checkpoint (epoch 2 of the same run) beside these weights.
    train_fails(&d, "other", "o.arrow", &["--stop-after-epoch", "3"]);
    let sj = ck.join("state.json");
    let good_json = std::fs::read(&sj).unwrap();
    std::fs::copy(d.path(".other.checkpoint/epoch-000002/state.json"), &sj).unwrap();
    let err = cellweave_tests::run_fails_one_line("train", &strs(&a), &d.path("m.arrow"));
    assert_has(&err, &["damaged", "state.json"]);
    std::fs::write(&sj, &good_json).unwrap();

    // The old layout: new weights beside the progress of an earlier epoch, no card.
    let old = d.path("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(&st, old.join("state.safetensors")).unwrap();
    std::fs::copy(
        d.path(".other.checkpoint/epoch-000002/state.json"),
        old.join("state.json"),
    )
    .unwrap();
    let b = train_args(&d, "old", "old.arrow", &["--resume"]);
    let err = cellweave_tests::run_fails_one_line("train", &strs(&b), &d.path("old.arrow"));
    assert!(err.contains("older cellweave"), "{err}");

    // Temporaries of killed processes: a half-written checkpoint, a half-assembled model
    // directory, a half-written embedding. They are removed and the run resumes from the
    // last complete checkpoint, to the result of the uninterrupted run.
    let pid = dead_pid();
    let half = d.path(&format!(".m.checkpoint/.epoch-000006.tmp-{pid}"));
    std::fs::create_dir(&half).unwrap();
    std::fs::write(half.join("state.json"), b"{").unwrap();
    std::fs::create_dir(d.path(&format!(".m.tmp-{pid}"))).unwrap();
    std::fs::write(d.path(&format!(".m.arrow.tmp-{pid}")), b"ARROW1").unwrap();
    let out = train(&d, "m", "m.arrow", &["--resume"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming after epoch 4"));
    assert_eq!(d.bits("full.arrow"), d.bits("m.arrow"));
    // The weights and the training state agree (the other files record the command line
    // or seconds).
    for f in ["model.safetensors", "state.safetensors"] {
        let read = |m: &str| std::fs::read(d.path(m).join(f)).unwrap();
        assert_eq!(read("full"), read("m"), "{f}");
    }
    assert!(
        names_with(d.dir.path(), ".m.").is_empty(),
        "{:?}",
        names_with(d.dir.path(), ".m.")
    );
}

/// A kill -9 at each rename of a run (`strace -e inject=rename:signal=KILL:when=N`), then
/// `--resume`: it either resumes to the uninterrupted run's bits or refuses with one line,
/// and a model directory, when there is one, is always complete.
#[test]
fn a_kill_at_any_rename_resumes_identically() {
    // strace must be installed and allowed to trace (ptrace).
    let has_strace = std::process::Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_strace {
        cellweave_tests::missing::<()>(
            "strace cannot run here (apt-get install strace; ptrace must be allowed)",
        );
        return;
    }
    let d = data();
    train(&d, "full", "full.arrow", &[]);
    let want = d.bits("full.arrow");
    let mut killed = 0;
    for n in 1..=40 {
        let model = format!("k{n}");
        let emb = format!("k{n}.arrow");
        let args = train_args(&d, &model, &emb, &[]);
        let out = std::process::Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=rename,renameat,renameat2",
            ])
            .args([
                "-e",
                &format!("inject=rename,renameat,renameat2:signal=KILL:when={n}"),
            ])
            .arg(cellweave_tests::bin("train"))
            .args(&args)
            .env("RAYON_NUM_THREADS", "2")
            .output()
            .unwrap();
        if out.status.success() {
            // Past the last rename: nothing was killed.
            assert_eq!(d.bits(&emb), want, "run {n}");
            break;
        }
        killed += 1;
        let dir = d.path(&model);
        assert!(
            !dir.exists() || dir.join("card.yaml").exists(),
            "kill at rename {n} left an incomplete model directory"
        );
        let a = train_args(&d, &model, &emb, &["--resume"]);
        let r = cellweave_tests::run("train", &strs(&a));
        let err = String::from_utf8_lossy(&r.stderr).trim().to_string();
        if r.status.success() {
            assert_eq!(d.bits(&emb), want, "kill at rename {n}, then --resume");
            assert!(dir.join("card.yaml").exists());
        } else {
            assert_eq!(err.lines().count(), 1, "kill at rename {n}: {err}");
        }
    }
    assert!(killed >= 10, "only {killed} kill points");
}

#[test]
fn few_seeds_are_reported_in_the_log_and_the_card() {
    let d = data();
    // the default fixture has 120 seeds in its one batch pair: no few-seeds line (the
    // mixture line depends on 2 epochs of training and is not checked here)
    let few_line = "batch pairs have fewer than 20 seeds";
    let out = train(&d, "ok", "ok.arrow", &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(few_line));
    let card = std::fs::read_to_string(d.path("ok").join("card.yaml")).unwrap();
    assert!(!card.contains(few_line), "{card}");
    // keep 12 of the seeds: one batch pair with fewer than 20
    let mut p = read_pairs(&d.pairs).unwrap();
    let mut few = PairsTable {
        n_cells: p.n_cells,
        fingerprint: p.fingerprint.clone(),
        ..Default::default()
    };
    let mut seeds = 0;
    for r in 0..p.len() {
        if p.kind[r] == PairKind::Mnn {
            seeds += 1;
            if seeds > 12 {
                continue;
            }
        }
        few.push(p.kind[r], p.i[r], p.j[r], p.distance[r], p.posterior[r]);
    }
    p = few;
    let path = d.path("few.arrow");
    write_pairs(&path, &p).unwrap();
    let mut a = train_args(&d, "few", "few_emb.arrow", &[]);
    a[2] = s(&path).into();
    let out = run_ok("train", &strs(&a));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(few_line)).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("seeds look unreliable: "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("1 of 1 batch pairs") && lines[0].contains("a / b, 12"),
        "{}",
        lines[0]
    );
    let card = std::fs::read_to_string(d.path("few").join("card.yaml")).unwrap();
    assert_has(&card, &["seed_advice:", "a / b, 12"]);
}

/// The rows of a cellweave Arrow table are read from the memory-mapped file (issue 18),
/// those of other inputs from the table read whole: on simulated data (cellweave-simulate,
/// filter, normalize, hvg, pairs), the same cells as an Arrow file of one record batch, of
/// three (mapped rows across batches) and as Parquet (read whole) train the same model and
/// embedding bit for bit, in one call (stage 1, refinement, stage 2) and stage by stage.
#[test]
fn mapped_rows_train_as_the_table_read_whole() {
    let d = Data::named("cells.arrow", "pairs.arrow", "");
    let p = |n: &str| d.path(n);
    let sim = [
        "--cells",
        "600",
        "--genes",
        "300",
        "--batches",
        "3",
        "--cell-types",
        "4",
        "--density",
        "0.2",
        "--seed",
        "3",
        "-q",
    ];
    run_ok(
        "simulate",
        &[&["-o", s(&p("sim.arrow"))][..], &sim].concat(),
    );
    run_ok(
        "filter",
        &[s(&p("sim.arrow")), "-o", s(&p("f.arrow")), "-q"],
    );
    run_ok(
        "normalize",
        &[s(&p("f.arrow")), "-o", s(&p("n.arrow")), "-q"],
    );
    let hvg = ["--n-top-genes", "100", "-q"];
    run_ok(
        "hvg",
        &[&[s(&p("n.arrow")), "-o", s(&d.cells)][..], &hvg].concat(),
    );
    run_ok("pairs", &[s(&d.cells), "-o", s(&d.pairs), "-q"]);
    cellweave_tests::write_split_and_parquet(
        &d.cells,
        &[250, 251],
        &p("three.arrow"),
        &p("whole.parquet"),
    );

    // The embedding's bits, the weights' bytes and the losses of the log.
    let run = |cells: &str, name: &str, extra: &[&str]| {
        let mut a = train_args(&d, name, &format!("{name}_emb.arrow"), extra);
        a[0] = s(&p(cells)).into();
        let (weights, loss) = cellweave_tests::train_reading_rows(&a, &p(name));
        (d.bits(&format!("{name}_emb.arrow")), weights, loss)
    };
    let one = run("cells.arrow", "one", &[]);
    assert_eq!(one, run("three.arrow", "three", &[]));
    assert_eq!(one, run("whole.parquet", "parquet", &[]));
    // Stage 1 alone, then stage 2 from it (--init), on mapped and on whole rows.
    let s1 = ["--stage1-only", "--stage1-epochs", "2"];
    let a = run("three.arrow", "s1_mapped", &s1);
    let b = run("whole.parquet", "s1_whole", &s1);
    assert_eq!(a, b);
    let (i1, i2) = (p("s1_mapped"), p("s1_whole"));
    let a2 = run(
        "three.arrow",
        "s2_mapped",
        &["--epochs", "4", "--no-refine", "--init", s(&i1)],
    );
    let b2 = run(
        "whole.parquet",
        "s2_whole",
        &["--epochs", "4", "--no-refine", "--init", s(&i2)],
    );
    assert_eq!(a2, b2);
}
