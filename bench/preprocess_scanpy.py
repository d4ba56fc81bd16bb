#!/usr/bin/env python
"""scanpy side of bench/preprocess.sh: read_h5ad + filter_genes(min_cells=3) +
normalize_total(1e4) + log1p + highly_variable_genes(seurat, 2000, batch_key='batch'),
in one process, as CLAIRE's preprocessing. Prints one JSON line of wall seconds per step."""
import json
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402
import anndata as ad  # noqa: E402
import scipy.sparse as sp  # noqa: E402

t = {"import_python_packages": time.perf_counter() - t0}


def step(name, f):
    s = time.perf_counter()
    f()
    t[name] = time.perf_counter() - s


box = {}
step("read_h5ad", lambda: box.setdefault("a", ad.read_h5ad(sys.argv[1])))
a = box["a"]
if not (sp.issparse(a.X) and a.X.dtype == np.float32):
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
step("filter_genes", lambda: sc.pp.filter_genes(a, min_cells=3))
step("normalize_total", lambda: sc.pp.normalize_total(a, target_sum=1e4))
step("log1p", lambda: sc.pp.log1p(a))
step("highly_variable_genes", lambda: sc.pp.highly_variable_genes(
    a, flavor="seurat", n_top_genes=2000, batch_key="batch", subset=True))
t["shape_out"] = list(a.shape)
print(json.dumps(t))
