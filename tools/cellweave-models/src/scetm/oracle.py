"""NumPy transcription of one scETM 0.5.0 training step (the oracle of scetm/tests.rs).

Written from scETM's formulas (Zhao et al. 2021; scETM 0.5.0's model and trainer), in
float64, independently of cellweave's candle code:
  encoder  h = BN(relu(x W1^T + b1)) * mask   (training-mode BatchNorm, eps 1e-5)
           mu = h Wmu^T + bmu,  ls = clip(h Wls^T + bls, -10, 10)
  sample   delta = mu + exp(ls) * eps,  theta = softmax(delta)
  decoder  log p = log_softmax(theta (alpha rho) + lambda[batch])
  loss     mean_cells(-sum_g x_g log p_g) + w * mean_cells(-1/2 sum(1 + 2 ls - mu^2 - exp(2 ls)))
x is counts / library size. Gradients by central finite differences of that loss; the step
clips the gradient norm to 50 (torch's clip_grad_norm_) and applies Adam's first update.

usage: python oracle.py FIXTURE.json OUT.json
"""
import json
import sys

import numpy as np

NAMES = ["q_delta.0.weight", "q_delta.0.bias", "q_delta.2.weight", "q_delta.2.bias",
         "mu_q_delta.weight", "mu_q_delta.bias", "logsigma_q_delta.weight",
         "logsigma_q_delta.bias", "alpha", "rho", "batch_bias"]


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def loss_parts(p, f):
    x, mask, eps = f["x"], f["mask"], f["eps"]
    h = np.maximum(x @ p["q_delta.0.weight"].T + p["q_delta.0.bias"], 0.0)
    m = h.mean(axis=0)
    v = ((h - m) ** 2).mean(axis=0)
    h = (h - m) / np.sqrt(v + 1e-5) * p["q_delta.2.weight"] + p["q_delta.2.bias"]
    h = h * mask
    mu = h @ p["mu_q_delta.weight"].T + p["mu_q_delta.bias"]
    ls = np.clip(h @ p["logsigma_q_delta.weight"].T + p["logsigma_q_delta.bias"], -10, 10)
    delta = mu + np.exp(ls) * eps
    theta = np.exp(log_softmax(delta))
    logit = theta @ (p["alpha"] @ p["rho"])
    if "batch_bias" in p:
        logit = logit + p["batch_bias"][f["batch"]]
    nll = -(log_softmax(logit) * x).sum(axis=1).mean()
    kl = (-0.5 * (1 + 2 * ls - mu ** 2 - np.exp(2 * ls)).sum(axis=1)).mean()
    return nll + f["kl_weight"] * kl, nll, kl


def main():
    fx = json.load(open(sys.argv[1]))
    arr = lambda a: np.array(a["data"], dtype=np.float64).reshape(a["shape"])
    p = {k: arr(v) for k, v in fx["params"].items()}
    f = {
        "x": arr(fx["x"]),
        "mask": arr(fx["mask"]),
        "eps": arr(fx["eps"]),
        "batch": np.array(fx["batch"], dtype=np.int64),
        "kl_weight": fx["kl_weight"],
    }
    loss, nll, kl = loss_parts(p, f)
    h = 1e-6
    grads = {}
    for name in [n for n in NAMES if n in p]:
        g = np.zeros_like(p[name])
        flat = p[name].reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = loss_parts(p, f)[0]
            flat[i] = old - h
            down = loss_parts(p, f)[0]
            flat[i] = old
            g.reshape(-1)[i] = (up - down) / (2 * h)
        grads[name] = g
    norm = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    coef = min(1.0, 50.0 / (norm + 1e-6))
    lr, b1, b2, e = fx["lr"], 0.9, 0.999, 1e-8
    stepped = {}
    for name, g in grads.items():
        g = g * coef
        m = (1 - b1) * g
        v = (1 - b2) * g * g
        stepped[name] = p[name] - lr / (1 - b1) * m / (np.sqrt(v) / np.sqrt(1 - b2) + e)
    out = {
        "loss": loss, "nll": nll, "kl": kl, "norm": norm,
        "grads": {k: g.reshape(-1).tolist() for k, g in grads.items()},
        "stepped": {k: v.reshape(-1).tolist() for k, v in stepped.items()},
    }
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
