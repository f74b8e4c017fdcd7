"""Generalised linear encoding model (Poisson GLM and friends)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from ._base import BaseEncoder
from ._solvers import BatchedFISTA, BatchedLBFGS
from .nn import LinearPredictor

__all__ = ["PoissonGLM"]


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
    family : {"poisson", "gaussian", "bernoulli", "negative_binomial"}, default="poisson"
        Observation family; the Gaussian noise variance and the negative
        binomial over-dispersion are fitted (``dispersion_``).
    link : {"auto", "exp", "softplus", "elu1", "identity", "logit"}, default="auto"
        Inverse link; ``"auto"`` is the family's canonical choice (``"exp"``
        for counts, ``"identity"`` for the Gaussian, ``"logit"`` for binary).
    fit_intercept : bool, default=True
    solver : {"auto", "lbfgs", "owlqn", "fista"}, default="auto"
        ``"lbfgs"``: batched L-BFGS for smooth penalties (``l1_ratio=0``).
        ``"owlqn"``: orthant-wise L-BFGS, exact for L1 (Andrew & Gao 2007).
        ``"fista"``: accelerated proximal gradient (Beck & Teboulle 2009).
        ``"auto"`` picks ``"lbfgs"`` without L1 and ``"owlqn"`` with it.
    max_iter : int, default=1000
        Maximum number of solver iterations.
    tol : float, default=1e-4
        Stop when the largest absolute (pseudo-)gradient entry of a neuron's
        objective is below ``tol`` (scikit-learn's convention).
    warm_start : bool, default=False
        Start from the previous solution when ``fit`` is called again.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"``.
    random_state : int, RandomState instance or None, default=None
        Unused by the convex solvers (they start at zero); kept so that all
        estimators of the library share one interface.
    verbose : int, default=0
        Print the training table of skorch when positive.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_neurons, n_features)
        Coefficients of the linear predictor.
    intercept_ : float or ndarray of shape (n_neurons,)
    dispersion_ : ndarray of shape (n_neurons,) or None
        Fitted noise variance (Gaussian) or over-dispersion (negative binomial).
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
    net_ : EncoderNet
        The fitted skorch net (``net_.module_`` is the torch module).
    history_ : skorch.History

    See Also
    --------
    LNModel : linear-nonlinear cascade with several filters.
    CNNEncoder : convolutional encoding model.
    sklearn.linear_model.PoissonRegressor : the single-neuron reference.

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
        solver: str = "auto",
        max_iter: int = 1000,
        tol: float = 1e-4,
        warm_start: bool = False,
        device: str = "cpu",
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.family = family
        self.link = link
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        # column-major storage makes the full-batch X @ w products several times
        # faster in torch (it is also what a TimeLagger emits, so no copy there)
        return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], order="F")

    def _build_predictor(self, X, y, dtype):
        return LinearPredictor(
            X.shape[1],
            y.shape[1],
            fit_intercept=self.fit_intercept,
            l2=self.alpha * (1.0 - self.l1_ratio),
            dtype=dtype,
        )

    def _net_params(self, n_samples: int) -> dict:
        l1 = self.alpha * self.l1_ratio
        solver = self.solver
        if solver == "auto":
            solver = "owlqn" if l1 > 0 else "lbfgs"
        if solver == "lbfgs" and l1 > 0:
            raise ValueError(
                "solver='lbfgs' cannot minimise an L1 penalty (alpha * l1_ratio > 0); "
                "use solver='owlqn' or 'fista'."
            )
        return {
            "optimizer": BatchedFISTA if solver == "fista" else BatchedLBFGS,
            "optimizer__max_iter": self.max_iter,
            "optimizer__tol": self.tol,
            "optimizer__param_groups": [("predictor.weight", {"l1": l1})],
            "lr": 1.0,
            "max_epochs": 1,
            "batch_size": -1,
            "train_split": None,
        }

    def _set_fitted_attributes(self) -> None:
        predictor = self.net_.module_.predictor
        coef = predictor.weight.detach().cpu().double().numpy().copy()
        if predictor.bias is None:
            intercept = np.zeros(self.n_outputs_)
        else:
            intercept = predictor.bias.detach().cpu().double().numpy().copy()
        if self._y_ndim == 1:
            self.coef_, self.intercept_ = coef[0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef, intercept
