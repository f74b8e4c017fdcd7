"""Spike-triggered average and covariance (white-noise analysis)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils.validation import check_array, check_consistent_length

from ..preprocessing import TimeLagger

__all__ = ["spike_triggered_average", "spike_triggered_covariance"]


def _check_inputs(X, y, n_lags):
    X = check_array(X, dtype=np.float64, ensure_2d=False, input_name="X")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 1-D or 2-D (time bins x features); got shape {X.shape}.")
    y = check_array(y, dtype=np.float64, ensure_2d=False, input_name="y")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D (time bins x neurons); got shape {y.shape}.")
    check_consistent_length(X, y)
    if np.any(y < 0):
        raise ValueError("y must hold non-negative spike counts.")
    if n_lags is not None:
        if not isinstance(n_lags, Integral) or n_lags < 1:
            raise ValueError(f"n_lags must be a positive integer or None; got {n_lags!r}.")
        if n_lags > len(X):
            raise ValueError(
                f"n_lags={n_lags} is larger than the recording ({len(X)} time bins)."
            )
    return X, y


def spike_triggered_average(X, y, n_lags: int | None = None, *, center: bool = True):
    """Spike-weighted average of the stimulus preceding each bin.

    With ``s_t`` the stimulus window of bin ``t`` (``s_t[lag] = x[t - lag]``)
    over the bins ``t`` whose whole window of ``n_lags`` lags lies inside the
    recording, the textbook STA is the spike-weighted mean of the windows,

    .. math::

        \\mathrm{STA} = \\frac{\\sum_t y_t\\, s_t}{\\sum_t y_t},

    and with ``center=True`` (the default) it is reported relative to the
    mean window ``m = mean_t s_t`` over the same bins, ``STA - m`` (zero for a
    neuron that ignores the stimulus, whatever the stimulus mean). This is
    the ``sta`` of :func:`spike_triggered_covariance`, whose spike-triggered
    covariance is taken about the same STA. For a linear-nonlinear neuron
    driven by Gaussian white noise the STA is proportional to its filter
    (Chichilnisky 2001; Bussgang's theorem).

    Parameters
    ----------
    X : array-like of shape (n_bins, n_features)
        Stimulus time series (one row per bin), or, with ``n_lags=None``,
        rows that already hold the whole stimulus relevant to each bin.
    y : array-like of shape (n_bins,) or (n_bins, n_neurons)
        Spike counts.
    n_lags : int, optional
        Window length in bins; lag 0 is the current bin (the layout of
        :class:`~sklearn_cnnenc.preprocessing.TimeLagger`).
    center : bool, default=True
        Subtract the mean stimulus window ``m`` (over the bins the spikes are
        counted in); ``False`` returns the raw spike-weighted mean.

    Returns
    -------
    sta : ndarray of shape (n_lags, n_features) or (n_features,) without
        lags; a leading ``n_neurons`` axis for 2-D ``y``.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_ln_data
    >>> from sklearn_cnnenc.inspection import spike_triggered_average
    >>> data = make_ln_data(n_samples=20000, n_lags=10, random_state=0)
    >>> sta = spike_triggered_average(data.stimulus, data.y, n_lags=10)
    >>> sta.shape
    (10, 1)
    """
    X, y = _check_inputs(X, y, n_lags)
    y2 = y.reshape(len(y), -1)
    first = 0 if n_lags is None else n_lags - 1
    weights = y2[first:]
    total = weights.sum(axis=0)
    if np.any(total == 0):
        raise ValueError("Every neuron needs at least one spike for a spike-triggered average.")
    if n_lags is None:
        windows = X - X.mean(axis=0) if center else X
        sta = (weights.T @ windows) / total[:, None]
    else:
        n = len(X)
        # one product per lag: no lagged copy of the stimulus; lag `lag` of the
        # windows is X[first - lag : n - lag], centred on its own mean
        lags = []
        for lag in range(n_lags):
            shifted = X[first - lag : n - lag]
            lags.append(weights.T @ (shifted - shifted.mean(axis=0) if center else shifted))
        sta = np.stack(lags, axis=1) / total[:, None, None]
    return sta[0] if y.ndim == 1 else sta


def spike_triggered_covariance(X, y, n_lags: int | None = None) -> Bunch:
    """Spike-triggered covariance analysis: the stimulus subspace a neuron is sensitive to.

    Eigen-decomposes ``C_spike - C_prior``: the spike-weighted covariance of
    the stimulus windows ``s_t`` about the (uncentred) spike-triggered
    average, and their covariance about their mean ``m``,

    .. math::

        C_\\mathrm{spike} = \\frac{\\sum_t y_t (s_t - \\mathrm{STA})(s_t - \\mathrm{STA})^\\top}
        {\\sum_t y_t}, \\qquad
        C_\\mathrm{prior} = \\frac{1}{T} \\sum_t (s_t - m)(s_t - m)^\\top,

    over the same ``T`` bins as :func:`spike_triggered_average` (both
    normalised by their total weight, the maximum-likelihood convention,
    so the difference vanishes for a neuron that ignores the stimulus,
    whatever the stimulus mean). For Gaussian white noise, eigenvectors with
    large positive eigenvalues span excitatory directions (e.g. the two
    quadrature filters of an energy-model complex cell, whose STA is zero),
    large negative ones suppressive directions (Schwartz et al. 2006).

    Parameters
    ----------
    X : array-like of shape (n_bins, n_features)
    y : array-like of shape (n_bins,)
        Spike counts of one neuron.
    n_lags : int, optional
        Window length in bins (lag 0 = the current bin); ``None`` uses the
        rows of ``X`` as they are.

    Returns
    -------
    result : Bunch
        ``eigenvalues`` (n_dims,) sorted from largest to smallest;
        ``eigenvectors`` (n_dims, n_lags, n_features), unit-norm filters in
        the same order (``(n_dims, n_features)`` without lags); ``sta``,
        relative to the mean window, as returned by
        :func:`spike_triggered_average` with ``center=True``;
        ``covariance`` (n_dims, n_dims), the difference matrix.

    References
    ----------
    .. [1] Schwartz, O., Pillow, J. W., Rust, N. C. & Simoncelli, E. P. (2006).
       Spike-triggered neural characterization. Journal of Vision 6, 484-507.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_energy_model_data
    >>> from sklearn_cnnenc.inspection import spike_triggered_covariance
    >>> data = make_energy_model_data(n_samples=20000, n_lags=12, random_state=0)
    >>> stc = spike_triggered_covariance(data.stimulus, data.y, n_lags=12)
    >>> stc.eigenvectors.shape
    (12, 12, 1)
    >>> bool(stc.eigenvalues[1] > 5 * abs(stc.eigenvalues[2]))
    True
    """
    X, y = _check_inputs(X, y, n_lags)
    if y.ndim != 1:
        raise ValueError(
            f"spike_triggered_covariance analyses one neuron: y must be 1-D; got shape {y.shape}."
        )
    if n_lags is None:
        windows, shape = X, (X.shape[1],)
    else:
        windows = TimeLagger(n_lags=n_lags).fit_transform(X)[n_lags - 1 :]
        y = y[n_lags - 1 :]
        shape = (n_lags, X.shape[1])
    total = y.sum()
    if total == 0:
        raise ValueError("The neuron needs at least one spike for a spike-triggered covariance.")
    centred = windows - windows.mean(axis=0)
    sta = (y @ centred) / total
    # centred - sta = windows - (uncentred STA): the covariance about the STA
    around_sta = centred - sta
    c_spike = (around_sta * y[:, None]).T @ around_sta / total
    c_prior = centred.T @ centred / len(centred)
    difference = c_spike - c_prior
    eigenvalues, eigenvectors = np.linalg.eigh(difference)
    order = np.argsort(eigenvalues)[::-1]
    return Bunch(
        eigenvalues=eigenvalues[order],
        eigenvectors=eigenvectors[:, order].T.reshape(-1, *shape),
        sta=sta.reshape(shape),
        covariance=difference,
    )
