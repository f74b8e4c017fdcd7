"""The abstract observation family and the predicted response distribution.

A :class:`Family` is the single owner of everything the library knows about
one distribution ``p(y | mean)``: its support (and the validation of ``y``),
the range of its mean, its canonical and allowed links, the torch negative
log-likelihood used in training, the numpy log-probability used in scoring,
the unit deviance, a sampler, the estimate of its dispersion and the
many-candidates form used by the decoder. Estimators, metrics, the decoder
and the simulators only call these methods; none of them branches on a
family's name or class.

Dispersion conventions (one value per neuron):

==================  ==============================  ====================
family              mean / variance                 ``dispersion``
==================  ==============================  ====================
poisson             Var = mu                        (none)
gaussian            Var = phi                       phi, the noise variance
bernoulli           mu = P(y = 1)                   (none)
negative_binomial   Var = mu + alpha mu^2           alpha (NB2), > 0
gamma               Var = phi mu^2                  phi = 1 / shape
zig                 P(y > 0) = q, y | y > 0 gamma   (q, phi) per neuron,
                    of mean mu / q, shape 1 / phi   shape (n_neurons, 2)
==================  ==============================  ====================
"""

from __future__ import annotations

import numpy as np
import torch

from ..links import Link, get_link

__all__ = ["Family", "ResponseDistribution"]

# The trained dispersion is exp(raw), raw clipped to +-20 (exp(20) ~ 5e8).
_MAX_RAW_DISPERSION = 20.0


class Family:
    """Base class of observation families: subclass it to add one.

    A subclass sets the class attributes below and implements
    :meth:`negative_log_likelihood` and :meth:`log_prob` (plus
    :meth:`sample`, :meth:`deviance`, :meth:`estimate_dispersion` and the
    decoder's :meth:`candidate_terms` / :meth:`response_term` where they
    apply), then makes itself known by name with
    :func:`~sklearn_cnnenc.distributions.register_family`.

    Attributes
    ----------
    name : str
        The name estimators accept as ``family=``.
    default_link : str
        The canonical (default) link, what ``link="auto"`` means.
    links : tuple of str
        The links whose mean lies in the family's mean range.
    has_dispersion : bool
        Whether the family has one dispersion value per neuron.
    trains_dispersion : bool
        Whether the dispersion is trained with the model (else estimated from
        the fitted means by :meth:`estimate_dispersion`).
    non_negative : bool
        Whether the support is the non-negative (or positive) values, so that
        any non-negative data shifted up are valid (counts, durations):
        scikit-learn's ``positive_only`` tag, and the decoder's input check.
    mean_bounds : tuple of float
        Closed interval the mean must lie in (for metrics given predictions).
    default_dispersion : float
        The dispersion the simulators use when none is given.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.distributions import get_family
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
    trains_dispersion: bool = False
    non_negative: bool = False
    mean_bounds: tuple[float, float] = (-np.inf, np.inf)
    default_dispersion: float = 1.0

    # --- validation -----------------------------------------------------
    @property
    def canonical_link(self) -> str:
        """Name of the default (canonical) link."""
        return self.default_link

    def validate_response(self, y: np.ndarray) -> None:
        """Raise ``ValueError`` if ``y`` holds values outside the support."""
        if self.non_negative:
            _check_non_negative(np.asarray(y), self.name)

    def check_link(self, link: str | Link, predictor_nonnegative: bool = False) -> Link:
        """Return the link object, or raise ``ValueError`` if the family refuses it.

        Parameters
        ----------
        link : str or Link
        predictor_nonnegative : bool, default=False
            Whether the model's linear predictor is non-negative by
            construction (a hook: a family may then accept links, such as the
            identity for counts, that it refuses in general).

        Returns
        -------
        link : Link
        """
        link = get_link(link)
        if link.name in self.nonnegative_links and link.name not in self.links:
            if predictor_nonnegative:
                return link
            raise ValueError(
                f"The {link.name!r} link is not valid for the {self.name!r} family here: it "
                "gives a valid mean only for a linear predictor that is positive by "
                "construction, such as LNModel with nonlinearity='square' and "
                "fit_intercept=True (a sum of squares plus a positive baseline); this "
                f"model's can be negative. Use one of {list(self.links)}."
            )
        if link.name not in self.links:
            raise ValueError(
                f"The {link.name!r} link is not valid for the {self.name!r} family; "
                f"expected one of {list(self.links)}."
            )
        return link

    def validate_link(self, link: Link, predictor_nonnegative: bool = False) -> None:
        """Raise ``ValueError`` if ``link`` cannot produce a valid mean (see :meth:`check_link`)."""
        self.check_link(link, predictor_nonnegative=predictor_nonnegative)

    def check_mean(self, mean: np.ndarray, name: str = "mean") -> None:
        """Raise ``ValueError`` if ``mean`` lies outside :attr:`mean_bounds`."""
        low, high = self.mean_bounds
        mean = np.asarray(mean)
        outside = (mean < low) | (mean > high)
        if np.any(outside):
            where = f"lie in [{low:g}, {high:g}]"
            if (low, high) == (0.0, np.inf):
                where = "be non-negative"
            raise ValueError(
                f"{name} must {where} for the {self.name!r} family (it is the expected "
                f"response); found {int(np.sum(outside))} value(s) outside, minimum "
                f"{float(np.min(mean))!r}."
            )

    def dispersion_shape(self, n_outputs: int) -> tuple[int, ...]:
        """Shape of the dispersion of a model of ``n_outputs`` neurons (``()``: none)."""
        return (n_outputs,) if self.has_dispersion else ()

    def variance(self, mean, dispersion=None):
        """Variance function ``V(mu)``: ``Var[y] = phi V(mu)`` where the dispersion
        ``phi`` is a scale (gaussian, gamma), else the variance itself.

        Works on numpy arrays and torch tensors alike (used by the GLM
        standard errors).
        """
        raise NotImplementedError(f"No variance function is known for the {self.name!r} family.")

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

        Written in the linear predictor (not the mean) so that it stays
        finite where a mean underflows (``link.log_inverse``).

        Parameters
        ----------
        y : tensor
            Observed responses.
        eta : tensor
            Linear predictor, broadcastable against ``y``.
        link : Link
            Inverse link from ``eta`` to the mean.
        dispersion : tensor of shape (n_outputs,), optional
            The (positive) dispersion, for families that have one.
        log_normalizer : tensor, optional
            :meth:`log_normalizer` of ``y``, when the caller computed it once
            for many evaluations (a full-batch solver).

        Returns
        -------
        nll : tensor, the broadcast shape of ``y`` and ``eta``
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

    def loss_and_derivative(
        self,
        y: torch.Tensor,
        eta: torch.Tensor,
        link: Link,
        log_normalizer: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Elementwise :meth:`training_loss` and its derivative in ``eta``, in closed form.

        A fast path for full-batch GLM solvers (one pass over the data, no
        autograd: the results carry no graph, and may share memory with
        temporaries of the computation, never with ``y`` or ``eta``). ``None``
        (the default) means "no closed form for this link here": the caller
        differentiates :meth:`training_loss` instead.
        """
        return None

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

    def deviance(
        self, y: np.ndarray, mean: np.ndarray, dispersion: np.ndarray | None = None
    ) -> np.ndarray:
        """Elementwise deviance ``2 [log p(y | y) - log p(y | mean)]``.

        The default evaluates the definition with :meth:`log_prob`; families
        override it with their closed form (the unit deviance scaled by the
        dispersion where there is one).
        """
        return 2.0 * (self.saturated_log_prob(y, dispersion) - self.log_prob(y, mean, dispersion))

    def saturated_log_prob(self, y: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """Log-probability of ``y`` under the saturated model (the best mean for each ``y``).

        ``log_prob(y, y)`` by default: the likelihood of an exponential-dispersion
        family peaks at ``mean = y``; families where it does not override it.
        """
        return self.log_prob(y, y, dispersion)

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

    # --- the decoder's many-candidates form ---------------------------------
    def candidate_terms(
        self, eta: np.ndarray, link: Link, dispersion: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(A, b)`` of ``log p(y_i | s_k) = sum_n y_in A_kn + b_k + c(y_i)``.

        ``eta`` holds the linear predictors of shape (n_candidates,
        n_neurons); ``A`` has that shape (one block of n_neurons columns per
        statistic of :meth:`response_statistics`, where ``y`` is replaced by
        them) and ``b`` one value per candidate.
        Families whose log-probability is not of this form (linear in ``y``
        given the candidate, up to ``c(y)``) return None, and the decoder
        then evaluates :meth:`negative_log_likelihood` on every pair (slower,
        with a warning).
        """
        return None

    def response_statistics(self, Y: np.ndarray) -> np.ndarray:
        """The statistics ``T(Y)`` that multiply ``A`` in :meth:`candidate_terms`.

        ``Y`` itself by default (``log p`` linear in ``y``); a family whose
        log-probability is linear in other statistics returns them, one
        block of ``n_neurons`` columns each, and its ``A`` has as many
        columns (the zero-inflated gamma: ``y`` and ``[y > 0]``).
        """
        return Y

    def response_term(self, Y: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """``c(y)`` of :meth:`candidate_terms`: one value per row of ``Y``."""
        raise NotImplementedError(f"The {self.name!r} family has no candidate form.")

    # --- helpers --------------------------------------------------------------
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
        return type(self) is type(other) and self.name == getattr(other, "name", None)

    def __hash__(self) -> int:
        return hash((type(self), self.name))


def _check_non_negative(y: np.ndarray, family: str) -> None:
    if np.any(y < 0):
        raise ValueError(
            f"The {family!r} family needs non-negative responses; "
            f"found {int(np.sum(y < 0))} negative value(s), minimum {float(np.min(y))!r}."
        )


def _n_effective(y: np.ndarray, sample_weight: np.ndarray | None) -> int:
    """Number of samples that count (positive weight)."""
    if sample_weight is None:
        return len(y)
    return int(np.sum(np.asarray(sample_weight) > 0))


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
    >>> from sklearn_cnnenc.distributions import ResponseDistribution, get_family
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
