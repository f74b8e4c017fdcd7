# Requires: sklearn-cnnenc[plot]
"""Quickstart: a Poisson GLM in a scikit-learn pipeline, cross-validated.

Ten simulated neurons respond to 20 stimulus features through a known
generalised linear model. We standardise the features, fit a Poisson GLM to
the whole population at once, and score held-out data with contiguous folds
(the right choice for time bins) in bits per spike, then check the fitted
filters against the truth.

Writes ``quickstart_glm_pipeline.csv`` and ``quickstart_glm_pipeline.png`` to
``examples/output/`` (or ``$CNNENC_EXAMPLES_OUTPUT``).
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import KFold, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sklearn_cnnenc import PoissonGLM  # noqa: E402
from sklearn_cnnenc.datasets import make_glm_data  # noqa: E402
from sklearn_cnnenc.metrics import SCORERS  # noqa: E402

OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT",
                             Path(__file__).resolve().parent / "output"))


def main(quick=False):
    data = make_glm_data(n_samples=2000 if quick else 20_000, n_features=20, n_neurons=10,
                         random_state=0)
    model = make_pipeline(StandardScaler(), PoissonGLM(alpha=1e-3))
    scores = cross_validate(model, data.X, data.y, cv=KFold(5),
                            scoring={name: SCORERS[name] for name in
                                     ("log_likelihood", "bits_per_spike", "pseudo_r2")})
    print("held-out, 5 contiguous folds (mean ± sd over folds):")
    lines = ["metric,mean,sd"]
    for name in ("log_likelihood", "bits_per_spike", "pseudo_r2"):
        values = scores[f"test_{name}"]
        print(f"  {name:<15} {values.mean():8.4f} ± {values.std():.4f}")
        lines.append(f"{name},{values.mean():.6f},{values.std():.6f}")

    fitted = model.fit(data.X, data.y)[-1]
    # the scaler divides each feature by its sd: undo it to compare with the truth
    coef = fitted.coef_ / model[0].scale_
    error = np.abs(coef - data.coef).max()
    print(f"largest coefficient error against the true neurons: {error:.3f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "quickstart_glm_pipeline.csv").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.scatter(data.coef.ravel(), coef.ravel(), s=8)
    limit = np.abs(data.coef).max() * 1.1
    axis.plot([-limit, limit], [-limit, limit], color="0.5", linestyle="--")
    axis.set(xlabel="true coefficient", ylabel="fitted coefficient",
             title="10 neurons x 20 features")
    figure.tight_layout()
    figure.savefig(OUTPUT / "quickstart_glm_pipeline.png", dpi=120)
    print(f"wrote {OUTPUT / 'quickstart_glm_pipeline.png'}")
    return scores


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
