# Requires: sklearn-cnnenc[plot]
"""Decode a rat's position on a linear track from 31 hippocampal place cells.

Encoding model: the spike count of each unit in a 50 ms bin is Poisson with a
rate that is a smooth function of position, a PoissonGLM on a cubic B-spline
basis of position (scikit-learn's SplineTransformer). Decoder: Bayes' rule over
60 position bins with the occupancy prior, summing the log-likelihood of the
w most recent bins (``integrate_bins=w``; bins are independent given position).

Only running bins (smoothed speed above 20 px/s) train the encoder and are
scored, as is usual for place cells; the first 60% of the running time trains,
the rest tests. Prints the median decoding error in pixels for several
windows and writes ``decode_position_place_cells.png`` (posterior and decoded
position over time, place fields, error against window) and
``decode_position_place_cells.csv`` to the output folder.

Run: ``python examples/decode_position_place_cells.py [--quick]``.
"""

import os
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer

from sklearn_cnnenc import BayesianDecoder, PoissonGLM
from sklearn_cnnenc.datasets import load_hippocampus_linear_track

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CNNENC_DATA_DIR", REPO.parent / "shared" / "data"))
OUTPUT = Path(os.environ.get("CNNENC_EXAMPLES_OUTPUT", REPO / "examples" / "output"))

BIN_S = 0.05
MIN_SPEED = 20.0  # px/s: running, not resting at the ends of the track
N_POSITIONS = 60


def main(quick: bool = False) -> dict | None:
    recording = DATA_DIR / "hippocampus-linear-track"
    if not recording.is_dir():
        print(f"Skipping: the hippocampus recording is not at {recording} (set CNNENC_DATA_DIR).")
        return None
    data = load_hippocampus_linear_track(recording, bin_s=BIN_S)
    position, counts = data.position, data.counts

    # running bins, from the speed smoothed over ~0.2 s, on the track proper
    # (the outermost 0.5% on each side are the animal being put on / taken off)
    velocity = gaussian_filter1d(np.gradient(position) / BIN_S, sigma=4)
    running = data.tracked & (np.abs(velocity) > MIN_SPEED)
    low, high = np.percentile(position[running], [0.5, 99.5])
    running &= (position >= low) & (position <= high)
    running_bins = np.flatnonzero(running)
    split = running_bins[int(0.6 * len(running_bins))]
    train = running_bins[running_bins < split]
    test = slice(split, running_bins[-1] + 1)  # contiguous: windows need consecutive bins
    scored = running[test]

    # the candidate set: centres of 60 position bins; label = bin of each time bin
    edges = np.linspace(low, high, N_POSITIONS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    labels = np.clip(np.digitize(position, edges) - 1, 0, N_POSITIONS - 1)

    # alpha=1e-4 is the penalty with the best 5-fold held-out log-likelihood of
    # the encoder on the training bins (of 1e-6 .. 1e-3): encoders are chosen
    # by likelihood, not by how well they decode
    encoder = make_pipeline(SplineTransformer(n_knots=15), PoissonGLM(alpha=1e-4))
    decoder = BayesianDecoder(encoder, stimuli=centres).fit(counts[train], labels[train])

    true = position[test][scored]
    rows = []
    for window in (10,) if quick else (1, 2, 5, 10, 20, 40):
        decoder.set_params(integrate_bins=window)
        mean_error = np.abs(decoder.predict_stimulus(counts[test])[scored] - true)
        map_error = np.abs(decoder.predict_stimulus(counts[test], "map")[scored] - true)
        rows.append((window, window * BIN_S, np.median(mean_error), np.median(map_error)))
    chance = np.median(np.abs(true - np.random.RandomState(0).choice(position[train], len(true))))

    print(f"{len(train)} training and {scored.sum()} test bins of {BIN_S * 1000:.0f} ms, "
          f"{counts.shape[1]} units; track {edges[0]:.0f}-{edges[-1]:.0f} px")
    print(f"{'window (bins)':>13} {'window (s)':>10} {'median error, posterior mean (px)':>34} "
          f"{'MAP (px)':>9}")
    for window, seconds, mean_error, map_error in rows:
        print(f"{window:>13d} {seconds:>10.2f} {mean_error:>34.1f} {map_error:>9.1f}")
    print(f"chance (a random training position): {chance:.1f} px")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    table = OUTPUT / "decode_position_place_cells.csv"
    with table.open("w") as handle:
        handle.write("window_bins,window_s,median_error_px_mean,median_error_px_map\n")
        for row in rows:
            handle.write("{},{:.2f},{:.2f},{:.2f}\n".format(*row))
        handle.write(f"chance,,{chance:.2f},{chance:.2f}\n")
    figure = plot(decoder, counts[test], position[test], data.time[test], scored, rows, chance,
                  quick)
    print(f"wrote {table} and {figure}")
    best = min(rows, key=lambda row: row[2])
    return {"rows": rows, "chance": chance, "best_window": best[0], "best_error": best[2]}


def plot(decoder, counts, position, time, scored, rows, chance, quick):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), gridspec_kw={"width_ratios": [3, 1, 1]})
    decoder.set_params(integrate_bins=10)
    # the test minute with the most running
    n_shown = min(len(time), int(60 / BIN_S))
    start = int(np.argmax(np.convolve(scored.astype(float), np.ones(n_shown), mode="valid")))
    shown = slice(start, start + n_shown)
    posterior = decoder.predict_proba(counts[shown])
    centres = decoder.stimuli_
    axes[0].imshow(
        posterior.T, aspect="auto", origin="lower", cmap="Greys",
        extent=(time[shown][0], time[shown][-1], centres[0], centres[-1]),
    )
    decoded = np.where(scored[shown], posterior @ centres, np.nan)  # running bins only
    axes[0].plot(time[shown], position[shown], color="tab:blue", lw=1.5, label="true")
    axes[0].plot(time[shown], decoded, color="tab:red", lw=1, label="decoded (posterior mean)")
    axes[0].set(xlabel="time (s)", ylabel="position (px)",
                title="posterior p(position | last 0.5 s of spikes)")
    axes[0].legend(loc="lower left", fontsize="small", framealpha=0.8)

    fields = decoder.candidate_mean_ / BIN_S  # spikes/s at each candidate position
    order = np.argsort(fields.argmax(axis=0))
    axes[1].imshow((fields / fields.max(axis=0)).T[order], aspect="auto", origin="lower",
                   extent=(centres[0], centres[-1], 0, fields.shape[1]), cmap="viridis")
    axes[1].set(xlabel="position (px)", ylabel="unit (sorted by peak)",
                title="place fields (encoder)")

    windows = np.array([row[1] for row in rows])
    axes[2].plot(windows, [row[2] for row in rows], "o-", label="posterior mean")
    axes[2].plot(windows, [row[3] for row in rows], "s--", label="MAP")
    axes[2].axhline(chance, color="grey", ls=":", label="chance")
    axes[2].set(xscale="log" if not quick else "linear", xlabel="integration window (s)",
                ylabel="median error (px)", title="decoding error", ylim=(0, None))
    axes[2].legend()
    fig.tight_layout()
    path = OUTPUT / "decode_position_place_cells.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
