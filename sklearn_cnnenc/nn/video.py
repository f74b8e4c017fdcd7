"""Spatiotemporal (movie) core: space-time factorised, causal 3-D convolutions.

:class:`CausalCore3d` is the movie counterpart of :class:`Core2d`: every layer
is a *spatial* convolution with a ``1 x k x k`` kernel followed by a
*temporal* convolution with a ``t x 1 x 1`` kernel, padded on the left in time
only (causal: a feature at frame ``f`` depends on frames ``<= f``), then
BatchNorm and a nonlinearity. This is the factorisation of neuralpredictors'
``Factorized3dCore`` (Sinz lab; Sensorium 2023), restricted to causal time.
:class:`VideoPredictor` reads the core's feature maps at the *last* frame with
any image readout, so a window of frames predicts the response at its last
frame.

Layout: movies are ``(n, T, C, H, W)`` (frames first, as a stack of images);
the predictor moves the channel axis in front of time for ``Conv3d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cnn import CNNPredictor
from .cores import (
    _EPS,
    _LAPLACE_1D,
    _LAPLACE_2D,
    ACTIVATIONS,
    _group_sparsity,
    _positive_ints,
    _run_blocks_tracking_activity,
    per_layer,
)

__all__ = ["CausalCore3d", "VideoPredictor"]


def _spatial_padding(padding, kernel: int) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding, padding
    raise ValueError(f"padding must be 'valid', 'same' or an int >= 0; got {padding!r}.")


class _FactorizedBlock(nn.Module):
    """Spatial conv (1, k, k) -> causal temporal conv (t, 1, 1) -> BatchNorm -> nonlinearity."""

    def __init__(self, c_in, c_out, kernel, temporal, pad, batch_norm, activation, dtype):
        super().__init__()
        self.pad = pad  # F.pad order: (W left, W right, H top, H bottom)
        self.spatial = nn.Conv3d(c_in, c_out, (1, kernel, kernel), bias=False, dtype=dtype)
        self.temporal = nn.Conv3d(
            c_out, c_out, (temporal, 1, 1), bias=not batch_norm, dtype=dtype
        )
        self.temporal_pad = temporal - 1
        self.norm = nn.BatchNorm3d(c_out, dtype=dtype) if batch_norm else nn.Identity()
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, (*self.pad, 0, 0))
        x = self.spatial(x)
        # zeros before the first frame only: causal in time
        x = F.pad(x, (0, 0, 0, 0, self.temporal_pad, 0))
        return self.activation(self.norm(self.temporal(x)))


class CausalCore3d(nn.Module):
    """Causal, space-time factorised 3-D convolutional core for movies.

    Each of ``n_layers`` blocks is a spatial convolution (``1 x k x k``), a
    causal temporal convolution (``t x 1 x 1``, zeros padded before the first
    frame only), BatchNorm and a nonlinearity. Output frames are aligned
    with input frames: output frame ``f`` sees input frames ``f - R_t + 1
    .. f`` with ``R_t = 1 + sum_l (t_l - 1)``.

    Parameters
    ----------
    in_channels : int
    input_size : (int, int, int)
        ``(T, H, W)``: frames per window, height, width.
    n_layers : int, default=2
    channels : int or list of int, default=16
    kernel_size : int or list of int, default=(9, 5)
        Spatial kernel per layer (a list's last entry repeats, see
        :func:`per_layer`).
    temporal_kernel_size : int or list of int, default=5
        Temporal kernel per layer, in frames.
    padding : "valid", "same", int or list of these, default=("valid", "same")
        Spatial padding per layer (time is always padded causally).
    batch_norm : bool, default=True
    activation : {"elu", "relu", "softplus", "identity"}, default="elu"
    gamma_input : float, default=0.0
        Smoothness of the first layer: squared 2-D Laplacian of its spatial
        filters over their squared norm, plus the same with a 1-D Laplacian
        for its temporal filters (scale-free).
    gamma_hidden : float, default=0.0
        Group sparsity of the hidden spatial filters over input channels.
    gamma_activity : float, default=0.0
        L1 on the activations of every layer (training batches).
    dtype : torch.dtype, default=torch.float32

    Attributes
    ----------
    out_channels : int
    output_size : (int, int)
        Height and width of the output maps (time keeps its length).
    receptive_field : (int, int, int)
        ``(frames, height, width)`` seen by one output unit.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import CausalCore3d
    >>> core = CausalCore3d(1, (6, 16, 16), channels=4, temporal_kernel_size=3)
    >>> core(torch.randn(2, 1, 6, 16, 16)).shape
    torch.Size([2, 4, 6, 8, 8])
    >>> core.receptive_field
    (5, 13, 13)
    """

    causal = True

    def __init__(
        self,
        in_channels: int,
        input_size: tuple[int, int, int],
        *,
        n_layers: int = 2,
        channels=16,
        kernel_size=(9, 5),
        temporal_kernel_size=5,
        padding=("valid", "same"),
        batch_norm: bool = True,
        activation: str = "elu",
        gamma_input: float = 0.0,
        gamma_hidden: float = 0.0,
        gamma_activity: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}."
            )
        if len(input_size) != 3:
            raise ValueError(f"input_size must be (T, H, W); got {tuple(input_size)}.")
        self.in_channels = int(in_channels)
        self.input_size = tuple(int(s) for s in input_size)
        self.n_layers = int(n_layers)
        self.channels = _positive_ints(channels, n_layers, "channels")
        self.kernel_size = _positive_ints(kernel_size, n_layers, "kernel_size")
        self.temporal_kernel_size = _positive_ints(
            temporal_kernel_size, n_layers, "temporal_kernel_size"
        )
        self.padding = per_layer(padding, n_layers, "padding")
        self.gamma_input = gamma_input
        self.gamma_hidden = gamma_hidden
        self.gamma_activity = gamma_activity
        self.register_buffer("_laplace2d", _LAPLACE_2D.to(dtype)[None, None], persistent=False)
        self.register_buffer("_laplace1d", _LAPLACE_1D.to(dtype)[None, None], persistent=False)

        blocks = []
        _, height, width = self.input_size
        c_in = self.in_channels
        for layer in range(self.n_layers):
            k = self.kernel_size[layer]
            top, bottom = _spatial_padding(self.padding[layer], k)
            height, width = height + top + bottom - k + 1, width + top + bottom - k + 1
            if height < 1 or width < 1:
                raise ValueError(
                    f"Layer {layer + 1}: the spatial kernel ({k}) is larger than its input "
                    f"({self.input_size[1]}x{self.input_size[2]} after earlier layers); use "
                    "smaller kernels, fewer layers, padding='same' or larger frames."
                )
            blocks.append(
                _FactorizedBlock(
                    c_in,
                    self.channels[layer],
                    k,
                    self.temporal_kernel_size[layer],
                    (top, bottom, top, bottom),
                    batch_norm,
                    activation,
                    dtype,
                )
            )
            c_in = self.channels[layer]
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = c_in
        self.output_size = (height, width)
        self._activity: torch.Tensor | None = None

    @property
    def receptive_field(self) -> tuple[int, int, int]:
        """``(frames, height, width)`` of the input seen by one output unit."""
        frames = 1 + sum(t - 1 for t in self.temporal_kernel_size)
        space = 1 + sum(k - 1 for k in self.kernel_size)
        return frames, space, space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps ``(n, C_out, T, H', W')`` of movies ``(n, C, T, H, W)``."""
        return _run_blocks_tracking_activity(self, x)

    def first_layer_filters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial ``(n, k, k)`` and temporal ``(n, t)`` first-layer filters."""
        block = self.blocks[0]
        k = self.kernel_size[0]
        spatial = block.spatial.weight.reshape(-1, k, k)
        temporal = block.temporal.weight.reshape(-1, self.temporal_kernel_size[0])
        return spatial, temporal

    def regularizer(self) -> torch.Tensor:
        """Sum of the core's penalties (a scalar); consumes the recorded activity."""
        param = self.blocks[0].spatial.weight
        total = torch.zeros((), dtype=param.dtype, device=param.device)
        if self.gamma_input > 0:
            spatial, temporal = self.first_layer_filters()
            lap = F.conv2d(spatial[:, None], self._laplace2d, padding=1)
            total = total + self.gamma_input * lap.pow(2).sum() / (spatial.pow(2).sum() + _EPS)
            if temporal.shape[1] > 1:
                lap_t = F.conv2d(temporal[:, None, None], self._laplace1d, padding=(0, 1))
                total = total + self.gamma_input * lap_t.pow(2).sum() / (
                    temporal.pow(2).sum() + _EPS
                )
        if self.gamma_hidden > 0 and self.n_layers > 1:
            for block in self.blocks[1:]:
                weight = block.spatial.weight.flatten(2)  # (out, in, k*k)
                total = total + self.gamma_hidden * _group_sparsity(weight)
        if self.gamma_activity > 0 and self._activity is not None:
            total = total + self.gamma_activity * self._activity
            self._activity = None
        return total

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_activity"] = None  # part of an autograd graph: never pickled
        return state


class VideoPredictor(CNNPredictor):
    """Movie windows -> causal 3-D core -> features at the last frame -> image readout.

    Parameters
    ----------
    core : CausalCore3d
    readout : torch.nn.Module
        An image readout taking ``(n, C, H', W')`` (factorized, gaussian,
        pooled or dense).
    crop : int, optional
        Keep only the last ``crop`` frames of each window (the temporal
        receptive field: earlier frames cannot reach the last output frame).

    Penalties and the intercept's start are :class:`CNNPredictor`'s; only
    the input path differs.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import CausalCore3d, FactorizedReadout, VideoPredictor
    >>> core = CausalCore3d(1, (4, 12, 12), channels=4, kernel_size=5, temporal_kernel_size=2)
    >>> readout = FactorizedReadout(4, core.output_size, n_outputs=3)
    >>> VideoPredictor(core, readout, crop=3)(torch.randn(5, 8, 1, 12, 12)).shape
    torch.Size([5, 3])
    """

    def __init__(self, core: CausalCore3d, readout: nn.Module, crop: int | None = None) -> None:
        super().__init__(core, readout, crop=crop)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Linear predictors ``(n, n_outputs)`` of movie windows ``(n, T, C, H, W)``."""
        if self.crop is not None:
            X = X[:, -self.crop :]
        features = self.core(X.transpose(1, 2))
        return self.readout(features[:, :, -1])
