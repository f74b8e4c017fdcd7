"""Gabor fits of two-dimensional filters (how V1-like is a receptive field?)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.optimize import least_squares
from sklearn.utils import Bunch, check_random_state

from ..nn.cores import _StackedCore
from ._models import _name, conv_core

__all__ = ["fit_gabor", "gabor_similarity"]

# zero padding of the FFT that finds the dominant frequency (finer steps)
_MIN_FFT_SIZE = 64
# envelope widths are kept between these (pixels; upper bound in image sizes)
_MIN_SIGMA = 0.3
_MAX_SIGMA_IMAGES = 2.0


def _gabor(params: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    x0, y0, theta, frequency, phase, sigma_along, sigma_across, amplitude = params
    dx, dy = x - x0, y - y0
    along = dx * np.cos(theta) + dy * np.sin(theta)
    across = -dx * np.sin(theta) + dy * np.cos(theta)
    envelope = np.exp(-0.5 * ((along / sigma_along) ** 2 + (across / sigma_across) ** 2))
    return amplitude * envelope * np.cos(2 * np.pi * frequency * along + phase)


def _check_filter(filter_2d) -> np.ndarray:
    if isinstance(filter_2d, torch.Tensor):
        filter_2d = filter_2d.detach().cpu().numpy()
    array = np.asarray(filter_2d)
    if array.ndim != 2:
        raise ValueError(
            "fit_gabor needs one 2-D filter of shape (height, width); got an array of shape "
            f"{array.shape}. For a bank of filters use gabor_similarity."
        )
    if min(array.shape) < 3:
        raise ValueError(f"fit_gabor needs a filter of at least 3 x 3 pixels; got {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise ValueError("The filter must hold finite numbers.")
    return array.astype(np.float64)


def _amplitude_and_phase(image, y, x, geometry):
    """Best amplitude and phase for a given position, orientation, frequency and widths
    (a linear least-squares problem in the cosine and sine components)."""
    x0, y0, theta, frequency, sigma_along, sigma_across = geometry
    even = _gabor(np.array([x0, y0, theta, frequency, 0.0, sigma_along, sigma_across, 1.0]), y, x)
    odd = _gabor(
        np.array([x0, y0, theta, frequency, -np.pi / 2, sigma_along, sigma_across, 1.0]), y, x
    )
    design = np.stack([even.ravel(), odd.ravel()], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, image.ravel(), rcond=None)
    # a cos(u) + b sin(u) = A cos(u + phase) with A cos(phase) = a, -A sin(phase) = b
    return np.hypot(a, b), np.arctan2(-b, a)


def _initial_guesses(image, y, x, n_starts, rng):
    height, width = image.shape
    centred = image - image.mean()
    size = max(_MIN_FFT_SIZE, 4 * max(height, width))
    power = np.abs(np.fft.fft2(centred, s=(size, size))) ** 2
    freqs = np.fft.fftfreq(size)
    peaks = np.argsort(power.ravel())[::-1]
    row, col = np.unravel_index(peaks[0], power.shape)
    fy, fx = freqs[row], freqs[col]
    theta, frequency = np.arctan2(fy, fx), np.hypot(fx, fy)

    # energy, smoothed over half a period, locates the envelope
    smoothing = 0.5 / max(frequency, 1.0 / max(height, width))
    energy = gaussian_filter(centred**2, smoothing / 2.0)
    energy = np.maximum(energy - np.median(energy), 0.0) + 1e-12
    total = energy.sum()
    x0, y0 = (energy * x).sum() / total, (energy * y).sum() / total
    dx, dy = x - x0, y - y0
    along = dx * np.cos(theta) + dy * np.sin(theta)
    across = -dx * np.sin(theta) + dy * np.cos(theta)
    # the energy of a Gabor has the envelope's widths divided by sqrt(2)
    sigma_along = np.sqrt(2 * (energy * along**2).sum() / total)
    sigma_across = np.sqrt(2 * (energy * across**2).sum() / total)
    base = np.array([x0, y0, theta, frequency, sigma_along, sigma_across])

    guesses = [base]
    for scale in (0.6, 1.6):
        guesses.append(base * [1, 1, 1, 1, scale, scale])
    while len(guesses) < n_starts:
        jitter = base + [
            rng.normal(0, 1.0),
            rng.normal(0, 1.0),
            rng.normal(0, 0.3),
            0.0,
            0.0,
            0.0,
        ]
        jitter[3] = frequency * np.exp(rng.normal(0, 0.3))
        jitter[4:] = base[4:] * np.exp(rng.normal(0, 0.4, 2))
        guesses.append(jitter)
    return guesses[:n_starts]


def fit_gabor(filter_2d, *, n_starts: int = 4, random_state=0) -> Bunch:
    """Fit a two-dimensional Gabor function to a filter by bounded least squares.

    The model (the convention of :func:`~sklearn_cnnenc.stimuli.gabor_patch`)::

        A exp(-x'^2 / (2 sigma_along^2) - y'^2 / (2 sigma_across^2)) cos(2 pi f x' + phase)

    with ``x'`` and ``y'`` along and across the wave vector of orientation
    theta, measured from the centre ``(x0, y0)``: 8 parameters. The first
    start comes from the filter itself: orientation and frequency from the
    peak of its (zero-padded) power spectrum, centre and widths from the
    moments of its smoothed energy, amplitude and phase by linear least
    squares; further starts rescale the widths and jitter the geometry.
    The fit with the smallest residual is kept.

    Parameters
    ----------
    filter_2d : array-like of shape (height, width)
    n_starts : int, default=4
        Starting points of the optimisation (the first is the data-driven
        one).
    random_state : int, RandomState instance or None, default=0
        Seeds the jittered starts.

    Returns
    -------
    gabor : Bunch
        ``center`` (x0, y0) in pixels (column, row); ``orientation`` in
        [0, pi) radians; ``frequency`` (cycles per pixel) and
        ``wavelength`` (pixels); ``phase`` in [0, 2 pi); ``sigma_along``,
        ``sigma_across`` (pixels); ``amplitude`` (positive); ``r2``, the
        fraction of the filter's variance (about its mean) that the Gabor
        explains (NaN for a constant filter); ``fitted``, the Gabor image.

    Raises
    ------
    ValueError
        If the filter is not 2-D (at least 3 x 3) or holds non-finite values.

    See Also
    --------
    gabor_similarity : Gabor fits of every first-layer filter of a CNN.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.stimuli import gabor_patch
    >>> from sklearn_cnnenc.inspection import fit_gabor
    >>> patch = gabor_patch(15, orientation=0.5, frequency=0.2, phase=1.0, sigma=2.5).X[0]
    >>> fit = fit_gabor(patch)
    >>> round(fit.r2, 4), round(fit.orientation, 2), round(fit.frequency, 2)
    (1.0, 0.5, 0.2)
    """
    image = _check_filter(filter_2d)
    if isinstance(n_starts, bool) or not isinstance(n_starts, Integral) or n_starts < 1:
        raise ValueError(f"n_starts must be a positive integer; got {n_starts!r}.")
    rng = check_random_state(random_state)
    height, width = image.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    total = np.sum((image - image.mean()) ** 2)
    max_sigma = _MAX_SIGMA_IMAGES * max(height, width)
    lower = [-0.5, -0.5, -np.inf, 0.0, -np.inf, _MIN_SIGMA, _MIN_SIGMA, 0.0]
    upper = [width - 0.5, height - 0.5, np.inf, 0.5, np.inf, max_sigma, max_sigma, np.inf]

    def residuals(params):
        return (_gabor(params, y, x) - image).ravel()

    best = None
    if total > 0:
        for guess in _initial_guesses(image, y, x, n_starts, rng):
            guess = np.clip(guess, [*lower[:4], *lower[5:7]], [*upper[:4], *upper[5:7]])
            amplitude, phase = _amplitude_and_phase(image, y, x, guess)
            start = np.array([*guess[:4], phase, *guess[4:], amplitude])
            start = np.clip(start, np.add(lower, 1e-9), np.subtract(upper, 1e-9))
            result = least_squares(residuals, start, bounds=(lower, upper), x_scale="jac")
            if best is None or result.cost < best.cost:
                best = result
        params = best.x
    else:
        params = np.array([(width - 1) / 2, (height - 1) / 2, 0, 0, 0, 1.0, 1.0, 0.0])
    x0, y0, theta, frequency, phase, sigma_along, sigma_across, amplitude = params
    # one parameterisation per Gabor: theta in [0, pi), phase in [0, 2 pi)
    if theta % (2 * np.pi) >= np.pi:
        phase = -phase  # x' -> -x' flips the carrier's phase
    theta = theta % np.pi
    phase = phase % (2 * np.pi)
    fitted = _gabor(params, y, x)
    r2 = 1.0 - np.sum((image - fitted) ** 2) / total if total > 0 else np.nan
    return Bunch(
        center=(float(x0), float(y0)),
        orientation=float(theta),
        frequency=float(frequency),
        wavelength=float(1.0 / frequency) if frequency > 0 else np.inf,
        phase=float(phase),
        sigma_along=float(sigma_along),
        sigma_across=float(sigma_across),
        amplitude=float(amplitude),
        r2=float(r2),
        fitted=fitted,
    )


def first_layer_filters(model_or_filters) -> np.ndarray:
    """Image filters ``(n, kh, kw)`` of a CNN's first layer, or a given stack of filters."""
    if isinstance(model_or_filters, _StackedCore) or hasattr(model_or_filters, "fit"):
        core = conv_core(model_or_filters, "gabor_similarity")
        if core.causal:
            raise ValueError(
                "gabor_similarity fits 2-D Gabors to image filters; this model's core is a "
                "causal 1-D (time-series) core."
            )
        return core.first_layer_filters().detach().cpu().double().numpy()
    if isinstance(model_or_filters, torch.Tensor):
        model_or_filters = model_or_filters.detach().cpu().numpy()
    filters = np.asarray(model_or_filters)
    if filters.ndim < 3 or not np.issubdtype(filters.dtype, np.number):
        raise ValueError(
            "gabor_similarity needs a fitted CNNEncoder, a core, or filters of shape "
            f"(n_filters, height, width); got {_name(model_or_filters)} of shape "
            f"{np.shape(filters)}."
        )
    return filters.reshape(-1, *filters.shape[-2:]).astype(np.float64)


def gabor_similarity(model, *, n_starts: int = 4, random_state=0) -> Bunch:
    """How Gabor-like the first-layer filters of a convolutional model are.

    Fits :func:`fit_gabor` to every first-layer filter (one per pair of
    output and input channel) and reports the fraction of each filter's
    variance that its best Gabor explains. Filters learned from natural
    images under a sparseness prior tend to be localized, oriented and
    band-pass, i.e. Gabor-like (Olshausen & Field 1996); random filters are
    not.

    Parameters
    ----------
    model : fitted CNNEncoder, Core2d, or array-like of shape (n_filters, height, width)
    n_starts : int, default=4
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    similarity : Bunch
        ``r2`` (n_filters,); ``mean_r2`` and ``median_r2`` (NaN-free
        filters); ``fits``, the list of :func:`fit_gabor` results;
        ``filters`` (n_filters, height, width).

    References
    ----------
    .. [1] Olshausen, B. A. & Field, D. J. (1996). Emergence of simple-cell
       receptive field properties by learning a sparse code for natural
       images. Nature 381, 607-609.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.inspection import gabor_similarity
    >>> noise = np.random.default_rng(0).normal(size=(3, 9, 9))
    >>> bool(gabor_similarity(noise).mean_r2 < 0.5)
    True
    """
    filters = first_layer_filters(model)
    rng = check_random_state(random_state)
    fits = [fit_gabor(f, n_starts=n_starts, random_state=rng) for f in filters]
    r2 = np.array([fit.r2 for fit in fits])
    finite = r2[np.isfinite(r2)]
    return Bunch(
        r2=r2,
        mean_r2=float(finite.mean()) if finite.size else np.nan,
        median_r2=float(np.median(finite)) if finite.size else np.nan,
        fits=fits,
        filters=filters,
    )
