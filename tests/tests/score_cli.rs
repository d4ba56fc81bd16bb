//! cellweave-score's command line on small embeddings the test writes itself (3 cell types x
//! 3 batches, 10 dimensions): several embeddings make one comparison table, errors are one
//! line naming the file and field and leave no output behind, `--metrics` selects, and the
//! same seed gives byte-identical scores whatever the thread count.

use cellweave_tests::{assert_has, command, output_ok, run_fails, run_fails_one_line, run_ok, s};
use std::path::{Path, PathBuf};

const N_PER_GROUP: usize = 40;
const D: usize = 10;

/// A small deterministic generator (xorshift64*) with Box-Muller normals.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Writes `obs.tsv` (cell_id, batch, cell_type) and an embedding TSV where cell types sit
/// `type_sep` apart and batches are shifted by `batch_shift`. Returns the embedding's path
/// and obs.tsv's.
fn write_embedding(
    dir: &Path,
    name: &str,
    type_sep: f64,
    batch_shift: f64,
    seed: u64,
) -> (PathBuf, PathBuf) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut emb = String::from("cell_id");
    for j in 0..D {
        emb.push_str(&format!("\tdim{j}"));
    }
    emb.push('\n');
    let mut obs = String::from("cell_id\tbatch\tcell_type\n");
    for t in 0..3 {
        for b in 0..3 {
            for i in 0..N_PER_GROUP {
                let id = format!("c{t}_{b}_{i}");
                obs.push_str(&format!("{id}\tbatch{b}\ttype{t}\n"));
                emb.push_str(&id);
                for j in 0..D {
                    let mut v = rng.normal();
                    if j == t {
                        v += type_sep;
                    }
                    if j == 3 + b {
                        v += batch_shift;
                    }
                    emb.push_str(&format!("\t{v:.5}"));
                }
                emb.push('\n');
            }
        }
    }
    std::fs::write(dir.join("obs.tsv"), obs).unwrap();
    let p = dir.join(format!("{name}.tsv"));
    std::fs::write(&p, emb).unwrap();
    (p, dir.join("obs.tsv"))
}

/// `EMBEDDING --obs OBS EXTRA... -o OUT`: the arguments of one scoring run.
fn score_args<'a>(emb: &'a Path, obs: &'a Path, extra: &[&'a str], out: &'a Path) -> Vec<&'a str> {
    [&[s(emb), "--obs", s(obs)], extra, &["-o", s(out)]].concat()
}

/// The wide TSV as (header, rows).
/// A scoring run ([`score_args`]) that fails with one line, which is returned.
fn score_fails(emb: &Path, obs: &Path, extra: &[&str], out: &Path) -> String {
    run_fails_one_line("score", &score_args(emb, obs, extra, out), out)
}

fn read_tsv(p: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines = text
        .lines()
        .map(|l| l.split('\t').map(String::from).collect());
    let header: Vec<String> = lines.next().expect("header");
    (header, lines.collect())
}

fn value(header: &[String], row: &[String], name: &str) -> f64 {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    row[i]
        .parse()
        .unwrap_or_else(|_| panic!("{name}: '{}'", row[i]))
}

#[test]
fn several_embeddings_make_one_comparison_table() {
    let dir = tempfile::tempdir().unwrap();
    let (mixed, _) = write_embedding(dir.path(), "mixed", 6.0, 0.0, 1);
    let (split, obs) = write_embedding(dir.path(), "split", 6.0, 8.0, 2);
    let out = dir.path().join("scores.arrow");
    let tsv = dir.path().join("wide.tsv");
    let json = dir.path().join("scores.json");
    run_ok(
        "score",
        &[
            s(&mixed),
            s(&split),
            s(&mixed),
            "--obs",
            s(&obs),
            "--unintegrated",
            s(&split),
            "-o",
            s(&out),
            "--tsv",
            s(&tsv),
            "--json",
            s(&json),
            "-q",
        ],
    );
    let (header, rows) = read_tsv(&tsv);
    assert_eq!(&header[..3], ["embedding", "n_cells", "dim"]);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["mixed", "split", "mixed_2"], "one row per input");
    for r in &rows {
        assert_eq!(r.len(), header.len());
        assert_eq!(r[1], (9 * N_PER_GROUP).to_string());
        assert_eq!(r[2], D.to_string());
    }
    // Every metric of the default set and both aggregate sets are columns.
    for m in [
        "silhouette_label",
        "silhouette_batch",
        "bras",
        "isolated_labels",
        "clisi_knn",
        "ilisi_knn",
        "kbet_per_label",
        "graph_connectivity",
        "nmi_ari_cluster_labels_leiden_nmi",
        "nmi_ari_cluster_labels_kmeans_ari",
        "pcr_comparison",
        "claire_kbet",
        "claire_louvain_nmi",
        "claire_f1",
        "agg_benchmarker_default_total",
        "agg_scib_classic_total",
    ] {
        for r in &rows {
            let v = value(&header, r, m);
            assert!(v.is_finite(), "{m} = {v}");
        }
    }
    // The metrics see what was planted: batches mixed in one, separated in the other.
    let (mixed_row, split_row) = (&rows[0], &rows[1]);
    for m in [
        "ilisi_knn",
        "kbet_per_label",
        "silhouette_batch",
        "claire_kbet",
    ] {
        let (a, b) = (value(&header, mixed_row, m), value(&header, split_row, m));
        assert!(a > b + 0.2, "{m}: mixed {a} vs batch-separated {b}");
    }
    assert!(value(&header, mixed_row, "silhouette_label") > 0.5);
    // The unintegrated baseline itself has no batch effect removed.
    assert!(value(&header, split_row, "pcr_comparison").abs() < 1e-9);
    // The same file twice gives the same scores.
    for (i, h) in header.iter().enumerate().skip(1) {
        assert_eq!(rows[0][i], rows[2][i], "{h}");
    }

    // The long Arrow table: one row per (embedding, score), same values.
    let (_, batches) = cellweave::io::table::read_batches(&out).unwrap();
    let n_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n_rows, 3 * (header.len() - 3));
    // The JSON holds the three embeddings.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let e = j["embeddings"].as_object().unwrap();
    assert_eq!(e.len(), 3);
    let v = e["split"]["metrics"]["ilisi_knn"].as_f64().unwrap();
    assert!((v - value(&header, split_row, "ilisi_knn")).abs() < 1e-6);
}

#[test]
fn tsv_without_obs_is_a_one_line_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (emb, obs) = write_embedding(dir.path(), "emb", 6.0, 0.0, 1);
    let out = dir.path().join("scores.tsv");
    let err = run_fails_one_line("score", &[s(&emb), "-o", s(&out)], &out);
    assert!(err.contains(s(&emb)), "names the file: {err}");
    assert!(err.contains("field 'cell_type'"), "names the field: {err}");
    assert!(err.contains("--obs"), "says what is expected: {err}");

    // A key that the obs file lacks: the obs file and the key are named.
    let err = score_fails(&emb, &obs, &["--batch-key", "donor"], &out);
    assert_has(&err, &[s(&obs), "field 'donor'"]);
}

#[test]
fn unknown_metric_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (emb, obs) = write_embedding(dir.path(), "emb", 6.0, 0.0, 1);
    let out = dir.path().join("scores.tsv");
    let metrics = "silhouette_label,silhouete_batch";
    let err = score_fails(&emb, &obs, &["--metrics", metrics], &out);
    assert_has(&err, &["'--metrics'", "unknown metric 'silhouete_batch'"]);
    assert!(
        err.contains("silhouette_batch"),
        "lists the valid names: {err}"
    );
}

#[test]
fn no_partial_output_when_a_later_input_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (good, obs) = write_embedding(dir.path(), "good", 6.0, 0.0, 1);
    // Second embedding: a cell that obs.tsv does not know.
    let bad = dir.path().join("bad.tsv");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&bad, text.replacen("c0_0_0\t", "stranger\t", 1)).unwrap();
    let out = dir.path().join("scores.arrow");
    let (tsv, json) = (
        dir.path().join("scores.tsv"),
        dir.path().join("scores.json"),
    );
    // A previous result at the output path stays as it was.
    std::fs::write(&tsv, "previous\n").unwrap();
    let args = [
        s(&good),
        s(&bad),
        "--obs",
        s(&obs),
        "-o",
        s(&out),
        "--tsv",
        "--json",
    ];
    let err = run_fails("score", &args, &out);
    assert!(
        err.ends_with("(expected every scored cell to have a row)"),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert_has(last, &[s(&obs), "stranger", "field 'cell_id'"]);
    assert!(!json.exists(), "no output on error");
    assert_eq!(std::fs::read_to_string(&tsv).unwrap(), "previous\n");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("scores") && n != "scores.tsv")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn metrics_subset_computes_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let (emb, obs) = write_embedding(dir.path(), "emb", 6.0, 2.0, 1);
    let (all, sub, grp) = (
        dir.path().join("all.tsv"),
        dir.path().join("sub.tsv"),
        dir.path().join("grp.tsv"),
    );
    run_ok("score", &score_args(&emb, &obs, &["-q"], &all));
    let subset = "silhouette_label, ilisi_knn,nmi_ari_cluster_labels_kmeans_nmi";
    run_ok(
        "score",
        &score_args(&emb, &obs, &["--metrics", subset, "-q"], &sub),
    );
    let (h_all, r_all) = read_tsv(&all);
    let (h_sub, r_sub) = read_tsv(&sub);
    let metrics: Vec<&str> = h_sub[3..]
        .iter()
        .map(String::as_str)
        .filter(|h| !h.starts_with("agg_"))
        .collect();
    assert_eq!(
        metrics,
        [
            "silhouette_label",
            "ilisi_knn",
            "nmi_ari_cluster_labels_kmeans_nmi",
            "nmi_ari_cluster_labels_kmeans_ari"
        ]
    );
    // A subset gives the same values as the full run.
    for m in &metrics {
        assert_eq!(
            value(&h_sub, &r_sub[0], m),
            value(&h_all, &r_all[0], m),
            "{m}"
        );
    }
    // Aggregates are means over the selected metrics only.
    let bio = value(&h_sub, &r_sub[0], "agg_benchmarker_default_bio");
    let want = (value(&h_sub, &r_sub[0], "silhouette_label")
        + value(&h_sub, &r_sub[0], "nmi_ari_cluster_labels_kmeans_nmi")
        + value(&h_sub, &r_sub[0], "nmi_ari_cluster_labels_kmeans_ari"))
        / 3.0;
    assert!((bio - want).abs() < 1e-5, "{bio} vs {want}");
    assert_eq!(
        value(&h_sub, &r_sub[0], "agg_benchmarker_default_batch"),
        value(&h_sub, &r_sub[0], "ilisi_knn")
    );
    // A group.
    run_ok(
        "score",
        &score_args(&emb, &obs, &["--metrics", "claire", "-q"], &grp),
    );
    let (h_grp, _) = read_tsv(&grp);
    assert!(h_grp[3..]
        .iter()
        .filter(|h| !h.starts_with("agg_"))
        .all(|h| h.starts_with("claire_")));
    assert!(h_grp.iter().any(|h| h == "claire_f1"));
}

/// Run with a thread count; returns the TSV bytes.
fn scores_with_threads(emb: &Path, obs: &Path, out: &Path, seed: &str, threads: &str) -> Vec<u8> {
    let args = score_args(emb, obs, &["--seed", seed, "-q"], out);
    output_ok(command("score", &args).env("RAYON_NUM_THREADS", threads));
    std::fs::read(out).unwrap()
}

#[test]
fn same_seed_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    // Overlapping types, so that k-means and the community sweeps have real choices to make.
    let (emb, obs) = write_embedding(dir.path(), "emb", 2.0, 1.0, 7);
    let out = dir.path().join("scores.tsv");
    let a = scores_with_threads(&emb, &obs, &out, "5", "2");
    let b = scores_with_threads(&emb, &obs, &out, "5", "2");
    let c = scores_with_threads(&emb, &obs, &out, "5", "1");
    assert_eq!(a, b, "same seed, same output");
    assert_eq!(a, c, "same output with 1 and 2 threads");
    // The seed is used: another one moves the k-means and community-sweep scores.
    let d = scores_with_threads(&emb, &obs, &out, "6", "2");
    assert_ne!(a, d, "seed 6 gives the same clusterings as seed 5");
    let text = String::from_utf8(a).unwrap();
    assert!(!text.contains("NA"), "{text}");
}

/// A cells x genes counts TSV (header: cell_id and gene ids).
fn write_counts(path: &Path, genes: &[&str], rows: &[[f64; 4]]) {
    let mut t = format!("cell_id\t{}\n", genes.join("\t"));
    for (i, r) in rows.iter().enumerate() {
        let vals: Vec<String> = r[..genes.len()].iter().map(|v| v.to_string()).collect();
        t.push_str(&format!("cell{i}\t{}\n", vals.join("\t")));
    }
    std::fs::write(path, t).unwrap();
}

#[test]
fn impute_mode_scores_and_rejects_incomplete_matrices() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (truth_p, masked_p, perfect, three) = (
        p("truth.tsv"),
        p("masked.tsv"),
        p("perfect.tsv"),
        p("three_genes.tsv"),
    );
    let genes = ["g1", "g2", "g3", "g4"];
    let truth: Vec<[f64; 4]> = (0..6)
        .map(|i| {
            let i = i as f64;
            [i + 1.0, 2.0 * i + 3.0, 9.0 - i, (i * i) % 5.0 + 1.0]
        })
        .collect();
    // Hide the second and fourth entries of every cell.
    let masked: Vec<[f64; 4]> = truth.iter().map(|r| [r[0], 0.0, r[2], 0.0]).collect();
    write_counts(Path::new(&truth_p), &genes, &truth);
    write_counts(Path::new(&masked_p), &genes, &masked);
    write_counts(Path::new(&perfect), &genes, &truth);
    write_counts(Path::new(&three), &genes[..3], &truth);
    let out = dir.path().join("scores.tsv");
    let base = [
        "--truth",
        &truth_p,
        "--masked",
        &masked_p,
        "--impute-scale",
        "counts",
        "-o",
        s(&out),
        "-q",
    ];
    let mut args = vec!["--impute", &perfect, &masked_p];
    args.extend(base);
    run_ok("score", &args);
    let (h, rows) = read_tsv(&out);
    assert_eq!(rows.len(), 2);
    // Perfect imputation: no error on the 12 hidden entries, correlations 1.
    assert_eq!(value(&h, &rows[0], "n_heldout"), 12.0);
    assert_eq!(value(&h, &rows[0], "mse_heldout"), 0.0);
    assert!((value(&h, &rows[0], "median_pearson_gene") - 1.0).abs() < 1e-9);
    assert!((value(&h, &rows[0], "median_pearson_cell") - 1.0).abs() < 1e-9);
    // No imputation: the error is the hidden values themselves, log10(x+1).
    let want: f64 = truth
        .iter()
        .flat_map(|r| [r[1], r[3]])
        .map(|v| (v + 1.0).log10().powi(2))
        .sum::<f64>()
        / 12.0;
    assert!((value(&h, &rows[1], "mse_heldout") - want).abs() < 1e-5);
    std::fs::remove_file(&out).unwrap();

    // An imputation that lacks a gene of the truth: one line naming the file and field.
    let mut args = vec!["--impute", &perfect, &three];
    args.extend(base);
    let err = run_fails_one_line("score", &args, &out);
    assert_has(&err, &[&three, "field 'gene_ids'"]);
    assert!(err.contains("'g4'"), "{err}");

    // --impute needs --truth and --masked; it does not mix with embeddings.
    let err = run_fails("score", &["--impute", &perfect, "-o", s(&out)], &out);
    assert!(err.contains("--truth"), "{err}");
    let mut args = vec![&perfect, "--impute", &perfect];
    args.extend(base);
    run_fails("score", &args, &out);
}
