# Requires: sklearn-cnnenc
"""Several sessions, different neurons, running speed: one CNN with a shared core.

Three simulated sessions record overlapping sets of neurons (session 1:
neurons 0-9, session 2: 5-14, session 3: 10-19), each with its own images and
its own running speed, which multiplies every rate by a per-neuron gain. The
sessions are stacked into one response matrix that is NaN wherever a neuron
was not recorded, and one ``CNNEncoder(missing_responses="mask")`` is
trained on all of it: the convolutional core is shared by every session, each
neuron's readout learns from its own sessions only. Passing the running speed
as ``behavior=`` adds the Sensorium-style gain modulator.

Held-out sessions (new images, new running) score each model by log-likelihood
on the observed entries and by the correlation of each neuron's prediction
with its true rate. Writes ``multi_session_scores.csv`` to
``examples/output/`` (or ``$CNNENC_EXAMPLES_OUTPUT``).
"""

import os
import sys
from pathlib import Path

import numpy as np

from sklearn_cnnenc import CNNEncoder

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))
SESSIONS = [range(0, 10), range(5, 15), range(10, 20)]  # neurons recorded in each
N_NEURONS = 20
SIZE = 10


def simulate(n_per_session, rng, cells):
    """NaN-padded responses of the sessions, their images, running speed and true rates."""
    positions, orientation, run_gain = cells
    kernel = np.zeros((3, 3))
    kernel[:, 0], kernel[:, 2] = -1.0, 1.0
    kernels = np.stack([kernel, kernel.T])
    Xs, runs, rates, ys = [], [], [], []
    for neurons in SESSIONS:
        X = rng.normal(size=(n_per_session, 1, SIZE, SIZE)).astype(np.float32)
        run = np.abs(rng.normal(size=(n_per_session, 1))).astype(np.float32)
        drive = np.stack([
            np.maximum((X[:, 0, r - 1 : r + 2, c - 1 : c + 2] * kernels[o]).sum((1, 2)), 0)
            for (r, c), o in zip(positions, orientation, strict=True)
        ], axis=1)
        rate = np.exp(-0.5 + 0.6 * drive + run_gain * (run - 0.8))
        y = np.full((n_per_session, N_NEURONS), np.nan, np.float32)
        y[:, list(neurons)] = rng.poisson(rate[:, list(neurons)])
        Xs.append(X), runs.append(run), rates.append(rate), ys.append(y)
    return np.concatenate(Xs), np.concatenate(runs), np.concatenate(rates), np.concatenate(ys)


def main(quick=False):
    rng = np.random.RandomState(0)
    cells = (
        [(rng.randint(2, SIZE - 2), rng.randint(2, SIZE - 2)) for _ in range(N_NEURONS)],
        rng.randint(0, 2, N_NEURONS),
        rng.uniform(0.3, 0.8, N_NEURONS),
    )
    n = 300 if quick else 1500
    X, run, _, y = simulate(n, rng, cells)
    X_test, run_test, rate_test, y_test = simulate(300, rng, cells)
    observed = ~np.isnan(y)
    print(f"{len(y)} trials x {N_NEURONS} neurons, {observed.mean():.0%} observed "
          f"(mask: {observed.nbytes / 1e3:.0f} kB, responses: {y.nbytes / 1e3:.0f} kB)")

    params = dict(n_layers=1, channels=4, kernel_size=3, padding="same", batch_norm=False,
                  gamma_input=0.0, link="exp", lr=1e-2, batch_size=64,
                  max_epochs=30 if quick else 150, patience=10 if quick else 20,
                  missing_responses="mask", device="cpu", random_state=0)
    models = {
        "shared core": (CNNEncoder(**params), {}, {}),
        "shared core + running": (
            CNNEncoder(**params, modulator_hidden_units=8),
            {"behavior": run}, {"behavior": run_test},
        ),
    }
    rows = []
    for name, (model, fit_covariates, test_covariates) in models.items():
        model.fit(X, y, **fit_covariates)
        held_out = model.score(X_test, y_test, **test_covariates)
        prediction = model.predict(X_test, **test_covariates)
        correlation = np.array([np.corrcoef(prediction[:, j], rate_test[:, j])[0, 1]
                                for j in range(N_NEURONS)])
        rows.append((name, held_out, correlation.mean(), correlation.min()))
        print(f"{name:24s} held-out log-likelihood {held_out:.3f} nats/entry; "
              f"correlation with the true rate: mean {correlation.mean():.2f}, "
              f"worst neuron {correlation.min():.2f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "multi_session_scores.csv"
    with path.open("w") as out:
        out.write("model,held_out_log_likelihood,mean_correlation,min_correlation\n")
        for name, held_out, mean, worst in rows:
            out.write(f"{name},{held_out:.4f},{mean:.4f},{worst:.4f}\n")
    print(f"Wrote {path}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
