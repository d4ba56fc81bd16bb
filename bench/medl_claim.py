"""MEDL's claim, measured: a 15-NN classifier (5-fold stratified cross-validation,
scikit-learn) predicts the batch from the random-effects (RE) latent far better than from the
fixed-effects (FE) one, and the cell type at least as well from FE + RE as from FE alone.

usage: python bench/medl_claim.py FE.arrow RE.arrow OBS.tsv [--batch-key batch --label-key cell_type]
(run with the reference Python; the embeddings are read through `cellweave-export ... -o x.tsv`,
so cellweave-export must be on PATH). Prints one TSV line per target and latent.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier


def read_embedding(path, tmp):
    out = os.path.join(tmp, os.path.basename(path) + ".tsv")
    subprocess.run(["cellweave-export", path, "-o", out], check=True, capture_output=True)
    return pd.read_csv(out, sep="\t", index_col=0)


def accuracy(x, y):
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    knn = KNeighborsClassifier(n_neighbors=15)
    return float(np.mean(cross_val_score(knn, x, y, cv=folds)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("fe")
    p.add_argument("re")
    p.add_argument("obs")
    p.add_argument("--batch-key", default="batch")
    p.add_argument("--label-key", default="cell_type")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fe = read_embedding(a.fe, tmp)
        re_ = read_embedding(a.re, tmp)
    obs = pd.read_csv(a.obs, sep="\t", index_col=0).loc[fe.index]
    re_ = re_.loc[fe.index]
    both = np.hstack([fe.values, re_.values])
    print("target\tFE\tRE\tFE+RE")
    for key in [a.batch_key, a.label_key]:
        y = obs[key].astype(str).values
        r = [accuracy(fe.values, y), accuracy(re_.values, y), accuracy(both, y)]
        print(key + "\t" + "\t".join("%.3f" % v for v in r))


if __name__ == "__main__":
    sys.exit(main())
