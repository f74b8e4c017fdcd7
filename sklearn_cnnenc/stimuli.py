"""Stimuli for encoding-model experiments: natural image patches and pink noise.

Natural images come from the two photographs that ship with scikit-learn
(:func:`sklearn.datasets.load_sample_images`), so everything works offline.
"""

from __future__ import annotations

from functools import lru_cache
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["natural_image_patches", "pink_noise"]

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
