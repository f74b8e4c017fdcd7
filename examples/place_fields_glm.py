# Requires: sklearn-cnnenc[plot]
"""Hippocampal place fields: a Poisson GLM on a spline basis of position.

31 units recorded while a rat ran back and forth on a linear track (nelpy
example data). Each unit's rate is modelled as exp(b + w . B(x)) where B(x)
is a cubic-spline basis of the position x along the track: a smooth place
field per unit. All units are fitted together (one batched solve), on the
bins where the rat was tracked and running, training on the first 70% of the
session and testing on the last 30%.

Writes ``place_fields.png`` (fitted fields, units sorted by peak position,
and held-out bits/spike per unit) and ``place_fields_scores.csv`` to
``examples/output/`` (or ``$CNNENC_EXAMPLES_OUTPUT``).
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import SplineTransformer  # noqa: E402

from sklearn_cnnenc import PoissonGLM  # noqa: E402
from sklearn_cnnenc.datasets import load_hippocampus_linear_track  # noqa: E402
from sklearn_cnnenc.metrics import bits_per_spike  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CNNENC_DATA_DIR", REPO.parent / "shared" / "data"))
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))
MIN_SPEED = 20.0  # pixels per second: place fields are measured during running


def main(quick=False):
    folder = DATA / "hippocampus-linear-track"
    if not folder.is_dir():
        print(f"Hippocampus recording not found at {folder}; set CNNENC_DATA_DIR.")
        return None
    data = load_hippocampus_linear_track(folder, bin_s=0.05)

    speed = np.abs(np.gradient(data.position, data.bin_s))
    running = data.tracked & (speed > MIN_SPEED)
    position, counts = data.position[running, None], data.counts[running]
    n_train = int(0.7 * len(position))

    model = make_pipeline(
        SplineTransformer(n_knots=10 if quick else 15, degree=3),
        PoissonGLM(alpha=1e-3 if quick else 1e-4, max_iter=100 if quick else 1000),
    )
    model.fit(position[:n_train], counts[:n_train])
    # held-out bits/spike against each unit's mean rate in the test period; a
    # unit silent during training scores very negative (its field is unknown)
    scores = bits_per_spike(counts[n_train:], model.predict(position[n_train:]),
                            multioutput="raw_values")
    print(f"{int(running.sum())} running bins; held-out bits/spike per unit: "
          f"median {np.nanmedian(scores):.2f}, {int(np.sum(scores > 0))} of "
          f"{len(scores)} units above the mean-rate model")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT / "place_fields_scores.csv", "w") as table:
        table.write("unit,train_spikes,test_spikes,test_bits_per_spike\n")
        for name, n_tr, n_te, score in zip(data.unit_names, counts[:n_train].sum(0),
                                           counts[n_train:].sum(0), scores, strict=True):
            table.write(f"{name},{int(n_tr)},{int(n_te)},{score:.4f}\n")

    grid = np.linspace(position.min(), position.max(), 200)[:, None]
    fields = model.predict(grid) / data.bin_s  # spikes per second
    active = counts[:n_train].sum(axis=0) >= 50
    order = np.flatnonzero(active)[np.argsort(grid[fields[:, active].argmax(axis=0), 0])]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5),
                                      gridspec_kw={"width_ratios": [2, 1]})
    normalised = fields[:, order] / fields[:, order].max(axis=0)
    left.imshow(normalised.T, aspect="auto", cmap="viridis",
                extent=[grid[0, 0], grid[-1, 0], len(order) - 0.5, -0.5])
    left.set_yticks(range(len(order)), [data.unit_names[k] for k in order], fontsize=6)
    left.set_xlabel("position along the track (pixels)")
    left.set_title("fitted place fields (each normalised to its peak)")
    right.barh(range(len(scores)), np.clip(scores, -1, None), color="tab:blue")
    right.set_yticks(range(len(scores)), data.unit_names, fontsize=6)
    right.invert_yaxis()
    right.axvline(0, color="k", lw=0.5)
    right.set_xlabel("held-out bits/spike (clipped at -1)")
    fig.tight_layout()
    fig.savefig(OUTPUT / "place_fields.png", dpi=120)
    plt.close(fig)
    print(f"Wrote {OUTPUT / 'place_fields.png'}")
    return scores


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
