"""PoissonGLM against the GLM solvers scientists use today, on the same data.

Cases (from the foundation issue):

* one neuron, 100,000 samples x 100 features;
* a population of 50 neurons, 50,000 samples x 100 features.

For each solver: best-of-3 fit time and the final training log-likelihood per
sample; every solver must reach the same optimum (|delta LL per sample| <= 1e-6
against the best one). Ratios are PoissonGLM's time over each anchor's, measured
in this run. Run: ``python benchmarks/bench_glm.py [--quick]``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _common import best_time, machine_line, print_table
from sklearn.linear_model import PoissonRegressor

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.metrics import log_likelihood


def _anchors_single_neuron(alpha: float, tol: float) -> dict:
    anchors = {
        "sklearn PoissonRegressor (lbfgs)": lambda X, y: PoissonRegressor(
            alpha=alpha, tol=tol, max_iter=1000).fit(X, y).predict(X),
        "sklearn PoissonRegressor (newton-cholesky)": lambda X, y: PoissonRegressor(
            alpha=alpha, tol=tol, solver="newton-cholesky", max_iter=1000).fit(X, y).predict(X),
    }
    try:
        import glum

        anchors["glum GeneralizedLinearRegressor"] = lambda X, y: glum.GeneralizedLinearRegressor(
            family="poisson", alpha=alpha, l1_ratio=0.0, gradient_tol=tol).fit(X, y).predict(X)
    except ImportError:
        print("glum not installed: skipped")
    if alpha == 0:
        try:
            import statsmodels.api as sm

            def statsmodels_fit(X, y):
                design = sm.add_constant(X)
                return sm.GLM(y, design, family=sm.families.Poisson()).fit().predict(design)

            anchors["statsmodels GLM (IRLS)"] = statsmodels_fit
        except ImportError:
            print("statsmodels not installed: skipped")
    return anchors


def single_neuron(n_samples: int, n_features: int, alpha: float, tol: float) -> None:
    data = make_glm_data(n_samples, n_features, n_neurons=1, random_state=0)
    X, y = data.X, data.y
    PoissonGLM(alpha=alpha).fit(X[:1000], y[:1000])  # pay torch's one-off start-up cost
    rows = []
    ours_time, ours_pred = best_time(lambda: PoissonGLM(alpha=alpha, tol=tol).fit(X, y).predict(X))
    results = {"sklearn-cnnenc PoissonGLM": (ours_time, ours_pred)}
    for name, fit in _anchors_single_neuron(alpha, tol).items():
        results[name] = best_time(lambda fit=fit: fit(X, y))
    _report(results, y, "sklearn-cnnenc PoissonGLM", rows)
    print(f"\n### One neuron, {n_samples:,} x {n_features}, alpha={alpha}\n")
    print_table(rows, ["solver", "fit time (s)", "train LL / sample", "|dLL| vs best",
                       "PoissonGLM time / this"])


def population(n_samples: int, n_features: int, n_neurons: int, alpha: float, tol: float) -> None:
    data = make_glm_data(n_samples, n_features, n_neurons=n_neurons, random_state=1)
    X, Y = data.X, data.y

    def sklearn_loop(solver):
        return np.column_stack([
            PoissonRegressor(alpha=alpha, tol=tol, solver=solver, max_iter=1000)
            .fit(X, Y[:, k]).predict(X)
            for k in range(n_neurons)
        ])

    results = {
        "sklearn-cnnenc PoissonGLM (one batched fit)": best_time(
            lambda: PoissonGLM(alpha=alpha, tol=tol).fit(X, Y).predict(X)),
        "loop over sklearn PoissonRegressor (lbfgs)": best_time(
            lambda: sklearn_loop("lbfgs"), repeats=1),
        "loop over sklearn PoissonRegressor (newton-cholesky)": best_time(
            lambda: sklearn_loop("newton-cholesky"), repeats=1),
    }
    rows = []
    _report(results, Y, "sklearn-cnnenc PoissonGLM (one batched fit)", rows)
    print(f"\n### Population of {n_neurons} neurons, {n_samples:,} x {n_features}, alpha={alpha}\n")
    print_table(rows, ["solver", "fit time (s)", "train LL / sample", "|dLL| vs best",
                       "PoissonGLM time / this"])


def _report(results: dict, y: np.ndarray, ours: str, rows: list) -> None:
    scores = {name: log_likelihood(y, prediction) for name, (_, prediction) in results.items()}
    best = max(scores.values())
    ours_time = results[ours][0]
    for name, (seconds, _) in results.items():
        rows.append({
            "solver": name,
            "fit time (s)": f"{seconds:.3f}",
            "train LL / sample": f"{scores[name]:.8f}",
            "|dLL| vs best": f"{best - scores[name]:.1e}",
            "PoissonGLM time / this": f"{ours_time / seconds:.2f}x",
        })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller data")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"Machine: {machine_line()}")
    single_neuron(100_000 // scale, 100, args.alpha, args.tol)
    population(50_000 // scale, 100, 50, args.alpha, args.tol)


if __name__ == "__main__":
    main()
