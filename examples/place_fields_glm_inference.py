# Requires: sklearn-cnnenc[plot,pandas]
"""Which covariates drive a place cell? GLM inference and a cross-validated path.

31 hippocampal units recorded while a rat ran back and forth on a linear track
(nelpy example data). Place cells on a linear track fire at different places
on the outbound and the inbound run, so position and running direction are
combined into one periodic covariate, the *lap phase* (0 to pi: outbound, left
to right; pi to 2 pi: inbound, right to left), expanded in scikit-learn's
periodic B-splines (``SplineTransformer(extrapolation="periodic")``); the log
running speed is a second covariate.

1. An unpenalised Poisson GLM of the most active unit gives the coefficient
   table (standard errors, Wald z, p-values, 95% intervals; does running speed
   modulate the rate?) and a pointwise 95% band on the fitted field (delta
   method from ``covariance_matrix``). The periodic basis sums to one, so the
   model has no separate intercept.
2. ``PoissonGLMCV`` picks each unit's ridge penalty along a regularisation
   path in one batched solve (all units and folds at once), with contiguous
   blocks as folds.

Writes ``place_fields_glm_inference.png`` and ``place_fields_coef_table.csv``
to ``examples/output/`` (or ``$CNNENC_EXAMPLES_OUTPUT``). ``--quick`` uses
fewer basis functions and a shorter path.
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.preprocessing import SplineTransformer  # noqa: E402

from sklearn_cnnenc import PoissonGLM, PoissonGLMCV  # noqa: E402
from sklearn_cnnenc.datasets import load_hippocampus_linear_track  # noqa: E402
from sklearn_cnnenc.model_selection import BlockedKFold  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CNNENC_DATA_DIR", REPO.parent / "shared" / "data"))
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))
MIN_SPEED = 20.0  # pixels per second: place fields are measured during running


def lap_phase(position, velocity):
    """Position and direction as one angle: outbound 0..pi, inbound pi..2 pi."""
    lo, hi = np.percentile(position, [0.5, 99.5])
    x = np.clip((position - lo) / (hi - lo), 0.0, 1.0)
    return np.where(velocity > 0, np.pi * x, np.pi + np.pi * (1.0 - x))


def design(phase, log_speed, spline):
    """Periodic spline basis of the lap phase, plus the centred log speed."""
    pd = __import__("pandas")
    basis = spline.transform(phase[:, None])
    columns = {f"phase_{j}": basis[:, j] for j in range(basis.shape[1])}
    columns["log_speed"] = log_speed
    return pd.DataFrame(columns)


def main(quick=False):
    try:
        import pandas  # noqa: F401
    except ImportError:
        print("This example needs pandas: pip install sklearn-cnnenc[pandas]")
        return None
    folder = DATA / "hippocampus-linear-track"
    if not folder.is_dir():
        print(f"Hippocampus recording not found at {folder}; set CNNENC_DATA_DIR.")
        return None
    data = load_hippocampus_linear_track(folder, bin_s=0.05)
    velocity = np.gradient(data.position, data.bin_s)
    running = data.tracked & (np.abs(velocity) > MIN_SPEED)
    phase = lap_phase(data.position[running], velocity[running])
    log_speed = np.log(np.abs(velocity[running]))
    log_speed -= log_speed.mean()
    counts = data.counts[running]

    n_knots = 9 if quick else 13
    spline = SplineTransformer(
        n_knots=n_knots,
        degree=3,
        extrapolation="periodic",
        knots=np.linspace(0, 2 * np.pi, n_knots)[:, None],
    ).fit(phase[:, None])
    X = design(phase, log_speed, spline)

    # 1. inference for the most active unit, unpenalised
    unit = int(np.argmax(counts.sum(axis=0)))
    y = counts[:, unit]
    glm = PoissonGLM(alpha=0.0, fit_intercept=False, tol=1e-8).fit(X, y)
    table = glm.coef_table(X, y)
    robust = glm.coef_table(X, y, robust=True)
    table["se_robust"] = robust["se"]
    name = data.unit_names[unit]
    print(f"{int(running.sum())} running bins; unit {name} ({int(y.sum())} spikes)")
    print(table.round(3).to_string())
    OUTPUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUTPUT / "place_fields_coef_table.csv")

    grid = np.linspace(0, 2 * np.pi, 200)
    G = design(grid, np.zeros_like(grid), spline)
    cov = glm.covariance_matrix(X, y)
    eta = G.to_numpy() @ glm.coef_
    se_eta = np.sqrt(np.einsum("ij,jk,ik->i", G.to_numpy(), cov, G.to_numpy()))
    rate = np.exp(eta) / data.bin_s
    band = np.exp(eta[:, None] + np.array([-1.96, 1.96]) * se_eta[:, None]) / data.bin_s

    # 2. a cross-validated ridge path for every unit at once
    active = counts.sum(axis=0) >= 50
    cv_model = PoissonGLMCV(
        l1_ratio=0.0,
        n_alphas=8 if quick else 20,
        eps=1e-6,
        cv=BlockedKFold(n_splits=5),
        per_neuron=True,
        max_iter=200 if quick else 1000,
    ).fit(X, counts[:, active])
    print(
        f"PoissonGLMCV: {int(active.sum())} units, per-unit alphas from "
        f"{cv_model.alpha_.min():.2g} to {cv_model.alpha_.max():.2g}"
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(grid, rate, color="tab:blue")
    left.fill_between(grid, band[:, 0], band[:, 1], color="tab:blue", alpha=0.3, lw=0)
    left.axvline(np.pi, color="k", lw=0.5)
    left.set_xticks(
        [0, np.pi / 2, np.pi, 3 * np.pi / 2, 2 * np.pi],
        ["start", "outbound", "end", "inbound", "start"],
    )
    left.set_ylabel("rate (spikes/s)")
    left.set_title(f"{name}: lap-phase field, 95% band")
    # held-out log-likelihood per bin relative to the largest alpha, per unit
    path = cv_model.neuron_score_path_.mean(axis=1)  # (n_alphas, n_units)
    gain = (path - path[0]) / data.bin_s / np.log(2)  # bits per second
    right.semilogx(cv_model.alphas_, gain, color="0.6", lw=0.8)
    right.semilogx(cv_model.alphas_, gain.mean(axis=1), color="k", lw=2, label="mean")
    best = np.searchsorted(-cv_model.alphas_, -cv_model.alpha_)
    right.plot(
        cv_model.alpha_,
        gain[best, np.arange(gain.shape[1])],
        "o",
        color="tab:red",
        ms=3,
        label="each unit's alpha_",
    )
    right.set_xlabel("ridge alpha")
    right.set_ylabel("held-out gain (bits/s)")
    right.set_title("PoissonGLMCV path (5 blocked folds)")
    right.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(OUTPUT / "place_fields_glm_inference.png", dpi=80)
    plt.close(fig)
    print(f"Wrote {OUTPUT / 'place_fields_glm_inference.png'}")
    return table


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
