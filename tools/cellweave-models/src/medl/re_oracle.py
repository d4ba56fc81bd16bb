"""NumPy transcription of MEDL's random-effects block and its KL term (the test oracle of
tools/cellweave-models/src/medl/tests.rs). Reads a JSON case on stdin, writes JSON.

  BN(h)      = (h - mean_rows(h)) / sqrt(var_rows(h) + eps)   (biased variance)
  W          = mu + softplus(rho) * eps_noise
  out        = BN(h) * (1 + Z W_gamma) + Z W_beta
  KL(q || p) = sum log(s_p / s) + (s^2 + mu^2) / (2 s_p^2) - 1/2,  s = softplus(rho)
"""
import json
import sys

import numpy as np


def softplus(x):
    return np.log1p(np.exp(x))


def main():
    c = json.load(sys.stdin)
    a = lambda k: np.asarray(c[k], dtype=np.float64)
    h, z = a("h"), a("z")
    mean = h.mean(axis=0, keepdims=True)
    var = ((h - mean) ** 2).mean(axis=0, keepdims=True)
    bn = (h - mean) / np.sqrt(var + c["bn_eps"])
    wg = a("mu_gamma") + softplus(a("rho_gamma")) * a("eps_gamma")
    wb = a("mu_beta") + softplus(a("rho_beta")) * a("eps_beta")
    out = bn * (1.0 + z @ wg) + z @ wb
    # Evaluation: running statistics and posterior means.
    bn_eval = (h - a("running_mean")) / np.sqrt(a("running_var") + c["bn_eps"])
    out_eval = bn_eval * (1.0 + z @ a("mu_gamma")) + z @ a("mu_beta")
    sp = c["prior_sd"]
    kl = 0.0
    for m, r in (("mu_gamma", "rho_gamma"), ("mu_beta", "rho_beta")):
        s = softplus(a(r))
        kl += float(np.sum(np.log(sp / s) + (s**2 + a(m) ** 2) / (2 * sp**2) - 0.5))
    x = a("selu_in")
    selu = 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1))
    json.dump(
        {
            "out": out.tolist(),
            "out_eval": out_eval.tolist(),
            "kl": kl,
            "selu": selu.tolist(),
        },
        sys.stdout,
    )


main()
