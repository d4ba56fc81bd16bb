"""NumPy transcription of deepMNN's loss (the oracle of deepmnn/tests.rs).

Written from the paper's formulas (Zou et al. 2021) and its defaults, in float64,
independently of cellweave's candle code:
  block    y = PReLU(BN(PReLU(BN(h W1^T + b1)) W2^T + b2)),  h <- h + y
           (training-mode BatchNorm: batch mean, biased variance, eps 1e-5, affine;
            PReLU(z) = max(z, 0) + a min(z, 0))
  loss     sum_pairs mean_k |(f(x_a) - f(x_b)) P| + beta sum_cells mean_g |f(x) - x|
           rows 0..m of x are the first cells, rows m..2m their partners, P is g x k.
Gradients by central finite differences of that loss.

usage: python oracle.py FIXTURE.json OUT.json
"""
import json
import sys

import numpy as np

PARTS = ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight",
         "3.weight", "3.bias", "4.weight", "4.bias", "5.weight"]


def bn(z, w, b):
    m = z.mean(axis=0)
    v = ((z - m) ** 2).mean(axis=0)
    return (z - m) / np.sqrt(v + 1e-5) * w + b


def prelu(z, a):
    return np.maximum(z, 0.0) + a * np.minimum(z, 0.0)


def net(p, x, blocks):
    h = x
    for b in range(blocks):
        q = lambda s: p["model.%d.block.%s" % (b, s)]
        y = prelu(bn(h @ q("0.weight").T + q("0.bias"), q("1.weight"), q("1.bias")), q("2.weight"))
        y = prelu(bn(y @ q("3.weight").T + q("3.bias"), q("4.weight"), q("4.bias")), q("5.weight"))
        h = h + y
    return h


def loss_parts(p, f):
    x, pcs, beta = f["x"], f["pcs"], f["beta"]
    m = x.shape[0] // 2
    out = net(p, x, f["blocks"])
    proj = out @ pcs
    pair = np.abs(proj[:m] - proj[m:]).mean(axis=1).sum()
    identity = np.abs(out - x).mean(axis=1).sum()
    return pair + beta * identity, pair, identity


def main():
    raw = json.load(open(sys.argv[1]))
    arr = lambda a: np.array(a["data"], dtype=np.float64).reshape(a["shape"])
    p = {k: arr(v) for k, v in raw["params"].items()}
    f = {"x": arr(raw["x"]), "pcs": arr(raw["pcs"]), "beta": raw["beta"], "blocks": raw["blocks"]}
    loss, pair, identity = loss_parts(p, f)
    grads = {}
    h = 1e-6
    for name in raw["check"]:
        g = np.zeros(len(raw["check"][name]))
        for n, i in enumerate(raw["check"][name]):
            flat = p[name].reshape(-1)
            old = flat[i]
            flat[i] = old + h
            up = loss_parts(p, f)[0]
            flat[i] = old - h
            down = loss_parts(p, f)[0]
            flat[i] = old
            g[n] = (up - down) / (2 * h)
        grads[name] = g.tolist()
    json.dump({"loss": loss, "pair": pair, "identity": identity, "grads": grads},
              open(sys.argv[2], "w"))


main()
