"""Gaussian responses (calcium dF/F, voltage)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..utils._torch import LOG_2PI
from ._base import Family, _n_effective

__all__ = ["Gaussian", "GAUSSIAN_VARIANCE_FLOOR"]

# Relative floor of the estimated noise variance: a neuron whose residuals
# vanish (a constant response, a dead ROI) would otherwise get phi ~ 1e-308
# and scores of +hundreds of nats. The floor is relative to the response
# scale (its mean square; 1 for an all-zero column).
GAUSSIAN_VARIANCE_FLOOR = 1e-10


class Gaussian(Family):
    """Gaussian responses (e.g. calcium dF/F): ``y ~ N(mu, phi)``.

    The noise variance ``phi`` (one per neuron) is the dispersion. Training
    minimises half the squared error (the NLL at ``phi = 1`` without its
    constant, as in scikit-learn's and glum's Gaussian GLMs); ``phi`` is then
    its maximum-likelihood estimate, the mean squared residual, floored at
    ``1e-10`` times the response scale with a warning naming the neurons
    concerned. Training ``phi`` jointly would make the objective unbounded
    whenever the model can interpolate the data.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import Gaussian
    >>> round(float(Gaussian().log_prob(0.0, 0.0, dispersion=1.0)), 4)
    -0.9189
    """

    name = "gaussian"
    default_link = "identity"
    links = ("identity", "exp", "softplus", "elu1")
    has_dispersion = True
    default_dispersion = 1.0

    def variance(self, mean, dispersion=None):
        return mean * 0.0 + 1.0  # phi is the scale

    def loss_and_derivative(self, y, eta, link, log_normalizer=None):
        # identity link: loss (eta - y)^2 / 2, derivative eta - y
        if link.name != "identity" or type(self).training_loss is not Gaussian.training_loss:
            return None
        with torch.no_grad():
            residual = eta - y
            return residual.square().mul_(0.5), residual

    def training_loss(self, y, eta, link, dispersion=None, log_normalizer=None):
        return 0.5 * (y - link.inverse(eta)) ** 2

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        residual = y - link.inverse(eta)
        return 0.5 * (residual**2 / dispersion + torch.log(dispersion) + LOG_2PI)

    def log_prob(self, y, mean, dispersion=None):
        dispersion = self._require_dispersion(dispersion)
        residual = np.asarray(y, dtype=float) - np.asarray(mean, dtype=float)
        return -0.5 * (residual**2 / dispersion + np.log(dispersion) + LOG_2PI)

    def deviance(self, y, mean, dispersion=None):
        """``(y - mu)^2``, divided by ``phi`` when it is given."""
        residual2 = (np.asarray(y, dtype=float) - np.asarray(mean, dtype=float)) ** 2
        if dispersion is None:
            return residual2
        return residual2 / self._require_dispersion(dispersion)

    def sample(self, mean, dispersion=None, random_state=None):
        dispersion = self._require_dispersion(dispersion)
        rng = check_random_state(random_state)
        mean = np.asarray(mean, dtype=float)
        return mean + rng.standard_normal(mean.shape) * np.sqrt(dispersion)

    def estimate_dispersion(self, y, mean, sample_weight=None):
        """Maximum-likelihood noise variance: the weighted mean squared residual.

        Raises ``ValueError`` with fewer than two samples; floors the
        variance (with a warning naming the neurons) where the residuals
        vanish, e.g. for a constant response.
        """
        y = np.asarray(y, dtype=float)
        n_samples = _n_effective(y, sample_weight)
        if n_samples < 2:
            raise ValueError(
                "The 'gaussian' noise variance needs at least 2 samples (of positive "
                f"weight); got {n_samples} sample."
            )
        residual2 = (y - np.asarray(mean, dtype=float)) ** 2
        phi = np.atleast_1d(np.average(residual2, axis=0, weights=sample_weight))
        scale = np.atleast_1d(np.average(y**2, axis=0, weights=sample_weight))
        floor = GAUSSIAN_VARIANCE_FLOOR * np.where(scale > 0, scale, 1.0)
        low = phi < floor
        if np.any(low):
            neurons = np.flatnonzero(low)
            shown = ", ".join(str(int(n)) for n in neurons[:10])
            warnings.warn(
                f"The gaussian noise variance of neuron(s) {shown}"
                f"{' ...' if len(neurons) > 10 else ''} is (near) zero: their responses are "
                "(near-)constant or fitted exactly. It is floored at "
                f"{GAUSSIAN_VARIANCE_FLOOR:g} times the response scale; their log-likelihoods "
                "are not meaningful.",
                UserWarning,
                stacklevel=3,
            )
        phi = np.maximum(phi, floor)
        return phi if residual2.ndim > 1 else phi[0]

    def candidate_terms(self, eta, link, dispersion=None):
        mean = link.inverse(torch.as_tensor(eta)).numpy()
        phi = self._require_dispersion(dispersion)
        return mean / phi, -0.5 * (mean**2 / phi).sum(axis=1)

    def response_term(self, Y, dispersion=None):
        phi = self._require_dispersion(dispersion)
        return -0.5 * (Y**2 @ (1.0 / phi)) - 0.5 * float(np.sum(np.log(phi) + LOG_2PI))
