"""MEDL's counterfactual cells, checked: every cell of the other batches decoded as if measured
in batch B (`cellweave-embed --as-batch B`), its fixed-effects (FE) latent computed by
`cellweave-embed`, and its 10 nearest neighbours among batch B's own cells (FE latent, Euclidean):
the fraction of those neighbours of the cell's own type, per target batch and overall.

usage: python bench/medl_counterfactual.py HVG.arrow MODEL_DIR OBS.tsv [--label-key cell_type]
(the reference Python; cellweave-embed and cellweave-export on PATH).
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors


def run(*args):
    subprocess.run(list(args), check=True, capture_output=True)


def table(path, tmp):
    out = os.path.join(tmp, os.path.basename(path) + ".tsv")
    run("cellweave-export", path, "-o", out)
    return pd.read_csv(out, sep="\t", index_col=0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hvg")
    p.add_argument("model")
    p.add_argument("obs")
    p.add_argument("--label-key", default="cell_type")
    p.add_argument("--batch-key", default="batch")
    a = p.parse_args()
    obs = pd.read_csv(a.obs, sep="\t", index_col=0)
    with tempfile.TemporaryDirectory() as tmp:
        fe_path = os.path.join(tmp, "fe.arrow")
        run("cellweave-embed", a.hvg, "--model", a.model, "-o", fe_path)
        fe = table(fe_path, tmp)
        obs = obs.loc[fe.index]
        total, hits = 0, 0
        print("target_batch\tcells\tsame_type_fraction\town_latent_fraction")
        for b in sorted(obs[a.batch_key].astype(str).unique()):
            in_b = (obs[a.batch_key].astype(str) == b).values
            cf = os.path.join(tmp, "cf.arrow")
            cf_fe = os.path.join(tmp, "cf_fe.arrow")
            run("cellweave-embed", a.hvg, "--model", a.model, "--as-batch", b, "-o", cf)
            run("cellweave-embed", cf, "--model", a.model, "-o", cf_fe)
            z = table(cf_fe, tmp).loc[fe.index]
            nn = NearestNeighbors(n_neighbors=10).fit(fe.values[in_b])
            types_b = obs[a.label_key].astype(str).values[in_b]
            others = ~in_b
            own = obs[a.label_key].astype(str).values[others]
            _, idx = nn.kneighbors(z.values[others])
            same = (types_b[idx] == own[:, None]).mean(axis=1)
            _, idx0 = nn.kneighbors(fe.values[others])
            same0 = (types_b[idx0] == own[:, None]).mean(axis=1)
            print("%s\t%d\t%.3f\t%.3f" % (b, others.sum(), same.mean(), same0.mean()))
            total += others.sum()
            hits += same.sum()
        print("all\t%d\t%.3f\t" % (total, hits / total))


if __name__ == "__main__":
    main()
