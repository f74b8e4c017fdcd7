"""Over-dispersed spike counts (NB2)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import gammaln, xlogy
from sklearn.utils import check_random_state

from ._base import Family

__all__ = ["NegativeBinomial", "NB_ALPHA_FLOOR"]

# The NB over-dispersion is trained as alpha = floor + raw^2. Under-dispersed
# data put the maximum likelihood at the boundary alpha = 0: with log(alpha) as
# the parameter the optimiser would crawl towards -inf along a direction whose
# curvature vanishes (ruining the quasi-Newton scaling of every other
# parameter); with raw^2 the boundary is the ordinary stationary point raw = 0,
# with positive curvature. Var = mu + 1e-6 mu^2 is a Poisson at any rate.
NB_ALPHA_FLOOR = 1e-6

# Above this shape, lgamma(y + r) - lgamma(r) is taken from Stirling's series:
# the direct difference of two ~r log r numbers loses ~r * eps absolutely,
# enough near the Poisson limit to stall a line search on rounding noise.
_STIRLING_MIN_SHAPE = 1e4


class NegativeBinomial(Family):
    """Over-dispersed counts (NB2): ``Var[y] = mu + alpha mu^2``.

    A gamma mixture of Poissons; ``alpha -> 0`` recovers the Poisson. The
    over-dispersion ``alpha`` (one per neuron) is fitted with the model.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import NegativeBinomial
    >>> y = NegativeBinomial().sample(np.full(20000, 4.0), dispersion=0.5, random_state=0)
    >>> bool(abs(y.var() - (4.0 + 0.5 * 16.0)) < 1.0)
    True
    """

    name = "negative_binomial"
    default_link = "exp"
    links = ("exp", "softplus", "elu1")
    nonnegative_links = ("identity",)
    has_dispersion = True
    trains_dispersion = True
    non_negative = True
    mean_bounds = (0.0, np.inf)
    default_dispersion = 0.5

    def variance(self, mean, dispersion=None):
        alpha = self._require_dispersion(dispersion)
        if isinstance(mean, torch.Tensor):
            alpha = torch.as_tensor(alpha, dtype=mean.dtype, device=mean.device)
        return mean + alpha * mean**2

    def log_normalizer(self, y):
        return torch.lgamma(y.double() + 1.0)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        # evaluated in float64: even stabilised, the terms are O(y log r) apiece
        dtype = eta.dtype
        y, eta = y.double(), eta.double()
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        log_r = -torch.log(dispersion.double())
        r = torch.exp(log_r)
        log_mean = link.log_inverse(eta)
        log1p_mean_over_r = torch.log1p(torch.exp(log_mean - log_r))
        log_p = (
            _log_rising_factorial_torch(y, r)
            - log_normalizer.double()
            - r * log1p_mean_over_r
            + y * (log_mean - log_r - log1p_mean_over_r)
        )
        return (-log_p).to(dtype)

    def dispersion_from_raw(self, raw):
        return NB_ALPHA_FLOOR + raw**2

    def raw_from_dispersion(self, dispersion):
        return np.sqrt(np.maximum(np.asarray(dispersion, dtype=float) - NB_ALPHA_FLOOR, 0.0))

    def log_prob(self, y, mean, dispersion=None):
        alpha = self._require_dispersion(dispersion)
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        r = 1.0 / alpha
        log1p_mean_over_r = np.log1p(mean / r)
        return (
            _log_rising_factorial_numpy(y, r)
            - gammaln(y + 1.0)
            - r * log1p_mean_over_r
            + xlogy(y, mean)
            - y * (np.log(r) + log1p_mean_over_r)
        )

    def deviance(self, y, mean, dispersion=None):
        """``2 [y log(y / mu) - (y + r) log((y + r) / (mu + r))]``, ``r = 1 / alpha``."""
        r = 1.0 / self._require_dispersion(dispersion)
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return 2.0 * (
            xlogy(y, y) - xlogy(y, mean) - (y + r) * (np.log(y + r) - np.log(mean + r))
        )

    def sample(self, mean, dispersion=None, random_state=None):
        alpha = self._require_dispersion(dispersion)
        rng = check_random_state(random_state)
        mean = np.asarray(mean, dtype=float)
        r = np.broadcast_to(1.0 / alpha, mean.shape)
        return rng.negative_binomial(r, r / (r + mean)).astype(float)

    def estimate_dispersion(self, y, mean, sample_weight=None):
        """Method-of-moments over-dispersion, ``mean((y - mu)^2 - mu) / mean(mu^2)``."""
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        excess = np.average((y - mean) ** 2 - mean, axis=0, weights=sample_weight)
        scale = np.average(mean**2, axis=0, weights=sample_weight)
        alpha = excess / np.maximum(scale, np.finfo(float).tiny)
        return np.clip(alpha, 1e-4, None)  # a start away from the Poisson limit

    def candidate_terms(self, eta, link, dispersion=None):
        r = 1.0 / self._require_dispersion(dispersion)
        log_r = np.log(r)
        log_mean = link.log_inverse(torch.as_tensor(eta)).numpy()
        log1p_mean_over_r = np.logaddexp(0.0, log_mean - log_r)
        return log_mean - log_r - log1p_mean_over_r, -(r * log1p_mean_over_r).sum(axis=1)

    def response_term(self, Y, dispersion=None):
        r = 1.0 / self._require_dispersion(dispersion)
        return (_log_rising_factorial_numpy(Y, r) - gammaln(Y + 1.0)).sum(axis=1)


def _stirling_log_rising_factorial(y, r, log, log1p):
    """``lgamma(y + r) - lgamma(r)`` for large ``r`` (error < 1e-25 above 1e4)."""
    s = r + y
    return (
        (r - 0.5) * log1p(y / r)
        + y * log(s)
        - y
        + (1.0 / s - 1.0 / r) / 12.0
        - (1.0 / s**3 - 1.0 / r**3) / 360.0
    )


def _log_rising_factorial_torch(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    direct = torch.lgamma(y + r) - torch.lgamma(r)
    series = _stirling_log_rising_factorial(y, r, torch.log, torch.log1p)
    return torch.where(r > _STIRLING_MIN_SHAPE, series, direct)


def _log_rising_factorial_numpy(y: np.ndarray, r: np.ndarray) -> np.ndarray:
    y, r = np.broadcast_arrays(y, r)
    return np.where(
        r > _STIRLING_MIN_SHAPE,
        _stirling_log_rising_factorial(y, r, np.log, np.log1p),
        gammaln(y + r) - gammaln(r),
    )
