"""Cross-validated regularisation paths for :class:`PoissonGLM` (glmnet's ``cv.glmnet``)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import _estimate_dispersion, _RegisteredFamilies
from ._solvers import BatchedFISTA, BatchedLBFGS, batched_glm_newton
from .distributions import Family, get_family
from .glm import PoissonGLM
from .metrics import _check_sample_weight

__all__ = ["PoissonGLMCV"]

# glmnet's stand-in for l1_ratio = 0 when deriving alpha_max from the lasso bound
_MIN_L1_RATIO_FOR_ALPHA_MAX = 1e-3


class PoissonGLMCV(RegressorMixin, BaseEstimator):
    """:class:`PoissonGLM` with the penalty chosen by cross-validation along a path.

    For every ``l1_ratio`` the penalty path runs from ``alpha_max`` (the
    smallest ``alpha`` at which the lasso part zeroes every coefficient,
    computed from the data; glmnet's rule with ``l1_ratio`` floored at 1e-3)
    down to ``eps * alpha_max`` on a log grid of ``n_alphas`` values. Each
    fold is fitted along the path with warm starts, and all folds, all
    neurons and the final fit on the whole data are one batched problem (one
    row of the solver's parameter matrix per fold and neuron), so the path
    costs about as much as a few single fits. The ``alpha`` (and
    ``l1_ratio``) with the best mean held-out score is then refitted on all
    the data (``estimator_``).

    Parameters
    ----------
    alphas : array-like or None, default=None
        Penalty strengths to try; ``None`` derives the path from the data.
    n_alphas : int, default=30
        Length of the derived path.
    eps : float, default=1e-3
        ``alpha_min / alpha_max`` of the derived path.
    l1_ratio : float or list of float, default=0.0
        Elastic-net mixing (0 ridge, 1 lasso); a list is searched too.
    cv : int, cross-validation generator or iterable, default=None
        As in scikit-learn (``None``: 5-fold ``KFold``). For time series use
        contiguous blocks (``model_selection.BlockedKFold``).
    scoring : str, callable or None, default=None
        ``None`` is the held-out log-likelihood per sample (the estimator's
        ``score``). Other scorers are evaluated on refitted estimators (one per
        fold and ``l1_ratio``, warm-started along the path), which is slower.
    per_neuron : bool, default=False
        With a population, let every neuron pick its own ``alpha`` (and
        ``l1_ratio``) from its own held-out log-likelihood. Needs
        ``scoring=None``.
    n_jobs : int or None, default=None
        Folds fitted in parallel when the batched path cannot be used (a
        custom ``scoring`` or the negative-binomial family, whose dispersion is
        trained); the batched path runs in one process.
    family, link, fit_intercept, groups, penalty_weights, solver, max_iter, tol, device, verbose
        As in :class:`PoissonGLM`. The batched path is solved on the CPU;
        ``device`` applies to the final fit (and to the refits of a custom
        ``scoring``).
    missing_responses : {"raise", "mask"}, default="raise"
        As in :class:`PoissonGLM`: with ``"mask"``, NaN in ``y`` marks a
        response that was not recorded (another session's neuron). Every fold
        fits each neuron on its observed training entries (its mean
        negative log-likelihood over them, exactly the objective of
        ``PoissonGLM(missing_responses="mask")`` on that fold), and the
        held-out score of a fold is the mean log-likelihood over its
        observed entries (``PoissonGLM.score``). A neuron with no observed
        held-out entry in a fold is left out of that fold's score (NaN in
        ``neuron_score_path_``); a neuron with no observed *training* entry in
        a fold, or none at all, is a ValueError naming it, as
        ``PoissonGLM`` refuses a neuron it never observed.

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_neurons,)
        Selected penalty (per neuron with ``per_neuron=True``).
    l1_ratio_ : float or ndarray of shape (n_neurons,)
    alphas_ : ndarray of shape (n_alphas,) or (n_l1_ratios, n_alphas)
        The path of every ``l1_ratio`` (first axis only for a list).
    score_path_ : ndarray of shape (n_alphas, n_folds) or (n_l1_ratios, n_alphas, n_folds)
        Held-out score of every path point and fold (mean over neurons).
    neuron_score_path_ : ndarray, shape of ``score_path_`` plus (n_neurons,)
        Held-out log-likelihood per neuron (only with ``scoring=None``); NaN
        for a neuron with no observed held-out entry in a fold
        (``missing_responses="mask"``).
    coef_ : ndarray of shape (n_features,) or (n_neurons, n_features)
    intercept_ : float or ndarray of shape (n_neurons,)
    n_iter_ : int
        Iterations of the final fit (``estimator_.n_iter_``).
    estimator_ : PoissonGLM
        The final model on all the data. With ``per_neuron=True`` its
        coefficients are those of each neuron's own penalty (its ``alpha``
        parameter is the largest selected one).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    See Also
    --------
    PoissonGLM : the estimator with a fixed penalty.
    sklearn.linear_model.ElasticNetCV : the least-squares analogue.

    References
    ----------
    .. [1] Friedman, J., Hastie, T. & Tibshirani, R. (2010). Regularization
       paths for generalized linear models via coordinate descent. Journal of
       Statistical Software 33(1).

    Examples
    --------
    >>> from sklearn_cnnenc import PoissonGLMCV
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> data = make_glm_data(n_samples=1000, n_features=5, n_neurons=2, random_state=0)
    >>> model = PoissonGLMCV(n_alphas=8, cv=3).fit(data.X, data.y)
    >>> model.alphas_.shape, model.score_path_.shape
    ((8,), (8, 3))
    >>> model.coef_.shape
    (2, 5)

    Two sessions that recorded different neurons, as one NaN-padded matrix:

    >>> import numpy as np
    >>> y = data.y.astype(float)
    >>> y[:500, 1] = np.nan  # neuron 1 was recorded in the second session only
    >>> masked = PoissonGLMCV(n_alphas=8, cv=3, missing_responses="mask").fit(data.X, y)
    >>> bool(np.isfinite(masked.score_path_).all())
    True
    """

    _parameter_constraints: dict = {
        "alphas": ["array-like", None],
        "n_alphas": [Interval(Integral, 1, None, closed="left")],
        "eps": [Interval(Real, 0.0, 1.0, closed="right")],
        "l1_ratio": [Interval(Real, 0.0, 1.0, closed="both"), "array-like"],
        "cv": ["cv_object"],
        "scoring": [str, callable, None],
        "per_neuron": ["boolean"],
        "n_jobs": [Integral, None],
        "family": [_RegisteredFamilies(), Family],
        "link": [str],
        "fit_intercept": ["boolean"],
        "groups": ["array-like", None],
        "penalty_weights": ["array-like", None],
        "solver": [StrOptions({"auto", "lbfgs", "owlqn", "fista"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
        "device": [str],
        "verbose": ["verbose"],
        "missing_responses": [StrOptions({"raise", "mask"})],
    }

    def __init__(
        self,
        *,
        alphas=None,
        n_alphas: int = 30,
        eps: float = 1e-3,
        l1_ratio=0.0,
        cv=None,
        scoring=None,
        per_neuron: bool = False,
        n_jobs: int | None = None,
        family: str = "poisson",
        link: str = "auto",
        fit_intercept: bool = True,
        groups=None,
        penalty_weights=None,
        solver: str = "auto",
        max_iter: int = 1000,
        tol: float = 1e-4,
        device: str = "cpu",
        verbose: int = 0,
        missing_responses: str = "raise",
    ) -> None:
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.l1_ratio = l1_ratio
        self.cv = cv
        self.scoring = scoring
        self.per_neuron = per_neuron
        self.n_jobs = n_jobs
        self.family = family
        self.link = link
        self.fit_intercept = fit_intercept
        self.groups = groups
        self.penalty_weights = penalty_weights
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.verbose = verbose
        self.missing_responses = missing_responses

    # ----------------------------------------------------------------- setup
    def _glm(self, alpha: float = 1.0, l1_ratio: float = 0.0) -> PoissonGLM:
        return PoissonGLM(
            alpha=alpha,
            l1_ratio=l1_ratio,
            family=self.family,
            link=self.link,
            fit_intercept=self.fit_intercept,
            groups=self.groups,
            penalty_weights=self.penalty_weights,
            solver=self.solver,
            max_iter=self.max_iter,
            tol=self.tol,
            device=self.device,
            verbose=self.verbose,
            missing_responses=self.missing_responses,
        )

    def _l1_ratios(self) -> np.ndarray:
        ratios = np.atleast_1d(np.asarray(self.l1_ratio, dtype=float))
        if ratios.ndim != 1 or ratios.size == 0:
            raise ValueError(f"l1_ratio must be a float or a 1-D list; got {self.l1_ratio!r}.")
        if np.any((ratios < 0) | (ratios > 1)):
            raise ValueError(f"Every l1_ratio must lie in [0, 1]; got {ratios.tolist()}.")
        return ratios

    def _alpha_max(
        self, X, y_2d, sample_weight, family, link, weights, observed=None
    ) -> float:
        """Smallest alpha zeroing every coefficient under the lasso (max over neurons).

        ``observed`` (the non-NaN entries of ``y_2d``, masked fits): each
        neuron's loss is its mean over its own observed entries.
        """
        base = self._glm()
        start, _ = base._starting_values(family, link, y_2d, sample_weight, observed=observed)
        eta = torch.as_tensor(np.broadcast_to(start, y_2d.shape).copy()).requires_grad_(True)
        scale = np.ones(y_2d.shape)
        if observed is not None:
            # the masked objective: observed entries only, divided by their count
            y_2d = np.where(observed, y_2d, 1.0)  # 1: a valid response of every family
            scale = observed * (len(X) / observed.sum(axis=0))
        yt = torch.tensor(y_2d, dtype=torch.float64)
        dispersion = None
        if family.trains_dispersion:
            dispersion = torch.as_tensor(
                _estimate_dispersion(
                    family, y_2d, np.broadcast_to(start, y_2d.shape), observed=observed
                ),
                dtype=eta.dtype,
            )
        loss = family.training_loss(yt, eta, link, dispersion)
        s = np.ones(len(X)) if sample_weight is None else sample_weight / sample_weight.mean()
        s = torch.as_tensor(s[:, None] * scale)
        (d_eta,) = torch.autograd.grad((s * loss).sum(), eta)
        grad = np.abs(X.T @ d_eta.numpy()) / len(X)  # (n_features, n_neurons)
        if self.groups is not None:
            _, codes = np.unique(np.asarray(self.groups), return_inverse=True)
            norms = np.sqrt(
                np.add.reduceat(
                    (grad**2)[np.argsort(codes, kind="stable")],
                    np.r_[0, np.cumsum(np.bincount(codes))[:-1]],
                    axis=0,
                )
            )
            sizes = np.sqrt(np.bincount(codes))[:, None]
            first = np.zeros(codes.max() + 1)
            first[codes] = 1.0 if weights is None else weights
            grad, weights = norms / sizes, first
        if weights is not None:
            penalised = weights > 0
            if not penalised.any():
                return 1.0
            grad = grad[penalised] / weights[penalised, None]
        alpha_max = float(grad.max()) if grad.size else 0.0
        return alpha_max if alpha_max > 0 else 1.0

    # ------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None, *, groups=None):
        """Fit the path on every fold, choose the penalty, refit on all the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        groups : array-like of shape (n_samples,), optional
            Group labels of the samples (trials, sessions) for a group-aware
            ``cv`` such as ``GroupKFold``, as in ``GridSearchCV.fit``. (The
            group-lasso structure over *features* is the ``groups``
            constructor parameter.)

        Returns
        -------
        self : PoissonGLMCV
        """
        self._validate_params()
        if y is None:
            raise ValueError("PoissonGLMCV requires y to be passed, but the target y is None.")
        X = validate_data(self, X, reset=True, dtype=[np.float64, np.float32], order="F")
        family = get_family(self.family)
        link = family.check_link(family.default_link if self.link == "auto" else self.link)
        base = self._glm()
        y = base._validate_y(y, n_samples=X.shape[0], family=family, dtype=np.float64)
        y_2d = y.reshape(len(y), -1)
        sample_weight = _check_sample_weight(sample_weight, y_2d)
        observed = _observed_entries(y_2d, sample_weight) if base._mask_missing else None
        weights, codes = base._penalty_structure(X.shape[1])
        ratios = self._l1_ratios()
        if self.per_neuron and self.scoring is not None:
            raise ValueError(
                "per_neuron=True chooses each neuron's alpha by its own held-out "
                "log-likelihood and needs scoring=None."
            )
        if self.alphas is None:
            alpha_max = self._alpha_max(X, y_2d, sample_weight, family, link, weights, observed)
            path = [
                np.geomspace(
                    alpha_max / max(r, _MIN_L1_RATIO_FOR_ALPHA_MAX),
                    alpha_max / max(r, _MIN_L1_RATIO_FOR_ALPHA_MAX) * self.eps,
                    self.n_alphas,
                )
                for r in ratios
            ]
        else:
            alphas = np.sort(np.asarray(self.alphas, dtype=float).ravel())[::-1]
            if alphas.size == 0 or np.any(alphas < 0) or not np.all(np.isfinite(alphas)):
                raise ValueError("alphas must be a non-empty list of finite values >= 0.")
            path = [alphas for _ in ratios]
        alphas_ = np.array(path)
        cv = check_cv(self.cv)
        splits = list(cv.split(X, y, groups))
        if observed is not None:
            _check_folds(observed, sample_weight, splits)

        batched = self.scoring is None and not family.trains_dispersion
        if batched:
            scores, neuron_scores, final = _batched_path(
                X,
                y_2d,
                sample_weight,
                splits,
                alphas_,
                ratios,
                family,
                link,
                self.fit_intercept,
                weights,
                codes,
                base,
                self.max_iter,
                self.tol,
                observed,
            )
        else:
            scores, neuron_scores = self._refit_path(X, y, sample_weight, splits, alphas_, ratios)
            final = None

        n_neurons = y_2d.shape[1]
        mean_scores = scores.mean(axis=2)  # (n_ratios, n_alphas)
        best = np.unravel_index(np.argmax(mean_scores), mean_scores.shape)
        alpha_best, ratio_best = float(alphas_[best]), float(ratios[best[0]])
        self.estimator_ = self._glm(alpha_best, ratio_best).fit(X, y, sample_weight=sample_weight)
        if self.per_neuron:
            # mean over the folds in which the neuron was observed held out
            scored = np.isfinite(neuron_scores)
            per = np.where(scored, neuron_scores, 0.0).sum(axis=2) / np.maximum(
                scored.sum(axis=2), 1
            )
            per = per.reshape(-1, n_neurons)  # (n_ratios*n_alphas, K)
            flat = np.argmax(per, axis=0)
            # a neuron never observed held out takes the population's choice
            flat[~scored.any(axis=(0, 1, 2))] = np.ravel_multi_index(best, mean_scores.shape)
            ratio_index, alpha_index = np.unravel_index(flat, mean_scores.shape)
            self.alpha_ = alphas_[ratio_index, alpha_index]
            self.l1_ratio_ = ratios[ratio_index]
            self._load_per_neuron(
                X, y_2d, sample_weight, final, ratio_index, alpha_index, observed
            )
        else:
            self.alpha_, self.l1_ratio_ = alpha_best, ratio_best
        scalar_ratio = np.ndim(self.l1_ratio) == 0
        self.alphas_ = alphas_[0] if scalar_ratio else alphas_
        self.score_path_ = scores[0] if scalar_ratio else scores
        if neuron_scores is not None:
            self.neuron_score_path_ = neuron_scores[0] if scalar_ratio else neuron_scores
        self.coef_ = self.estimator_.coef_
        self.intercept_ = self.estimator_.intercept_
        self.n_outputs_ = n_neurons
        self.n_iter_ = self.estimator_.n_iter_
        return self

    @property
    def best_params_(self) -> dict:
        """The selected ``{"alpha": alpha_, "l1_ratio": l1_ratio_}`` (as search objects report)."""
        check_is_fitted(self)
        return {"alpha": self.alpha_, "l1_ratio": self.l1_ratio_}

    def _load_per_neuron(
        self, X, y_2d, sample_weight, final, ratio_index, alpha_index, observed=None
    ):
        """Give ``estimator_`` each neuron's coefficients at its own penalty."""
        estimator = self.estimator_
        neurons = np.arange(y_2d.shape[1])
        if final is None:  # pragma: no cover - per_neuron needs the batched path
            raise ValueError("per_neuron=True needs the batched path.")
        coef, intercept = final
        predictor = estimator.module_.predictor
        with torch.no_grad():
            dtype = predictor.weight.dtype
            predictor.weight.copy_(
                torch.as_tensor(coef[ratio_index, alpha_index, neurons], dtype=dtype)
            )
            if predictor.bias is not None:
                predictor.bias.copy_(
                    torch.as_tensor(intercept[ratio_index, alpha_index, neurons], dtype=dtype)
                )
        estimator._set_fitted_attributes()
        if estimator.family_.has_dispersion and not estimator.family_.trains_dispersion:
            eta = estimator._linear_predictor(X)
            estimator.dispersion_ = estimator._fitted_dispersion(
                y_2d, eta, sample_weight, observed
            )

    def _refit_path(self, X, y, sample_weight, splits, alphas_, ratios):
        """Scores from warm-started PoissonGLM fits (custom scorers, trained dispersion)."""
        scorer = None if self.scoring is None else check_scoring(self._glm(), self.scoring)

        def fold(train, test):
            out = np.empty((len(ratios), alphas_.shape[1]))
            neuron = np.empty((len(ratios), alphas_.shape[1], y.reshape(len(y), -1).shape[1]))
            sw = None if sample_weight is None else sample_weight[train]
            for r, ratio in enumerate(ratios):
                model = self._glm(l1_ratio=ratio).set_params(warm_start=True)
                for a, alpha in enumerate(alphas_[r]):
                    model.set_params(alpha=alpha).fit(X[train], y[train], sample_weight=sw)
                    if scorer is None:
                        ll = model.log_likelihood(X[test], y[test], per_neuron=True)
                        # NaN at missing responses (missing_responses="mask")
                        neuron[r, a], out[r, a] = _held_out_means(ll.reshape(len(test), -1))
                    else:
                        out[r, a] = scorer(model, X[test], y[test])
            return out, neuron

        results = Parallel(n_jobs=self.n_jobs)(delayed(fold)(tr, te) for tr, te in splits)
        scores = np.stack([r[0] for r in results], axis=2)
        neuron_scores = None
        if scorer is None:
            neuron_scores = np.stack([r[1] for r in results], axis=2)
        return scores, neuron_scores

    # ------------------------------------------------------------- predict
    def predict(self, X, offset=None):
        """Expected response under the selected model (see :meth:`PoissonGLM.predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        offset : array-like, optional

        Returns
        -------
        mean : ndarray of shape (n_samples,) or (n_samples, n_neurons)
        """
        check_is_fitted(self)
        return self.estimator_.predict(X, offset=offset)

    def predict_distribution(self, X, offset=None):
        """Predicted response distribution (see :meth:`PoissonGLM.predict_distribution`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        offset : array-like, optional

        Returns
        -------
        distribution : ResponseDistribution
        """
        check_is_fitted(self)
        return self.estimator_.predict_distribution(X, offset=offset)

    def log_likelihood(self, X, y, *, offset=None, per_neuron: bool = False):
        """Log-likelihood of ``y`` (see :meth:`PoissonGLM.log_likelihood`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        offset : array-like, optional
        per_neuron : bool, default=False

        Returns
        -------
        log_likelihood : ndarray
        """
        check_is_fitted(self)
        return self.estimator_.log_likelihood(X, y, offset=offset, per_neuron=per_neuron)

    def score(self, X, y, sample_weight=None, offset=None):
        """Mean held-out log-likelihood per sample (see :meth:`PoissonGLM.score`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like, optional

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        return self.estimator_.score(X, y, sample_weight=sample_weight, offset=offset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        glm_tags = PoissonGLM().__sklearn_tags__()
        tags.target_tags = glm_tags.target_tags
        tags.input_tags = glm_tags.input_tags
        tags.regressor_tags = glm_tags.regressor_tags
        return tags


def _batched_path(
    X,
    y_2d,
    sample_weight,
    splits,
    alphas_,
    ratios,
    family,
    link,
    fit_intercept,
    weights,
    codes,
    base,
    max_iter,
    tol,
    observed=None,
):
    """Every fold, every neuron and the full-data fit as one batched problem.

    Problem ``c * K + k`` is neuron ``k`` fitted on the training samples of
    fold ``c`` (``c = n_folds``: all samples). Returns the held-out scores,
    shape (n_ratios, n_alphas, n_folds) and (..., n_neurons), and the
    full-data coefficients and intercepts along the path.

    ``observed`` (masked fits, the non-NaN entries of ``y_2d``): the weight of
    a missing entry is zero and each problem's loss is divided by its
    neuron's observed training count, as ``PoissonGLM(missing_responses="mask")``
    does; held-out scores are means over observed entries.
    """
    n, p = X.shape
    K = y_2d.shape[1]
    n_folds = len(splits)
    C = n_folds + 1
    dtype = torch.float64
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    train = np.zeros((n, C))
    for c, (tr, _) in enumerate(splits):
        train[tr, c] = 1.0
    train[:, n_folds] = 1.0
    train_w = train * s[:, None]
    # each problem's weights are normalised to a mean of one over its samples,
    # as PoissonGLM does, so that the per-sample objective (and tol) match
    train_w = train_w / train_w.sum(axis=0, keepdims=True)
    M = np.repeat(train_w, K, axis=1)  # (n, C*K)
    if observed is not None:
        counts = train.T @ observed  # (C, K) observed training entries
        # weights of mean one over the fold's samples, each neuron's sum over its
        # observed entries divided by their count: PoissonGLM's masked objective
        scale = train.sum(axis=0)[:, None] / counts
        M = M * np.tile(observed, (1, C)) * scale.ravel()
        y_2d = np.where(observed, y_2d, 1.0)  # 1: a valid response of every family
    M = torch.as_tensor(M, dtype=dtype)
    Xt = torch.as_tensor(np.ascontiguousarray(X), dtype=dtype)
    Y = torch.as_tensor(np.tile(y_2d, (1, C)), dtype=dtype)
    log_normalizer = family.log_normalizer(Y)

    start = np.empty((C, K))
    for c in range(C):
        rows = train[:, c] > 0
        start[c], _ = base._starting_values(
            family, link, y_2d[rows], s[rows],
            observed=None if observed is None else observed[rows],
        )
    W = torch.zeros(C * K, p, dtype=dtype, requires_grad=True)
    b = torch.as_tensor(start.ravel(), dtype=dtype).clone().requires_grad_(fit_intercept)
    penalty = None if weights is None else torch.as_tensor(weights, dtype=dtype)
    state = {"l2": 0.0}

    def closure():
        optimizer.zero_grad()
        eta = torch.addmm(b, Xt, W.T)
        loss = (M * family.training_loss(Y, eta, link, None, log_normalizer)).sum(dim=0)
        squares = W**2
        ridge = squares.sum(dim=1) if penalty is None else squares @ penalty
        loss = loss + 0.5 * state["l2"] * ridge
        loss.sum().backward()
        return loss.detach()

    n_ratios, n_alphas = alphas_.shape
    neuron_scores = np.empty((n_ratios, n_alphas, n_folds, K))
    fold_scores = np.empty((n_ratios, n_alphas, n_folds))
    coef_path = np.empty((n_ratios, n_alphas, K, p))
    intercept_path = np.zeros((n_ratios, n_alphas, K))
    test_masks = [te for _, te in splits]
    initial = (W.detach().clone(), b.detach().clone())
    for r, ratio in enumerate(ratios):
        with torch.no_grad():
            W.copy_(initial[0])
            b.copy_(initial[1])
        for a, alpha in enumerate(alphas_[r]):
            l1 = alpha * ratio
            state["l2"] = alpha * (1.0 - ratio)
            glm = base.set_params(alpha=alpha, l1_ratio=ratio)
            solver = glm._solver_name()
            options: dict = {"l1": 0.0}
            if l1 > 0:
                options["l1"] = l1 if weights is None else torch.as_tensor(l1 * weights)
                if codes is not None:
                    options["groups"] = torch.as_tensor(codes)
            if l1 == 0 and link.name == family.default_link:
                # canonical link, smooth penalty: the objective is convex in the
                # coefficients and a batched Newton step converges in a few
                # iterations from the warm start
                _newton_in_place(
                    Xt,
                    Y,
                    M,
                    W,
                    b,
                    family,
                    link,
                    log_normalizer,
                    state["l2"],
                    penalty,
                    fit_intercept,
                    max_iter,
                    tol,
                )
            else:
                groups = [{"params": [W], **options}]
                if fit_intercept:
                    groups.append({"params": [b], "l1": 0.0})
                cls = BatchedFISTA if solver == "fista" else BatchedLBFGS
                optimizer = cls(groups, lr=1.0, max_iter=max_iter, tol=tol)
                optimizer.step(closure)
            with torch.no_grad():
                eta = torch.addmm(b, Xt, W.T).numpy().reshape(n, C, K)
            mean = link.inverse(torch.as_tensor(eta)).numpy()
            for c, test in enumerate(test_masks):
                dispersion = None
                if family.has_dispersion:
                    rows = train[:, c] > 0
                    dispersion = _estimate_dispersion(
                        family, y_2d[rows], mean[rows, c], s[rows],
                        None if observed is None else observed[rows],
                    )
                    dispersion = torch.as_tensor(dispersion, dtype=dtype)
                nll = family.negative_log_likelihood(
                    torch.as_tensor(y_2d[test]), torch.as_tensor(eta[test, c]), link, dispersion
                ).numpy()
                if observed is None:
                    neuron_scores[r, a, c] = -nll.mean(axis=0)
                else:
                    log_prob = np.where(observed[test], -nll, np.nan)
                    neuron_scores[r, a, c], fold_scores[r, a, c] = _held_out_means(log_prob)
            coef_path[r, a] = W.detach().numpy()[n_folds * K :]
            if fit_intercept:
                intercept_path[r, a] = b.detach().numpy()[n_folds * K :]
    scores = neuron_scores.mean(axis=3) if observed is None else fold_scores
    return scores, neuron_scores, (coef_path, intercept_path)


def _observed_entries(y_2d, sample_weight) -> np.ndarray | None:
    """The non-NaN entries of ``y_2d`` (None when none is missing).

    A neuron with no observed response (of positive weight) is a ValueError
    naming its column, as in ``PoissonGLM(missing_responses="mask")``.
    """
    observed = ~np.isnan(y_2d)
    if observed.all():
        return None
    usable = observed if sample_weight is None else observed & (sample_weight[:, None] > 0)
    never = np.flatnonzero(~usable.any(axis=0))
    if len(never):
        raise ValueError(
            f"{len(never)} neuron(s) have no observed response (all NaN, or of zero weight): "
            f"columns {never[:10].tolist()}{' ...' if len(never) > 10 else ''}; drop them."
        )
    return observed


def _check_folds(observed, sample_weight, splits) -> None:
    """Every neuron observed in every training part; every test part observed somewhere."""
    usable = observed if sample_weight is None else observed & (sample_weight[:, None] > 0)
    for fold, (train, test) in enumerate(splits):
        neurons = np.flatnonzero(~usable[train].any(axis=0))
        if len(neurons):
            raise ValueError(
                f"Fold {fold} has no observed training response (of positive weight) for "
                f"neuron(s) {neurons[:10].tolist()}: PoissonGLM cannot be fitted on a "
                "neuron it never observed. Use folds whose training parts hold every "
                "neuron's sessions (e.g. shuffled KFold, not GroupKFold over sessions)."
            )
        if not observed[test].any():
            raise ValueError(
                f"Fold {fold} has no observed held-out response (all NaN): it cannot be "
                "scored."
            )


def _held_out_means(log_prob: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-neuron and overall means of held-out log-likelihoods over observed entries.

    ``log_prob`` holds NaN at missing responses. A neuron with no observed
    entry gets NaN; the overall mean weighs every observed entry equally
    (``PoissonGLM.score``) and is NaN when nothing was observed.
    """
    observed = ~np.isnan(log_prob)
    total = np.where(observed, log_prob, 0.0)
    count = observed.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_neuron = np.where(count > 0, total.sum(axis=0) / count, np.nan)
        overall = total.sum() / count.sum() if count.sum() else np.nan
    return per_neuron, float(overall)


def _newton_in_place(
    Xt, Y, M, W, b, family, link, log_normalizer, l2, penalty, fit_intercept, max_iter, tol
):
    """Solve every (fold, neuron) problem by Newton; write the result into W and b."""
    n, p = Xt.shape
    dtype = Xt.dtype
    design = torch.cat([torch.ones(n, 1, dtype=dtype), Xt], dim=1) if fit_intercept else Xt
    pen = torch.ones(p, dtype=dtype) if penalty is None else penalty
    if fit_intercept:
        pen = torch.cat([torch.zeros(1, dtype=dtype), pen])
    with torch.no_grad():
        theta = torch.cat([b[:, None], W], dim=1) if fit_intercept else W.detach().clone()

    def loss(eta):
        return family.training_loss(Y, eta, link, None, log_normalizer)

    theta = batched_glm_newton(design, loss, M, theta, l2 * pen, max_iter=max_iter, tol=tol)
    with torch.no_grad():
        if fit_intercept:
            b.copy_(theta[:, 0])
            W.copy_(theta[:, 1:])
        else:
            W.copy_(theta)
