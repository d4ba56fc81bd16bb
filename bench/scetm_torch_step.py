"""One scETM training step, cellweave vs PyPI scETM 0.5.0 (PyTorch), from the same weights and
minibatch, with the same dropout mask and reparameterisation noise. Run by
bench/scetm_torch_step.sh; not part of the product (no torch in CI: the CI test of the step is
the NumPy transcription of tools/cellweave-models/src/scetm/oracle.py).

usage: torchpy scetm_torch_step.py COUNTS.h5ad HVG.h5ad MODEL_DIR STEP_BIN WORK [KL_WEIGHT]

COUNTS.h5ad: raw counts (cellweave-export of the filtered table); HVG.h5ad: the selected genes
(their var_names, in the model's order); MODEL_DIR: a cellweave-train --model scetm directory
whose model.safetensors holds the weights under scETM's torch names (`rho` is scETM's
`rho_trainable_emb.trainable`); STEP_BIN: the scetm_step example of cellweave-models.

Both sides start from the weights of MODEL_DIR and take one step on every cell of COUNTS (one
minibatch, in file order, the batch codes of the model card's order):
- scETM: `scETM(n_genes, n_batches)` with every default (K 50, L 400, hidden 128, BatchNorm,
  dropout 0.1, batch bias), its state dict loaded from the file (strict), the minibatch as its
  CellSampler yields it (`cells`, `library_size` = the row sums, `batch_indices`), an Adam of
  lr 5e-3 made as UnsupervisedTrainer makes it, then scETM's own `model.train_step` (forward,
  backward, clip_grad_norm_ 50, optimizer.step). The dropout layer `q_delta[3]` is replaced by
  a module multiplying by the given mask, and `torch.distributions.normal._standard_normal`
  (what Normal.rsample draws eps from) returns the given noise; nothing else is changed.
- cellweave: STEP_BIN on the same counts, batch codes, mask and noise.
The mask (0 or 1/(1 - 0.1) per hidden unit and cell, float32) and the noise (standard normal,
float32) come from NumPy's default_rng(0). Both sides compute in float32 on the CPU.

Checks (each a row of the table; exit status 1 when one fails):
- loss, NLL, KL, gradient norm before clipping: |a - b| <= 1e-5 (1 + |b|);
- each parameter's (clipped) gradient: max |a - b| <= 1e-4 x max |b| (deviation relative to
  the parameter's largest gradient; float32 sums in another order differ at ~1e-6);
- each parameter after Adam's first step, every element: |a - b| <= 2e-6 + lr |u(g_a) - u(g_b)|,
  u(g) = g / (|g| + 1e-8), the first step's direction from each side's own gradient: Adam's
  first step is -lr u(g) on both sides, so where |g| is at the float32 noise of the gradient
  (a gradient that BatchNorm cancels, a gene without counts) the two steps may differ by up to
  2 lr; the deviation shown is max(|a - b| - lr |u(g_a) - u(g_b)|), the note gives max |a - b|
  over all elements and over those whose gradient is above 1e-3 of the parameter's largest;
- the BatchNorm running mean and variance after the step: max |a - b| <= 1e-5 (1 + max |b|).
"""
import json
import struct
import subprocess
import sys
from importlib.metadata import version

import anndata
import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

torch.set_num_threads(1)
import torch.distributions.normal as tdn  # noqa: E402
from scETM import scETM  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "U32": np.uint32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[h["dtype"]]).reshape(h["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class GivenMask(nn.Module):
    """Dropout with a given mask (multipliers), in place of nn.Dropout."""

    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask


def card_batches(path):
    """The `batches` list of a model card (card.yaml: a block list of plain or quoted names)."""
    out, inside = [], False
    for line in open(path):
        if line.startswith("batches:"):
            inside = True
            if line.split(":", 1)[1].strip() == "[]":
                return out
            continue
        if inside:
            if line.startswith("- ") or line.startswith("  - "):
                out.append(json.loads(v) if (v := line.split("- ", 1)[1].strip()).startswith('"') else v.strip("'"))
            else:
                break
    return out


def torch_name(ours):
    return "rho_trainable_emb.trainable" if ours == "rho" else ours


def main():
    counts_path, hvg_path, model_dir, step_bin, work = sys.argv[1:6]
    kl_weight = float(sys.argv[6]) if len(sys.argv) > 6 else 0.5
    lr = 5e-3
    a = anndata.read_h5ad(counts_path)
    a = a[:, anndata.read_h5ad(hvg_path).var_names].copy()
    x = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    x = x.astype(np.float32)
    codes = {b: i for i, b in enumerate(card_batches(f"{model_dir}/card.yaml"))}
    batch = np.array([codes[b] for b in a.obs["batch"].astype(str)], dtype=np.uint32)
    weights = read_safetensors(f"{model_dir}/model.safetensors")
    n, g = x.shape
    (h, _), (k, emb_dim) = weights["q_delta.0.weight"].shape, weights["alpha"].shape
    rng = np.random.default_rng(0)
    keep = np.float32(1.0) / np.float32(1.0 - 0.1)
    mask = np.where(rng.random((n, h)) >= 0.1, keep, np.float32(0.0)).astype(np.float32)
    eps = rng.standard_normal((n, k)).astype(np.float32)
    print(f"data: {n} cells x {g} genes ({len(codes)} batches), one minibatch of every cell; "
          f"model K={k}, L={emb_dim}, hidden {h}; KL weight {kl_weight}, lr {lr}; "
          f"scETM {version('scETM')} on torch {torch.__version__}")

    # cellweave's step.
    write_safetensors(f"{work}/step_in.safetensors", {
        "counts": x, "batch": batch, "mask": mask, "eps": eps,
        "kl_weight": np.array([kl_weight]), "lr": np.array([lr]),
    })
    subprocess.run([step_bin, model_dir, f"{work}/step_in.safetensors", f"{work}/step_out.safetensors"],
                   check=True)
    ours = read_safetensors(f"{work}/step_out.safetensors")

    # scETM's step.
    model = scETM(g, len(codes), device=torch.device("cpu"))
    state = model.state_dict()
    loaded = {torch_name(kk): torch.from_numpy(v) for kk, v in weights.items()}
    missing = set(state) - set(loaded) - {"q_delta.2.num_batches_tracked"}
    extra = set(loaded) - set(state)
    if missing or extra:
        sys.exit(f"weights do not match scETM's parameters: missing {sorted(missing)}, extra {sorted(extra)}")
    loaded["q_delta.2.num_batches_tracked"] = state["q_delta.2.num_batches_tracked"]
    model.load_state_dict(loaded, strict=True)
    assert isinstance(model.q_delta[3], nn.Dropout), model.q_delta
    model.q_delta[3] = GivenMask(torch.from_numpy(mask))
    given_eps = torch.from_numpy(eps)

    def standard_normal(shape, dtype, device):
        assert tuple(shape) == tuple(given_eps.shape), (shape, given_eps.shape)
        return given_eps.to(dtype=dtype, device=device)

    tdn._standard_normal = standard_normal
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data_dict = {
        "cells": torch.from_numpy(x),
        "library_size": torch.from_numpy(x.sum(1, keepdims=True)),
        "batch_indices": torch.from_numpy(batch.astype(np.int64)),
    }
    record = model.train_step(optimizer, data_dict, {"kl_weight": kl_weight})
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    rows, failed = [], False

    def check(what, dev, tol, note=""):
        nonlocal failed
        ok = dev <= tol
        failed |= not ok
        rows.append((what, dev, tol, "ok" if ok else "FAIL", note))

    for name, want in [("loss", record["loss"]), ("nll", record["nll"]), ("kl", record["kl_delta"]),
                       ("norm", float(record["max_norm"]))]:
        got = float(ours[name][0])
        check(f"{name} ({want:.6g})", abs(got - want) / (1 + abs(want)), 1e-5, "|a-b| / (1+|b|)")
    names = [nm for nm in ["q_delta.0.weight", "q_delta.0.bias", "q_delta.2.weight", "q_delta.2.bias",
                           "mu_q_delta.weight", "mu_q_delta.bias", "logsigma_q_delta.weight",
                           "logsigma_q_delta.bias", "alpha", "rho", "batch_bias"]
             if f"grad.{nm}" in ours]
    if len(names) != len(params):
        sys.exit(f"scETM has {len(params)} parameters, cellweave {len(names)}")
    for nm in names:
        p = params[torch_name(nm)]
        want = p.grad.detach().numpy().astype(np.float64)
        got = ours[f"grad.{nm}"].astype(np.float64)
        scale = np.abs(want).max()
        dev = np.abs(got - want).max() / scale if scale > 0 else np.abs(got).max()
        check(f"grad {nm} {list(want.shape)}", dev, 1e-4, f"max|a-b| / max|b|, max|b| = {scale:.3g}")
    for nm in names:
        p = params[torch_name(nm)]
        want = p.detach().numpy().astype(np.float64)
        got = ours[f"param.{nm}"].astype(np.float64)
        g_ref = p.grad.detach().numpy().astype(np.float64)
        g_ours = ours[f"grad.{nm}"].astype(np.float64)
        # Adam's first step is -lr g / (|g| + 1e-8) (m and v bias-corrected to g and g^2).
        unit = lambda gr: gr / (np.abs(gr) + 1e-8)
        explained = lr * np.abs(unit(g_ours) - unit(g_ref))
        d = np.abs(got - want)
        clear = np.abs(g_ref) > 1e-3 * np.abs(g_ref).max()
        note = f"max |a-b| {d.max():.2g}"
        if (~clear).any():
            note += (f"; {clear.sum()} of {d.size} elements with |g| > 1e-3 max|g|: "
                     f"max |a-b| {d[clear].max():.2g}")
        check(f"stepped {nm}", (d - explained).max(), 2e-6, note)
    for nm in ["running_mean", "running_var"]:
        want = buffers[f"q_delta.2.{nm}"].numpy().astype(np.float64)
        got = ours[f"param.q_delta.2.{nm}"].astype(np.float64)
        check(f"BatchNorm {nm}", np.abs(got - want).max() / (1 + np.abs(want).max()), 1e-5,
              "max|a-b| / (1+max|b|)")

    width = max(len(r[0]) for r in rows)
    print(f"{'quantity':{width}}  {'deviation':>10}  {'tolerance':>9}  result  note")
    for what, dev, tol, res, note in rows:
        print(f"{what:{width}}  {dev:10.2e}  {tol:9.0e}  {res:6}  {note}")
    print("every check passed" if not failed else "SOME CHECKS FAILED")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
