"""Reading users' data files and saving fitted models.

* :func:`load_npz`: arrays ``X``, ``y`` (and optional ``groups``,
  ``behavior``, ``eye_position``) in a ``.npz``.
* :func:`load_hdf5`: datasets ``X``, ``y`` (and optional ``groups``) of an
  HDF5 file; ``X`` stays on disk as a :class:`~sklearn_cnnenc.data.LazyArray`
  that :class:`~sklearn_cnnenc.CNNEncoder` streams (needs ``h5py``: ``pip
  install 'sklearn-cnnenc[hdf5]'``).
* :func:`load_nwb`: a stimulus ``TimeSeries`` / image stack and the ``units``
  table of a Neurodata Without Borders file, binned into spike counts
  (needs the optional ``pynwb``: ``pip install 'sklearn-cnnenc[nwb]'``).
* :func:`save_model` / :func:`load_model`: joblib files that record the
  library, scikit-learn and torch versions, and refuse models saved by an
  incompatible version with a clear message.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import joblib
import numpy as np
import sklearn
import torch
from sklearn.utils import Bunch

__all__ = ["bin_spike_times", "load_hdf5", "load_npz", "load_nwb", "save_model", "load_model"]

_FORMAT = "sklearn-cnnenc-model"


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    return path


def load_npz(path: str | Path, *, require_y: bool = True) -> Bunch:
    """Load ``X``, ``y`` and optional ``groups``, ``behavior``, ``eye_position`` from a ``.npz``.

    Parameters
    ----------
    path : str or Path
    require_y : bool, default=True
        Refuse a file without ``y``; with ``False`` (stimuli to predict on)
        ``y`` is None when absent.

    Returns
    -------
    data : Bunch
        ``X``, ``y``, ``groups``, ``behavior`` and ``eye_position`` (None
        when absent). ``behavior`` is (n_samples, n_covariates) behaviour
        (running speed, pupil size ...); ``eye_position`` is (n_samples, 2)
        (horizontal, vertical), for the shifter of
        ``CNNEncoder(readout="gaussian")``; ``y`` may hold NaN for neurons not
        recorded in a sample (fit with ``missing_responses="mask"``).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_cnnenc.io import load_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, X=np.zeros((4, 2)), y=np.ones(4))
    >>> load_npz(path).X.shape
    (4, 2)
    >>> np.savez(path, X=np.zeros((4, 2)), y=np.ones(4), eye_position=np.zeros((4, 2)))
    >>> load_npz(path).eye_position.shape
    (4, 2)
    """
    path = _existing_file(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); expected a .npz archive with X and y.")
    if not zipfile.is_zipfile(path):
        # a renamed .npy, a text file, a truncated archive...
        raise ValueError(
            f"{path} is not a readable .npz archive (not a zip of arrays as numpy.savez "
            "writes: a renamed .npy, a text or truncated file?); "
            "save X and y with numpy.savez(path, X=X, y=y)."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = ("X", "y", "groups", "behavior", "eye_position")
            arrays = {name: archive[name] for name in names if name in archive.files}
            files = sorted(archive.files)
    except (ValueError, OSError, zipfile.BadZipFile, AttributeError, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npz archive ({error}).") from error
    missing = [name for name in (("X", "y") if require_y else ("X",)) if name not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks the array(s) {missing}; it holds {files} "
            "(expected X: stimuli, y: responses, optional groups)."
        )
    X, y, groups = arrays["X"], arrays.get("y"), arrays.get("groups")
    for name, array in (("X", X), ("y", y), ("groups", groups)):
        if array is not None and array.ndim == 0:
            raise ValueError(
                f"{name} in {path} is a 0-d array (a single value); expected one entry per "
                "sample along the first axis."
            )
        if array is not None and name != "groups" and array.dtype.kind not in "biuf":
            raise TypeError(f"{name} in {path} has dtype {array.dtype}; expected numbers.")
    if len(X) == 0:
        raise ValueError(f"X in {path} has no samples (shape {X.shape}).")
    if y is not None and len(X) != len(y):
        raise ValueError(f"X has {len(X)} samples but y has {len(y)} in {path}.")
    if groups is not None and len(groups) != len(X):
        raise ValueError(f"groups has {len(groups)} entries but X has {len(X)} in {path}.")
    behavior = arrays.get("behavior")
    if behavior is not None and len(behavior) != len(X):
        raise ValueError(f"behavior has {len(behavior)} rows but X has {len(X)} in {path}.")
    eye_position = arrays.get("eye_position")
    if eye_position is not None:
        if eye_position.dtype.kind not in "biuf":
            raise TypeError(f"eye_position in {path} has dtype {eye_position.dtype}; expected "
                            "numbers.")
        if eye_position.ndim != 2 or eye_position.shape[1] != 2:
            raise ValueError(f"eye_position in {path} has shape {eye_position.shape}; expected "
                             "(n_samples, 2): horizontal and vertical eye position per sample.")
        if len(eye_position) != len(X):
            raise ValueError(f"eye_position has {len(eye_position)} rows but X has {len(X)} "
                             f"in {path}.")
    return Bunch(X=X, y=y, groups=groups, behavior=behavior, eye_position=eye_position)


def load_hdf5(path: str | Path, *, X: str = "X", y: str = "y", groups: str = "groups") -> Bunch:
    """Open ``X`` lazily and load ``y`` (and optional ``groups``) from an HDF5 file.

    ``X`` is not read: it is a :class:`~sklearn_cnnenc.data.LazyArray` over
    the HDF5 dataset, which :class:`~sklearn_cnnenc.CNNEncoder` streams in
    mini-batches (a stimulus set larger than memory). Responses and groups
    are small and are read into memory. The file stays open for reading as
    long as ``X`` is used.

    Parameters
    ----------
    path : str or Path
    X, y, groups : str
        Names of the datasets in the file.

    Returns
    -------
    data : Bunch
        ``X`` (LazyArray), ``y`` (ndarray) and ``groups`` (None when absent).

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> from sklearn_cnnenc.io import load_hdf5
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f["X"] = np.zeros((4, 3, 3), dtype=np.float32)
    ...     f["y"] = np.ones(4)
    >>> data = load_hdf5(path)
    >>> type(data.X).__name__, data.X.shape, data.y.shape
    ('LazyArray', (4, 3, 3), (4,))
    """
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - optional dependency
        raise ImportError(
            "Reading HDF5 files needs h5py: pip install 'sklearn-cnnenc[hdf5]'."
        ) from error
    from .data import open_array

    path = _existing_file(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file ({error}).") from error
    missing = [name for name in (X, y) if name not in handle]
    if missing:
        names = sorted(handle.keys())
        handle.close()
        raise ValueError(
            f"{path} lacks the dataset(s) {missing}; it holds {names} "
            "(expected X: stimuli, y: responses, optional groups)."
        )
    stimuli = open_array(handle[X])
    responses = np.asarray(handle[y])
    labels = np.asarray(handle[groups]) if groups in handle else None
    if len(stimuli) != len(responses):
        raise ValueError(f"X has {len(stimuli)} samples but y has {len(responses)} in {path}.")
    if labels is not None and len(labels) != len(responses):
        raise ValueError(f"groups has {len(labels)} entries but y has {len(responses)} in {path}.")
    return Bunch(X=stimuli, y=responses, groups=labels)


def _find_time_series(nwbfile, name: str | None):
    candidates = {**dict(nwbfile.stimulus), **dict(nwbfile.acquisition)}
    series = {key: value for key, value in candidates.items() if hasattr(value, "data")}
    if name is None:
        stimulus_series = [key for key, value in nwbfile.stimulus.items() if hasattr(value, "data")]
        if len(stimulus_series) != 1:
            raise ValueError(
                "Name the stimulus time series (--stimulus NAME); the file holds "
                f"{sorted(series)}."
            )
        name = stimulus_series[0]
    if name not in series:
        raise ValueError(f"No time series named {name!r}; the file holds {sorted(series)}.")
    return series[name]


def _sample_times(series) -> np.ndarray:
    n_samples = len(series.data)
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:], dtype=float)
    return float(series.starting_time or 0.0) + np.arange(n_samples) / float(series.rate)


def bin_spike_times(spike_times: list[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Count each unit's spikes in the bins ``[edges[i], edges[i+1])``.

    Parameters
    ----------
    spike_times : list of arrays
        One array of spike times per unit.
    edges : ndarray of shape (n_bins + 1,)
        Increasing bin edges.

    Returns
    -------
    counts : ndarray of shape (n_bins, n_units)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.io import bin_spike_times
    >>> bin_spike_times([np.array([0.1, 0.15, 0.7]), np.array([0.5])], np.array([0, .5, 1.]))
    array([[2., 0.],
           [1., 1.]])
    """
    n_bins, n_units = len(edges) - 1, len(spike_times)
    if n_units == 0:
        return np.zeros((n_bins, 0))
    times = np.concatenate([np.asarray(t, dtype=float) for t in spike_times])
    units = np.repeat(np.arange(n_units), [len(t) for t in spike_times])
    bins = np.searchsorted(edges, times, side="right") - 1
    inside = (bins >= 0) & (bins < n_bins)
    flat = bins[inside] * n_units + units[inside]
    return np.bincount(flat, minlength=n_bins * n_units).reshape(n_bins, n_units).astype(float)


def load_nwb(
    path: str | Path,
    stimulus: str | None = None,
    bin_s: float | None = None,
    behavior: str | None = None,
) -> Bunch:
    """Stimulus and binned spike counts from an NWB file.

    Parameters
    ----------
    path : str or Path
        An NWB (HDF5) file with a stimulus ``TimeSeries`` (or ``ImageSeries``)
        in ``stimulus`` or ``acquisition`` and spike times in ``units``.
    stimulus : str, optional
        Name of the stimulus series; may be omitted when ``stimulus`` holds
        exactly one.
    bin_s : float, optional
        Bin width in seconds. Without it, each stimulus sample is one bin
        (spikes counted until the next sample). With it, bins are regular and
        each takes the stimulus sample shown at its start (sample and hold).
    behavior : str, optional
        Name of a behaviour ``TimeSeries`` (running speed, pupil size ...) in
        the ``behavior`` processing module or in ``acquisition``: each bin
        takes its last sample at or before the bin start (sample and hold).

    Returns
    -------
    data : Bunch
        ``X`` (n_bins, ...) stimulus, ``y`` (n_bins, n_units) spike counts,
        ``time`` (n_bins,) bin starts in seconds, ``unit_ids``, ``groups``
        (None) and ``behavior`` ((n_bins, n_covariates), or None).

    Examples
    --------
    >>> import os, tempfile
    >>> from datetime import datetime, timezone
    >>> import numpy as np
    >>> from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    >>> from sklearn_cnnenc.io import load_nwb
    >>> session = NWBFile(session_description="demo", identifier="demo",
    ...                   session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> session.add_stimulus(TimeSeries(name="sound", data=np.zeros(20), unit="dB", rate=10.0))
    >>> session.add_unit(spike_times=[0.05, 0.12, 1.31])
    >>> path = os.path.join(tempfile.mkdtemp(), "session.nwb")
    >>> with NWBHDF5IO(path, "w") as io:
    ...     io.write(session)
    >>> data = load_nwb(path, stimulus="sound")
    >>> data.X.shape, data.y.shape, int(data.y.sum())
    ((20,), (20, 1), 3)
    """
    path = _existing_file(path)
    try:
        from pynwb import NWBHDF5IO
    except ImportError as error:
        raise ImportError(
            "Reading NWB files needs pynwb: pip install 'sklearn-cnnenc[nwb]'."
        ) from error
    io = None
    try:
        io = NWBHDF5IO(str(path), mode="r", load_namespaces=True)
        nwbfile = io.read()
    except Exception as error:  # h5py/hdmf raise many types for a non-NWB file
        if io is not None:
            io.close()
        raise ValueError(f"{path} is not a readable NWB file ({type(error).__name__}).") from error
    with io:
        series = _find_time_series(nwbfile, stimulus)
        data = np.asarray(series.data[:])
        sample_times = _sample_times(series)
        if nwbfile.units is None or len(nwbfile.units) == 0:
            raise ValueError(f"{path} has no units table with spike times.")
        spike_times = [np.asarray(t, dtype=float) for t in nwbfile.units["spike_times"][:]]
        unit_ids = np.asarray(nwbfile.units.id[:])
        behavior_series = None
        if behavior is not None:
            candidates = dict(nwbfile.acquisition)
            if "behavior" in nwbfile.processing:
                candidates.update(nwbfile.processing["behavior"].data_interfaces)
            found = {key: value for key, value in candidates.items() if hasattr(value, "data")}
            if behavior not in found:
                raise ValueError(
                    f"No behaviour time series named {behavior!r}; the file holds {sorted(found)}."
                )
            behavior_values = np.asarray(found[behavior].data[:], dtype=float)
            behavior_series = (behavior_values, _sample_times(found[behavior]))
    if bin_s is None:
        step = np.median(np.diff(sample_times)) if len(sample_times) > 1 else 1.0
        edges = np.append(sample_times, sample_times[-1] + step)
        X = data
    else:
        if bin_s <= 0:
            raise ValueError(f"bin_s must be positive; got {bin_s}.")
        # bins cover every frame, the last one included (it lasts one frame period);
        # integer bin counts avoid arange's floating-point end point dropping a bin
        step = np.median(np.diff(sample_times)) if len(sample_times) > 1 else bin_s
        n_bins = max(1, int(np.ceil((sample_times[-1] + step - sample_times[0]) / bin_s - 1e-9)))
        edges = sample_times[0] + bin_s * np.arange(n_bins + 1)
        shown = np.searchsorted(sample_times, edges[:-1], side="right") - 1
        X = data[np.clip(shown, 0, len(data) - 1)]
    y = bin_spike_times(spike_times, edges)
    B = None
    if behavior_series is not None:
        values, times = behavior_series
        held = np.searchsorted(times, edges[:-1], side="right") - 1
        B = values[np.clip(held, 0, len(values) - 1)].reshape(len(y), -1)
    return Bunch(X=X, y=y, time=edges[:-1], unit_ids=unit_ids, groups=None, behavior=B)


def _versions() -> dict:
    from . import __version__

    return {"sklearn_cnnenc": __version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__}


def save_model(model, path: str | Path) -> Path:
    """Save a fitted model with the library, scikit-learn and torch versions.

    Parameters
    ----------
    model : estimator
    path : str or Path

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.io import load_model, save_model
    >>> model = PoissonGLM().fit(np.eye(3), [0.0, 1.0, 2.0])
    >>> path = save_model(model, os.path.join(tempfile.mkdtemp(), "glm.joblib"))
    >>> load_model(path).predict(np.eye(3)).shape
    (3,)
    """
    path = Path(path)
    with path.open("wb") as handle:
        # a JSON header line first: versions are checked before anything is unpickled
        header = {"format": _FORMAT, "versions": _versions()}
        handle.write(json.dumps(header).encode() + b"\n")
        joblib.dump(model, handle)
    return path


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def load_model(path: str | Path):
    """Load a model saved by :func:`save_model`, checking version compatibility.

    Raises ``ValueError`` naming both versions when the file was written by a
    different minor version of sklearn-cnnenc (or of scikit-learn or torch),
    whose pickled objects are not guaranteed to load correctly. The versions
    sit in a plain JSON header that is read before anything is unpickled;
    the model itself is a pickle, so only load files you trust.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.io import load_model, save_model
    >>> path = os.path.join(tempfile.mkdtemp(), "glm.joblib")
    >>> _ = save_model(PoissonGLM().fit(np.eye(2), [0.0, 1.0]), path)
    >>> type(load_model(path)).__name__
    'PoissonGLM'
    """
    path = _existing_file(path)
    with path.open("rb") as handle:
        try:
            header = json.loads(handle.readline(4096))
        except ValueError:  # not our JSON header (UnicodeDecodeError is a ValueError)
            header = None
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a model saved by sklearn_cnnenc.io.save_model.")
        saved, current = header.get("versions"), _versions()
        if not isinstance(saved, dict) or not all(
            isinstance(saved.get(package), str) for package in current
        ):
            raise ValueError(
                f"{path} has a damaged header: it lacks the versions of {sorted(current)} "
                "recorded by save_model; refit and save the model again."
            )
        for package in ("sklearn_cnnenc", "scikit-learn", "torch"):
            if _minor(saved[package]) != _minor(current[package]):
                raise ValueError(
                    f"{path} was saved with {package} {saved[package]} but {current[package]} "
                    f"is installed; install {package}=={saved[package]} to load it, or refit."
                )
        try:
            model = joblib.load(handle)
        except Exception as error:  # unpickling raises many types
            raise ValueError(
                f"{path} could not be loaded ({type(error).__name__}: {error})."
            ) from error
    if not (hasattr(model, "fit") and hasattr(model, "get_params")):
        raise TypeError(
            f"{path} holds a {type(model).__name__}, not an estimator; expected a model "
            "saved by sklearn_cnnenc.io.save_model."
        )
    return model
