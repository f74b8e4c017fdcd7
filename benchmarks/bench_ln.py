"""LNModel against a hand-written torch fit, on an energy-model (complex) cell.

The cell (issue 15): ``rate = 0.2 * ((w1 . x)^2 + (w2 . x)^2) + 0.05`` spikes per
bin, Poisson, 16-dimensional white noise, 6,000 training and 20,000 test samples.
``w1`` and ``w2`` are orthonormal filters in quadrature.

* the oracle: the true rate, scored on the test set (bits/spike);
* the hand fit: twenty lines of torch, identity link on the sum of squares plus
  a positive baseline, ``torch.optim.LBFGS``, three restarts, the best kept;
* ``LNModel(n_filters=2, nonlinearity="square", n_init=3)`` with its defaults;
* a relu LN model on a simple (LN) cell, timed the same way, for reference.

All fits run in this one process, back to back, so the time ratios hold even
on a busy machine. Run: ``python benchmarks/bench_ln.py [--quick]``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from _common import best_time, machine_line, print_table

from sklearn_cnnenc import LNModel
from sklearn_cnnenc.datasets import make_energy_model_data, make_ln_data
from sklearn_cnnenc.metrics import bits_per_spike


def energy_cell(n_train: int = 6000, n_test: int = 20000, n_features: int = 16, seed: int = 0):
    """White noise and Poisson counts of the issue's energy-model cell."""
    filters = make_energy_model_data(n_samples=100, n_lags=n_features, random_state=0).filters
    w = filters.reshape(2, -1)
    w = np.linalg.qr(w.T)[0].T  # exactly orthonormal
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, n_features))
    rate = 0.2 * ((X @ w.T) ** 2).sum(axis=1) + 0.05
    y = rng.poisson(rate).astype(float)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:], rate[n_train:]


def hand_fit(X: np.ndarray, y: np.ndarray, n_init: int = 3, seed: int = 0):
    """Twenty lines of torch: identity link on a sum of squares plus exp(b), LBFGS, restarts."""
    torch.manual_seed(seed)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    best = (np.inf, None)
    for _ in range(n_init):
        W = (0.3 * torch.randn(2, X.shape[1], dtype=torch.float64)).requires_grad_()
        b = torch.tensor(np.log(y.mean() / 2), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], max_iter=500, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-6, tolerance_change=1e-10)

        def closure(W=W, b=b, opt=opt):
            opt.zero_grad()
            rate = ((Xt @ W.T) ** 2).sum(dim=1) + torch.exp(b)
            loss = (rate - yt * torch.log(rate)).mean()
            loss.backward()
            return loss

        opt.step(closure)
        loss = float(closure().detach())
        if loss < best[0]:
            best = (loss, (W.detach().clone(), b.detach().clone()))
    W, b = best[1]
    return lambda Z: (((torch.as_tensor(Z) @ W.T) ** 2).sum(dim=1) + torch.exp(b)).numpy()


def energy(repeats: int) -> None:
    X, y, X_test, y_test, rate_test = energy_cell()
    oracle = bits_per_spike(y_test, rate_test)
    hand_time, hand = best_time(lambda: hand_fit(X, y), repeats)
    ours_time, ours = best_time(
        lambda: LNModel(n_filters=2, nonlinearity="square", n_init=3, random_state=0).fit(X, y),
        repeats,
    )
    softplus_time, softplus = best_time(
        lambda: LNModel(n_filters=2, nonlinearity="square", n_init=3, link="softplus",
                        random_state=0).fit(X, y),
        repeats,
    )
    rows = []
    for name, seconds, predict in [
        ("hand torch fit (identity link, LBFGS, 3 restarts)", hand_time, hand),
        (f"LNModel(2, 'square', n_init=3) [link={ours.link_.name}]", ours_time, ours.predict),
        ("LNModel(2, 'square', n_init=3, link='softplus')", softplus_time, softplus.predict),
    ]:
        score = bits_per_spike(y_test, predict(X_test))
        rows.append({
            "fit": name,
            "time (s)": f"{seconds:.3f}",
            "time / hand": f"{seconds / hand_time:.2f}x",
            "bits/spike": f"{score:.4f}",
            "of oracle": f"{score / oracle:.3f}",
        })
    print(f"\n### Energy cell, 6,000 x 16, oracle {oracle:.4f} bits/spike\n")
    print_table(rows, ["fit", "time (s)", "time / hand", "bits/spike", "of oracle"])


def relu(repeats: int) -> None:
    data = make_ln_data(n_samples=20000, n_lags=16, random_state=0)
    X, y = data.X[:10000], data.y[:10000]
    X_test, y_test = data.X[10000:], data.y[10000:]
    oracle = bits_per_spike(y_test, data.mean[10000:])
    rows = []
    for nonlinearity in ("relu", "softplus"):
        seconds, model = best_time(
            lambda nonlinearity=nonlinearity: LNModel(1, nonlinearity, n_init=3,
                                                      random_state=0).fit(X, y),
            repeats,
        )
        score = bits_per_spike(y_test, model.predict(X_test))
        rows.append({"fit": f"LNModel(1, {nonlinearity!r}, n_init=3)",
                     "time (s)": f"{seconds:.3f}", "iterations": model.n_iter_,
                     "bits/spike": f"{score:.4f}", "of oracle": f"{score / oracle:.3f}"})
    print(f"\n### Simple (LN) cell, 10,000 x 16, oracle {oracle:.4f} bits/spike\n")
    print_table(rows, ["fit", "time (s)", "iterations", "bits/spike", "of oracle"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat instead of three")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"Machine: {machine_line()}")
    LNModel(2, "square", n_init=1).fit(*energy_cell(500, 10)[:2])  # torch start-up cost
    energy(repeats)
    relu(repeats)


if __name__ == "__main__":
    main()
