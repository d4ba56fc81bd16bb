"""Seconds per epoch of the reference inVAE (PyPI inVAE 0.1.0, FinVAE, PyTorch) on one thread,
for bench/invae.sh MODE=speed. Not part of the product.

usage: torchpy invae_torch.py DATA.h5ad EPOCHS [inv_covariate|-] [spur_covariate]

DATA.h5ad: raw counts in X (cellweave-export of the filtered counts with --hvg), var
`highly_variable` marks the genes the model sees. The network is the package's FinVAE with
n_layers=2 (one hidden encoder layer, two decoder layers), the architecture of
`cellweave-train --model invae --encoder-layers 1`, batch 256, Adam lr 1e-3, weight decay 1e-4.
Prints one line: `reference_seconds_per_epoch <s>` (the mean over epochs 2..EPOCHS). Each epoch
is one `model.train(n_epochs=1)` call so that it can be timed on its own; the package then makes
a new Adam per call (its moments restart), which changes the losses, not the cost of an epoch.
"""
import sys
import time

import anndata
import numpy as np
import torch

torch.set_num_threads(1)
torch.manual_seed(0)
from inVAE import FinVAE  # noqa: E402

path, epochs = sys.argv[1], int(sys.argv[2])
inv = [] if len(sys.argv) < 4 or sys.argv[3] == "-" else [sys.argv[3]]
spur = [sys.argv[4]] if len(sys.argv) > 4 else ["batch"]
a = anndata.read_h5ad(path)
if "highly_variable" in a.var:
    a = a[:, a.var["highly_variable"].to_numpy()].copy()
x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
a.X = x.astype(np.float32)
for c in inv + spur:
    a.obs[c] = a.obs[c].astype(str).astype("category")
model = FinVAE(
    adata=a,
    layer=None,
    inv_covar_keys={"cont": [], "cat": inv},
    spur_covar_keys={"cont": [], "cat": spur},
    latent_dim_inv=9,
    latent_dim_spur=1,
    n_layers=2,
    hidden_dim=128,
    device="cpu",
    batch_size=256,
)
times = []
for e in range(epochs):
    t = time.perf_counter()
    model.train(n_epochs=1, lr_train=1e-3, weight_decay=1e-4, print_every_n_epochs=1)
    times.append(time.perf_counter() - t)
print(f"cells {a.n_obs}, genes {a.n_vars}, per-epoch seconds {['%.3f' % s for s in times]}", file=sys.stderr)
print(f"reference_seconds_per_epoch {np.mean(times[1:]):.4f}")
