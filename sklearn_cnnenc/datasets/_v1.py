"""A simulated population of V1 simple and complex cells viewing natural images."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch, check_random_state

from ..stimuli import natural_image_patches

__all__ = ["make_v1_population"]

# Fraction of the mean rate that does not depend on the stimulus.
_BASELINE = 0.1
# Patches used to put every filter's drive on a unit scale: a fixed set, so a
# neuron's tuning does not depend on the stimuli drawn in a particular call.
_N_REFERENCE_PATCHES = 4000


def _gabor_pair(size, center, orientation, wavelength, sigma, phase):
    """Even and odd Gabor filters (zero mean, unit norm), each ``(size, size)``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = x - center[0], y - center[1]
    along = dx * np.cos(orientation) + dy * np.sin(orientation)
    across = -dx * np.sin(orientation) + dy * np.cos(orientation)
    envelope = np.exp(-(along**2 + across**2) / (2 * sigma**2))
    argument = 2 * np.pi * along / wavelength + phase
    pair = []
    for carrier in (np.cos(argument), np.sin(argument)):
        gabor = envelope * carrier
        gabor -= gabor.mean()
        pair.append(gabor / np.linalg.norm(gabor))
    return pair


def make_v1_population(
    n_samples: int = 2000,
    n_simple: int = 8,
    n_complex: int = 8,
    image_size: int = 16,
    *,
    whiten: bool = True,
    mean_rate: float = 1.0,
    random_state=None,
) -> Bunch:
    """Spike counts of Gabor simple cells and energy-model complex cells to natural images.

    Stimuli are natural image patches
    (:func:`~sklearn_cnnenc.stimuli.natural_image_patches`). Every neuron has
    a Gabor receptive field with random position, orientation, wavelength
    and phase. With the filter drives ``z = g . x`` scaled to unit variance
    over natural patches, the expected count in response to a patch is

    * simple cell (linear-nonlinear, half-squaring):
      ``mean_rate * (0.1 + 0.9 * max(z_even, 0)^2 / 0.5)``;
    * complex cell (energy model, Adelson & Bergen 1985), insensitive to the
      phase of the stimulus:
      ``mean_rate * (0.1 + 0.9 * (z_even^2 + z_odd^2) / 2)``,

    so that every neuron fires ``mean_rate`` spikes per patch on average;
    counts are Poisson. A GLM (one linear filter and a monotonic output
    nonlinearity) can capture simple cells but not complex cells, which need
    a quadratic (or convolutional) model.

    Parameters
    ----------
    n_samples : int, default=2000
        Number of image patches.
    n_simple, n_complex : int, default=8
        Number of simple and complex cells; simple cells come first.
    image_size : int, default=16
        Side of the square patches, in pixels.
    whiten : bool, default=True
        Whiten the images (flat spatial spectrum).
    mean_rate : float, default=1.0
        Mean spike count per patch of every neuron.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        ``X`` (n_samples, image_size, image_size) stimuli; ``y`` (n_samples,
        n_neurons) spike counts; ``mean`` (n_samples, n_neurons) the true
        expected counts (the oracle model); ``filters`` and
        ``filters_quadrature`` (n_neurons, image_size, image_size), the even
        Gabor of every neuron and its odd (90 degrees shifted) partner, used
        by complex cells only; ``cell_type`` (n_neurons,) of "simple" or
        "complex"; ``center`` (n_neurons, 2) as (x, y) pixels,
        ``orientation`` (radians), ``wavelength`` and ``sigma`` (pixels),
        ``phase`` (radians), each (n_neurons,).

    References
    ----------
    .. [1] Adelson, E. H. & Bergen, J. R. (1985). Spatiotemporal energy models
       for the perception of motion. JOSA A 2, 284-299.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_v1_population
    >>> data = make_v1_population(n_samples=200, n_simple=2, n_complex=3, random_state=0)
    >>> data.X.shape, data.y.shape, data.filters.shape
    ((200, 16, 16), (200, 5), (5, 16, 16))
    >>> data.cell_type.tolist()
    ['simple', 'simple', 'complex', 'complex', 'complex']
    """
    for name, value, low in (
        ("n_samples", n_samples, 1),
        ("n_simple", n_simple, 0),
        ("n_complex", n_complex, 0),
        ("image_size", image_size, 8),
    ):
        if not isinstance(value, Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    if n_simple + n_complex == 0:
        raise ValueError("The population needs at least one neuron (n_simple + n_complex > 0).")
    if not isinstance(mean_rate, Real) or not mean_rate > 0:
        raise ValueError(f"mean_rate must be positive; got {mean_rate!r}.")
    rng = check_random_state(random_state)
    n_neurons = n_simple + n_complex

    wavelength = image_size * rng.uniform(0.25, 0.4, n_neurons)
    sigma = 0.35 * wavelength
    margin = 2.5 * sigma
    center = np.column_stack(
        [rng.uniform(margin, image_size - 1 - margin) for _ in range(2)]
    )
    orientation = rng.uniform(0, np.pi, n_neurons)
    phase = rng.uniform(0, 2 * np.pi, n_neurons)
    pairs = [
        _gabor_pair(image_size, center[k], orientation[k], wavelength[k], sigma[k], phase[k])
        for k in range(n_neurons)
    ]
    filters = np.stack([even for even, _ in pairs])
    quadrature = np.stack([odd for _, odd in pairs])

    reference = natural_image_patches(
        _N_REFERENCE_PATCHES, image_size, whiten=whiten, random_state=0
    ).reshape(_N_REFERENCE_PATCHES, -1)
    flat_filters = np.concatenate([filters, quadrature]).reshape(2 * n_neurons, -1)
    scale = (reference @ flat_filters.T).std(axis=0)

    X = natural_image_patches(n_samples, image_size, whiten=whiten, random_state=rng)
    drive = (X.reshape(n_samples, -1) @ flat_filters.T) / scale
    even, odd = drive[:, :n_neurons], drive[:, n_neurons:]
    is_simple = np.arange(n_neurons) < n_simple
    modulation = np.where(
        is_simple, np.maximum(even, 0.0) ** 2 / 0.5, (even**2 + odd**2) / 2.0
    )
    mean = mean_rate * (_BASELINE + (1.0 - _BASELINE) * modulation)
    y = rng.poisson(mean).astype(np.float64)
    return Bunch(
        X=X,
        y=y,
        mean=mean,
        filters=filters,
        filters_quadrature=quadrature,
        cell_type=np.where(is_simple, "simple", "complex"),
        center=center,
        orientation=orientation,
        wavelength=wavelength,
        sigma=sigma,
        phase=phase,
    )
