//! Imputation scores (`cellweave-score --impute`): an imputed matrix against the truth, on
//! the entries the imputation input hid, exactly as `../shared/reference/tools/impute_eval.py`
//! computes them (the arithmetic is [`crate::impute::evaluate`], shared with
//! `cellweave-impute --truth`):
//!
//! - values compared on the log10(x + 1) scale of the counts;
//! - held-out entries: truth > 0 and masked input == 0; `mse_heldout` is the mean squared
//!   error over them, `n_heldout` their number;
//! - `median_pearson_gene`: the median over genes of the Pearson correlation between truth
//!   and imputed values over the cells where the truth is non-zero (genes with more than 2
//!   such cells and non-constant values on both sides); `median_pearson_cell` the same per
//!   cell over genes. Observed entries are included in these, as in `impute_eval.py`.
//!
//! The evaluation covers the truth's cells and genes; the imputed and masked matrices must
//! contain every one of them (any order; extra cells or genes are ignored, as the script's
//! `I[T.obs_names, T.var_names]`).

use crate::contract::{rows_of, CellsTable, Csr, ValueKind};
use crate::convert::import::{read_input, ImportOptions};
use crate::impute::{self, Scale};
use crate::io::{table, Format};
use crate::{Error, Result, ResultExt};
use std::path::Path;

/// The scale of imputed values read from a file that does not record it (TSV, h5ad).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImputedScale {
    /// log10(x + 1) (LATE's scale; `impute_eval.py`'s default)
    Log10,
    /// ln(x + 1) (`impute_eval.py --log1p`)
    Log1p,
    /// Counts (transformed with log10(x + 1))
    Counts,
}

impl ImputedScale {
    /// The name `--impute-scale` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ImputedScale::Log10 => "log10",
            ImputedScale::Log1p => "log1p",
            ImputedScale::Counts => "counts",
        }
    }
    fn value_kind(self) -> ValueKind {
        match self {
            ImputedScale::Log10 => ValueKind::Log10p,
            ImputedScale::Log1p => ValueKind::Log1p,
            ImputedScale::Counts => ValueKind::Counts,
        }
    }
}

/// The names of the scores, in output order.
pub const OUTPUTS: [&str; 6] = [
    "mse_heldout",
    "n_heldout",
    "median_pearson_gene",
    "median_pearson_cell",
    "n_genes_scored",
    "n_cells_scored",
];

/// Truth and masked input, both log10(x + 1), in the truth's cell and gene order.
pub struct Reference {
    /// Cell ids, in the truth's order.
    pub cell_ids: Vec<String>,
    /// Gene ids, in the truth's order.
    pub gene_ids: Vec<String>,
    /// The complete values.
    pub truth: Csr,
    /// The values the imputation was given.
    pub masked: Csr,
}

fn read_matrix(path: &Path, values: ValueKind) -> Result<CellsTable> {
    match Format::of(path) {
        Some(Format::Arrow | Format::Parquet) => table::read_cells(path),
        _ => {
            let opts = ImportOptions {
                values,
                ..ImportOptions::default()
            };
            read_input(path, &opts, true)
        }
    }
}

/// Positions of `want` in `have`; the error names the first id `have` lacks.
fn positions(have: &[String], want: &[String], what: &str, field: &str) -> Result<Vec<usize>> {
    rows_of(want, have).map_err(|(n_missing, first)| {
        Error::new(format!(
            "{what} '{first}' of the truth is missing ({n_missing} of {} missing; expected every cell and gene of the truth)",
            want.len()
        ))
        .field(field)
    })
}

/// `t`'s values on log10(x + 1), rows and columns in the order of `cells` and `genes`.
fn aligned_log10(t: &CellsTable, cells: &[String], genes: &[String]) -> Result<Csr> {
    let rows = positions(&t.cell_ids, cells, "cell", "cell_id")?;
    let cols = positions(&t.gene_ids, genes, "gene", "gene_ids")?;
    let x = impute::scaled_values(t, Scale::Log10)?;
    Ok(x.select_rows(&rows).select_cols(&cols))
}

/// Read the truth (raw counts) and the masked imputation input (raw counts).
pub fn read_reference(truth: &Path, masked: &Path) -> Result<Reference> {
    let t = read_matrix(truth, ValueKind::Counts)?;
    let m = read_matrix(masked, ValueKind::Counts)?;
    let truth_x = impute::scaled_values(&t, Scale::Log10).at(truth)?;
    let masked_x = aligned_log10(&m, &t.cell_ids, &t.gene_ids).at(masked)?;
    Ok(Reference {
        cell_ids: t.cell_ids,
        gene_ids: t.gene_ids,
        truth: truth_x,
        masked: masked_x,
    })
}

/// The scale of an imputed table's values: recorded by `cellweave-impute` (provenance
/// `value_scale`), the table's value kind, or `default` for files that record nothing.
fn scale_of(t: &CellsTable, default: ImputedScale) -> Result<ImputedScale> {
    Ok(match t.values {
        ValueKind::Log10p => ImputedScale::Log10,
        ValueKind::Log1p => ImputedScale::Log1p,
        ValueKind::Counts => ImputedScale::Counts,
        ValueKind::Imputed => {
            let recorded = t
                .provenance
                .iter()
                .rev()
                .find_map(|s| s.params.get("value_scale").and_then(|v| v.as_str()));
            match recorded {
                Some("log10") => ImputedScale::Log10,
                Some("log1p") => ImputedScale::Log1p,
                Some(other) => {
                    return Err(Error::new(format!(
                        "unknown value scale '{other}' in the provenance (expected log10 or log1p)"
                    ))
                    .field("value_scale"))
                }
                None => default,
            }
        }
        ValueKind::Normalized => {
            return Err(Error::new(
                "normalized, unlogged values cannot be compared with log10(x+1) counts (expected imputed values on log10(x+1) or ln(x+1), or counts)",
            )
            .field("values"))
        }
        ValueKind::Corrected => {
            return Err(Error::new(
                "batch-corrected values (deepMNN) are not an imputation (expected imputed values on log10(x+1) or ln(x+1), or counts)",
            )
            .field("values"))
        }
    })
}

/// Score one imputed matrix. Returns the scale its values were taken on and the scores
/// (named as [`OUTPUTS`]).
pub fn score_imputed(
    path: &Path,
    name: &str,
    reference: &Reference,
    default: ImputedScale,
) -> Result<(ImputedScale, Vec<(String, f64)>)> {
    let t = read_matrix(path, default.value_kind())?;
    let scale = scale_of(&t, default).at(path)?;
    let rows = positions(&t.cell_ids, &reference.cell_ids, "cell", "cell_id").at(path)?;
    let cols = positions(&t.gene_ids, &reference.gene_ids, "gene", "gene_ids").at(path)?;
    let x = t.x.select_rows(&rows).select_cols(&cols);
    let mut y = x.to_dense();
    if let Some(v) = y.iter().find(|v| !v.is_finite()) {
        return Err(Error::new(format!("non-finite value {v}"))
            .field("values")
            .file(path));
    }
    for v in y.iter_mut() {
        *v = match scale {
            ImputedScale::Log10 => *v,
            ImputedScale::Log1p => Scale::Log1p.to_log10(*v),
            ImputedScale::Counts => Scale::Log10.apply(*v),
        };
    }
    let r = impute::evaluate(name, &reference.truth, &reference.masked, &y).at(path)?;
    let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let values: Vec<(String, f64)> = vec![
        ("mse_heldout".into(), r.mse_heldout),
        ("n_heldout".into(), r.n_heldout as f64),
        ("median_pearson_gene".into(), opt(r.median_pearson_gene)),
        ("median_pearson_cell".into(), opt(r.median_pearson_cell)),
        ("n_genes_scored".into(), r.n_genes_scored as f64),
        ("n_cells_scored".into(), r.n_cells_scored as f64),
    ];
    debug_assert!(values.iter().map(|(n, _)| n.as_str()).eq(OUTPUTS));
    Ok((scale, values))
}
