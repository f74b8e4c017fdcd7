"""Binary responses (spike or no spike in a bin)."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from scipy.special import xlog1py, xlogy
from sklearn.utils import check_random_state

from ._base import Family

__all__ = ["Bernoulli"]


class Bernoulli(Family):
    """Binary responses (spike / no spike in a bin): ``P(y = 1) = mu``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import Bernoulli
    >>> round(float(Bernoulli().log_prob(1.0, 0.5)), 4)
    -0.6931
    """

    name = "bernoulli"
    default_link = "logit"
    links = ("logit",)
    # its support is {0, 1}, checked by validate_response; not "non-negative"
    # (scikit-learn's positive_only tag would shift binary test data off {0, 1})
    non_negative = False
    mean_bounds = (0.0, 1.0)

    def validate_response(self, y: np.ndarray) -> None:
        y = np.asarray(y)
        if np.any((y != 0) & (y != 1)):
            raise ValueError(
                "The 'bernoulli' family needs binary responses in {0, 1}; found "
                f"{int(np.sum((y != 0) & (y != 1)))} other value(s)."
            )

    def variance(self, mean, dispersion=None):
        return mean * (1.0 - mean)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        # the logit link is the only one allowed: -log p = softplus(eta) - y eta
        return F.softplus(eta) - y * eta

    def log_prob(self, y, mean, dispersion=None):
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return xlogy(y, mean) + xlog1py(1.0 - y, -mean)

    def deviance(self, y, mean, dispersion=None):
        """``-2 log p(y | mu)`` (the saturated model has probability one)."""
        return -2.0 * self.log_prob(y, mean)

    def sample(self, mean, dispersion=None, random_state=None):
        rng = check_random_state(random_state)
        return rng.binomial(1, np.asarray(mean, dtype=float)).astype(float)

    def candidate_terms(self, eta, link, dispersion=None):
        eta = np.asarray(eta, dtype=float)
        # log(1 - sigmoid(eta)) = -softplus(eta), written to stay finite
        return eta, -np.logaddexp(0.0, eta).sum(axis=1)

    def response_term(self, Y, dispersion=None):
        return np.zeros(len(Y))
