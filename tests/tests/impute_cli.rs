//! cellweave-impute end to end on small synthetic tables: --only-zeros, TRANSLATE --init,
//! determinism, baselines, evaluation output and errors.

use cellweave::contract::{Categorical, CellsTable, Csr, ValueKind};
use cellweave::impute::Scale;
use cellweave::io::table::{read_cells, write_cells};
use cellweave_tests::{assert_has, run_fails_one_line, run_ok, s};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Counts with cell-type structure: 4 types x 2 batches, a third of the entries non-zero.
fn synthetic(n: usize, g: usize, seed: u64) -> CellsTable {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / (1u64 << 31) as f64
    };
    let programmes: Vec<Vec<f64>> = (0..4)
        .map(|_| (0..g).map(|_| next() * 20.0).collect())
        .collect();
    let mut dense = vec![0f32; n * g];
    for i in 0..n {
        for j in 0..g {
            if next() < 0.33 {
                dense[i * g + j] = (programmes[i % 4][j] * (0.5 + next())).round().max(1.0) as f32;
            }
        }
    }
    let batches: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
    CellsTable {
        cell_ids: (0..n).map(|i| format!("cell{i}")).collect(),
        batch: Categorical::from_strings(&batches),
        obs: Vec::new(),
        gene_ids: (0..g).map(|j| format!("G{j}")).collect(),
        gene_names: (0..g).map(|j| format!("gene{j}")).collect(),
        x: Csr::from_dense(n, g, &dense),
        values: ValueKind::Counts,
        provenance: Vec::new(),
    }
}

fn write_input(dir: &Path, n: usize, g: usize) -> PathBuf {
    write(dir, "cells.arrow", &synthetic(n, g, 1))
}

fn write(dir: &Path, name: &str, cells: &CellsTable) -> PathBuf {
    let p = dir.join(name);
    write_cells(&p, cells).unwrap();
    p
}

/// `truth` with the non-zero entries number k (in storage order) where `hide(k)` set to 0.
fn mask(truth: &CellsTable, hide: impl Fn(usize) -> bool) -> CellsTable {
    let mut masked = truth.clone();
    for (k, v) in masked.x.data.iter_mut().enumerate() {
        if hide(k) {
            *v = 0.0;
        }
    }
    let (n, g) = (truth.n_cells(), truth.n_genes());
    masked.x = Csr::from_dense(n, g, &masked.x.to_dense());
    masked
}

/// A baseline imputation of `masked` evaluated against `truth`: the JSON on stdout.
fn evaluate(masked: &Path, out: &Path, extra: &[&str], truth: &Path) -> Value {
    let args = [&[s(masked), "-o", s(out)], extra, &["--truth", s(truth)]].concat();
    let r = run_ok("impute", &args);
    serde_json::from_slice(&r.stdout).unwrap()
}

/// `cellweave-impute INPUT -o OUT --init MODEL EXTRA...` (TRANSLATE from a trained model).
fn translate_args<'a>(
    input: &'a Path,
    out: &'a Path,
    model: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    [&[s(input), "-o", s(out), "--init", s(model)], extra].concat()
}

const SMALL: [&str; 6] = ["--hidden", "16,8,16", "--epochs", "4", "--batch-size", "32"];

fn late(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![s(input), "-o", s(out)];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(extra);
    run_ok("impute", &args)
}

#[test]
fn only_zeros_keeps_observed_values_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 120, 25);
    let out = dir.path().join("imputed.arrow");
    late(&input, &out, &["--only-zeros"]);
    let cells = read_cells(&input).unwrap();
    let imp = read_cells(&out).unwrap();
    assert_eq!(imp.values, ValueKind::Imputed);
    assert_eq!(imp.cell_ids, cells.cell_ids);
    assert_eq!(imp.gene_ids, cells.gene_ids);
    assert_eq!(imp.x.nnz(), 120 * 25, "dense rows expected");
    let y = imp.x.to_dense();
    let mut zeros_filled = 0;
    for r in 0..cells.n_cells() {
        let (idx, val) = cells.x.row(r);
        for (&c, &v) in idx.iter().zip(val) {
            let want = Scale::Log10.apply(v);
            assert_eq!(
                y[r * 25 + c as usize].to_bits(),
                want.to_bits(),
                "cell {r} gene {c}"
            );
        }
        zeros_filled += (0..25)
            .filter(|&c| !idx.contains(&(c as u32)) && y[r * 25 + c] > 0.0)
            .count();
    }
    assert!(zeros_filled > 0, "no zero was imputed");
    let step = imp.provenance.last().unwrap();
    assert_eq!(step.tool, "cellweave-impute");
    assert_eq!(step.params["value_scale"], "log10");
    assert_eq!(step.params["only_zeros"], true);

    // Without --only-zeros the observed entries are the decoder output.
    let out2 = dir.path().join("all.arrow");
    late(&input, &out2, &[]);
    let y2 = read_cells(&out2).unwrap().x.to_dense();
    let (idx, val) = cells.x.row(0);
    assert!(idx
        .iter()
        .zip(val)
        .any(|(&c, &v)| y2[c as usize] != Scale::Log10.apply(v)));
}

#[test]
fn translate_init_loads_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 100, 20);
    let (a, model) = (dir.path().join("a.arrow"), dir.path().join("model"));
    late(
        &input,
        &a,
        &[
            "--model-out",
            s(&model),
            "--log",
            s(&dir.path().join("log.tsv")),
        ],
    );
    assert!(model.join("model.safetensors").is_file() && model.join("card.yaml").is_file());
    let card = std::fs::read_to_string(model.join("card.yaml")).unwrap();
    assert_has(&card, &["scale: log10", "G19"]);
    let log = std::fs::read_to_string(dir.path().join("log.tsv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 4, "{log}");

    // No training: the output is the loaded model's, bit for bit.
    let b = dir.path().join("b.arrow");
    run_ok(
        "impute",
        &translate_args(&input, &b, &model, &["--epochs", "0"]),
    );
    assert_eq!(read_cells(&a).unwrap().x, read_cells(&b).unwrap().x);

    // Continuing to train moves away from it, at TRANSLATE's default lr.
    let c = dir.path().join("c.arrow");
    let more = ["--epochs", "2", "--patience", "0"];
    run_ok("impute", &translate_args(&input, &c, &model, &more));
    let c_table = read_cells(&c).unwrap();
    assert_ne!(read_cells(&a).unwrap().x, c_table.x);
    assert_eq!(c_table.provenance.last().unwrap().params["lr"], 3e-5);
    assert_eq!(
        read_cells(&a).unwrap().provenance.last().unwrap().params["lr"],
        3e-4
    );

    // A model trained on another scale is refused.
    let d = dir.path().join("d.arrow");
    let args = translate_args(&input, &d, &model, &["--scale", "log1p"]);
    let err = run_fails_one_line("impute", &args, &d);
    assert!(err.contains("scale"), "{err}");
}

#[test]
fn same_seed_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 90, 18);
    let outs: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.arrow")))
        .collect();
    late(&input, &outs[0], &["--seed", "5"]);
    late(&input, &outs[1], &["--seed", "5"]);
    late(&input, &outs[2], &["--seed", "6"]);
    let x: Vec<Csr> = outs.iter().map(|p| read_cells(p).unwrap().x).collect();
    assert_eq!(x[0], x[1]);
    assert_ne!(x[0], x[2]);
    // The dropout masks are drawn per row from one number per step: the thread count
    // does not change the result.
    let one = dir.path().join("one_thread.arrow");
    late(&input, &one, &["--seed", "5", "--threads", "1"]);
    assert_eq!(read_cells(&one).unwrap().x, x[0]);
}

#[test]
fn batch_aware_model_records_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 80, 15);
    let (out, model) = (dir.path().join("o.arrow"), dir.path().join("m"));
    late(&input, &out, &["--batch-aware", "--model-out", s(&model)]);
    let card = std::fs::read_to_string(model.join("card.yaml")).unwrap();
    assert!(card.contains("batches:\n- a\n- b"), "{card}");
    // TRANSLATE keeps the batch covariate.
    let b = dir.path().join("b.arrow");
    run_ok(
        "impute",
        &translate_args(&input, &b, &model, &["--epochs", "0"]),
    );
    assert_eq!(read_cells(&out).unwrap().x, read_cells(&b).unwrap().x);
}

#[test]
fn baselines_and_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let truth = synthetic(60, 12, 3);
    // Mask: drop every other non-zero.
    let masked = mask(&truth, |k| k % 2 == 0);
    let tp = write(dir.path(), "truth.arrow", &truth);
    let mp = write(dir.path(), "masked.arrow", &masked);

    let gm = dir.path().join("gm.arrow");
    let json = evaluate(&mp, &gm, &["--method", "gene-mean"], &tp);
    let y = read_cells(&gm).unwrap().x.to_dense();
    // Gene 0: zeros are the mean of the observed log10(x+1) values.
    let obs: Vec<f64> = (0..60)
        .filter_map(|i| {
            let (idx, val) = masked.x.row(i);
            idx.iter()
                .position(|&c| c == 0)
                .map(|p| Scale::Log10.apply(val[p]) as f64)
        })
        .collect();
    let mean = obs.iter().sum::<f64>() / obs.len() as f64;
    let zero_row = (0..60).find(|&i| !masked.x.row(i).0.contains(&0)).unwrap();
    assert!((y[zero_row * 12] as f64 - mean).abs() < 1e-6);
    assert_eq!(json["method"], "gene-mean");
    assert_eq!(
        json["n_heldout"].as_u64().unwrap(),
        (truth.x.nnz() as u64).div_ceil(2)
    );
    assert!(json["mse_heldout"].as_f64().unwrap() > 0.0);

    let knn = dir.path().join("knn.arrow");
    let json = evaluate(&mp, &knn, &["--method", "knn", "--knn", "5"], &tp);
    assert_eq!(json["method"], "knn");
    assert!(json["median_pearson_cell"].as_f64().is_some());
}

#[test]
fn bad_input_is_one_line_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 30, 10);
    let out = dir.path().join("o.arrow");
    for extra in [
        vec!["--init", "/nonexistent/model"],
        vec!["--method", "knn", "--model-out", "m"],
        vec!["--batch-aware", "--batch-key", "donor"],
        vec!["--hidden", "16,0,16"],
        vec!["--device", "cuda"],
    ] {
        let args = [&[s(&input), "-o", s(&out)], &extra[..]].concat();
        let err = run_fails_one_line("impute", &args, &out);
        assert!(err.starts_with("cellweave-impute: error:"), "{err}");
        if extra[1] == "cuda" {
            // Built without the `cuda` feature (as the workspace builds by default) the
            // error says so and how to get it; with it, this machine's CUDA error.
            assert!(err.contains("device"), "{err}");
            assert!(
                !err.contains("without CUDA") || err.contains("--features cuda"),
                "{err}"
            );
        }
    }
}

#[test]
fn log1p_scale_is_recorded_and_evaluated_on_log10() {
    let dir = tempfile::tempdir().unwrap();
    let truth = synthetic(50, 10, 4);
    let masked = mask(&truth, |k| k % 3 != 0);
    let tp = write(dir.path(), "t.arrow", &truth);
    let mp = write(dir.path(), "m.arrow", &masked);
    let eval = |scale: &str| {
        let out = dir.path().join(format!("{scale}.arrow"));
        let json = evaluate(&mp, &out, &["--method", "gene-mean", "--scale", scale], &tp);
        (read_cells(&out).unwrap(), json)
    };
    let (t10, j10) = eval("log10");
    let (tln, jln) = eval("log1p");
    assert_eq!(
        tln.provenance.last().unwrap().params["value_scale"],
        "log1p"
    );
    assert_eq!(
        t10.provenance.last().unwrap().params["value_scale"],
        "log10"
    );
    // Observed values on the chosen scale.
    let (idx, val) = masked.x.row(0);
    let (y10, yln) = (t10.x.to_dense(), tln.x.to_dense());
    assert_eq!(yln[idx[0] as usize], (val[0] as f64).ln_1p() as f32);
    assert_eq!(y10[idx[0] as usize], (val[0] as f64 + 1.0).log10() as f32);
    // A gene mean is linear in the scale, so after conversion to log10 both score the same.
    for k in ["mse_heldout", "median_pearson_gene", "median_pearson_cell"] {
        let (a, b) = (j10[k].as_f64().unwrap(), jln[k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-5, "{k}: {a} vs {b}");
    }
}

#[test]
fn translate_takes_the_models_genes_from_a_wider_shuffled_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 60, 12);
    let (a, model) = (dir.path().join("a.arrow"), dir.path().join("model"));
    late(&input, &a, &["--model-out", s(&model)]);
    // The same cells with the genes reversed and two genes the model never saw.
    let cells = read_cells(&input).unwrap();
    let mut wide = synthetic(60, 14, 9);
    let order: Vec<usize> = (0..12).rev().collect();
    let reversed = cells.select_genes(&order).x.to_dense();
    let extra = wide.x.to_dense();
    let mut dense = vec![0f32; 60 * 14];
    for i in 0..60 {
        dense[i * 14..i * 14 + 12].copy_from_slice(&reversed[i * 12..(i + 1) * 12]);
        dense[i * 14 + 12..(i + 1) * 14].copy_from_slice(&extra[i * 14 + 12..(i + 1) * 14]);
    }
    wide.x = Csr::from_dense(60, 14, &dense);
    wide.gene_ids = order
        .iter()
        .map(|&j| format!("G{j}"))
        .chain(["X1".to_string(), "X2".to_string()])
        .collect();
    wide.gene_names = wide.gene_ids.clone();
    let wp = write(dir.path(), "wide.arrow", &wide);
    let b = dir.path().join("b.arrow");
    run_ok(
        "impute",
        &translate_args(&wp, &b, &model, &["--epochs", "0"]),
    );
    let (ta, tb) = (read_cells(&a).unwrap(), read_cells(&b).unwrap());
    assert_eq!(tb.gene_ids, ta.gene_ids, "the model's genes, in its order");
    assert_eq!(tb.x, ta.x);

    // An input that lacks one of the model's genes is refused, naming it.
    let narrow = cells.select_genes(&(1..12).collect::<Vec<_>>());
    let narrow = write(dir.path(), "narrow.arrow", &narrow);
    let c = dir.path().join("c.arrow");
    let err = run_fails_one_line("impute", &translate_args(&narrow, &c, &model, &[]), &c);
    assert!(err.contains("'G0'"), "{err}");
}

#[test]
fn training_log_and_model_card_agree() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 100, 16);
    let (out, model, log) = (
        dir.path().join("o.arrow"),
        dir.path().join("m"),
        dir.path().join("log.tsv"),
    );
    run_ok(
        "impute",
        &[
            s(&input),
            "-o",
            s(&out),
            "--hidden",
            "16,8,16",
            "--batch-size",
            "32",
            "--epochs",
            "8",
            "--patience",
            "0",
            "--lr",
            "1e-3",
            "--model-out",
            s(&model),
            "--log",
            s(&log),
        ],
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(
        header,
        [
            "epoch",
            "steps",
            "train_loss",
            "val_loss",
            "best",
            "lr",
            "seconds"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 8);
    // 85 training cells in batches of 32.
    assert!(rows.iter().all(|r| r[1] == "3" && r[5] == "0.001"));
    let val: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    let best = (0..8).min_by(|&a, &b| val[a].total_cmp(&val[b])).unwrap();
    assert_eq!(rows[best][4], "true");
    let card = std::fs::read_to_string(model.join("card.yaml")).unwrap();
    // The `training:` block of the card, `  key: value` lines.
    let field = |key: &str| -> f64 {
        let prefix = format!("  {key}: ");
        let line = card.lines().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("no {key} in {card}"));
        line[prefix.len()..].trim().parse().unwrap()
    };
    assert_eq!(field("best_epoch") as usize, best + 1);
    assert_eq!(field("best_val_loss"), val[best]);
    assert_eq!(field("epochs_run"), 8.0);
    assert_eq!((field("n_train"), field("n_val")), (85.0, 15.0));
    assert!(
        val[best] < val[0],
        "the validation loss did not improve: {val:?}"
    );
}

/// Hidden temporaries (`.NAME.tmp-PID`) that a killed run left beside the outputs are
/// removed by the next run; those of a process that still runs are left alone.
#[test]
fn stale_temporaries_of_dead_runs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 60, 12);
    let out = dir.path().join("imp.arrow");
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let stale = [
        dir.path().join(format!(".imp.arrow.tmp-{dead}")),
        dir.path().join(format!(".model.tmp-{dead}")),
    ];
    std::fs::write(&stale[0], b"ARROW1").unwrap();
    std::fs::create_dir(&stale[1]).unwrap();
    let live = dir
        .path()
        .join(format!(".imp.arrow.tmp-{}", std::process::id()));
    std::fs::write(&live, b"in use").unwrap();
    let model = dir.path().join("model");
    late(&input, &out, &["--model-out", s(&model)]);
    for p in &stale {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert!(
        live.exists(),
        "the temporary of a running process was removed"
    );
    assert!(read_cells(&out).is_ok() && model.join("card.yaml").exists());
}
