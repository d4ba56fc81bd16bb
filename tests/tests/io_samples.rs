//! Many samples, as Cell Ranger, nf-core and plate users bring them (issue 13):
//! `--samplesheet` (sample,path[,obs] and per-sample columns) imports every sample into one
//! table, batch = sample, barcodes shared by samples named `<barcode>-<sample>`; a wrong row
//! is one line naming the sheet, the column and the line. An obs table whose ids repeat in
//! the matrix's own order (plates reusing well barcodes) joins by position, and ids that do
//! not match the matrix are a clear error naming the row.

mod io_support;

use cellweave::contract::Column;
use cellweave_tests::{run, run_ok};
use io_support::*;

fn text(c: &Column) -> Vec<String> {
    (0..c.len())
        .map(|i| c.text(i).unwrap_or_default())
        .collect()
}

#[test]
fn samplesheet_imports_every_sample_with_its_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Two Cell Ranger samples sharing barcodes, one of them with its own obs file.
    two_cellranger_samples(&d.join("runs/ctrl1"), &d.join("runs/stim1"));
    std::fs::write(
        d.join("runs/stim1_obs.tsv"),
        "barcode\tcell_type\nAAAG-1\tB\nAAAC-1\tT\n",
    )
    .unwrap();
    let sheet = d.join("runs/samples.csv");
    std::fs::write(
        &sheet,
        "sample,path,obs,condition,donor\nctrl1,ctrl1,,ctrl,1\nstim1,/ABS/stim1/outs,stim1_obs.tsv,stim,1\n"
            .replace("/ABS", s(&d.join("runs"))),
    )
    .unwrap();
    let out = d.join("all.arrow");
    let t = import(&["--samplesheet", s(&sheet)], &out);
    assert_eq!(t.batch.categories, ["ctrl1", "stim1"]);
    assert_eq!(
        t.cell_ids,
        [
            "AAAC-1-ctrl1",
            "AAAG-1-ctrl1",
            "AACT-1-ctrl1",
            "AAAC-1-stim1",
            "AAAG-1-stim1"
        ]
    );
    assert_eq!(
        text(&t.column("condition").unwrap()),
        ["ctrl", "ctrl", "ctrl", "stim", "stim"]
    );
    assert_eq!(t.column("donor").unwrap(), Column::I64(vec![Some(1); 5]));
    let ct = t.column("cell_type").unwrap();
    assert_eq!(ct.text(0), None, "ctrl1 has no obs file");
    assert_eq!(ct.text(3).as_deref(), Some("T"));
    assert_eq!(ct.text(4).as_deref(), Some("B"));
    assert_eq!(t.x.nnz(), 5);
    // The same as naming the inputs one by one.
    let by_hand = import(
        &[
            s(&d.join("runs/ctrl1")),
            s(&d.join("runs/stim1")),
            "--batch",
            "ctrl1",
            "--batch",
            "stim1",
        ],
        &d.join("hand.arrow"),
    );
    assert_eq!(by_hand.x, t.x);
    assert_eq!(by_hand.cell_ids, t.cell_ids);

    // A TSV sheet with a missing path: one line naming the sheet, the column and the line.
    let tsv = d.join("runs/bad.tsv");
    std::fs::write(&tsv, "sample\tpath\nctrl1\tctrl1\nstim2\tstim2\n").unwrap();
    let o = d.join("bad.arrow");
    import_fails(
        &["--samplesheet", s(&tsv)],
        &o,
        "bad.tsv",
        &["field 'path'", "line 3", "stim2", "samplesheet's folder"],
    );
    // A sheet without a path column (nf-core's FASTQ sheet): names the columns it has.
    std::fs::write(&tsv, "sample\tfastq_1\tfastq_2\nctrl1\ta.fq\tb.fq\n").unwrap();
    import_fails(
        &["--samplesheet", s(&tsv)],
        &o,
        "bad.tsv",
        &[
            "field 'path'",
            "no 'path' column",
            "sample, fastq_1, fastq_2",
        ],
    );
    // An obs file of a sample that misses a barcode of that sample.
    std::fs::write(
        d.join("runs/stim1_obs.tsv"),
        "barcode\tcell_type\nAAAG-1\tB\n",
    )
    .unwrap();
    import_fails(
        &["--samplesheet", s(&sheet)],
        &o,
        "stim1_obs.tsv",
        &["field 'cell_id'", "1 of 2", "AAAC-1"],
    );
    // A samplesheet and inputs or --batch together is a usage error.
    let r = run(
        "import",
        &[
            "-q",
            "--samplesheet",
            s(&sheet),
            "--batch",
            "x",
            "-o",
            s(&o),
        ],
    );
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--batch"));
}

#[test]
fn obs_with_repeated_ids_joins_by_position() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Two plates that reuse well barcodes: the ids repeat in the matrix and in obs.tsv.
    let wells = ["A1", "A2", "B1", "A1", "A2", "B1"];
    let m = d.join("plates");
    tenx(&m, &wells);
    let obs = d.join("obs.tsv");
    std::fs::write(
        &obs,
        "well\tplate\tdepth\nA1\tp1\t1\nA2\tp1\t2\nB1\tp1\t3\nA1\tp2\t4\nA2\tp2\t5\nB1\tp2\t6\n",
    )
    .unwrap();
    let out = d.join("p.arrow");
    // Before: "duplicate id(s) ... use --make-unique", and --make-unique failed the same way.
    // Now the obs rows join by position; the cell ids still repeat, which --make-unique fixes
    // as its error says.
    import_fails(
        &[s(&m), "--obs", s(&obs), "--batch-key", "plate"],
        &out,
        "plates",
        &["field 'cell_id'", "3 duplicate", "--make-unique"],
    );
    let t = import(
        &[
            s(&m),
            "--obs",
            s(&obs),
            "--batch-key",
            "plate",
            "--make-unique",
        ],
        &out,
    );
    assert_eq!(t.batch.categories, ["p1", "p2"]);
    assert_eq!(t.batch.codes, [0, 0, 0, 1, 1, 1]);
    assert_eq!(
        t.column("depth").unwrap(),
        Column::I64((1..=6).map(Some).collect())
    );
    // Explicitly by id: the repeats are named, with the flag that works.
    let o = d.join("x.arrow");
    import_fails(
        &[s(&m), "--obs", s(&obs), "--obs-join", "id", "--make-unique"],
        &o,
        "obs.tsv",
        &["field 'cell_id'", "3 duplicate", "--obs-join position"],
    );
    run_ok(
        "import",
        &[
            "-q",
            s(&m),
            "--obs",
            s(&obs),
            "--obs-join",
            "position",
            "--make-unique",
            "-o",
            s(&o),
        ],
    );
    assert_eq!(read(&o).column("depth"), t.column("depth"));
    let o = d.join("y.arrow");
    // By position, an id that is not the matrix's: the row is named.
    std::fs::write(
        &obs,
        "well\tplate\nA1\tp1\nA2\tp1\nB1\tp1\nA1\tp2\nB1\tp2\nA2\tp2\n",
    )
    .unwrap();
    import_fails(
        &[s(&m), "--obs", s(&obs), "--make-unique"],
        &o,
        "obs.tsv",
        &["field 'cell_id'", "row 5 has id 'B1'", "'A2'", "ids repeat"],
    );
    // Too few rows.
    std::fs::write(&obs, "well\tplate\nA1\tp1\nA1\tp2\n").unwrap();
    import_fails(
        &[s(&m), "--obs", s(&obs), "--make-unique"],
        &o,
        "obs.tsv",
        &["field 'cell_id'", "2 rows for 6 cells"],
    );
    // Unique ids in another order join by id (auto), and --obs-join position refuses them,
    // pointing to --obs-join id.
    let u = d.join("u");
    tenx(&u, &["c1", "c2", "c3"]);
    std::fs::write(&obs, "id\tk\nc3\tz\nc1\tx\nc2\ty\n").unwrap();
    let t = import(&[s(&u), "--obs", s(&obs)], &out);
    assert_eq!(text(&t.column("k").unwrap()), ["x", "y", "z"]);
    import_fails(
        &[s(&u), "--obs", s(&obs), "--obs-join", "position"],
        &o,
        "obs.tsv",
        &["row 1 has id 'c3'", "--obs-join id"],
    );
}
