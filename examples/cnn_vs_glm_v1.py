# Requires: sklearn-cnnenc[plot]
"""A CNN and a GLM on simulated V1 simple and complex cells viewing natural images.

Data: ``make_v1_population`` gives Poisson spike counts of Gabor simple cells
(linear filter, half-squaring) and energy-model complex cells (two filters in
quadrature, squared and summed: blind to the stimulus phase) responding to
whitened natural image patches, with the true rates (the oracle).

Models: a ``PoissonGLM`` on the flattened pixels, and a ``CNNEncoder`` with its
defaults (a two-layer convolutional core shared by all neurons and a
factorised readout). Prints held-out bits per spike per cell type next to the
oracle's, and writes ``cnn_vs_glm_v1.png`` (per-neuron bits per spike, the
CNN's first-layer filters) and ``cnn_vs_glm_v1.csv`` to the output folder.

Run: ``python examples/cnn_vs_glm_v1.py [--quick]``.
"""

import os
import sys
from pathlib import Path

import numpy as np

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.metrics import bits_per_spike

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))


def main(quick: bool = False) -> dict:
    n_train, n_test = (400, 200) if quick else (5000, 2000)
    data = make_v1_population(n_train + n_test, n_simple=6, n_complex=6, random_state=0)
    X_train, X_test = data.X[:n_train], data.X[n_train:]
    y_train, y_test = data.y[:n_train], data.y[n_train:]

    glm = PoissonGLM().fit(X_train.reshape(n_train, -1), y_train)
    cnn = CNNEncoder(max_epochs=3 if quick else 100, random_state=0).fit(X_train, y_train)

    # bits per spike over the null model that knows each neuron's training mean
    null = y_train.mean(axis=0)
    scores = {
        "oracle": data.mean[n_train:],
        "GLM": glm.predict(X_test.reshape(n_test, -1)),
        "CNN": cnn.predict(X_test),
    }
    bits = {
        name: bits_per_spike(y_test, prediction, null, multioutput="raw_values")
        for name, prediction in scores.items()
    }
    simple = data.cell_type == "simple"
    print(f"held-out bits/spike ({n_train} training, {n_test} test patches)")
    print(f"{'model':8s} {'simple':>8s} {'complex':>8s} {'% oracle':>9s}")
    for name, values in bits.items():
        fraction = 100 * values.mean() / bits["oracle"].mean()
        print(f"{name:8s} {values[simple].mean():8.2f} {values[~simple].mean():8.2f} "
              f"{fraction:8.0f}%")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([bits[name] for name in bits])
    np.savetxt(OUTPUT / "cnn_vs_glm_v1.csv", table, delimiter=",", fmt="%.4f",
               header="oracle,glm,cnn (bits/spike per neuron; first half simple cells)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    filters = cnn.core_.first_layer_filters().detach().cpu().numpy()
    figure = plt.figure(figsize=(10, 4))
    left = figure.add_subplot(1, 2, 1)
    neurons = np.arange(len(simple))
    for offset, name in zip((-0.25, 0.0, 0.25), bits, strict=True):
        left.bar(neurons + offset, bits[name], width=0.25, label=name)
    left.axvline(simple.sum() - 0.5, color="grey", lw=0.8)
    left.set(xlabel="neuron (simple | complex)", ylabel="held-out bits/spike")
    left.legend()
    for index, kernel in enumerate(filters[:16]):
        axis = figure.add_subplot(4, 8, 8 * (index // 4) + 5 + index % 4)
        axis.imshow(kernel, cmap="RdBu_r")
        axis.set_axis_off()
    figure.suptitle("CNN first-layer filters (right)")
    path = OUTPUT / "cnn_vs_glm_v1.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"written {path}")
    return {name: float(values.mean()) for name, values in bits.items()}


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
