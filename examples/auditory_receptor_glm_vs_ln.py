# Requires: sklearn-cnnenc[plot]
"""Grasshopper auditory receptor: a lagged Poisson GLM versus LN models.

One receptor neuron (Rokem et al. 2006) heard 10 s of a noise-modulated tone.
We bin its spikes at 1 ms, describe the stimulus by its envelope (in dB) over
the last 30 ms, train on the first 8 s and test on the last 2 s (no shuffling:
neighbouring bins are correlated), and compare held-out bits per spike of

* a Poisson GLM: rate = exp(b + h . x), one linear filter;
* LN models: rate = exp(b + sum_j w_j softplus(h_j . x + c_j)), 1 and 2 filters.

Writes ``auditory_receptor_filters.png`` and ``auditory_receptor_scores.csv``
to ``examples/output/`` (or ``$CNNENC_EXAMPLES_OUTPUT``).
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn_cnnenc import LNModel, PoissonGLM  # noqa: E402
from sklearn_cnnenc.datasets import load_grasshopper_auditory  # noqa: E402
from sklearn_cnnenc.metrics import bits_per_spike  # noqa: E402
from sklearn_cnnenc.preprocessing import TimeLagger  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CNNENC_DATA_DIR", REPO.parent / "shared" / "data"))
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))
N_LAGS = 30  # ms of stimulus history


def main(quick=False):
    folder = DATA / "grasshopper-auditory"
    if not folder.is_dir():
        print(f"Grasshopper recording not found at {folder}; set CNNENC_DATA_DIR.")
        return None
    data = load_grasshopper_auditory(folder, bin_ms=1.0, which=1)

    # standardise the envelope with training statistics only, then lag it
    n_train = 8000
    envelope = data.stimulus[:, None]
    envelope = (envelope - envelope[:n_train].mean()) / envelope[:n_train].std()
    X = TimeLagger(n_lags=N_LAGS).fit_transform(envelope)
    y = data.counts
    # drop the first N_LAGS bins of each part: their lag window crosses the split
    train, test = slice(N_LAGS, n_train), slice(n_train + N_LAGS, None)

    fit_options = {"n_init": 1, "max_iter": 100} if quick else {"n_init": 4}
    models = {
        "Poisson GLM": PoissonGLM(alpha=1e-3),
        "LN, 1 softplus filter": LNModel(1, "softplus", random_state=0, **fit_options),
        "LN, 2 softplus filters": LNModel(2, "softplus", random_state=0, **fit_options),
    }
    rows = []
    for name, model in models.items():
        model.fit(X[train], y[train])
        # the null model of held-out bits/spike is the training mean rate
        score = bits_per_spike(y[test], model.predict(X[test]), y[train].mean())
        rows.append((name, bits_per_spike(y[train], model.predict(X[train])), score))
        print(f"{name:24s} train {rows[-1][1]:.3f}  test {score:.3f} bits/spike")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT / "auditory_receptor_scores.csv", "w") as table:
        table.write("model,train_bits_per_spike,test_bits_per_spike\n")
        table.writelines(f"{name},{tr:.4f},{te:.4f}\n" for name, tr, te in rows)

    lags = np.arange(N_LAGS)  # ms before the spike bin
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharex=True)
    axes[0].plot(lags, models["Poisson GLM"].coef_, color="k")
    axes[0].set_title(f"GLM filter ({rows[0][2]:.2f} bits/spike)")
    for ax, (name, _, score) in zip(axes[1:], rows[1:], strict=True):
        model = models[name]
        for j, (h, w) in enumerate(zip(model.filters_[0], model.weights_[0], strict=True)):
            ax.plot(lags, h, label=f"filter {j + 1} (weight {w:+.2f})")
        ax.set_title(f"{name} ({score:.2f} bits/spike)")
        ax.legend(fontsize=7)
    for ax in axes:
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_xlabel("lag (ms)")
    axes[0].set_ylabel("weight per SD of envelope (dB)")
    fig.tight_layout()
    fig.savefig(OUTPUT / "auditory_receptor_filters.png", dpi=120)
    plt.close(fig)
    print(f"Wrote {OUTPUT / 'auditory_receptor_filters.png'}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
