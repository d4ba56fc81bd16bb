//! The selection across batches, for every flavor (seurat_v3's loess fit included).

use super::*;

/// The result of [`highly_variable_genes`].
#[derive(Debug, Clone)]
pub struct Hvg {
    /// The genes table (one row per input gene, in input order).
    pub genes: Frame,
    /// Positions of the selected genes, ascending.
    pub selected: Vec<usize>,
    /// Positions of the selected genes in selection order.
    pub order: Vec<usize>,
}

/// What a flavor found for every gene: its three statistics, whether it is selected, in how
/// many of the `nb` batches, and its rank; and the genes, most variable first.
struct Found {
    stats: [(&'static str, Vec<f64>); 3],
    mask: Vec<bool>,
    nbatches: Vec<u32>,
    nb: usize,
    rank: Vec<f64>,
    order: Vec<usize>,
}

impl Found {
    /// The genes table in scanpy's column order (ids and names, the three statistics, the
    /// selection: selected or not, in how many batches, whether in all of them; the rank)
    /// and the selected genes.
    fn hvg(self, gene_ids: &[String], gene_names: &[String]) -> Hvg {
        let Found {
            stats,
            mask,
            nbatches,
            nb,
            rank,
            order,
        } = self;
        let mut f = Frame::new(TableKind::Genes)
            .with("gene_id", str_col(gene_ids))
            .with("gene_name", str_col(gene_names));
        for (name, v) in stats {
            f = f.with(name, Column::F64(v));
        }
        let genes = f
            .with(
                "highly_variable",
                Column::Bool(mask.iter().map(|&b| Some(b)).collect()),
            )
            .with(
                "highly_variable_nbatches",
                Column::I64(nbatches.iter().map(|&n| Some(n as i64)).collect()),
            )
            .with(
                "highly_variable_intersection",
                Column::Bool(nbatches.iter().map(|&n| Some(n as usize == nb)).collect()),
            )
            .with("highly_variable_rank", Column::F64(rank));
        Hvg {
            genes,
            selected: (0..mask.len()).filter(|&c| mask[c]).collect(),
            order: order.into_iter().filter(|&c| mask[c]).collect(),
        }
    }
}

/// The first `n` genes of `order` marked among `g`.
fn top_mask(order: &[usize], n: usize, g: usize) -> Vec<bool> {
    let mut mask = vec![false; g];
    order[..n.min(g)].iter().for_each(|&c| mask[c] = true);
    mask
}

pub(super) fn str_col(v: &[String]) -> Column {
    Column::Str(v.iter().cloned().map(Some).collect())
}

/// Highly variable genes of `x` (log1p values for `seurat`/`cell_ranger`, raw counts for
/// `seurat_v3`), grouped by `groups`.
pub fn highly_variable_genes(
    x: &Csr,
    gene_ids: &[String],
    gene_names: &[String],
    groups: &Groups,
    p: &HvgParams,
) -> Result<Hvg> {
    check_params(groups, p)?;
    let found = match p.flavor {
        Flavor::SeuratV3 => seurat_v3(x, groups, p)?,
        _ => {
            let moments = group_moments(x, groups, transform_of(p.flavor));
            dispersion_flavor(moments, gene_ids, groups, p)
        }
    };
    Ok(found.hvg(gene_ids, gene_names))
}

pub(super) fn check_params(groups: &Groups, p: &HvgParams) -> Result<()> {
    if p.n_top_genes == 0 {
        bail!("--n-top-genes must be at least 1");
    }
    if p.n_bins == 0 {
        bail!("--n-bins must be at least 1");
    }
    if groups.rows.is_empty() {
        bail!("no cells");
    }
    Ok(())
}

/// How a dispersion flavor takes the values into its sums.
pub(super) fn transform_of(flavor: Flavor) -> Transform {
    if flavor == Flavor::Seurat {
        Transform::Expm1
    } else {
        Transform::Identity
    }
}

/// [`highly_variable_genes`] of a streamed input, for the dispersion flavors (`seurat`,
/// `cell_ranger`): one pass over the batches for the per-group sums.
pub fn highly_variable_genes_stream(
    input: &CellsInput,
    groups: &Groups,
    p: &HvgParams,
) -> Result<Hvg> {
    check_params(groups, p)?;
    if p.flavor == Flavor::SeuratV3 {
        bail!("seurat_v3 needs the whole matrix: use highly_variable_genes");
    }
    let moments = stream_moments(input, groups, transform_of(p.flavor))?;
    let found = dispersion_flavor(moments, &input.gene_ids, groups, p);
    Ok(found.hvg(&input.gene_ids, &input.gene_names))
}

/// The dispersion flavors (`seurat`, `cell_ranger`) from the per-group moments (ties in
/// the batched order go to the lower gene id).
fn dispersion_flavor(
    moments: Vec<Moments>,
    gene_ids: &[String],
    groups: &Groups,
    p: &HvgParams,
) -> Found {
    let g = gene_ids.len();
    let nb = moments.len();
    // per batch, per gene values (0 where the gene is not detected in the batch)
    let mut means = vec![vec![0f64; nb]; g];
    let mut disps = vec![vec![0f64; nb]; g];
    let mut norms = vec![vec![0f64; nb]; g];
    let mut nbatches = vec![0u32; g];
    let fits: Vec<(Vec<usize>, DispersionFit)> = moments
        .par_iter()
        .map(|m| {
            let genes: Vec<usize> = if groups.batched {
                (0..g).filter(|&c| m.n_pos[c] > 0).collect()
            } else {
                (0..g).collect()
            };
            let (mean, var) = mean_var(m, &genes);
            let fit = dispersion_fit(&mean, &var, p.flavor, p.n_bins, p.n_top_genes);
            (genes, fit)
        })
        .collect();
    for (b, (genes, fit)) in fits.iter().enumerate() {
        for (k, &c) in genes.iter().enumerate() {
            means[c][b] = fit.means[k];
            disps[c][b] = fit.dispersions[k];
            norms[c][b] = fit.dispersions_norm[k];
            nbatches[c] += fit.selected[k] as u32;
        }
    }
    let mean_of = |v: &Vec<Vec<f64>>| -> Vec<f64> {
        v.iter().map(|r| kahan_mean(r.iter().cloned())).collect()
    };
    let (m_means, m_disp, m_norm) = (mean_of(&means), mean_of(&disps), mean_of(&norms));
    let mut order: Vec<usize> = (0..g).collect();
    let selected_mask: Vec<bool>;
    if groups.batched {
        order.sort_by(|&a, &b| {
            nbatches[b]
                .cmp(&nbatches[a])
                .then(desc_nan_last(m_norm[a], m_norm[b]))
                .then(gene_ids[a].cmp(&gene_ids[b]))
                .then(a.cmp(&b))
        });
        selected_mask = top_mask(&order, p.n_top_genes, g);
    } else {
        selected_mask = nbatches.iter().map(|&n| n > 0).collect();
        order.sort_by(|&a, &b| desc_nan_last(m_norm[a], m_norm[b]).then(a.cmp(&b)));
    }
    let mut rank = vec![f64::NAN; g];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as f64;
    }
    Found {
        stats: [
            ("means", m_means),
            ("dispersions", m_disp),
            ("dispersions_norm", m_norm),
        ],
        mask: selected_mask,
        nbatches,
        nb,
        rank,
        order,
    }
}

/// The `seurat_v3` flavor: per-batch variances of clipped counts, standardised by a loess
/// fit of variance on mean, ranked within each batch.
fn seurat_v3(x: &Csr, groups: &Groups, p: &HvgParams) -> Result<Found> {
    let g = x.n_cols;
    let all: Vec<usize> = (0..g).collect();
    let total = group_moments(x, &Groups::single(x.n_rows()), Transform::Identity);
    let (means_all, vars_all) = mean_var(&total[0], &all);
    let moments = group_moments(x, groups, Transform::Identity);
    let norm_vars: Vec<Vec<f64>> = moments
        .par_iter()
        .zip(groups.rows.par_iter())
        .map(|(m, rows)| -> Result<Vec<f64>> {
            let (mean, var) = mean_var(m, &all);
            let nc: Vec<usize> = (0..g).filter(|&c| var[c] > 0.0).collect();
            let lx: Vec<f64> = nc.iter().map(|&c| mean[c].log10()).collect();
            let ly: Vec<f64> = nc.iter().map(|&c| var[c].log10()).collect();
            let fitted = loess::fit(&lx, &ly, p.span)?;
            let mut est = vec![0f64; g];
            for (k, &c) in nc.iter().enumerate() {
                est[c] = fitted[k];
            }
            let reg_std: Vec<f64> = est.iter().map(|&e| 10f64.powf(e).sqrt()).collect();
            let n = rows.len() as f64;
            let vmax = n.sqrt();
            let clip: Vec<f64> = (0..g).map(|c| reg_std[c] * vmax + mean[c]).collect();
            let (mut sq, mut s) = (vec![0f64; g], vec![0f64; g]);
            for &r in rows {
                let (idx, val) = x.row(r);
                for (&c, &v) in idx.iter().zip(val) {
                    let c = c as usize;
                    let e = (v as f64).min(clip[c]);
                    sq[c] += e * e;
                    s[c] += e;
                }
            }
            Ok((0..g)
                .map(|c| {
                    (1.0 / ((n - 1.0) * reg_std[c] * reg_std[c]))
                        * ((n * mean[c] * mean[c]) + sq[c] - 2.0 * s[c] * mean[c])
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    let nb = norm_vars.len();
    let n_top = p.n_top_genes;
    // rank within each batch (0 = most variable; ties by gene position)
    let mut ranks = vec![vec![f64::NAN; nb]; g];
    let mut nbatches = vec![0u32; g];
    for (b, nv) in norm_vars.iter().enumerate() {
        let mut o: Vec<usize> = (0..g).collect();
        o.sort_by(|&a, &c| desc_nan_last(nv[a], nv[c]).then(a.cmp(&c)));
        for (r, &c) in o.iter().enumerate() {
            if r < n_top {
                ranks[c][b] = r as f64;
                nbatches[c] += 1;
            }
        }
    }
    let median_rank: Vec<f64> = ranks
        .iter()
        .map(|r| np_median(r.iter().cloned().filter(|v| !v.is_nan()).collect()))
        .collect();
    let var_norm: Vec<f64> = (0..g)
        .map(|c| norm_vars.iter().map(|v| v[c]).sum::<f64>() / nb as f64)
        .collect();
    let mut order: Vec<usize> = (0..g).collect();
    order.sort_by(|&a, &b| {
        asc_nan_last(median_rank[a], median_rank[b])
            .then(nbatches[b].cmp(&nbatches[a]))
            .then(a.cmp(&b))
    });
    Ok(Found {
        stats: [
            ("means", means_all),
            ("variances", vars_all),
            ("variances_norm", var_norm),
        ],
        mask: top_mask(&order, n_top, g),
        nbatches,
        nb,
        rank: median_rank,
        order,
    })
}
