//! Checks that a matrix read as counts holds raw counts, with a hint where the file holds
//! them otherwise.

use super::*;

/// Check values that must be raw counts.
pub(crate) fn check_counts(data: &[f32], elem: &str) -> Result<()> {
    check_counts_at(data, elem, 0)
}

/// [`check_counts`] of the values that start at position `first` of `elem`.
pub(super) fn check_counts_at(data: &[f32], elem: &str, first: usize) -> Result<()> {
    // Branch-free per block so that it vectorizes; locate the culprit only on failure.
    let ok = data.chunks(4096).all(|c| {
        c.iter()
            .fold(true, |acc, &v| acc & (0.0..=f32::MAX).contains(&v))
    });
    if !ok {
        let p = data
            .iter()
            .position(|v| !(*v >= 0.0 && v.is_finite()))
            .unwrap_or(0);
        return Err(Error::new(format!(
            "{elem} holds {} at position {} (expected raw counts: finite and non-negative; pass --values for other data)",
            data[p],
            first + p
        ))
        .field("values"));
    }
    Ok(())
}

/// How many stored values of a matrix the import scans for values that are not counts.
const COUNT_SCAN: usize = 1 << 22;

/// Whether `v` can be a raw count: a finite non-negative integer.
#[inline]
pub(crate) fn is_count(v: f32) -> bool {
    v >= 0.0 && v.is_finite() && v.fract() == 0.0
}

/// What [`scan_counts`] found: values scanned, values that are not counts, the first of
/// them with its position, and the name of what was scanned.
struct CountScan {
    scanned: usize,
    bad: usize,
    first: Option<(usize, f32)>,
    what: String,
}

/// The first stored values (at most [`COUNT_SCAN`]) of the matrix at `elem`, checked for
/// values that are not counts.
fn scan_counts(file: &File, elem: &str) -> Result<CountScan> {
    let (data, what) = if let Ok(g) = file.group(elem) {
        let ds = g
            .dataset("data")
            .map_err(|_| elem_err(elem, "sparse matrix without 'data'"))?;
        let n = ds.size().min(COUNT_SCAN);
        (read_range::<f32>(&ds, 0..n)?, format!("{elem}/data"))
    } else {
        let ds = file.dataset(elem)?;
        let shape = ds.shape();
        let (rows, cols) = (
            shape.first().copied().unwrap_or(0),
            shape.get(1).copied().unwrap_or(1),
        );
        let take = (COUNT_SCAN / cols.max(1)).clamp(1, rows.max(1)).min(rows);
        let sel = hdf5::Hyperslab::from(vec![(0..take).into(), (..).into()]);
        let block = ds
            .read_slice_2d::<f32, _>(hdf5::Selection::from(sel))
            .map_err(|e| elem_err(elem, e))?;
        let v: Vec<f32> = block.iter().copied().filter(|&x| x != 0.0).collect();
        (v, elem.to_string())
    };
    let bad = data.iter().filter(|&&v| !is_count(v)).count();
    let first = data
        .iter()
        .position(|&v| !is_count(v))
        .map(|p| (p, data[p]));
    Ok(CountScan {
        scanned: data.len(),
        bad,
        first,
        what,
    })
}

/// The `--layer` values under which this file holds counts (by [`scan_counts`]), other
/// than `elem`.
fn counts_elsewhere(file: &File, elem: &str) -> Vec<String> {
    let mut candidates: Vec<(String, String)> = file
        .group("layers")
        .and_then(|g| g.member_names())
        .unwrap_or_default()
        .into_iter()
        .map(|l| (format!("layers/{l}"), l))
        .collect();
    candidates.sort_by_key(|(_, l)| l != "counts");
    candidates.push(("raw/X".into(), "raw".into()));
    candidates.push(("X".into(), "X".into()));
    candidates
        .into_iter()
        .filter(|(e, _)| e != elem && file.link_exists(e.split('/').next().unwrap_or(e)))
        .filter(|(e, _)| file.link_exists(e))
        .filter(|(e, _)| matches!(scan_counts(file, e), Ok(c) if c.scanned > 0 && c.bad == 0))
        .map(|(_, l)| l)
        .collect()
}

/// Refuse a matrix read as counts whose first stored values are not all counts, in one line
/// that says where this file holds counts, if anywhere.
pub(super) fn check_holds_counts(file: &File, elem: &str) -> Result<()> {
    let CountScan {
        scanned: n,
        bad,
        first,
        what,
    } = scan_counts(file, elem)?;
    let Some((at, v)) = first else {
        return Ok(());
    };
    let scanned = if n >= COUNT_SCAN {
        format!("of the first {n}")
    } else {
        format!("of the {n}")
    };
    let elsewhere = counts_elsewhere(file, elem);
    let hint = match elsewhere.first() {
        Some(l) => {
            let place = match l.as_str() {
                "raw" => "raw/X".to_string(),
                "X" => "X".to_string(),
                l => format!("layers['{l}']"),
            };
            format!("this file holds counts in {place}: use --layer {l}")
        }
        None => "this file holds no counts elsewhere (layers, raw/X); if the values are normalized, say so with --values log1p or --values normalized".to_string(),
    };
    Err(Error::new(format!(
        "{what}: {bad} {scanned} stored values are not counts (non-negative integers; the first is {v} at position {at}); {hint}"
    ))
    .field("values"))
}
