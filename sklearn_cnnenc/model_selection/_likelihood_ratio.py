"""Likelihood-ratio tests between nested fitted GLMs, neuron by neuron."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ..metrics import _check_sample_weight

__all__ = ["likelihood_ratio_test"]


def _n_params(model) -> int:
    return int(model.n_features_in_) + int(bool(getattr(model, "fit_intercept", True)))


def _check_unpenalised(model, name: str) -> None:
    alpha = float(getattr(model, "alpha", 0.0))
    l1_ratio = float(getattr(model, "l1_ratio", 0.0))
    if alpha * l1_ratio > 0:
        raise ValueError(
            f"The {name} model has an L1 / group-lasso penalty (alpha={alpha}, "
            f"l1_ratio={l1_ratio}): its deviance has no chi-squared reference "
            "distribution. Refit both models with alpha=0."
        )
    if alpha > 0:
        warnings.warn(
            f"The {name} model is ridge-penalised (alpha={alpha}); the chi-squared "
            "reference distribution of the likelihood ratio holds for unpenalised "
            "maximum-likelihood fits only (use alpha=0 for exact tests).",
            UserWarning,
            stacklevel=3,
        )


def likelihood_ratio_test(
    full, reduced, X_full, X_reduced, y, *, sample_weight=None, offset=None, df=None
) -> Bunch:
    """Likelihood-ratio (deviance-difference) test of nested GLMs, per neuron.

    Under the null hypothesis that the extra parameters of ``full`` are zero,
    ``2 (log L_full - log L_reduced)`` is asymptotically chi-squared with
    ``df`` degrees of freedom (Wilks' theorem). Both models must be fitted by
    unpenalised maximum likelihood (``alpha=0``; a ridge penalty warns, an
    L1 penalty is refused) on the same responses, with the reduced design
    nested in the full one (not checked: e.g. a subset of the columns). For
    families with a fitted dispersion the log-likelihoods use each model's
    own maximum-likelihood dispersion.

    Parameters
    ----------
    full, reduced : fitted PoissonGLM (or any fitted encoder of the library)
    X_full, X_reduced : array-like of shape (n_samples, n_features_*)
        The designs of the two models.
    y : array-like of shape (n_samples,) or (n_samples, n_neurons)
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the samples in the log-likelihoods.
    offset : array-like, optional
        Offset of both models.
    df : int, optional
        Degrees of freedom; default the difference in the number of parameters
        (features plus intercept).

    Returns
    -------
    result : sklearn.utils.Bunch
        ``statistic`` (deviance difference, per neuron), ``df`` and
        ``p_value`` (per neuron); arrays of shape (n_neurons,), or floats for
        a 1-D ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.model_selection import likelihood_ratio_test
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> y = rng.poisson(np.exp(0.2 + 0.5 * X[:, 0]))
    >>> full = PoissonGLM(alpha=0.0).fit(X, y)
    >>> reduced = PoissonGLM(alpha=0.0).fit(X[:, :1], y)
    >>> result = likelihood_ratio_test(full, reduced, X, X[:, :1], y)
    >>> result.df
    2
    >>> bool(result.p_value > 0.01)  # the extra features are noise
    True
    """
    for model, name in ((full, "full"), (reduced, "reduced")):
        check_is_fitted(model)
        _check_unpenalised(model, name)
    if full.n_outputs_ != reduced.n_outputs_:
        raise ValueError(
            f"The models describe different numbers of neurons ({full.n_outputs_} and "
            f"{reduced.n_outputs_})."
        )
    if full.family_ != reduced.family_:
        raise ValueError(
            f"Nested models need one family; got {full.family_.name!r} and "
            f"{reduced.family_.name!r}."
        )
    if df is None:
        df = _n_params(full) - _n_params(reduced)
    if not (isinstance(df, int | np.integer) and df > 0):
        raise ValueError(
            f"df must be a positive integer; got {df!r} (is the reduced model nested "
            "in the full one, with fewer parameters?)."
        )
    ll_full = full.log_likelihood(X_full, y, offset=offset, per_neuron=True)
    ll_reduced = reduced.log_likelihood(X_reduced, y, offset=offset, per_neuron=True)
    ll_full = ll_full.reshape(len(ll_full), -1)
    ll_reduced = ll_reduced.reshape(len(ll_reduced), -1)
    weights = _check_sample_weight(sample_weight, ll_full)
    if weights is None:
        weights = np.ones(len(ll_full))
    statistic = 2.0 * (weights @ (ll_full - ll_reduced))
    # a statistic below zero is the optimiser's tolerance, not evidence
    statistic = np.maximum(statistic, 0.0)
    p_value = stats.chi2.sf(statistic, df)
    if np.ndim(y) == 1:
        return Bunch(statistic=float(statistic[0]), df=int(df), p_value=float(p_value[0]))
    return Bunch(statistic=statistic, df=int(df), p_value=p_value)
