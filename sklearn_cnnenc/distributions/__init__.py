"""Observation families ``p(y | mean)``, one module each, and their registry.

Every family is one subclass of :class:`Family` (see ``_base.py`` for what a
family owns); :func:`register_family` makes a new one usable by name in every
estimator, metric and decoder.

Examples
--------
>>> from sklearn_cnnenc.distributions import Family, Poisson, get_family, register_family
>>> get_family("gamma").default_link
'exp'
"""

from ._base import Family, ResponseDistribution
from ._registry import FAMILIES, get_family, register_family
from .bernoulli import Bernoulli
from .gamma import Gamma
from .gaussian import Gaussian
from .negative_binomial import NB_ALPHA_FLOOR, NegativeBinomial
from .poisson import Poisson
from .zero_inflated_gamma import ZeroInflatedGamma

__all__ = [
    "Family",
    "ResponseDistribution",
    "FAMILIES",
    "get_family",
    "register_family",
    "Poisson",
    "Gaussian",
    "Bernoulli",
    "NegativeBinomial",
    "Gamma",
    "ZeroInflatedGamma",
    "NB_ALPHA_FLOOR",
]
