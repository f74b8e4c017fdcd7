"""Torch helpers shared by inspection and decoding."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["LOG_2PI", "evaluating"]

LOG_2PI = math.log(2.0 * math.pi)
"""``log(2 pi)``, the constant of Gaussian log-densities."""


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Evaluation mode (BatchNorm running statistics, readout means) for the block.

    The training flag of every submodule is restored on exit.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.utils import evaluating
    >>> layer = torch.nn.Dropout()
    >>> with evaluating(layer):
    ...     layer.training
    False
    >>> layer.training
    True
    """
    modes = [(m, m.training) for m in module.modules()]
    module.train(False)
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode
