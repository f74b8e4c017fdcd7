"""Generalised linear encoding model (Poisson GLM and friends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from . import _glm_inference
from ._base import BaseEncoder, resolve_device
from ._solvers import BatchedFISTA, BatchedLBFGS, LinearGLMObjective
from .distributions import get_family
from .nn import LinearPredictor
from .utils._threads import limits_threads

__all__ = ["PoissonGLM"]

# floor of the per-neuron response scale of the gradient test (a silent neuron)
_MIN_RESPONSE_SCALE = 1e-8
# features whose RMS is below this fraction of the largest are numerically zero
_MIN_RELATIVE_FEATURE_SCALE = 1e-12
# float64 fits whose passes over the data cost at least this many
# multiply-adds (samples x features x neurons) get a float32 copy of the design
# for the solver's first phase and a Newton first step; smaller fits are
# dominated by fixed costs and keep their float64 steps exactly (sample-weight
# equivalence to round-off included). Designs up to _MAX_FLOAT32_TWIN_BYTES only (the copy
# holds half their size during the fit).
_FLOAT32_TWIN_MIN_WORK = 2**20
_MAX_FLOAT32_TWIN_BYTES = 8 * 2**30


class _ObjectiveSlot:
    """The structured closure of one fit; pickles empty (never the training data)."""

    def __init__(self) -> None:
        self.function = None
        self.fast = None  # a float32 twin of ``function`` for float64 data
        # builds (predictor, function) for a subset of the neurons
        self.restrict = None

    def __getstate__(self) -> dict:
        return {"function": None, "fast": None, "restrict": None}

    def clear(self) -> None:
        """Drop the closures (and with them the training data they hold)."""
        self.function = self.fast = self.restrict = None


@dataclass
class _GLMFitState:
    """The scratch state of one :meth:`PoissonGLM.fit`, made once from its data.

    ``PoissonGLM._prepare_fit`` builds it from the validated ``X`` and ``y``
    (:meth:`PoissonGLM._make_fit_state`) and keeps it in ``_fit_state``, the
    one attribute a fit leaves between its steps; ``fit`` deletes it in a
    ``finally`` (a fitted model holds none of it). ``_build_predictor`` and
    ``_net_params`` (hooks whose signatures ``BaseEncoder`` fixes) read it
    there; the helpers they call receive it as an argument. Only
    ``objective`` is filled later: ``_build_predictor`` puts in it the
    structured closures, which wrap the predictor it builds.
    """

    # as given to ``fit``: the solver's scales and the structured closure are
    # weighted like the likelihood, and the closure adds the offset
    sample_weight: object
    offset: object
    # validated ``penalty_weights`` (float) and ``groups`` (integer codes)
    penalty_weights: np.ndarray | None
    group_codes: np.ndarray | None
    # the solver's units-free coordinates: coefficients times ``feature_scale``
    # (each feature's RMS), gradient tested relative to ``response_scale``
    feature_scale: np.ndarray
    response_scale: np.ndarray
    # column sums of squares of ``X`` (the float32 twin's rounding bounds)
    sum_squares: np.ndarray
    # whether the structured closure computes this fit's objective, and
    # whether a float32 first phase serves it (then with a Newton first step
    # from the curvature at the null model)
    structured: bool
    float32_twin: bool
    null_curvature: np.ndarray | None
    # the structured closures, read by the optimizer, emptied after the fit
    objective: _ObjectiveSlot = field(default_factory=_ObjectiveSlot)


class _StructuredStep:
    """Mixin: ``step`` evaluates the slot's :class:`LinearGLMObjective` when one is set.

    The net's generic closure differentiates the whole graph (predictor and
    loss); for a linear predictor the structured closure computes the same
    objective and gradient with one matrix product per pass over ``X``.
    """

    def __init__(self, params, objective: _ObjectiveSlot | None = None, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.objective = objective

    def step(self, closure):
        function = getattr(self.objective, "function", None)
        return super().step(closure if function is None else function)


class _GLMLBFGS(_StructuredStep, BatchedLBFGS):
    """:class:`BatchedLBFGS` with the structured GLM closure, float32 first for float64 data.

    When the slot also holds a float32 twin of the closure (``fast``), the
    solver first runs on it: its passes over ``X`` cost half the memory
    traffic (a third of the time for a population's matrix products), and its
    gradient test allows for float32 rounding (see
    :class:`~sklearn_cnnenc._solvers.LinearGLMObjective`), so what it accepts
    meets ``tol`` in exact arithmetic too. Problems it cannot decide (a
    ``tol`` below float32's resolution, sparse spikes, a stalled objective)
    are finished in float64 from where it stopped.
    """

    def step(self, closure):
        fast = getattr(self.objective, "fast", None)
        if fast is None or getattr(self.objective, "function", None) is None:
            return super().step(closure)
        # the objective test at float32's last bits only: a larger decrease is
        # progress the float64 phase would otherwise have to make
        with _options(self, ftol=lambda ftol: fast.eps / 4 if ftol is None else ftol):
            objective = BatchedLBFGS.step(self, fast)
        first = dict(self.state)
        # both phases share max_iter; a float32 stall is no float64 convergence
        left = self.defaults["max_iter"] - first["n_iter_total"]
        if bool(first["by_gradient"].all()) or left <= 0:
            self.state["converged"] = first["by_gradient"]
            return objective
        restrict = getattr(self.objective, "restrict", None)
        todo = torch.nonzero(~first["by_gradient"]).squeeze(1)
        if restrict is None or len(todo) == len(first["by_gradient"]):
            with _options(self, max_iter=lambda _: left):
                objective = super().step(closure)
            self.state["n_iter"] = self.state["n_iter"] + first["n_iter"]
        else:
            # only the undecided neurons pay for float64 passes
            objective = objective.clone()
            objective[todo] = self._finish_subset(restrict, todo, left)
            self.state["n_iter"] = first["n_iter"].clone()
            self.state["n_iter"][todo] += self._subset_state["n_iter"]
            self.state["converged"] = first["by_gradient"].clone()
            self.state["converged"][todo] = self._subset_state["converged"]
            self.state["failed"] = first["failed"].clone()
            self.state["failed"][todo] = self._subset_state["failed"]
            self.state["by_gradient"] = first["by_gradient"].clone()
            self.state["by_gradient"][todo] = self._subset_state["by_gradient"]
            self.state["n_evals"] = self._subset_state["n_evals"]
            del self._subset_state
        self.state["n_iter_total"] = int(self.state["n_iter"].max())
        self.state["n_evals"] += first["n_evals"]
        return objective

    def _finish_subset(self, restrict, rows: torch.Tensor, max_iter: int) -> torch.Tensor:
        """Run the float64 phase on the problems ``rows`` alone; write them back."""
        predictor, objective = restrict(rows.numpy())
        originals = list(self.objective.function.predictor.parameters())
        copies = dict(zip(map(id, originals), predictor.parameters(), strict=True))
        # per-problem options, indexed once (the groups must share them)
        shared = {
            key: value[rows]
            for key in ("tol_scale", "curvature")
            if torch.is_tensor(value := self.param_groups[0].get(key)) and value.dim() == 1
        }
        groups = []
        for group in self.param_groups:
            sub = {key: value for key, value in group.items() if key != "params"}
            sub.update(shared, params=[copies[id(p)] for p in group["params"]])
            sub["max_iter"] = max_iter
            groups.append(sub)
        optimizer = BatchedLBFGS(groups)
        value = optimizer.step(objective)
        with torch.no_grad():
            for original, copy in zip(originals, predictor.parameters(), strict=True):
                original[rows] = copy
        self._subset_state = optimizer.state
        return value


class _options:
    """Context manager: temporarily map parameter-group options of an optimizer."""

    def __init__(self, optimizer, **maps) -> None:
        self.groups = optimizer.param_groups
        self.maps = maps
        self.saved: list = []

    def __enter__(self) -> None:
        for group in self.groups:
            self.saved.append({name: group[name] for name in self.maps})
            for name, function in self.maps.items():
                group[name] = function(group[name])

    def __exit__(self, *exc) -> None:
        for group, saved in zip(self.groups, self.saved, strict=True):
            group.update(saved)


class _GLMFISTA(_StructuredStep, BatchedFISTA):
    """:class:`BatchedFISTA` with the structured GLM closure."""


class PoissonGLM(BaseEncoder):
    """Generalised linear encoding model, fitted by penalised maximum likelihood.

    The rate of each neuron is an inverse link of a linear function of the
    features, ``E[y_k | x] = g^-1(x @ w_k + b_k)``, and the coefficients
    minimise, for every neuron separately,

    .. math::

        \\frac{1}{\\sum_i s_i} \\sum_i s_i \\, \\mathrm{NLL}(y_{ik} \\mid x_i)
        + \\alpha \\rho \\, \\|w_k\\|_1 + \\frac{\\alpha (1 - \\rho)}{2} \\|w_k\\|_2^2

    with sample weights ``s``, ``alpha`` = :math:`\\alpha` and ``l1_ratio`` =
    :math:`\\rho`. For the Poisson family the mean NLL equals half the mean
    deviance plus a constant, so at ``l1_ratio=0`` the solution is the one of
    :class:`sklearn.linear_model.PoissonRegressor` at the same ``alpha``, and
    with ``l1_ratio > 0`` the one of glum's ``GeneralizedLinearRegressor``.
    The intercept is never penalised.

    ``penalty_weights`` (glum's ``P1``/``P2``) scales both penalty terms per
    feature: :math:`\\alpha \\rho \\sum_j p_j |w_{kj}| + \\frac{\\alpha (1 - \\rho)}{2}
    \\sum_j p_j w_{kj}^2`, where :math:`p_j = 0` leaves feature ``j``
    unpenalised. ``groups`` turns the L1 term into the group lasso
    :math:`\\alpha \\rho \\sum_g p_g \\sqrt{|g|} \\, \\|w_{kg}\\|_2`
    (Yuan & Lin 2006), which sets whole groups (all lags of one covariate, all
    basis functions of one tuning curve) exactly to zero; it is minimised by
    proximal gradient steps (block soft-thresholding, ``solver="fista"``).

    A population ``y`` of shape ``(n_samples, n_neurons)`` is fitted in one
    batched solve in which every neuron keeps its own quasi-Newton history,
    step sizes and convergence test: each neuron's coefficients are those a
    single-neuron fit would give.

    Parameters
    ----------
    alpha : float, default=1.0
        Penalty strength, on the scale of scikit-learn's ``PoissonRegressor``.
    l1_ratio : float, default=0.0
        Elastic-net mixing: 0 is ridge, 1 is lasso. Values above 0 give exact
        zeros and need a solver for non-smooth penalties.
    family : str or Family, default="poisson"
        Observation family: ``"poisson"``, ``"gaussian"``, ``"bernoulli"``,
        ``"negative_binomial"``, ``"gamma"``, a name given to
        :func:`~sklearn_cnnenc.distributions.register_family`, or a
        :class:`~sklearn_cnnenc.distributions.Family`. The Gaussian noise
        variance, the gamma shape and the negative binomial over-dispersion
        are fitted (``dispersion_``).
    link : {"auto", "exp", "softplus", "elu1", "identity", "logit"}, default="auto"
        Inverse link; ``"auto"`` is the family's canonical choice (``"exp"``
        for counts and gamma, ``"identity"`` for the Gaussian, ``"logit"``
        for binary).
    fit_intercept : bool, default=True
    groups : array-like of shape (n_features,), default=None
        Group label of every feature (ints or strings). With ``l1_ratio > 0``
        the L1 part becomes the group-lasso penalty; a feature alone in its
        group is an ordinary lasso coordinate. Needs ``solver="fista"`` (what
        ``"auto"`` picks when ``groups`` is given).
    penalty_weights : array-like of shape (n_features,), default=None
        Non-negative per-feature factors of both penalty terms (0 leaves the
        feature unpenalised). With ``groups`` they must be constant within
        each group. ``None`` means all ones.
    solver : {"auto", "lbfgs", "owlqn", "fista"}, default="auto"
        ``"lbfgs"``: batched L-BFGS for smooth penalties (``l1_ratio=0``).
        ``"owlqn"``: orthant-wise L-BFGS, exact for L1 (Andrew & Gao 2007).
        ``"fista"``: accelerated proximal gradient (Beck & Teboulle 2009).
        ``"auto"`` picks ``"lbfgs"`` without L1, ``"owlqn"`` with it and
        ``"fista"`` for the group lasso.
    max_iter : int, default=1000
        Maximum number of solver iterations.
    tol : float, default=1e-4
        Stop when the largest absolute (pseudo-)gradient entry of a neuron's
        objective, with respect to the coefficients times the feature RMS
        (units-free), is below ``tol`` times the neuron's response scale (its
        mean response, the standard deviation for the Gaussian, at most 1),
        or when the objective stops decreasing at machine precision. So the
        same ``tol`` fits features in any units, and sparse spikes, to the
        optimum. Large float64 fits (``n_samples * n_features * n_neurons``
        of at least 2**20) with ``solver="lbfgs"``/``"owlqn"`` first iterate
        on a float32 copy of ``X`` (half its size, held during the fit) from
        a Newton first step, with a gradient test that allows for float32
        rounding; the neurons that test cannot decide are finished in
        float64, so the fitted optimum is the float64 one.
    warm_start : bool, default=False
        Start from the previous solution when ``fit`` is called again.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"``.
    random_state : int, RandomState instance or None, default=None
        Unused by the convex solvers (they start at zero); kept so that all
        estimators of the library share one interface.
    verbose : int, default=0
        Print the training table of skorch when positive.
    missing_responses : {"raise", "mask"}, default="raise"
        What a NaN in ``y`` means. ``"raise"``: an error. ``"mask"``: a
        response that was not recorded (another session's neuron): NaN
        entries drop out of the training likelihood (each neuron's loss is
        its mean negative log-likelihood over its own observed entries), the
        validation loss, the starting intercepts, ``score`` (mean over
        observed entries) and ``log_likelihood`` (NaN there); a neuron
        never observed is a ValueError. Memory: the mask is derived from the
        NaNs per batch (1 byte per entry, transient); ``y`` is not copied to
        float64: 7 sessions x 6,000 trials x 8,000 neurons in float32 take
        1.3 GB, 1.7 GB with the mask.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_neurons, n_features)
        Coefficients of the linear predictor.
    intercept_ : float or ndarray of shape (n_neurons,)
    dispersion_ : ndarray of shape (n_neurons,) or (n_neurons, 2), or None
        Fitted noise variance (Gaussian), over-dispersion (negative binomial),
        ``1 / shape`` (gamma), or ``(q, 1 / shape)`` per neuron (zig).
    mean_response_ : ndarray of shape (n_neurons,)
        Mean training response of each neuron (for null models).
    n_iter_ : int
        Iterations used by the slowest neuron.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.
    n_outputs_ : int
    family_ : Family
    link_ : Link
    module_ : EncodingModule
        The fitted torch module (see :attr:`BaseEncoder.module_`); it takes
        ``as_tensor(X)``, of shape ``(n_samples, *sample_shape_)``.
    sample_shape_ : tuple of int
        Shape of one sample as ``module_`` takes it, here ``(n_features,)``.
    net_ : EncoderNet
        The fitted skorch net that trained ``module_``.
    history_ : skorch.History

    See Also
    --------
    LNModel : linear-nonlinear cascade with several filters.
    CNNEncoder : convolutional encoding model.
    sklearn.linear_model.PoissonRegressor : the single-neuron reference.

    Notes
    -----
    The scratch state of a fit (the solver's feature and response scales,
    the validated penalty structure, the structured closures of the data)
    lives in one private ``_GLMFitState`` that the fit makes once from the
    validated data and deletes when it ends: a fitted model keeps none of it.

    References
    ----------
    .. [1] Pillow, J. W. et al. (2008). Spatio-temporal correlations and visual
       signalling in a complete neuronal population. Nature 454, 995-999.
    .. [2] Andrew, G. & Gao, J. (2007). Scalable training of L1-regularized
       log-linear models. ICML.

    Examples
    --------
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> data = make_glm_data(n_samples=2000, n_features=5, n_neurons=3, random_state=0)
    >>> model = PoissonGLM(alpha=1e-4).fit(data.X, data.y)
    >>> model.coef_.shape
    (3, 5)
    >>> bool(abs(model.coef_ - data.coef).max() < 0.2)
    True
    """

    _parameter_constraints: dict = {
        **BaseEncoder._parameter_constraints,
        "alpha": [Interval(Real, 0.0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0.0, 1.0, closed="both")],
        "fit_intercept": ["boolean"],
        "groups": ["array-like", None],
        "penalty_weights": ["array-like", None],
        "solver": [StrOptions({"auto", "lbfgs", "owlqn", "fista"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        alpha: float = 1.0,
        l1_ratio: float = 0.0,
        *,
        family: str = "poisson",
        link: str = "auto",
        fit_intercept: bool = True,
        groups=None,
        penalty_weights=None,
        solver: str = "auto",
        max_iter: int = 1000,
        tol: float = 1e-4,
        warm_start: bool = False,
        device: str = "cpu",
        random_state=None,
        verbose: int = 0,
        missing_responses: str = "raise",
    ) -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.family = family
        self.link = link
        self.fit_intercept = fit_intercept
        self.groups = groups
        self.penalty_weights = penalty_weights
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.missing_responses = missing_responses

    @limits_threads
    def fit(self, X, y, sample_weight=None, offset=None, behavior=None, eye_position=None):
        """Fit the model by penalised maximum likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like of shape (n_samples,) or (n_samples, n_neurons), optional
            Fixed term added to the linear predictor (e.g. log exposure).
        behavior, eye_position : None
            Not taken by a GLM (a ValueError says so): with the exp link a
            behaviour gain is a linear term, a column of ``X``.

        Returns
        -------
        self : object
        """
        try:
            return super().fit(
                X, y, sample_weight=sample_weight, offset=offset, behavior=behavior,
                eye_position=eye_position,
            )
        finally:
            # the fit's scratch state (set by _prepare_fit): the fitted net
            # keeps the empty objective slot, never the training data
            state = self.__dict__.pop("_fit_state", None)
            if state is not None:
                state.objective.clear()

    def _prepare_fit(self, X, y, sample_weight, offset, behavior=None, eye_position=None):
        """The base's phase 1, then this fit's scratch state (:class:`_GLMFitState`)."""
        problem = super()._prepare_fit(X, y, sample_weight, offset, behavior, eye_position)
        # the one home of this fit's scratch state, read by the later hooks
        self._fit_state = self._make_fit_state(
            problem.X, problem.y_2d, problem.dtype, sample_weight, offset
        )
        return problem

    def __setstate__(self, state):
        # pickled when the scratch state of the fit outlived it as attributes
        for name in (
            "_penalty_weights", "_group_codes", "_feature_scale", "_response_scale",
            "_null_curvature",
        ):
            state.pop(name, None)
        super().__setstate__(state)

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        # no layout copy: the structured closure's products are as fast on the
        # caller's row-major design (measured in CPU time, benchmarks/bench_glm.py)
        return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])

    def _penalty_structure(self, n_features: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Validated ``penalty_weights`` (float) and ``groups`` (integer codes)."""
        weights = None
        if self.penalty_weights is not None:
            weights = np.asarray(self.penalty_weights, dtype=float)
            if weights.shape != (n_features,):
                raise ValueError(
                    f"penalty_weights must have shape ({n_features},), one factor per "
                    f"feature; got shape {weights.shape}."
                )
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError("penalty_weights must be finite and non-negative.")
        codes = None
        if self.groups is not None:
            labels = np.asarray(self.groups)
            if labels.shape != (n_features,):
                raise ValueError(
                    f"groups must have shape ({n_features},), one label per feature; "
                    f"got shape {labels.shape}."
                )
            _, codes = np.unique(labels, return_inverse=True)
            if weights is not None:
                first = np.zeros(codes.max() + 1)
                first[codes] = weights
                if np.any(first[codes] != weights):
                    raise ValueError("penalty_weights must be constant within each group.")
        return weights, codes

    def _make_fit_state(self, X, y, dtype, sample_weight, offset) -> _GLMFitState:
        """The scratch state of a fit on the validated ``X`` and ``y`` (2-D) in ``dtype``."""
        penalty_weights, group_codes = self._penalty_structure(X.shape[1])
        # units-free convergence: the solver works on coefficients times the
        # feature RMS (a diagonal preconditioner; the fitted coefficients stay
        # in the user's units) and tests the gradient relative to each
        # neuron's response scale (its mean rate for counts and binary
        # responses, its standard deviation for the Gaussian); both are
        # weighted like the likelihood (repeated samples and integer weights
        # give the same fit)
        weight = sample_weight
        # one pass over X: the column sums of squares (the float32 twin's
        # rounding bounds use them too)
        sum_squares = np.einsum("ij,ij->j", X, X, dtype=np.float64)
        if weight is None:
            weight = np.ones(len(X))
            total = float(len(X))
            rms = np.sqrt(sum_squares / total)
        else:
            weight = np.asarray(weight, dtype=np.float64).reshape(-1)
            total = max(weight.sum(), np.finfo(float).tiny)
            rms = np.sqrt(np.einsum("i,ij,ij->j", weight, X, X, dtype=np.float64) / total)
        # a column numerically zero next to the others (e.g. sin(pi) = 1e-16)
        # keeps unit scale: rescaling it by 1e-16 would make any penalty on its
        # coefficient 1e32 times stiffer than the likelihood
        usable = np.isfinite(rms) & (rms > _MIN_RELATIVE_FEATURE_SCALE * np.max(rms, initial=0.0))
        family = get_family(self.family)
        if family.has_dispersion and not family.non_negative:  # a location family
            # (Gaussian-like): the response scale is the spread, not the level
            mean = weight @ y / total
            response = np.sqrt(weight @ (y - mean) ** 2 / total)
        else:
            response = weight @ np.abs(y) / total
        structured = not (
            not isinstance(X, np.ndarray)
            or family.trains_dispersion
            or resolve_device(self.device).type != "cpu"
            # missing responses: the generic closure, whose criterion masks them
            or (self._mask_missing and np.isnan(y).any())
        )
        # the large-fit path (small fits keep their float64 steps exactly)
        float32_twin = structured and self._float32_twin_fits(
            X, y, sum_squares, dtype, offset
        )
        return _GLMFitState(
            sample_weight=sample_weight,
            offset=offset,
            penalty_weights=penalty_weights,
            group_codes=group_codes,
            feature_scale=np.where(usable, rms, 1.0),
            # never looser than scikit-learn's absolute test (responses above 1)
            response_scale=np.clip(response, _MIN_RESPONSE_SCALE, 1.0),
            sum_squares=sum_squares,
            structured=structured,
            float32_twin=float32_twin,
            null_curvature=(
                self._curvature_at_null(family, y, weight / total) if float32_twin else None
            ),
        )

    def _build_predictor(self, X, y, dtype):
        state = self._fit_state
        predictor = LinearPredictor(
            X.shape[1],
            y.shape[1],
            fit_intercept=self.fit_intercept,
            l2=self.alpha * (1.0 - self.l1_ratio),
            dtype=dtype,
            penalty_weights=(
                None
                if state.penalty_weights is None
                else torch.as_tensor(state.penalty_weights)
            ),
        )
        slot = state.objective
        slot.function = self._structured_objective(state, predictor, X, y, dtype)
        if slot.function is not None and state.float32_twin:
            slot.fast = self._structured_objective(state, predictor, X, y, torch.float32)
            slot.fast._column_norms = torch.as_tensor(np.sqrt(state.sum_squares))
            if y.shape[1] > 1:
                slot.restrict = self._restricted_objective(state, predictor, X, y, dtype)
        return predictor

    def _restricted_objective(self, state: _GLMFitState, predictor, X, y, dtype):
        """A builder of the structured float64 closure for a subset of the neurons."""

        def restrict(columns: np.ndarray):
            sub = LinearPredictor(
                X.shape[1],
                len(columns),
                fit_intercept=self.fit_intercept,
                l2=predictor.l2,
                dtype=dtype,
                penalty_weights=predictor.penalty_weights,
            )
            with torch.no_grad():
                sub.weight.copy_(predictor.weight[columns])
                if sub.bias is not None:
                    sub.bias.copy_(predictor.bias[columns])
            return sub, self._structured_objective(state, sub, X, y, dtype, columns)

        return restrict

    def _curvature_at_null(self, family, y, weight) -> np.ndarray | None:
        """Mean second derivative of each neuron's loss at its null model (shape (K,)).

        In the solver's scaled coordinates (features of unit RMS) this is the
        curvature of the objective at the start for an uncorrelated design
        (for the Poisson with exp link: the mean rate), so the first L-BFGS
        step is a Newton step instead of a short probe. Observed on at most
        ~4,096 evenly spaced rows, a deterministic subsample.
        """
        if family.trains_dispersion or (self._mask_missing and np.isnan(y).any()):
            return None  # (the loss needs the dispersion; masked entries have no value)
        try:
            link = family.check_link(
                self._default_link(family) if self.link == "auto" else self.link,
                predictor_nonnegative=self._predictor_nonnegative(),
            )
            eta0, _ = self._starting_values(family, link, y, None, weight @ y)
            rows = slice(None, None, max(1, len(y) // 4096))
            Y = torch.as_tensor(y[rows], dtype=torch.float64)
            eta = torch.as_tensor(eta0, dtype=torch.float64).expand_as(Y).clone()
            eta.requires_grad_(True)
            with torch.enable_grad():
                loss = family.training_loss(Y, eta, link, None, family.log_normalizer(Y))
                (first,) = torch.autograd.grad(loss.sum(), eta, create_graph=True)
                (second,) = torch.autograd.grad(first.sum(), eta)
        except (RuntimeError, ValueError, TypeError, AttributeError):  # no estimate
            return None
        return second.mean(dim=0).numpy()

    def _float32_twin_fits(self, X, y, sum_squares, dtype, offset) -> bool:
        """Whether a float32 first phase can serve this float64 fit.

        Only for the L-BFGS family of solvers (whose gradient test allows for
        the rounding), for fits large enough that the passes over the data
        dominate (``_FLOAT32_TWIN_MIN_WORK``), and only where float32
        represents the data: no entry
        overflows (each is at most its column's norm) and no non-zero column
        sinks into float32's subnormal range.
        """
        if dtype != torch.float64 or self._solver_name() not in ("lbfgs", "owlqn"):
            return False
        if X.size * y.shape[1] < _FLOAT32_TWIN_MIN_WORK:
            return False
        f32 = np.finfo(np.float32)
        norms = np.sqrt(sum_squares)
        if not np.all(norms < f32.max / 16) or np.any((norms > 0) & (norms < f32.tiny * 1e6)):
            return False
        if X.size and X.nbytes > _MAX_FLOAT32_TWIN_BYTES:
            return False
        def largest(a) -> float:  # max |a| without an |a| temporary
            a = np.asarray(a, dtype=float)
            return max(float(a.max(initial=0.0)), -float(a.min(initial=0.0)))

        big = largest(y)
        if offset is not None:
            big = max(big, largest(offset))
        return bool(big < f32.max / 16)

    def _structured_objective(
        self, state: _GLMFitState, predictor, X, y, dtype, columns=None
    ) -> LinearGLMObjective | None:
        """The structured closure of this fit, or None where the generic one is needed.

        It computes exactly the objective of the net's closure (the family's
        training loss, weighted like :class:`~sklearn_cnnenc.training.NegativeLogLikelihood`,
        plus the ridge term) for in-memory data on the CPU and families without a
        trained dispersion and no missing responses (``state.structured``).
        """
        if not state.structured:
            return None
        family = get_family(self.family)
        link = family.check_link(
            self._default_link(family) if self.link == "auto" else self.link,
            predictor_nonnegative=self._predictor_nonnegative(),
        )
        if dtype == torch.float32 and X.dtype == np.float64:
            # the float32 twin: one row-major copy whatever the caller's layout,
            # so that its rounding (and so the fit) does not depend on it
            # (numpy's cast: measured several times faster than torch's copy here)
            X_t = torch.from_numpy(X.astype(np.float32, order="C"))
        else:
            X_t = torch.as_tensor(X, dtype=dtype)
        Y = torch.as_tensor(y if columns is None else y[:, columns], dtype=dtype)
        normalizer: list = []  # computed at the first call (a float64 finish may never come)

        def log_normalizer():
            if not normalizer:
                normalizer.append(family.log_normalizer(Y))
            return normalizer[0]

        def loss(eta: torch.Tensor) -> torch.Tensor:
            return family.training_loss(Y, eta, link, None, log_normalizer())

        def closed_form(eta: torch.Tensor):
            return family.loss_and_derivative(Y, eta, link, log_normalizer())

        weight = state.sample_weight
        sample_weight = None
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64).reshape(-1)
            if not np.all(weight == weight[0]):  # as BaseEncoder._to_tensors: mean 1
                sample_weight = torch.as_tensor(weight / weight.mean(), dtype=dtype)
        offset = self._validate_offset(state.offset, y.shape, X.dtype)
        if offset is not None:
            if columns is not None and offset.shape[1] > 1:
                offset = offset[:, columns]
            offset = torch.as_tensor(offset, dtype=dtype)
        return LinearGLMObjective(predictor, X_t, loss, sample_weight, offset, closed_form)

    def _solver_name(self) -> str:
        l1 = self.alpha * self.l1_ratio
        grouped = self.groups is not None and l1 > 0
        solver = self.solver
        if solver == "auto":
            solver = "fista" if grouped else "owlqn" if l1 > 0 else "lbfgs"
        if solver == "lbfgs" and l1 > 0:
            raise ValueError(
                "solver='lbfgs' cannot minimise an L1 penalty (alpha * l1_ratio > 0); "
                "use solver='owlqn' or 'fista'."
            )
        if grouped and solver != "fista":
            raise ValueError(
                f"solver={solver!r} cannot minimise the group-lasso penalty (groups with "
                "alpha * l1_ratio > 0); use solver='fista' or 'auto'."
            )
        return solver

    def _net_params(self, n_samples: int) -> dict:
        l1 = self.alpha * self.l1_ratio
        solver = self._solver_name()
        state = self._fit_state
        group_options: dict = {"l1": l1}
        if state.penalty_weights is not None and l1 > 0:
            group_options["l1"] = torch.as_tensor(l1 * state.penalty_weights)
        if self.groups is not None and l1 > 0:
            group_options["groups"] = torch.as_tensor(state.group_codes)
        else:
            # a group norm is not separable over coordinates: no rescaling there
            group_options["scale"] = torch.as_tensor(state.feature_scale)
        return {
            "optimizer": _GLMFISTA if solver == "fista" else _GLMLBFGS,
            "optimizer__objective": state.objective,
            "optimizer__max_iter": self.max_iter,
            "optimizer__tol": self.tol,
            "optimizer__tol_scale": torch.as_tensor(state.response_scale),
            **(
                {}
                if solver == "fista" or state.null_curvature is None
                else {"optimizer__curvature": torch.as_tensor(state.null_curvature)}
            ),
            "optimizer__param_groups": [("predictor.weight", group_options)],
            "lr": 1.0,
            "max_epochs": 1,
            "batch_size": -1,
            "train_split": None,
        }

    def _set_fitted_attributes(self) -> None:
        predictor = self.module_.predictor
        coef = predictor.weight.detach().cpu().double().numpy().copy()
        if predictor.bias is None:
            intercept = np.zeros(self.n_outputs_)
        else:
            intercept = predictor.bias.detach().cpu().double().numpy().copy()
        if self._y_ndim == 1:
            self.coef_, self.intercept_ = coef[0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef, intercept

    # ------------------------------------------------------------ inference
    def covariance_matrix(
        self, X, y, *, sample_weight=None, offset=None, robust: bool = False
    ) -> np.ndarray:
        """Asymptotic covariance matrix of the intercept and coefficients.

        The inverse expected Fisher information at the fitted coefficients
        (statsmodels' ``GLM`` convention), or with ``robust=True`` the HC0
        sandwich ``H^-1 B H^-1`` (statsmodels' ``cov_type="HC0"``). Sample
        weights are frequency weights; the Gaussian noise variance is the
        Pearson estimate with a degrees-of-freedom correction.

        Under a ridge penalty the numbers describe the penalised estimator
        (the sandwich with the penalised Hessian, around its own shrunken
        mean, so intervals are not calibrated for the true coefficients);
        with an L1, elastic-net or group-lasso penalty a ``ValueError`` is
        raised, as such estimators have no smooth sampling distribution.
        See :mod:`sklearn_cnnenc._glm_inference` for the details.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data the model was fitted on (or data from the same design).
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like of shape (n_samples,) or (n_samples, n_neurons), optional
        robust : bool, default=False
            Heteroscedasticity-consistent (HC0) sandwich covariance.

        Returns
        -------
        cov : ndarray of shape (n_params, n_params) or (n_neurons, n_params, n_params)
            ``n_params = n_features + 1`` with the intercept first
            (``n_features`` without an intercept).

        Examples
        --------
        >>> from sklearn_cnnenc import PoissonGLM
        >>> from sklearn_cnnenc.datasets import make_glm_data
        >>> data = make_glm_data(n_samples=500, n_features=2, n_neurons=1, random_state=0)
        >>> y = data.y.ravel()
        >>> PoissonGLM(alpha=0.0).fit(data.X, y).covariance_matrix(data.X, y).shape
        (3, 3)
        """
        return _glm_inference.covariance_matrix(
            self, X, y, sample_weight=sample_weight, offset=offset, robust=robust
        )

    def std_errors(
        self, X, y, *, sample_weight=None, offset=None, robust: bool = False
    ) -> np.ndarray:
        """Standard errors of the intercept and coefficients (intercept first).

        The square roots of the diagonal of :meth:`covariance_matrix`; see
        there for the conventions and what they mean under a penalty.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like, optional
        robust : bool, default=False
            HC0 sandwich standard errors.

        Returns
        -------
        se : ndarray of shape (n_features + 1,) or (n_neurons, n_features + 1)

        Examples
        --------
        >>> from sklearn_cnnenc import PoissonGLM
        >>> from sklearn_cnnenc.datasets import make_glm_data
        >>> data = make_glm_data(n_samples=500, n_features=2, n_neurons=3, random_state=0)
        >>> PoissonGLM(alpha=0.0).fit(data.X, data.y).std_errors(data.X, data.y).shape
        (3, 3)
        """
        return _glm_inference.std_errors(
            self, X, y, sample_weight=sample_weight, offset=offset, robust=robust
        )

    def coef_table(
        self,
        X,
        y,
        *,
        sample_weight=None,
        offset=None,
        robust: bool = False,
        confidence_level: float = 0.95,
    ):
        """Coefficients with standard errors, Wald z statistics, p-values and intervals.

        Needs pandas (``pip install sklearn-cnnenc[pandas]``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like, optional
        robust : bool, default=False
            HC0 sandwich standard errors.
        confidence_level : float, default=0.95
            Coverage of the Wald intervals ``coef ± z * se``.

        Returns
        -------
        table : pandas.DataFrame
            Columns ``coef, se, z, p_value, ci_lower, ci_upper``; one row per
            parameter (``intercept``, then ``feature_names_in_`` or ``x0``,
            ``x1``, ...), under a ``neuron`` index level for a population.

        Examples
        --------
        >>> from sklearn_cnnenc import PoissonGLM
        >>> from sklearn_cnnenc.datasets import make_glm_data
        >>> data = make_glm_data(n_samples=500, n_features=2, n_neurons=1, random_state=0)
        >>> y = data.y.ravel()
        >>> table = PoissonGLM(alpha=0.0).fit(data.X, y).coef_table(data.X, y)
        >>> list(table.index)
        ['intercept', 'x0', 'x1']
        >>> list(table.columns)
        ['coef', 'se', 'z', 'p_value', 'ci_lower', 'ci_upper']
        """
        return _glm_inference.coef_table(
            self,
            X,
            y,
            sample_weight=sample_weight,
            offset=offset,
            robust=robust,
            confidence_level=confidence_level,
        )
