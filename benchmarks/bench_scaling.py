"""How the cost grows with the work: fit, epoch and decoding times on log-log axes.

Measured in one run, next to the anchors where they apply:

* GLM fit time vs samples ``n`` (1 neuron; sklearn ``PoissonRegressor`` lbfgs and
  newton-cholesky, glum if installed, all on the same data);
* GLM fit time vs neurons (one batched ``PoissonGLM`` fit vs a loop of sklearn lbfgs);
* LN fit time vs ``n`` (energy model, ``LNModel(2, "square", n_init=3)``; a softplus LN);
* CNN epoch time vs ``n`` and vs image size (``CNNEncoder`` defaults, CPU);
* decoder time vs the number of candidate stimuli (``BayesianDecoder.predict_proba``).

Each series gets its fitted log-log slope (1 = linear cost). The figure is
saved to ``docs/images/scaling.png``. Run: ``python benchmarks/bench_scaling.py
[--quick]`` (``--quick``: small sizes, under a minute on a laptop core; the full
sizes are n = 1e4 ... 1e6 samples and 1 ... 200 neurons).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from _common import machine_line, print_table
from sklearn.linear_model import PoissonRegressor

from sklearn_cnnenc import BayesianDecoder, CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data, make_v1_population

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "images" / "scaling.png"

SIZES = {
    "quick": dict(glm_n=[2_000, 6_000, 20_000, 60_000], glm_p=20,
                  neurons=[1, 4, 16, 40], neurons_n=4_000,
                  ln_n=[1_000, 3_000, 10_000], cnn_n=[300, 600, 1_200],
                  cnn_size=[12, 16, 24], cnn_size_n=300,
                  candidates=[100, 300, 1_000], decoder_responses=300, repeats=1),
    "full": dict(glm_n=[10_000, 30_000, 100_000, 300_000, 1_000_000], glm_p=20,
                 neurons=[1, 5, 20, 50, 200], neurons_n=50_000,
                 ln_n=[10_000, 30_000, 100_000, 300_000], cnn_n=[2_000, 5_000, 10_000, 20_000],
                 cnn_size=[16, 24, 32, 48, 64], cnn_size_n=2_000,
                 candidates=[100, 300, 1_000, 3_000, 10_000], decoder_responses=5_000,
                 repeats=2),
}


def timed(function, repeats: int = 1) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def slope(x, t) -> float:
    return float(np.polyfit(np.log(x), np.log(t), 1)[0])


def glm_vs_samples(size: dict) -> dict:
    anchors = {
        "PoissonGLM": lambda X, y: PoissonGLM(alpha=0).fit(X, y),
        "sklearn lbfgs": lambda X, y: PoissonRegressor(alpha=0, max_iter=1000).fit(X, y),
        "sklearn newton-cholesky": lambda X, y: PoissonRegressor(
            alpha=0, solver="newton-cholesky", max_iter=1000).fit(X, y),
    }
    try:
        import glum

        anchors["glum"] = lambda X, y: glum.GeneralizedLinearRegressor(
            family="poisson", alpha=0).fit(X, y)
    except ImportError:
        pass
    series = {name: [] for name in anchors}
    for n in size["glm_n"]:
        data = make_glm_data(n, size["glm_p"], n_neurons=1, random_state=0)
        for name, fit in anchors.items():
            series[name].append(
                timed(lambda fit=fit, data=data: fit(data.X, data.y), size["repeats"]))
    return {"x": size["glm_n"], "series": series, "xlabel": "samples n",
            "title": f"GLM fit, 1 neuron, {size['glm_p']} features"}


def glm_vs_neurons(size: dict) -> dict:
    series = {"PoissonGLM (one batched fit)": [], "loop of sklearn lbfgs": []}
    for k in size["neurons"]:
        data = make_glm_data(size["neurons_n"], 20, n_neurons=k, random_state=1)
        Y = data.y.reshape(len(data.y), -1)
        series["PoissonGLM (one batched fit)"].append(
            timed(lambda X=data.X, Y=Y: PoissonGLM(alpha=0).fit(X, Y), size["repeats"]))
        series["loop of sklearn lbfgs"].append(timed(lambda X=data.X, Y=Y: [
            PoissonRegressor(alpha=0, max_iter=1000).fit(X, Y[:, j]) for j in range(Y.shape[1])
        ]))
    return {"x": size["neurons"], "series": series, "xlabel": "neurons",
            "title": f"GLM fit, {size['neurons_n']:,} x 20"}


def ln_vs_samples(size: dict) -> dict:
    rng = np.random.default_rng(0)
    w = np.linalg.qr(rng.standard_normal((16, 2)))[0].T
    series = {"LNModel(2, 'square', n_init=3)": [], "LNModel(1, 'softplus', n_init=3)": []}
    for n in size["ln_n"]:
        X = rng.standard_normal((n, 16))
        y = rng.poisson(0.2 * ((X @ w.T) ** 2).sum(axis=1) + 0.05).astype(float)
        for name, (k, nonlinearity) in zip(series, [(2, "square"), (1, "softplus")],
                                           strict=True):
            series[name].append(timed(
                lambda k=k, nonlinearity=nonlinearity, X=X, y=y: LNModel(
                    k, nonlinearity, n_init=3, random_state=0).fit(X, y), size["repeats"]))
    return {"x": size["ln_n"], "series": series, "xlabel": "samples n",
            "title": "LN fit, 16 features"}


def _epoch_time(n: int, image_size: int) -> float:
    data = make_v1_population(n, n_simple=4, n_complex=4, image_size=image_size, random_state=0)
    model = CNNEncoder(max_epochs=3, early_stopping=False, device="cpu", random_state=0)
    model.fit(data.X, data.y)
    return float(np.median(model.history_[1:, "dur"]))  # first epoch: warm-up


def cnn_vs_samples(size: dict) -> dict:
    times = [_epoch_time(n, 16) for n in size["cnn_n"]]
    return {"x": size["cnn_n"], "series": {"CNNEncoder epoch (16x16 px)": times},
            "xlabel": "samples n", "title": "CNN epoch, CPU"}


def cnn_vs_image_size(size: dict) -> dict:
    sizes = size["cnn_size"]
    times = [_epoch_time(size["cnn_size_n"], s) for s in sizes]
    return {"x": [s * s for s in sizes],
            "series": {f"CNNEncoder epoch ({size['cnn_size_n']:,} images)": times},
            "xlabel": "pixels per image", "title": "CNN epoch vs image size, CPU"}


def decoder_vs_candidates(size: dict) -> dict:
    data = make_glm_data(2000, 8, n_neurons=50, modulation=1.0, random_state=0)
    encoder = PoissonGLM(alpha=1e-3).fit(data.X, data.y)
    rng = np.random.RandomState(1)
    times = []
    for c in size["candidates"]:
        stimuli = rng.standard_normal((c, 8))
        labels = rng.randint(c, size=size["decoder_responses"])
        Y = encoder.sample(stimuli[labels], random_state=2)
        decoder = BayesianDecoder(encoder, stimuli, "uniform", prefit=True).fit(Y, labels)
        times.append(timed(lambda decoder=decoder, Y=Y: decoder.predict_proba(Y),
                           size["repeats"]))
    return {"x": size["candidates"],
            "series": {f"predict_proba ({size['decoder_responses']:,} responses x 50 neurons)":
                       times},
            "xlabel": "candidate stimuli", "title": "Bayesian decoding"}


def report(panel: dict) -> None:
    print(f"\n### {panel['title']}\n")
    rows = []
    for name, times in panel["series"].items():
        row = {"series": name, "slope": f"{slope(panel['x'], times):.2f}"}
        row.update({f"{x:,}": f"{t:.3f}" for x, t in zip(panel["x"], times, strict=True)})
        rows.append(row)
    print_table(rows, ["series", *[f"{x:,}" for x in panel["x"]], "slope"])


def figure(panels: list[dict], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, panel in zip(axes.flat, panels, strict=False):
        for name, times in panel["series"].items():
            label = f"{name}: slope {slope(panel['x'], times):.2f}"
            ax.loglog(panel["x"], times, "o-", label=label)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel("seconds")
        ax.set_title(panel["title"], fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Cost as the work grows (log-log; slope 1 = linear). {subtitle}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"\nFigure saved to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 minute)")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    warnings.filterwarnings("ignore")
    machine = machine_line()
    print(f"Machine: {machine}; mode: {mode}")
    warm_up = make_glm_data(500, 5, random_state=0)
    PoissonGLM().fit(warm_up.X, warm_up.y)  # torch's one-off start-up cost
    panels = []
    for measure in (glm_vs_samples, glm_vs_neurons, ln_vs_samples, cnn_vs_samples,
                    cnn_vs_image_size, decoder_vs_candidates):
        start = time.perf_counter()
        panels.append(measure(size))
        report(panels[-1])
        print(f"({time.perf_counter() - start:.1f} s)")
    figure(panels, args.figure, f"{mode} sizes; {machine}")


if __name__ == "__main__":
    main()
