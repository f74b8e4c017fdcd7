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

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import get_link
    >>> from sklearn_cnnenc.nn import EncodingModule, LinearPredictor
    >>> module = EncodingModule(LinearPredictor(4, 2), get_link("exp"), n_outputs=2)
    >>> module.predict_mean(torch.zeros(3, 4)).detach()
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
    ) -> None:
        super().__init__()
        self.predictor = predictor
        self.link = link
        if has_dispersion:
            dtype = next(predictor.parameters()).dtype
            self.raw_dispersion = nn.Parameter(torch.zeros(n_outputs, dtype=dtype))
        else:
            self.register_parameter("raw_dispersion", None)

    def forward(self, X: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        eta = self.predictor(X)
        if offset is not None:
            eta = eta + offset
        return eta

    def predict_mean(self, X: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Expected response ``link.inverse(eta)``."""
        return self.link.inverse(self.forward(X, offset))

    def regularizer(self) -> torch.Tensor:
        """The predictor's penalty (zero if it has none)."""
        if hasattr(self.predictor, "regularizer"):
            return self.predictor.regularizer()
        return torch.zeros((), dtype=next(self.parameters()).dtype)
