"""Stimuli for encoding-model experiments.

* :func:`natural_image_patches`, :func:`pink_noise`: naturalistic inputs for
  training;
* :func:`gratings`, :func:`gabor_patch`: parametric probes for tuning curves;
* :func:`phase_scramble`, :func:`phase_shift`: out-of-distribution
  transforms that keep the amplitude spectrum and change only Fourier phase.

Natural images come from the two photographs that ship with scikit-learn
(:func:`sklearn.datasets.load_sample_images`), so everything works offline.

Geometry of the parametric stimuli (shared with
:func:`~sklearn_cnnenc.inspection.fit_gabor` and
:func:`~sklearn_cnnenc.datasets.make_v1_population`): ``x`` is the column
and ``y`` the row index of a pixel; a carrier of ``orientation`` theta,
``frequency`` f (cycles per pixel) and ``phase`` phi is
``cos(2 pi f x' + phi)`` with ``x' = (x - x0) cos(theta) + (y - y0) sin(theta)``
(theta is the direction of the wave vector, so theta = 0 gives vertical
stripes), measured from a centre ``(x0, y0)``.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "gabor_patch",
    "gratings",
    "natural_image_patches",
    "phase_scramble",
    "phase_shift",
    "pink_noise",
]

# luma weights of ITU-R BT.601, the usual RGB -> grey conversion
_LUMA = np.array([0.299, 0.587, 0.114])
# roll-off of the whitening filter, in cycles per pixel (0.8 of Nyquist), as
# in Olshausen & Field (1997): flattens the 1/f amplitude spectrum without
# boosting the noisiest frequencies next to Nyquist
_WHITENING_CUTOFF = 0.4


def _whiten(image: np.ndarray) -> np.ndarray:
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    radius = np.hypot(fy, fx)
    gain = radius * np.exp(-((radius / _WHITENING_CUTOFF) ** 4))
    return np.fft.irfft2(np.fft.rfft2(image) * gain, s=image.shape)


@lru_cache(maxsize=2)
def _sample_images(whiten: bool) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    images = [
        (image.astype(np.float64) / 255.0) @ _LUMA for image in load_sample_images().images
    ]
    images = [image - image.mean() for image in images]
    if whiten:
        images = [_whiten(image) for image in images]
    scale = np.sqrt(np.mean(np.concatenate([image.ravel() ** 2 for image in images])))
    processed = tuple(image / scale for image in images)
    for image in processed:
        image.setflags(write=False)
    return processed


def natural_image_patches(
    n_patches: int = 1000,
    size: int = 16,
    *,
    whiten: bool = True,
    random_state=None,
) -> np.ndarray:
    """Square grey-level patches cut at random from natural photographs.

    The two photographs of :func:`sklearn.datasets.load_sample_images` are
    converted to grey levels, optionally *whitened* (their ``1/f`` amplitude
    spectrum flattened by the filter ``f exp(-(f / f_0)^4)`` of Olshausen &
    Field 1997, which removes the pixel correlations that make linear
    receptive-field estimates blurry), and scaled so that pixels have zero
    mean and unit variance over the images. Patches are cut at uniformly
    random positions.

    Parameters
    ----------
    n_patches : int, default=1000
    size : int, default=16
        Side of the square patches, in pixels (at most 427).
    whiten : bool, default=True
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    patches : ndarray of shape (n_patches, size, size)

    References
    ----------
    .. [1] Olshausen, B. A. & Field, D. J. (1997). Sparse coding with an
       overcomplete basis set: a strategy employed by V1? Vision Research 37.

    Examples
    --------
    >>> from sklearn_cnnenc.stimuli import natural_image_patches
    >>> patches = natural_image_patches(500, size=12, random_state=0)
    >>> patches.shape
    (500, 12, 12)
    >>> bool(abs(patches.std() - 1) < 0.3)
    True
    """
    if not isinstance(n_patches, Integral) or n_patches < 1:
        raise ValueError(f"n_patches must be a positive integer; got {n_patches!r}.")
    images = _sample_images(bool(whiten))
    max_size = min(min(image.shape) for image in images)
    if not isinstance(size, Integral) or not 1 <= size <= max_size:
        raise ValueError(f"size must be an integer between 1 and {max_size}; got {size!r}.")
    rng = check_random_state(random_state)
    which = rng.randint(len(images), size=n_patches)
    patches = np.empty((n_patches, size, size))
    for index, image in enumerate(images):
        chosen = np.flatnonzero(which == index)
        rows = rng.randint(image.shape[0] - size + 1, size=len(chosen))
        cols = rng.randint(image.shape[1] - size + 1, size=len(chosen))
        windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
        patches[chosen] = windows[rows, cols]
    return patches


def pink_noise(
    n_samples: int,
    shape: int | tuple[int, ...],
    *,
    exponent: float = 1.0,
    random_state=None,
) -> np.ndarray:
    """Gaussian noise with a power spectrum falling as ``1 / f^exponent``.

    ``exponent=1`` is pink (1/f) noise, 0 white noise, 2 brown noise; in two
    dimensions ``f`` is the radial spatial frequency, and ``exponent=2``
    gives the amplitude spectrum ``1/f`` of natural images. Each sample has
    zero mean and unit variance.

    Parameters
    ----------
    n_samples : int
    shape : int or tuple of int
        Shape of one sample: a length (1-D signals) or ``(H, W)`` (images).
    exponent : float, default=1.0
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    noise : ndarray of shape (n_samples, *shape)

    Examples
    --------
    >>> from sklearn_cnnenc.stimuli import pink_noise
    >>> signal = pink_noise(2, 1024, random_state=0)
    >>> signal.shape
    (2, 1024)
    >>> [round(float(v), 6) for v in signal.std(axis=1)]
    [1.0, 1.0]
    """
    if not isinstance(n_samples, Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    shape = (shape,) if isinstance(shape, Integral) else tuple(shape)
    if not shape or any(not isinstance(s, Integral) or s < 2 for s in shape):
        raise ValueError(f"shape must hold integers of at least 2; got {shape!r}.")
    rng = check_random_state(random_state)
    white = rng.standard_normal((n_samples, *shape))
    spectrum = np.fft.rfftn(white, axes=range(1, len(shape) + 1))
    freqs = [np.fft.fftfreq(s) for s in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    radius = np.sqrt(sum(f**2 for f in np.meshgrid(*freqs, indexing="ij")))
    with np.errstate(divide="ignore"):
        amplitude = np.where(radius > 0, radius ** (-exponent / 2.0), 0.0)
    noise = np.fft.irfftn(spectrum * amplitude, s=shape, axes=range(1, len(shape) + 1))
    axes = tuple(range(1, len(shape) + 1))
    noise -= noise.mean(axis=axes, keepdims=True)
    noise /= noise.std(axis=axes, keepdims=True)
    return noise


# --------------------------------------------------------------- parametric
def _image_shape(size) -> tuple[int, int]:
    if isinstance(size, Integral) and not isinstance(size, bool):
        shape = (int(size), int(size))
    else:
        try:
            shape = tuple(int(s) for s in size)
        except TypeError:
            shape = ()
        if len(shape) != 2 or any(not isinstance(s, Integral) for s in size):
            raise ValueError(f"size must be an int or a pair (height, width); got {size!r}.")
    if min(shape) < 1:
        raise ValueError(f"size must be positive; got {size!r}.")
    return shape


def _values(value, name: str, *, positive: bool = False) -> np.ndarray:
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be a finite number or a 1-D list of them; got {value!r}.")
    if positive and np.any(values <= 0):
        raise ValueError(f"{name} must be positive; got {value!r}.")
    return values


def _grid(**columns) -> dict:
    """Cartesian product of the given 1-D value lists (the first one varies slowest)."""
    names = list(columns)
    combos = list(itertools.product(*(range(len(columns[n])) for n in names)))
    index = np.array(combos, dtype=np.intp).reshape(len(combos), len(names))
    return {name: columns[name][index[:, i]] for i, name in enumerate(names)}


def _carrier_coordinates(shape, center, orientation):
    """``x'`` and ``y'`` of every pixel, ``(n, H, W)`` each, for n centres and orientations."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx = x[None] - center[:, 0, None, None]
    dy = y[None] - center[:, 1, None, None]
    cos, sin = np.cos(orientation)[:, None, None], np.sin(orientation)[:, None, None]
    return dx * cos + dy * sin, -dx * sin + dy * cos


def gratings(
    size,
    orientation=0.0,
    frequency=0.125,
    phase=0.0,
    *,
    amplitude: float = 1.0,
) -> Bunch:
    """Full-field sinusoidal gratings, one for every combination of the parameters.

    ``amplitude * cos(2 pi f x' + phase)`` with ``x'`` the coordinate along
    the wave vector measured from the image centre (see the module
    docstring), so a grating and a :func:`gabor_patch` of the same
    parameters are in phase at the centre.

    Parameters
    ----------
    size : int or (int, int)
        Side of square images, or (height, width), in pixels.
    orientation : float or array-like, default=0.0
        Direction of the wave vector, in radians (0: vertical stripes).
    frequency : float or array-like, default=0.125
        Spatial frequency in cycles per pixel (0.5 is the Nyquist limit).
    phase : float or array-like, default=0.0
        Phase at the image centre, in radians.
    amplitude : float, default=1.0
        Peak value (the pixel variance is ``amplitude**2 / 2``).

    Returns
    -------
    stimuli : Bunch
        ``X`` (n, height, width) with one grating per combination of
        ``orientation``, ``frequency`` and ``phase`` (the first varying
        slowest), and ``orientation``, ``frequency``, ``phase`` (n,) the
        parameters of every image, ready for
        :func:`~sklearn_cnnenc.inspection.tuning_curve`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.stimuli import gratings
    >>> stimuli = gratings(16, orientation=[0, np.pi / 2], phase=np.linspace(0, np.pi, 4))
    >>> stimuli.X.shape, stimuli.phase.shape
    ((8, 16, 16), (8,))
    >>> float(stimuli.X[0, 8, 3]) == float(stimuli.X[0, 2, 3])  # vertical stripes
    True
    """
    shape = _image_shape(size)
    if not isinstance(amplitude, Real) or not np.isfinite(amplitude):
        raise ValueError(f"amplitude must be a finite number; got {amplitude!r}.")
    params = _grid(
        orientation=_values(orientation, "orientation"),
        frequency=_values(frequency, "frequency"),
        phase=_values(phase, "phase"),
    )
    n = len(params["phase"])
    center = np.tile([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0], (n, 1))
    along, _ = _carrier_coordinates(shape, center, params["orientation"])
    argument = 2 * np.pi * params["frequency"][:, None, None] * along
    X = amplitude * np.cos(argument + params["phase"][:, None, None])
    return Bunch(X=X, **params)


def gabor_patch(
    size,
    orientation=0.0,
    frequency=0.125,
    phase=0.0,
    sigma=3.0,
    *,
    center=None,
    aspect: float = 1.0,
    amplitude: float = 1.0,
) -> Bunch:
    """Gabor patches (a grating under a Gaussian window), one per parameter combination.

    ``amplitude * exp(-(x'^2 + (y' / aspect)^2) / (2 sigma^2)) * cos(2 pi f x' + phase)``
    with ``x'`` along and ``y'`` across the wave vector, measured from
    ``center`` (see the module docstring): the receptive-field model of
    simple cells (Jones & Palmer 1987) and of
    :func:`~sklearn_cnnenc.datasets.make_v1_population`.

    Parameters
    ----------
    size : int or (int, int)
        Side of square images, or (height, width), in pixels.
    orientation, frequency, phase : float or array-like
        As for :func:`gratings`.
    sigma : float or array-like, default=3.0
        Width of the Gaussian window along the wave vector, in pixels.
    center : (float, float) or array-like of shape (m, 2), optional
        Centre(s) as (x, y) = (column, row) in pixels; default: the image
        centre. Several centres are one more axis of the parameter grid.
    aspect : float, default=1.0
        Width across over width along the wave vector.
    amplitude : float, default=1.0

    Returns
    -------
    stimuli : Bunch
        ``X`` (n, height, width), and ``orientation``, ``frequency``,
        ``phase``, ``sigma`` (n,) and ``center`` (n, 2), the parameters of
        every image (the grid in the order of the arguments, the first
        varying slowest).

    References
    ----------
    .. [1] Jones, J. P. & Palmer, L. A. (1987). An evaluation of the
       two-dimensional Gabor filter model of simple receptive fields in cat
       striate cortex. J. Neurophysiol. 58, 1233-1258.

    Examples
    --------
    >>> from sklearn_cnnenc.stimuli import gabor_patch
    >>> patch = gabor_patch(15, orientation=0.0, frequency=0.2, sigma=2.0).X[0]
    >>> patch.shape, float(patch[7, 7])
    ((15, 15), 1.0)
    """
    shape = _image_shape(size)
    for name, value in (("aspect", aspect), ("amplitude", amplitude)):
        if not isinstance(value, Real) or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if aspect <= 0:
        raise ValueError(f"aspect must be positive; got {aspect!r}.")
    if center is None:
        centers = np.array([[(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0]])
    else:
        centers = np.asarray(center, dtype=np.float64)
        centers = centers.reshape(1, -1) if centers.ndim == 1 else centers
        if centers.ndim != 2 or centers.shape[1] != 2 or not np.all(np.isfinite(centers)):
            raise ValueError(
                f"center must be a pair (x, y) or an array of shape (m, 2); got {center!r}."
            )
    params = _grid(
        orientation=_values(orientation, "orientation"),
        frequency=_values(frequency, "frequency"),
        phase=_values(phase, "phase"),
        sigma=_values(sigma, "sigma", positive=True),
        center=centers,
    )
    along, across = _carrier_coordinates(shape, params["center"], params["orientation"])
    sigma_ = params["sigma"][:, None, None]
    envelope = np.exp(-(along**2 + (across / aspect) ** 2) / (2 * sigma_**2))
    carrier = np.cos(
        2 * np.pi * params["frequency"][:, None, None] * along + params["phase"][:, None, None]
    )
    return Bunch(X=amplitude * envelope * carrier, **params)


# ------------------------------------------------------------ phase transforms
def _fourier_axes(X, axes) -> tuple[np.ndarray, tuple[int, ...]]:
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise ValueError(f"X must be a real numeric array; got dtype {X.dtype}.")
    X = X.astype(np.float64, copy=False)
    axes = tuple(int(a) for a in np.atleast_1d(axes))
    if not axes or X.ndim < len(axes):
        raise ValueError(
            f"X needs at least {len(axes)} dimension(s) to transform axes {axes}; "
            f"got shape {X.shape}."
        )
    axes = tuple(sorted({a % X.ndim for a in axes}))
    if any(X.shape[a] < 2 for a in axes):
        raise ValueError(f"The transformed axes of X must have at least 2 entries; got {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values.")
    return X, axes


def phase_scramble(X, *, axes=(-2, -1), random_state=None) -> np.ndarray:
    """Randomise the Fourier phases of images while keeping their amplitude spectrum.

    Every Fourier component of every image gets an independent, uniformly
    random phase offset; the offsets are the phases of the Fourier
    transform of a real white-noise image, so they have the Hermitian
    symmetry ``psi(-k) = -psi(k)`` and the result is real. The amplitude
    spectrum ``|F(k)|`` is kept exactly (to floating-point rounding), and
    so are the mean (the zero frequency is left alone) and the variance;
    only the arrangement of local structure (edges, lines, their phase) is
    destroyed. The out-of-distribution test of the reference chapter: a
    mechanism that reads only the amplitude spectrum must respond alike to
    an image and its scrambles.

    Parameters
    ----------
    X : array-like of shape (..., height, width)
        One image or a batch (any leading axes); each image gets its own
        phases.
    axes : tuple of int, default=(-2, -1)
        Axes of one image (``(-1,)`` scrambles 1-D signals).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    scrambled : ndarray of the same shape as X (float64)

    See Also
    --------
    phase_shift : shifts all local phases by one angle instead.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.stimuli import natural_image_patches, phase_scramble
    >>> images = natural_image_patches(4, size=16, random_state=0)
    >>> scrambled = phase_scramble(images, random_state=0)
    >>> amplitude = lambda Z: np.abs(np.fft.fft2(Z))
    >>> bool(np.allclose(amplitude(scrambled), amplitude(images)))
    True
    >>> bool(np.allclose(scrambled, images))
    False
    """
    X, axes = _fourier_axes(X, axes)
    rng = check_random_state(random_state)
    spectrum = np.fft.rfftn(X, axes=axes)
    offsets = np.angle(np.fft.rfftn(rng.standard_normal(X.shape), axes=axes))
    zero = [slice(None)] * X.ndim
    for axis in axes:
        zero[axis] = 0
    # keep the mean: the zero frequency has no phase worth randomising
    offsets[tuple(zero)] = 0.0
    shape = [X.shape[a] for a in axes]
    return np.fft.irfftn(spectrum * np.exp(1j * offsets), s=shape, axes=axes)


def _side(height: int, width: int, orientation: np.ndarray) -> np.ndarray:
    """sign(k . u) on the half spectrum of rfft2, odd under k -> -k wherever rfft2 stores both."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    cos = np.cos(orientation)[..., None, None]
    sin = np.sin(orientation)[..., None, None]
    along = cos * fx + sin * fy
    if width % 2 == 0:
        # the Nyquist column holds k and -k (its f_x = +-1/2 are one frequency):
        # only f_y tells them apart
        along = np.concatenate(
            [along[..., :-1], np.broadcast_to(sin * fy, (*along.shape[:-1], 1))], axis=-1
        )
    # a wave vector perpendicular to u, or one that is its own mirror (the
    # mean, Nyquist rows and columns), keeps its phase: it has no side
    along = np.where(np.abs(along) < 1e-12, 0.0, along)
    if height % 2 == 0:
        along[..., height // 2, 0] = 0.0
        if width % 2 == 0:
            along[..., height // 2, -1] = 0.0
    return np.sign(along)


def phase_shift(X, phase, *, orientation=0.0) -> np.ndarray:
    """Shift the phase of every oriented Fourier component of images by one angle.

    Components whose wave vector ``k`` points to the side of the direction
    ``u = (cos orientation, sin orientation)`` (``k . u > 0``) are multiplied
    by ``exp(i phase)``, their mirror images by ``exp(-i phase)`` (so the
    result is real), and components with ``k . u = 0`` (the mean among
    them) are left alone: ``x cos(phase) + H_u(x) sin(phase)`` with
    ``H_u`` the Hilbert transform along ``u``. A grating whose wave vector
    is within 90 degrees of ``u`` moves by ``phase / (2 pi)`` of its period
    (exactly when a whole number of periods fits the image: the transform is
    circular); in any image, local contrast energy and the amplitude spectrum stay
    exactly the same while local phase (edge or line, light or dark) turns
    by ``phase``. An energy-model complex cell of preferred orientation
    ``orientation`` ignores the shift; a linear (simple-cell) filter does
    not.

    Parameters
    ----------
    X : array-like of shape (..., height, width)
    phase : float or array-like
        Angle in radians; an array broadcasts against the leading axes of
        ``X`` (one angle per image).
    orientation : float or array-like, default=0.0
        Direction ``u`` in radians (the convention of :func:`gratings`);
        broadcasts like ``phase``.

    Returns
    -------
    shifted : ndarray of shape np.broadcast(X.shape[:-2], phase, orientation) + (height, width)

    See Also
    --------
    phase_scramble : independent random phases for every component.
    sklearn_cnnenc.inspection.phase_invariance_index : the test built on it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.stimuli import gratings, phase_shift
    >>> theta = np.arctan2(3, 4)  # 4 and 3 periods along x and y of a 32 x 32 image
    >>> grating = gratings(32, orientation=theta, frequency=5 / 32).X[0]
    >>> shifted = phase_shift(grating, np.pi / 2, orientation=theta)
    >>> expected = gratings(32, orientation=theta, frequency=5 / 32, phase=np.pi / 2).X[0]
    >>> bool(np.allclose(shifted, expected))
    True
    """
    X, _ = _fourier_axes(X, (-2, -1))
    phase = np.asarray(phase, dtype=np.float64)
    orientation = np.asarray(orientation, dtype=np.float64)
    if not (np.all(np.isfinite(phase)) and np.all(np.isfinite(orientation))):
        raise ValueError("phase and orientation must be finite.")
    height, width = X.shape[-2:]
    try:
        leading = np.broadcast_shapes(X.shape[:-2], phase.shape, orientation.shape)
    except ValueError:
        raise ValueError(
            f"phase {phase.shape} and orientation {orientation.shape} must broadcast against "
            f"the leading axes of X {X.shape[:-2]}."
        ) from None
    side = _side(height, width, orientation)
    spectrum = np.fft.rfft2(X) * np.exp(1j * phase[..., None, None] * side)
    spectrum = np.broadcast_to(spectrum, (*leading, height, width // 2 + 1))
    return np.fft.irfft2(spectrum, s=(height, width))
