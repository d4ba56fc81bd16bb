//! The writer: a 10x MTX folder (gzipped, genes x cells).

use super::*;

/// Append the decimal digits of `v` to `out`.
#[inline]
pub(crate) fn push_uint(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Append a value: integers without a decimal point, others in the shortest form that
/// reads back to the same `f32`.
#[inline]
pub(crate) fn push_value(out: &mut Vec<u8>, v: f32) {
    if v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
        push_uint(out, v as u64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Matrix entries per gzip member when writing (each member is compressed on its own thread).
pub(super) const MEMBER_ENTRIES: u64 = 1 << 21;

/// `bytes` as one complete gzip member.
pub(super) fn gz_member(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        flate2::Compression::new(1),
    );
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

pub(super) fn gz_writer(
    path: &Path,
) -> Result<flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>> {
    let f = std::fs::File::create(path).at(path)?;
    Ok(flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(BUF, f),
        flate2::Compression::new(1),
    ))
}

/// Write the three 10x files (gzipped, genes x cells) plus `obs.tsv` into `dir`.
pub fn write_mtx_files(dir: &Path, t: &CellsTable) -> Result<()> {
    crate::io::check_text_fields(t.cell_ids.iter().map(String::as_str), "cell_id")?;
    crate::io::check_text_fields(t.gene_ids.iter().map(String::as_str), "gene_ids")?;
    crate::io::check_text_fields(t.gene_names.iter().map(String::as_str), "gene_names")?;
    super::super::obs::write_obs_tsv(&dir.join("obs.tsv"), t)?;
    use rayon::prelude::*;
    let integer = t.x.data.iter().all(|v| v.fract() == 0.0);
    let mpath = dir.join("matrix.mtx.gz");
    let mut w = std::io::BufWriter::with_capacity(BUF, std::fs::File::create(&mpath).at(&mpath)?);
    let mut head = Vec::new();
    let _ = writeln!(
        head,
        "%%MatrixMarket matrix coordinate {} general\n%metadata_json: {{\"software_version\": \"cellweave-{}\", \"values\": \"{}\"}}\n{} {} {}",
        if integer { "integer" } else { "real" },
        crate::VERSION,
        t.values.as_str(),
        t.n_genes(),
        t.n_cells(),
        t.x.nnz()
    );
    w.write_all(&gz_member(&head)).at(&mpath)?;
    // Entries in chunks of cells, each formatted and compressed on its own thread into one
    // gzip member (a multi-member gzip file, which zcat, Python and R read as one stream).
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < t.n_cells() {
        let mut end = start + 1;
        while end < t.n_cells() && t.x.indptr[end] - t.x.indptr[start] < MEMBER_ENTRIES {
            end += 1;
        }
        ranges.push((start, end));
        start = end;
    }
    let per_round = 2 * rayon::current_num_threads();
    for round in ranges.chunks(per_round) {
        let parts: Vec<Vec<u8>> = round
            .par_iter()
            .map(|&(a, b)| {
                let mut buf = Vec::with_capacity(((t.x.indptr[b] - t.x.indptr[a]) * 16) as usize);
                for cell in a..b {
                    let (idx, val) = t.x.row(cell);
                    for (&g, &v) in idx.iter().zip(val) {
                        push_uint(&mut buf, g as u64 + 1);
                        buf.push(b' ');
                        push_uint(&mut buf, cell as u64 + 1);
                        buf.push(b' ');
                        push_value(&mut buf, v);
                        buf.push(b'\n');
                    }
                }
                gz_member(&buf)
            })
            .collect();
        for p in parts {
            w.write_all(&p).at(&mpath)?;
        }
    }
    w.flush().at(&mpath)?;

    let fpath = dir.join("features.tsv.gz");
    let mut w = gz_writer(&fpath)?;
    for (id, name) in t.gene_ids.iter().zip(&t.gene_names) {
        writeln!(w, "{id}\t{name}\tGene Expression").at(&fpath)?;
    }
    w.finish().at(&fpath)?.flush().at(&fpath)?;

    let bpath = dir.join("barcodes.tsv.gz");
    let mut w = gz_writer(&bpath)?;
    for id in &t.cell_ids {
        writeln!(w, "{id}").at(&bpath)?;
    }
    w.finish().at(&bpath)?.flush().at(&bpath)?;
    Ok(())
}

/// Write a cells table as a 10x MTX folder, atomically.
pub fn write_mtx_dir(path: &Path, t: &CellsTable) -> Result<()> {
    crate::io::atomic::write_dir(path, |tmp| write_mtx_files(tmp, t))
}
