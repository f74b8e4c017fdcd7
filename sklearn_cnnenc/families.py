"""Observation families: the distribution p(y | x) of a response given its mean.

A family is separate from the model that predicts the mean (as in nemos and
scikit-learn's ``_loss`` module). Each family provides

* the full negative log-likelihood as a torch expression of the linear
  predictor (constants such as ``log y!`` included, so that training losses
  and held-out scores are on the same scale),
* the exact log-probability in numpy (used for scoring and decoding),
* a sampler that takes ``random_state``,
* the inverse links it accepts and its default (canonical) one,
* a maximum-likelihood estimate of its dispersion, when it has one.

Dispersion conventions (one value per neuron):

==================  ==============================  ====================
family              mean / variance                 ``dispersion``
==================  ==============================  ====================
poisson             Var = mu                        (none)
gaussian            Var = phi                       phi, the noise variance
bernoulli           mu = P(y = 1)                   (none)
negative_binomial   Var = mu + alpha mu^2           alpha (NB2), > 0
==================  ==============================  ====================

The negative-binomial over-dispersion is trained jointly with the model. The
Gaussian noise variance is not: the Gaussian mean is fitted by least squares
(the likelihood at unit variance, :meth:`Family.training_loss`, as in
scikit-learn's and glum's Gaussian GLMs) and ``phi`` is then its
maximum-likelihood estimate, the mean squared residual. Training ``phi``
jointly would make the objective unbounded whenever the model can interpolate
the data (as many features as samples), where ``phi -> 0``.

Poisson and negative-binomial log-probabilities use the gamma-function form
(``lgamma(y + 1)`` for ``log y!``), which equals the probability mass function
for integer counts and extends it smoothly to non-negative real responses
(deconvolved calcium signals, for instance).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import gammaln, xlog1py, xlogy
from sklearn.utils import check_random_state

from .links import Link

__all__ = [
    "Family",
    "Poisson",
    "Gaussian",
    "Bernoulli",
    "NegativeBinomial",
    "ResponseDistribution",
    "get_family",
    "FAMILIES",
]

_LOG_2PI = float(np.log(2.0 * np.pi))
# The NB over-dispersion is trained as alpha = floor + raw^2. Under-dispersed
# data put the maximum likelihood at the boundary alpha = 0: with log(alpha) as
# the parameter the optimiser would crawl towards -inf along a direction whose
# curvature vanishes (ruining the quasi-Newton scaling of every other
# parameter); with raw^2 the boundary is the ordinary stationary point raw = 0,
# with positive curvature. Var = mu + 1e-6 mu^2 is a Poisson at any rate.
NB_ALPHA_FLOOR = 1e-6
_MAX_RAW_DISPERSION = 20.0  # exp(20) ~ 5e8, the largest trained dispersion


class Family:
    """Base class of observation families.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.families import get_family
    >>> family = get_family("poisson")
    >>> float(family.log_prob(np.array([0.0]), np.array([2.0]))[0])
    -2.0
    """

    name: str = ""
    default_link: str = ""
    links: tuple[str, ...] = ()
    # links valid only for a linear predictor that is positive by construction
    nonnegative_links: tuple[str, ...] = ()
    has_dispersion: bool = False
    # whether the dispersion is a trained parameter (else estimated after fitting)
    trains_dispersion: bool = False

    # --- validation -----------------------------------------------------
    def validate_response(self, y: np.ndarray) -> None:
        """Raise ``ValueError`` if ``y`` holds values outside the support."""

    def validate_link(self, link: Link, predictor_nonnegative: bool = False) -> None:
        """Raise ``ValueError`` if ``link`` cannot produce a valid mean.

        ``predictor_nonnegative``: whether the model's linear predictor is
        positive by construction (e.g. a sum of squares plus a positive
        baseline); the links in ``nonnegative_links`` are then valid too.
        """
        if link.name in self.nonnegative_links and link.name not in self.links:
            if predictor_nonnegative:
                return
            raise ValueError(
                f"The {link.name!r} link is not valid for the {self.name!r} family here: it "
                "gives a valid mean only for a linear predictor that is positive by "
                "construction, such as LNModel with "
                "nonlinearity='square' and fit_intercept=True (a sum of squares plus a "
                f"positive baseline); this model's can be negative. Use one of {list(self.links)}."
            )
        if link.name not in self.links:
            raise ValueError(
                f"The {link.name!r} link is not valid for the {self.name!r} family; "
                f"expected one of {list(self.links)}."
            )

    # --- torch, for training ------------------------------------------------
    def negative_log_likelihood(
        self,
        y: torch.Tensor,
        eta: torch.Tensor,
        link: Link,
        dispersion: torch.Tensor | None = None,
        log_normalizer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Elementwise ``-log p(y | mean = link.inverse(eta))``, constants included.

        Parameters
        ----------
        y : tensor
            Observed responses.
        eta : tensor
            Linear predictor, same shape as ``y``.
        link : Link
            Inverse link from ``eta`` to the mean.
        dispersion : tensor of shape (n_outputs,), optional
            The (positive) dispersion, for families that have one.
        log_normalizer : tensor, optional
            :meth:`log_normalizer` of ``y``, when the caller computed it once
            for many evaluations (a full-batch solver).

        Returns
        -------
        nll : tensor, same shape as ``y``
        """
        raise NotImplementedError

    def training_loss(
        self,
        y: torch.Tensor,
        eta: torch.Tensor,
        link: Link,
        dispersion: torch.Tensor | None = None,
        log_normalizer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Elementwise loss minimised in training: the NLL, except where noted."""
        return self.negative_log_likelihood(y, eta, link, dispersion, log_normalizer)

    def log_normalizer(self, y: torch.Tensor) -> torch.Tensor | None:
        """The part of the NLL that depends on ``y`` alone (``log y!`` for counts), or None."""
        return None

    def dispersion_from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Map the unconstrained trained parameter to the positive dispersion."""
        return torch.exp(torch.clamp(raw, -_MAX_RAW_DISPERSION, _MAX_RAW_DISPERSION))

    def raw_from_dispersion(self, dispersion: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`dispersion_from_raw`, for initialisation (numpy)."""
        return np.log(dispersion)

    # --- numpy, for scoring and decoding ------------------------------------
    def log_prob(
        self, y: np.ndarray, mean: np.ndarray, dispersion: np.ndarray | None = None
    ) -> np.ndarray:
        """Exact log-probability (or log-density) of ``y`` given ``mean``.

        ``y``, ``mean`` and ``dispersion`` broadcast against each other.
        """
        raise NotImplementedError

    def sample(
        self,
        mean: np.ndarray,
        dispersion: np.ndarray | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> np.ndarray:
        """Draw responses with the given means (and dispersion)."""
        raise NotImplementedError

    def estimate_dispersion(
        self, y: np.ndarray, mean: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Per-column estimate of the dispersion given fitted means, or None."""
        return None

    def _require_dispersion(self, dispersion: np.ndarray | None) -> np.ndarray:
        if dispersion is None:
            raise ValueError(f"The {self.name!r} family needs a dispersion value.")
        dispersion = np.asarray(dispersion, dtype=float)
        if np.any(~np.isfinite(dispersion)) or np.any(dispersion <= 0):
            raise ValueError(
                f"The {self.name!r} dispersion must be finite and positive; got {dispersion!r}."
            )
        return dispersion

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


def _check_non_negative(y: np.ndarray, family: str) -> None:
    if np.any(y < 0):
        raise ValueError(
            f"The {family!r} family needs non-negative responses (spike counts); "
            f"found {int(np.sum(y < 0))} negative value(s), minimum {float(np.min(y))!r}."
        )


class Poisson(Family):
    """Poisson spike counts: ``p(y | mu) = mu^y exp(-mu) / y!``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.families import Poisson
    >>> counts = Poisson().sample(np.full(5, 3.0), random_state=0)
    >>> counts.shape
    (5,)
    """

    name = "poisson"
    default_link = "exp"
    links = ("exp", "softplus", "elu1")
    nonnegative_links = ("identity",)

    def validate_response(self, y: np.ndarray) -> None:
        _check_non_negative(y, self.name)

    def log_normalizer(self, y):
        return torch.lgamma(y + 1.0)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        return link.inverse(eta) - y * link.log_inverse(eta) + log_normalizer

    def log_prob(self, y, mean, dispersion=None):
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return xlogy(y, mean) - mean - gammaln(y + 1.0)

    def sample(self, mean, dispersion=None, random_state=None):
        rng = check_random_state(random_state)
        return rng.poisson(np.asarray(mean, dtype=float)).astype(float)


class Gaussian(Family):
    """Gaussian responses (e.g. calcium dF/F): ``y ~ N(mu, phi)``.

    The noise variance ``phi`` (one per neuron) is the dispersion. Training
    minimises half the squared error (the NLL at ``phi = 1`` without its
    constant); ``phi`` is then estimated as the mean squared residual.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.families import Gaussian
    >>> round(float(Gaussian().log_prob(0.0, 0.0, dispersion=1.0)), 4)
    -0.9189
    """

    name = "gaussian"
    default_link = "identity"
    links = ("identity", "exp", "softplus", "elu1")
    has_dispersion = True

    def training_loss(self, y, eta, link, dispersion=None, log_normalizer=None):
        return 0.5 * (y - link.inverse(eta)) ** 2

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        residual = y - link.inverse(eta)
        return 0.5 * (residual**2 / dispersion + torch.log(dispersion) + _LOG_2PI)

    def log_prob(self, y, mean, dispersion=None):
        dispersion = self._require_dispersion(dispersion)
        residual = np.asarray(y, dtype=float) - np.asarray(mean, dtype=float)
        return -0.5 * (residual**2 / dispersion + np.log(dispersion) + _LOG_2PI)

    def sample(self, mean, dispersion=None, random_state=None):
        dispersion = self._require_dispersion(dispersion)
        rng = check_random_state(random_state)
        mean = np.asarray(mean, dtype=float)
        return mean + rng.standard_normal(mean.shape) * np.sqrt(dispersion)

    def estimate_dispersion(self, y, mean, sample_weight=None):
        """Maximum-likelihood noise variance: the weighted mean squared residual."""
        residual2 = (np.asarray(y, dtype=float) - np.asarray(mean, dtype=float)) ** 2
        phi = np.average(residual2, axis=0, weights=sample_weight)
        return np.maximum(phi, np.finfo(float).tiny)


class Bernoulli(Family):
    """Binary responses (spike / no spike in a bin): ``P(y = 1) = mu``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.families import Bernoulli
    >>> round(float(Bernoulli().log_prob(1.0, 0.5)), 4)
    -0.6931
    """

    name = "bernoulli"
    default_link = "logit"
    links = ("logit",)

    def validate_response(self, y: np.ndarray) -> None:
        if np.any((y != 0) & (y != 1)):
            raise ValueError(
                "The 'bernoulli' family needs binary responses in {0, 1}; found "
                f"{int(np.sum((y != 0) & (y != 1)))} other value(s)."
            )

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        return F.softplus(eta) - y * eta

    def log_prob(self, y, mean, dispersion=None):
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        return xlogy(y, mean) + xlog1py(1.0 - y, -mean)

    def sample(self, mean, dispersion=None, random_state=None):
        rng = check_random_state(random_state)
        return rng.binomial(1, np.asarray(mean, dtype=float)).astype(float)


class NegativeBinomial(Family):
    """Over-dispersed counts (NB2): ``Var[y] = mu + alpha mu^2``.

    A gamma mixture of Poissons; ``alpha -> 0`` recovers the Poisson. The
    over-dispersion ``alpha`` (one per neuron) is fitted with the model.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.families import NegativeBinomial
    >>> y = NegativeBinomial().sample(np.full(20000, 4.0), dispersion=0.5, random_state=0)
    >>> bool(abs(y.var() - (4.0 + 0.5 * 16.0)) < 1.0)
    True
    """

    name = "negative_binomial"
    default_link = "exp"
    links = ("exp", "softplus", "elu1")
    nonnegative_links = ("identity",)
    has_dispersion = True
    trains_dispersion = True

    def validate_response(self, y: np.ndarray) -> None:
        _check_non_negative(y, self.name)

    def log_normalizer(self, y):
        return torch.lgamma(y.double() + 1.0)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        # evaluated in float64: even stabilised, the terms are O(y log r) apiece
        dtype = eta.dtype
        y, eta = y.double(), eta.double()
        if log_normalizer is None:
            log_normalizer = self.log_normalizer(y)
        log_r = -torch.log(dispersion.double())
        r = torch.exp(log_r)
        log_mean = link.log_inverse(eta)
        log1p_mean_over_r = torch.log1p(torch.exp(log_mean - log_r))
        log_p = (
            _log_rising_factorial_torch(y, r)
            - log_normalizer.double()
            - r * log1p_mean_over_r
            + y * (log_mean - log_r - log1p_mean_over_r)
        )
        return (-log_p).to(dtype)

    def dispersion_from_raw(self, raw):
        return NB_ALPHA_FLOOR + raw**2

    def raw_from_dispersion(self, dispersion):
        return np.sqrt(np.maximum(np.asarray(dispersion, dtype=float) - NB_ALPHA_FLOOR, 0.0))

    def log_prob(self, y, mean, dispersion=None):
        alpha = self._require_dispersion(dispersion)
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        r = 1.0 / alpha
        log1p_mean_over_r = np.log1p(mean / r)
        return (
            _log_rising_factorial_numpy(y, r)
            - gammaln(y + 1.0)
            - r * log1p_mean_over_r
            + xlogy(y, mean)
            - y * (np.log(r) + log1p_mean_over_r)
        )

    def sample(self, mean, dispersion=None, random_state=None):
        alpha = self._require_dispersion(dispersion)
        rng = check_random_state(random_state)
        mean = np.asarray(mean, dtype=float)
        r = np.broadcast_to(1.0 / alpha, mean.shape)
        return rng.negative_binomial(r, r / (r + mean)).astype(float)

    def estimate_dispersion(self, y, mean, sample_weight=None):
        """Method-of-moments over-dispersion, ``mean((y - mu)^2 - mu) / mean(mu^2)``."""
        y = np.asarray(y, dtype=float)
        mean = np.asarray(mean, dtype=float)
        excess = np.average((y - mean) ** 2 - mean, axis=0, weights=sample_weight)
        scale = np.average(mean**2, axis=0, weights=sample_weight)
        alpha = excess / np.maximum(scale, np.finfo(float).tiny)
        return np.clip(alpha, 1e-4, None)  # a start away from the Poisson limit


# Above this shape, lgamma(y + r) - lgamma(r) is taken from Stirling's series:
# the direct difference of two ~r log r numbers loses ~r * eps absolutely,
# enough near the Poisson limit to stall a line search on rounding noise.
_STIRLING_MIN_SHAPE = 1e4


def _stirling_log_rising_factorial(y, r, log, log1p):
    """``lgamma(y + r) - lgamma(r)`` for large ``r`` (error < 1e-25 above 1e4)."""
    s = r + y
    return (
        (r - 0.5) * log1p(y / r)
        + y * log(s)
        - y
        + (1.0 / s - 1.0 / r) / 12.0
        - (1.0 / s**3 - 1.0 / r**3) / 360.0
    )


def _log_rising_factorial_torch(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    direct = torch.lgamma(y + r) - torch.lgamma(r)
    series = _stirling_log_rising_factorial(y, r, torch.log, torch.log1p)
    return torch.where(r > _STIRLING_MIN_SHAPE, series, direct)


def _log_rising_factorial_numpy(y: np.ndarray, r: np.ndarray) -> np.ndarray:
    y, r = np.broadcast_arrays(y, r)
    return np.where(
        r > _STIRLING_MIN_SHAPE,
        _stirling_log_rising_factorial(y, r, np.log, np.log1p),
        gammaln(y + r) - gammaln(r),
    )


FAMILIES: dict[str, type[Family]] = {
    cls.name: cls for cls in (Poisson, Gaussian, Bernoulli, NegativeBinomial)
}


def get_family(family: str | Family) -> Family:
    """Return the family object for a name such as ``"poisson"``.

    Parameters
    ----------
    family : str or Family
        One of ``"poisson"``, ``"gaussian"``, ``"bernoulli"``,
        ``"negative_binomial"``, or a :class:`Family` instance.

    Returns
    -------
    family : Family

    Examples
    --------
    >>> from sklearn_cnnenc.families import get_family
    >>> get_family("negative_binomial").has_dispersion
    True
    """
    if isinstance(family, Family):
        return family
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; expected one of {sorted(FAMILIES)}.")
    return FAMILIES[family]()


class ResponseDistribution:
    """The predicted distribution of responses: a family, a link and linear predictors.

    Returned by the estimators' ``predict_distribution``. Log-probabilities
    are computed from the linear predictor (not from the mean), so they stay
    exact and finite even where a rate underflows to zero or a probability
    rounds to one; :meth:`log_prob` broadcasts responses against the
    predictors, which is what decoders need.

    Parameters
    ----------
    family : Family
    link : Link
    eta : ndarray of shape (n_samples, n_neurons)
        Linear predictors.
    dispersion : ndarray of shape (n_neurons,), optional

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.families import ResponseDistribution, get_family
    >>> from sklearn_cnnenc.links import get_link
    >>> eta = np.log([[1.0, 2.0]])
    >>> distribution = ResponseDistribution(get_family("poisson"), get_link("exp"), eta)
    >>> distribution.mean
    array([[1., 2.]])
    >>> distribution.log_prob(np.array([[0.0, 0.0]]))
    array([[-1., -2.]])
    """

    def __init__(
        self,
        family: Family,
        link: Link,
        eta: np.ndarray,
        dispersion: np.ndarray | None = None,
    ) -> None:
        self.family = family
        self.link = link
        self.eta = np.asarray(eta, dtype=float)
        self.dispersion = dispersion

    @property
    def mean(self) -> np.ndarray:
        """Expected responses, shape of ``eta``."""
        return self.link.inverse(torch.as_tensor(self.eta)).numpy()

    @property
    def log_mean(self) -> np.ndarray:
        """Log of the expected responses, finite where the mean underflows."""
        return self.link.log_inverse(torch.as_tensor(self.eta)).numpy()

    def log_prob(self, y: np.ndarray, log_normalizer=None) -> np.ndarray:
        """Log-probability of ``y``, broadcast against the linear predictors.

        ``log_normalizer``: the family's :meth:`Family.log_normalizer` of
        ``y`` (broadcastable like ``y``), when the caller computed it once.
        """
        dispersion = None
        if self.dispersion is not None:
            dispersion = torch.as_tensor(self.dispersion, dtype=torch.float64)
        nll = self.family.negative_log_likelihood(
            torch.as_tensor(np.asarray(y, dtype=float)),
            torch.as_tensor(self.eta),
            self.link,
            dispersion,
            log_normalizer,
        )
        return -nll.numpy()

    def sample(self, random_state=None) -> np.ndarray:
        """Draw one response per linear predictor."""
        return self.family.sample(self.mean, self.dispersion, random_state)

    def __repr__(self) -> str:
        return f"ResponseDistribution(family={self.family!r}, shape={self.eta.shape})"
