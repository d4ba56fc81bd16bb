//! Per-gene sums, means and variances of groups of cells, from a table or streamed.

use super::*;

/// Column sums of one group of cells.
#[derive(Debug, Clone)]
pub struct Moments {
    /// Cells in the group.
    pub n: usize,
    /// Per gene: sum of the (transformed) values.
    pub sum: Vec<f64>,
    /// Per gene: sum of their squares.
    pub sumsq: Vec<f64>,
    /// Cells with a value > 0 (before any transform).
    pub n_pos: Vec<u32>,
}

/// How values enter the sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Values as they are (log1p data for cell_ranger; counts for seurat_v3).
    Identity,
    /// `expm1` of the log1p values (seurat).
    Expm1,
}

/// The running sums of one part of a group: per gene, the sum, the sum of squares and the
/// cells > 0 side by side (a value updates one cache line, not three arrays).
pub(super) struct Sums {
    n: usize,
    acc: Vec<[f64; 3]>,
}

impl Sums {
    fn zeros(n: usize, g: usize) -> Sums {
        Sums {
            n,
            acc: vec![[0.0; 3]; g],
        }
    }
    /// Add one cell's row.
    #[inline]
    fn add_row(&mut self, idx: &[u32], val: &[f32], t: Transform, memo: &mut Memo<fn(f32) -> f32>) {
        for (&c, &v) in idx.iter().zip(val) {
            let a = &mut self.acc[c as usize];
            a[2] += (v > 0.0) as u32 as f64;
            let v = if t == Transform::Expm1 {
                memo.get(v)
            } else {
                v
            };
            a[0] += v as f64;
            a[1] += (v * v) as f64;
        }
    }
}

pub(super) fn expm1_memo() -> Memo<fn(f32) -> f32> {
    Memo::new(f32::exp_m1)
}

pub(super) fn partial_sums(x: &Csr, rows: &[usize], part: usize, t: Transform) -> Sums {
    let mut m = Sums::zeros(rows.len(), x.n_cols);
    let mut memo = expm1_memo();
    for &r in rows.iter().skip(part).step_by(SCANPY_PARTIAL_SUMS) {
        let (idx, val) = x.row(r);
        m.add_row(idx, val, t, &mut memo);
    }
    m
}

/// Per-group column sums (in parallel over groups and partial sums).
pub fn group_moments(x: &Csr, groups: &Groups, t: Transform) -> Vec<Moments> {
    let tasks: Vec<(usize, usize)> = (0..groups.rows.len())
        .flat_map(|b| (0..SCANPY_PARTIAL_SUMS).map(move |p| (b, p)))
        .collect();
    let parts: Vec<Sums> = tasks
        .par_iter()
        .map(|&(b, p)| partial_sums(x, &groups.rows[b], p, t))
        .collect();
    merge_parts(parts)
}

/// Per group, its partial sums added up, in order (`parts` holds each group's parts in turn).
pub(super) fn merge_parts(parts: Vec<Sums>) -> Vec<Moments> {
    let mut out = Vec::with_capacity(parts.len() / SCANPY_PARTIAL_SUMS);
    for chunk in parts.chunks(SCANPY_PARTIAL_SUMS) {
        let col = |k: usize| -> Vec<f64> {
            (0..chunk[0].acc.len())
                .map(|c| {
                    chunk[1..]
                        .iter()
                        .fold(chunk[0].acc[c][k], |s, p| s + p.acc[c][k])
                })
                .collect()
        };
        out.push(Moments {
            n: chunk[0].n,
            sum: col(0),
            sumsq: col(1),
            n_pos: col(2).into_iter().map(|x| x as u32).collect(),
        });
    }
    out
}

/// [`group_moments`] over a streamed input, batch by batch: the same partial sums, each
/// taking the same rows in the same order, so the same results.
pub fn stream_moments(input: &CellsInput, groups: &Groups, t: Transform) -> Result<Vec<Moments>> {
    // the part each cell's row goes to: its group's, by its position in the group
    let mut part = vec![0u32; input.n_cells()];
    for (b, rows) in groups.rows.iter().enumerate() {
        for (k, &r) in rows.iter().enumerate() {
            part[r] = (b * SCANPY_PARTIAL_SUMS + k % SCANPY_PARTIAL_SUMS) as u32;
        }
    }
    let mut parts: Vec<Sums> = groups
        .rows
        .iter()
        .flat_map(|rows| (0..SCANPY_PARTIAL_SUMS).map(|_| Sums::zeros(rows.len(), input.n_genes())))
        .collect();
    for i in 0..input.n_batches() {
        let v = input.rows(i)?;
        let part = &part[input.start(i)..input.start(i) + v.n_rows()];
        parts.par_iter_mut().enumerate().for_each(|(p, m)| {
            let mut memo = expm1_memo();
            for r in (0..v.n_rows()).filter(|&r| part[r] == p as u32) {
                let (idx, val) = v.row(r);
                m.add_row(idx, val, t, &mut memo);
            }
        });
        input.release(i);
    }
    Ok(merge_parts(parts))
}
