"""PoissonGLM against the GLM solvers scientists use today, on the same data.

Cases (issue 15, section 4):

* one neuron, 100,000 samples x 100 features (target: PoissonGLM in at most
  0.33x the time of sklearn's ``PoissonRegressor(solver="lbfgs")``);
* a population of 50 neurons, 50,000 samples x 100 features (target: at least
  20x faster than a loop over sklearn).

Like is compared with like: every solver runs on the same number of threads
(``--threads``, default 1: torch's intra-op pool, and through threadpoolctl
the BLAS and OpenMP pools of numpy, scikit-learn and glum). For each solver
the script reports the best-of-``--repeats`` wall time and CPU time (process
time; on a shared, loaded machine the CPU time is the steadier of the two),
and the ratios of PoissonGLM's time to each anchor's.

The same optimum is mandatory: the penalised objective (mean negative
log-likelihood per sample plus ``alpha / 2 * ||w||^2``, per neuron) of every
solver must lie within ``--rtol`` (default 1e-6) relative of the one reached
by sklearn's newton-cholesky solver; the script fails otherwise.
The last lines state both targets' ratios against the anchors measured in the
same run and whether each is met (judged on CPU time, the steadier measure on a
shared machine).
Run: ``python benchmarks/bench_glm.py [--quick]`` (``--quick``: 10x smaller data).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from _common import machine_line, print_table
from scipy.special import gammaln
from sklearn.linear_model import PoissonRegressor
from threadpoolctl import threadpool_limits

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data

OURS = "sklearn-cnnenc PoissonGLM"


def timed(function: Callable[[], tuple], repeats: int) -> tuple[float, float, tuple]:
    """Best wall time, best CPU time of ``repeats`` calls, and the last result."""
    best_wall = best_cpu = float("inf")
    result: tuple = ()
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, result


def objective(X, Y, coef, intercept, alpha: float) -> np.ndarray:
    """Per-neuron penalised objective: mean Poisson NLL plus ``alpha / 2 ||w||^2``."""
    coef = np.atleast_2d(coef)
    eta = X @ coef.T + np.reshape(intercept, (1, -1))
    Y = Y.reshape(len(Y), -1)
    nll = np.mean(np.exp(eta) - Y * eta + gammaln(Y + 1.0), axis=0)
    return nll + 0.5 * alpha * np.sum(coef**2, axis=1)


def _sklearn(alpha: float, tol: float, solver: str):
    def fit(X, y):
        model = PoissonRegressor(alpha=alpha, tol=tol, solver=solver, max_iter=1000).fit(X, y)
        return model.coef_, model.intercept_

    return fit


def _ours(alpha: float, tol: float):
    def fit(X, y):
        model = PoissonGLM(alpha=alpha, tol=tol).fit(X, y)
        return model.coef_, model.intercept_

    return fit


def _glum(alpha: float, tol: float):
    try:
        import glum
    except ImportError:
        print("glum not installed: skipped")
        return None

    def fit(X, y):
        model = glum.GeneralizedLinearRegressor(
            family="poisson", alpha=alpha, l1_ratio=0.0, gradient_tol=tol
        ).fit(X, y)
        return model.coef_, model.intercept_

    return fit


def _loop(single: Callable):
    def fit(X, Y):
        results = [single(X, Y[:, k]) for k in range(Y.shape[1])]
        return np.array([r[0] for r in results]), np.array([r[1] for r in results])

    return fit


def run_case(title: str, X, Y, solvers: dict, reference: str, alpha: float, args) -> dict:
    """Time every solver, check the optimum against ``reference``, print the table."""
    results = {}
    for name, (fit, repeats) in solvers.items():
        if fit is None:
            continue
        wall, cpu, (coef, intercept) = timed(lambda fit=fit: fit(X, Y), repeats)
        results[name] = (wall, cpu, objective(X, Y, coef, intercept, alpha))
    best = results[reference][2]
    ours_wall, ours_cpu = results[OURS][:2]
    rows, failures = [], []
    for name, (wall, cpu, value) in results.items():
        gap = np.max((value - best) / np.abs(best))
        if gap > args.rtol:
            failures.append(f"{name}: objective {gap:.1e} (relative) above {reference}'s")
        rows.append({
            "solver": name,
            "wall (s)": f"{wall:.3f}",
            "CPU (s)": f"{cpu:.3f}",
            "objective - reference (rel., max over neurons)": f"{gap:+.1e}",
            "ours / this (wall)": f"{ours_wall / wall:.2f}x",
            "ours / this (CPU)": f"{ours_cpu / cpu:.2f}x",
        })
    print(f"\n### {title}\n")
    print_table(rows, list(rows[0]))
    if failures and not args.no_check:
        raise AssertionError("Not the same optimum:\n" + "\n".join(failures))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller data")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1, help="threads of every solver")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rtol", type=float, default=1e-6,
                        help="allowed relative objective gap to newton-cholesky")
    parser.add_argument("--no-check", action="store_true", help="report gaps, do not fail")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    os.environ["CNNENC_NUM_THREADS"] = str(args.threads)  # no busy-core guess: fixed
    print(f"Machine: {machine_line()}")
    print(f"Threads: {args.threads} for every solver (torch, BLAS, OpenMP)")
    print(f"Load average (1, 5, 15 min) at start: {os.getloadavg()}")
    alpha, tol = args.alpha, args.tol
    single_repeats = args.repeats
    loop_repeats = 1  # a loop over 50 fits is long enough to time once
    with threadpool_limits(args.threads):
        data = make_glm_data(100_000 // scale, 100, n_neurons=1, random_state=0)
        X, y = data.X, data.y
        PoissonGLM(alpha=alpha).fit(X[:1000], y[:1000])  # torch's one-off start-up cost
        single = run_case(
            f"One neuron, {len(X):,} x {X.shape[1]}, alpha={alpha}, {args.threads} thread(s)",
            X, y,
            {
                OURS: (_ours(alpha, tol), single_repeats),
                "sklearn PoissonRegressor (lbfgs)": (_sklearn(alpha, tol, "lbfgs"),
                                                     single_repeats),
                "sklearn PoissonRegressor (newton-cholesky)": (
                    _sklearn(alpha, tol, "newton-cholesky"), single_repeats),
                "glum GeneralizedLinearRegressor": (_glum(alpha, tol), single_repeats),
            },
            "sklearn PoissonRegressor (newton-cholesky)", alpha, args,
        )
        data = make_glm_data(50_000 // scale, 100, n_neurons=50, random_state=1)
        X, Y = data.X, data.y
        population = run_case(
            f"Population of {Y.shape[1]} neurons, {len(X):,} x {X.shape[1]}, alpha={alpha}, "
            f"{args.threads} thread(s)",
            X, Y,
            {
                OURS: (_ours(alpha, tol), single_repeats),
                "loop over sklearn PoissonRegressor (lbfgs)": (
                    _loop(_sklearn(alpha, tol, "lbfgs")), loop_repeats),
                "loop over sklearn PoissonRegressor (newton-cholesky)": (
                    _loop(_sklearn(alpha, tol, "newton-cholesky")), loop_repeats),
                "loop over glum": (
                    None if _glum(alpha, tol) is None else _loop(_glum(alpha, tol)),
                    loop_repeats),
            },
            "loop over sklearn PoissonRegressor (newton-cholesky)", alpha, args,
        )
    print(f"\nLoad average at end: {os.getloadavg()}")
    lbfgs = single["sklearn PoissonRegressor (lbfgs)"]
    loop = population["loop over sklearn PoissonRegressor (lbfgs)"]
    single_wall, single_cpu = single[OURS][0] / lbfgs[0], single[OURS][1] / lbfgs[1]
    speedup_wall = loop[0] / population[OURS][0]
    speedup_cpu = loop[1] / population[OURS][1]

    def verdict(met: bool) -> str:
        return "MET" if met else "NOT MET"

    print(
        f"\nTargets (issue 15 §4), every solver on {args.threads} thread(s), anchors "
        "measured in this run:"
        f"\n  one neuron <= 0.33x sklearn lbfgs: {single_wall:.2f}x wall, "
        f"{single_cpu:.2f}x CPU -> {verdict(single_cpu <= 0.33)} (CPU time)"
        f"\n  population >= 20x faster than the sklearn lbfgs loop: {speedup_wall:.1f}x wall, "
        f"{speedup_cpu:.1f}x CPU -> {verdict(speedup_cpu >= 20)} (CPU time)"
    )


if __name__ == "__main__":
    main()
