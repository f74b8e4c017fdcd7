"""Readouts: shared feature maps -> one linear predictor per neuron.

Every readout takes the core's output ``(n, C, H, W)`` (or ``(n, C, T)`` for
time series, read as a ``1 x T`` map), returns ``(n, n_outputs)``, holds a
per-neuron ``bias`` that :meth:`initialize_intercept` sets to the link of
each neuron's mean response, and owns an L1 penalty on its weights
(``gamma_readout``) as :meth:`regularizer`.

* :class:`FactorizedReadout` (Klindt et al. 2017): a spatial mask times a
  feature vector per neuron, ``sum_c w_kc sum_xy m_k(x, y) F_c(x, y)``:
  ``H W + C`` weights per neuron instead of ``H W C``.
* :class:`GaussianReadout` (Lurz et al. 2021): each neuron reads the feature
  vector at one learned position (bilinear interpolation with
  ``grid_sample``); while training the position is drawn from a Gaussian
  around its mean whose width is learned, which lets gradients find the
  position. ``C + 3`` parameters per neuron.
* :class:`PooledReadout`: global average pooling then a linear map, fully
  translation invariant.
* :class:`DenseReadout`: a linear map of the flattened feature maps.
* :class:`LastStepReadout`: for causal time-series cores, a linear map of
  the feature vector of the last time bin (the bin whose response is
  predicted).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FactorizedReadout",
    "GaussianReadout",
    "PooledReadout",
    "DenseReadout",
    "LastStepReadout",
    "READOUTS",
    "make_readout",
]

# initial weights keep the stimulus-driven part of the linear predictor
# small (std ~0.1), so that every neuron starts near its mean rate
_INIT_SCALE = 0.1


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(2) if x.dim() == 3 else x


class _Readout(nn.Module):
    def __init__(self, in_channels, in_size, n_outputs, gamma_readout, dtype) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.in_size = tuple(int(s) for s in in_size)
        self.n_outputs = int(n_outputs)
        self.gamma_readout = gamma_readout
        self.bias = nn.Parameter(torch.zeros(n_outputs, dtype=dtype))

    def initialize_intercept(self, eta: torch.Tensor) -> None:
        """Set each neuron's bias (e.g. to the link of its mean response)."""
        with torch.no_grad():
            self.bias.copy_(eta)

    def _weights(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def regularizer(self) -> torch.Tensor:
        """``gamma_readout`` times the L1 norm of the readout weights (a scalar)."""
        if self.gamma_readout == 0:
            return torch.zeros((), dtype=self.bias.dtype, device=self.bias.device)
        return self.gamma_readout * sum(w.abs().sum() for w in self._weights())

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, in_size={self.in_size}, n_outputs={self.n_outputs}"


class FactorizedReadout(_Readout):
    """Spatial mask x feature weights per neuron (Klindt et al. 2017).

    Parameters
    ----------
    in_channels : int
    in_size : (int, int)
        Height and width of the feature maps.
    n_outputs : int
    gamma_readout : float, default=0.0
        L1 strength on the masks and the feature weights.
    dtype : torch.dtype, default=torch.float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import FactorizedReadout
    >>> readout = FactorizedReadout(8, (5, 5), n_outputs=3)
    >>> readout(torch.randn(4, 8, 5, 5)).shape
    torch.Size([4, 3])
    """

    def __init__(self, in_channels, in_size, n_outputs, gamma_readout=0.0, dtype=torch.float32):
        super().__init__(in_channels, in_size, n_outputs, gamma_readout, dtype)
        n_positions = self.in_size[0] * self.in_size[1]
        self.spatial = nn.Parameter(
            torch.randn(n_outputs, n_positions, dtype=dtype) / math.sqrt(n_positions)
        )
        self.features = nn.Parameter(
            torch.randn(n_outputs, in_channels, dtype=dtype) * _INIT_SCALE / math.sqrt(in_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (n, C, positions) @ (positions, K): each neuron's masked sum per channel
        pooled = _as_4d(x).flatten(2) @ self.spatial.T
        return (pooled * self.features.T).sum(1) + self.bias

    def _weights(self):
        return [self.spatial, self.features]

    def masks(self) -> torch.Tensor:
        """Spatial masks as ``(n_outputs, H, W)``."""
        return self.spatial.reshape(self.n_outputs, *self.in_size)


class GaussianReadout(_Readout):
    """Each neuron reads the features at one learned position (Lurz et al. 2021).

    Positions live in normalised coordinates ``[-1, 1]^2`` (x = width, y =
    height). While training, a position is drawn for every batch from
    ``N(mu_k, sigma_k^2)`` (one draw per neuron, shared by the batch) and
    clipped to the map; in evaluation mode the mean ``mu_k`` is read. The
    features there are interpolated bilinearly.

    Parameters
    ----------
    in_channels : int
    in_size : (int, int)
    n_outputs : int
    gamma_readout : float, default=0.0
        L1 strength on the feature weights.
    init_mu_range : float, default=0.5
        Initial positions are uniform in ``[-init_mu_range, init_mu_range]^2``.
    init_sigma : float, default=0.5
        Initial width of the position distribution (normalised units).
    dtype : torch.dtype, default=torch.float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import GaussianReadout
    >>> readout = GaussianReadout(8, (5, 5), n_outputs=3).eval()
    >>> readout(torch.randn(4, 8, 5, 5)).shape
    torch.Size([4, 3])
    >>> tuple(readout.positions().shape)
    (3, 2)
    """

    def __init__(
        self,
        in_channels,
        in_size,
        n_outputs,
        gamma_readout=0.0,
        init_mu_range: float = 0.5,
        init_sigma: float = 0.5,
        dtype=torch.float32,
    ):
        super().__init__(in_channels, in_size, n_outputs, gamma_readout, dtype)
        mu = torch.empty(n_outputs, 2, dtype=dtype).uniform_(-init_mu_range, init_mu_range)
        if self.in_size[0] == 1:
            mu[:, 1] = 0.0
        self.mu = nn.Parameter(mu)
        self.sigma = nn.Parameter(torch.full((n_outputs, 1), init_sigma, dtype=dtype))
        self.features = nn.Parameter(
            torch.randn(n_outputs, in_channels, dtype=dtype) * _INIT_SCALE / math.sqrt(in_channels)
        )
        # positions sampled in training come from this generator (on the module's
        # device) when set, else from torch's global one; estimators give each fit its own
        self.generator: torch.Generator | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["generator"] = None  # a CUDA generator must not travel to a CPU-only machine
        return state

    def __setstate__(self, state):
        state.setdefault("generator", None)  # modules pickled before the attribute existed
        super().__setstate__(state)

    def positions(self) -> torch.Tensor:
        """Mean read-out positions ``(n_outputs, 2)`` as (x, y) in ``[-1, 1]``."""
        return self.mu.clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Read the features; ``shift`` ``(n, 2)`` moves every position of a sample."""
        x = _as_4d(x)
        if self.training:
            noise = torch.randn(self.mu.shape, dtype=self.mu.dtype, device=self.mu.device,
                                generator=self.generator)
            grid = self.mu + self.sigma * noise
        else:
            grid = self.mu
        if self.in_size[0] == 1:
            # a 1 x T map has no height: keep every position on its one row
            grid = torch.stack([grid[:, 0], torch.zeros_like(grid[:, 1])], dim=1)
        grid = grid.reshape(1, self.n_outputs, 1, 2)
        if shift is None:
            grid = grid.clamp(-1.0, 1.0).expand(len(x), -1, -1, -1)
        else:
            if self.in_size[0] == 1:
                shift = torch.stack([shift[:, 0], torch.zeros_like(shift[:, 1])], dim=1)
            grid = (grid + shift.reshape(-1, 1, 1, 2)).clamp(-1.0, 1.0)
        sampled = F.grid_sample(x, grid, align_corners=True).squeeze(-1)  # (n, C, K)
        return (sampled * self.features.T).sum(1) + self.bias

    def _weights(self):
        return [self.features]


class PooledReadout(_Readout):
    """Global average pooling, then a linear map: responses invariant to translations.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import PooledReadout
    >>> PooledReadout(8, (5, 5), n_outputs=3)(torch.randn(4, 8, 5, 5)).shape
    torch.Size([4, 3])
    """

    def __init__(self, in_channels, in_size, n_outputs, gamma_readout=0.0, dtype=torch.float32):
        super().__init__(in_channels, in_size, n_outputs, gamma_readout, dtype)
        self.weight = nn.Parameter(
            torch.randn(n_outputs, in_channels, dtype=dtype) * _INIT_SCALE / math.sqrt(in_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, _as_4d(x).mean((2, 3)), self.weight.T)

    def _weights(self):
        return [self.weight]


class DenseReadout(_Readout):
    """A linear map of the flattened feature maps (``C H W`` weights per neuron).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import DenseReadout
    >>> DenseReadout(8, (5, 5), n_outputs=3)(torch.randn(4, 8, 5, 5)).shape
    torch.Size([4, 3])
    """

    def __init__(self, in_channels, in_size, n_outputs, gamma_readout=0.0, dtype=torch.float32):
        super().__init__(in_channels, in_size, n_outputs, gamma_readout, dtype)
        n_inputs = in_channels * self.in_size[0] * self.in_size[1]
        self.weight = nn.Parameter(
            torch.randn(n_outputs, n_inputs, dtype=dtype) * _INIT_SCALE / math.sqrt(n_inputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.flatten(1), self.weight.T)

    def _weights(self):
        return [self.weight]


class LastStepReadout(_Readout):
    """A linear map of the features at the last time bin of a ``1 x T`` map.

    With a causal core this predicts the response in the last bin of each
    input window from the stimulus up to and including that bin.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import LastStepReadout
    >>> LastStepReadout(8, (1, 10), n_outputs=3)(torch.randn(4, 8, 10)).shape
    torch.Size([4, 3])
    """

    def __init__(self, in_channels, in_size, n_outputs, gamma_readout=0.0, dtype=torch.float32):
        super().__init__(in_channels, in_size, n_outputs, gamma_readout, dtype)
        if self.in_size[0] != 1:
            raise ValueError(
                "The 'last' readout reads the last time bin of a time series; it needs "
                f"1 x T feature maps, got {self.in_size[0]} x {self.in_size[1]}."
            )
        self.weight = nn.Parameter(
            torch.randn(n_outputs, in_channels, dtype=dtype) * _INIT_SCALE / math.sqrt(in_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, _as_4d(x)[:, :, 0, -1], self.weight.T)

    def _weights(self):
        return [self.weight]


READOUTS = {
    "factorized": FactorizedReadout,
    "gaussian": GaussianReadout,
    "pooled": PooledReadout,
    "dense": DenseReadout,
    "last": LastStepReadout,
}


def make_readout(name: str, in_channels, in_size, n_outputs, gamma_readout=0.0, dtype=None):
    """Build the readout called ``name`` (a key of ``READOUTS``).

    Examples
    --------
    >>> from sklearn_cnnenc.nn import make_readout
    >>> type(make_readout("pooled", 8, (5, 5), 3)).__name__
    'PooledReadout'
    """
    if name not in READOUTS:
        raise ValueError(f"Unknown readout {name!r}; use one of {sorted(READOUTS)}.")
    dtype = torch.float32 if dtype is None else dtype
    return READOUTS[name](in_channels, in_size, n_outputs, gamma_readout=gamma_readout, dtype=dtype)
