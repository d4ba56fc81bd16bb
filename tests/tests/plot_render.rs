//! cellweave-plot end to end: every plot kind to PNG and SVG from small generated tables,
//! checked by decoding the pixels; the UMAP table it writes; and its errors.

use cellweave::contract::{Categorical, Column, EmbeddingTable, Frame, TableKind};
use cellweave::io::table;
use cellweave::viz::plot::png;
use cellweave::viz::umap::SplitMix;
use cellweave_tests::{command, output_ok, run_fails, run_ok, s};
use std::path::{Path, PathBuf};
use std::process::Output;

const BLUE: [u8; 3] = [0x00, 0x72, 0xB2];
const ORANGE: [u8; 3] = [0xE6, 0x9F, 0x00];
const GREEN: [u8; 3] = [0x00, 0x9E, 0x73];

/// 300 cells in 8-D: 4 cell types (blobs), 3 batches, a numeric column with missing values.
fn embedding(dir: &Path) -> PathBuf {
    let mut rng = SplitMix::new(1);
    let (n, d) = (300, 8);
    let centres: Vec<f64> = (0..4 * d).map(|_| rng.normal() * 8.0).collect();
    let mut data = Vec::new();
    let mut types = Vec::new();
    let mut batches = Vec::new();
    let mut depth = Vec::new();
    for i in 0..n {
        let t = i % 4;
        for k in 0..d {
            data.push((centres[t * d + k] + rng.normal()) as f32);
        }
        types.push(["B cell", "T cell", "monocyte", "NK"][t]);
        batches.push(["10x", "CEL-seq2", "Drop-seq"][i % 3]);
        depth.push(if i % 50 == 0 {
            f64::NAN
        } else {
            1000.0 + (i * 37 % 300) as f64 * 10.0
        });
    }
    let e = EmbeddingTable {
        name: "claire".into(),
        cell_ids: (0..n).map(|i| format!("cell{i}")).collect(),
        obs: vec![
            (
                "batch".into(),
                Column::Cat(Categorical::from_strings(&batches)),
            ),
            (
                "cell_type".into(),
                Column::Cat(Categorical::from_strings(&types)),
            ),
            ("n_counts".into(), Column::F64(depth)),
        ],
        dim: d,
        data,
        provenance: Vec::new(),
    };
    let path = dir.join("emb.arrow");
    table::write_embedding(&path, &e).unwrap();
    path
}

/// Copy a picture to `$CELLWEAVE_PLOT_DIR` (when set) so that a person can look at it.
fn keep(path: &Path) {
    if let Some(dir) = std::env::var_os("CELLWEAVE_PLOT_DIR") {
        let test = std::thread::current().name().unwrap_or("plot").to_string();
        let name = format!("{test}-{}", path.file_name().unwrap().to_string_lossy());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, Path::new(&dir).join(name)).unwrap();
    }
}

fn decode(path: &Path) -> png::Image {
    keep(path);
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() > 5_000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    png::read(&bytes).unwrap()
}

fn svg(path: &Path) -> String {
    keep(path);
    let s = std::fs::read_to_string(path).unwrap();
    assert!(
        s.contains("<svg") && s.trim_end().ends_with("</svg>"),
        "{} is not a whole SVG",
        path.display()
    );
    s
}

/// `cellweave-plot INPUT -o OUT EXTRA...`.
fn plot(input: &Path, out: &Path, extra: &[&str]) -> Output {
    run_ok("plot", &[&[s(input), "-o", s(out)], extra].concat())
}

/// [`plot`] to a PNG, decoded.
fn plot_png(input: &Path, out: &Path, extra: &[&str]) -> png::Image {
    plot(input, out, extra);
    decode(out)
}

/// [`plot`] to an SVG, its text.
fn plot_svg(input: &Path, out: &Path, extra: &[&str]) -> String {
    plot(input, out, extra);
    svg(out)
}

/// Two line colours (the first two of the palette), each over 300 pixels.
fn assert_two_lines(img: &png::Image, what: &str) {
    assert!(
        img.count_near(BLUE, 10) > 300 && img.count_near(ORANGE, 10) > 300,
        "{what} expected"
    );
}

#[test]
fn umap_panels_png_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let emb = embedding(dir.path());
    let (out, umap) = (dir.path().join("umap.png"), dir.path().join("umap.arrow"));
    let colours = [
        "--color",
        "batch",
        "--color",
        "cell_type",
        "--color",
        "n_counts",
    ];
    let o = plot(
        &emb,
        &out,
        &[&colours[..], &["--umap-out", s(&umap)]].concat(),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("umap: layout"));
    let img = decode(&out);
    // Three panels side by side: wider than tall.
    assert!(img.width > 2 * img.height, "{}x{}", img.width, img.height);
    assert!(
        img.distinct_colours() > 50,
        "only {} colours",
        img.distinct_colours()
    );
    for colour in [BLUE, ORANGE, GREEN] {
        assert!(
            img.count_near(colour, 30) > 200,
            "palette colour {colour:?} barely present"
        );
    }
    // The viridis panel holds its dark end, and the missing values are grey.
    assert!(
        img.count_near([0x44, 0x01, 0x54], 40) > 20,
        "no dark viridis points"
    );
    assert!(
        img.count_near([0xBB, 0xBB, 0xBB], 20) > 10,
        "no grey missing values"
    );

    let u = table::read_embedding(&umap).unwrap();
    assert_eq!((u.name.as_str(), u.dim, u.n_cells()), ("umap", 2, 300));
    assert_eq!(u.cell_ids[7], "cell7");
    assert!(u.column("cell_type").is_some());
    assert_eq!(u.provenance.last().unwrap().tool, "cellweave-plot");
    assert_eq!(u.provenance.last().unwrap().params["n_neighbors"], 15);

    // A 2-D table named umap is drawn as it is, without a new layout.
    let again = dir.path().join("again.svg");
    let o = plot(&umap, &again, &["--color", "cell_type"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("umap: layout"));
    let text = svg(&again);
    assert_eq!(
        text.matches("<circle").count(),
        300 + 4,
        "one circle per cell plus 4 legend swatches"
    );
    assert!(text.contains("monocyte") && text.contains("UMAP1"));
}

#[test]
fn same_seed_same_picture() {
    let dir = tempfile::tempdir().unwrap();
    let emb = embedding(dir.path());
    let paths: Vec<PathBuf> = ["a.png", "b.png", "c.png"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    for (p, seed) in paths.iter().zip(["3", "3", "4"]) {
        plot(&emb, p, &["--seed", seed, "--threads", "2"]);
    }
    let bytes: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(bytes[0], bytes[1]);
    assert_ne!(bytes[0], bytes[2]);
}

fn scores(dir: &Path) -> PathBuf {
    let mut emb = Vec::new();
    let mut metric = Vec::new();
    let mut value = Vec::new();
    let mut group = Vec::new();
    for (e, base) in [("PCA", 0.4), ("Harmony", 0.6), ("CLAIRE", 0.7)] {
        for (k, (m, g)) in [
            ("agg_total", "aggregate"),
            ("silhouette_label", "bio"),
            ("ilisi_knn", "batch"),
            ("kbet_per_label", "batch"),
            ("graph_connectivity", "batch"),
            ("nmi", "bio"),
        ]
        .iter()
        .enumerate()
        {
            emb.push(Some(e.to_string()));
            metric.push(Some(m.to_string()));
            group.push(Some(g.to_string()));
            value.push(base + 0.04 * k as f64);
        }
    }
    let f = Frame::new(TableKind::Scores)
        .with("embedding", Column::Str(emb))
        .with("metric", Column::Str(metric))
        .with("value", Column::F64(value))
        .with("group", Column::Str(group));
    let path = dir.join("scores.arrow");
    table::write_frame(&path, &f).unwrap();
    path
}

#[test]
fn metric_bars_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scores(dir.path());
    let out = dir.path().join("bars.png");
    let img = plot_png(&sc, &out, &[]);
    assert!(img.height > 300, "{}x{}", img.width, img.height);
    // One bar colour per embedding: solid bars give many pixels of each.
    for colour in [BLUE, ORANGE, GREEN] {
        assert!(
            img.count_near(colour, 2) > 1500,
            "bar colour {colour:?}: {} px",
            img.count_near(colour, 2)
        );
    }
    let out = dir.path().join("bars.svg");
    let text = plot_svg(&sc, &out, &["--title", "cellbench"]);
    assert!(
        text.contains("graph_connectivity") && text.contains("cellbench") && text.contains("0.560")
    );
    // Metrics are shown group by group under headings: bio first, aggregates last.
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} not drawn"))
    };
    assert!(at("\nbio\n") < at("silhouette_label") && at("silhouette_label") < at("\nnmi\n"));
    assert!(at("\nnmi\n") < at("\nbatch\n") && at("graph_connectivity") < at("\naggregate\n"));
    assert!(at("\naggregate\n") < at("agg_total"));

    // The wide TSV that cellweave-score writes for people plots the same way.
    let tsv = dir.path().join("scores.tsv");
    std::fs::write(
        &tsv,
        "embedding\tn_cells\tdim\tnmi\tari\nPCA\t100\t50\t0.5\t0.25\nCLAIRE\t100\t32\t0.75\tNA\n",
    )
    .unwrap();
    let out = dir.path().join("tsv.svg");
    let text = plot_svg(&tsv, &out, &[]);
    assert!(text.contains("0.750") && text.contains("\nari\n") && !text.contains("n_cells"));

    // A wide table (one row per embedding, one column per metric) works too.
    let wide = Frame::new(TableKind::Scores)
        .with(
            "embedding",
            Column::Str(vec![Some("PCA".into()), Some("CLAIRE".into())]),
        )
        .with("nmi", Column::F64(vec![0.5, 0.8]))
        .with("ari", Column::F64(vec![0.3, f64::NAN]));
    let path = dir.path().join("wide.arrow");
    table::write_frame(&path, &wide).unwrap();
    let out = dir.path().join("wide.svg");
    let text = plot_svg(&path, &out, &[]);
    assert!(text.contains("ari") && text.contains("NA") && text.contains("0.800"));
}

/// The training log of two stages that the loss-curve tests plot.
fn training_log(dir: &Path) -> PathBuf {
    let mut stage = Vec::new();
    let (mut epoch, mut loss, mut aux) = (Vec::new(), Vec::new(), Vec::new());
    for st in ["1", "2"] {
        for e in 0..30 {
            stage.push(st);
            epoch.push(Some(e as i64));
            loss.push(5.0 * (-0.1 * e as f64).exp() + 0.5);
            aux.push(1.0 / (1.0 + e as f64));
        }
    }
    let f = Frame::new(TableKind::TrainingLog)
        .with("stage", Column::Cat(Categorical::from_strings(&stage)))
        .with("epoch", Column::I64(epoch))
        .with("loss", Column::F64(loss))
        .with("loss_contrastive", Column::F64(aux))
        .with("seconds", Column::F64(vec![0.1; 60]));
    let path = dir.join("log.arrow");
    table::write_frame(&path, &f).unwrap();
    path
}

/// Near-black pixels: the text (and axes) of a figure.
fn ink(img: &png::Image) -> usize {
    img.count_near([0x22, 0x22, 0x22], 60)
}

#[test]
fn bar_charts_and_loss_curves_follow_dpi() {
    // Before: "--dpi sizes embedding pictures" refused both.
    let dir = tempfile::tempdir().unwrap();
    for (what, input) in [
        ("bars", scores(dir.path())),
        ("curves", training_log(dir.path())),
    ] {
        let one = plot_png(&input, &dir.path().join(format!("{what}.png")), &[]);
        let two = plot_png(
            &input,
            &dir.path().join(format!("{what}_240.png")),
            &["--dpi", "240"],
        );
        assert!(
            two.width.abs_diff(2 * one.width) <= 1 && two.height.abs_diff(2 * one.height) <= 1,
            "{what}: {}x{} at 240 dpi, {}x{} at 120",
            two.width,
            two.height,
            one.width,
            one.height
        );
        // Everything drawn scales: the coloured marks and the text cover 4 times the pixels.
        for (name, a, b) in [
            ("blue", one.count_near(BLUE, 2), two.count_near(BLUE, 2)),
            ("ink", ink(&one), ink(&two)),
        ] {
            let r = b as f64 / a as f64;
            assert!(
                (3.0..5.0).contains(&r),
                "{what}: {name} pixels {a} at 120 dpi, {b} at 240 (ratio {r:.2})"
            );
        }
        // --width stays the image's pixels at any dpi.
        let w = plot_png(
            &input,
            &dir.path().join(format!("{what}_w.png")),
            &["--dpi", "300", "--width", "1600"],
        );
        assert_eq!(w.width, 1600, "{what}");
    }
}

#[test]
fn loss_curves_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let path = training_log(dir.path());
    let out = dir.path().join("loss.png");
    assert_two_lines(&plot_png(&path, &out, &[]), "two coloured lines");
    let out = dir.path().join("loss.svg");
    let text = plot_svg(&path, &out, &[]);
    assert!(
        text.contains("stage 2") && text.contains("loss_contrastive") && !text.contains("seconds")
    );
    assert!(
        text.matches("<polyline").count() >= 4,
        "two lines per stage panel"
    );

    // A text log without stages (as cellweave-impute writes): one panel, both losses.
    let tsv = dir.path().join("log.tsv");
    let mut log = String::from("epoch\ttrain_loss\tval_loss\tseconds\tbest\n");
    for e in 0..20 {
        log += &format!(
            "{e}\t{}\t{}\t1.5\t{}\n",
            1.0 / (1.0 + e as f64),
            1.2 / (1.0 + e as f64),
            e == 19
        );
    }
    std::fs::write(&tsv, log).unwrap();
    let out = dir.path().join("tsv.png");
    assert_two_lines(&plot_png(&tsv, &out, &[]), "train and validation lines");
}

#[test]
fn text_embedding_with_obs_and_without_fonts() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix::new(9);
    let mut emb = String::from("cell_id\tPC1\tPC2\tPC3\n");
    let mut obs = String::from("cell_id\tbatch\tcell_type\n");
    for i in 0..120 {
        let c = (i % 2) as f64 * 10.0;
        emb += &format!(
            "c{i}\t{}\t{}\t{}\n",
            c + rng.normal(),
            rng.normal(),
            c + rng.normal()
        );
        obs += &format!("c{i}\tb{}\tt{}\n", i % 3, i % 2);
    }
    let (e, o) = (dir.path().join("harmony.tsv"), dir.path().join("obs.tsv"));
    std::fs::write(&e, emb).unwrap();
    std::fs::write(&o, obs).unwrap();
    let out = dir.path().join("plain.png");
    let args = |out| {
        let size = ["--width", "400", "--height", "300"];
        [
            &[s(&e), "--obs", s(&o), "--color", "batch", "-o", out],
            &size[..],
        ]
        .concat()
    };
    output_ok(command("plot", &args(s(&out))).env("CELLWEAVE_FONT", "none"));
    let img = decode(&out);
    assert_eq!((img.width, img.height), (400, 300));
    assert!(img.count_near(BLUE, 30) > 20 && img.count_near(ORANGE, 30) > 20);
    // With fonts the same picture carries text: more distinct (anti-aliased) colours.
    let with_text = dir.path().join("text.png");
    run_ok("plot", &args(s(&with_text)));
    assert!(decode(&with_text).distinct_colours() > img.distinct_colours());
}

#[test]
fn bad_inputs_fail_with_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let emb = embedding(dir.path());
    let out = dir.path().join("x.png");
    let check = |args: &[&str], needle: &str| {
        let err = run_fails("plot", args, &out);
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("cellweave-plot: error:") && last.contains(needle),
            "{args:?}: {err}"
        );
    };
    check(
        &[s(&emb), "--color", "donor", "-o", s(&out)],
        "field 'donor'",
    );
    check(&[s(&emb), "-o", s(&dir.path().join("x.jpg"))], ".jpg");
    check(
        &[s(&dir.path().join("missing.arrow")), "-o", s(&out)],
        "missing.arrow",
    );
    let tsv = dir.path().join("e.tsv");
    std::fs::write(&tsv, "cell_id\tPC1\nc1\t0.5\nc2\thello\n").unwrap();
    check(&[s(&tsv), "-o", s(&out)], "field 'PC1'");
    let obs = dir.path().join("obs.tsv");
    std::fs::write(&obs, "cell_id\tbatch\nc1\ta\n").unwrap();
    std::fs::write(&tsv, "cell_id\tPC1\tPC2\nc1\t0.5\t1\nc2\t1\t2\n").unwrap();
    check(
        &[s(&tsv), "--obs", s(&obs), "-o", s(&out)],
        "first missing: 'c2'",
    );
    let frame = dir.path().join("qc.arrow");
    table::write_frame(
        &frame,
        &Frame::new(TableKind::Qc).with("x", Column::F64(vec![1.0])),
    )
    .unwrap();
    check(&[s(&frame), "-o", s(&out)], "cannot plot a 'qc' table");
}

/// A genes table as scETM writes it: 40 genes, 8 topics; topic t is high on genes 5t..5t+4
/// (every topic column shifted by its own constant, which the heatmap must centre away).
fn genes_table(dir: &Path) -> PathBuf {
    let mut rng = SplitMix::new(3);
    let (g, k) = (40, 8);
    let names: Vec<Option<String>> = (0..g).map(|i| Some(format!("GENE{i}"))).collect();
    let mut f = Frame::new(TableKind::Genes)
        .with(
            "gene_id",
            Column::Str((0..g).map(|i| Some(format!("ENSG{i:05}"))).collect()),
        )
        .with("gene_name", Column::Str(names))
        .with("rho_0", Column::F32((0..g).map(|i| i as f32).collect()));
    for t in 0..k {
        let v: Vec<f32> = (0..g)
            .map(|i| {
                let high = if i / 5 == t { 3.0 } else { 0.0 };
                (high + 0.2 * rng.normal() + 50.0 * t as f64) as f32
            })
            .collect();
        f = f.with(&format!("topic_{t}"), Column::F32(v));
    }
    let path = dir.join("genes.arrow");
    table::write_frame(&path, &f).unwrap();
    path
}

#[test]
fn topics_heatmap_png_svg_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let genes = genes_table(dir.path());
    // PNG: 8 topics x 3 genes each (24 rows); red cells (a topic's own genes, above its mean)
    // and blue ones (the others, below it) both drawn.
    let img = plot_png(
        &genes,
        &dir.path().join("topics.png"),
        &["--topics", "--top-genes", "3"],
    );
    let red = img.count_near([0xB2, 0x18, 0x2B], 40);
    let blue = img.count_near([227, 236, 245], 12);
    assert!(
        red > 24 * 100,
        "24 strongly red cells of 16 x 12 pixels expected: {red}"
    );
    assert!(
        blue > 100 * 100,
        "most other cells light blue expected: {blue}"
    );
    // SVG: the rows are each topic's top genes in topic order.
    let text = plot_svg(
        &genes,
        &dir.path().join("topics.svg"),
        &["--topics", "--top-genes", "2"],
    );
    let pos = |n: &str| text.find(&format!("\n{n}\n")).unwrap_or(usize::MAX);
    let shown: Vec<usize> = (0..40)
        .filter(|i| pos(&format!("GENE{i}")) != usize::MAX)
        .collect();
    assert_eq!(shown.len(), 16, "{shown:?}");
    // Two genes of each topic's own five.
    assert!(shown
        .iter()
        .all(|i| shown.iter().filter(|j| *j / 5 == i / 5).count() == 2));
    assert!(pos("GENE0").min(pos("GENE1")).min(pos("GENE2")) < pos("GENE35").min(pos("GENE36")));
    // The same table written as text reads the same.
    let tsv = dir.path().join("genes.tsv");
    let f = table::read_frame(&genes, TableKind::Genes).unwrap();
    table::write_frame_tsv(&tsv, &f).unwrap();
    let text2 = plot_svg(
        &tsv,
        &dir.path().join("topics2.svg"),
        &["--topics", "--top-genes", "2"],
    );
    assert_eq!(text, text2);

    let out = dir.path().join("bad.png");
    let err = run_fails(
        "plot",
        &[s(&embedding(dir.path())), "--topics", "-o", s(&out)],
        &out,
    );
    assert!(err.lines().count() == 1 && err.contains("genes"), "{err}");
    let no_topics = dir.path().join("hvg_genes.arrow");
    let f = Frame::new(TableKind::Genes).with("gene_id", Column::Str(vec![Some("g1".into())]));
    table::write_frame(&no_topics, &f).unwrap();
    let err = run_fails("plot", &[s(&no_topics), "--topics", "-o", s(&out)], &out);
    assert!(
        err.lines().count() == 1 && err.contains("topic_0") && err.contains("hvg_genes.arrow"),
        "{err}"
    );
    let err = run_fails(
        "plot",
        &[s(&genes), "--topics", "--top-genes", "0", "-o", s(&out)],
        &out,
    );
    assert!(err.contains("--top-genes"), "{err}");
}
