//! cellweave-pairs and cellweave-refine end to end on simulated data: scatter/gather equals
//! one run, determinism across thread counts, the report on stderr, refinement, and the
//! errors (fingerprint mismatch, raw counts, unknown batch, incomplete merges).

use cellweave::contract::{PairKind, PairsTable};
use cellweave::io::table::{read_cells, read_pairs};
use cellweave_tests::{assert_has, refine_args, run_fails, run_ok, s, write_plain_embedding};
use std::path::{Path, PathBuf};

/// Simulated counts (3 batches, 4 cell types), normalized: (counts, log-normalized).
fn simulated(dir: &Path, cells: usize, seed: u64) -> (PathBuf, PathBuf) {
    let raw = dir.join(format!("raw{seed}.arrow"));
    let norm = dir.join(format!("norm{seed}.arrow"));
    let (c, sd) = (cells.to_string(), seed.to_string());
    run_ok(
        "simulate",
        &[
            "-o",
            s(&raw),
            "--cells",
            &c,
            "--genes",
            "300",
            "--batches",
            "3",
            "--cell-types",
            "4",
            "--density",
            "0.2",
            "--seed",
            &sd,
        ],
    );
    run_ok("normalize", &[s(&raw), "-o", s(&norm)]);
    (raw, norm)
}

fn rows(t: &PairsTable) -> Vec<(PairKind, u32, u32, u32)> {
    (0..t.len())
        .map(|r| (t.kind[r], t.i[r], t.j[r], t.distance[r].to_bits()))
        .collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn shards_merge_into_exactly_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cells) = simulated(dir.path(), 1200, 1);
    let single = dir.path().join("single.arrow");
    let out = run_ok("pairs", &[s(&cells), "-o", s(&single)]);
    let log = stderr(&out);
    // seeds per batch pair and the seed accuracy (the simulator writes cell_type)
    for pair in ["b0 / b1", "b0 / b2", "b1 / b2"] {
        assert!(log.contains(&format!("seeds {pair}:")), "{log}");
    }
    assert!(log.contains("seed accuracy"), "{log}");
    let full = read_pairs(&single).unwrap();
    let cells_t = read_cells(&cells).unwrap();
    assert_eq!(full.fingerprint, cells_t.fingerprint());
    let n_seeds = full.kind.iter().filter(|k| **k == PairKind::Mnn).count();
    assert!(n_seeds > 100, "{n_seeds} seeds");
    // KNN: 10 per cell, same batch, never self
    let knn: Vec<usize> = (0..full.len())
        .filter(|&r| full.kind[r] == PairKind::Knn)
        .collect();
    assert_eq!(knn.len(), 1200 * 10);
    for &r in &knn {
        let (i, j) = (full.i[r] as usize, full.j[r] as usize);
        assert_ne!(i, j);
        assert_eq!(cells_t.batch.codes[i], cells_t.batch.codes[j]);
    }
    // seeds join different batches, once each (i < j)
    for r in (0..full.len()).filter(|&r| full.kind[r] == PairKind::Mnn) {
        let (i, j) = (full.i[r] as usize, full.j[r] as usize);
        assert!(i < j);
        assert_ne!(cells_t.batch.codes[i], cells_t.batch.codes[j]);
    }

    // scatter: one shard per batch pair (b/a order on purpose) + the KNN, then gather
    let mut shards = Vec::new();
    for (a, b) in [("b1", "b0"), ("b0", "b2"), ("b2", "b1")] {
        let p = dir.path().join(format!("{a}{b}.arrow"));
        run_ok(
            "pairs",
            &[s(&cells), "-o", s(&p), "--batch-a", a, "--batch-b", b],
        );
        shards.push(p);
    }
    let knn_shard = dir.path().join("knn.arrow");
    run_ok("pairs", &[s(&cells), "-o", s(&knn_shard), "--knn-only"]);
    shards.push(knn_shard);
    let merged = dir.path().join("merged.arrow");
    let mut args: Vec<&str> = vec!["--merge"];
    args.extend(shards.iter().map(|p| s(p)));
    args.extend(["-o", s(&merged)]);
    run_ok("pairs", &args);
    let m = read_pairs(&merged).unwrap();
    assert_eq!(m.fingerprint, full.fingerprint);
    assert_eq!(m.n_cells, full.n_cells);
    assert_eq!(rows(&m), rows(&full));

    // an incomplete set of shards is refused, and writes nothing
    let partial = dir.path().join("partial.arrow");
    let args = ["--merge", s(&shards[0]), s(&shards[3]), "-o", s(&partial)];
    let e = run_fails("pairs", &args, &partial);
    assert!(e.contains("b0 / b2"), "{e}");
}

#[test]
fn deterministic_across_threads_and_options_work() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cells) = simulated(dir.path(), 900, 2);
    let mut tables = Vec::new();
    for threads in ["1", "2"] {
        let p = dir.path().join(format!("t{threads}.arrow"));
        run_ok(
            "pairs",
            &[s(&cells), "-o", s(&p), "--threads", threads, "--seed", "3"],
        );
        tables.push(read_pairs(&p).unwrap());
    }
    assert_eq!(rows(&tables[0]), rows(&tables[1]));
    // the cheaper joint-PCA space, Manhattan KNN, HNSW search: all produce seeds and KNN
    let p = dir.path().join("pca.arrow");
    run_ok(
        "pairs",
        &[
            s(&cells),
            "-o",
            s(&p),
            "--space",
            "pca",
            "--knn-metric",
            "manhattan",
            "--nn",
            "hnsw",
            "--knn",
            "7",
        ],
    );
    let t = read_pairs(&p).unwrap();
    assert!(t.kind.iter().filter(|k| **k == PairKind::Mnn).count() > 50);
    assert_eq!(
        t.kind.iter().filter(|k| **k == PairKind::Knn).count(),
        900 * 7
    );
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, cells) = simulated(dir.path(), 400, 3);
    let out = dir.path().join("p.arrow");
    // raw counts
    let e = run_fails("pairs", &[s(&raw), "-o", s(&out)], &out);
    assert_has(&e, &[s(&raw), "values", "cellweave-normalize"]);
    assert_eq!(e.lines().filter(|l| l.contains("error")).count(), 1, "{e}");
    assert!(
        e.lines()
            .last()
            .unwrap()
            .starts_with("cellweave-pairs: error: "),
        "{e}"
    );
    // an unknown batch
    let args = [
        s(&cells),
        "-o",
        s(&out),
        "--batch-a",
        "b0",
        "--batch-b",
        "nope",
    ];
    let e = run_fails("pairs", &args, &out);
    assert!(e.contains("no batch 'nope'"), "{e}");

    // pairs of one cells table used with another: refine refuses
    let (_, other) = simulated(dir.path(), 300, 4);
    run_ok("pairs", &[s(&cells), "-o", s(&out)]);
    let c = read_cells(&other).unwrap();
    let emb = dir.path().join("emb.arrow");
    let ones = vec![1.0; c.n_cells() * 2];
    write_plain_embedding(&emb, "test", c.cell_ids.clone(), 2, ones);
    let refined = dir.path().join("r.arrow");
    let e = run_fails(
        "refine",
        &refine_args(&other, &out, &emb, &refined),
        &refined,
    );
    assert_has(&e, &[s(&out), "fingerprint"]);
    // merging shards of different cells tables
    let a = dir.path().join("a.arrow");
    let b = dir.path().join("b.arrow");
    run_ok("pairs", &[s(&cells), "-o", s(&a), "--knn-only"]);
    run_ok(
        "pairs",
        &[s(&other), "-o", s(&b), "--batch-a", "b0", "--batch-b", "b1"],
    );
    let e = run_fails(
        "pairs",
        &["--merge", s(&a), s(&b), "-o", s(&refined)],
        &refined,
    );
    assert!(e.contains("fingerprint"), "{e}");
}

#[test]
fn refine_drops_dissimilar_seeds_and_keeps_knn() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cells) = simulated(dir.path(), 900, 5);
    let pairs = dir.path().join("p.arrow");
    run_ok("pairs", &[s(&cells), "-o", s(&pairs)]);
    let t = read_pairs(&pairs).unwrap();
    let c = read_cells(&cells).unwrap();
    // an embedding that knows the cell types: one axis per type, plus noise-free batch offset
    let types = c.column("cell_type").unwrap().to_categorical();
    let k = types.categories.len();
    let mut data = vec![0f32; c.n_cells() * k];
    for i in 0..c.n_cells() {
        data[i * k + types.codes[i] as usize] = 1.0;
        data[i * k + (types.codes[i] as usize + 1) % k] = 0.05 * c.batch.codes[i] as f32;
    }
    // reversed cell order: refine aligns by cell id
    let order: Vec<usize> = (0..c.n_cells()).rev().collect();
    let emb = dir.path().join("emb.arrow");
    write_plain_embedding(
        &emb,
        "oracle",
        order.iter().map(|&i| c.cell_ids[i].clone()).collect(),
        k,
        order
            .iter()
            .flat_map(|&i| data[i * k..(i + 1) * k].to_vec())
            .collect(),
    );
    let refined = dir.path().join("r.arrow");
    let o = run_ok("refine", &refine_args(&cells, &pairs, &emb, &refined));
    let log = stderr(&o);
    assert_has(&log, &["seeds kept", "seed accuracy"]);
    let r = read_pairs(&refined).unwrap();
    let same = |t: &PairsTable| -> (usize, usize) {
        cellweave::integrate::pairs::seed_accuracy(t, &types)
    };
    let (before, after) = (same(&t), same(&r));
    assert!(
        before.0 < before.1,
        "the simulated seeds should contain some wrong pairs: {before:?}"
    );
    // every kept seed joins one type; the wrong ones are gone
    assert_eq!(after.0, after.1);
    assert_eq!(after.1, before.0);
    // posteriors recorded on kept seeds; KNN rows untouched
    for q in 0..r.len() {
        if r.kind[q] == PairKind::Mnn {
            assert!(r.posterior[q] >= 0.5 && r.posterior[q] <= 1.0);
        }
    }
    let knn = |t: &PairsTable| -> Vec<(u32, u32)> {
        (0..t.len())
            .filter(|&q| t.kind[q] == PairKind::Knn)
            .map(|q| (t.i[q], t.j[q]))
            .collect()
    };
    assert_eq!(knn(&r), knn(&t));
    assert_eq!(r.fingerprint, t.fingerprint);
}

fn n_seeds(p: &Path) -> usize {
    let t = read_pairs(p).unwrap();
    t.kind.iter().filter(|k| **k == PairKind::Mnn).count()
}

/// Every batch pair as its own shard, the KNN as another, merged: the merged table.
fn sharded(dir: &Path, cells: &Path, tag: &str, extra: &[&str]) -> PathBuf {
    let mut shards = Vec::new();
    for (a, b) in [("b0", "b1"), ("b2", "b0"), ("b1", "b2")] {
        let p = dir.join(format!("{tag}_{a}{b}.arrow"));
        let mut args = vec![s(cells), "-o", s(&p), "--batch-a", a, "--batch-b", b];
        args.extend(extra);
        run_ok("pairs", &args);
        shards.push(p);
    }
    let knn = dir.join(format!("{tag}_knn.arrow"));
    let mut args = vec![s(cells), "-o", s(&knn), "--knn-only"];
    args.extend(extra);
    run_ok("pairs", &args);
    shards.push(knn);
    let merged = dir.join(format!("{tag}_merged.arrow"));
    let mut args: Vec<&str> = vec!["--merge"];
    args.extend(shards.iter().map(|p| s(p)));
    args.extend(["-o", s(&merged)]);
    run_ok("pairs", &args);
    merged
}

#[test]
fn merged_shards_carry_the_advice_of_one_run() {
    use cellweave::integrate::seed_check::recorded_pairs_advice;
    let dir = tempfile::tempdir().unwrap();
    let advice = |p: &Path| recorded_pairs_advice(&read_pairs(p).unwrap());
    // ~100 cells per batch: the filter keeps every mutual pair; ~20 with one neighbour
    // checked: few seeds; ~300: nothing to say
    let (_, small) = simulated(dir.path(), 300, 8);
    let (_, tiny) = simulated(dir.path(), 60, 7);
    let (_, large) = simulated(dir.path(), 900, 6);
    let cases: [(&Path, &str, &[&str], Option<&str>); 3] = [
        (
            &small,
            "small",
            &[],
            Some("the filter kept every mutual pair of all 3 batch pairs"),
        ),
        (
            &tiny,
            "tiny",
            &["--k-anchor", "1"],
            Some("of 3 batch pairs have fewer than 20 seeds"),
        ),
        (&large, "large", &[], None),
    ];
    for (cells, tag, extra, expect) in cases {
        let single = dir.path().join(format!("{tag}_single.arrow"));
        let mut args = vec![s(cells), "-o", s(&single)];
        args.extend(extra);
        run_ok("pairs", &args);
        let merged = sharded(dir.path(), cells, tag, extra);
        let (one, joined) = (advice(&single), advice(&merged));
        assert_eq!(joined, one, "{tag}: merged vs one run");
        match expect {
            Some(text) => assert!(
                one.as_deref().unwrap_or("").contains(text),
                "{tag}: {one:?}"
            ),
            None => assert_eq!(one, None, "{tag}"),
        }
    }
    // a merge of shards that recorded no counts (an older cellweave) says nothing
    let mut old = read_pairs(&dir.path().join("small_b0b1.arrow")).unwrap();
    let step = old.provenance.last_mut().unwrap();
    if let serde_json::Value::Object(m) = &mut step.params {
        m.remove("seed_counts");
    }
    let old_path = dir.path().join("old_b0b1.arrow");
    cellweave::io::table::write_pairs(&old_path, &old).unwrap();
    let merged = dir.path().join("old_merged.arrow");
    let shards =
        ["small_b2b0", "small_b1b2", "small_knn"].map(|t| dir.path().join(format!("{t}.arrow")));
    let mut args: Vec<&str> = vec!["--merge", s(&old_path)];
    args.extend(shards.iter().map(|p| s(p)));
    args.extend(["-o", s(&merged)]);
    run_ok("pairs", &args);
    assert_eq!(advice(&merged), None);
}

#[test]
fn filter_scales_with_batch_size_and_few_seeds_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cells) = simulated(dir.path(), 900, 6);
    let (fixed, scaled) = (
        dir.path().join("fixed.arrow"),
        dir.path().join("scaled.arrow"),
    );
    let out = run_ok("pairs", &[s(&cells), "-o", s(&fixed)]);
    assert!(
        !stderr(&out).contains("seeds look unreliable"),
        "{}",
        stderr(&out)
    );
    // ~300 cells per batch: k = ceil(0.05 x 300) = 15 instead of 200 keeps fewer seeds
    run_ok(
        "pairs",
        &[s(&cells), "-o", s(&scaled), "--k-filter-frac", "0.05"],
    );
    let (nf, ns) = (n_seeds(&fixed), n_seeds(&scaled));
    assert!(
        ns > 0 && ns < nf,
        "{ns} seeds with the scaled filter, {nf} with k.filter 200"
    );
    // --k-filter-frac 1 (k = the whole batch, capped at 200) equals the fixed filter
    let whole = dir.path().join("whole.arrow");
    run_ok(
        "pairs",
        &[s(&cells), "-o", s(&whole), "--k-filter-frac", "1"],
    );
    assert_eq!(n_seeds(&whole), nf);
    // 3 batches of ~20 cells, one neighbour checked: fewer than 20 seeds per batch pair
    let (_, tiny) = simulated(dir.path(), 60, 7);
    let p = dir.path().join("tiny.arrow");
    let out = run_ok("pairs", &[s(&tiny), "-o", s(&p), "--k-anchor", "1"]);
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("seeds look unreliable"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("of 3 batch pairs have fewer than 20 seeds"),
        "{}",
        lines[0]
    );
    // 3 batches of ~100 cells: k.filter 200 keeps every mutual pair, which is reported;
    // the scaled filter removes some, and nothing is reported
    let (_, small) = simulated(dir.path(), 300, 8);
    let out = run_ok("pairs", &[s(&small), "-o", s(&p)]);
    let err = stderr(&out);
    assert!(
        err.contains("the filter kept every mutual pair of all 3 batch pairs"),
        "{err}"
    );
    // cellweave-train repeats the pairs stage's line in its log and its model card
    let (model, emb) = (
        dir.path().join("small_model"),
        dir.path().join("small.arrow"),
    );
    let out = run_ok(
        "train",
        &[
            s(&small),
            "--pairs",
            s(&p),
            "-o",
            s(&model),
            "--embedding",
            s(&emb),
            "--epochs",
            "2",
        ],
    );
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("seeds look unreliable"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("the filter kept every mutual pair of all 3 batch pairs"),
        "{}",
        lines[0]
    );
    let card = std::fs::read_to_string(model.join("card.yaml")).unwrap();
    assert_has(
        &card,
        &["seed_advice:", "the filter kept every mutual pair of all 3"],
    );
    let out = run_ok("pairs", &[s(&small), "-o", s(&p), "--k-filter-frac", "0.1"]);
    assert!(
        !stderr(&out).contains("seeds look unreliable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn row_blocks_of_the_sparse_matrix_give_the_dense_results() {
    // --max-dense-mb 0: the CCA and the joint PCA on row blocks of the CSR matrix, never
    // its dense copy. The exact PCA route sums the same blocks in the same order (KNN rows
    // bit for bit); the CCA's products sum in another order (seeds equal within rounding).
    let dir = tempfile::tempdir().unwrap();
    let (_, cells) = simulated(dir.path(), 1200, 5);
    let dense = dir.path().join("dense.arrow");
    let blocked = dir.path().join("blocked.arrow");
    run_ok("pairs", &[s(&cells), "-o", s(&dense)]);
    let out = run_ok(
        "pairs",
        &[s(&cells), "-o", s(&blocked), "--max-dense-mb", "0"],
    );
    assert!(
        stderr(&out).contains("joint PCA on row blocks"),
        "{}",
        stderr(&out)
    );
    let (d, b) = (read_pairs(&dense).unwrap(), read_pairs(&blocked).unwrap());
    let knn = |t: &PairsTable| -> Vec<_> {
        rows(t)
            .into_iter()
            .filter(|r| r.0 == PairKind::Knn)
            .collect()
    };
    assert_eq!(knn(&d), knn(&b));
    let seeds = |t: &PairsTable| -> std::collections::HashSet<(u32, u32)> {
        (0..t.len())
            .filter(|&r| t.kind[r] == PairKind::Mnn)
            .map(|r| (t.i[r], t.j[r]))
            .collect()
    };
    let (sd, sb) = (seeds(&d), seeds(&b));
    let common = sd.intersection(&sb).count();
    assert!(sd.len() > 100, "{} seeds", sd.len());
    assert!(
        common as f64 >= 0.98 * sd.len().max(sb.len()) as f64,
        "dense {} seeds, blocked {}, common {common}",
        sd.len(),
        sb.len()
    );
}
