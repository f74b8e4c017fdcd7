"""Simulated LN and energy-model neurons driven by white-noise time series.

The stimulus is Gaussian white noise ``(n_samples, n_pixels)``; ``X`` is its
lagged design matrix (``TimeLagger``: lag-major, lag 0 = the current bin), and
the true filters are known, unit-norm arrays of shape ``(n_lags, n_pixels)``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from ..distributions import get_family
from ..links import get_link
from ..preprocessing import TimeLagger

__all__ = ["make_ln_data", "make_energy_model_data"]

_ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "square": np.square,
    "exp": np.exp,
}


def _temporal_profile(n_lags: int) -> np.ndarray:
    """Biphasic temporal filter (a difference of gamma-like bumps), unit norm."""
    lag = np.arange(n_lags, dtype=float)
    fast, slow = max(n_lags / 8, 0.5), max(n_lags / 4, 1.0)
    profile = (lag / fast) ** 2 * np.exp(-lag / fast) - 0.6 * (lag / slow) ** 2 * np.exp(
        -lag / slow
    )
    return profile / np.linalg.norm(profile)


def _spatial_profile(n_pixels: int) -> np.ndarray:
    """Centre-surround spatial profile (a difference of Gaussians), unit norm."""
    if n_pixels == 1:
        return np.ones(1)
    x = np.linspace(-1.0, 1.0, n_pixels)
    profile = np.exp(-(x**2) / (2 * 0.15**2)) - 0.4 * np.exp(-(x**2) / (2 * 0.4**2))
    return profile / np.linalg.norm(profile)


def _responses(X, filters, weights, filter_bias, intercept, nonlinearity, link, family, rng):
    projection = X @ filters.reshape(len(filters), -1).T + filter_bias
    eta = intercept + _ACTIVATIONS[nonlinearity](projection) @ weights
    link_obj = get_link(link)
    family_obj = get_family(family)
    family_obj.validate_link(link_obj)
    mean = link_obj.inverse(torch.as_tensor(eta)).numpy()
    return family_obj.sample(mean, None, rng), mean


def _white_noise(n_samples, n_lags, n_pixels, rng):
    if n_samples < n_lags:
        raise ValueError(f"n_samples={n_samples} must be at least n_lags={n_lags}.")
    stimulus = rng.standard_normal((n_samples, n_pixels))
    return stimulus, TimeLagger(n_lags=n_lags).fit_transform(stimulus)


def make_ln_data(
    n_samples: int = 5000,
    n_lags: int = 20,
    n_pixels: int = 1,
    *,
    nonlinearity: str = "softplus",
    gain: float = 1.0,
    threshold: float = 0.0,
    mean_rate: float = 0.1,
    link: str = "exp",
    random_state=None,
) -> Bunch:
    """Spike counts of a linear-nonlinear-Poisson neuron with one known filter.

    ``rate = exp(b + gain * f(h . x + threshold))`` with a space-time separable
    (rank-1), unit-norm filter ``h`` of shape ``(n_lags, n_pixels)``: a
    biphasic temporal profile times a centre-surround spatial profile. The
    intercept ``b`` is set so that ``f(h . x + threshold)`` at its mean gives
    ``mean_rate`` spikes per bin.

    Parameters
    ----------
    n_samples : int, default=5000
        Time bins.
    n_lags : int, default=20
    n_pixels : int, default=1
    nonlinearity : {"identity", "relu", "softplus", "square", "exp"}, default="softplus"
    gain : float, default=1.0
        Output weight of the filter.
    threshold : float, default=0.0
        Filter bias inside the nonlinearity.
    mean_rate : float, default=0.1
    link : str, default="exp"
        Inverse link of the Poisson rate.
    random_state : int, RandomState instance or None

    Returns
    -------
    data : Bunch
        ``stimulus`` (n_samples, n_pixels); ``X`` (n_samples, n_lags *
        n_pixels), the lagged stimulus; ``y`` (n_samples,) spike counts;
        ``mean`` (n_samples,) the true rate; ``filters`` (1, n_lags,
        n_pixels); ``temporal`` (n_lags,) and ``spatial`` (n_pixels,) its
        factors; ``weights`` (1,), ``filter_bias`` (1,), ``intercept``.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_ln_data
    >>> data = make_ln_data(n_samples=1000, n_lags=10, n_pixels=3, random_state=0)
    >>> data.X.shape, data.filters.shape
    ((1000, 30), (1, 10, 3))
    """
    rng = check_random_state(random_state)
    stimulus, X = _white_noise(n_samples, n_lags, n_pixels, rng)
    temporal, spatial = _temporal_profile(n_lags), _spatial_profile(n_pixels)
    filters = np.outer(temporal, spatial)[None]
    weights = np.array([gain])
    filter_bias = np.array([threshold])
    typical = _ACTIVATIONS[nonlinearity](np.array(threshold))
    intercept = float(get_link(link).link(np.array(mean_rate)) - gain * typical)
    y, mean = _responses(
        X, filters, weights, filter_bias, intercept, nonlinearity, link, "poisson", rng
    )
    return Bunch(
        stimulus=stimulus, X=X, y=y, mean=mean, filters=filters, temporal=temporal,
        spatial=spatial, weights=weights, filter_bias=filter_bias, intercept=intercept,
    )


def make_energy_model_data(
    n_samples: int = 5000,
    n_lags: int = 16,
    n_pixels: int = 1,
    *,
    gain: float = 0.25,
    mean_rate: float = 0.2,
    random_state=None,
) -> Bunch:
    """Spike counts of a complex cell: the energy model of two quadrature filters.

    ``rate = exp(b + gain * ((h1 . x)^2 + (h2 . x)^2))`` where ``h1`` and ``h2``
    are orthonormal Gabor filters in quadrature (same envelope, phases 90
    degrees apart): along time for one pixel, along space (with a temporal
    envelope) for several. The response is phase invariant, so the
    spike-triggered average is zero and the filter subspace is found by
    spike-triggered covariance or an LN model with ``nonlinearity="square"``.
    For white noise the mean rate is ``exp(b) / (1 - 2 * gain)``.

    Parameters
    ----------
    n_samples : int, default=5000
    n_lags : int, default=16
    n_pixels : int, default=1
    gain : float, default=0.25
        Must be below 0.5 (the mean rate diverges at 0.5).
    mean_rate : float, default=0.2
        Expected spikes per bin.
    random_state : int, RandomState instance or None

    Returns
    -------
    data : Bunch
        ``stimulus``, ``X``, ``y``, ``mean`` as in :func:`make_ln_data`;
        ``filters`` (2, n_lags, n_pixels) orthonormal; ``weights`` (2,);
        ``intercept``.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_energy_model_data
    >>> data = make_energy_model_data(n_samples=1000, random_state=0)
    >>> data.filters.shape
    (2, 16, 1)
    """
    if not 0 < gain < 0.5:
        raise ValueError(f"gain must lie in (0, 0.5); got {gain}.")
    rng = check_random_state(random_state)
    stimulus, X = _white_noise(n_samples, n_lags, n_pixels, rng)
    lag = np.arange(n_lags, dtype=float)
    if n_pixels == 1:
        envelope = np.exp(-((lag - n_lags / 2.5) ** 2) / (2 * (n_lags / 6) ** 2))
        phase = 2 * np.pi * lag / max(n_lags / 2.5, 2.0)
        pair = [(envelope * np.cos(phase))[:, None], (envelope * np.sin(phase))[:, None]]
    else:
        x = np.linspace(-1.0, 1.0, n_pixels)
        space_envelope = np.exp(-(x**2) / (2 * 0.4**2))
        phase = 2 * np.pi * x * 1.5
        temporal = _temporal_profile(n_lags)
        pair = [
            np.outer(temporal, space_envelope * np.cos(phase)),
            np.outer(temporal, space_envelope * np.sin(phase)),
        ]
    # exact orthonormality, so that (h1.x)^2 + (h2.x)^2 is chi-square(2) * 1
    basis, _ = np.linalg.qr(np.stack([p.ravel() for p in pair], axis=1))
    filters = basis.T.reshape(2, n_lags, n_pixels)
    weights = np.full(2, gain)
    intercept = float(np.log(mean_rate * (1 - 2 * gain)))
    y, mean = _responses(
        X, filters, weights, np.zeros(2), intercept, "square", "exp", "poisson", rng
    )
    return Bunch(
        stimulus=stimulus, X=X, y=y, mean=mean, filters=filters, weights=weights,
        intercept=intercept,
    )
