"""TimeLagger + PoissonGLM on a long recording, next to scikit-learn's PoissonRegressor.

A white-noise stimulus of ``--n-bins`` bins (one float32 column) drives a
Poisson neuron through a 50-lag filter. Each method runs in its own
subprocess so that its peak resident memory (``ru_maxrss``) is its own:

* ``design``: generate the data and build the lagged design matrix only
  (the memory floor every method shares);
* ``cnnenc``: ``TimeLagger`` (float32, column-major) + ``PoissonGLM``;
* ``sklearn``: the same design + ``sklearn.linear_model.PoissonRegressor``
  (same ``alpha`` and ``tol``).

Reported: fit time (after a small warm-up fit, so one-off imports are not
counted), peak memory and its excess over ``design``, the design matrix's
size, the mean held-in log-likelihood per bin of each fit and their
difference ``|delta LL|``. On a machine shared with other jobs, set
``OMP_NUM_THREADS`` to the free cores: oversubscribed torch threads spin.

Usage::

    python benchmarks/bench_temporal.py                   # 1,000,000 bins x 50 lags
    python benchmarks/bench_temporal.py --n-bins 100000   # quick check

Results are printed and written to ``benchmarks/results/bench_temporal.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    # Linux reports kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make_data(n_bins: int, n_lags: int, seed: int = 0):
    """Stimulus, spike counts and true filter, without building a design matrix."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    stimulus = rng.standard_normal((n_bins, 1)).astype(np.float32)
    lag = np.arange(n_lags)
    fast, slow = n_lags / 8, n_lags / 4
    true_filter = (lag / fast) ** 2 * np.exp(-lag / fast) - 0.6 * (lag / slow) ** 2 * np.exp(
        -lag / slow
    )
    true_filter *= 0.5 / np.linalg.norm(true_filter)
    drive = lfilter(true_filter, [1.0], stimulus[:, 0].astype(float))
    y = rng.poisson(np.exp(np.log(0.1) + drive)).astype(np.float64)
    return stimulus, y, true_filter


def _run_method(method: str, n_bins: int, n_lags: int, alpha: float, tol: float) -> dict:
    sys.path.insert(0, str(ROOT))
    from sklearn_cnnenc.metrics import log_likelihood
    from sklearn_cnnenc.preprocessing import TimeLagger

    rss_imports = _peak_rss_mb()
    stimulus, y, true_filter = _make_data(n_bins, n_lags)
    X = TimeLagger(n_lags=n_lags).fit_transform(stimulus)
    result = {
        "method": method,
        "design_mb": X.nbytes / 2**20,
        "design_dtype": str(X.dtype),
        "design_fortran": bool(X.flags.f_contiguous),
        "rss_after_imports_mb": rss_imports,
    }
    if method == "cnnenc":
        from sklearn_cnnenc import PoissonGLM

        model = PoissonGLM(alpha=alpha, tol=tol, max_iter=1000)
        # one small fit first, so the timing excludes one-off lazy imports and
        # kernel initialisation (done for both libraries)
        model.fit(X[:1000], y[:1000])
        start = time.perf_counter()
        model.fit(X, y)
        result["fit_s"] = time.perf_counter() - start
        result["n_iter"] = model.n_iter_
    elif method == "sklearn":
        from sklearn.linear_model import PoissonRegressor

        model = PoissonRegressor(alpha=alpha, tol=tol, max_iter=1000)
        model.fit(X[:1000], y[:1000])
        start = time.perf_counter()
        model.fit(X, y)
        result["fit_s"] = time.perf_counter() - start
        result["n_iter"] = int(model.n_iter_)
    if method != "design":
        result["log_likelihood_per_bin"] = float(log_likelihood(y, model.predict(X)))
        coef = np.asarray(model.coef_, dtype=float)
        result["filter_correlation"] = float(np.corrcoef(coef, true_filter)[0, 1])
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-bins", type=int, default=1_000_000)
    parser.add_argument("--n-lags", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--methods", default="design,cnnenc,sklearn")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = _run_method(args.child, args.n_bins, args.n_lags, args.alpha, args.tol)
        print(json.dumps(result))
        return result

    results = {}
    for method in args.methods.split(","):
        command = [
            sys.executable, __file__, "--child", method, "--n-bins", str(args.n_bins),
            "--n-lags", str(args.n_lags), "--alpha", str(args.alpha), "--tol", str(args.tol),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(output.strip().splitlines()[-1])

    print(
        f"TimeLagger + GLM: {args.n_bins:,} bins x {args.n_lags} lags (float32), "
        f"alpha={args.alpha}, tol={args.tol}"
    )
    print(f"design matrix: {results[next(iter(results))]['design_mb']:.1f} MiB")
    floor = results.get("design", {}).get("peak_rss_mb")
    print(f"{'method':<10}{'fit s':>9}{'iters':>7}{'peak RSS MiB':>14}{'over design':>13}"
          f"{'LL/bin':>12}")
    for method, r in results.items():
        fit = f"{r['fit_s']:.2f}" if "fit_s" in r else "-"
        iters = str(r.get("n_iter", "-"))
        ll = f"{r['log_likelihood_per_bin']:.6f}" if "log_likelihood_per_bin" in r else "-"
        over = f"{r['peak_rss_mb'] - floor:+.0f}" if floor is not None else "-"
        print(f"{method:<10}{fit:>9}{iters:>7}{r['peak_rss_mb']:>14.0f}{over:>13}{ll:>12}")
    if "cnnenc" in results and "sklearn" in results:
        delta = abs(
            results["cnnenc"]["log_likelihood_per_bin"]
            - results["sklearn"]["log_likelihood_per_bin"]
        )
        results["abs_delta_log_likelihood_per_bin"] = delta
        print(f"|delta LL| per bin (cnnenc vs sklearn): {delta:.2e}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_temporal.json").write_text(json.dumps({"args": vars(args), **results}, indent=2))
    return results


if __name__ == "__main__":
    main()
