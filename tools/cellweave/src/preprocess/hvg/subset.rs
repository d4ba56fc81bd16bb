//! Values and counts a flavor accepts, and the cells table restricted to the selected genes.

use super::*;

/// Check that the values suit the flavor: log1p values for the dispersion flavors, raw
/// counts for `seurat_v3`.
pub fn check_values(values: ValueKind, flavor: Flavor) -> Result<()> {
    let ok = match flavor {
        Flavor::SeuratV3 => values == ValueKind::Counts,
        _ => values == ValueKind::Log1p,
    };
    if ok {
        return Ok(());
    }
    let expected = match flavor {
        Flavor::SeuratV3 => "raw counts for flavor seurat_v3 (give them with --counts RAW.arrow)",
        _ => "log1p values for this flavor (run cellweave-normalize first)",
    };
    Err(Error::new(format!(
        "the values are '{}', expected {expected}",
        values.as_str()
    ))
    .field(crate::contract::meta::VALUES))
}

/// The raw counts of `raw` for the cells and genes of `cells` (matched by cell id and gene
/// id; `raw` may hold more of either), for `seurat_v3` on a log-normalized table.
pub fn align_counts(cells: &CellsTable, raw: &CellsTable) -> Result<Csr> {
    if raw.values != ValueKind::Counts {
        return Err(Error::new(format!(
            "the values are '{}', expected raw counts",
            raw.values.as_str()
        ))
        .field(crate::contract::meta::VALUES));
    }
    let rows: Vec<usize> = if raw.cell_ids == cells.cell_ids {
        (0..raw.n_cells()).collect()
    } else {
        rows_of(&cells.cell_ids, &raw.cell_ids).map_err(|(_, id)| {
            Error::new(format!("cell '{id}' is not in the counts table")).field("cell_id")
        })?
    };
    let cols = rows_of(&cells.gene_ids, &raw.gene_ids).map_err(|(_, id)| {
        Error::new(format!("gene '{id}' is not in the counts table")).field("gene_ids")
    })?;
    let x = if rows.len() == raw.n_cells() && rows.iter().enumerate().all(|(i, &r)| i == r) {
        raw.x.select_cols(&cols)
    } else {
        raw.x.select_rows(&rows).select_cols(&cols)
    };
    Ok(x)
}

/// Write the cells of a streamed input with the genes `keep` (ascending positions; all when
/// None) and `provenance`.
pub fn subset_file(
    input: &CellsInput,
    output: &Path,
    keep: Option<&[usize]>,
    provenance: &[Step],
) -> Result<()> {
    let g = input.n_genes();
    let all: Vec<usize>;
    let keep = match keep {
        Some(k) => k,
        None => {
            all = (0..g).collect();
            &all
        }
    };
    let mut map = vec![u32::MAX; g];
    for (new, &old) in keep.iter().enumerate() {
        map[old] = new as u32;
    }
    let pick = |v: &[String]| -> Vec<String> { keep.iter().map(|&c| v[c].clone()).collect() };
    let (gene_ids, gene_names) = (pick(&input.gene_ids), pick(&input.gene_names));
    let schema = input.output_schema(&CellsMeta {
        gene_ids: &gene_ids,
        gene_names: &gene_names,
        values: input.values,
        provenance,
        n_cells: input.n_cells(),
        fingerprint: input.fingerprint().to_string(),
    });
    let make = |i: usize| -> Result<RecordBatch> {
        let v = input.rows(i)?;
        let (gi, ex) = if keep.len() == g {
            input.lists(i)
        } else {
            stream::subset_rows(&v, None, &map)
        };
        stream::out_batch(&schema, input.per_cell_columns(i), gi, ex)
    };
    table::write_stream(output, schema.clone(), input.n_batches(), make, |i| {
        input.done(i)
    })
}

/// Keep the selected genes (ascending positions) of a cells table, in parallel.
pub fn subset_genes(t: &CellsTable, keep: &[usize]) -> CellsTable {
    let mut map = vec![u32::MAX; t.n_genes()];
    for (new, &old) in keep.iter().enumerate() {
        map[old] = new as u32;
    }
    const ROWS: usize = 4096;
    let parts: Vec<(Vec<u64>, Vec<u32>, Vec<f32>)> = (0..t.n_cells().div_ceil(ROWS))
        .into_par_iter()
        .map(|k| {
            let (mut lens, mut idx, mut val) = (Vec::new(), Vec::new(), Vec::new());
            for r in k * ROWS..((k + 1) * ROWS).min(t.n_cells()) {
                let (i, v) = t.x.row(r);
                let before = idx.len();
                for (&c, &x) in i.iter().zip(v) {
                    let m = map[c as usize];
                    if m != u32::MAX {
                        idx.push(m);
                        val.push(x);
                    }
                }
                lens.push((idx.len() - before) as u64);
            }
            (lens, idx, val)
        })
        .collect();
    let mut x = Csr::empty(keep.len());
    let nnz: usize = parts.iter().map(|p| p.1.len()).sum();
    x.indices.reserve(nnz);
    x.data.reserve(nnz);
    for (lens, idx, val) in parts {
        for l in lens {
            let last = *x.indptr.last().unwrap();
            x.indptr.push(last + l);
        }
        x.indices.extend_from_slice(&idx);
        x.data.extend_from_slice(&val);
    }
    t.with_genes(keep, x)
}
