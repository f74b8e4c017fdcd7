"""The demo's model comparison run serially, on 2 joblib processes and on a 2-worker dask cluster.

Same data, models, grids and folds in all runs (``cnnenc demo``'s GLM and LN
grid searches by default; ``--with-cnn`` adds its CNN): wall time and speed-up
over the serial run, and a check that all runs give the same scores. The
serial run is also timed with one torch thread: worker processes run one
thread each (joblib and dask set that), so that row shows how much of the
process-level speed-up the default serial run already gets from threads.
Run: ``python benchmarks/bench_compare.py [--quick] [--with-cnn]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _common import machine_line, print_table
from sklearn.model_selection import KFold

from sklearn_cnnenc.cli import _build_models
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.model_selection import compare_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--with-cnn", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    data = make_v1_population(n_samples=900 if args.quick else 3000, n_simple=4, n_complex=4,
                              image_size=16, random_state=0)
    X = data.X.reshape(len(data.X), -1)
    names = ("glm", "ln", "cnn") if args.with_cnn else ("glm", "ln")

    def run(**kwargs):
        models = _build_models(names, (1, 16, 16), "cpu", args.quick)
        start = time.perf_counter()
        results = compare_models(models, X, data.y, cv=KFold(3), verbose=False, **kwargs)
        return time.perf_counter() - start, results

    serial_time, serial = run(n_jobs=1)
    rows = [{"run": f"serial (n_jobs=1, {torch.get_num_threads()} torch threads)",
             "wall time (s)": f"{serial_time:.1f}", "speed-up": "1.00x", "same scores": "-"}]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single_time, single = run(n_jobs=1)
    torch.set_num_threads(threads)
    rows.append({"run": "serial (n_jobs=1, 1 torch thread)", "wall time (s)": f"{single_time:.1f}",
                 "speed-up": f"{serial_time / single_time:.2f}x",
                 "same scores": _same(serial, single)})
    parallel_time, parallel = run(n_jobs=2)
    rows.append({"run": "joblib, n_jobs=2", "wall time (s)": f"{parallel_time:.1f}",
                 "speed-up": f"{serial_time / parallel_time:.2f}x",
                 "same scores": _same(serial, parallel)})
    try:
        import distributed
    except ImportError:
        print("dask.distributed not installed: dask run skipped")
    else:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None,
                                      silence_logs=40) as cluster:
            dask_time, on_dask = run(scheduler=cluster.scheduler_address)
        rows.append({"run": "dask LocalCluster, 2 workers", "wall time (s)": f"{dask_time:.1f}",
                     "speed-up": f"{serial_time / dask_time:.2f}x",
                     "same scores": _same(serial, on_dask)})
    print(f"Machine: {machine_line()}")
    print(f"\n### compare_models over {', '.join(names)} (nested 3 x 2-fold CV, "
          f"{len(X)} images)\n")
    print_table(rows, ["run", "wall time (s)", "speed-up", "same scores"])


def _same(first, second) -> str:
    a = np.array([r["value"] for r in first.scores])
    b = np.array([r["value"] for r in second.scores])
    return "yes" if np.allclose(a, b, rtol=1e-6, equal_nan=True) else "NO"


if __name__ == "__main__":
    main()
