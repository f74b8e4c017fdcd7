"""Poisson spike counts."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import gammaln, xlogy
from sklearn.utils import check_random_state

from ..links import _within_exp_range
from ._base import Family

__all__ = ["Poisson"]


class Poisson(Family):
    """Poisson spike counts: ``p(y | mu) = mu^y exp(-mu) / y!``.

    The log-probability uses ``lgamma(y + 1)`` for ``log y!``, which equals
    the probability mass function for integer counts and extends it smoothly
    to non-negative real responses (deconvolved calcium signals, say).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import Poisson
    >>> counts = Poisson().sample(np.full(5, 3.0), random_state=0)
    >>> counts.shape
    (5,)
    """

    name = "poisson"
    default_link = "exp"
    links = ("exp", "softplus", "elu1")
    nonnegative_links = ("identity",)
    non_negative = True
    mean_bounds = (0.0, np.inf)

    def variance(self, mean, dispersion=None):
        return mean

    def log_normalizer(self, y):
        return torch.lgamma(y + 1.0)

    def loss_and_derivative(self, y, eta, link, log_normalizer=None):
        # exp link: loss exp(eta) - y eta + log y!, derivative exp(eta) - y;
        # a subclass that redefines the loss gets the generic path
        redefined = (
            type(self).negative_log_likelihood is not Poisson.negative_log_likelihood
            or type(self).training_loss is not Family.training_loss
        )
        if redefined or link.name != "exp" or not _within_exp_range(eta):
            return None  # (outside the range: the link's finite tail)
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        with torch.no_grad():
            # two (n, K) allocations, not five: on a population's full batch a
            # fresh temporary costs page faults comparable to the pass itself
            mean = torch.exp(eta)
            values = torch.addcmul(mean, y, eta, value=-1.0).add_(log_normalizer)
            return values, mean.sub_(y)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        return link.inverse(eta) - y * link.log_inverse(eta) + log_normalizer

    def log_prob(self, y, mean, dispersion=None):
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return xlogy(y, mean) - mean - gammaln(y + 1.0)

    def deviance(self, y, mean, dispersion=None):
        """``2 [y log(y / mu) - (y - mu)]``."""
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return 2.0 * (xlogy(y, y) - xlogy(y, mean) - (y - mean))

    def sample(self, mean, dispersion=None, random_state=None):
        rng = check_random_state(random_state)
        return rng.poisson(np.asarray(mean, dtype=float)).astype(float)

    def candidate_terms(self, eta, link, dispersion=None):
        eta_t = torch.as_tensor(eta)
        log_mean = link.log_inverse(eta_t).numpy()
        mean = link.inverse(eta_t).numpy()
        return log_mean, -mean.sum(axis=1)

    def response_term(self, Y, dispersion=None):
        return -gammaln(Y + 1.0).sum(axis=1)
