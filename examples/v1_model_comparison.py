# Requires: sklearn-cnnenc[plot]
"""The demo's comparison: GLM, LN and CNN encoders of simulated V1, neuron by neuron.

This is what ``cnnenc demo`` runs, written out. Simulated simple cells (one
Gabor filter) and complex cells (an energy model: two Gabors in quadrature,
squared) respond to natural image patches. Each model is grid-searched inside
every training fold (nested cross-validation); held-out scores are compared
neuron by neuron with paired Wilcoxon tests, and against the oracle (the true
rates that generated the spikes).

Writes ``v1_model_comparison.png`` (per-model summary, per-neuron scatter) and
``v1_model_comparison.csv`` to ``examples/output/`` (or
``$CNNENC_EXAMPLES_OUTPUT``).
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM  # noqa: E402
from sklearn_cnnenc.datasets import make_v1_population  # noqa: E402
from sklearn_cnnenc.model_selection import compare_models  # noqa: E402
from sklearn_cnnenc.plotting import plot_model_comparison  # noqa: E402

OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT",
                             Path(__file__).resolve().parent / "output"))


def main(quick=False):
    data = make_v1_population(n_samples=600 if quick else 3000, n_simple=4, n_complex=4,
                              image_size=16, random_state=0)
    X = data.X.reshape(len(data.X), -1)  # one flat row per image, for all three models
    inner = KFold(2)
    models = {
        # many pixels, heavy-tailed natural images: the GLM needs a strong ridge
        "glm": GridSearchCV(PoissonGLM(), {"alpha": [1.0] if quick else [0.3, 1.0, 3.0]},
                            cv=inner),
        "ln": GridSearchCV(LNModel(n_filters=2, link="softplus", alpha=0.1, n_init=2,
                                   max_iter=30 if quick else 300, random_state=0),
                           {"nonlinearity": ["square"] if quick else ["softplus", "square"]},
                           cv=inner),
        "cnn": GridSearchCV(CNNEncoder(input_shape=(1, 16, 16), max_epochs=3 if quick else 30,
                                       device="cpu", random_state=0),
                            {"channels": [8] if quick else [8, 16]}, cv=inner),
    }
    results = compare_models(models, X, data.y, cv=KFold(3), oracle_rates=data.mean)

    bits = results.per_neuron("bits_per_spike")
    print(f"\n{'model':<8} {'simple cells':>13} {'complex cells':>14} {'of oracle':>10}")
    for row in results.summary():
        name = row["model"]
        print(f"{name:<8} {np.mean(bits[name][data.cell_type == 'simple']):13.3f} "
              f"{np.mean(bits[name][data.cell_type == 'complex']):14.3f} "
              f"{row['fraction_of_oracle']:10.2f}")
    for pair in results.paired_comparisons("log_likelihood"):
        if "oracle" not in (pair["model_a"], pair["model_b"]):
            print(f"{pair['model_a']} - {pair['model_b']}: {pair['mean_difference']:+.3f} "
                  f"nats/bin, better on {pair['fraction_a_better']:.0%} of neurons, "
                  f"Wilcoxon p = {pair['wilcoxon_p']:.3f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    lines = ["model,cell_type,neuron,bits_per_spike"]
    lines += [f"{name},{cell},{k},{bits[name][k]:.6f}" for name in results.models
              for k, cell in enumerate(data.cell_type)]
    (OUTPUT / "v1_model_comparison.csv").write_text("\n".join(lines) + "\n")
    plot_model_comparison(results, reference="glm").savefig(
        OUTPUT / "v1_model_comparison.png", dpi=120)
    print(f"wrote {OUTPUT / 'v1_model_comparison.png'}")
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
