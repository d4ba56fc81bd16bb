"""ctrl vs stim from each embedding of an h5ad (cellweave-export of the embeddings): mean
5-fold cross-validated accuracy of a logistic regression (scikit-learn), per obsm entry.

    python invae_condition.py EMBEDDINGS.h5ad [condition]
"""
import sys

import anndata as ad
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline

a = ad.read_h5ad(sys.argv[1])
key = sys.argv[2] if len(sys.argv) > 2 else "condition"
y = a.obs[key].astype(str).to_numpy()
cv = StratifiedKFold(5, shuffle=True, random_state=0)
for name in sorted(a.obsm.keys()):
    x = np.asarray(a.obsm[name], dtype=np.float64)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    acc = cross_val_score(clf, x, y, cv=cv).mean()
    print(f"{name}\t{x.shape[1]}\t{acc:.3f}")
