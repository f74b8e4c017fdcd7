"""Loaders of the two real recordings kept beside the project (see its data README).

Both take the recording's folder and return spike counts and the stimulus (or
behaviour) on one common time base, as a :class:`sklearn.utils.Bunch`.
"""

from __future__ import annotations

import os
from numbers import Real
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from scipy.signal import hilbert
from sklearn.utils import Bunch

__all__ = ["load_grasshopper_auditory", "load_hippocampus_linear_track"]

# Rokem et al. (2006): the envelope's maximum sound level, in dB SPL
_GRASSHOPPER_MAX_DB = 76.4286
_REFERENCE_PRESSURE = 2e-5
_TRACKING_HEADER_END = b"<End settings>\n"
_TRACKING_RECORD = np.dtype(
    [("time", "<u4"), ("x", "<u2"), ("y", "<u2"), ("x2", "<u2"), ("y2", "<u2")]
)
# y values the tracker writes when it loses the LED
_TRACKING_DROPOUT_Y = (1, 479)


def _folder(path, name: str) -> Path:
    """The recording folder: ``path``, or ``$CNNENC_DATA_DIR/<name>`` when it is None."""
    if path is None:
        root = os.environ.get("CNNENC_DATA_DIR")
        if not root:
            raise FileNotFoundError(
                f"No path given and $CNNENC_DATA_DIR is not set: pass the folder of the "
                f"recording, or set CNNENC_DATA_DIR to the folder that holds {name}/."
            )
        folder = Path(root) / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"Recording folder not found: {folder} ($CNNENC_DATA_DIR={root} holds no "
                f"{name}/)."
            )
        return folder
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"Recording folder not found: {folder}")
    return folder


def _check_sorted(times: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(times)):
        raise ValueError(f"{what} contain non-finite values.")
    if np.any(np.diff(times) < 0):
        first = int(np.argmax(np.diff(times) < 0))
        raise ValueError(
            f"{what} are not sorted in time: {times[first + 1]!r} follows {times[first]!r}."
        )


def load_grasshopper_auditory(path=None, bin_ms: float = 1.0, which: int = 1) -> Bunch:
    """Auditory receptor neuron of a grasshopper: sound envelope and spike counts.

    One receptor neuron recorded while a 2.5 kHz carrier, amplitude-modulated
    by Gaussian white noise (cut-off 200 Hz for ``which=1``, 800 Hz for
    ``which=2``), played for 10 s (Rokem et al. 2006; 929 and 868 spikes).

    The envelope is computed from the recorded amplitude column: a column
    with negative values is a raw carrier, whose envelope is the magnitude of
    its analytic signal (Hilbert transform; exact while the modulation stays
    below the carrier frequency); a non-negative column already *is* the
    envelope and is used as it is. The distributed files are of the second
    kind: their amplitudes are positive (a floor at -36 dB re. the maximum)
    and carry no power at 2.5 kHz, and a Hilbert transform of them would
    distort the envelope. The envelope is converted to dB,
    ``20 log10(V / 2e-5)``, averaged within each bin, and shifted so that its
    maximum is 76.4286 dB (the stimulus level of the experiment).

    Parameters
    ----------
    path : str or Path, optional
        The recording folder (e.g. ``../shared/data/grasshopper-auditory``);
        default: ``$CNNENC_DATA_DIR/grasshopper-auditory`` (a clear
        ``FileNotFoundError`` when the variable is unset).
    bin_ms : float, default=1.0
        Bin width in milliseconds; at least the 0.05 ms sampling interval.
    which : {1, 2}, default=1
        Which stimulus (and the spikes recorded with it).

    Returns
    -------
    data : Bunch
        ``stimulus`` (n_bins,) envelope in dB; ``counts`` (n_bins,) spikes per
        bin (float64); ``time`` (n_bins,) bin centres in seconds from the
        stimulus onset; ``bin_ms``; ``which``; ``spike_times`` (n_spikes,) in
        seconds, all recorded spikes.

    Raises
    ------
    ValueError
        If the stimulus samples are not evenly spaced (contiguous), the spike
        times are not sorted, or ``bin_ms`` / ``which`` are out of range.

    References
    ----------
    .. [1] Rokem, A. et al. (2006). Spike-timing precision underlies the coding
       efficiency of auditory receptor neurons. J Neurophysiol 95, 2541-2552.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import load_grasshopper_auditory
    >>> data = load_grasshopper_auditory("../shared/data/grasshopper-auditory")  # doctest: +SKIP
    >>> data.stimulus.shape, int(data.counts.sum())  # doctest: +SKIP
    ((10000,), 929)
    """
    if which not in (1, 2) or isinstance(which, bool):
        raise ValueError(f"which must be 1 or 2; got {which!r}.")
    if not isinstance(bin_ms, Real) or not np.isfinite(bin_ms) or bin_ms <= 0:
        raise ValueError(f"bin_ms must be a positive number; got {bin_ms!r}.")
    folder = _folder(path, "grasshopper-auditory")
    samples = np.loadtxt(folder / f"grasshopper_stimulus{which}.txt", ndmin=2)
    spike_us = np.loadtxt(
        folder / f"grasshopper_spike_times{which}.txt", comments="#", ndmin=1
    ).astype(float)
    if samples.shape[1] != 2 or len(samples) < 2:
        raise ValueError(
            "The stimulus file must have two columns (time in microseconds, amplitude) "
            f"and at least two rows; got shape {samples.shape}."
        )
    sample_us, amplitude = samples[:, 0], samples[:, 1]
    steps = np.diff(sample_us)
    step = float(np.median(steps))
    if step <= 0 or not np.allclose(steps, step, rtol=1e-6, atol=1e-9):
        raise ValueError(
            "The stimulus samples are not contiguous: their times must be evenly spaced "
            f"and increasing (steps from {steps.min()!r} to {steps.max()!r} microseconds)."
        )
    _check_sorted(spike_us, "Spike times")
    bin_us = 1000.0 * bin_ms
    if bin_us < step * (1 - 1e-9):
        raise ValueError(
            f"bin_ms={bin_ms} is shorter than the stimulus sampling interval "
            f"({step / 1000} ms)."
        )

    envelope = amplitude if np.all(amplitude >= 0) else np.abs(hilbert(amplitude))
    level = 20.0 * np.log10(np.maximum(envelope, np.finfo(float).tiny) / _REFERENCE_PRESSURE)

    onset = sample_us[0]
    duration = (len(sample_us)) * step
    n_bins = int(np.floor(duration / bin_us + 1e-9))
    sample_bin = np.floor((sample_us - onset) / bin_us + 1e-9).astype(int)
    inside = sample_bin < n_bins
    per_bin = np.bincount(sample_bin[inside], minlength=n_bins)
    stimulus = np.bincount(sample_bin[inside], weights=level[inside], minlength=n_bins) / per_bin
    stimulus += _GRASSHOPPER_MAX_DB - stimulus.max()

    spike_bin = np.floor((spike_us - onset) / bin_us).astype(int)
    valid = (spike_bin >= 0) & (spike_bin < n_bins)
    counts = np.bincount(spike_bin[valid], minlength=n_bins).astype(float)
    time = (onset + (np.arange(n_bins) + 0.5) * bin_us) * 1e-6
    return Bunch(
        stimulus=stimulus,
        counts=counts,
        time=time,
        bin_ms=float(bin_ms),
        which=which,
        spike_times=spike_us * 1e-6,
    )


def _units_from_mat(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """Spike times of every non-empty unit, named by 1-based tetrode and unit index."""
    contents = loadmat(path, squeeze_me=True, struct_as_record=False)
    if "spikes" not in contents:
        raise ValueError(f"{path} has no 'spikes' variable.")
    names, times = [], []
    for i, tetrode in enumerate(np.atleast_1d(contents["spikes"])):
        for j, unit in enumerate(np.atleast_1d(tetrode)):
            if not hasattr(unit, "time"):
                continue  # an unsorted slot of the tetrode
            spike_times = np.atleast_1d(np.asarray(unit.time, dtype=float))
            if spike_times.size == 0:
                continue
            name = f"tetrode{i + 1}_unit{j + 1}"
            _check_sorted(spike_times, f"Spike times of {name}")
            names.append(name)
            times.append(spike_times)
    return names, times


def _read_tracking(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (s), x (pixels) and drop-out flags of the position-tracking records."""
    raw = path.read_bytes()
    end = raw.find(_TRACKING_HEADER_END)
    if end < 0:
        raise ValueError(f"{path} has no '<End settings>' header line.")
    header = raw[:end].decode("ascii", errors="replace")
    clock_rate = 30000.0
    for line in header.splitlines():
        if line.startswith("clockrate:"):
            clock_rate = float(line.split(":", 1)[1])
    body = raw[end + len(_TRACKING_HEADER_END) :]
    n_records = len(body) // _TRACKING_RECORD.itemsize
    records = np.frombuffer(body[: n_records * _TRACKING_RECORD.itemsize], _TRACKING_RECORD)
    if n_records < 2:
        raise ValueError(f"{path} holds fewer than two tracking records.")
    ticks = records["time"].astype(np.int64)
    if np.any(np.diff(ticks) < 0):
        raise ValueError(f"The tracking timestamps of {path} are not sorted in time.")
    # a repeated timestamp is a duplicated frame: keep its first record
    first = np.concatenate([[True], np.diff(ticks) > 0])
    records, ticks = records[first], ticks[first]
    dropout = np.isin(records["y"], _TRACKING_DROPOUT_Y)
    return ticks / clock_rate, records["x"].astype(float), dropout


def load_hippocampus_linear_track(path=None, bin_s: float = 0.05) -> Bunch:
    """Hippocampal place cells of a rat running on a linear track.

    31 units (28,829 spikes) sorted from 13 tetrodes, and the animal's
    position tracked by video at 60 Hz on the same clock (from the nelpy
    example data). Spike counts are binned over the span of the tracking
    records (spikes outside it are not counted). The position is the x
    coordinate along the track in pixels, with tracking drop-outs (y of 1 or
    479) replaced by linear interpolation between the neighbouring valid
    samples (held constant before the first and after the last valid one),
    then interpolated at the bin centres.

    Parameters
    ----------
    path : str or Path, optional
        The recording folder (e.g. ``../shared/data/hippocampus-linear-track``)
        holding ``spikes.mat`` and ``trajectory.videoPositionTracking``;
        default: ``$CNNENC_DATA_DIR/hippocampus-linear-track``.
    bin_s : float, default=0.05
        Bin width in seconds.

    Returns
    -------
    data : Bunch
        ``counts`` (n_bins, 31) float64 spike counts; ``position`` (n_bins,)
        x in pixels; ``time`` (n_bins,) bin centres in seconds (the spikes'
        clock); ``tracked`` (n_bins,) bool, False where the bin overlaps a
        drop-out; ``unit_names`` list of str such as ``"tetrode3_unit2"``
        (1-based tetrode and unit indices of ``spikes.mat``); ``bin_s``;
        ``spike_times`` list of the units' spike times in seconds (all
        spikes, including any outside the tracked span).

    Raises
    ------
    ValueError
        If a unit's spike times or the tracking timestamps are not sorted,
        or ``bin_s`` is not positive or longer than the recording.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import load_hippocampus_linear_track
    >>> data = load_hippocampus_linear_track(
    ...     "../shared/data/hippocampus-linear-track")  # doctest: +SKIP
    >>> data.counts.shape[1], len(data.unit_names)  # doctest: +SKIP
    (31, 31)
    """
    if not isinstance(bin_s, Real) or not np.isfinite(bin_s) or bin_s <= 0:
        raise ValueError(f"bin_s must be a positive number; got {bin_s!r}.")
    folder = _folder(path, "hippocampus-linear-track")
    names, spike_times = _units_from_mat(folder / "spikes.mat")
    if not names:
        raise ValueError(f"{folder / 'spikes.mat'} holds no unit with spikes.")
    times, x, dropout = _read_tracking(folder / "trajectory.videoPositionTracking")
    if np.all(dropout):
        raise ValueError("Every tracking record is a drop-out; no position to interpolate.")
    x_clean = np.interp(times, times[~dropout], x[~dropout])

    start, stop = times[0], times[-1]
    n_bins = int(np.floor((stop - start) / bin_s + 1e-9))
    if n_bins < 1:
        raise ValueError(
            f"bin_s={bin_s} is longer than the tracked span ({stop - start:.3f} s)."
        )
    edges = start + bin_s * np.arange(n_bins + 1)
    centres = edges[:-1] + 0.5 * bin_s
    position = np.interp(centres, times, x_clean)
    # untracked: a drop-out sample inside the bin, or next to its centre
    dropouts_in_bin = np.histogram(times[dropout], bins=edges)[0] > 0
    near_dropout = np.interp(centres, times, dropout.astype(float)) > 0
    tracked = ~(dropouts_in_bin | near_dropout)

    n_units = len(names)
    unit = np.repeat(np.arange(n_units), [len(t) for t in spike_times])
    spike_bin = np.searchsorted(edges, np.concatenate(spike_times), side="right") - 1
    valid = (spike_bin >= 0) & (spike_bin < n_bins)
    counts = np.bincount(
        spike_bin[valid] * n_units + unit[valid], minlength=n_bins * n_units
    ).reshape(n_bins, n_units).astype(float)
    return Bunch(
        counts=counts,
        position=position,
        time=centres,
        tracked=tracked,
        unit_names=names,
        bin_s=float(bin_s),
        spike_times=spike_times,
    )
