#!/usr/bin/env python
"""Stress cases of bench/robustness.sh, cut from a counts .h5ad (X or layers['counts']).

usage: robustness_cases.py CASE IN.h5ad OUT_DIR SEED
Writes OUT_DIR/counts.h5ad (X = counts; obs batch, cell_type) for cellweave-import and
OUT_DIR/ic/ (matrix.mtx cells x genes, genes.tsv, obs.tsv) for the reference stack's embed.py.
Cases (the data set is the caller's choice):
  sub60     at most 60 cells per batch (types in their proportions)
  split     every batch cut into parts of about 70 cells (at most 320 cells per batch first)
  missing   one cell type removed from each batch in turn (type i from batch i, cycling), at
            most 90 cells per (batch, type)
  skew      in batch i, type i (cycling) keeps up to 100 cells and every other type 10
  domains   each batch (technology) cut into 3 parts of at most 70 cells with proportions
            skewed 4:1 differently per part: the parts of one technology sit far from the other's
  asis      unchanged (simulations)
The subsampling seed is SEED (the same cells for every method of a run).
"""
import os
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp


def counts(a):
    x = a.layers["counts"] if "counts" in a.layers else a.X
    return sp.csr_matrix(x, dtype=np.float32)


def take(rng, idx, n):
    idx = np.asarray(idx)
    return idx if len(idx) <= n else np.sort(rng.choice(idx, n, replace=False))


def build(case, obs, rng):
    """Rows to keep and their (possibly new) batch names."""
    batch = obs["batch"].astype(str).values
    ctype = obs["cell_type"].astype(str).values
    batches = sorted(set(batch))
    types = sorted(set(ctype))
    rows, names = [], []
    for bi, b in enumerate(batches):
        ib = np.where(batch == b)[0]
        if case == "asis":
            keep, new = ib, [b] * len(ib)
        elif case == "sub60":
            keep = take(rng, ib, 60)
            new = [b] * len(keep)
        elif case == "split":
            keep = rng.permutation(take(rng, ib, 320))
            parts = max(1, round(len(keep) / 70))
            new = [f"{b}_p{i % parts}" for i in range(len(keep))]
        elif case == "missing":
            gone = types[bi % len(types)]
            keep = np.concatenate([take(rng, ib[ctype[ib] == t], 90) for t in types if t != gone])
            new = [b] * len(keep)
        elif case == "skew":
            big = types[bi % len(types)]
            keep = np.concatenate([take(rng, ib[ctype[ib] == t], 100 if t == big else 10) for t in types])
            new = [b] * len(keep)
        elif case == "domains":
            keep, new = [], []
            for p in range(3):
                big = types[(bi + p) % len(types)]
                part = np.concatenate(
                    [take(rng, ib[ctype[ib] == t], 40 if t == big else 10) for t in types])
                keep.append(part)
                new += [f"{b}_d{p}"] * len(part)
                ib = np.setdiff1d(ib, part)
            keep = np.concatenate(keep)
        else:
            sys.exit(f"robustness_cases.py: unknown case '{case}'")
        rows.append(np.asarray(keep))
        names += list(new)
    return np.concatenate(rows), np.array(names)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    case, src, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    a = ad.read_h5ad(src)
    rng = np.random.default_rng(seed)
    rows, names = build(case, a.obs, rng)
    x = counts(a)[rows]
    obs = pd.DataFrame({"batch": names, "cell_type": a.obs["cell_type"].astype(str).values[rows]},
                       index=a.obs_names[rows].astype(str))
    genes = np.asarray(a.var_names).astype(str)
    nz = np.asarray((x > 0).sum(axis=0)).ravel() > 0
    x, genes = x[:, nz], genes[nz]
    os.makedirs(os.path.join(out, "ic"), exist_ok=True)
    for c in ("batch", "cell_type"):
        obs[c] = obs[c].astype("category")
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(genes))).write_h5ad(
        os.path.join(out, "counts.h5ad"))
    scipy.io.mmwrite(os.path.join(out, "ic", "matrix.mtx"), x.astype(np.int64), field="integer")
    with open(os.path.join(out, "ic", "genes.tsv"), "w") as f:
        f.write("".join(g + "\n" for g in genes))
    o = obs.copy()
    o.index.name = "cell_id"
    o.to_csv(os.path.join(out, "ic", "obs.tsv"), sep="\t")
    o.to_csv(os.path.join(out, "obs.tsv"), sep="\t")
    per = o.groupby("batch", observed=True).size()
    print(f"{case}: {len(o)} cells, {x.shape[1]} genes, {len(per)} batches "
          f"({per.min()}-{per.max()} cells), {o['cell_type'].nunique()} types")


if __name__ == "__main__":
    main()
