#!/usr/bin/env python
"""Bench peer for LATE's training epoch: LATE (Badsha et al. 2020) transcribed to PyTorch from
the paper's description, at the shape cellweave-impute trains (bench/train.sh times both).

LATE's own code is TensorFlow 1.x, which does not run here; this transcription is what its
framework would do: dense tensors, autograd, torch's Adam.

  network  G -> 800 -> 400 -> 800 -> G; every layer is dropout on its input (keep 0.8 on the
           input layer, 0.5 on the others), affine, ReLU (the output layer too)
  loss     mean over all entries of (X - h)^2 * sign(X): zero entries contribute nothing
  training Adam (lr 3e-4), minibatches of 256 over the training cells (shuffled each epoch),
           then the validation loss on the held-out cells (no dropout)
  data     random log1p-scaled counts, a fraction --density of the entries non-zero

usage: torchpy bench/late_epoch_torch.py [--threads 1] [--epochs 3] [--cells 10000]
       [--genes 949] [--density 0.098] [--val 0.15]
prints one JSON line: seconds per epoch (wall, median and mean over the epochs after the
first) and CPU seconds per epoch (process, all threads).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


class Late(nn.Module):
    def __init__(self, genes, hidden=(800, 400, 800), keep_input=0.8, keep_hidden=0.5):
        super().__init__()
        dims = [genes, *hidden, genes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.drops = nn.ModuleList(
            nn.Dropout(1 - (keep_input if i == 0 else keep_hidden)) for i in range(len(self.layers))
        )

    def forward(self, x):
        h = x
        for drop, layer in zip(self.drops, self.layers):
            h = torch.relu(layer(drop(h)))
        return h


def masked_mse(x, h):
    return ((x - h) ** 2 * torch.sign(x)).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cells", type=int, default=10000)
    ap.add_argument("--genes", type=int, default=949)
    ap.add_argument("--density", type=float, default=0.098)
    ap.add_argument("--val", type=float, default=0.15)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    counts = torch.poisson(torch.full((a.cells, a.genes), 3.0)) + 1.0
    x_all = torch.log1p(counts) * (torch.rand(a.cells, a.genes) < a.density)
    n_val = round(a.val * a.cells)
    perm = torch.randperm(a.cells)
    x_val, x_train = x_all[perm[:n_val]], x_all[perm[n_val:]]
    model = Late(a.genes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    walls, cpus, losses = [], [], []
    for _ in range(a.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(x_train), a.batch):
            xb = x_train[order[i:i + a.batch]]
            loss = masked_mse(xb, model(xb))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(masked_mse(x_val, model(x_val)))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        losses.append(val)
    timed = walls[1:] or walls
    print(json.dumps({
        "torch": torch.__version__, "threads": a.threads, "cells": a.cells, "genes": a.genes,
        "train_cells": len(x_train), "epochs": a.epochs,
        "median_s_per_epoch": round(statistics.median(timed), 4),
        "mean_s_per_epoch": round(statistics.mean(timed), 4),
        "cpu_s_per_epoch": round(statistics.mean(cpus[1:] or cpus), 4),
        "val_losses": [round(v, 5) for v in losses],
    }))


if __name__ == "__main__":
    main()
