"""Backward-compatible home of the observation families.

The families now live in :mod:`sklearn_cnnenc.distributions`, one module
each; this module re-exports them.

Examples
--------
>>> from sklearn_cnnenc.families import get_family
>>> get_family("poisson").name
'poisson'
"""

from __future__ import annotations

from .distributions import (
    FAMILIES,
    NB_ALPHA_FLOOR,
    Bernoulli,
    Family,
    Gamma,
    Gaussian,
    NegativeBinomial,
    Poisson,
    ResponseDistribution,
    get_family,
    register_family,
)
from .distributions.negative_binomial import (  # noqa: F401 (re-exported for old imports)
    _log_rising_factorial_numpy,
    _log_rising_factorial_torch,
)

__all__ = [
    "Family",
    "Poisson",
    "Gaussian",
    "Bernoulli",
    "NegativeBinomial",
    "Gamma",
    "ResponseDistribution",
    "get_family",
    "register_family",
    "FAMILIES",
    "NB_ALPHA_FLOOR",
]
