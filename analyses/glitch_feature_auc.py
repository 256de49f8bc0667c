"""How well each feature set separates glitch from normal tokens (ROC AUC against the stored ground truth).

Trains GlitchProber's scaler -> PCA -> SVM, and a logistic regression on the same PCA, on one random
part of the stored exhaustive labels and scores the rest, for: token statistics (no forward pass),
embedding rows, the activation features of layer 0, those of the key layers at the token's own
position (GlitchProber's), and those of the key layers at the prompt's last position (where the
reply starts, so they see the whole prompt). Also times each feature set per token, beside the
repeat oracle itself. Writes ``feature_auc.csv`` to ``--out``.

    python analyses/glitch_feature_auc.py [--quick] [--out figures/earlier/smollm2-135m-full/glitch/tables]
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import interp
from interp.analyses import script_parser
from interp.glitch.baselines import token_statistics
from interp.glitch.detect import detector_scores, train_detector
from interp.glitch.features import glitch_features
from interp.glitch.oracle import repeat_oracle
from interp.glitch.pipeline import DEFAULTS
from interp.glitch.scan import load_ground_truth

if __name__ == "__main__":
    ap = script_parser(__doc__, out="figures/earlier/smollm2-135m-full/glitch/tables", out_help="folder for feature_auc.csv")
    ap.add_argument("--layers", default="0,16,19,20,21,23", help="key layers (the full run's choice by default)")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=4000)
    a = ap.parse_args()
    n_train, n_test = (500, 1000) if a.quick else (a.n_train, a.n_test)
    model = interp.load_model(a.model)
    truth, _ = load_ground_truth(model.spec)
    truth = truth[truth.cls.isin(["glitch", "normal"])]
    pick = np.random.default_rng(0).choice(len(truth), n_train + n_test, replace=False)
    ids = truth.token_id.to_numpy()[pick]
    y = truth.cls.to_numpy()[pick] == "glitch"
    tr, te = np.arange(n_train), np.arange(n_train, n_train + n_test)
    key = [int(x) for x in a.layers.split(",")]
    bs = int(DEFAULTS["feature_batch_size"])
    sets = {
        "token statistics (no forward pass)": lambda: token_statistics(model, ids).to_numpy(),
        "embedding rows": lambda: model.W_E.detach().float().numpy()[ids],
        "activations, layer 0": lambda: glitch_features(model, ids.tolist(), [0], batch_size=bs).matrix(),
        f"activations, key layers {key}": lambda: glitch_features(model, ids.tolist(), key, batch_size=bs).matrix(),
        f"activations at the prompt's last position, key layers {key}": lambda: glitch_features(
            model, ids.tolist(), key, position="last", batch_size=bs).matrix(),
    }
    t0 = time.perf_counter()
    repeat_oracle(model, ids[:512].tolist(), batch_size=int(DEFAULTS["oracle_batch_size"]))
    oracle_s = (time.perf_counter() - t0) / min(512, len(ids))
    rows = []
    for name, make in sets.items():
        t0 = time.perf_counter()
        X = make()
        per_token = (time.perf_counter() - t0) / len(ids)
        k = min(75, X.shape[1])
        svm = train_detector(X[tr], y[tr], n_components=k)
        lr = Pipeline([("scale", StandardScaler()), ("pca", PCA(k, random_state=0)),
                       ("lr", LogisticRegression(max_iter=2000, class_weight="balanced"))]).fit(X[tr], y[tr])
        rows.append({"features": name, "width": X.shape[1], "pca_dims": k,
                     "auc_svm": roc_auc_score(y[te], detector_scores(svm, X[te])),
                     "auc_logistic": roc_auc_score(y[te], lr.decision_function(X[te])),
                     "seconds_per_token": per_token, "oracle_seconds_per_token": oracle_s,
                     "cost_vs_oracle": per_token / oracle_s, "n_train": n_train, "n_test": n_test, "glitch_share": float(y.mean())})
        print(rows[-1], flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "feature_auc.csv", index=False)
    print(f"wrote {out / 'feature_auc.csv'}")
