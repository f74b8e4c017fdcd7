"""Inverse link functions: from a linear predictor to the mean response.

Every encoding model ends in an inverse link that maps the unbounded output of
its torch module (the *linear predictor* ``eta``) to the mean of the response
distribution. Families ask a link for the mean *and* for the log of the mean,
because computing ``log(mean)`` directly from ``eta`` is what keeps the
Poisson log-likelihood finite when a rate underflows to zero.

All functions here take and return torch tensors and are safe for any finite
``eta``: no overflow to ``inf`` for large predictors, no ``log(0)`` for small
ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Link",
    "IdentityLink",
    "ExpLink",
    "SoftplusLink",
    "ELU1Link",
    "LogitLink",
    "get_link",
    "LINKS",
]

# Beyond this linear predictor the exponential is continued by the slowly
# growing tail exp(T) * (1 + log1p(eta - T)), which matches its value and
# slope at T. exp(30) is ~1e13 events per bin, far above any physiological
# rate, so fits never reach it; the tail only keeps predictions and
# likelihoods finite (even in float32) for pathological inputs.
EXP_TAIL_THRESHOLD = 30.0


def _within_exp_range(eta: torch.Tensor) -> bool:
    """Whether no entry reaches the tail, checked on the CPU only.

    There the check (one cheap reduction) lets the common case skip the four
    extra elementwise passes of the tail, which dominate a full-batch GLM
    objective; on accelerators elementwise passes are cheap and a check would
    synchronise the device, so the branch-free formula is used.
    """
    if eta.device.type != "cpu":
        return False
    # the largest entry (a reduction without an (n, K) boolean temporary);
    # NaN compares False, as it does entrywise
    return eta.numel() == 0 or not bool(eta.amax() > EXP_TAIL_THRESHOLD)


class Link:
    """Base class of inverse link functions.

    Subclasses implement :meth:`inverse` (linear predictor to mean) and
    :meth:`link` (mean to linear predictor, used to initialise intercepts);
    links with a positive mean also implement :meth:`log_inverse`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import get_link
    >>> get_link("exp").inverse(torch.tensor([0.0]))
    tensor([1.])
    """

    name: str = ""
    positive: bool = False

    def inverse(self, eta: torch.Tensor) -> torch.Tensor:
        """Return the mean response for the linear predictor ``eta``."""
        raise NotImplementedError

    def log_inverse(self, eta: torch.Tensor) -> torch.Tensor:
        """Return ``log(inverse(eta))`` computed without underflow to ``-inf``."""
        raise NotImplementedError(f"the {self.name!r} link has no positive mean")

    def link(self, mean: np.ndarray) -> np.ndarray:
        """Return the linear predictor whose mean is ``mean`` (numpy)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class IdentityLink(Link):
    """Identity inverse link, ``mean = eta`` (canonical for the Gaussian).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import IdentityLink
    >>> IdentityLink().inverse(torch.tensor([-1.5]))
    tensor([-1.5000])
    """

    name = "identity"

    def inverse(self, eta: torch.Tensor) -> torch.Tensor:
        return eta

    def log_inverse(self, eta: torch.Tensor) -> torch.Tensor:
        # a count family's mean under the identity link: valid only where the
        # model's predictor is positive by construction (Family.validate_link)
        return torch.log(eta)

    def link(self, mean: np.ndarray) -> np.ndarray:
        return np.asarray(mean, dtype=float)


class ExpLink(Link):
    """Exponential inverse link, ``mean = exp(eta)`` (canonical for counts).

    For ``eta > 30`` the exponential is continued by a logarithmic tail with
    the same value and slope, so a huge linear predictor gives a huge but
    finite rate instead of ``inf``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import ExpLink
    >>> ExpLink().log_inverse(torch.tensor([-800.0, 0.0]))
    tensor([-800.,    0.])
    """

    name = "exp"
    positive = True

    def inverse(self, eta: torch.Tensor) -> torch.Tensor:
        if _within_exp_range(eta):
            return torch.exp(eta)
        excess = torch.clamp(eta - EXP_TAIL_THRESHOLD, min=0.0)
        tail = math.exp(EXP_TAIL_THRESHOLD) * (1.0 + torch.log1p(excess))
        head = torch.exp(torch.clamp(eta, max=EXP_TAIL_THRESHOLD))
        return torch.where(eta <= EXP_TAIL_THRESHOLD, head, tail)

    def log_inverse(self, eta: torch.Tensor) -> torch.Tensor:
        if _within_exp_range(eta):
            return eta
        excess = torch.clamp(eta - EXP_TAIL_THRESHOLD, min=0.0)
        tail = EXP_TAIL_THRESHOLD + torch.log1p(torch.log1p(excess))
        return torch.where(eta <= EXP_TAIL_THRESHOLD, eta, tail)

    def link(self, mean: np.ndarray) -> np.ndarray:
        return np.log(mean)


class SoftplusLink(Link):
    """Softplus inverse link, ``mean = log(1 + exp(eta))``.

    Grows linearly for large ``eta`` (no overflow) and equals ``exp(eta)``
    for very negative ``eta``, where its logarithm is taken as ``eta`` itself.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import SoftplusLink
    >>> SoftplusLink().log_inverse(torch.tensor([-200.0]))
    tensor([-200.])
    """

    name = "softplus"
    positive = True

    def inverse(self, eta: torch.Tensor) -> torch.Tensor:
        return F.softplus(eta)

    def log_inverse(self, eta: torch.Tensor) -> torch.Tensor:
        # log(softplus(eta)) = eta + log1p(-softplus-correction); below -20 the
        # correction is < 1e-9 relative and softplus itself would underflow.
        safe = torch.clamp(eta, min=-20.0)
        return torch.where(eta < -20.0, eta, torch.log(F.softplus(safe)))

    def link(self, mean: np.ndarray) -> np.ndarray:
        mean = np.asarray(mean, dtype=float)
        # inverse softplus log(exp(m) - 1), written to stay finite for large m
        return mean + np.log(-np.expm1(-mean))


class ELU1Link(Link):
    """ELU-plus-one inverse link, ``mean = elu(eta) + 1``.

    Equal to ``exp(eta)`` for ``eta < 0`` and to ``1 + eta`` above: the
    output nonlinearity of the CNN encoders of Lurz et al. (2021).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import ELU1Link
    >>> ELU1Link().inverse(torch.tensor([0.0, 2.0]))
    tensor([1., 3.])
    """

    name = "elu1"
    positive = True

    def inverse(self, eta: torch.Tensor) -> torch.Tensor:
        return F.elu(eta) + 1.0

    def log_inverse(self, eta: torch.Tensor) -> torch.Tensor:
        return torch.where(eta < 0, eta, torch.log1p(torch.clamp(eta, min=0.0)))

    def link(self, mean: np.ndarray) -> np.ndarray:
        mean = np.asarray(mean, dtype=float)
        return np.where(mean < 1.0, np.log(mean), mean - 1.0)


class LogitLink(Link):
    """Logistic inverse link, ``mean = 1 / (1 + exp(-eta))`` (Bernoulli).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import LogitLink
    >>> LogitLink().inverse(torch.tensor([0.0]))
    tensor([0.5000])
    """

    name = "logit"
    positive = True

    def inverse(self, eta: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(eta)

    def log_inverse(self, eta: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(eta)

    def link(self, mean: np.ndarray) -> np.ndarray:
        mean = np.asarray(mean, dtype=float)
        return np.log(mean) - np.log1p(-mean)


LINKS: dict[str, type[Link]] = {
    cls.name: cls for cls in (IdentityLink, ExpLink, SoftplusLink, ELU1Link, LogitLink)
}


def get_link(link: str | Link) -> Link:
    """Return the link object for a name such as ``"exp"`` or ``"softplus"``.

    Parameters
    ----------
    link : str or Link
        One of ``"identity"``, ``"exp"``, ``"softplus"``, ``"elu1"``,
        ``"logit"``, or a :class:`Link` instance (returned unchanged).

    Returns
    -------
    link : Link

    Examples
    --------
    >>> from sklearn_cnnenc.links import get_link
    >>> get_link("softplus")
    SoftplusLink()
    """
    if isinstance(link, Link):
        return link
    if link not in LINKS:
        raise ValueError(f"Unknown link {link!r}; expected one of {sorted(LINKS)}.")
    return LINKS[link]()
