"""Simulated direction-selective cells driven by drifting-grating movies.

Each cell is a motion-energy unit (Adelson & Bergen 1985): the sum of the
squared responses of a quadrature pair of space-time oriented Gabor filters,
tuned to one direction of motion. A grating drifting the other way excites
the same spatial filters but with the temporal phases reversed, so the two
directions give very different responses although every single frame looks
alike: no model of the last frame alone can tell them apart.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_direction_selective_cells"]


def _check_int(value, name: str, minimum: int) -> int:
    if not isinstance(value, Integral | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def make_direction_selective_cells(
    n_samples: int = 2000,
    n_cells: int = 4,
    *,
    n_frames: int = 6,
    image_size: int = 12,
    n_lags: int = 4,
    spatial_frequency: float = 0.15,
    temporal_frequency: float = 0.125,
    peak_rate: float = 3.0,
    baseline_rate: float = 0.1,
    noise: float = 0.2,
    random_state=None,
) -> Bunch:
    """Direction-selective (motion-energy) cells responding to drifting-grating movies.

    Every sample is a window of ``n_frames`` frames of a sinusoidal grating
    drifting in a random direction (uniform on the circle), with random
    phase, contrast in [0.5, 1], speed within a factor 1.5 of the tuned one,
    plus Gaussian pixel noise. Cell ``k`` prefers direction ``2 pi k /
    n_cells``; its drive is the motion energy

    .. math::

        E_k = \\big(\\langle h^{\\cos}_k, s\\rangle\\big)^2 +
              \\big(\\langle h^{\\sin}_k, s\\rangle\\big)^2,\\quad
        h_k(\\ell, r) = e^{-|r - c_k|^2 / 2\\sigma^2}
            \\cos / \\sin\\big(\\kappa_k \\cdot (r - c_k) + \\omega \\ell\\big)

    over the last ``n_lags`` frames (lag ``l = 0`` is the last frame), and
    its count in the last frame is Poisson with mean ``baseline_rate +
    peak_rate * E_k / max_k E``.

    Parameters
    ----------
    n_samples : int, default=2000
    n_cells : int, default=4
    n_frames : int, default=6
        Frames per window (at least ``n_lags``).
    image_size : int, default=12
        Frames are ``image_size x image_size`` pixels.
    n_lags : int, default=4
        Temporal extent of the cells' filters, in frames.
    spatial_frequency : float, default=0.15
        Cycles per pixel of gratings and filters.
    temporal_frequency : float, default=0.125
        Cycles per frame of the tuned drift (``omega = 2 pi f``).
    peak_rate : float, default=3.0
        Mean count at the strongest drive in the data.
    baseline_rate : float, default=0.1
    noise : float, default=0.2
        Standard deviation of the Gaussian pixel noise.
    random_state : int, RandomState instance or None

    Returns
    -------
    data : Bunch
        ``X`` (n_samples, n_frames, image_size, image_size) float32 movies;
        ``y`` (n_samples, n_cells) counts at the last frame; ``mean`` the
        true expected counts; ``filters`` (n_cells, 2, n_lags, H, W) the
        quadrature pairs (lag 0 last); ``preferred_direction`` (n_cells,)
        and ``direction`` (n_samples,) in radians; ``centers`` (n_cells, 2).

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_direction_selective_cells
    >>> data = make_direction_selective_cells(n_samples=50, random_state=0)
    >>> data.X.shape, data.y.shape
    ((50, 6, 12, 12), (50, 4))
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_cells = _check_int(n_cells, "n_cells", 1)
    n_frames = _check_int(n_frames, "n_frames", 1)
    image_size = _check_int(image_size, "image_size", 3)
    n_lags = _check_int(n_lags, "n_lags", 2)
    if n_lags > n_frames:
        raise ValueError(f"n_lags={n_lags} must not exceed n_frames={n_frames}.")
    for name, value in [
        ("spatial_frequency", spatial_frequency),
        ("temporal_frequency", temporal_frequency),
        ("peak_rate", peak_rate),
    ]:
        if not value > 0:
            raise ValueError(f"{name} must be positive; got {value!r}.")
    if baseline_rate < 0 or noise < 0:
        raise ValueError("baseline_rate and noise must be non-negative.")
    rng = check_random_state(random_state)

    grid = np.arange(image_size, dtype=float) - (image_size - 1) / 2
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    omega = 2 * np.pi * temporal_frequency
    kappa = 2 * np.pi * spatial_frequency

    # stimuli: drifting gratings, frame f at time f - (n_frames - 1) (0 = last)
    direction = rng.uniform(0, 2 * np.pi, n_samples)
    speed = omega * np.exp(rng.uniform(np.log(1 / 1.5), np.log(1.5), n_samples))
    phase = rng.uniform(0, 2 * np.pi, n_samples)
    contrast = rng.uniform(0.5, 1.0, n_samples)
    times = np.arange(n_frames) - (n_frames - 1)
    along = (
        np.cos(direction)[:, None, None] * xx + np.sin(direction)[:, None, None] * yy
    )  # (n, H, W)
    argument = (
        kappa * along[:, None]
        - speed[:, None, None, None] * times[None, :, None, None]
        + phase[:, None, None, None]
    )
    X = contrast[:, None, None, None] * np.cos(argument)
    X += noise * rng.standard_normal(X.shape)

    # cells: quadrature pairs of space-time Gabors moving in their preferred direction
    preferred = 2 * np.pi * np.arange(n_cells) / n_cells
    centers = rng.uniform(-image_size / 8, image_size / 8, (n_cells, 2))
    sigma = image_size / 6
    lags = np.arange(n_lags)  # lag 0 = last frame
    filters = np.empty((n_cells, 2, n_lags, image_size, image_size))
    for k in range(n_cells):
        dx, dy = xx - centers[k, 0], yy - centers[k, 1]
        envelope = np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
        spatial = kappa * (np.cos(preferred[k]) * dx + np.sin(preferred[k]) * dy)
        # a grating moving in the preferred direction had phase + omega * lag
        # earlier (its phase at time -lag is kappa x + omega * lag): matched
        wave = spatial[None] + omega * lags[:, None, None]
        filters[k, 0] = envelope * np.cos(wave)
        filters[k, 1] = envelope * np.sin(wave)
    filters /= np.linalg.norm(filters.reshape(n_cells, 2, -1), axis=2)[:, :, None, None, None]

    # lag l reads frame n_frames - 1 - l
    recent = X[:, ::-1][:, :n_lags]  # (n, n_lags, H, W), lag-major
    projection = np.einsum("nlhw,kqlhw->nkq", recent, filters)
    energy = (projection**2).sum(-1)
    scale = np.quantile(energy, 0.99) if n_samples > 1 else max(energy.max(), 1e-12)
    mean = baseline_rate + peak_rate * np.minimum(energy / max(scale, 1e-12), 1.5)
    y = rng.poisson(mean).astype(float)
    return Bunch(
        X=X.astype(np.float32),
        y=y,
        mean=mean,
        filters=filters,
        preferred_direction=preferred,
        direction=direction,
        centers=centers,
    )
