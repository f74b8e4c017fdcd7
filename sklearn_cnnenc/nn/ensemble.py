"""Several independent predictors trained as one: an ensemble of CNNs."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PredictorEnsemble"]


class PredictorEnsemble(nn.Module):
    """Independent copies of a predictor, trained side by side, then averaged.

    While training, ``forward`` concatenates the members' linear predictors
    (member ``r`` of neuron ``j`` in column ``r * n_outputs + j``, the
    layout of batched restarts in :class:`EncodingModule`), so that each
    member is fitted to the responses on its own. :meth:`average` then turns
    the ensemble into one predictor per neuron, the mean of the members'
    linear predictors: averaging a few fits from different starts removes
    much of the variance of any one of them (the main error of a CNN fitted
    to little data).

    Parameters
    ----------
    members : list of torch.nn.Module
        Predictors of the same output width (each has ``initialize_intercept``
        and may have ``regularizer``).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn.ensemble import PredictorEnsemble
    >>> ensemble = PredictorEnsemble([torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)])
    >>> ensemble(torch.randn(5, 3)).shape
    torch.Size([5, 4])
    >>> ensemble.average()
    >>> ensemble(torch.randn(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(self, members) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.averaged = False

    @property
    def core(self) -> nn.Module:
        """The first member's core (for inspection)."""
        return self.members[0].core

    @property
    def readout(self) -> nn.Module:
        """The first member's readout (for inspection)."""
        return self.members[0].readout

    @property
    def crop(self):
        """The members' crop of time series (see :class:`CNNPredictor`)."""
        return getattr(self.members[0], "crop", None)

    def average(self) -> None:
        """From now on, predict the mean of the members' linear predictors."""
        self.averaged = True

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        etas = [member(X) for member in self.members]
        if not self.averaged:
            return torch.cat(etas, dim=1)
        return torch.stack(etas).mean(dim=0)

    def regularizer(self) -> torch.Tensor:
        """Sum of the members' penalties (each member's loss is its own)."""
        return sum(member.regularizer() for member in self.members)

    def initialize_intercept(self, eta: torch.Tensor) -> None:
        """Start every member's biases at its chunk of ``eta`` (or all at ``eta``)."""
        chunks = (
            [eta] * len(self.members)
            if self.averaged
            else eta.reshape(len(self.members), -1)
        )
        for member, chunk in zip(self.members, chunks, strict=True):
            member.initialize_intercept(chunk)
