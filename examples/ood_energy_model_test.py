# Requires: sklearn-cnnenc[plot]
"""Out-of-distribution test of mechanism: which model works like an energy model?

Data: ``make_v1_population`` complex cells, simulated as energy models
(Adelson & Bergen 1985): each squares and sums the outputs of two Gabor
filters in quadrature, so it responds to local contrast energy and ignores
local phase (edge or line, light or dark). The ground truth is known, so it
is run as a model too.

Models: a ``PoissonGLM`` on the pixels (ridge strength by 3-fold
cross-validation) and a ``CNNEncoder`` with its defaults, both fitted on
natural image patches.

Tests, all on stimuli unlike the training set:

1. phase invariance index (``inspection.phase_invariance_index``): the
   correlation between a neuron's predicted responses to held-out patches
   and to copies whose local phase is turned by a random angle along the
   neuron's preferred orientation (found with gratings, for each model
   separately): 1 for a phase-blind mechanism, 0 for a linear one;
2. gratings at each neuron's true preferred orientation and frequency,
   shifted in phase: the modulation ratio F1/F0 of the phase tuning curve
   (physiology's simple/complex criterion, Skottun et al. 1991: below 1 for
   complex cells, above 1 for simple cells; F0 without the spontaneous rate);
3. the reference chapter's phase scramble (``stimuli.phase_scramble``):
   images with the patches' amplitude spectra and random Fourier phases; how
   well each model still predicts the true rates (correlation).

Prints a table and writes ``ood_energy_model_test.png`` and
``ood_energy_model_test.csv`` to the output folder.

Run: ``python examples/ood_energy_model_test.py [--quick]``.
"""

import os
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.inspection import phase_invariance_index, preferred_grating
from sklearn_cnnenc.metrics import bits_per_spike
from sklearn_cnnenc.stimuli import gratings, phase_scramble

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))
N_PHASES = 16


def energy_model(data):
    """The simulated neurons as a function: ``a + b (even . x)^2 + c (odd . x)^2``.

    ``make_v1_population`` returns the filters and the true rates; the three
    coefficients of every neuron follow from them by least squares (exactly).
    """
    even = data.filters.reshape(len(data.filters), -1)
    odd = data.filters_quadrature.reshape(len(data.filters), -1)

    def drives(X):
        flat = X.reshape(len(X), -1)
        return (flat @ even.T) ** 2, (flat @ odd.T) ** 2

    even2, odd2 = drives(data.X)
    ones = np.ones(len(data.X))
    coefs = np.array([
        np.linalg.lstsq(np.column_stack([ones, even2[:, k], odd2[:, k]]), data.mean[:, k],
                        rcond=None)[0]
        for k in range(len(even))
    ])

    def rates(X):
        even2, odd2 = drives(np.asarray(X))
        return coefs[:, 0] + coefs[:, 1] * even2 + coefs[:, 2] * odd2

    return rates


def modulation_ratio(curve, spontaneous):
    """F1/F0 of phase tuning curves sampled at evenly spaced phases, per neuron.

    As physiologists do, F0 is the mean response minus the spontaneous rate
    (the response to a blank screen): a neuron that barely responds to the
    grating must not look phase invariant.
    """
    phases = np.arange(len(curve)) * 2 * np.pi / len(curve)
    f1 = 2 * np.abs((curve * np.exp(-1j * phases)[:, None]).mean(axis=0))
    return f1 / (curve.mean(axis=0) - spontaneous)


def main(quick: bool = False) -> dict:
    n_train, n_test = (300, 100) if quick else (5000, 1000)
    n_neurons = 4 if quick else 8
    data = make_v1_population(n_train + n_test, n_simple=0, n_complex=n_neurons,
                              random_state=0)
    X_train, X_test = data.X[:n_train], data.X[n_train:]
    y_train, y_test = data.y[:n_train], data.y[n_train:]
    truth = energy_model(data)

    glm = GridSearchCV(PoissonGLM(), {"alpha": [1.0, 10.0, 100.0]}, cv=3)
    glm.fit(X_train.reshape(n_train, -1), y_train)
    cnn = CNNEncoder(max_epochs=2 if quick else 100, random_state=0).fit(X_train, y_train)
    models = {
        "energy model (truth)": truth,
        "CNN": cnn.predict,
        "GLM": lambda X: glm.predict(X.reshape(len(X), -1)),
    }

    # stimuli unlike the training set: phase-shifted copies, gratings, scrambles
    probes = X_test[: 100 if quick else 300]
    best = preferred_grating(truth, image_shape=(16, 16), orientations=32,
                             frequencies=np.linspace(0.05, 0.45, 17))
    phases = np.arange(N_PHASES) * 2 * np.pi / N_PHASES
    curves, results = {}, {}
    scrambled = phase_scramble(X_test, random_state=0)
    target = truth(scrambled)
    for name, model in models.items():
        invariance = phase_invariance_index(model, probes, random_state=0).index
        # each neuron's phase tuning at its own preferred grating
        grids = [gratings(16, orientation=best.orientation[k], frequency=best.frequency[k],
                          phase=phases) for k in range(n_neurons)]
        responses = np.stack([model(grid.X)[:, k] for k, grid in enumerate(grids)], axis=1)
        prediction = model(scrambled)
        accuracy = np.array([np.corrcoef(prediction[:, k], target[:, k])[0, 1]
                             for k in range(n_neurons)])
        bits = bits_per_spike(y_test, model(X_test), y_train.mean(axis=0),
                              multioutput="raw_values")
        spontaneous = model(np.zeros((1, 16, 16)))[0]
        curves[name] = (responses, spontaneous)
        results[name] = dict(invariance=invariance,
                             f1_f0=modulation_ratio(responses, spontaneous),
                             scrambled=accuracy, bits=bits)

    print(f"{n_neurons} complex cells, {n_train} training patches; GLM alpha = "
          f"{glm.best_params_['alpha']}")
    # means over neurons; the median for F1/F0, which explodes when a neuron's
    # driven mean response F0 is near zero (a linear neuron)
    print(f"{'model':22s} {'bits/spike':>10s} {'phase inv.':>10s} {'F1/F0':>7s} "
          f"{'r (scrambled)':>13s}")
    for name, r in results.items():
        print(f"{name:22s} {r['bits'].mean():10.2f} {np.nanmean(r['invariance']):10.2f} "
              f"{np.nanmedian(r['f1_f0']):7.2f} {np.nanmean(r['scrambled']):13.2f}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    columns = ["bits", "invariance", "f1_f0", "scrambled"]
    table = np.column_stack([results[name][c] for name in results for c in columns])
    header = ",".join(f"{name}:{c}" for name in results for c in columns)
    np.savetxt(OUTPUT / "ood_energy_model_test.csv", table, delimiter=",", fmt="%.4f",
               header=header + " (one row per neuron)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    rng = np.random.default_rng(0)
    shown = int(np.argmax(results["GLM"]["bits"]))  # the GLM's best neuron
    for position, (name, r) in enumerate(results.items()):
        for axis, key in ((axes[0], "invariance"), (axes[2], "scrambled")):
            axis.bar(position, np.nanmean(r[key]), color=f"C{position}", alpha=0.6)
            axis.scatter(position + rng.uniform(-0.2, 0.2, n_neurons), r[key], s=10, color="k")
        responses, spontaneous = curves[name]
        axes[1].plot(np.degrees(phases), responses[:, shown], marker="o", markersize=3,
                     color=f"C{position}", label=name)
        axes[1].axhline(spontaneous[shown], color=f"C{position}", linestyle="--",
                        linewidth=0.8)
    for axis, label in ((axes[0], "phase invariance index"),
                        (axes[2], "correlation with truth\non phase-scrambled images")):
        axis.set_xticks(range(len(results)), ["truth", "CNN", "GLM"])
        axis.set_ylabel(label)
        axis.axhline(0.0, color="0.5", linewidth=0.8)
    axes[1].set(xlabel="grating phase (degrees)", ylabel="predicted spikes per patch",
                title=f"neuron {shown} at its preferred grating (dashed: blank screen)")
    axes[1].legend(frameon=False, fontsize=8)
    path = OUTPUT / "ood_energy_model_test.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"written {path}")
    return {name: {key: float(np.nanmedian(value) if key == "f1_f0" else np.nanmean(value))
                   for key, value in r.items()}
            for name, r in results.items()}


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
