"""NumPy transcription of deepMNN's loss (the oracle of deepmnn/tests.rs).

Written from the paper's formulas (Zou et al. 2021) and its defaults, in float64,
independently of cellweave's candle code:
  block    y = PReLU(BN(PReLU(BN(h W1^T + b1)) W2^T + b2)),  h <- h + y
           (training-mode BatchNorm: batch mean, biased variance, eps 1e-5, affine;
            PReLU(z) = max(z, 0) + a min(z, 0))
  loss     alpha sum_pairs mean_k |h(f(x_a)) - h(f(x_b))| + beta sum_cells mean_g |f(x) - x|
           rows 0..m of x are the first cells, rows m..2m their partners;
           h(y) = y P (deepMNN: P is g x k, alpha = 1), or, for the batch-corrected scETM
           (the fixture's "encoder"), the frozen encoder read on the input scale:
           h(y) = ReLU((y * sd + mean) W^T + b) (the scaling undone gene by gene, then the
           encoder as it was pre-trained; no folding of the two)
  autoencoder (the fixture's "ae": the pre-training loss)
           mean over every value of (ReLU(ReLU(x W1^T + b1) W2^T + b2) - x)^2
Gradients by central finite differences of those losses.

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


def relu(z):
    return np.maximum(z, 0.0)


def pair_space(f, y):
    if f["encoder"] is None:
        return y @ f["pcs"]
    e = f["encoder"]
    return relu((y * e["sd"] + e["mean"]) @ e["w"].T + e["b"])


def loss_parts(p, f):
    x, alpha, beta = f["x"], f["alpha"], f["beta"]
    m = x.shape[0] // 2
    out = net(p, x, f["blocks"])
    h = pair_space(f, out)
    pair = np.abs(h[:m] - h[m:]).mean(axis=1).sum()
    identity = np.abs(out - x).mean(axis=1).sum()
    return alpha * pair + beta * identity, pair, identity


def ae_mse(q, x):
    code = relu(x @ q["pair_autoencoder.encoder.weight"].T + q["pair_autoencoder.encoder.bias"])
    rec = relu(code @ q["pair_autoencoder.decoder.weight"].T + q["pair_autoencoder.decoder.bias"])
    return ((rec - x) ** 2).mean()


def fd(params, names, loss):
    grads = {}
    h = 1e-6
    for name in names:
        g = np.zeros(len(names[name]))
        for n, i in enumerate(names[name]):
            flat = params[name].reshape(-1)
            old = flat[i]
            flat[i] = old + h
            up = loss()
            flat[i] = old - h
            down = loss()
            flat[i] = old
            g[n] = (up - down) / (2 * h)
        grads[name] = g.tolist()
    return grads


def main():
    raw = json.load(open(sys.argv[1]))
    arr = lambda a: np.array(a["data"], dtype=np.float64).reshape(a["shape"])
    p = {k: arr(v) for k, v in raw["params"].items()}
    enc = raw.get("encoder")
    f = {"x": arr(raw["x"]), "pcs": arr(raw["pcs"]) if "pcs" in raw else None,
         "alpha": raw["alpha"], "beta": raw["beta"], "blocks": raw["blocks"],
         "encoder": None if enc is None else {k: arr(v) for k, v in enc.items()}}
    loss, pair, identity = loss_parts(p, f)
    out = {"loss": loss, "pair": pair, "identity": identity,
           "grads": fd(p, raw["check"], lambda: loss_parts(p, f)[0])}
    if "ae" in raw:
        q = {k: arr(v) for k, v in raw["ae"]["params"].items()}
        xa = arr(raw["ae"]["x"])
        out["ae_mse"] = ae_mse(q, xa)
        out["ae_grads"] = fd(q, raw["ae"]["check"], lambda: ae_mse(q, xa))
    json.dump(out, open(sys.argv[2], "w"))


main()
