"""The module every estimator trains: predictor + inverse link + dispersion."""

from __future__ import annotations

import torch
from torch import nn

from ..links import Link

__all__ = ["EncodingModule"]


class EncodingModule(nn.Module):
    """Map a stimulus batch to the parameters of p(y | x).

    ``forward`` returns the linear predictor ``eta`` of shape
    ``(n_samples, n_outputs)`` (plus an optional fixed ``offset``); the mean
    response is ``link.inverse(eta)``. Families whose dispersion is trained
    keep an unconstrained ``raw_dispersion`` here, one value per neuron; the
    family maps it to the positive dispersion.

    With ``n_restarts=R > 1`` the predictor holds R independent copies of
    every neuron's problem (random restarts solved as one batch): ``eta`` has
    ``R * n_outputs`` columns, copy ``r`` of neuron ``j`` in column
    ``r * n_outputs + j``, and neuron ``j``'s offset is added to each of its
    copies (a view, no tiling); :meth:`keep` reduces it to one copy per neuron.

    Parameters
    ----------
    predictor : torch.nn.Module
        Stimulus to linear predictor (a GLM's affine map, an LN filter bank,
        a CNN core with its readout).
    link : Link
        Inverse link from the linear predictor to the mean.
    n_outputs : int
        Number of neurons.
    has_dispersion : bool, default=False
        Whether to hold a learnable per-neuron (raw) dispersion.
    n_restarts : int, default=1
        Copies of every neuron's problem in the predictor's columns.
    modulator : BehaviorModulator, optional
        Per-sample gain (and shift) from behavioural covariates: ``forward``
        then needs ``behavior=``.

    Notes
    -----
    ``forward`` passes ``eye_position`` (when given) to the predictor, whose
    readout shifts its positions with it (see :class:`EyeShifter`).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import get_link
    >>> from sklearn_cnnenc.nn import EncodingModule, LinearPredictor
    >>> module = EncodingModule(LinearPredictor(4, 2), get_link("exp"), n_outputs=2)
    >>> module.link.inverse(module(torch.zeros(3, 4))).detach()
    tensor([[1., 1.],
            [1., 1.],
            [1., 1.]])
    """

    def __init__(
        self,
        predictor: nn.Module,
        link: Link,
        n_outputs: int,
        has_dispersion: bool = False,
        n_restarts: int = 1,
        modulator: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.predictor = predictor
        self.link = link
        self.n_outputs = n_outputs
        self.n_restarts = n_restarts
        self.modulator = modulator
        if has_dispersion:
            dtype = next(predictor.parameters()).dtype
            self.raw_dispersion = nn.Parameter(
                torch.zeros(n_restarts * n_outputs, dtype=dtype)
            )
        else:
            self.register_parameter("raw_dispersion", None)

    def forward(
        self,
        X: torch.Tensor,
        offset: torch.Tensor | None = None,
        behavior: torch.Tensor | None = None,
        eye_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if eye_position is None:
            eta = self.predictor(X)
        else:
            eta = self.predictor(X, eye_position=eye_position)
        if self.modulator is not None:
            if behavior is None:
                raise ValueError("This module modulates its output by behaviour: pass behavior=.")
            eta = self.modulator(eta, behavior, self.link)
        if offset is None:
            return eta
        if self.n_restarts == 1:
            return eta + offset
        n_samples = len(eta)
        stacked = eta.reshape(n_samples, self.n_restarts, -1) + offset.unsqueeze(1)
        return stacked.reshape(n_samples, -1)

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        """Keep the problems at ``index``, one per neuron (e.g. the best restart of each)."""
        if len(index) != self.n_outputs:
            raise ValueError(
                f"keep needs one problem per neuron ({self.n_outputs}); got {len(index)}."
            )
        self.predictor.keep(index)
        if self.raw_dispersion is not None:
            self.raw_dispersion = nn.Parameter(self.raw_dispersion.detach()[index].clone())
        self.n_restarts = 1

    def regularizer(self) -> torch.Tensor:
        """The predictor's penalty (zero if it has none)."""
        if hasattr(self.predictor, "regularizer"):
            return self.predictor.regularizer()
        return torch.zeros((), dtype=next(self.parameters()).dtype)
