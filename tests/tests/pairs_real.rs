//! The pairs stage on the shared data sets (import -> filter -> normalize -> hvg -> pairs):
//! PCA against scanpy's, seed counts and accuracy, KNN sanity, and refinement with a
//! reference embedding (Harmony's, as a stand-in stage-1 embedding) raising seed accuracy.

use cellweave::contract::PairKind;
use cellweave::io::table::{read_cells, read_pairs};
use cellweave_tests::{refine_args, run_ok, s, shared, write_plain_embedding};
use std::path::{Path, PathBuf};

/// The preprocessing chain; returns the HVG cells table.
fn preprocess(shared: &Path, dataset: &str, dir: &Path) -> PathBuf {
    let raw = dir.join("raw.arrow");
    let filt = dir.join("filt.arrow");
    let norm = dir.join("norm.arrow");
    let hvg = dir.join("hvg.arrow");
    run_ok(
        "import",
        &[s(&shared.join("data").join(dataset)), "-o", s(&raw)],
    );
    run_ok("filter", &[s(&raw), "-o", s(&filt)]);
    run_ok("normalize", &[s(&filt), "-o", s(&norm)]);
    run_ok("hvg", &[s(&norm), "-o", s(&hvg)]);
    hvg
}

/// A reference TSV (header, first column cell_id) as (ids, row-major values, dim).
fn read_tsv(path: &Path) -> (Vec<String>, Vec<f32>, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let dim = lines.next().unwrap().split('\t').count() - 1;
    let (mut ids, mut data) = (vec![], vec![]);
    for l in lines {
        let mut f = l.split('\t');
        ids.push(f.next().unwrap().to_string());
        data.extend(f.map(|v| v.parse::<f32>().unwrap()));
    }
    (ids, data, dim)
}

fn check_dataset(dataset: &str, min_accuracy: f64) {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let hvg = preprocess(&shared, dataset, dir.path());
    let cells = read_cells(&hvg).unwrap();
    let (n, g) = (cells.n_cells(), cells.n_genes());

    // PCA as scanpy's arpack PCA on the same matrix (signs included: sklearn's svd_flip)
    let (ids, reference, k) =
        read_tsv(&shared.join("reference").join(dataset).join("embed/pca.tsv"));
    assert_eq!(ids, cells.cell_ids);
    let p = cellweave::numerics::pca::pca(&cells.x.to_dense(), n, g, 50, 0);
    assert_eq!(p.k, k);
    let mut matched = 0;
    for c in 0..k {
        let (mut dot, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let (x, y) = (p.scores[i * k + c] as f64, reference[i * k + c] as f64);
            dot += x * y;
            aa += x * x;
            bb += y * y;
        }
        let corr = dot / (aa * bb).sqrt();
        if c < 10 {
            assert!(
                corr > 0.999,
                "{dataset} PC{c}: correlation {corr} with scanpy"
            );
            assert!(
                (aa / bb - 1.0).abs() < 1e-3,
                "{dataset} PC{c}: variance ratio {}",
                aa / bb
            );
        }
        matched += (corr > 0.99) as usize;
    }
    eprintln!("{dataset}: {matched} of {k} PCs match scanpy's (correlation > 0.99)");
    assert!(matched >= 45, "{dataset}: only {matched} PCs match");

    let pairs = dir.path().join("pairs.arrow");
    let out = run_ok("pairs", &[s(&hvg), "-o", s(&pairs)]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let t = read_pairs(&pairs).unwrap();
    t.check_cells(&cells.fingerprint()).unwrap();
    let types = cells.column("cell_type").unwrap().to_categorical();
    let (same, total) = cellweave::integrate::pairs::seed_accuracy(&t, &types);
    let acc = same as f64 / total as f64;
    eprintln!("{dataset}: {total} seeds, accuracy {acc:.3}");
    assert!(total > n, "{dataset}: only {total} seeds for {n} cells");
    assert!(acc >= min_accuracy, "{dataset}: seed accuracy {acc}");
    let knn: Vec<usize> = (0..t.len())
        .filter(|&r| t.kind[r] == PairKind::Knn)
        .collect();
    assert_eq!(knn.len(), n * 10);
    let knn_same = knn
        .iter()
        .filter(|&&r| types.codes[t.i[r] as usize] == types.codes[t.j[r] as usize])
        .count();
    eprintln!(
        "{dataset}: KNN same-type fraction {:.3}",
        knn_same as f64 / knn.len() as f64
    );

    // refinement with an embedding that mixes batches (Harmony's) keeps most seeds and
    // raises their accuracy
    let (hids, hdata, hdim) = read_tsv(
        &shared
            .join("reference")
            .join(dataset)
            .join("embed/harmony.tsv"),
    );
    let emb = dir.path().join("harmony.arrow");
    write_plain_embedding(&emb, "harmony", hids, hdim, hdata);
    let refined = dir.path().join("refined.arrow");
    let out = run_ok("refine", &refine_args(&hvg, &pairs, &emb, &refined));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let r = read_pairs(&refined).unwrap();
    let (same2, total2) = cellweave::integrate::pairs::seed_accuracy(&r, &types);
    let acc2 = same2 as f64 / total2 as f64;
    eprintln!("{dataset}: refined {total} -> {total2} seeds, accuracy {acc:.3} -> {acc2:.3}");
    assert!(
        acc2 > acc,
        "{dataset}: refinement did not raise seed accuracy ({acc} -> {acc2})"
    );
    assert!(
        total2 * 2 > total,
        "{dataset}: refinement dropped most seeds ({total} -> {total2})"
    );
}

#[test]
fn cellbench_3tech_pairs() {
    check_dataset("cellbench_3tech", 0.9);
}

#[test]
fn kang_ifnb_pairs() {
    check_dataset("kang_ifnb", 0.7);
}
