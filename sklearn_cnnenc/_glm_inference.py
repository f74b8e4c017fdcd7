"""Standard errors, covariance matrices and coefficient tables of fitted GLMs.

The functions here back :meth:`PoissonGLM.covariance_matrix`,
:meth:`PoissonGLM.std_errors` and :meth:`PoissonGLM.coef_table` (the names
glum uses). Everything is computed for all neurons of a population at once:
the Fisher information of neuron ``k`` is ``X~^T diag(w_k) X~`` (``X~`` is the
design with a leading column of ones for the intercept), formed as one
``einsum`` over a ``(n_samples, n_neurons)`` weight matrix.

Conventions (those of statsmodels' ``GLM``):

* The information is the *expected* Fisher information,
  ``w_ik = s_i h'(eta_ik)^2 / Var(y_ik | mu_ik)``, with ``h`` the inverse link
  and the family's variance function; for canonical links (exp for
  Poisson, logit for Bernoulli, identity for Gaussian) it equals the observed
  information.
* Sample weights are frequency weights (statsmodels' ``freq_weights``): a
  weight of 2 counts a sample twice.
* The Gaussian noise variance is the Pearson estimate with a degrees-of-freedom
  correction, ``sum_i s_i (y_i - mu_i)^2 / (sum_i s_i - n_params)`` (statsmodels'
  ``scale``), not the maximum-likelihood ``dispersion_`` of the fit; the
  negative-binomial over-dispersion is held at the fitted ``dispersion_``.
* ``robust=True`` gives the heteroscedasticity-consistent sandwich
  ``H^-1 B H^-1`` with ``B = sum_i g_i g_i^T`` over per-sample scores and
  ``H`` the observed information (HC0, statsmodels' ``cov_type="HC0"``), valid
  when the variance function is wrong.

Under a ridge penalty (``l1_ratio=0``) the estimator is biased towards zero and
the numbers describe the *penalised* estimator: ``H`` is the penalised Hessian
``I + (sum_i s_i) alpha diag(penalty_weights)`` (``n alpha`` without weights)
and the covariance is the sandwich ``H^-1 I H^-1`` (``H^-1 B H^-1`` when
robust), the sampling variability of the ridge solution around its own
(shrunken) expectation. Confidence intervals and
p-values from it are not calibrated for the true coefficients. Under an L1,
elastic-net or group-lasso penalty the estimator has no smooth sampling
distribution (coefficients are exactly zero with positive probability), so the
functions refuse.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from .metrics import _check_sample_weight

__all__ = ["covariance_matrix", "std_errors", "coef_table"]


def _variance(family, mu: torch.Tensor, dispersion) -> torch.Tensor:
    """Variance function of ``family`` at the means ``mu`` (per unit scale)."""
    try:
        return family.variance(mu, dispersion)
    except NotImplementedError as error:
        raise ValueError(str(error)) from error


def _check_penalty(model) -> float:
    """Return the ridge strength of ``model``; refuse for non-smooth penalties."""
    alpha = float(getattr(model, "alpha", 0.0))
    l1_ratio = float(getattr(model, "l1_ratio", 0.0))
    if alpha * l1_ratio > 0:
        raise ValueError(
            "Standard errors are not defined for a fit with an L1, elastic-net or "
            f"group-lasso penalty (alpha={alpha}, l1_ratio={l1_ratio}): such an "
            "estimator is exactly zero with positive probability and has no smooth "
            "sampling distribution. Refit without the L1 part (l1_ratio=0, ideally "
            "alpha=0) on the selected features to get standard errors."
        )
    return alpha * (1.0 - l1_ratio)


def _information(model, X, y, sample_weight, offset, robust):
    """Return (H, meat, n_params) as float64 tensors of shape (K, q, q)."""
    check_is_fitted(model)
    l2 = _check_penalty(model)
    X = np.asarray(model._validate_X(X, reset=False), dtype=float)
    y = np.asarray(y, dtype=float)
    y_2d = y.reshape(len(y), -1)
    if y_2d.shape != (X.shape[0], model.n_outputs_):
        raise ValueError(
            f"y must have shape ({X.shape[0]},) or ({X.shape[0]}, {model.n_outputs_}); "
            f"got {y.shape}."
        )
    model.family_.validate_response(y_2d)
    sample_weight = _check_sample_weight(sample_weight, y_2d)
    offset = model._validate_offset(offset, y_2d.shape, np.float64)

    coef = np.asarray(model.coef_, dtype=float).reshape(model.n_outputs_, -1)
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=float), (model.n_outputs_,))
    fit_intercept = bool(getattr(model, "fit_intercept", True))
    Xt = torch.as_tensor(X)
    if fit_intercept:
        Xt = torch.cat([torch.ones(X.shape[0], 1, dtype=torch.float64), Xt], dim=1)
    eta = torch.as_tensor(X @ coef.T + intercept)
    if offset is not None:
        eta = eta + torch.as_tensor(offset)
    eta.requires_grad_(True)
    mu = model.link_.inverse(eta)
    # the inverse link acts elementwise: the gradient of the sum is h'(eta)
    (dmu,) = torch.autograd.grad(mu.sum(), eta, create_graph=True)
    s = torch.ones(X.shape[0], dtype=torch.float64)
    if sample_weight is not None:
        s = torch.as_tensor(sample_weight, dtype=torch.float64)
    n_params = Xt.shape[1]
    yt = torch.as_tensor(y_2d)

    family = model.family_
    dispersion = getattr(model, "dispersion_", None)
    variance = _variance(family, mu, dispersion)
    # per-sample score of the linear predictor at unit scale, (y - mu) h' / V
    residual_score = (yt - mu) * dmu / variance
    if robust:
        # the sandwich's bread is the observed information, -d score / d eta
        # (statsmodels' choice; the expected one for canonical links)
        (observed,) = torch.autograd.grad(-residual_score.sum(), eta)
    mu, dmu = mu.detach(), dmu.detach()
    variance, residual_score = variance.detach(), residual_score.detach()
    scale = torch.ones(model.n_outputs_, dtype=torch.float64)
    if family.has_dispersion and not family.trains_dispersion:
        # the dispersion is a scale (gaussian noise variance, gamma 1 / shape):
        # its Pearson estimate with the residual degrees of freedom
        df = float(s.sum()) - n_params
        if df <= 0:
            raise ValueError(
                f"The {family.name} dispersion needs more samples than parameters "
                f"({float(s.sum()):g} <= {n_params})."
            )
        scale = (s[:, None] * (yt - mu) ** 2 / variance).sum(dim=0) / df
    weight = s[:, None] * dmu**2 / (variance * scale)  # (n, K)
    if robust:
        weight = s[:, None] * observed / scale
    info = torch.einsum("ik,iq,ir->kqr", weight, Xt, Xt)
    if l2 > 0:
        penalty = torch.ones(X.shape[1], dtype=torch.float64)
        weights = getattr(model, "penalty_weights", None)
        if weights is not None:
            penalty = torch.as_tensor(np.asarray(weights, dtype=float))
        if fit_intercept:
            penalty = torch.cat([torch.zeros(1, dtype=torch.float64), penalty])
        # the fit minimises sum_i s_i NLL_i / sum_i s_i + penalty: on the scale of
        # the summed log-likelihood the penalty counts sum_i s_i times
        hessian = info + float(s.sum()) * l2 * torch.diag(penalty)
    else:
        hessian = info
    meat = info
    if robust:
        # per-sample scores of neuron k: s_i (y - mu) h'(eta) / (Var * scale) x_i
        score = s[:, None] * residual_score / scale
        meat = torch.einsum("ik,iq,ir->kqr", score**2, Xt, Xt)
    return hessian, meat, l2 > 0 or robust


def covariance_matrix(
    model, X, y, *, sample_weight=None, offset=None, robust: bool = False
) -> np.ndarray:
    """Asymptotic covariance of the fitted intercept and coefficients.

    See :meth:`sklearn_cnnenc.PoissonGLM.covariance_matrix`.
    """
    hessian, meat, sandwich = _information(model, X, y, sample_weight, offset, robust)
    singular = ValueError(
        "The Fisher information is singular (collinear or constant features, or "
        "a perfectly separated binary response); standard errors are undefined."
    )
    # singular up to round-off once each parameter is in its own units (the
    # diagonal scaled to one): whether LU meets an exact zero pivot depends on
    # the last bits of the weights, so an exact test would decide by chance
    diagonal = hessian.diagonal(dim1=-2, dim2=-1)
    if not bool((diagonal > 0).all()):
        raise singular
    unit = diagonal.rsqrt()
    eigenvalues = torch.linalg.eigvalsh(hessian * unit[..., :, None] * unit[..., None, :])
    resolution = hessian.shape[-1] * torch.finfo(hessian.dtype).eps * eigenvalues[..., -1]
    if not bool((eigenvalues[..., 0] > resolution).all()):
        raise singular
    try:
        inverse = torch.linalg.inv(hessian)
    except RuntimeError as error:  # torch raises a subclass of RuntimeError
        raise singular from error
    cov = inverse @ meat @ inverse if sandwich else inverse
    cov = 0.5 * (cov + cov.transpose(1, 2))
    cov = cov.numpy()
    return cov[0] if np.ndim(model.coef_) == 1 else cov


def std_errors(model, X, y, *, sample_weight=None, offset=None, robust: bool = False):
    """Standard errors, intercept first. See :meth:`PoissonGLM.std_errors`."""
    cov = covariance_matrix(model, X, y, sample_weight=sample_weight, offset=offset, robust=robust)
    return np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))


def _feature_names(model) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(model.n_features_in_)]
    names = [str(name) for name in names]
    if getattr(model, "fit_intercept", True):
        names = ["intercept", *names]
    return names


def coef_table(
    model,
    X,
    y,
    *,
    sample_weight=None,
    offset=None,
    robust: bool = False,
    confidence_level: float = 0.95,
):
    """Coefficient table as a pandas DataFrame. See :meth:`PoissonGLM.coef_table`."""
    try:
        import pandas as pd
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "coef_table needs pandas; install it with `pip install sklearn-cnnenc[pandas]` "
            "(or use std_errors, which returns a numpy array)."
        ) from error
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1); got {confidence_level!r}.")
    se = np.atleast_2d(
        std_errors(model, X, y, sample_weight=sample_weight, offset=offset, robust=robust)
    )
    coef = np.asarray(model.coef_, dtype=float).reshape(model.n_outputs_, -1)
    if getattr(model, "fit_intercept", True):
        intercept = np.broadcast_to(np.asarray(model.intercept_, float), (model.n_outputs_,))
        coef = np.column_stack([intercept, coef])
    z = coef / se
    p_value = 2.0 * stats.norm.sf(np.abs(z))
    half_width = stats.norm.ppf(0.5 + confidence_level / 2.0) * se
    names = _feature_names(model)
    columns = {
        "coef": coef,
        "se": se,
        "z": z,
        "p_value": p_value,
        "ci_lower": coef - half_width,
        "ci_upper": coef + half_width,
    }
    data = {key: value.ravel() for key, value in columns.items()}
    if np.ndim(model.coef_) == 1:
        index = pd.Index(names, name="feature")
    else:
        index = pd.MultiIndex.from_product(
            [range(model.n_outputs_), names], names=["neuron", "feature"]
        )
    return pd.DataFrame(data, index=index)
