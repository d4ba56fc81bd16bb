"""NumPy transcription of the reference inVAE's training loss (PyPI `inVAE` 0.1.0,
`FinVAEmodule.elbo` with the `FinVAE` defaults: fix_mean_prior=True, fix_var_prior=False,
decoder_dist='nb', elbo_version='sample', batch_norm=True), in float64, for one minibatch.

The module's randomness (dropout masks, the reparameterisation noise) comes from the input,
so the loss is a deterministic function of the weights. Usage:

    python invae_elbo.py case.json     # prints the loss (the negative ELBO)

case.json: {"n_layers_encoder": L, "beta": b, "x": cells x genes counts, "inv": one-hots or
null, "spur": one-hots or null, "eps": cells x latent, "latent_inv": d, "inject": bool
(optional: `inject_covar_in_latent=True`, the spurious one-hots go to the decoder and there
is no spurious prior), "learned_mean": bool (optional: `fix_mean_prior=False`, the prior's
mean and log-variance are linear heads on one shared layer of the covariates), "masks": {name: mask} or null, "params": {cellweave name: nested
list}}.
"""
import json
import sys

import numpy as np
from scipy.special import gammaln

case = json.load(open(sys.argv[1]))
P = {k: np.asarray(v, dtype=np.float64) for k, v in case["params"].items()}
masks = case["masks"]


# ---- inVAE.utils._networks.MLP (batch_norm=True, BatchNorm1d(momentum=0.01, eps=0.001),
# training mode: batch statistics with the biased variance; dropout = the given mask)
class MLP:
    def __init__(self, names, end_with_act):
        # names: cellweave's name of each of the MLP's layers, in order
        self.names = names
        self.n_layers = len(names)
        self.end_with_act = end_with_act

    def forward(self, x):
        h = x
        for c, name in enumerate(self.names):
            h = h @ P[name + ".weight"].T + P[name + ".bias"]
            mean = h.mean(axis=0)
            var = h.var(axis=0)
            h = (h - mean) / np.sqrt(var + 1e-3) * P[name + ".bn.weight"] + P[name + ".bn.bias"]
            if c < self.n_layers - 1 or self.end_with_act:
                h = np.maximum(h, 0.0)
            if masks is not None:
                h = h * np.asarray(masks[name], dtype=np.float64)
        return h


def linear(name, h):
    return h @ P[name + ".weight"].T + P[name + ".bias"]


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- inVAE.utils._helper_functions
def log_nb_positive(x, mu, theta, eps=1e-8):
    log_theta_mu_eps = np.log(theta + mu + eps)
    res = (
        theta * (np.log(theta + eps) - log_theta_mu_eps)
        + x * (np.log(mu + eps) - log_theta_mu_eps)
        + gammaln(x + theta)
        - gammaln(theta)
        - gammaln(x + 1)
    )
    return res.sum(axis=-1)


def normal_log_pdf(x, mu, v):
    return (-0.5 * (np.log(2 * np.pi) + np.log(v) + (x - mu) ** 2 / v)).sum(axis=-1)


# ---- inVAE.module._finvaemodule.FinVAEmodule
x = np.asarray(case["x"], dtype=np.float64)
inv = None if case["inv"] is None else np.asarray(case["inv"], dtype=np.float64)
spur = None if case["spur"] is None else np.asarray(case["spur"], dtype=np.float64)
eps = np.asarray(case["eps"], dtype=np.float64)
d_inv = case["latent_inv"]
beta = case["beta"]
L = case["n_layers_encoder"]
inject = case.get("inject", False)
learned_mean = case.get("learned_mean", False)

logl_inv = MLP(["prior_inv.0", "prior_inv.1"], end_with_act=False)
logl_spur = MLP(["prior_spur.0", "prior_spur.1"], end_with_act=False)
shared_encoder = MLP([f"encoder.{i}" for i in range(L)], end_with_act=True)
decoder_raw_mean = MLP(["decoder.0", "decoder.1"], end_with_act=False)


def learned_prior(name, u):
    # not fix_mean_prior and not fix_var_prior: prior_nn = MLP(n_layers - 1 = 1 layer,
    # end_with_act=True), then Linear heads prior_mean and logl (exp + 1e-4)
    h = MLP([name + ".0"], end_with_act=True).forward(u)
    return linear(name + ".mean", h), np.exp(linear(name + ".logl", h)) + 1e-4


def prior(inv_covar, spur_covar):
    if learned_mean:
        m_inv, v_inv = learned_prior("prior_inv", inv_covar) if inv_covar is not None else (np.zeros(1), np.ones(1))
        if inject:
            m_spur, v_spur = None, None
        elif spur_covar is not None:
            m_spur, v_spur = learned_prior("prior_spur", spur_covar)
        else:
            m_spur, v_spur = np.zeros(1), np.ones(1)
        return (m_inv, m_spur), (v_inv, v_spur)
    # fix_mean_prior: zero means; variances exp(MLP(u)) + 1e-4, or 1 without covariates;
    # with inject_covar_in_latent no spurious prior
    v_inv = np.exp(logl_inv.forward(inv_covar)) + 1e-4 if inv_covar is not None else np.ones(1)
    if inject:
        v_spur = None
    elif spur_covar is not None:
        v_spur = np.exp(logl_spur.forward(spur_covar)) + 1e-4
    else:
        v_spur = np.ones(1)
    return (np.zeros(1), np.zeros(1)), (v_inv, v_spur)


def encode(x, inv_covar, spur_covar):
    parts = [np.log(x + 1)] + [u for u in (inv_covar, spur_covar) if u is not None]
    h = shared_encoder.forward(np.concatenate(parts, axis=1))
    return linear("mean", h), np.exp(linear("logvar", h)) + 1e-4


def decode(zde):
    return softmax(linear("freq", decoder_raw_mean.forward(zde))), np.exp(P["theta_raw"])


def elbo(x, inv_covar, spur_covar):
    prior_mean, prior_var = prior(inv_covar, spur_covar)
    g, v = encode(x, inv_covar, spur_covar)
    z = eps * np.sqrt(v) + g
    zde = np.concatenate([z, spur_covar], axis=1) if inject else z
    decoder_mean, decoder_theta = decode(zde)
    decoder_mean = decoder_mean * x.sum(axis=-1, keepdims=True)
    log_px_z = log_nb_positive(x, decoder_mean, decoder_theta)
    log_qz_xde = normal_log_pdf(z, g, v)
    log_pzi_d = normal_log_pdf(z[:, :d_inv], prior_mean[0], prior_var[0])
    log_pzs_e = 0.0 if inject else normal_log_pdf(z[:, d_inv:], prior_mean[1], prior_var[1])
    return (log_px_z + beta * (log_pzi_d + log_pzs_e - log_qz_xde)).mean()


print(repr(float(-elbo(x, inv, spur))))
