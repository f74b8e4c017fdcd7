"""Decoding: from responses back to the stimulus, through a fitted encoding model.

An encoding model gives p(y | x); with a stimulus prior p(x), Bayes' rule
turns it into a decoder, p(x | y) = p(y | x) p(x) / p(y). Two decoders are
provided:

* :class:`BayesianDecoder`, a scikit-learn classifier over a finite set of
  candidate stimuli (orientations, images, position bins): the exact posterior
  over the candidates, its MAP label and a posterior-mean stimulus estimate;
* :func:`reconstruct`, MAP reconstruction of a continuous stimulus by
  optimising log p(y | x) + log p(x) through the encoder's torch module.

Decoding accuracy is not how an encoder is judged (held-out log-likelihood is,
see :mod:`sklearn_cnnenc.metrics`), but it is what many experiments ask of it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._decoding_likelihood import CandidateLikelihood
from ._solvers import BatchedLBFGS
from .distributions import ResponseDistribution, get_family
from .utils import final_step as _final_step
from .utils import limits_threads

__all__ = [
    "BayesianDecoder",
    "reconstruct",
    "make_decoding_scorer",
    "DECODING_SCORERS",
]

# A prior given as probabilities must sum to one up to this tolerance.
_PRIOR_SUM_TOL = 1e-6


def _check_encoder(encoder) -> None:
    """Reject estimators that do not define a response distribution p(y | x)."""
    final = _final_step(encoder)
    if not (hasattr(final, "predict_distribution") and hasattr(final, "log_likelihood")):
        raise TypeError(
            f"The encoder must define the likelihood p(y | x): its final step "
            f"{type(final).__name__} has no predict_distribution / log_likelihood method. "
            "Use an encoding model of this library (PoissonGLM, LNModel, CNNEncoder), "
            "alone or as the last step of a Pipeline."
        )


def _predict_distribution(encoder, X) -> ResponseDistribution:
    """``predict_distribution`` of an encoder, or of a Pipeline's final step."""
    if isinstance(encoder, Pipeline):
        if len(encoder) > 1:
            X = encoder[:-1].transform(X)
        return _predict_distribution(encoder[-1], X)
    return encoder.predict_distribution(X)


def _observed(X: np.ndarray) -> np.ndarray:
    """The recorded responses (NaN marks a neuron not recorded, for masking encoders)."""
    missing = np.isnan(X)
    return X[~missing] if missing.any() else X


def _check_missing(X: np.ndarray, encoder, name: str = "X") -> None:
    """NaN responses are allowed only for an encoder that masks them."""
    if _masks(encoder) or not np.isnan(X).any():
        return
    raise ValueError(
        f"{name} (the responses) contains NaN. NaN marks a response that was not "
        "recorded (a neuron of another session), which decoding leaves out of the "
        "likelihood only for an encoder with missing_responses='mask'; set it on the "
        f"encoder ({type(_final_step(encoder)).__name__}), or drop or impute the NaN entries."
    )


def _masks(encoder) -> bool:
    """Whether the encoder (a pipeline's last step) masks NaN responses."""
    return getattr(_final_step(encoder), "missing_responses", "raise") == "mask"


def _check_non_negative(X: np.ndarray, non_negative: bool) -> None:
    if non_negative and np.any(X < 0):
        raise ValueError(
            "Negative values in data passed to BayesianDecoder: responses of a "
            "non-negative family (spike counts, say) must be non-negative; minimum "
            f"{float(X.min())!r}."
        )


def _log_normalize(log_joint: np.ndarray) -> np.ndarray:
    """Normalise rows in place: ``log_joint - logsumexp(log_joint, axis=1)``."""
    log_joint -= log_joint.max(axis=1, keepdims=True)
    log_joint -= np.log(np.exp(log_joint).sum(axis=1, keepdims=True))
    return log_joint


class BayesianDecoder(ClassifierMixin, BaseEstimator):
    """Bayesian decoder over a set of candidate stimuli, built from an encoding model.

    For a response vector ``r`` (one value per neuron), the posterior over
    the candidate stimuli ``s_1 .. s_K`` is

    .. math::

        p(s_k \\mid r) = \\frac{p(r \\mid s_k)\\, \\pi_k}{\\sum_j p(r \\mid s_j)\\, \\pi_j},
        \\qquad \\log p(r \\mid s_k) = \\sum_n \\log p(r_n \\mid s_k)

    with the encoder's likelihood (neurons independent given the stimulus) and
    the prior ``pi``. With ``integrate_bins=w`` the likelihood of row ``t`` is
    that of the ``w`` bins ending at ``t`` (bins independent given a stimulus
    that stays put), the standard way of decoding position from place cells.

    Like every scikit-learn classifier the decoder reads inputs ``X`` and
    predicts targets ``y``: here ``X`` holds the *responses* (n_samples,
    n_neurons), what an encoder calls ``y``, and ``y`` the stimulus labels.
    ``fit(X, y)`` fits a clone of the encoder on ``(stimuli[y], X)`` (the
    encoding direction) and learns the prior, so that
    ``cross_val_score(BayesianDecoder(PoissonGLM(), stimuli=S), X, y)``
    refits the encoder inside every fold.

    Parameters
    ----------
    encoder : estimator
        An encoding model of this library (fitted or not), or a
        :class:`~sklearn.pipeline.Pipeline` ending in one (for example a
        spatial basis followed by a :class:`~sklearn_cnnenc.PoissonGLM`).
        It must provide ``predict_distribution`` and ``log_likelihood``.
        With ``missing_responses="mask"`` on it, responses may hold NaN
        (neurons not recorded in that trial, e.g. another session's): their
        terms drop out of the likelihood, which is then evaluated pair by
        pair (response, candidate), exact for every family.
    stimuli : array-like of shape (n_candidates, ...), default=None
        The candidate set: row ``k`` is the stimulus of class label ``k``, in
        the encoder's input format (feature vectors, images, positions). A
        1-D array is one scalar per candidate (fed to the encoder as a
        column). ``None``: the classes are the distinct labels seen
        in ``fit`` and each is presented to the encoder as a one-hot vector (the
        encoder then learns one mean response per class, a Poisson naive
        Bayes decoder with the default encoder family).
    prior : {"uniform"} or array-like of shape (n_candidates,), default=None
        Prior probability of each candidate (in the order of ``classes_``),
        non-negative and summing to one. ``None``: the class frequencies
        of the labels seen in ``fit`` (a candidate never seen has
        probability zero, so it is never decoded: use ``"uniform"`` when
        some candidates may be missing from the training labels).
    prefit : bool, default=False
        Use the already fitted ``encoder`` (a copy of it) instead of fitting
        it; ``fit`` then only learns the prior and checks the responses.
        Under cross-validation, wrap the encoder in
        :class:`sklearn.frozen.FrozenEstimator` instead (clones of a prefit
        encoder are unfitted).
    integrate_bins : int, default=1
        Number of consecutive rows (time bins) whose log-likelihoods are
        summed before applying Bayes' rule; row ``t`` uses rows
        ``t - w + 1 .. t`` (fewer in the first ``w - 1`` rows). Rows must be
        in time order.

    Attributes
    ----------
    encoder_ : estimator
        The fitted encoder.
    classes_ : ndarray of shape (n_candidates,)
        Class labels: ``arange(n_candidates)`` when ``stimuli`` is given,
        else the sorted distinct labels seen in ``fit``.
    stimuli_ : ndarray of shape (n_candidates, ...)
        The candidate stimuli (one-hot vectors when ``stimuli`` is None).
    class_prior_ : ndarray of shape (n_candidates,)
        The prior probability of each candidate.
    candidate_mean_ : ndarray of shape (n_candidates, n_neurons)
        Expected response of every neuron to every candidate (tuning curves
        over the candidate set).
    n_features_in_ : int
        Number of neurons (columns of ``X``).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Neuron names, defined only when ``X`` has string column names.

    See Also
    --------
    reconstruct : MAP reconstruction of a continuous stimulus.
    make_decoding_scorer : log posterior of the true stimulus, decoding error.

    Notes
    -----
    The encoder is evaluated once, on the candidates, in ``fit``. For every
    family of the library the log-likelihood of all responses under all
    candidates is then a matrix product (``X @ A.T + b + c(X)``), computed
    over chunks of responses whose temporaries stay within
    ``min(64 MiB, sklearn.get_config()["working_memory"])``; ``predict``,
    ``predict_stimulus`` and the scorers never hold more than one chunk of
    the posterior.

    References
    ----------
    .. [1] Zhang, K., Ginzburg, I., McNaughton, B. L. & Sejnowski, T. J.
       (1998). Interpreting neuronal population activity by reconstruction:
       unified framework with application to hippocampal place cells.
       J. Neurophysiol. 79, 1017-1044.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import BayesianDecoder, PoissonGLM
    >>> rng = np.random.RandomState(0)
    >>> angles = np.linspace(0, np.pi, 8, endpoint=False)  # candidate orientations
    >>> stimuli = np.column_stack([np.cos(2 * angles), np.sin(2 * angles)])
    >>> preferred = rng.uniform(0, np.pi, 20)  # 20 orientation-tuned neurons
    >>> y = rng.randint(8, size=400)
    >>> rates = 2 * np.exp(np.cos(2 * (angles[y, None] - preferred)))
    >>> X = rng.poisson(rates).astype(float)
    >>> decoder = BayesianDecoder(PoissonGLM(alpha=1e-3), stimuli=stimuli).fit(X, y)
    >>> decoder.predict_proba(X[:2]).shape
    (2, 8)
    >>> bool(decoder.score(X, y) > 0.8)
    True
    """

    _parameter_constraints: dict = {
        "encoder": "no_validation",
        "stimuli": ["array-like", None],
        "prior": [StrOptions({"uniform"}), "array-like", None],
        "prefit": ["boolean"],
        "integrate_bins": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        encoder,
        stimuli=None,
        prior=None,
        *,
        prefit: bool = False,
        integrate_bins: int = 1,
    ) -> None:
        self.encoder = encoder
        self.stimuli = stimuli
        self.prior = prior
        self.prefit = prefit
        self.integrate_bins = integrate_bins

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y):
        """Fit the encoder on (stimuli[y], X) and learn the prior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons)
            Responses (spike counts per bin for count families).
        y : array-like of shape (n_samples,)
            The stimulus label of each response: a row index of ``stimuli``,
            or any class label when ``stimuli`` is None.

        Returns
        -------
        self : object
        """
        self._validate_params()
        _check_encoder(self.encoder)
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite="allow-nan")
        _check_missing(X, self.encoder)
        check_classification_targets(y)
        _check_non_negative(X, self.__sklearn_tags__().input_tags.positive_only)

        self._one_hot = self.stimuli is None
        if self._one_hot:
            self.classes_, codes = np.unique(y, return_inverse=True)
            self.stimuli_ = np.eye(len(self.classes_))
        else:
            self.stimuli_ = self._validate_stimuli(self.stimuli)
            self.classes_ = np.arange(len(self.stimuli_))
            codes = self._codes_from_stimulus_indices(y)
        n_candidates = len(self.classes_)
        self.class_prior_ = self._validate_prior(codes, n_candidates)

        if self.prefit:
            check_is_fitted(_final_step(self.encoder))
            self.encoder_ = copy.deepcopy(self.encoder)
        else:
            self.encoder_ = clone(self.encoder).fit(self._encoder_input(self.stimuli_[codes]), X)

        distribution = _predict_distribution(self.encoder_, self._encoder_input(self.stimuli_))
        n_outputs = distribution.eta.shape[1]
        if n_outputs != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} neuron(s) (columns) but the encoder predicts "
                f"{n_outputs}."
            )
        distribution.family.validate_response(_observed(X))
        self._likelihood = CandidateLikelihood(distribution)
        self.candidate_mean_ = distribution.mean
        with np.errstate(divide="ignore"):
            self._log_prior = np.log(self.class_prior_)
        return self

    def _validate_stimuli(self, stimuli) -> np.ndarray:
        stimuli = check_array(
            stimuli,
            ensure_2d=False,
            allow_nd=True,
            dtype=[np.float64, np.float32],
            input_name="stimuli",
        )
        if stimuli.ndim == 0:
            raise ValueError("stimuli must have one row per candidate; got a scalar.")
        return stimuli

    @staticmethod
    def _encoder_input(stimuli: np.ndarray) -> np.ndarray:
        return stimuli[:, None] if stimuli.ndim == 1 else stimuli

    def _codes_from_stimulus_indices(self, y: np.ndarray) -> np.ndarray:
        n_candidates = len(self.stimuli_)
        y = np.asarray(y)
        numeric = y.dtype.kind in "iu" or (
            y.dtype.kind == "f" and np.all(y == np.round(y))
        )
        if not numeric:
            raise ValueError(
                "With stimuli given, the labels y must be integer row indices of "
                f"stimuli; got labels of dtype {y.dtype}."
            )
        codes = y.astype(np.intp)
        outside = (codes < 0) | (codes >= n_candidates)
        if np.any(outside):
            raise ValueError(
                f"The labels y must index the rows of stimuli (0 to {n_candidates - 1}); found "
                f"label(s) outside the candidate set: {np.unique(y[outside])[:5].tolist()}."
            )
        return codes

    def _codes_from_labels(self, y) -> np.ndarray:
        """Candidate index of each label (for scoring against true labels)."""
        y = np.asarray(y)
        if not self._one_hot:
            return self._codes_from_stimulus_indices(y.ravel())
        y = y.ravel()
        codes = np.searchsorted(self.classes_, y)
        codes = np.minimum(codes, len(self.classes_) - 1)
        unknown = self.classes_[codes] != y
        if np.any(unknown):
            raise ValueError(
                "labels outside the classes seen in fit: "
                f"{np.unique(y[unknown])[:5].tolist()}."
            )
        return codes

    def _validate_prior(self, codes: np.ndarray, n_candidates: int) -> np.ndarray:
        if self.prior is None:
            return np.bincount(codes, minlength=n_candidates) / len(codes)
        if isinstance(self.prior, str):
            return np.full(n_candidates, 1.0 / n_candidates)
        prior = check_array(self.prior, ensure_2d=False, dtype=np.float64, input_name="prior")
        if prior.shape != (n_candidates,):
            raise ValueError(
                f"prior must have one probability per candidate, shape ({n_candidates},); "
                f"got shape {prior.shape}."
            )
        if np.any(prior < 0):
            raise ValueError(f"prior must be non-negative; got minimum {prior.min()!r}.")
        if abs(prior.sum() - 1.0) > _PRIOR_SUM_TOL:
            raise ValueError(f"prior must sum to 1; it sums to {prior.sum()!r}.")
        return prior

    # ------------------------------------------------------------- posterior
    def _validate_responses(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        _check_missing(X, self.encoder_)
        family = self._likelihood.family
        _check_non_negative(X, family.non_negative)
        family.validate_response(_observed(X))
        return X

    def _iter_log_joint(self, X: np.ndarray):
        """Chunks of log p(r | s_k) + log pi_k (validated responses ``X``)."""
        for rows, log_likelihood in self._likelihood.iter_chunks(X, self.integrate_bins):
            log_likelihood += self._log_prior
            yield rows, log_likelihood

    def log_likelihood(self, X) -> np.ndarray:
        """Log-likelihood of each response under each candidate, in nats.

        Constants (``log r!``) included; with ``integrate_bins=w`` row ``t``
        is the sum over the ``w`` bins ending at ``t``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons)
            Responses, one row per time bin or trial.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples, n_candidates)
        """
        X = self._validate_responses(X)
        out = np.empty((len(X), len(self.classes_)))
        for rows, log_likelihood in self._likelihood.iter_chunks(X, self.integrate_bins):
            out[rows] = log_likelihood
        return out

    def predict_log_proba(self, X) -> np.ndarray:
        """Log posterior probability of each candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons)
            Responses, one row per time bin or trial.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_candidates)
            Columns follow ``classes_``; ``-inf`` for candidates of prior zero.
        """
        X = self._validate_responses(X)
        out = np.empty((len(X), len(self.classes_)))
        for rows, log_joint in self._iter_log_joint(X):
            out[rows] = _log_normalize(log_joint)
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons)
            Responses, one row per time bin or trial.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_candidates)
            Rows sum to one; columns follow ``classes_``.
        """
        proba = self.predict_log_proba(X)
        return np.exp(proba, out=proba)

    def _map_codes(self, X: np.ndarray) -> np.ndarray:
        codes = np.empty(len(X), dtype=np.intp)
        for rows, log_joint in self._iter_log_joint(X):
            codes[rows] = log_joint.argmax(axis=1)
        return codes

    def predict(self, X) -> np.ndarray:
        """Most probable (MAP) class label of each response.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons)
            Responses, one row per time bin or trial.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X = self._validate_responses(X)
        return self.classes_[self._map_codes(X)]

    def predict_stimulus(self, X, estimate: str = "mean") -> np.ndarray:
        """Stimulus estimate of each response: posterior mean or MAP candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons)
            Responses, one row per time bin or trial.
        estimate : {"mean", "map"}, default="mean"
            ``"mean"``: the posterior average of the candidate stimuli (the
            minimum mean-squared-error estimate of a continuous stimulus such
            as position); ``"map"``: the most probable candidate.

        Returns
        -------
        stimuli : ndarray of shape (n_samples, ...)
            Shaped like a row of ``stimuli_`` (a scalar per response for 1-D
            stimuli).
        """
        if estimate not in ("mean", "map"):
            raise ValueError(f"estimate must be 'mean' or 'map'; got {estimate!r}.")
        X = self._validate_responses(X)
        if estimate == "map":
            return self.stimuli_[self._map_codes(X)]
        flat = self.stimuli_.reshape(len(self.stimuli_), -1)
        out = np.empty((len(X), flat.shape[1]))
        for rows, log_joint in self._iter_log_joint(X):
            out[rows] = np.exp(_log_normalize(log_joint)) @ flat
        return out.reshape((len(X),) + self.stimuli_.shape[1:])

    def _log_posterior_of_labels(self, X, y) -> np.ndarray:
        """log p(true stimulus | response) of each row of ``X``."""
        X = self._validate_responses(X)
        codes = self._codes_from_labels(y)
        if len(codes) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(codes)}.")
        out = np.empty(len(X))
        for rows, log_joint in self._iter_log_joint(X):
            log_posterior = _log_normalize(log_joint)
            out[rows] = log_posterior[np.arange(len(log_posterior)), codes[rows]]
        return out

    def _decoding_errors(self, X, y, estimate: str) -> np.ndarray:
        """Euclidean distance between the estimated and the true stimulus."""
        codes = self._codes_from_labels(y)
        estimated = self.predict_stimulus(X, estimate=estimate)
        if len(codes) != len(estimated):
            raise ValueError(f"X has {len(estimated)} rows but y has {len(codes)}.")
        difference = (estimated - self.stimuli_[codes]).reshape(len(codes), -1)
        return np.sqrt((difference**2).sum(axis=1))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # families with non-negative support (counts) reject negative
        # responses; scikit-learn's checks then draw non-negative data
        try:
            family = get_family(getattr(_final_step(self.encoder), "family", None))
        except ValueError:
            return tags
        tags.input_tags.positive_only = family.non_negative
        return tags


# ------------------------------------------------------------------ scorers
_DECODING_SCORER_NAMES = ("log_posterior", "neg_decoding_error")


class _DecodingScorer:
    """Scorer ``scorer(decoder, X, y)`` built by :func:`make_decoding_scorer`."""

    def __init__(self, name: str, estimate: str, statistic: str) -> None:
        self._name = name
        self._estimate = estimate
        self._statistic = statistic

    def __call__(self, estimator, X, y, sample_weight=None) -> float:
        decoder = estimator
        if isinstance(decoder, Pipeline):
            X = decoder[:-1].transform(X) if len(decoder) > 1 else X
            decoder = decoder[-1]
        # duck-typed: a class identity check breaks under importlib-mode imports
        if not hasattr(decoder, "_log_posterior_of_labels"):
            raise TypeError(
                f"The {self._name!r} scorer needs a BayesianDecoder; got {type(decoder).__name__}."
            )
        if self._name == "log_posterior":
            return float(np.average(decoder._log_posterior_of_labels(X, y),
                                    weights=sample_weight))
        errors = decoder._decoding_errors(X, y, self._estimate)
        if self._statistic == "median":
            if sample_weight is not None:
                raise ValueError("The median decoding error does not take sample_weight.")
            return -float(np.median(errors))
        return -float(np.average(errors, weights=sample_weight))

    def __repr__(self) -> str:
        if self._name == "log_posterior":
            return "make_decoding_scorer('log_posterior')"
        return (
            f"make_decoding_scorer('neg_decoding_error', estimate={self._estimate!r}, "
            f"statistic={self._statistic!r})"
        )


def make_decoding_scorer(
    name: str, *, estimate: str = "mean", statistic: str = "mean"
) -> Callable[..., float]:
    """Make a scorer of a :class:`BayesianDecoder`, for model selection.

    Parameters
    ----------
    name : {"log_posterior", "neg_decoding_error"}
        ``"log_posterior"``: the mean log posterior probability (nats) of
        the true stimulus, computed without exponentiating (exact where
        ``neg_log_loss`` would clip a vanishing probability).
        ``"neg_decoding_error"``: minus the Euclidean distance between the
        estimated and the true stimulus (``|x_hat - x|`` for a scalar
        stimulus such as position), for continuous stimuli.
    estimate : {"mean", "map"}, default="mean"
        Stimulus estimate of ``neg_decoding_error`` (see
        :meth:`BayesianDecoder.predict_stimulus`).
    statistic : {"mean", "median"}, default="mean"
        How ``neg_decoding_error`` summarises the errors.

    Returns
    -------
    scorer : callable
        ``scorer(decoder, X, y)``, greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn_cnnenc import BayesianDecoder, PoissonGLM
    >>> from sklearn_cnnenc.decoding import make_decoding_scorer
    >>> rng = np.random.RandomState(0)
    >>> positions = np.linspace(0.0, 1.0, 11)
    >>> y = rng.randint(11, size=300)
    >>> centres = np.linspace(0.0, 1.0, 8)
    >>> X = rng.poisson(3 * np.exp(-((positions[y, None] - centres) ** 2) / 0.02))
    >>> stimuli = np.column_stack([positions, positions**2])
    >>> decoder = BayesianDecoder(PoissonGLM(alpha=1e-4), stimuli=stimuli, prior="uniform")
    >>> scorer = make_decoding_scorer("log_posterior")
    >>> scores = cross_val_score(decoder, X.astype(float), y, cv=3, scoring=scorer)
    >>> bool(np.all(scores < 0))
    True
    """
    if name not in _DECODING_SCORER_NAMES:
        raise ValueError(
            f"Unknown decoding scorer {name!r}; expected one of {list(_DECODING_SCORER_NAMES)}."
        )
    if estimate not in ("mean", "map"):
        raise ValueError(f"estimate must be 'mean' or 'map'; got {estimate!r}.")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median'; got {statistic!r}.")
    return _DecodingScorer(name, estimate, statistic)


DECODING_SCORERS: dict[str, Callable[..., float]] = {
    "log_posterior": make_decoding_scorer("log_posterior"),
    "neg_decoding_error": make_decoding_scorer("neg_decoding_error"),
    "neg_median_decoding_error": make_decoding_scorer("neg_decoding_error", statistic="median"),
}
"""Decoding scorers by name, for ``scoring=`` (accuracy is the decoder's ``score``)."""


# ----------------------------------------------------------- reconstruction
@contextmanager
def _frozen(module: torch.nn.Module):
    """Evaluation mode, no parameter gradients; restored on exit."""
    requires_grad = [p.requires_grad for p in module.parameters()]
    training = module.training
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), requires_grad, strict=True):
            p.requires_grad_(flag)
        module.train(training)


def _stimulus_shape(encoder) -> tuple[int, ...]:
    # BaseEncoder records the input shape its module sees (after validation)
    shape = getattr(encoder, "sample_shape_", None)
    if shape is not None:
        return tuple(shape)
    return (int(encoder.n_features_in_),)


def _smooth_axes(shape: tuple[int, ...], axes) -> tuple[int, ...]:
    if axes is None:
        return tuple(axis for axis, size in enumerate(shape) if size > 1)
    axes = tuple(int(axis) for axis in np.atleast_1d(axes))
    for axis in axes:
        if not -len(shape) <= axis < len(shape):
            raise ValueError(f"smooth_axes {axes} do not fit a stimulus of shape {shape}.")
    return tuple(axis % len(shape) for axis in axes)


def _log_prior_function(prior, shape, prior_mean, prior_scale, smooth_axes, dtype, device):
    """log p(x) of a batch (n, *shape) -> (n,), as a torch function."""
    if callable(prior):
        return prior
    if prior not in ("gaussian", "smooth"):
        raise ValueError(f"prior must be 'gaussian', 'smooth' or a callable; got {prior!r}.")
    if not (isinstance(prior_scale, Real) and prior_scale > 0):
        raise ValueError(f"prior_scale must be a positive number; got {prior_scale!r}.")
    variance = float(prior_scale) ** 2
    if prior == "gaussian":
        mean = torch.as_tensor(
            np.broadcast_to(np.asarray(prior_mean, dtype=float), shape).copy(),
            dtype=dtype,
            device=device,
        )
        size = int(np.prod(shape))
        constant = -0.5 * size * float(np.log(2.0 * np.pi * variance))

        def gaussian(x: torch.Tensor) -> torch.Tensor:
            return -0.5 * ((x - mean) ** 2).flatten(1).sum(1) / variance + constant

        return gaussian
    axes = _smooth_axes(shape, smooth_axes)

    def smooth(x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(len(x))
        for axis in axes:
            total = total + (torch.diff(x, dim=axis + 1) ** 2).flatten(1).sum(1)
        return -0.5 * total / variance

    return smooth


@limits_threads
def reconstruct(
    encoder,
    y,
    prior: str | Callable = "gaussian",
    *,
    prior_mean=0.0,
    prior_scale: float = 1.0,
    smooth_axes=None,
    x0=None,
    solver: str = "lbfgs",
    n_steps: int = 500,
    lr: float | None = None,
    tol: float = 1e-6,
):
    """MAP stimulus reconstruction through a fitted encoder's torch module.

    Finds, for each response vector ``y``,

    .. math::

        \\hat x = \\arg\\max_x \\; \\log p(y \\mid x) + \\log p(x)

    by gradient-based optimisation through ``encoder.module_`` (the
    module maps a stimulus batch to the linear predictor; the family and link
    of the encoder give the likelihood, with its fitted dispersion). Several
    responses are reconstructed at once, each as its own problem.

    Parameters
    ----------
    encoder : fitted estimator
        An encoding model of this library (``PoissonGLM``, ``LNModel``,
        ``CNNEncoder`` ...). Not a Pipeline: transformers are not
        differentiable; reconstruct the final step's input instead.
    y : array-like of shape (n_neurons,) or (n_responses, n_neurons)
        Observed responses. For an encoder fitted with
        ``missing_responses="mask"``, NaN marks a response that was not
        recorded (a neuron of another session): that neuron's term drops out
        of ``log p(y | x)`` for that response (a response with no recorded
        neuron is reconstructed from the prior alone). For other encoders
        NaN is a ValueError.
    prior : {"gaussian", "smooth"} or callable, default="gaussian"
        ``"gaussian"``: independent ``N(prior_mean, prior_scale^2)`` stimulus
        elements (normalised). ``"smooth"``: a random-walk (smoothness) prior,
        ``-sum(diff(x)^2) / (2 prior_scale^2)`` over neighbouring elements
        along ``smooth_axes``; improper (flat along constant offsets), so the
        likelihood must pin the overall level. A callable takes a tensor
        batch ``(n, *stimulus_shape)`` and returns the differentiable
        ``log p(x)`` of each stimulus, shape ``(n,)``.
    prior_mean : float or array-like, default=0.0
        Mean of the Gaussian prior, broadcast to the stimulus shape.
    prior_scale : float, default=1.0
        Standard deviation of the Gaussian prior, or of neighbour differences
        under the smoothness prior.
    smooth_axes : int or tuple of int, default=None
        Stimulus axes (0 is the first axis after the batch axis) along which
        the smoothness prior acts; None: every axis longer than one (for a
        multi-channel input, leave the channel axis out explicitly).
    x0 : array-like of shape stimulus_shape or (n_responses, *stimulus_shape), default=None
        Starting point; None starts at ``prior_mean``. The stimulus shape is
        that of the encoder's module input (``(n_features,)`` for a GLM).
    solver : {"lbfgs", "adam"}, default="lbfgs"
        ``"lbfgs"``: batched L-BFGS with a line search per response (fast and
        precise for smooth objectives); ``"adam"``: ``n_steps`` Adam steps.
    n_steps : int, default=500
        Maximum L-BFGS iterations, or the number of Adam steps.
    lr : float, default=None
        First trial step of L-BFGS (default 1.0) or Adam's learning rate
        (default 0.01).
    tol : float, default=1e-6
        L-BFGS stops a problem when the largest gradient entry is below ``tol``.

    Returns
    -------
    stimulus : ndarray of shape stimulus_shape or (n_responses, *stimulus_shape)
        The reconstruction, with a batch axis when ``y`` is 2-D.
    log_posterior : float or ndarray of shape (n_responses,)
        ``log p(y | x_hat) + log p(x_hat)`` in nats (the posterior up to the
        constant ``-log p(y)``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> from sklearn_cnnenc.decoding import reconstruct
    >>> data = make_glm_data(n_samples=3000, n_features=3, n_neurons=30, random_state=0)
    >>> glm = PoissonGLM(alpha=1e-4).fit(data.X, data.y)
    >>> x_hat, log_posterior = reconstruct(glm, data.y[:5], prior="gaussian")
    >>> x_hat.shape, log_posterior.shape
    ((5, 3), (5,))

    Responses of two sessions that recorded different neurons (NaN where a
    neuron was not recorded), with an encoder that masks them:

    >>> y = data.y.astype(float)
    >>> y[:1500, :15] = np.nan
    >>> y[1500:, 15:] = np.nan
    >>> masked = PoissonGLM(alpha=1e-4, missing_responses="mask").fit(data.X, y)
    >>> x_hat, log_posterior = reconstruct(masked, y[[0, 2999]], prior="gaussian")
    >>> bool(np.isfinite(log_posterior).all())
    True
    """
    if isinstance(encoder, Pipeline):
        raise TypeError(
            "reconstruct needs the encoder itself, not a Pipeline (its transformers are not "
            "differentiable); pass pipeline[-1] and reconstruct its input features."
        )
    check_is_fitted(encoder)
    module = getattr(encoder, "module_", None)
    if not isinstance(module, torch.nn.Module) or not hasattr(encoder, "family_"):
        raise TypeError(
            f"{type(encoder).__name__} has no fitted torch module (module_) and family_: "
            "reconstruct works with the encoding models of this library."
        )
    if solver not in ("lbfgs", "adam"):
        raise ValueError(f"solver must be 'lbfgs' or 'adam'; got {solver!r}.")
    if not (isinstance(n_steps, Integral) and n_steps >= 1):
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}.")
    if lr is not None and not (isinstance(lr, Real) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr!r}.")

    family, link = encoder.family_, encoder.link_
    y = check_array(
        y, ensure_2d=False, dtype=np.float64, input_name="y", ensure_all_finite="allow-nan"
    )
    _check_missing(y, encoder, "y")
    single = y.ndim == 1
    y_2d = y[None] if single else y
    if y_2d.ndim != 2 or y_2d.shape[1] != encoder.n_outputs_:
        raise ValueError(
            f"y must have shape ({encoder.n_outputs_},) or (n_responses, {encoder.n_outputs_}) "
            f"for an encoder of {encoder.n_outputs_} neuron(s); got shape {y.shape}."
        )
    observed = ~np.isnan(y_2d)
    family.validate_response(y_2d[observed])
    if observed.all():
        observed = None
    else:  # 1 is a valid response of every family; its terms are masked out
        y_2d = np.where(observed, y_2d, 1.0)
    n_responses = len(y_2d)

    parameter = next(module.parameters())
    dtype, device = parameter.dtype, parameter.device
    shape = _stimulus_shape(encoder)
    log_prior = _log_prior_function(
        prior, shape, prior_mean, prior_scale, smooth_axes, dtype, device
    )
    if x0 is None:
        start = np.broadcast_to(np.asarray(prior_mean, dtype=float), (n_responses, *shape))
    else:
        start = np.asarray(x0, dtype=float)
        if start.shape == shape:
            start = np.broadcast_to(start, (n_responses, *shape))
        if start.shape != (n_responses, *shape):
            raise ValueError(
                f"x0 must have shape {shape} or {(n_responses, *shape)}; got {start.shape}."
            )
    x = torch.tensor(start, dtype=dtype, device=device, requires_grad=True)
    targets = torch.as_tensor(y_2d, dtype=dtype, device=device)
    dispersion = None
    if getattr(encoder, "dispersion_", None) is not None:
        dispersion = torch.as_tensor(encoder.dispersion_, dtype=dtype, device=device)

    # c(y) (log y! for counts) depends on the responses alone: computed once,
    # not at every evaluation of the objective
    log_normalizer = family.log_normalizer(targets)

    mask = None if observed is None else torch.as_tensor(observed, device=device)

    def negative_log_posterior(stimulus: torch.Tensor) -> torch.Tensor:
        eta = module(stimulus)
        nll = family.negative_log_likelihood(targets, eta, link, dispersion, log_normalizer)
        if mask is not None:  # responses not recorded leave the likelihood
            nll = torch.where(mask, nll, torch.zeros((), dtype=nll.dtype, device=nll.device))
        nll = nll.sum(dim=1)
        log_p = log_prior(stimulus)
        if log_p.shape != (n_responses,):
            raise ValueError(
                "The prior callable must return one log-probability per stimulus, shape "
                f"({n_responses},); got {tuple(log_p.shape)}."
            )
        return nll - log_p

    with _frozen(module):
        if solver == "lbfgs":
            optimizer = BatchedLBFGS(
                [x], lr=1.0 if lr is None else lr, max_iter=n_steps, tol=tol, ftol=0.0
            )

            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                objective = negative_log_posterior(x)
                objective.sum().backward()
                return objective.detach()

            optimizer.step(closure)
            converged = optimizer.state["converged"]
            if not bool(torch.all(converged)):
                warnings.warn(
                    f"reconstruct did not converge for {int((~converged).sum())} of "
                    f"{n_responses} response(s) within {n_steps} iterations; increase "
                    "n_steps or tol, or use a stronger prior.",
                    ConvergenceWarning,
                    stacklevel=2,
                )
        else:
            optimizer = torch.optim.Adam([x], lr=0.01 if lr is None else lr)
            for _ in range(n_steps):
                optimizer.zero_grad()
                negative_log_posterior(x).sum().backward()
                optimizer.step()
        with torch.no_grad():
            log_posterior = -negative_log_posterior(x).double().cpu().numpy()
    stimulus = x.detach().double().cpu().numpy()
    if single:
        return stimulus[0], float(log_posterior[0])
    return stimulus, log_posterior
