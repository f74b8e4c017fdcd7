"""The registry of families known by name."""

from __future__ import annotations

from ._base import Family
from .bernoulli import Bernoulli
from .gamma import Gamma
from .gaussian import Gaussian
from .negative_binomial import NegativeBinomial
from .poisson import Poisson
from .zero_inflated_gamma import ZeroInflatedGamma

__all__ = ["FAMILIES", "register_family", "get_family"]

FAMILIES: dict[str, Family] = {}
"""Registered families by name (instances)."""


def register_family(family: Family, *, overwrite: bool = False) -> Family:
    """Make a family known by its name, to every estimator, metric and decoder.

    Parameters
    ----------
    family : Family
        An instance of a :class:`Family` subclass with a non-empty ``name``.
    overwrite : bool, default=False
        Replace a family already registered under that name.

    Returns
    -------
    family : Family
        The registered instance.

    Raises
    ------
    TypeError
        If ``family`` is not a :class:`Family` instance.
    ValueError
        If the name is empty or taken (and ``overwrite`` is False).

    Examples
    --------
    >>> from sklearn_cnnenc.distributions import Poisson, get_family, register_family
    >>> class Counts(Poisson):
    ...     name = "my_counts"
    >>> _ = register_family(Counts(), overwrite=True)
    >>> get_family("my_counts").name
    'my_counts'
    """
    if not isinstance(family, Family):
        raise TypeError(
            f"register_family expects a Family instance; got {type(family).__name__}."
        )
    if not isinstance(family.name, str) or not family.name:
        raise ValueError("A registered family needs a non-empty string name.")
    if family.name in FAMILIES and not overwrite:
        raise ValueError(
            f"A family named {family.name!r} is already registered; pass overwrite=True "
            "to replace it."
        )
    FAMILIES[family.name] = family
    return family


def get_family(family: str | Family) -> Family:
    """Return the family object for a name such as ``"poisson"``.

    Parameters
    ----------
    family : str or Family
        A registered name (``"poisson"``, ``"gaussian"``, ``"bernoulli"``,
        ``"negative_binomial"``, ``"gamma"``, ``"zig"`` or one given to
        :func:`register_family`), or a :class:`Family` instance.

    Returns
    -------
    family : Family

    Examples
    --------
    >>> from sklearn_cnnenc.distributions import get_family
    >>> get_family("negative_binomial").has_dispersion
    True
    """
    if isinstance(family, Family):
        return family
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; expected one of {sorted(FAMILIES)}.")
    return FAMILIES[family]


for _family in (
    Poisson(), Gaussian(), Bernoulli(), NegativeBinomial(), Gamma(), ZeroInflatedGamma()
):
    register_family(_family)
del _family
