"""Benchmark: BayesianDecoder on 10,000 responses x 100 neurons x 1,000 candidates.

Decodes simulated Poisson population responses against a candidate set with a
fitted PoissonGLM encoder and reports, for each decoder method, the best wall
time of a few repeats and the peak memory numpy allocated during the call
(tracemalloc), next to a naive anchor in the same run: the posterior from
``scipy.stats.poisson.logpmf`` broadcast over (responses, candidates, neurons)
and ``scipy.special.logsumexp``, timed on a subset of responses and scaled up.
The two posteriors are compared on that subset.

Usage::

    python benchmarks/bench_decoder.py                 # the issue's size
    python benchmarks/bench_decoder.py --quick         # a small smoke run
    python benchmarks/bench_decoder.py --n-responses 20000 --repeats 5

Results are printed and written to ``benchmarks/results/bench_decoder.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import special, stats
from threadpoolctl import threadpool_info

from sklearn_cnnenc import BayesianDecoder, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data

RESULTS = Path(__file__).resolve().parent / "results"


def best_time_and_peak_memory(function, repeats: int) -> tuple[float, float, object]:
    """Best wall time (s) over ``repeats`` calls, and peak numpy memory (MiB) of one call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
        del result
    tracemalloc.start()
    result = function()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return min(times), peak, result


def naive_posterior(
    Y: np.ndarray, rates: np.ndarray, log_prior: np.ndarray, integrate_bins: int
) -> np.ndarray:
    """Posterior by brute-force broadcasting of scipy's Poisson log-pmf, 100 rows at a time."""
    log_likelihood = np.empty((len(Y), len(rates)))
    for start in range(0, len(Y), 100):
        block = Y[start : start + 100, None, :]
        log_likelihood[start : start + 100] = stats.poisson.logpmf(block, rates[None]).sum(axis=2)
    # trailing window of integrate_bins rows, by shifted copies
    log_joint = log_likelihood.copy()
    for lag in range(1, integrate_bins):
        log_joint[lag:] += log_likelihood[:-lag]
    log_joint += log_prior
    return np.exp(log_joint - special.logsumexp(log_joint, axis=1, keepdims=True))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-responses", type=int, default=10_000)
    parser.add_argument("--n-neurons", type=int, default=100)
    parser.add_argument("--n-candidates", type=int, default=1_000)
    parser.add_argument("--n-naive", type=int, default=500, help="responses decoded naively")
    parser.add_argument("--integrate-bins", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_responses, args.n_neurons, args.n_candidates, args.n_naive = 500, 20, 50, 100

    # an encoder with known-good tuning: a GLM fitted to simulated neurons
    data = make_glm_data(
        n_samples=2000, n_features=8, n_neurons=args.n_neurons, modulation=1.0, random_state=0
    )
    encoder = PoissonGLM(alpha=1e-3).fit(data.X, data.y)
    rng = np.random.RandomState(1)
    stimuli = rng.standard_normal((args.n_candidates, 8))
    labels = rng.randint(args.n_candidates, size=args.n_responses)
    Y = encoder.sample(stimuli[labels], random_state=2)

    decoder = BayesianDecoder(
        encoder, stimuli, "uniform", prefit=True, integrate_bins=args.integrate_bins
    )
    rows = []
    timings = {
        "fit (encoder on the candidates)": lambda: decoder.fit(Y, labels),
        "predict (MAP label)": lambda: decoder.predict(Y),
        "predict_proba (full posterior)": lambda: decoder.predict_proba(Y),
        "predict_stimulus (posterior mean)": lambda: decoder.predict_stimulus(Y),
    }
    decoder.fit(Y, labels)
    for name, function in timings.items():
        seconds, peak, _ = best_time_and_peak_memory(function, args.repeats)
        rows.append({"method": name, "seconds": seconds, "peak_mib": peak})

    subset = Y[: args.n_naive]
    rates = decoder.candidate_mean_
    log_prior = np.log(decoder.class_prior_)
    seconds, peak, naive = best_time_and_peak_memory(
        lambda: naive_posterior(subset, rates, log_prior, args.integrate_bins), 1
    )
    scale = args.n_responses / len(subset)
    rows.append(
        {
            "method": f"naive scipy broadcasting ({len(subset)} rows, x{scale:g})",
            "seconds": seconds * scale,
            "peak_mib": peak,
        }
    )
    max_difference = float(np.abs(naive - decoder.predict_proba(subset)).max())

    threads = sorted({(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()})
    report = {
        "sizes": {
            "n_responses": args.n_responses,
            "n_neurons": args.n_neurons,
            "n_candidates": args.n_candidates,
            "integrate_bins": args.integrate_bins,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "threadpools": threads,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "results": rows,
        "max_abs_posterior_difference_vs_naive": max_difference,
    }
    print(
        f"BayesianDecoder: {args.n_responses} responses x {args.n_neurons} neurons x "
        f"{args.n_candidates} candidates (integrate_bins={args.integrate_bins}); "
        f"{os.cpu_count()} CPUs, thread pools {threads}"
    )
    print(f"{'method':<50} {'best s':>9} {'peak MiB':>9}")
    for row in rows:
        print(f"{row['method']:<50} {row['seconds']:>9.3f} {row['peak_mib']:>9.1f}")
    speedup = rows[-1]["seconds"] / rows[2]["seconds"]
    print(f"predict_proba is {speedup:.0f}x faster than the naive anchor; max |posterior "
          f"difference| on the naive subset: {max_difference:.2e}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_decoder.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
