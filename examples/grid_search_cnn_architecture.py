# Requires: sklearn-cnnenc
"""Grid-searching a CNN encoder's architecture like any scikit-learn regressor.

Simulated V1 simple and complex cells respond to natural image patches. A
``GridSearchCV`` over depth, width and readout of ``CNNEncoder`` picks the
architecture by held-out log-likelihood (the estimator's ``score``); the table
lists every candidate with its cross-validated score and fit time.

Writes ``grid_search_cnn_architecture.csv`` to ``examples/output/`` (or
``$CNNENC_EXAMPLES_OUTPUT``).
"""

import csv
import os
import sys
from pathlib import Path

from sklearn.model_selection import GridSearchCV, KFold

from sklearn_cnnenc import CNNEncoder
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.metrics import bits_per_spike

OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT",
                             Path(__file__).resolve().parent / "output"))


def main(quick=False):
    data = make_v1_population(n_samples=600 if quick else 4000, n_simple=4, n_complex=4,
                              random_state=0)
    n_train = int(0.8 * len(data.X))
    X_train, y_train = data.X[:n_train], data.y[:n_train]
    grid = {"n_layers": [1, 2], "channels": [8, 16], "readout": ["factorized", "gaussian"]}
    if quick:
        grid = {"n_layers": [1, 2], "channels": [8]}
    search = GridSearchCV(
        CNNEncoder(max_epochs=5 if quick else 40, device="cpu", random_state=0),
        grid, cv=KFold(3, shuffle=True, random_state=0),  # images are independent trials
    ).fit(X_train, y_train)

    rows = []
    for params, score, seconds in zip(search.cv_results_["params"],
                                      search.cv_results_["mean_test_score"],
                                      search.cv_results_["mean_fit_time"], strict=True):
        rows.append({**params, "held-out LL per bin": round(float(score), 4),
                     "fit time (s)": round(float(seconds), 2)})
    rows.sort(key=lambda row: -row["held-out LL per bin"])
    for row in rows:
        print(row)
    test_bits = bits_per_spike(data.y[n_train:], search.predict(data.X[n_train:]),
                               y_null=y_train.mean(axis=0))
    print(f"best: {search.best_params_}; test bits/spike {test_bits:.3f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / "grid_search_cnn_architecture.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUTPUT / 'grid_search_cnn_architecture.csv'}")
    return search


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
