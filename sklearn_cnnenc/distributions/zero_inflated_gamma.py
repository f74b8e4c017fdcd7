"""Deconvolved calcium responses: exact zeros or a gamma-distributed event amplitude."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import gammaln
from sklearn.utils import check_random_state

from ._base import Family
from .gamma import _ml_shape

__all__ = ["ZeroInflatedGamma"]


class ZeroInflatedGamma(Family):
    """Zero-inflated gamma responses (deconvolved calcium activity), registered as ``"zig"``.

    A response is zero with probability ``1 - q``; otherwise it is drawn from
    a gamma distribution of shape ``k = 1 / phi`` and mean ``mu / q``, so that
    the expected response is the model's mean ``mu``:

    .. math::

        p(y \\mid \\mu) = (1 - q)\\,[y = 0] + q\\,[y > 0]\\,
        \\mathrm{Gamma}(y;\\ k, \\text{mean } \\mu / q).

    This is the model of Wei et al. (2020), "A zero-inflated gamma model for
    deconvolved calcium imaging traces" (``ZIGLoss`` in neuralpredictors),
    with its threshold ``loc`` at zero: threshold the traces first
    (``y[y < loc] = 0``) to use a positive one. (Their zero component, uniform
    on ``[0, loc)``, only adds the constant ``-log(loc)`` per zero to the
    log-likelihood.)

    **Parameters.** The predictor gives the mean ``mu`` (so ``predict``, the
    correlation metrics and the decoder's candidates are expected responses);
    ``q`` and the shape are per-neuron constants. The ``dispersion`` is an
    array of shape ``(n_neurons, 2)``: column 0 is ``q`` (the probability of
    a non-zero response, in ``(0, 1]``), column 1 is ``phi = 1 / k`` (the
    gamma dispersion, as for :class:`Gamma`). One pair ``(q, phi)`` of shape
    ``(2,)`` stands for every neuron.

    **Fitting.** ``Var[y] = mu^2 ((1 + phi) / q - 1)``: the variance is a
    constant times ``mu^2``, so the mean is fitted with the gamma
    quasi-likelihood ``log mu + y / mu`` over all responses, zeros included
    (the efficient estimating equation for this variance function, and the
    exact maximum-likelihood estimate for one mean per neuron); ``q`` and the
    shape are then their maximum-likelihood estimates given the fitted means:
    ``q`` is the (weighted) fraction of non-zero responses and ``k`` solves
    the gamma shape equation on ``y / (mu / q)`` over the non-zero responses
    (:meth:`estimate_dispersion`). Modelling ``q`` as a second output of the
    network is not offered: each estimator's predictor gives one value per
    neuron.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import get_family
    >>> zig = get_family("zig")
    >>> y = zig.sample(np.full(50_000, 2.0), dispersion=[0.3, 0.5], random_state=0)
    >>> bool(abs(y.mean() - 2.0) < 0.05), bool(abs(np.mean(y == 0) - 0.7) < 0.01)
    (True, True)
    """

    name = "zig"
    default_link = "exp"
    links = ("exp", "softplus", "elu1")
    has_dispersion = True
    non_negative = True
    mean_bounds = (0.0, np.inf)
    default_dispersion = (0.5, 0.5)

    def dispersion_shape(self, n_outputs: int) -> tuple[int, ...]:
        return (n_outputs, 2)

    def variance(self, mean, dispersion=None):
        return mean**2  # times the scale (1 + phi) / q - 1

    def log_normalizer(self, y):
        return torch.log(torch.where(y > 0, y, torch.ones_like(y)))

    def training_loss(self, y, eta, link, dispersion=None, log_normalizer=None):
        # the gamma quasi-likelihood of the mean, zeros included (see the class notes)
        log_mean = link.log_inverse(eta)
        return log_mean + y * torch.exp(-log_mean)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        if dispersion is None or dispersion.shape[-1:] != (2,):
            self._split(dispersion)  # the clear error
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        q, k = dispersion[..., 0], 1.0 / dispersion[..., 1]
        log_q = torch.log(q)
        log_gamma_mean = link.log_inverse(eta) - log_q
        positive = (
            log_q
            + (k - 1.0) * log_normalizer
            + k * torch.log(k)
            - k * log_gamma_mean
            - k * y * torch.exp(-log_gamma_mean)
            - torch.lgamma(k)
        )
        return -torch.where(y > 0, positive, torch.log1p(-q))

    def log_prob(self, y, mean, dispersion=None):
        q, k = self._split(dispersion)
        y = np.asarray(y, dtype=float)
        gamma_mean = np.asarray(mean, dtype=float) / q
        log_y = np.log(np.where(y > 0, y, 1.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            positive = (
                np.log(q)
                + (k - 1.0) * log_y
                + k * np.log(k)
                - k * np.log(gamma_mean)
                - k * y / gamma_mean
                - gammaln(k)
            )
            return np.where(y > 0, positive, np.log1p(-q))

    def saturated_log_prob(self, y, dispersion=None):
        q, _ = self._split(dispersion)
        # the likelihood of a non-zero y peaks at the gamma mean y, i.e. mu = q y
        # (a zero's does not depend on the mean)
        y = np.asarray(y, dtype=float)
        return self.log_prob(y, q * np.where(y > 0, y, 1.0), dispersion)

    def deviance(self, y, mean, dispersion=None):
        """``2 k [(y - m) / m - log(y / m)]`` with ``m = mu / q`` for ``y > 0``, 0 for zeros."""
        q, k = self._split(dispersion)
        y = np.asarray(y, dtype=float)
        gamma_mean = np.asarray(mean, dtype=float) / q
        ratio = np.where(y > 0, y, gamma_mean) / gamma_mean
        return 2.0 * k * (ratio - 1.0 - np.log(ratio))

    def sample(self, mean, dispersion=None, random_state=None):
        q, k = self._split(dispersion)
        rng = check_random_state(random_state)
        mean = np.asarray(mean, dtype=float)
        q, k = np.broadcast_to(q, mean.shape), np.broadcast_to(k, mean.shape)
        non_zero = rng.random_sample(mean.shape) < q
        amplitude = rng.gamma(k, mean / (q * k))
        return np.where(non_zero, amplitude, 0.0)

    def estimate_dispersion(self, y, mean, sample_weight=None):
        """Maximum-likelihood ``(q, phi)`` given the means, one row per column of ``y``.

        ``q`` is the weighted fraction of non-zero responses; ``phi = 1 / k``
        with ``k`` the gamma shape of ``y / (mu / q)`` over them.
        """
        y = np.asarray(y, dtype=float)
        one_column = y.ndim == 1
        y = y.reshape(len(y), -1)
        mean = np.asarray(mean, dtype=float).reshape(y.shape)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        weight = np.broadcast_to(weight[:, None], y.shape)
        positive = weight * (y > 0)
        n_positive = np.sum((positive > 0), axis=0)
        if np.any(n_positive < 2):
            raise ValueError(
                "The 'zig' family needs at least 2 non-zero responses (of positive weight) "
                "per neuron to estimate its gamma shape; neuron(s) "
                f"{np.flatnonzero(n_positive < 2).tolist()[:10]} have fewer."
            )
        q = positive.sum(axis=0) / weight.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(y > 0, y * q / mean, 1.0)
            s = np.sum(positive * (ratio - 1.0 - np.log(ratio)), axis=0) / positive.sum(axis=0)
        dispersion = np.column_stack([q, 1.0 / _ml_shape(s)])
        return dispersion[0] if one_column else dispersion

    def candidate_terms(self, eta, link, dispersion=None):
        q, k = self._split(dispersion)
        log_mean = link.log_inverse(torch.as_tensor(eta)).numpy()
        # y A_y + [y > 0] A_nonzero, see response_statistics
        weights = np.concatenate([-k * q * np.exp(-log_mean), -k * log_mean], axis=1)
        return weights, np.zeros(len(log_mean))

    def response_statistics(self, Y):
        Y = np.asarray(Y, dtype=float)
        return np.concatenate([Y, (Y > 0).astype(float)], axis=1)

    def response_term(self, Y, dispersion=None):
        q, k = self._split(dispersion)
        Y = np.asarray(Y, dtype=float)
        log_y = np.log(np.where(Y > 0, Y, 1.0))
        with np.errstate(divide="ignore"):
            non_zero = (k + 1.0) * np.log(q) + k * np.log(k) - gammaln(k) + (k - 1.0) * log_y
            return np.where(Y > 0, non_zero, np.log1p(-q)).sum(axis=1)

    # --- helpers --------------------------------------------------------------
    def _split(self, dispersion) -> tuple[np.ndarray, np.ndarray]:
        """``(q, k)`` from the ``(..., 2)`` dispersion, validated."""
        if dispersion is None:
            raise ValueError(
                "The 'zig' family needs its dispersion: an array (n_neurons, 2) of "
                "(q, phi) pairs, or one pair."
            )
        dispersion = np.asarray(dispersion, dtype=float)
        if dispersion.ndim == 0 or dispersion.shape[-1] != 2:
            raise ValueError(
                "The 'zig' dispersion holds (q, phi) pairs: an array of shape (2,) or "
                f"(n_neurons, 2); got shape {dispersion.shape}."
            )
        q, phi = dispersion[..., 0], dispersion[..., 1]
        if np.any(~np.isfinite(dispersion)) or np.any(q <= 0) or np.any(q > 1) or np.any(
            phi <= 0
        ):
            raise ValueError(
                "The 'zig' dispersion needs q in (0, 1] (column 0) and a finite positive "
                f"phi (column 1); got {dispersion!r}."
            )
        return q, 1.0 / phi

    def _require_dispersion(self, dispersion):
        self._split(dispersion)
        return np.asarray(dispersion, dtype=float)
