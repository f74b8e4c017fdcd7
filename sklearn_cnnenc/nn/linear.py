"""The linear predictor of a generalised linear model."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LinearPredictor"]


class LinearPredictor(nn.Module):
    """Affine map from features to one linear predictor per neuron.

    ``eta[:, k] = X @ weight[k] + bias[k]``. The ridge penalty is separable
    over neurons, so a population is a batch of independent problems.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_outputs : int
        Number of neurons (columns of the response).
    fit_intercept : bool, default=True
        Whether to learn a per-neuron bias (never penalised).
    l2 : float, default=0.0
        Ridge strength: the penalty of neuron k is ``l2 / 2 * ||weight[k]||^2``.
    penalty_weights : tensor of shape (n_features,), optional
        Per-feature factors of the ridge penalty,
        ``l2 / 2 * sum_j penalty_weights[j] * weight[k, j]^2`` (0: unpenalised).
    dtype : torch.dtype, default=torch.float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import LinearPredictor
    >>> predictor = LinearPredictor(n_features=3, n_outputs=2)
    >>> predictor(torch.ones(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        fit_intercept: bool = True,
        l2: float = 0.0,
        dtype: torch.dtype = torch.float32,
        penalty_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.l2 = l2
        if penalty_weights is None:
            self.penalty_weights = None
        else:
            self.register_buffer(
                "penalty_weights",
                torch.as_tensor(penalty_weights, dtype=dtype).clone(),
                persistent=False,  # a setting, not a fitted state: warm starts keep it
            )
        self.weight = nn.Parameter(torch.zeros(n_outputs, n_features, dtype=dtype))
        if fit_intercept:
            self.bias = nn.Parameter(torch.zeros(n_outputs, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return X @ self.weight.T
        return torch.addmm(self.bias, X, self.weight.T)

    def regularizer(self) -> torch.Tensor:
        """Per-neuron ridge penalty, shape (n_outputs,)."""
        if self.penalty_weights is None:
            return 0.5 * self.l2 * (self.weight**2).sum(dim=1)
        return 0.5 * self.l2 * (self.weight**2 @ self.penalty_weights)

    def initialize_intercept(self, eta: torch.Tensor) -> None:
        """Set the bias to the linear predictor of each neuron's mean response."""
        if self.bias is not None:
            with torch.no_grad():
                self.bias.copy_(eta)
