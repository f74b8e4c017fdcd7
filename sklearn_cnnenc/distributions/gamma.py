"""Positive continuous responses (inter-spike intervals, calcium event amplitudes)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.special import digamma, gammaln, polygamma
from sklearn.utils import check_random_state

from ._base import Family, _n_effective

__all__ = ["Gamma"]

# Bounds of the estimated shape k = 1 / phi: below, a density with an
# integrable pole at 0 that no data set pins down; above, a variance of 1e-8
# times the squared mean, which only (near-)exact fits reach.
_MIN_SHAPE, _MAX_SHAPE = 1e-3, 1e8


class Gamma(Family):
    """Gamma responses with mean ``mu`` and variance ``phi mu^2``.

    With shape ``k = 1 / phi``,
    ``log p(y | mu) = (k - 1) log y + k log k - k log mu - k y / mu - log Gamma(k)``.
    Responses must be strictly positive. The mean is fitted with ``phi``
    held at one (the mean's maximum-likelihood estimate does not depend on
    ``phi``, as in any exponential-dispersion GLM) and the shape is then its
    maximum-likelihood estimate given the fitted means, one per neuron. The
    default link is the log (``"exp"``) link.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import Gamma
    >>> y = Gamma().sample(np.full(20000, 2.0), dispersion=0.25, random_state=0)
    >>> bool(abs(y.mean() - 2.0) < 0.05), bool(abs(y.var() - 0.25 * 4.0) < 0.1)
    (True, True)
    """

    name = "gamma"
    default_link = "exp"
    links = ("exp", "softplus", "elu1")
    nonnegative_links = ("identity",)
    has_dispersion = True
    non_negative = True
    mean_bounds = (0.0, np.inf)
    default_dispersion = 0.5

    def validate_response(self, y: np.ndarray) -> None:
        y = np.asarray(y)
        if np.any(y <= 0):
            raise ValueError(
                "The 'gamma' family needs strictly positive responses; found "
                f"{int(np.sum(y <= 0))} value(s) <= 0, minimum {float(np.min(y))!r}."
            )

    def variance(self, mean, dispersion=None):
        return mean**2  # phi is the scale

    def log_normalizer(self, y):
        # the y-only quantity the likelihood reuses (its coefficient k - 1
        # depends on the dispersion)
        return torch.log(y)

    def training_loss(self, y, eta, link, dispersion=None, log_normalizer=None):
        # the NLL at k = 1 without constants: same minimiser in the mean for every k
        log_mean = link.log_inverse(eta)
        return log_mean + y * torch.exp(-log_mean)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        k = 1.0 / dispersion
        log_mean = link.log_inverse(eta)
        return (
            -(k - 1.0) * log_normalizer
            - k * torch.log(k)
            + k * log_mean
            + k * y * torch.exp(-log_mean)
            + torch.lgamma(k)
        )

    def log_prob(self, y, mean, dispersion=None):
        k = 1.0 / self._require_dispersion(dispersion)
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return (k - 1.0) * np.log(y) + k * np.log(k) - k * np.log(mean) - k * y / mean - gammaln(k)

    def deviance(self, y, mean, dispersion=None):
        """``2 [(y - mu) / mu - log(y / mu)]``, divided by ``phi`` when it is given."""
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        unit = 2.0 * ((y - mean) / mean - np.log(y / mean))
        if dispersion is None:
            return unit
        return unit / self._require_dispersion(dispersion)

    def sample(self, mean, dispersion=None, random_state=None):
        k = 1.0 / self._require_dispersion(dispersion)
        rng = check_random_state(random_state)
        mean = np.asarray(mean, dtype=float)
        k = np.broadcast_to(k, mean.shape)
        return rng.gamma(k, mean / k)

    def estimate_dispersion(self, y, mean, sample_weight=None):
        """Maximum-likelihood ``phi = 1 / k`` given the means, one per column.

        Solves ``log k - digamma(k) = mean(y / mu - 1 - log(y / mu))`` by
        Newton's method (all columns at once) from Minka's approximation.
        """
        y = np.asarray(y, dtype=float)
        n_samples = _n_effective(y, sample_weight)
        if n_samples < 2:
            raise ValueError(
                "The 'gamma' dispersion needs at least 2 samples (of positive weight); "
                f"got {n_samples} sample."
            )
        ratio = y / np.asarray(mean, dtype=float)
        s = np.atleast_1d(np.average(ratio - 1.0 - np.log(ratio), axis=0, weights=sample_weight))
        exact = s < 1.0 / (2.0 * _MAX_SHAPE)
        if np.any(exact):
            warnings.warn(
                f"The gamma responses of neuron(s) {np.flatnonzero(exact).tolist()[:10]} are "
                "fitted (near) exactly; their shape is capped at 1e8.",
                UserWarning,
                stacklevel=3,
            )
        k = _ml_shape(s)
        phi = 1.0 / k
        return phi if ratio.ndim > 1 else phi[0]

    def candidate_terms(self, eta, link, dispersion=None):
        k = 1.0 / self._require_dispersion(dispersion)
        log_mean = link.log_inverse(torch.as_tensor(eta)).numpy()
        weights = -k * np.exp(-log_mean)
        candidate = (-k * log_mean + k * np.log(k) - gammaln(k)).sum(axis=1)
        return weights, candidate

    def response_term(self, Y, dispersion=None):
        k = 1.0 / self._require_dispersion(dispersion)
        return np.log(Y) @ (k - 1.0)


def _ml_shape(s: np.ndarray) -> np.ndarray:
    """Maximum-likelihood gamma shape ``k`` solving ``log k - digamma(k) = s``.

    Newton's method (all entries at once) from Minka's approximation; ``k``
    is kept in ``[1e-3, 1e8]``.
    """
    s = np.maximum(s, 1.0 / (2.0 * _MAX_SHAPE))
    k = (3.0 - s + np.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(20):
        step = (np.log(k) - digamma(k) - s) / (1.0 / k - polygamma(1, k))
        k = np.clip(k - step, _MIN_SHAPE, _MAX_SHAPE)
        if np.all(np.abs(step) <= 1e-12 * k):
            break
    return k
