# Requires: sklearn-cnnenc[plot]
"""Comparing GLM, LN and causal-CNN encoders of an auditory receptor neuron.

The grasshopper receptor neuron of Rokem et al. (2006) heard noise-modulated
tones. Each 1 ms bin is described by the last 40 ms of the sound envelope;
``compare_models`` fits three encoders in 5 contiguous folds (dropping 40 bins
around each test block so lag windows never straddle training and test data):

* a Poisson GLM (one linear filter),
* an LN model (two softplus filters),
* a causal, dilated 1-D CNN reading the same 40 ms window.

Writes ``compare_models_auditory_neuron.csv`` and ``.png`` to
``examples/output/`` (or ``$CNNENC_EXAMPLES_OUTPUT``).
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM  # noqa: E402
from sklearn_cnnenc.datasets import load_grasshopper_auditory  # noqa: E402
from sklearn_cnnenc.model_selection import BlockedKFold, compare_models  # noqa: E402
from sklearn_cnnenc.preprocessing import TimeLagger  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CNNENC_DATA_DIR", REPO.parent / "shared" / "data"))
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))
N_LAGS = 40


def main(quick=False):
    folder = DATA / "grasshopper-auditory"
    if not folder.is_dir():
        print(f"Grasshopper recording not found at {folder}; set CNNENC_DATA_DIR.")
        return None
    data = load_grasshopper_auditory(folder, bin_ms=1.0, which=1)
    envelope = (data.stimulus - data.stimulus.mean()) / data.stimulus.std()
    # one lagged design (lag 0, the current bin, first) for every model: the causal
    # CNN reads it with input_type="lagged"
    X = TimeLagger(n_lags=N_LAGS).fit_transform(envelope[:, None])
    X, y = np.ascontiguousarray(X[N_LAGS:]), data.counts[N_LAGS:]
    if quick:
        X, y = X[:3000], y[:3000]

    models = {
        "glm": PoissonGLM(alpha=1e-3),
        "ln": LNModel(n_filters=2, nonlinearity="softplus", n_init=1 if quick else 3,
                      random_state=0),
        "causal cnn": CNNEncoder(
            n_layers=3, channels=8, kernel_size=(5, 3), dilation="exponential",
            padding="valid", input_shape=(N_LAGS, 1), input_type="lagged",
            max_epochs=5 if quick else 60, device="cpu", random_state=0),
    }
    results = compare_models(models, X, y, cv=BlockedKFold(3 if quick else 5, gap=N_LAGS),
                             scoring=("log_likelihood", "bits_per_spike", "correlation"))
    rows = results.summary()
    print(f"{'model':<12} {'LL/bin':>9} {'bits/spike':>11} {'correlation':>12}")
    for row in rows:
        print(f"{row['model']:<12} {row['log_likelihood']:9.4f} {row['bits_per_spike']:11.3f} "
              f"{row['correlation']:12.3f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    lines = ["model,log_likelihood,bits_per_spike,correlation"]
    lines += [f"{r['model']},{r['log_likelihood']:.6f},{r['bits_per_spike']:.6f},"
              f"{r['correlation']:.6f}" for r in rows]
    (OUTPUT / "compare_models_auditory_neuron.csv").write_text("\n".join(lines) + "\n")
    values = {name: [r["value"] for r in results.scores
                     if r["model"] == name and r["metric"] == "bits_per_spike"]
              for name in results.models}
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for position, name in enumerate(results.models):
        axis.plot([position] * len(values[name]), values[name], "o", color=f"C{position}")
        axis.bar(position, np.mean(values[name]), color=f"C{position}", alpha=0.4)
    axis.set_xticks(range(len(results.models)), results.models)
    axis.set(ylabel="held-out bits/spike (dots: folds)", title="grasshopper receptor neuron")
    figure.tight_layout()
    figure.savefig(OUTPUT / "compare_models_auditory_neuron.png", dpi=120)
    print(f"wrote {OUTPUT / 'compare_models_auditory_neuron.png'}")
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
