"""Metrics and scorers for neural encoding models.

An encoding model predicts the mean response ``y_pred`` (expected spike count
per bin, spike probability, or mean fluorescence) of one neuron or of a
population from a stimulus. The metrics here compare it with the recorded
responses ``y_true``:

* likelihood-based scores, the natural yardstick for models fitted by maximum
  likelihood: :func:`log_likelihood` (nats, constants included),
  :func:`bits_per_spike` (information gain over a homogeneous Poisson model)
  and :func:`pseudo_r2` (McFadden's or the deviance-based R²);
* :func:`correlation`, the Pearson correlation per neuron;
* for data with repeated presentations of each stimulus, :func:`fev`,
  :func:`feve` and :func:`explainable_variance`, which separate the
  stimulus-driven variance from trial-to-trial noise.

Responses have shape ``(n_samples,)`` for one neuron or
``(n_samples, n_neurons)`` for a population. Every metric scores each neuron
separately; ``multioutput="raw_values"`` returns one value per neuron and
``multioutput="uniform_average"`` their mean. A neuron on which a metric is
undefined (for instance bits per spike of a neuron that did not spike) gets
``nan`` and an :class:`~sklearn.exceptions.UndefinedMetricWarning`; the
average is taken over the other neurons.

All scores are "greater is better", so :func:`make_encoding_scorer` turns each
into a scorer for ``GridSearchCV``, ``cross_val_score`` and ``cross_validate``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn import get_config
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils.metadata_routing import MetadataRequest

from .distributions import Family, get_family
from .utils._missing import observation_groups

__all__ = [
    "log_likelihood",
    "bits_per_spike",
    "pseudo_r2",
    "correlation",
    "oracle_correlation",
    "correlation_to_average",
    "fev",
    "feve",
    "explainable_variance",
    "make_encoding_scorer",
    "get_scorer",
    "SCORERS",
    "METRICS",
    "Metric",
]

_MULTIOUTPUT_OPTIONS = ("raw_values", "uniform_average")
_AGGREGATE_OPTIONS = ("mean", "sum", "none")
_PSEUDO_R2_KINDS = ("mcfadden", "deviance")


# --- validation helpers ---------------------------------------------------


def _check_option(value: Any, options: tuple[str, ...], name: str) -> None:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {list(options)}.")


def _check_targets(
    y_true: ArrayLike, y_pred: ArrayLike
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Validate responses and predictions; return both as 2-D arrays.

    The third return value is the shape of ``y_true`` as given, used to shape
    elementwise outputs and to broadcast ``y_null``.
    """
    y_true = check_array(y_true, ensure_2d=False, dtype=np.float64, input_name="y_true")
    y_pred = check_array(y_pred, ensure_2d=False, dtype=np.float64, input_name="y_pred")
    y_true_2d = y_true.reshape(y_true.shape[0], -1)
    y_pred_2d = y_pred.reshape(y_pred.shape[0], -1)
    if y_true_2d.shape != y_pred_2d.shape:
        raise ValueError(
            f"y_true and y_pred have different shapes: {y_true.shape} and {y_pred.shape}; "
            "both must be (n_samples,) or (n_samples, n_neurons)."
        )
    return y_true_2d, y_pred_2d, y_true.shape


def _check_sample_weight(sample_weight: ArrayLike | None, y_true: np.ndarray) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sample_weight = check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
    )
    if sample_weight.ndim != 1:
        raise ValueError(
            f"sample_weight must be 1-D of shape (n_samples,); got shape {sample_weight.shape}."
        )
    check_consistent_length(y_true, sample_weight)
    if np.any(sample_weight < 0):
        raise ValueError("sample_weight must be non-negative; found negative weights.")
    if not np.sum(sample_weight) > 0:
        raise ValueError("sample_weight must have a positive sum; all weights are zero.")
    return sample_weight


def _check_mean(family: Family, mean: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``mean`` lies outside the family's mean domain."""
    family.check_mean(mean, name)


def _check_dispersion(
    family: Family,
    dispersion: ArrayLike | None,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_weight: np.ndarray | None,
) -> np.ndarray | None:
    """Return the dispersion to score with: validated, or estimated if not trained."""
    if not family.has_dispersion:
        if dispersion is not None:
            raise ValueError(
                f"The {family.name!r} family has no dispersion parameter; "
                f"got dispersion={dispersion!r}. Leave it as None."
            )
        return None
    if dispersion is None:
        if not family.trains_dispersion:
            # estimated from the fitted means, as the estimators do (gaussian, gamma)
            return family.estimate_dispersion(y_true, y_pred, sample_weight)
        raise ValueError(
            f"The {family.name!r} log-likelihood needs its dispersion: pass "
            "dispersion=..., a scalar or one value per neuron (for instance the "
            "fitted estimator's dispersion_)."
        )
    full = family.dispersion_shape(y_true.shape[1])
    one = full[1:]  # one value (or one tuple) for every neuron
    dispersion = np.asarray(dispersion, dtype=np.float64)
    if dispersion.shape not in (full, one, (1, *one)):
        raise ValueError(
            f"dispersion must be of shape {one} (every neuron) or {full} (one per neuron) "
            f"for the {family.name!r} family; got shape {dispersion.shape}."
        )
    if np.any(~np.isfinite(dispersion)) or np.any(dispersion <= 0):
        raise ValueError(f"dispersion must be finite and positive; got {dispersion!r}.")
    return dispersion


def _constant_columns(y: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    if sample_weight is not None:
        y = y[sample_weight > 0]
    return np.all(y == y[0], axis=0)


def _resolve_null(
    y_null: ArrayLike | None,
    y_true: np.ndarray,
    y_shape: tuple[int, ...],
    sample_weight: np.ndarray | None,
    family: Family,
) -> np.ndarray:
    """Mean response of the null model, as an array of the shape of ``y_true``."""
    if y_null is None:
        null = np.average(y_true, axis=0, weights=sample_weight)
        # The average of a constant column can differ from its value in the last
        # bit; using the value itself makes the null exactly the saturated model
        # there, so the undefined scores are detected exactly rather than
        # returned as a ratio of rounding errors.
        constant = _constant_columns(y_true, sample_weight)
        first = 0 if sample_weight is None else int(np.argmax(sample_weight > 0))
        null = np.where(constant, y_true[first], null)
        return np.broadcast_to(null, y_true.shape)
    y_null = np.asarray(y_null, dtype=np.float64)
    if not np.all(np.isfinite(y_null)):
        raise ValueError("Input y_null contains NaN or infinity.")
    try:
        null = np.broadcast_to(y_null, y_shape)
    except ValueError:
        raise ValueError(
            f"y_null of shape {y_null.shape} cannot be broadcast to y_true of shape "
            f"{y_shape}; pass a scalar, an array of shape (n_neurons,) or an array "
            "broadcastable to y_true."
        ) from None
    null = null.reshape(y_true.shape)
    _check_mean(family, null, "y_null")
    impossible = np.isneginf(family.log_prob(y_true, null, _unit_dispersion(family, y_true)))
    if sample_weight is not None:
        impossible &= (sample_weight > 0)[:, None]
    if np.any(impossible):
        raise ValueError(
            f"y_null gives the recorded responses probability 0 in {int(np.sum(impossible))} "
            "sample(s) (for instance a null rate of 0 where spikes were recorded): the "
            "null log-likelihood is -inf and the score meaningless. Pass a null mean "
            "response that is positive wherever y_true is (the training mean, for instance)."
        )
    return null


def _unit_dispersion(family: Family, y_true: np.ndarray) -> np.ndarray | None:
    """The family's default dispersion, for families that need one (for support checks only:
    it gives every response in the support a positive probability, as 1 would not for the
    zero-inflated gamma's q)."""
    if not family.has_dispersion:
        return None
    return np.full(family.dispersion_shape(y_true.shape[1]), family.default_dispersion,
                   dtype=float)


def _warn_impossible(
    elementwise: np.ndarray, sample_weight: np.ndarray | None, metric: str
) -> None:
    """Warn when y_pred gives a recorded response probability 0 (log-likelihood -inf)."""
    impossible = np.isneginf(elementwise)
    if sample_weight is not None:
        impossible &= (sample_weight > 0)[:, None]
    n_impossible = int(np.sum(impossible))
    if n_impossible:
        warnings.warn(
            f"{metric}: y_pred gives the recorded response probability 0 in {n_impossible} "
            "sample(s) (for instance a predicted rate of 0 where a spike was recorded), "
            "so the log-likelihood is -inf there.",
            RuntimeWarning,
            stacklevel=3,
        )


def _weighted_sum(values: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Per-column sum of ``values`` weighted by ``sample_weight``."""
    if sample_weight is None:
        return np.sum(values, axis=0)
    # Zero-weight samples are dropped rather than multiplied, so that a -inf
    # log-likelihood in an excluded sample does not turn the sum into nan.
    keep = sample_weight > 0
    return sample_weight[keep] @ values[keep]


def _average_outputs(
    values: np.ndarray, multioutput: str, *, metric: str, reason: str
) -> float | np.ndarray:
    """Apply ``multioutput`` to per-neuron values, warning about nan entries."""
    undefined = np.isnan(values)
    n_undefined = int(np.sum(undefined))
    if n_undefined:
        if multioutput == "raw_values":
            consequence = "their raw values are nan"
        elif n_undefined == values.size:
            consequence = "the average is nan"
        else:
            consequence = "they are excluded from the average"
        warnings.warn(
            f"{metric} is undefined for {n_undefined} of {values.size} neuron(s) "
            f"({reason}); {consequence}.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    if multioutput == "raw_values":
        return values
    if n_undefined == values.size:
        return float("nan")
    return float(np.mean(values[~undefined]))


# --- missing responses ------------------------------------------------------

_MISSING_OPTIONS = ("raise", "mask")

_MISSING_DOC = """    missing : {"raise", "mask"}, default="raise"
        What a NaN in ``y_true`` means. ``"raise"``: an error. ``"mask"``: a
        response that was not recorded (a neuron of another session): each
        neuron's value is computed over its observed samples only, and the
        average over neurons is taken as usual. The scorers pass
        ``missing="mask"`` for estimators fitted with
        ``missing_responses="mask"``.

"""


def _mask_aware(function: Callable) -> Callable:
    """Give a per-neuron metric the ``missing`` keyword (see ``_MISSING_DOC``).

    With ``missing="mask"`` and NaN in ``y_true``, the metric runs once per
    group of neurons observed in the same samples (about one per session),
    on those samples, and the per-neuron values are put back together.
    """
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(y_true, y_pred, *args, missing: str = "raise", **kwargs):
        _check_option(missing, _MISSING_OPTIONS, "missing")
        if missing == "raise":
            return function(y_true, y_pred, *args, **kwargs)
        bound = signature.bind(y_true, y_pred, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        true = check_array(
            arguments.pop("y_true"), ensure_2d=False, dtype=np.float64, input_name="y_true",
            ensure_all_finite="allow-nan",
        )
        shape = true.shape
        true = true.reshape(len(true), -1)
        pred = np.asarray(arguments.pop("y_pred"), dtype=np.float64).reshape(len(true), -1)
        observed = ~np.isnan(true)
        if observed.all():
            return function(true.reshape(shape), pred.reshape(shape), **arguments)
        multioutput = arguments.pop("multioutput")
        _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
        elementwise = arguments.get("aggregate") == "none"
        sample_weight = arguments.pop("sample_weight")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, true)
        per_neuron = {
            name: arguments.pop(name)
            for name in ("y_null", "dispersion")
            if arguments.get(name) is not None
        }
        values = np.full(true.shape if elementwise else true.shape[1], np.nan)
        for rows, columns in observation_groups(observed):
            if not rows.any():  # neurons with no response here: nan
                continue
            part = {}
            for name, value in per_neuron.items():
                value = np.asarray(value, dtype=np.float64)
                if name == "y_null" and value.ndim == 2:
                    part[name] = value.reshape(true.shape)[np.ix_(rows, columns)]
                elif value.ndim >= 1 and value.shape[-1] == true.shape[1]:
                    part[name] = value.reshape(-1)[columns]
                else:
                    part[name] = value
            result = function(
                true[np.ix_(rows, columns)],
                pred[np.ix_(rows, columns)],
                sample_weight=None if sample_weight is None else sample_weight[rows],
                multioutput="raw_values",
                **part,
                **arguments,
            )
            if elementwise:
                values[np.ix_(rows, columns)] = np.asarray(result).reshape(-1, len(columns))
            else:
                values[columns] = result
        if elementwise or multioutput == "raw_values":
            return values.reshape(shape) if elementwise else values
        defined = ~np.isnan(values)
        return float(np.mean(values[defined])) if defined.any() else float("nan")

    parameters = list(signature.parameters.values())
    parameters.append(
        inspect.Parameter("missing", inspect.Parameter.KEYWORD_ONLY, default="raise")
    )
    wrapper.__signature__ = signature.replace(parameters=parameters)
    doc = function.__doc__ or ""
    marker = "    Returns\n    -------\n"
    wrapper.__doc__ = doc.replace(marker, _MISSING_DOC + marker, 1)
    return wrapper


# --- likelihood-based metrics ---------------------------------------------


@_mask_aware
def log_likelihood(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    family: str | Family = "poisson",
    dispersion: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    aggregate: str = "mean",
    multioutput: str = "uniform_average",
) -> float | np.ndarray:
    """Log-likelihood of the responses given the predicted means, in nats.

    The exact log-probability (log-density for the gaussian family) of each
    response under the observation family with mean ``y_pred``, all constants
    included (``log y!`` for counts, ``log 2 pi`` for the gaussian), so values
    are comparable across models, data sets and with the training loss of the
    library's estimators. Greater is better.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_neurons)
        Recorded responses (spike counts for the poisson and
        negative_binomial families, 0/1 for bernoulli).

    y_pred : array-like of the same shape as y_true
        Predicted mean responses.

    family : {"poisson", "gaussian", "bernoulli", "negative_binomial"} or \
            Family, default="poisson"
        Observation family, see :mod:`sklearn_cnnenc.families`.

    dispersion : float or array-like of shape (n_neurons,), default=None
        Dispersion of families that have one: the noise variance for
        "gaussian", the over-dispersion ``alpha`` for "negative_binomial".
        If None, "gaussian" uses the maximum-likelihood estimate from the
        residuals, the (weighted) mean squared error per neuron; because it
        is fitted to the scored data, this is an optimistic score, so pass
        the dispersion fitted on training data to score held-out data.
        "negative_binomial" requires it. Must be None for families without
        dispersion.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    aggregate : {"mean", "sum", "none"}, default="mean"
        How to combine samples:

        - "mean": weighted mean over samples, per neuron;
        - "sum": weighted sum over samples, per neuron (the total
          log-likelihood of each neuron);
        - "none": no combination; returns the unweighted elementwise
          log-likelihood with the shape of ``y_true``, and ignores
          ``multioutput`` (``sample_weight`` then only enters the default
          gaussian dispersion).

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean. With ``aggregate="sum"``, "uniform_average" is the mean over
        neurons of the per-neuron totals; multiply by the number of neurons
        for the population's total log-likelihood.

    Returns
    -------
    log_likelihood : float or ndarray
        A float for "uniform_average", an array of shape (n_neurons,) for
        "raw_values", or an array of the shape of ``y_true`` for
        ``aggregate="none"``.

    See Also
    --------
    bits_per_spike : Log-likelihood gain over a homogeneous Poisson model.
    pseudo_r2 : Log-likelihood normalised between a null and a perfect model.

    Notes
    -----
    For neuron :math:`j`, samples :math:`t` with weights :math:`w_t` and
    :math:`\\ell_{tj} = \\log p(y_{tj} \\mid \\mu = \\hat y_{tj})`, the
    "mean" aggregate is :math:`\\sum_t w_t \\ell_{tj} / \\sum_t w_t` and the
    "sum" aggregate :math:`\\sum_t w_t \\ell_{tj}`. The log-probabilities are

    - poisson: :math:`y \\log \\mu - \\mu - \\log \\Gamma(y + 1)`;
    - gaussian: :math:`-\\frac{1}{2}\\left[(y - \\mu)^2 / \\phi
      + \\log \\phi + \\log 2\\pi\\right]`;
    - bernoulli: :math:`y \\log \\mu + (1 - y) \\log(1 - \\mu)`;
    - negative_binomial (NB2, :math:`r = 1/\\alpha`):
      :math:`\\log \\Gamma(y + r) - \\log \\Gamma(r) - \\log \\Gamma(y + 1)
      + r \\log \\frac{r}{r + \\mu} + y \\log \\frac{\\mu}{r + \\mu}`.

    A predicted mean of 0 where a spike was recorded gives ``-inf``.

    References
    ----------
    .. [1] P. McCullagh and J. A. Nelder, "Generalized Linear Models", 2nd
       ed., Chapman & Hall, 1989.
    .. [2] L. Paninski, "Maximum likelihood estimation of cascade
       point-process neural encoding models", Network: Computation in Neural
       Systems, 15(4), 243-262, 2004.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import log_likelihood
    >>> y_true = [0, 1, 3]
    >>> y_pred = [0.5, 1.0, 2.0]
    >>> round(log_likelihood(y_true, y_pred), 4)
    -1.0708
    >>> log_likelihood(y_true, y_pred, aggregate="none").round(4)
    array([-0.5   , -1.    , -1.7123])
    >>> y_true = [[0, 2], [1, 4], [3, 3]]
    >>> y_pred = [[0.5, 3.0], [1.0, 3.0], [2.0, 3.0]]
    >>> log_likelihood(y_true, y_pred, multioutput="raw_values").round(4)
    array([-1.0708, -1.5918])
    """
    _check_option(aggregate, _AGGREGATE_OPTIONS, "aggregate")
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    family = get_family(family)
    y_true, y_pred, y_shape = _check_targets(y_true, y_pred)
    family.validate_response(y_true)
    _check_mean(family, y_pred, "y_pred")
    sample_weight = _check_sample_weight(sample_weight, y_true)
    dispersion = _check_dispersion(family, dispersion, y_true, y_pred, sample_weight)

    elementwise = family.log_prob(y_true, y_pred, dispersion)
    _warn_impossible(elementwise, sample_weight, "log_likelihood")
    if aggregate == "none":
        return elementwise.reshape(y_shape)
    return _aggregate_log_likelihood(elementwise, sample_weight, aggregate, multioutput)


def _aggregate_log_likelihood(
    elementwise: np.ndarray, sample_weight: np.ndarray | None, aggregate: str, multioutput: str
) -> float | np.ndarray:
    """Weighted mean or sum over samples of (n_samples, n_neurons) log-likelihoods."""
    values = _weighted_sum(elementwise, sample_weight)
    if aggregate == "mean":
        total_weight = len(elementwise) if sample_weight is None else np.sum(sample_weight)
        values = values / total_weight
    return _average_outputs(values, multioutput, metric="log_likelihood", reason="not a number")


def _masked_log_likelihood(
    elementwise: np.ndarray, sample_weight: np.ndarray | None, aggregate: str
) -> float:
    """Each neuron's mean (or sum) over its observed samples, averaged over neurons."""
    observed = ~np.isnan(elementwise)
    weight = observed * (1.0 if sample_weight is None else sample_weight[:, None])
    total = np.sum(np.where(observed, elementwise, 0.0) * weight, axis=0)
    if aggregate == "mean":
        total = total / np.sum(weight, axis=0)
    return _average_outputs(total, "uniform_average", metric="log_likelihood", reason="no data")


@_mask_aware
def bits_per_spike(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    y_null: ArrayLike | None = None,
    *,
    sample_weight: ArrayLike | None = None,
    multioutput: str = "uniform_average",
) -> float | np.ndarray:
    """Poisson log-likelihood gain over a null model, in bits per spike.

    How much better, per recorded spike, the predicted rates explain the spike
    counts than a homogeneous Poisson model that knows only the mean rate.
    0 means no better than the mean rate; it is negative for a model worse
    than that, and positive otherwise. Greater is better.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_neurons)
        Recorded spike counts.

    y_pred : array-like of the same shape as y_true
        Predicted mean spike counts (rate times bin width).

    y_null : float or array-like, default=None
        Mean spike counts of the null model. If None, each neuron's
        (weighted) mean count in ``y_true``. Otherwise a scalar, an array of
        shape (n_neurons,) (for instance the mean count per neuron on the
        *training* data), or an array broadcastable to ``y_true`` (for
        instance a peri-stimulus time histogram), following numpy's
        broadcasting rules against the shape of ``y_true``.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights; spikes are counted with the same weights.

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons that spiked.

    Returns
    -------
    bits_per_spike : float or ndarray of shape (n_neurons,)
        Bits per spike, or one value per neuron. A neuron without spikes in
        ``y_true`` has an undefined value: its raw value is nan, it is left
        out of the average, and an
        :class:`~sklearn.exceptions.UndefinedMetricWarning` says how many
        neurons were left out.

    See Also
    --------
    log_likelihood : The log-likelihood of any family, in nats.
    pseudo_r2 : Log-likelihood normalised between a null and a perfect model.

    Notes
    -----
    For neuron :math:`j` with Poisson log-likelihoods :math:`LL`,

    .. math::

        \\mathrm{bits/spike}_j = \\frac{LL_j(\\hat y) - LL_j(y_\\mathrm{null})}
        {\\ln 2 \\, \\sum_t w_t y_{tj}},

    where sums over samples carry the weights :math:`w_t`; the
    :math:`\\log y!` terms cancel. For a model of the rate this estimates the
    information that each spike carries about the stimulus beyond the mean
    rate [3]_.

    Two conventions for the null are in use. The default, the mean count of
    the scored data itself, is that of the Pillow-lab GLM tutorials [1]_ and
    of the Neural Latents Benchmark [2]_: the null is the best homogeneous
    model *of the scored data*, so a model that predicts each neuron's
    held-out mean scores exactly 0. Passing the training mean as ``y_null``
    is the stricter convention for held-out data: the null then pays for the
    mismatch between training and test rates, like the model does.

    The Neural Latents Benchmark reports one population value, the summed
    log-likelihood gain divided by the total number of spikes, which weights
    neurons by their spike counts; "uniform_average" weights neurons equally.
    The population value is ``np.average(raw, weights=n_spikes)`` over the
    neurons that spiked, with ``raw`` from ``multioutput="raw_values"`` and
    ``n_spikes`` the spike count per neuron.

    References
    ----------
    .. [1] J. W. Pillow, "GLMspiketraintutorial" (2016) and its Python
       version (2022), https://github.com/pillowlab/GLMspiketraintutorial
    .. [2] F. Pei et al., "Neural Latents Benchmark '21: Evaluating latent
       variable models of neural population activity", NeurIPS Datasets and
       Benchmarks, 2021.
    .. [3] R. S. Williamson, M. Sahani and J. W. Pillow, "The equivalence of
       information-theoretic and likelihood-based methods for neural
       dimensionality reduction", PLoS Comput Biol 11(4): e1004141, 2015.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import bits_per_spike
    >>> y_true = [0, 0, 1, 3, 0, 2]
    >>> y_pred = [0.2, 0.2, 1.5, 2.5, 0.2, 1.5]
    >>> round(bits_per_spike(y_true, y_pred), 4)
    0.9294
    >>> bits_per_spike(y_true, [1.0] * 6)
    0.0
    >>> round(bits_per_spike(y_true, y_pred, y_null=1.5), 4)
    1.0658
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    family = get_family("poisson")
    y_true, y_pred, y_shape = _check_targets(y_true, y_pred)
    family.validate_response(y_true)
    _check_mean(family, y_pred, "y_pred")
    sample_weight = _check_sample_weight(sample_weight, y_true)
    null = _resolve_null(y_null, y_true, y_shape, sample_weight, family)

    elementwise = family.log_prob(y_true, y_pred)
    _warn_impossible(elementwise, sample_weight, "bits_per_spike")
    ll_model = _weighted_sum(elementwise, sample_weight)
    ll_null = _weighted_sum(family.log_prob(y_true, null), sample_weight)
    n_spikes = _weighted_sum(y_true, sample_weight)
    spiked = n_spikes > 0
    values = np.full(y_true.shape[1], np.nan)
    values[spiked] = (ll_model[spiked] - ll_null[spiked]) / n_spikes[spiked] / np.log(2)
    return _average_outputs(
        values, multioutput, metric="bits_per_spike", reason="no spikes in y_true"
    )


@_mask_aware
def pseudo_r2(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    kind: str = "mcfadden",
    family: str | Family = "poisson",
    dispersion: ArrayLike | None = None,
    y_null: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    multioutput: str = "uniform_average",
) -> float | np.ndarray:
    """Likelihood-based pseudo-R² of predicted mean responses.

    Compares the log-likelihood of the model with that of a null model (the
    mean response) and, for ``kind="deviance"``, with that of the saturated
    model (a perfect prediction, ``y_pred = y_true``). 0 means no better than
    the null; 1 is the best possible value. Greater is better.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_neurons)
        Recorded responses.

    y_pred : array-like of the same shape as y_true
        Predicted mean responses.

    kind : {"mcfadden", "deviance"}, default="mcfadden"
        Which pseudo-R², see Notes.

    family : {"poisson", "gaussian", "bernoulli", "negative_binomial"} or \
            Family, default="poisson"
        Observation family.

    dispersion : float or array-like of shape (n_neurons,), default=None
        Dispersion of families that have one, shared by the model, the null
        and the saturated model. If None, "gaussian" uses the
        maximum-likelihood estimate from the model's residuals (see
        :func:`log_likelihood`); "negative_binomial" requires it.

    y_null : float or array-like, default=None
        Mean responses of the null model. If None, each neuron's (weighted)
        mean of ``y_true``; otherwise a scalar, an array of shape
        (n_neurons,) or an array broadcastable to ``y_true``, as in
        :func:`bits_per_spike`.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    Returns
    -------
    pseudo_r2 : float or ndarray of shape (n_neurons,)
        The pseudo-R², or one value per neuron. Where it is undefined (a null
        log-likelihood of 0 for McFadden's; a null as good as the saturated
        model, such as a constant response, for the deviance kind) the raw
        value is nan, it is left out of the average, and an
        :class:`~sklearn.exceptions.UndefinedMetricWarning` is emitted.

    See Also
    --------
    log_likelihood : The log-likelihood itself, in nats.
    bits_per_spike : Poisson log-likelihood gain per spike.

    Notes
    -----
    With per-neuron (weighted) log-likelihoods :math:`LL`,

    .. math::

        R^2_\\mathrm{McFadden} = 1 - \\frac{LL_\\mathrm{model}}{LL_\\mathrm{null}},
        \\qquad
        R^2_\\mathrm{deviance} = \\frac{LL_\\mathrm{model} - LL_\\mathrm{null}}
        {LL_\\mathrm{saturated} - LL_\\mathrm{null}}
        = 1 - \\frac{D_\\mathrm{model}}{D_\\mathrm{null}},

    with :math:`LL_\\mathrm{saturated}` the log-likelihood of ``y_true``
    given the mean ``y_true`` and :math:`D` the deviance. McFadden's [1]_
    depends on the constants of the log-likelihood (here all included) and
    assumes :math:`LL_\\mathrm{null} < 0`, which holds for discrete families
    but not always for gaussian log-densities; prefer the deviance kind
    there. The deviance kind [2]_, used for neural encoding models in [3]_,
    is the fraction of the null deviance explained; for the gaussian family
    it equals the ordinary :math:`R^2`, for the poisson family it is
    scikit-learn's :func:`~sklearn.metrics.d2_tweedie_score` with
    ``power=1``.

    References
    ----------
    .. [1] D. McFadden, "Conditional logit analysis of qualitative choice
       behavior", in P. Zarembka (ed.), Frontiers in Econometrics, 105-142,
       Academic Press, 1974.
    .. [2] A. C. Cameron and F. A. G. Windmeijer, "An R-squared measure of
       goodness of fit for some common nonlinear regression models", Journal
       of Econometrics, 77(2), 329-342, 1997.
    .. [3] A. S. Benjamin et al., "Modern machine learning as a benchmark for
       fitting neural responses", Frontiers in Computational Neuroscience,
       12:56, 2018.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import pseudo_r2
    >>> y_true = [0, 0, 1, 3, 0, 2]
    >>> y_pred = [0.2, 0.2, 1.5, 2.5, 0.2, 1.5]
    >>> round(pseudo_r2(y_true, y_pred), 4)
    0.4555
    >>> round(pseudo_r2(y_true, y_pred, kind="deviance"), 4)
    0.8255
    >>> pseudo_r2(y_true, y_true, kind="deviance")
    1.0
    """
    _check_option(kind, _PSEUDO_R2_KINDS, "kind")
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    family = get_family(family)
    y_true, y_pred, y_shape = _check_targets(y_true, y_pred)
    family.validate_response(y_true)
    _check_mean(family, y_pred, "y_pred")
    sample_weight = _check_sample_weight(sample_weight, y_true)
    dispersion = _check_dispersion(family, dispersion, y_true, y_pred, sample_weight)
    null = _resolve_null(y_null, y_true, y_shape, sample_weight, family)

    elementwise = family.log_prob(y_true, y_pred, dispersion)
    _warn_impossible(elementwise, sample_weight, "pseudo_r2")
    ll_model = _weighted_sum(elementwise, sample_weight)
    ll_null = _weighted_sum(family.log_prob(y_true, null, dispersion), sample_weight)
    values = np.full(y_true.shape[1], np.nan)
    if kind == "mcfadden":
        defined = ll_null != 0
        values[defined] = 1.0 - ll_model[defined] / ll_null[defined]
        reason = "the null log-likelihood is 0"
    else:
        ll_saturated = _weighted_sum(family.saturated_log_prob(y_true, dispersion), sample_weight)
        null_deviance = ll_saturated - ll_null
        defined = null_deviance > 0
        values[defined] = (ll_model[defined] - ll_null[defined]) / null_deviance[defined]
        reason = "the null model fits as well as the saturated model"
    return _average_outputs(values, multioutput, metric="pseudo_r2", reason=reason)


# --- other regression metrics ---------------------------------------------


@_mask_aware
def correlation(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    multioutput: str = "uniform_average",
) -> float | np.ndarray:
    """Pearson correlation between recorded and predicted responses, per neuron.

    Insensitive to the scale and offset of the prediction, so it rewards a
    model that gets the shape of the response right even when its rates are
    off. Greater is better; the best value is 1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_neurons)
        Recorded responses.

    y_pred : array-like of the same shape as y_true
        Predicted responses.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights, for a weighted correlation.

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    Returns
    -------
    correlation : float or ndarray of shape (n_neurons,)
        The correlation, or one value per neuron. It is undefined where
        ``y_true`` or ``y_pred`` is constant: the raw value is nan, it is left
        out of the average, and an
        :class:`~sklearn.exceptions.UndefinedMetricWarning` is emitted.

    Notes
    -----
    With weighted means :math:`\\bar y` and :math:`\\bar{\\hat y}`,

    .. math::

        r_j = \\frac{\\sum_t w_t (y_{tj} - \\bar y_j)(\\hat y_{tj} - \\bar{\\hat y}_j)}
        {\\sqrt{\\sum_t w_t (y_{tj} - \\bar y_j)^2
        \\sum_t w_t (\\hat y_{tj} - \\bar{\\hat y}_j)^2}}.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import correlation
    >>> y_true = [[0, 1], [1, 3], [3, 2], [2, 5]]
    >>> y_pred = [[0.5, 1.0], [1.0, 2.0], [2.5, 3.0], [2.0, 4.0]]
    >>> correlation(y_true, y_pred, multioutput="raw_values").round(4)
    array([0.9899, 0.8315])
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    y_true, y_pred, _ = _check_targets(y_true, y_pred)
    if y_true.shape[0] < 2:
        raise ValueError(f"correlation needs at least 2 samples; got {y_true.shape[0]}.")
    sample_weight = _check_sample_weight(sample_weight, y_true)
    values = _pearson(y_true, y_pred, sample_weight)
    return _average_outputs(
        values, multioutput, metric="correlation", reason="constant y_true or y_pred"
    )


def _pearson(
    y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Per-column (weighted) Pearson correlation of two 2-D arrays; nan where one is constant."""
    constant = _constant_columns(y_true, sample_weight) | _constant_columns(y_pred, sample_weight)
    # correlation is scale-invariant: scale each column to a maximum of 1 first, so that
    # products of large values (>= 1e154) cannot overflow nor tiny ones underflow
    y_true = y_true / _column_scale(y_true)
    y_pred = y_pred / _column_scale(y_pred)
    true_centered = y_true - np.average(y_true, axis=0, weights=sample_weight)
    pred_centered = y_pred - np.average(y_pred, axis=0, weights=sample_weight)
    covariance = _weighted_sum(true_centered * pred_centered, sample_weight)
    true_variance = _weighted_sum(true_centered**2, sample_weight)
    pred_variance = _weighted_sum(pred_centered**2, sample_weight)
    values = np.full(y_true.shape[1], np.nan)
    defined = ~constant
    values[defined] = np.clip(
        covariance[defined] / np.sqrt(true_variance[defined] * pred_variance[defined]),
        -1.0,
        1.0,
    )
    return values


def _column_scale(values: np.ndarray) -> np.ndarray:
    """Largest absolute value of each column (1 for an all-zero or non-finite column)."""
    scale = np.max(np.abs(values), axis=0)
    return np.where((scale > 0) & np.isfinite(scale), scale, 1.0)


# --- repeated-trial metrics -----------------------------------------------


def _check_repeats(
    responses: ArrayLike, y_pred: ArrayLike | None = None, min_repeats: int = 2
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate repeated-trial responses; return them as (n_repeats, n_stimuli, n_neurons).

    ``y_pred`` is one prediction per stimulus, returned as (n_stimuli,
    n_neurons), or one per trial (shaped like ``responses``: predictions
    that also depend on each trial's behaviour), returned as (n_repeats,
    n_stimuli, n_neurons).
    """
    responses = check_array(
        responses,
        ensure_2d=False,
        allow_nd=True,
        dtype=np.float64,
        input_name="responses",
    )
    if responses.ndim not in (2, 3):
        raise ValueError(
            "responses must have shape (n_repeats, n_stimuli) or "
            f"(n_repeats, n_stimuli, n_neurons); got shape {responses.shape}."
        )
    if responses.size == 0:
        raise ValueError(f"responses is empty (shape {responses.shape}).")
    if responses.shape[0] < min_repeats:
        raise ValueError(
            "At least 2 repeats per stimulus are needed to estimate the noise "
            f"variance; got responses with {responses.shape[0]} repeat along axis 0 "
            f"(shape {responses.shape})."
        )
    repeats_shape = responses.shape
    responses = responses.reshape(repeats_shape[0], repeats_shape[1], -1)
    if y_pred is None:
        return responses, None
    y_pred = check_array(
        y_pred, ensure_2d=False, allow_nd=True, dtype=np.float64, input_name="y_pred"
    )
    if y_pred.shape == repeats_shape:  # one prediction per trial
        return responses, y_pred.reshape(responses.shape)
    if y_pred.ndim > 2 or y_pred.reshape(y_pred.shape[0], -1).shape != responses.shape[1:]:
        raise ValueError(
            f"y_pred has shape {y_pred.shape} but responses has shape {repeats_shape}; "
            f"y_pred must have shape {repeats_shape[1:]} (one prediction per stimulus "
            f"and neuron) or {repeats_shape} (one per trial)."
        )
    return responses, y_pred.reshape(responses.shape[1:])


def oracle_correlation(
    responses: ArrayLike, *, multioutput: str = "uniform_average"
) -> float | np.ndarray:
    """Leave-one-out oracle correlation of repeated responses, per neuron.

    Each trial is predicted by the mean of the *other* repeats of the same
    stimulus, and that prediction is correlated with the trials over all
    repeats and stimuli: the correlation a model of the mean response can
    hope for on single trials (the "oracle" of Sensorium and
    neuralpredictors' ``compute_oracle_corr``; it slightly underestimates the
    true ceiling, the leave-one-out mean being noisier than the true mean).
    Compare it with a model's single-trial correlation
    (:func:`correlation` of the prediction with every trial).

    Parameters
    ----------
    responses : array-like of shape (n_repeats, n_stimuli) or \
            (n_repeats, n_stimuli, n_neurons)
        Responses to repeated presentations of each stimulus; needs
        ``n_repeats >= 2`` and finite values (every stimulus shown the same
        number of times).

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    Returns
    -------
    oracle_correlation : float or ndarray of shape (n_neurons,)
        The correlation, or one value per neuron; nan (with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`) for a neuron
        whose responses, or leave-one-out means, are constant.

    See Also
    --------
    correlation_to_average : A prediction's correlation with the repeat average.
    explainable_variance : The variance-based ceiling.

    Notes
    -----
    With :math:`r_{kij}` the response of neuron :math:`j` on repeat :math:`k`
    (of :math:`R`) of stimulus :math:`i`, the oracle of that trial is
    :math:`o_{kij} = \\frac{1}{R - 1} \\sum_{l \\ne k} r_{lij}`, and the
    oracle correlation of neuron :math:`j` is the Pearson correlation of
    :math:`o_{\\cdot\\cdot j}` and :math:`r_{\\cdot\\cdot j}` over all
    :math:`R \\times n_\\mathrm{stimuli}` trials. Sensorium adds ``1e-8`` to
    the standard deviations (a difference below 1e-7 for responses of unit
    scale) and sets the oracles of missing (nan) trials to zero; here
    responses must be finite.

    References
    ----------
    .. [1] E. Y. Walker et al., "Inception loops discover what excites
       neurons most using deep predictive models", Nat Neurosci 22, 2019.
    .. [2] K. F. Willeke et al., "The Sensorium competition on predicting
       large-scale mouse primary visual cortex activity", arXiv:2206.08666, 2022.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import oracle_correlation
    >>> responses = [[1.0, 4.0, 2.0], [2.0, 5.0, 1.0], [1.5, 3.5, 2.5]]
    >>> round(oracle_correlation(responses), 4)
    0.7813
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    responses, _ = _check_repeats(responses)
    n_repeats, n_stimuli, n_neurons = responses.shape
    others = (responses.sum(axis=0, keepdims=True) - responses) / (n_repeats - 1)
    values = _pearson(
        responses.reshape(-1, n_neurons), others.reshape(-1, n_neurons)
    )
    return _average_outputs(
        values,
        multioutput,
        metric="oracle_correlation",
        reason="constant responses or leave-one-out means",
    )


def correlation_to_average(
    responses: ArrayLike, y_pred: ArrayLike, *, multioutput: str = "uniform_average"
) -> float | np.ndarray:
    """Correlation of a prediction with the repeat-averaged response, per neuron.

    Averaging over repeats removes most of the trial-to-trial noise, so this
    is higher than the single-trial correlation (Sensorium's "correlation to
    average"). Greater is better; the best value is 1.

    Parameters
    ----------
    responses : array-like of shape (n_repeats, n_stimuli) or \
            (n_repeats, n_stimuli, n_neurons)
        Responses to repeated presentations of each stimulus (one repeat is
        allowed).

    y_pred : array-like of shape (n_stimuli,) or (n_stimuli, n_neurons), or shaped like \
            ``responses``
        Predicted mean response to each stimulus, or to each trial (e.g. with
        each trial's behaviour), which is then averaged over the repeats like
        the responses (as Sensorium does).

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    Returns
    -------
    correlation_to_average : float or ndarray of shape (n_neurons,)
        The correlation, or one value per neuron; nan (with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`) where the average
        response or the prediction is constant over stimuli.

    See Also
    --------
    oracle_correlation : The single-trial ceiling from the repeats.
    correlation : Correlation with single trials.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import correlation_to_average
    >>> responses = [[1.0, 4.0, 2.0], [2.0, 5.0, 1.0]]
    >>> round(correlation_to_average(responses, [1.0, 5.0, 2.0]), 4)
    0.9707
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    responses, y_pred = _check_repeats(responses, y_pred, min_repeats=1)
    if responses.shape[1] < 2:
        raise ValueError(
            f"correlation_to_average needs at least 2 stimuli; got {responses.shape[1]}."
        )
    if y_pred.ndim == 3:  # one prediction per trial: averaged like the responses
        y_pred = y_pred.mean(axis=0)
    values = _pearson(responses.mean(axis=0), y_pred)
    return _average_outputs(
        values,
        multioutput,
        metric="correlation_to_average",
        reason="constant average response or prediction",
    )


def _variance_components(responses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total variance, noise variance and constant-neuron mask of repeated responses."""
    n_repeats, n_stimuli, n_neurons = responses.shape
    flat = responses.reshape(n_repeats * n_stimuli, n_neurons)
    constant = np.all(flat == flat[0], axis=0)
    total_variance = np.var(flat, axis=0)
    noise_variance = np.mean(np.var(responses, axis=0, ddof=1), axis=0)
    return total_variance, noise_variance, constant


def explainable_variance(
    responses: ArrayLike, *, multioutput: str = "uniform_average"
) -> float | np.ndarray:
    """Fraction of the response variance that is driven by the stimulus.

    The part of the variance that is repeatable across presentations of the
    same stimulus, as a fraction of the total: the best fraction of variance
    that any model of the stimulus can explain (see :func:`fev`).

    Parameters
    ----------
    responses : array-like of shape (n_repeats, n_stimuli) or \
            (n_repeats, n_stimuli, n_neurons)
        Responses to repeated presentations of each stimulus; needs
        ``n_repeats >= 2``.

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    Returns
    -------
    explainable_variance : float or ndarray of shape (n_neurons,)
        The fraction, or one value per neuron; nan (with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`) for a neuron
        whose responses are constant. Being an estimate, it can be slightly
        negative for a neuron without stimulus-driven variance.

    See Also
    --------
    fev : Fraction of variance explained by a prediction.
    feve : Fraction of explainable variance explained by a prediction.

    Notes
    -----
    With :math:`\\mathrm{Var}` the variance of all responses (over repeats
    and stimuli, ``ddof=0``) and :math:`\\sigma^2_\\mathrm{noise}` the mean
    over stimuli of the across-repeat variance (``ddof=1``, unbiased),

    .. math::

        \\mathrm{EV} = \\frac{\\mathrm{Var} - \\sigma^2_\\mathrm{noise}}
        {\\mathrm{Var}}.

    References
    ----------
    .. [1] S. A. Cadena et al., "Deep convolutional models improve
       predictions of macaque V1 responses to natural images", PLoS Comput
       Biol 15(4): e1006897, 2019.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import explainable_variance
    >>> responses = [[1.0, 4.0, 2.0], [2.0, 5.0, 1.0]]
    >>> round(explainable_variance(responses), 4)
    0.7778
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    responses, _ = _check_repeats(responses)
    total_variance, noise_variance, constant = _variance_components(responses)
    values = np.full(responses.shape[2], np.nan)
    values[~constant] = 1.0 - noise_variance[~constant] / total_variance[~constant]
    return _average_outputs(
        values, multioutput, metric="explainable_variance", reason="constant responses"
    )


def fev(
    responses: ArrayLike, y_pred: ArrayLike, *, multioutput: str = "uniform_average"
) -> float | np.ndarray:
    """Fraction of variance explained, on responses to repeated stimuli.

    One minus the mean squared error of the prediction over all trials,
    relative to the total variance of the responses. Trial-to-trial noise
    caps it at the :func:`explainable_variance`. Greater is better.

    Parameters
    ----------
    responses : array-like of shape (n_repeats, n_stimuli) or \
            (n_repeats, n_stimuli, n_neurons)
        Responses to repeated presentations of each stimulus; needs
        ``n_repeats >= 2``.

    y_pred : array-like of shape (n_stimuli,) or (n_stimuli, n_neurons), or shaped like \
            ``responses``
        Predicted mean response to each stimulus, or to each trial (e.g.
        with each trial's behaviour), compared with that trial's response.

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    Returns
    -------
    fev : float or ndarray of shape (n_neurons,)
        The fraction, or one value per neuron; nan (with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`) for a neuron
        whose responses are constant.

    See Also
    --------
    feve : The same, relative to the explainable variance.
    explainable_variance : The largest FEV a model can reach.

    Notes
    -----
    With :math:`r_{kij}` the response of neuron :math:`j` on repeat :math:`k`
    of stimulus :math:`i`, :math:`\\mathrm{MSE}_j` the mean over repeats and
    stimuli of :math:`(r_{kij} - \\hat y_{ij})^2` and :math:`\\mathrm{Var}_j`
    the variance of all its responses (``ddof=0``),

    .. math::

        \\mathrm{FEV}_j = 1 - \\frac{\\mathrm{MSE}_j}{\\mathrm{Var}_j}.

    With ``ddof=0`` a constant prediction scores at most 0, and exactly 0
    when it is the mean response.

    References
    ----------
    .. [1] S. A. Cadena et al., "Deep convolutional models improve
       predictions of macaque V1 responses to natural images", PLoS Comput
       Biol 15(4): e1006897, 2019.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import fev
    >>> responses = [[1.0, 4.0, 2.0], [2.0, 5.0, 1.0]]
    >>> round(fev(responses, [1.5, 4.5, 1.5]), 4)
    0.8889
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    responses, y_pred = _check_repeats(responses, y_pred)
    total_variance, _, constant = _variance_components(responses)
    mse = np.mean((responses - y_pred) ** 2, axis=(0, 1))
    values = np.full(responses.shape[2], np.nan)
    values[~constant] = 1.0 - mse[~constant] / total_variance[~constant]
    return _average_outputs(values, multioutput, metric="fev", reason="constant responses")


def feve(
    responses: ArrayLike,
    y_pred: ArrayLike,
    *,
    multioutput: str = "uniform_average",
    significance: float | None = 0.05,
) -> float | np.ndarray:
    """Fraction of explainable variance explained, on responses to repeated stimuli.

    Like :func:`fev`, but the trial-to-trial noise variance is removed from
    both the error and the total variance, so that a perfect model of the
    mean response scores about 1 however noisy the neuron. Greater is better.

    Parameters
    ----------
    responses : array-like of shape (n_repeats, n_stimuli) or \
            (n_repeats, n_stimuli, n_neurons)
        Responses to repeated presentations of each stimulus; needs
        ``n_repeats >= 2``.

    y_pred : array-like of shape (n_stimuli,) or (n_stimuli, n_neurons), or shaped like \
            ``responses``
        Predicted mean response to each stimulus, or to each trial (e.g.
        with each trial's behaviour), compared with that trial's response
        (as Sensorium's FEVE of behaviour-modulated models). A per-trial
        prediction may explain part of the trial-to-trial variance that the
        ceiling counts as noise, so its FEVE can exceed 1.

    multioutput : {"raw_values", "uniform_average"}, default="uniform_average"
        "raw_values" returns one value per neuron, "uniform_average" their
        mean over the neurons where it is defined.

    significance : float in (0, 1) or None, default=0.05
        Level of a one-way ANOVA F-test of the variance between stimuli
        against the variance between repeats. A neuron whose responses do
        not depend on the stimulus at this level has too little explainable
        variance to divide by (its FEVE could be any number, e.g. 251): its
        value is nan, with a warning. ``None`` skips the test.

    Returns
    -------
    feve : float or ndarray of shape (n_neurons,)
        The fraction, or one value per neuron. It is undefined (nan, with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`) for a neuron
        without explainable variance, whose total variance does not exceed
        the noise variance, or, with ``significance``, whose stimulus-driven
        variance is not significant.

    See Also
    --------
    fev : The same, relative to the total variance.
    explainable_variance : The fraction of variance that is explainable.

    Notes
    -----
    With :math:`\\mathrm{MSE}`, :math:`\\mathrm{Var}` (``ddof=0``) as in
    :func:`fev` and :math:`\\sigma^2_\\mathrm{noise}` the mean over stimuli
    of the across-repeat variance (``ddof=1``),

    .. math::

        \\mathrm{FEVE} = 1 - \\frac{\\mathrm{MSE} - \\sigma^2_\\mathrm{noise}}
        {\\mathrm{Var} - \\sigma^2_\\mathrm{noise}},

    as defined by Cadena et al. [1]_. The prediction of the true mean
    response scores 1 up to sampling error; the empirical mean over the
    scored repeats scores slightly above 1, since it also fits the noise.
    The estimate is unstable for neurons with little explainable variance,
    which are better excluded using :func:`explainable_variance`. Cadena et
    al.'s code computes :math:`\\mathrm{Var}` with ``ddof=1``, which differs
    from this by a factor :math:`1 + 1/(n_\\mathrm{repeats} n_\\mathrm{stimuli} - 1)`.

    References
    ----------
    .. [1] S. A. Cadena et al., "Deep convolutional models improve
       predictions of macaque V1 responses to natural images", PLoS Comput
       Biol 15(4): e1006897, 2019.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import feve
    >>> responses = [[1.0, 4.0, 2.0], [2.0, 5.0, 1.0]]
    >>> round(feve(responses, [1.5, 4.5, 1.5]), 4)
    1.1429
    """
    _check_option(multioutput, _MULTIOUTPUT_OPTIONS, "multioutput")
    if significance is not None and not (
        isinstance(significance, Real) and 0 < significance < 1
    ):
        raise ValueError(f"significance must be a number in (0, 1) or None; got {significance!r}.")
    responses, y_pred = _check_repeats(responses, y_pred)
    total_variance, noise_variance, _ = _variance_components(responses)
    mse = np.mean((responses - y_pred) ** 2, axis=(0, 1))
    explainable = total_variance - noise_variance
    defined = explainable > 0
    reason = "no explainable variance: the total variance does not exceed the noise"
    if significance is not None:
        p_value = _stimulus_p_value(responses, noise_variance)
        if np.any(defined & (p_value > significance)):
            reason += (f", or the stimulus-driven variance is not significant "
                       f"(ANOVA F-test, p > {significance})")
        defined &= p_value <= significance
    values = np.full(responses.shape[2], np.nan)
    values[defined] = 1.0 - (mse[defined] - noise_variance[defined]) / explainable[defined]
    return _average_outputs(values, multioutput, metric="feve", reason=reason)


def _stimulus_p_value(responses: np.ndarray, noise_variance: np.ndarray) -> np.ndarray:
    """p-value of a one-way ANOVA (stimuli as groups, repeats as replicates), per neuron."""
    from scipy.stats import f as f_distribution

    n_repeats, n_stimuli, _ = responses.shape
    if n_stimuli < 2:
        return np.ones(responses.shape[2])
    between = n_repeats * np.var(np.mean(responses, axis=0), axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = np.where(noise_variance > 0, between / noise_variance,
                             np.where(between > 0, np.inf, 0.0))
    return f_distribution.sf(statistic, n_stimuli - 1, n_stimuli * (n_repeats - 1))


# --- scorers ----------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """One entry of :data:`METRICS`: how scorers and ``compare_models`` call a metric.

    Parameters
    ----------
    function : callable
        ``function(y_true, y_pred, *, sample_weight, multioutput, **kwargs)``.
    kwargs : dict
        Fixed keyword arguments (``kind="deviance"``, say).
    takes_family : bool
        Whether it takes the fitted model's ``family`` and ``dispersion``.
    takes_null : bool
        Whether it compares to a null model (``y_null``, the training mean
        with ``null="train"``).
    takes_repeats : bool
        Whether it scores repeated trials: ``function(responses, y_pred, *,
        multioutput)`` with ``responses`` of shape (n_repeats, n_stimuli,
        n_neurons) and ``y_pred`` one prediction per stimulus (no
        ``sample_weight``). Its scorer is ``scorer(estimator, X_stimuli,
        responses)`` and ``compare_models`` computes it on ``repeats=``.
    takes_prediction : bool
        Whether it takes a prediction at all (False for the ceilings computed
        from the repeats alone, such as ``oracle_correlation``: the function
        is then ``function(responses, *, multioutput)``).

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import METRICS
    >>> METRICS["pseudo_r2_deviance"].kwargs
    {'kind': 'deviance'}
    """

    function: Callable
    kwargs: dict[str, Any] = field(default_factory=dict)
    takes_family: bool = False
    takes_null: bool = False
    takes_repeats: bool = False
    takes_prediction: bool = True


METRICS: dict[str, Metric] = {
    "log_likelihood": Metric(log_likelihood, takes_family=True),
    "bits_per_spike": Metric(bits_per_spike, takes_null=True),
    "pseudo_r2": Metric(pseudo_r2, {"kind": "mcfadden"}, takes_family=True, takes_null=True),
    "pseudo_r2_deviance": Metric(
        pseudo_r2, {"kind": "deviance"}, takes_family=True, takes_null=True
    ),
    "correlation": Metric(correlation),
    # on repeated trials, responses of shape (n_repeats, n_stimuli, n_neurons)
    "oracle_correlation": Metric(oracle_correlation, takes_repeats=True, takes_prediction=False),
    "explainable_variance": Metric(
        explainable_variance, takes_repeats=True, takes_prediction=False
    ),
    "correlation_to_average": Metric(correlation_to_average, takes_repeats=True),
    "fev": Metric(fev, takes_repeats=True),
    "feve": Metric(feve, takes_repeats=True),
}
"""The per-neuron metrics known by name, read by :func:`make_encoding_scorer`,
:data:`SCORERS` and :func:`~sklearn_cnnenc.model_selection.compare_models`:
to add one, add its function and an entry here."""

_NULL_OPTIONS = ("scored", "train")


def _final_estimator(estimator: Any, X: ArrayLike | None = None) -> tuple[Any, Any]:
    """The fitted model that predicts, inside pipelines and search objects, and its input.

    ``X`` is passed through the transformers of the pipelines on the way (if
    it is given).
    """
    while True:
        if isinstance(estimator, Pipeline):
            if X is not None and len(estimator) > 1:
                X = estimator[:-1].transform(X)
            estimator = estimator[-1]
        elif hasattr(estimator, "best_estimator_"):
            # GridSearchCV and the like predict with their refitted best model
            estimator = estimator.best_estimator_
        else:
            return estimator, X


def _own_log_likelihood(estimator: Any, X: ArrayLike, y_true: ArrayLike) -> np.ndarray | None:
    """Log-likelihood per sample and neuron under the fitted model's own distribution.

    None unless the final model is one of the library's estimators (a
    ``log_likelihood`` method and a fitted ``family_``).
    """
    final, _ = _final_estimator(estimator)
    if not (hasattr(final, "family_") and callable(getattr(final, "log_likelihood", None))):
        return None
    final, X = _final_estimator(estimator, X)
    return final.log_likelihood(X, y_true, per_neuron=True)


class _EncodingScorer:
    """Scorer ``scorer(estimator, X, y, sample_weight=None)`` built by
    :func:`make_encoding_scorer`."""

    def __init__(self, name: str, null: str, metric_kwargs: dict[str, Any]):
        self._name = name
        self._null = null
        self._metric_kwargs = metric_kwargs
        self._sample_weight_request = None

    def __call__(
        self,
        estimator: Any,
        X: ArrayLike,
        y_true: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> float:
        spec = METRICS[self._name]
        metric = spec.function
        kwargs = {**spec.kwargs, **self._metric_kwargs}
        if spec.takes_repeats:
            return self._score_repeats(spec, estimator, X, y_true, sample_weight, kwargs)
        if self._name == "log_likelihood" and not {"family", "dispersion"} & kwargs.keys():
            # the model's own distribution, from its linear predictor: the
            # same number as its score(), whatever its family and dispersion,
            # and finite where a mean rounded to 0 or 1 would give -inf
            elementwise = _own_log_likelihood(estimator, X, y_true)
            if elementwise is not None:
                sample_weight = _check_sample_weight(sample_weight, elementwise)
                if np.isnan(elementwise).any():  # missing responses of a masked model
                    return float(
                        _masked_log_likelihood(
                            elementwise, sample_weight, kwargs.get("aggregate", "mean")
                        )
                    )
                return float(
                    _aggregate_log_likelihood(
                        elementwise, sample_weight, kwargs.get("aggregate", "mean"),
                        "uniform_average",
                    )
                )
        final, _ = _final_estimator(estimator)
        if getattr(final, "missing_responses", "raise") == "mask":
            kwargs.setdefault("missing", "mask")
        if spec.takes_family and "family" not in kwargs:
            if hasattr(final, "family_"):
                kwargs["family"] = final.family_
                kwargs.setdefault("dispersion", getattr(final, "dispersion_", None))
            else:
                kwargs["family"] = "poisson"
        if self._null == "train":
            if not hasattr(final, "mean_response_"):
                raise ValueError(
                    f"The scorer {self!r} needs the fitted attribute mean_response_ "
                    "(the mean response per neuron on the training data), which "
                    f"{type(final).__name__} does not have; use null='scored' instead."
                )
            kwargs["y_null"] = final.mean_response_
        y_pred = estimator.predict(X)
        return float(metric(y_true, y_pred, sample_weight=sample_weight, **kwargs))

    def _score_repeats(self, spec, estimator, X, responses, sample_weight, kwargs) -> float:
        """A repeated-trial metric: ``X`` holds the stimuli, ``responses`` the repeats."""
        if sample_weight is not None:
            raise ValueError(
                f"The {self._name!r} scorer scores repeated trials and takes no sample_weight."
            )
        responses = np.asarray(responses, dtype=float)
        if responses.ndim not in (2, 3):
            raise ValueError(
                f"The {self._name!r} scorer is called as scorer(estimator, X_stimuli, "
                "responses) with responses of shape (n_repeats, n_stimuli[, n_neurons]); "
                f"got responses of shape {responses.shape}. It cannot score the folds of "
                "cross_val_score or GridSearchCV (use compare_models(..., repeats=...))."
            )
        arguments = [responses]
        if spec.takes_prediction:
            arguments.append(estimator.predict(X))
        return float(spec.function(*arguments, multioutput="uniform_average", **kwargs))

    def __repr__(self) -> str:
        arguments = [repr(self._name)]
        if self._null != "scored":
            arguments.append(f"null={self._null!r}")
        arguments += [f"{key}={value!r}" for key, value in self._metric_kwargs.items()]
        return f"make_encoding_scorer({', '.join(arguments)})"

    # scikit-learn asks scorers whether they take sample weights before it
    # forwards the weights given to GridSearchCV.fit (without metadata routing).
    def _accept_sample_weight(self) -> bool:
        return True

    def set_score_request(self, *, sample_weight: bool | str | None = None):
        """Request ``sample_weight`` when metadata routing is enabled.

        Parameters
        ----------
        sample_weight : bool, str or None, default=None
            True to receive ``sample_weight``, False or None not to, or an
            alias, as in scikit-learn's own scorers.

        Returns
        -------
        self : object
            The scorer.
        """
        if not get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "set_score_request is only available when metadata routing is "
                "enabled: sklearn.set_config(enable_metadata_routing=True)."
            )
        self._sample_weight_request = sample_weight
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        """Metadata requested by the scorer (``sample_weight`` if asked for).

        Returns
        -------
        routing : MetadataRequest
            The request.
        """
        request = MetadataRequest(owner=self)
        request.score.add_request(param="sample_weight", alias=self._sample_weight_request)
        return request


def make_encoding_scorer(name: str, **metric_kwargs: Any) -> Callable[..., float]:
    """Make a scorer from an encoding metric, for model selection.

    The scorer has the signature ``scorer(estimator, X, y, sample_weight=None)``
    and can be passed as ``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_val_score` or
    :func:`~sklearn.model_selection.cross_validate`, alone or in a dict. It
    scores ``estimator.predict(X)`` against ``y`` (the log-likelihood of the
    library's estimators: their own predicted distribution, see Notes);
    greater is better for all.

    Parameters
    ----------
    name : {"log_likelihood", "bits_per_spike", "pseudo_r2", \
            "pseudo_r2_deviance", "correlation", "oracle_correlation", \
            "explainable_variance", "correlation_to_average", "fev", "feve"}
        The metric: :func:`log_likelihood` (mean per sample and neuron, the
        same number as the ``score`` method of the library's estimators),
        :func:`bits_per_spike`, :func:`pseudo_r2` with ``kind="mcfadden"``
        or ``kind="deviance"``, or :func:`correlation`; or a metric of
        repeated trials (any name of :data:`METRICS` with ``takes_repeats``),
        whose scorer is called as ``scorer(estimator, X_stimuli, responses)``
        with ``X_stimuli`` the distinct stimuli and ``responses`` of shape
        (n_repeats, n_stimuli, n_neurons): it scores
        ``estimator.predict(X_stimuli)`` (the ceilings oracle_correlation and
        explainable_variance ignore the estimator). These cannot be used as
        ``scoring=`` of cross-validation, whose folds split samples.

    **metric_kwargs
        Keyword arguments of the metric, fixed for every call, for instance
        ``aggregate="sum"`` or ``dispersion=...``; ``sample_weight`` comes
        from the caller, and ``multioutput`` is always "uniform_average".
        The bits_per_spike and pseudo-R² scorers also take ``null``:

        - "scored" (default): the null model is the mean response of the
          scored data (unless ``y_null`` is given);
        - "train": the null model is the training mean, read from the
          fitted attribute ``mean_response_`` (shape (n_neurons,)) of the
          final estimator.

    Returns
    -------
    scorer : callable
        A picklable scorer object.

    Notes
    -----
    The log-likelihood and pseudo-R² scorers take the observation family from
    the fitted estimator, found by unwrapping :class:`~sklearn.pipeline.Pipeline`
    final steps and the ``best_estimator_`` of search objects such as
    :class:`~sklearn.model_selection.GridSearchCV`. The log-likelihood of one
    of the library's estimators (a ``log_likelihood`` method and a fitted
    ``family_``) is its own, ``log_likelihood(X, y)`` in its fitted family
    and dispersion, computed from the linear predictor: the same number as
    its ``score``. For the pseudo-R², and for the log-likelihood of other
    models with a ``family_``, its family and ``dispersion_`` score the
    predicted means; any other regressor, such as
    :class:`~sklearn.linear_model.PoissonRegressor`, is scored with the
    poisson family. ``family=`` and ``dispersion=`` given here take
    precedence (the predicted means are then scored with them). Bits per
    spike is a Poisson quantity and is always computed with the poisson
    family.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import PoissonRegressor
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn_cnnenc.metrics import make_encoding_scorer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = rng.poisson(np.exp(0.5 + X @ [0.8, -0.5, 0.0]))
    >>> scorer = make_encoding_scorer("bits_per_spike")
    >>> scorer
    make_encoding_scorer('bits_per_spike')
    >>> scores = cross_val_score(PoissonRegressor(), X, y, cv=3, scoring=scorer)
    >>> bool(np.all(scores > 0))
    True
    """
    if name not in METRICS:
        raise ValueError(
            f"Unknown encoding scorer name {name!r}; expected one of {list(METRICS)}."
        )
    if "null" in metric_kwargs and not METRICS[name].takes_null:
        with_null = [key for key, spec in METRICS.items() if spec.takes_null]
        raise ValueError(
            f"null= applies only to the scorers {with_null}, not to {name!r}."
        )
    null = metric_kwargs.pop("null", "scored")
    _check_option(null, _NULL_OPTIONS, "null")
    metric, fixed_kwargs = METRICS[name].function, METRICS[name].kwargs
    if null == "train" and "y_null" in metric_kwargs:
        raise ValueError("Pass either null='train' or y_null=..., not both.")
    accepted = inspect.signature(metric).parameters
    for key, value in metric_kwargs.items():
        if key in ("y_true", "y_pred", "sample_weight", "multioutput") or key in fixed_kwargs:
            raise ValueError(
                f"{key}= cannot be set for the {name!r} scorer: scorers return one "
                "number, take sample_weight from the caller, and the scorer name "
                "fixes the kind of pseudo-R²."
            )
        if key not in accepted:
            raise TypeError(f"{metric.__name__}() got an unexpected keyword argument {key!r}.")
        if key == "aggregate" and value == "none":
            raise ValueError(
                "aggregate='none' cannot be used in a scorer, which returns one number."
            )
    return _EncodingScorer(name, null, metric_kwargs)


SCORERS: dict[str, Callable[..., float]] = {
    name: make_encoding_scorer(name) for name, spec in METRICS.items() if not spec.takes_repeats
}
"""The encoding scorers by name, ready for ``scoring=SCORERS`` (multimetric).

The repeated-trial metrics (``takes_repeats``: oracle_correlation,
correlation_to_average, fev, feve, explainable_variance) are left out: their
scorers, from :func:`make_encoding_scorer` or :func:`get_scorer`, take
``(estimator, X_stimuli, responses)`` with responses of shape (n_repeats,
n_stimuli, n_neurons), which cross-validation folds cannot split.

These objects are shared: use :func:`get_scorer` for a private copy before
calling ``set_score_request`` on one.
"""


def get_scorer(scoring: str | Callable) -> Callable:
    """Get a scorer by name: an encoding scorer, or else a scikit-learn scorer.

    Parameters
    ----------
    scoring : str or callable
        One of the names in :data:`SCORERS`, a name known to
        :func:`sklearn.metrics.get_scorer`, or a scorer callable (returned
        unchanged).

    Returns
    -------
    scorer : callable
        A copy of the encoding scorer of that name, or what
        :func:`sklearn.metrics.get_scorer` returns.

    Examples
    --------
    >>> from sklearn_cnnenc.metrics import get_scorer
    >>> get_scorer("pseudo_r2_deviance")
    make_encoding_scorer('pseudo_r2_deviance')
    >>> get_scorer("r2")
    make_scorer(r2_score, response_method='predict')
    """
    if isinstance(scoring, str) and scoring in SCORERS:
        return copy.deepcopy(SCORERS[scoring])
    if isinstance(scoring, str) and scoring in METRICS:
        return make_encoding_scorer(scoring)
    try:
        return _sklearn_get_scorer(scoring)
    except ValueError:
        if isinstance(scoring, str):
            raise ValueError(
                f"Unknown scorer name {scoring!r}: neither an encoding scorer "
                f"{list(SCORERS)} nor a scikit-learn scorer name (see "
                "sklearn.metrics.get_scorer_names())."
            ) from None
        raise
