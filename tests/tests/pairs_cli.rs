//! cellweave-pairs and cellweave-refine end to end on simulated data: scatter/gather equals
//! one run, determinism across thread counts, the report on stderr, refinement, and the
//! errors (fingerprint mismatch, raw counts, unknown batch, incomplete merges).

use cellweave::contract::{EmbeddingTable, PairKind, PairsTable};
use cellweave::io::table::{read_cells, read_pairs, write_embedding};
use cellweave_tests::{run, run_ok};
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

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
    let o = run(
        "pairs",
        &["--merge", s(&shards[0]), s(&shards[3]), "-o", s(&partial)],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("b0 / b2"), "{}", stderr(&o));
    assert!(!partial.exists());
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
    let o = run("pairs", &[s(&raw), "-o", s(&out)]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(s(&raw)) && e.contains("values") && e.contains("cellweave-normalize"),
        "{e}"
    );
    assert_eq!(e.lines().filter(|l| l.contains("error")).count(), 1, "{e}");
    assert!(
        e.trim()
            .lines()
            .last()
            .unwrap()
            .starts_with("cellweave-pairs: error: "),
        "{e}"
    );
    // an unknown batch
    let o = run(
        "pairs",
        &[
            s(&cells),
            "-o",
            s(&out),
            "--batch-a",
            "b0",
            "--batch-b",
            "nope",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no batch 'nope'"), "{}", stderr(&o));
    assert!(!out.exists());

    // pairs of one cells table used with another: refine refuses
    let (_, other) = simulated(dir.path(), 300, 4);
    run_ok("pairs", &[s(&cells), "-o", s(&out)]);
    let c = read_cells(&other).unwrap();
    let emb = EmbeddingTable {
        name: "test".into(),
        cell_ids: c.cell_ids.clone(),
        obs: vec![],
        dim: 2,
        data: vec![1.0; c.n_cells() * 2],
        provenance: vec![],
    };
    let emb_path = dir.path().join("emb.arrow");
    write_embedding(&emb_path, &emb).unwrap();
    let refined = dir.path().join("r.arrow");
    let o = run(
        "refine",
        &[
            s(&other),
            "--pairs",
            s(&out),
            "--embedding",
            s(&emb_path),
            "-o",
            s(&refined),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(s(&out)) && e.contains("fingerprint"), "{e}");
    assert!(!refined.exists());
    // merging shards of different cells tables
    let a = dir.path().join("a.arrow");
    let b = dir.path().join("b.arrow");
    run_ok("pairs", &[s(&cells), "-o", s(&a), "--knn-only"]);
    run_ok(
        "pairs",
        &[s(&other), "-o", s(&b), "--batch-a", "b0", "--batch-b", "b1"],
    );
    let o = run("pairs", &["--merge", s(&a), s(&b), "-o", s(&refined)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fingerprint"), "{}", stderr(&o));
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
    let emb = EmbeddingTable {
        name: "oracle".into(),
        cell_ids: order.iter().map(|&i| c.cell_ids[i].clone()).collect(),
        obs: vec![],
        dim: k,
        data: order
            .iter()
            .flat_map(|&i| data[i * k..(i + 1) * k].to_vec())
            .collect(),
        provenance: vec![],
    };
    let emb_path = dir.path().join("emb.arrow");
    write_embedding(&emb_path, &emb).unwrap();
    let refined = dir.path().join("r.arrow");
    let o = run_ok(
        "refine",
        &[
            s(&cells),
            "--pairs",
            s(&pairs),
            "--embedding",
            s(&emb_path),
            "-o",
            s(&refined),
        ],
    );
    let log = stderr(&o);
    assert!(
        log.contains("seeds kept") && log.contains("seed accuracy"),
        "{log}"
    );
    let r = read_pairs(&refined).unwrap();
    let same = |t: &PairsTable| -> (usize, usize) { cellweave::pairs::seed_accuracy(t, &types) };
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
