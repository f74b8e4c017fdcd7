"""CNNEncoderCV: a CNN whose architecture is chosen by successive halving."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted

from .cnn import CNNEncoder
from .utils._estimators import COVARIATES, fit_search_with_covariates, takes_covariates

__all__ = ["CNNEncoderCV", "DEFAULT_ARCHITECTURE_GRID"]

#: The architectures searched by default: depth and width of the core, and
#: the readout. Nine candidates, so that successive halving with ``factor=3``
#: needs three rounds (9 -> 3 -> 1).
DEFAULT_ARCHITECTURE_GRID: dict = {
    "n_layers": [1, 2, 3],
    "channels": [8, 16, 32],
}


class CNNEncoderCV(RegressorMixin, BaseEstimator):
    """A :class:`CNNEncoder` whose architecture is chosen by cross-validation.

    Like :class:`~sklearn.linear_model.RidgeCV` for a penalty, this searches
    a small grid of architectures for the user, by successive halving
    (:class:`~sklearn.model_selection.HalvingGridSearchCV`): every candidate
    is fitted on a small share of the samples, the best third (``1 /
    factor``) goes on to ``factor`` times more, until one is left; it is
    then refitted on all the data. Candidates are ranked by their held-out
    score (by default :meth:`CNNEncoder.score`, the mean log-likelihood),
    and all of them see the same folds, so their scores compare.
    Everything not in the grid comes from ``estimator`` (by default
    :class:`CNNEncoder` with its data-dependent ``"auto"`` settings).

    Parameters
    ----------
    estimator : CNNEncoder, optional
        The model whose settings the grid overrides; default
        ``CNNEncoder(random_state=random_state)``.
    param_grid : dict or list of dict, optional
        Settings to search; default :data:`DEFAULT_ARCHITECTURE_GRID`,
        ``{"n_layers": [1, 2, 3], "channels": [8, 16, 32]}``.
    cv : int or cross-validation generator, default=3
    factor : int, default=3
        Share of candidates kept per round (``1 / factor``), and growth of
        the samples per round.
    min_resources : int or "smallest" or "exhaust", default="exhaust"
        Samples of the first round (see ``HalvingGridSearchCV``);
        ``"exhaust"`` chooses it so that the last round uses all samples.
    scoring : str or callable, optional
        Default: the estimator's ``score``.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsampling of the rounds and, where ``estimator`` leaves
        its own ``random_state`` at None, every candidate's fit.
    n_jobs : int, optional
    verbose : int, default=0

    Attributes
    ----------
    best_estimator_ : CNNEncoder
        The best candidate, refitted on all the data.
    best_params_ : dict
    best_score_ : float
        Mean cross-validated score of the best candidate in the last round.
    cv_results_ : dict of ndarray
        Scores of every candidate in every round (``iter`` tells the round).
    search_ : HalvingGridSearchCV
        The fitted search.
    n_features_in_ : int
    n_outputs_ : int

    See Also
    --------
    CNNEncoder : the model; its docstring states the ``"auto"`` rules.
    sklearn.model_selection.HalvingGridSearchCV : the search.

    Examples
    --------
    >>> from sklearn_cnnenc import CNNEncoder, CNNEncoderCV
    >>> from sklearn_cnnenc.datasets import make_v1_population
    >>> data = make_v1_population(n_samples=120, n_simple=1, n_complex=1, random_state=0)
    >>> search = CNNEncoderCV(
    ...     CNNEncoder(max_epochs=2, n_ensemble=1, device="cpu"),
    ...     param_grid={"n_layers": [1, 2]}, cv=2, factor=2, random_state=0,
    ... ).fit(data.X, data.y)
    >>> sorted(search.best_params_)
    ['n_layers']
    >>> search.predict(data.X).shape
    (120, 2)

    With behaviour, every candidate is fitted and scored with its rows' own:

    >>> import numpy as np
    >>> running = np.random.default_rng(0).standard_normal((120, 1))
    >>> search = CNNEncoderCV(
    ...     CNNEncoder(max_epochs=2, n_ensemble=1, device="cpu"),
    ...     param_grid={"n_layers": [1, 2]}, cv=2, factor=2, random_state=0,
    ... ).fit(data.X, data.y, behavior=running)
    >>> search.predict(data.X, behavior=running).shape
    (120, 2)
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit", "predict", "score"])],
        "param_grid": [None, dict, list],
        "cv": ["cv_object"],
        "factor": [Interval(Integral, 2, None, closed="left")],
        "min_resources": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"smallest", "exhaust"}),
        ],
        "scoring": [None, str, callable],
        "random_state": ["random_state"],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator=None,
        param_grid=None,
        *,
        cv=3,
        factor: int = 3,
        min_resources="exhaust",
        scoring=None,
        random_state=None,
        n_jobs=None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.param_grid = param_grid
        self.cv = cv
        self.factor = factor
        self.min_resources = min_resources
        self.scoring = scoring
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    @property
    def _takes_behavior(self) -> bool:
        """Whether the searched model takes ``behavior``/``eye_position`` (compare_models)."""
        return takes_covariates(CNNEncoder() if self.estimator is None else self.estimator)

    def fit(self, X, y, **fit_params):
        """Search the grid by successive halving, then refit the best on all data.

        Parameters
        ----------
        X : array-like
            Stimuli, shaped as for :meth:`CNNEncoder.fit`.
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        **fit_params
            Passed to every fit (e.g. ``sample_weight``), split by the
            search's folds. ``behavior`` and ``eye_position`` also reach each
            candidate's ``score`` on its held-out rows (the search runs with
            scikit-learn's metadata routing; ``scoring`` must then be None),
            and the best model then needs them to predict.

        Returns
        -------
        self : object
        """
        self._validate_params()
        if y is None:
            raise ValueError("CNNEncoderCV requires y to be passed, but the target y is None.")
        n_samples = _num_samples(X)
        if n_samples < 2:
            raise ValueError(
                f"CNNEncoderCV needs samples to split into folds; got n_samples={n_samples}."
            )
        estimator = CNNEncoder() if self.estimator is None else clone(self.estimator)
        if self.random_state is not None and estimator.get_params().get("random_state") is None:
            # one seed for the rounds' subsampling and every candidate's fit
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            estimator.set_params(random_state=int(seed))
        grid = DEFAULT_ARCHITECTURE_GRID if self.param_grid is None else self.param_grid
        search = HalvingGridSearchCV(
            estimator,
            grid,
            factor=self.factor,
            resource="n_samples",
            min_resources=self.min_resources,
            cv=self.cv,
            scoring=self.scoring,
            refit=True,
            error_score="raise",
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
        )
        covariates = {key: fit_params.pop(key) for key in COVARIATES if key in fit_params}
        covariates = {key: value for key, value in covariates.items() if value is not None}
        if covariates:
            fit_search_with_covariates(search, X, y, covariates, **fit_params)
        else:
            search.fit(X, y, **fit_params)
        self.search_ = search
        self.best_estimator_ = search.best_estimator_
        self.best_params_ = search.best_params_
        self.best_score_ = float(search.best_score_)
        self.cv_results_ = search.cv_results_
        self.n_features_in_ = self.best_estimator_.n_features_in_
        if hasattr(self.best_estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.best_estimator_.feature_names_in_
        self.n_outputs_ = getattr(self.best_estimator_, "n_outputs_", None)
        return self

    # ----------------------------------------------- delegation to the best
    def predict(self, X, **kwargs) -> np.ndarray:
        """Expected response of the best model (see :meth:`CNNEncoder.predict`)."""
        check_is_fitted(self)
        return self.best_estimator_.predict(X, **kwargs)

    def score(self, X, y, sample_weight=None, **kwargs) -> float:
        """Mean log-likelihood of the best model (see :meth:`CNNEncoder.score`)."""
        check_is_fitted(self)
        return self.best_estimator_.score(X, y, sample_weight=sample_weight, **kwargs)

    def log_likelihood(self, X, y, **kwargs) -> np.ndarray:
        """Per-sample log-likelihood of the best model."""
        check_is_fitted(self)
        return self.best_estimator_.log_likelihood(X, y, **kwargs)

    def predict_distribution(self, X, **kwargs):
        """Predicted distribution p(y | x) of the best model."""
        check_is_fitted(self)
        return self.best_estimator_.predict_distribution(X, **kwargs)

    def sample(self, X, random_state=None, **kwargs) -> np.ndarray:
        """Responses drawn from the best model."""
        check_is_fitted(self)
        return self.best_estimator_.sample(X, random_state=random_state, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = (CNNEncoder() if self.estimator is None else self.estimator).__sklearn_tags__()
        tags.input_tags = inner.input_tags
        tags.target_tags = inner.target_tags
        tags.regressor_tags = inner.regressor_tags
        return tags
