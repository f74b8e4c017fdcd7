"""Quiet versus busy machine: does the work collapse beside one CPU-bound process?

Each workload runs in a fresh Python process twice: on the quiet machine, then
beside one competing CPU-bound process (``python3 -c "while True: pass"``).
The fits choose their own thread counts (``sklearn_cnnenc.utils``: the cores
this process may use minus the busy ones), as a user's would. Workloads:

* ``demo``: ``cnnenc demo --quick`` (in-process, imports excluded);
* ``glm``: a population ``PoissonGLM`` fit (50 neurons, 20,000 x 100 design);
* ``cnn``: one ``CNNEncoder`` epoch (median of 3 epochs on 5,000 16x16 patches).

Target (issue 10): busy / quiet <= 2 for the demo and the CNN epoch. Measure on
an otherwise quiet machine: the script warns when other processes already keep
cores busy, because "quiet" then is not quiet.

Usage::

    python benchmarks/bench_busy.py                   # all three workloads
    python benchmarks/bench_busy.py --workloads cnn,glm --repeats 3
    python benchmarks/bench_busy.py --quick           # smaller sizes, a smoke run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import machine_line, print_table  # noqa: E402

from sklearn_cnnenc.utils import available_cpu_count, busy_cpu_count  # noqa: E402

# Each child prints "SECONDS <value>" as its last line.
WORKLOADS = {
    "demo": """
import tempfile, time
from sklearn_cnnenc.cli import main
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    main(["demo", "--quick", "--out", out, "--device", "cpu"])
    print("SECONDS", time.perf_counter() - start)
""",
    "glm": """
import time
from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
data = make_glm_data(n_samples={n_glm}, n_features=100, n_neurons=50, random_state=0)
start = time.perf_counter()
PoissonGLM(alpha=1e-3).fit(data.X, data.y)
print("SECONDS", time.perf_counter() - start)
""",
    "cnn": """
import numpy as np
from sklearn_cnnenc import CNNEncoder
from sklearn_cnnenc.datasets import make_v1_population
data = make_v1_population(n_samples={n_cnn}, n_simple=4, n_complex=4, image_size=16,
                          random_state=0)
model = CNNEncoder(max_epochs=3, early_stopping=False, device="cpu", random_state=0)
model.fit(data.X, data.y)
print("SECONDS", float(np.median(model.history_[:, "dur"])))
""",
}


def run_workload(name: str, sizes: dict, busy: bool) -> float:
    """Seconds the workload reports, beside a competing process when ``busy``."""
    competitor = None
    if busy:
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it take its core
    try:
        with tempfile.TemporaryDirectory() as folder:
            completed = subprocess.run(
                [sys.executable, "-c", WORKLOADS[name].format(**sizes)], cwd=folder,
                env=None, capture_output=True, text=True, check=False,
            )
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if completed.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{completed.stderr[-2000:]}")
    return float(completed.stdout.strip().splitlines()[-1].split()[1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="demo,glm,cnn")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = set(names) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {sorted(WORKLOADS)}")
    sizes = {"n_glm": 2000 if args.quick else 20_000, "n_cnn": 500 if args.quick else 5000}

    print(machine_line(), f"| {available_cpu_count()} cores available to this process")
    already_busy = busy_cpu_count()
    if already_busy:
        print(f"WARNING: {already_busy} core(s) already busy before the benchmark; "
              "the 'quiet' figures are not quiet.")
    rows = []
    for name in names:
        quiet = min(run_workload(name, sizes, busy=False) for _ in range(args.repeats))
        busy = min(run_workload(name, sizes, busy=True) for _ in range(args.repeats))
        ratio = busy / quiet
        rows.append({"workload": name, "quiet (s)": f"{quiet:.2f}", "busy (s)": f"{busy:.2f}",
                     "busy / quiet": f"{ratio:.2f}", "target <= 2": "yes" if ratio <= 2 else "NO"})
        print(f"{name}: quiet {quiet:.2f} s, busy {busy:.2f} s, ratio {ratio:.2f}", flush=True)
    print()
    print_table(rows, ["workload", "quiet (s)", "busy (s)", "busy / quiet", "target <= 2"])
    return rows


if __name__ == "__main__":
    main()
