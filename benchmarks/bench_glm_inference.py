"""GLM inference and regularisation paths: their cost against the tools in use.

* ``std_errors`` (and ``robust=True``) against the fit it describes, and against
  statsmodels' GLM fit + ``bse`` on the same data, for a population.
* ``PoissonGLMCV`` against ``GridSearchCV(PoissonGLM(), {"alpha": alphas})`` on
  the same folds and alphas, and against glum's ``GeneralizedLinearRegressorCV``
  (one neuron at a time: glum fits single responses), with the selected alphas.

Ratios are measured in this run. Run:
``python benchmarks/bench_glm_inference.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import machine_line, print_table
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_cnnenc import PoissonGLM, PoissonGLMCV
from sklearn_cnnenc.datasets import make_glm_data


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def bench_std_errors(n_samples: int, n_features: int, n_neurons: int) -> None:
    data = make_glm_data(
        n_samples=n_samples, n_features=n_features, n_neurons=n_neurons, random_state=0
    )
    PoissonGLM().fit(data.X[:100], data.y[:100])  # warm up torch
    fit_time, model = _timed(lambda: PoissonGLM(alpha=0.0).fit(data.X, data.y))
    se_time, se = _timed(lambda: model.std_errors(data.X, data.y))
    robust_time, _ = _timed(lambda: model.std_errors(data.X, data.y, robust=True))
    rows = [
        {"step": "PoissonGLM.fit (all neurons)", "time (s)": f"{fit_time:.3f}", "× fit": "1.00"},
        {"step": "std_errors", "time (s)": f"{se_time:.3f}", "× fit": f"{se_time / fit_time:.2f}"},
        {
            "step": "std_errors(robust=True)",
            "time (s)": f"{robust_time:.3f}",
            "× fit": f"{robust_time / fit_time:.2f}",
        },
    ]
    try:
        import statsmodels.api as sm
    except ImportError:
        sm = None
    if sm is not None:
        design = sm.add_constant(data.X)

        def statsmodels_all():
            return np.array(
                [
                    sm.GLM(data.y[:, k], design, family=sm.families.Poisson()).fit().bse
                    for k in range(n_neurons)
                ]
            )

        sm_time, sm_se = _timed(statsmodels_all)
        rows.append(
            {
                "step": "statsmodels GLM fit + bse (loop over neurons)",
                "time (s)": f"{sm_time:.3f}",
                "× fit": f"{sm_time / fit_time:.2f}",
            }
        )
        print(f"max relative SE difference to statsmodels: {np.max(np.abs(se / sm_se - 1)):.1e}")
    print(f"\nstd_errors: {n_neurons} neurons, {n_samples} x {n_features}")
    print_table(rows, ["step", "time (s)", "× fit"])


def bench_path(n_samples: int, n_features: int, n_neurons: int, n_alphas: int, l1_ratio: float):
    data = make_glm_data(
        n_samples=n_samples, n_features=n_features, n_neurons=n_neurons, random_state=1
    )
    cv = KFold(5)
    PoissonGLM().fit(data.X[:100], data.y[:100])
    path_time, model = _timed(
        lambda: PoissonGLMCV(n_alphas=n_alphas, l1_ratio=l1_ratio, cv=cv).fit(data.X, data.y)
    )
    alphas = model.alphas_
    grid_time, grid = _timed(
        lambda: GridSearchCV(PoissonGLM(l1_ratio=l1_ratio), {"alpha": alphas}, cv=cv).fit(
            data.X, data.y
        )
    )
    step = abs(
        int(np.argmin(np.abs(alphas - model.alpha_)))
        - int(np.argmin(np.abs(alphas - grid.best_params_["alpha"])))
    )
    rows = [
        {
            "method": "PoissonGLMCV (one batched path)",
            "time (s)": f"{path_time:.2f}",
            "ratio": "1.00",
            "alpha": f"{model.alpha_:.3g}",
        },
        {
            "method": "GridSearchCV(PoissonGLM)",
            "time (s)": f"{grid_time:.2f}",
            "ratio": f"{grid_time / path_time:.2f}",
            "alpha": f"{grid.best_params_['alpha']:.3g}",
        },
    ]
    try:
        from glum import GeneralizedLinearRegressorCV
    except ImportError:
        GeneralizedLinearRegressorCV = None
    if GeneralizedLinearRegressorCV is not None:

        def glum_all():
            chosen = []
            for k in range(n_neurons):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fitted = GeneralizedLinearRegressorCV(
                        family="poisson",
                        l1_ratio=l1_ratio,
                        alphas=alphas,
                        cv=cv,
                        min_alpha_ratio=None,
                    ).fit(data.X, data.y[:, k])
                chosen.append(fitted.alpha_)
            return chosen

        glum_time, glum_alphas = _timed(glum_all)
        rows.append(
            {
                "method": "glum GeneralizedLinearRegressorCV (loop over neurons)",
                "time (s)": f"{glum_time:.2f}",
                "ratio": f"{glum_time / path_time:.2f}",
                "alpha": ", ".join(f"{a:.3g}" for a in glum_alphas),
            }
        )
    print(
        f"\npath: {n_neurons} neurons, {n_samples} x {n_features}, {n_alphas} alphas, "
        f"l1_ratio={l1_ratio}, 5 folds; PoissonGLMCV vs GridSearchCV choice: {step} grid step(s)"
    )
    print_table(rows, ["method", "time (s)", "ratio", "alpha"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    quick = parser.parse_args().quick
    print(machine_line())
    if quick:
        bench_std_errors(5000, 20, 10)
        bench_path(2000, 20, 4, 10, 1.0)
        bench_path(2000, 20, 4, 10, 0.0)
    else:
        bench_std_errors(50000, 100, 50)
        bench_path(20000, 50, 20, 20, 1.0)
        bench_path(20000, 50, 20, 20, 0.0)


if __name__ == "__main__":
    main()
