"""Linear-nonlinear (LN) cascade encoding model, with filter banks and energy models."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from ._base import BaseEncoder, _FitProblem
from ._solvers import BatchedLBFGS
from .families import get_family
from .nn import FilterBankPredictor
from .nn.ln import NONLINEARITIES

__all__ = ["LNModel"]


class LNModel(BaseEncoder):
    """Linear-nonlinear cascade (LN / LNP model) with a bank of filters.

    Each neuron's stimulus is passed through ``n_filters`` linear filters
    ``h_j``, a pointwise ``nonlinearity`` f, summed with output weights
    ``w_j`` and passed through the inverse link g^-1:

    .. math::

        E[y \\mid x] = g^{-1}\\Big(b + \\sum_j w_j f(h_j \\cdot x + c_j)\\Big)

    and the parameters minimise, for every neuron separately,

    .. math::

        \\frac{1}{\\sum_i s_i} \\sum_i s_i \\, \\mathrm{NLL}(y_i \\mid x_i)
        + \\frac{\\alpha}{2} \\Big(\\sum_j \\|h_j\\|^2 + \\|w\\|^2 + \\|c\\|^2\\Big)
        + \\frac{\\lambda}{2} \\sum_j \\sum_{\\text{axes}} \\|D^2 h_j\\|^2

    with ``alpha`` = :math:`\\alpha` (no :math:`\\|w\\|^2` term for the identity
    nonlinearity, no :math:`\\|c\\|^2` term without thresholds),
    ``smoothness`` = :math:`\\lambda` and
    :math:`D^2` the second difference along each axis of ``input_shape``
    (of length at least 3): the smoothing prior of the Pillow lab tutorials.

    * ``nonlinearity="identity"``: the output weights are fixed at 1 (not
      fitted, not penalised), so the model is affine in ``x`` with filter
      ``sum_j h_j``. With ``n_filters=1`` and the same ``alpha`` (and
      ``smoothness=0``) it **is** :class:`PoissonGLM` (same objective, same
      starting point, same solver): ``linear_filter_`` equals its ``coef_``.
    * ``nonlinearity="square"`` with two filters is the energy model of
      complex cells (a generalised quadratic model); ``"relu"`` and
      ``"softplus"`` filters also learn a threshold ``c_j``.
    * ``filter_rank=r`` makes every filter over inputs of ``input_shape =
      (n_lags, n_pixels)`` space-time separable of rank r,
      ``h = sum_q temporal_q (outer) spatial_q`` (the ridge then applies to
      both factors, which fixes their relative scale).

    Except for the identity nonlinearity with full-rank filters (a convex
    problem, started at zero like the GLM), the objective is not convex: the
    fit starts from ``n_init`` random draws and keeps, per neuron, the one
    with the lowest training objective. All restarts of all neurons are
    solved together as one batch of ``n_neurons * n_init`` independent
    problems by the batched L-BFGS solver (no Python loop over restarts or
    neurons; the base's batched restarts, ``BaseEncoder._select``). The
    first start of every neuron (unless the nonlinearity squares) points its
    first filter along the neuron's spike-triggered average, with a positive
    output weight: an LN neuron's STA is parallel to its filter (Bussgang),
    so that start lies away from the mirrored local optimum (negative
    weight, flipped filter) half of all random starts fall into. Random
    filters have unit expected norm, so standardise the inputs (e.g.
    ``StandardScaler`` in a Pipeline).

    Parameters
    ----------
    n_filters : int, default=1
        Number of linear filters per neuron.
    nonlinearity : {"identity", "relu", "softplus", "square", "exp"}, default="softplus"
        Pointwise nonlinearity applied to every filter output. ``"relu"`` is
        not differentiable at its threshold, which slows L-BFGS down (often
        10x); ``"softplus"`` is its smooth counterpart.
    link : {"auto", "exp", "softplus", "elu1", "identity", "logit"}, default="auto"
        Inverse link (output nonlinearity); ``"auto"`` is the family's
        canonical choice, as for :class:`PoissonGLM` (``"exp"`` for counts,
        ``"identity"`` for the Gaussian, ``"logit"`` for binary responses),
        except for the energy model: counts with ``nonlinearity="square"``
        and ``fit_intercept=True`` default to ``"identity"``, the rate being
        ``exp(b) + sum_j (h_j . x)^2`` (output weights fixed at 1, a positive
        baseline), positive by construction. The exp link would bend that sum
        of squares into the wrong shape. The identity link is refused for
        counts where the predictor can be negative.
    family : str or Family, default="poisson"
        A registered family (see :class:`PoissonGLM` and
        :mod:`sklearn_cnnenc.distributions`).
    input_shape : tuple of int, optional
        Shape of one input row, e.g. ``(n_lags, n_pixels)`` for the output of
        a :class:`~sklearn_cnnenc.preprocessing.TimeLagger` (whose columns are
        lag-major); its product must equal ``n_features``. Default:
        ``(n_features,)``.
    filter_rank : int, optional
        Rank of space-time separable filters, at most ``min(n_lags,
        n_pixels)``; needs a two-dimensional ``input_shape``.
    alpha : float, default=1e-3
        Ridge strength, on the scale of :class:`PoissonGLM`'s ``alpha``. It
        penalises the filters (both factors with ``filter_rank``), the output
        weights (unless fixed at 1 by the identity nonlinearity) and the
        filter biases ``c_j`` of ``"relu"`` and ``"softplus"`` (without it a
        threshold can drift away along a flat direction); the intercept
        ``b`` is never penalised.
    smoothness : float, default=0.0
        Strength of the second-difference (Laplacian) smoothing penalty.
    fit_intercept : bool, default=True
    n_init : int, default=4
        Number of random starts of a non-convex fit (ignored for convex ones).
    solver : {"lbfgs"}, default="lbfgs"
        Full-batch L-BFGS on all restarts and neurons at once.
    max_iter : int, default=1000
    tol : float, default=1e-4
        Stop a problem when its largest absolute gradient entry is below ``tol``.
    warm_start : bool, default=False
        Continue from the previous fit's parameters (no restarts).
    device : str, default="cpu"
    random_state : int, RandomState instance or None, default=None
        Seeds the random starts.
    verbose : int, default=0
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
    filters_ : ndarray of shape (n_neurons, n_filters, *input_shape)
        Fitted filters (reconstructed from their factors with ``filter_rank``).
        The neuron axis is kept even for a one-dimensional ``y``.
    weights_ : ndarray of shape (n_neurons, n_filters)
        Output weights (all ones for the identity nonlinearity).
    filter_bias_ : ndarray of shape (n_neurons, n_filters)
        Thresholds ``c_j`` (zeros where the nonlinearity has none).
    intercept_ : ndarray of shape (n_neurons,)
        ``b``; the baseline rate ``exp(b)`` for the identity link of counts.
    linear_filter_ : ndarray of shape (n_neurons, *input_shape)
        The GLM-equivalent filter ``sum_j h_j``; defined only for the
        identity nonlinearity (see :func:`~sklearn_cnnenc.inspection.equivalent_glm`).
    temporal_filters_ : ndarray of shape (n_neurons, n_filters, filter_rank, n_lags)
        Only with ``filter_rank``.
    spatial_filters_ : ndarray of shape (n_neurons, n_filters, filter_rank, *input_shape[1:])
        Only with ``filter_rank``.
    input_shape_ : tuple of int
    n_restarts_ : int
        Random starts actually used (1 for convex problems and warm starts).
    restart_objectives_ : ndarray of shape (n_neurons, n_restarts_)
        Final training objective (mean NLL plus penalty) of every start; the
        kept parameters are those of the smallest. Defined for non-convex
        fits that are not warm-started.
    dispersion_ : ndarray of shape (n_neurons,) or (n_neurons, 2), or None
    mean_response_ : ndarray of shape (n_neurons,)
    n_iter_ : int
        Iterations of the slowest kept problem.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.
    n_outputs_ : int
    family_ : Family
    link_ : Link
    module_ : EncodingModule
        The fitted torch module; it takes ``as_tensor(X)``, of shape
        ``(n_samples, *sample_shape_)``.
    sample_shape_ : tuple of int
        Shape of one sample as ``module_`` takes it, here ``(n_features,)``.
    net_ : EncoderNet
        The fitted skorch net that trained ``module_``.
    history_ : skorch.History

    See Also
    --------
    PoissonGLM : the convex special case.
    sklearn_cnnenc.preprocessing.TimeLagger : lagged (Hankel) design matrices.
    sklearn_cnnenc.inspection.spike_triggered_covariance : a moment-based
        estimate of the energy-model subspace.

    References
    ----------
    .. [1] Chichilnisky, E. J. (2001). A simple white noise analysis of neuronal
       light responses. Network 12, 199-213.
    .. [2] Adelson, E. H. & Bergen, J. R. (1985). Spatiotemporal energy models for
       the perception of motion. JOSA A 2, 284-299.
    .. [3] Park, I. M., Archer, E., Priebe, N. & Pillow, J. W. (2013). Spectral
       methods for neural characterization using generalized quadratic models. NIPS.

    Examples
    --------
    >>> from sklearn_cnnenc import LNModel
    >>> from sklearn_cnnenc.datasets import make_energy_model_data
    >>> data = make_energy_model_data(n_samples=4000, n_lags=8, random_state=0)
    >>> model = LNModel(n_filters=2, nonlinearity="square", n_init=2,
    ...                 random_state=0).fit(data.X, data.y)
    >>> model.filters_.shape
    (1, 2, 8)
    """

    _parameter_constraints: dict = {
        **BaseEncoder._parameter_constraints,
        "n_filters": [Interval(Integral, 1, None, closed="left")],
        "nonlinearity": [StrOptions(set(NONLINEARITIES))],
        "input_shape": ["array-like", None],
        "filter_rank": [Interval(Integral, 1, None, closed="left"), None],
        "alpha": [Interval(Real, 0.0, None, closed="left")],
        "smoothness": [Interval(Real, 0.0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions({"lbfgs"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        n_filters: int = 1,
        nonlinearity: str = "softplus",
        *,
        link: str = "auto",
        family: str = "poisson",
        input_shape: tuple[int, ...] | None = None,
        filter_rank: int | None = None,
        alpha: float = 1e-3,
        smoothness: float = 0.0,
        fit_intercept: bool = True,
        n_init: int = 4,
        solver: str = "lbfgs",
        max_iter: int = 1000,
        tol: float = 1e-4,
        warm_start: bool = False,
        device: str = "cpu",
        random_state=None,
        verbose: int = 0,
        missing_responses: str = "raise",
    ) -> None:
        self.n_filters = n_filters
        self.nonlinearity = nonlinearity
        self.link = link
        self.family = family
        self.input_shape = input_shape
        self.filter_rank = filter_rank
        self.alpha = alpha
        self.smoothness = smoothness
        self.fit_intercept = fit_intercept
        self.n_init = n_init
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.missing_responses = missing_responses

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        # column-major storage, as for PoissonGLM: fast full-batch products and
        # no copy of a TimeLagger's (Fortran-ordered) design matrix
        return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], order="F")

    def _resolve_input_shape(self, n_features: int) -> tuple[int, ...]:
        if self.input_shape is None:
            shape: tuple[int, ...] = (n_features,)
        else:
            values = np.asarray(self.input_shape)
            if (
                values.ndim != 1
                or values.size == 0
                or not np.issubdtype(values.dtype, np.integer)
                or np.any(values < 1)
            ):
                raise ValueError(
                    f"input_shape must be a tuple of positive integers; got {self.input_shape!r}."
                )
            shape = tuple(int(v) for v in values)
            if int(np.prod(shape)) != n_features:
                raise ValueError(
                    f"input_shape {shape} holds {int(np.prod(shape))} values but X has "
                    f"{n_features} features; their product must equal n_features."
                )
        # filter_rank against the shape is checked by FilterBankPredictor
        return shape

    def _predictor_nonnegative(self) -> bool:
        # an energy model: a sum of squares plus a positive baseline exp(b)
        return self.nonlinearity == "square" and bool(self.fit_intercept)

    def _default_link(self, family) -> str:
        if "identity" in family.nonnegative_links and self._predictor_nonnegative():
            return "identity"
        return family.default_link

    def _nonnegative_parametrisation(self) -> bool:
        """Whether the fit uses the positive-by-construction filter bank."""
        family = get_family(self.family)
        link = self._default_link(family) if self.link == "auto" else self.link
        return self._predictor_nonnegative() and link in family.nonnegative_links

    def _is_convex(self) -> bool:
        return self.nonlinearity == "identity" and self.filter_rank is None

    def _n_restarts(self) -> int:
        return 1 if self._is_convex() else self.n_init

    def _batches_restarts(self) -> bool:
        # a convex fit starts at zero, once, as PoissonGLM does
        return not self._is_convex()

    def _build_predictor(self, X, y, dtype, n_copies: int = 1):
        convex = self._is_convex()
        return FilterBankPredictor(
            self._resolve_input_shape(X.shape[1]),
            y.shape[1] * n_copies,
            n_filters=self.n_filters,
            nonlinearity=self.nonlinearity,
            filter_rank=self.filter_rank,
            fit_intercept=self.fit_intercept,
            l2=self.alpha,
            smoothness=self.smoothness,
            init="zeros" if convex else "random",
            nonnegative=self._nonnegative_parametrisation(),
            dtype=dtype,
        )

    def _net_params(self, n_samples: int) -> dict:
        params = {
            "optimizer": BatchedLBFGS,
            "optimizer__max_iter": self.max_iter,
            "optimizer__tol": self.tol,
            "lr": 1.0,
            "max_epochs": 1,
            "batch_size": -1,
            "train_split": None,
        }
        return params

    @torch.no_grad()
    def _initialize_module(self, module, problem: _FitProblem) -> None:
        super()._initialize_module(module, problem)
        # the spike-triggered average says nothing about a squaring unit (an
        # energy model's STA is zero); random starts only there
        if self._is_convex() or self.nonlinearity == "square":
            return
        inputs, targets = problem.inputs, problem.targets
        if problem.observed is not None:
            # missing responses sit at their neuron's mean: no STA contribution
            mean = torch.as_tensor(
                problem.mean_response, dtype=targets.dtype, device=targets.device
            )
            targets = torch.where(torch.isnan(targets), mean, targets)
        weight = inputs.get("sample_weight")
        if weight is None:
            centred = targets - targets.mean(dim=0)
        else:
            mean = (weight @ targets) / weight.sum()
            centred = (targets - mean) * weight[:, None]
        # X is column-major, so X.T @ (...) reads it once without a copy;
        # the first copy of every neuron starts along its STA
        sta = (inputs["X"].T @ centred).T
        module.predictor.initialize_filters(sta.to(next(module.parameters()).device))

    def _finalise_fit(self, problem: _FitProblem, net, restart_losses) -> None:
        super()._finalise_fit(problem, net, restart_losses)
        self.n_restarts_ = problem.n_restarts
        if problem.batched:
            self.restart_objectives_ = restart_losses.T
        elif hasattr(self, "restart_objectives_"):
            del self.restart_objectives_

    def _set_fitted_attributes(self) -> None:
        predictor = self.module_.predictor
        n_neurons, k = self.n_outputs_, self.n_filters

        def numpy(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().cpu().double().numpy().copy()

        shape = self._resolve_input_shape(self.n_features_in_)
        self.input_shape_ = shape
        self.filters_ = numpy(predictor.full_filters()).reshape(n_neurons, k, *shape)
        self.weights_ = numpy(predictor.weights)
        self.filter_bias_ = (
            np.zeros((n_neurons, k))
            if predictor.filter_bias is None
            else numpy(predictor.filter_bias)
        )
        self.intercept_ = numpy(predictor.baseline())
        if self.nonlinearity == "identity":
            self.linear_filter_ = self.filters_.sum(axis=1)
        elif hasattr(self, "linear_filter_"):
            del self.linear_filter_
        if self.filter_rank is not None:
            self.temporal_filters_ = numpy(predictor.temporal)
            self.spatial_filters_ = numpy(predictor.spatial).reshape(
                n_neurons, k, self.filter_rank, *shape[1:]
            )
        else:
            for name in ("temporal_filters_", "spatial_filters_"):
                if hasattr(self, name):
                    delattr(self, name)

