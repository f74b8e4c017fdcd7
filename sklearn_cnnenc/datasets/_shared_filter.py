"""Neurons that a one-layer CNN represents exactly."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_shared_filter_population"]


def make_shared_filter_population(
    n_samples: int = 1000,
    n_neurons: int = 6,
    image_size: int = 12,
    kernel_size: int = 5,
    *,
    random_state=None,
) -> Bunch:
    """Poisson neurons that share one filter, each at its own location, on white noise.

    The filter ``w`` (``kernel_size`` square, unit norm, white noise itself,
    so not smooth) is applied at neuron ``k``'s location ``(r_k, c_k)``;
    the expected count is ``softplus(1.5 * max(w . x[r_k:, c_k:], 0) -
    0.5)``. A one-layer CNN (one convolution, a rectifying nonlinearity, a
    readout of one position per neuron) represents these cells exactly, so
    no CNN should lose to a pixel GLM on them.

    Parameters
    ----------
    n_samples : int, default=1000
    n_neurons : int, default=6
    image_size : int, default=12
    kernel_size : int, default=5
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        ``X`` (n_samples, image_size, image_size) float32 white noise;
        ``y`` (n_samples, n_neurons) counts; ``mean`` the true expected
        counts; ``filter`` (kernel_size, kernel_size); ``location``
        (n_neurons, 2) as (row, column) of each filter's corner.

    Examples
    --------
    >>> from sklearn_cnnenc.datasets import make_shared_filter_population
    >>> data = make_shared_filter_population(100, n_neurons=3, random_state=0)
    >>> data.X.shape, data.y.shape, data.filter.shape
    ((100, 12, 12), (100, 3), (5, 5))
    """
    for name, value in (
        ("n_samples", n_samples),
        ("n_neurons", n_neurons),
        ("image_size", image_size),
        ("kernel_size", kernel_size),
    ):
        if not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if kernel_size > image_size:
        raise ValueError(f"kernel_size={kernel_size} exceeds image_size={image_size}.")
    rng = check_random_state(random_state)
    w = rng.standard_normal((kernel_size, kernel_size))
    w /= np.linalg.norm(w)
    location = rng.randint(0, image_size - kernel_size + 1, (n_neurons, 2))
    X = rng.standard_normal((n_samples, image_size, image_size)).astype(np.float32)
    # (n, H', W') valid correlation with w, read at each neuron's location
    windows = np.lib.stride_tricks.sliding_window_view(X, (kernel_size, kernel_size), (1, 2))
    drive = np.einsum("nkij,ij->nk", windows[:, location[:, 0], location[:, 1]], w)
    mean = np.logaddexp(0.0, 1.5 * np.maximum(drive, 0.0) - 0.5)
    y = rng.poisson(mean).astype(np.float64)
    return Bunch(X=X, y=y, mean=mean, filter=w, location=location)
