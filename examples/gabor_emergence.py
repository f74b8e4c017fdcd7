# Requires: sklearn-cnnenc[plot]
"""Do Gabor-like first-layer filters emerge when a CNN learns V1 from natural images?

Data: ``make_v1_population`` gives Poisson spike counts of 8 simple and 8
complex cells (Gabor receptive fields) to whitened natural image patches.

Models: the same ``CNNEncoder`` (two layers, 16 channels, 9 x 9 first-layer
kernels) trained four ways, crossing the two priors of the reference
chapter's story: an L1 penalty on the activations (``gamma_activity``, the
sparse-coding prior under which Gabor filters emerge) and the Laplacian
smoothness prior on the first-layer filters (``gamma_input``, the library's
default of 0.3); and, as a baseline, the same core at its random
initialisation.

For every first-layer filter, ``inspection.fit_gabor`` fits a 2-D Gabor
(position, orientation, frequency, phase, widths, amplitude) and reports
the fraction of the filter's variance it explains (R^2). A blob is a Gabor
of frequency zero, so the table also counts the *band-pass* Gabors: R^2 of
at least 0.7 and at least a quarter period of the carrier within one
envelope width (``frequency * sigma_along >= 0.25``). Prints these and the
held-out bits per spike of each model, and writes
``gabor_emergence.png`` (the filters, and R^2 per model) and
``gabor_emergence.csv`` to the output folder.

Run: ``python examples/gabor_emergence.py [--quick]``.
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

from sklearn_cnnenc import CNNEncoder
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.inspection import gabor_similarity
from sklearn_cnnenc.metrics import bits_per_spike
from sklearn_cnnenc.nn import Core2d

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))

# L1 on the activations strong enough to matter next to the likelihood of 16 neurons
SPARSITY = 30.0
CONDITIONS = {
    "no prior": dict(gamma_input=0.0, gamma_activity=0.0),
    "sparse": dict(gamma_input=0.0, gamma_activity=SPARSITY),
    "smooth": dict(gamma_input=0.3, gamma_activity=0.0),
    "smooth + sparse": dict(gamma_input=0.3, gamma_activity=SPARSITY),
}


def main(quick: bool = False) -> dict:
    n_train, n_test = (200, 100) if quick else (3000, 500)
    data = make_v1_population(n_train + n_test, n_simple=8, n_complex=8, random_state=0)
    X_train, X_test = data.X[:n_train], data.X[n_train:]
    y_train, y_test = data.y[:n_train], data.y[n_train:]
    n_starts = 1 if quick else 4

    torch.manual_seed(0)
    random_core = Core2d(1, (16, 16), channels=16, kernel_size=[9, 5])
    results = {"random": dict(similarity=gabor_similarity(random_core, n_starts=n_starts),
                              bits=np.nan)}
    for name, priors in CONDITIONS.items():
        model = CNNEncoder(max_epochs=1 if quick else 100, random_state=0, **priors)
        model.fit(X_train, y_train)
        bits = bits_per_spike(y_test, model.predict(X_test), y_train.mean(axis=0))
        results[name] = dict(similarity=gabor_similarity(model, n_starts=n_starts), bits=bits)

    print(f"first-layer filters ({n_train} training patches, {n_test} held out)")
    print(f"{'model':16s} {'Gabor R2':>9s} {'median':>7s} {'band-pass':>10s} "
          f"{'bits/spike':>11s}")
    for result in results.values():
        fits = result["similarity"].fits
        result["band_pass"] = np.mean(
            [fit.r2 >= 0.7 and fit.frequency * fit.sigma_along >= 0.25 for fit in fits]
        )
    for name, result in results.items():
        similarity = result["similarity"]
        print(f"{name:16s} {similarity.mean_r2:9.2f} {similarity.median_r2:7.2f} "
              f"{result['band_pass']:10.0%} {result['bits']:11.2f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    table = np.array([[r["similarity"].mean_r2, r["similarity"].median_r2, r["band_pass"],
                       r["bits"]] for r in results.values()])
    np.savetxt(OUTPUT / "gabor_emergence.csv", table, delimiter=",", fmt="%.4f",
               header="mean_r2,median_r2,band_pass_fraction,bits_per_spike; rows: "
               + ", ".join(results))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn_cnnenc.plotting import plot_filters

    figure = plt.figure(figsize=(13, 7), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=[3.2, 1])
    for row, (name, result) in zip(left.subfigures(len(results), 1), results.items(),
                                   strict=True):
        similarity = result["similarity"]
        plot_filters(similarity.filters, n_columns=16, figure=row,
                     title=f"{name}: mean Gabor R$^2$ = {similarity.mean_r2:.2f}")
        for axis, r2 in zip(row.axes, similarity.r2, strict=True):
            axis.set_title(f"{r2:.2f}", fontsize=6)
    axis = right.subplots()
    rng = np.random.default_rng(0)
    for position, result in enumerate(results.values()):
        r2 = result["similarity"].r2
        axis.bar(position, np.nanmean(r2), color=f"C{position}", alpha=0.6)
        axis.scatter(position + rng.uniform(-0.2, 0.2, r2.size), r2, s=8, color="k")
    axis.set_xticks(range(len(results)), list(results), rotation=30, ha="right")
    axis.set_ylabel("Gabor R$^2$ of first-layer filters")
    axis.set_ylim(0, 1)
    path = OUTPUT / "gabor_emergence.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"written {path}")
    return {name: result["similarity"].mean_r2 for name, result in results.items()}


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
