"""Convolutional cores: stimulus -> shared feature maps.

A core is a stack of ``n_layers`` blocks, each

    convolution -> bias -> BatchNorm (optional) -> nonlinearity -> pooling (optional)

shared by every neuron of a population; a readout (:mod:`.readouts`) then
maps the feature maps to one value per neuron (Klindt et al. 2017). Two
flavours:

* :class:`Core2d` for images ``(n, C, H, W)``;
* :class:`CausalCore1d` for time series ``(n, C, T)``: dilated 1-D
  convolutions that are *causal* (an output never depends on a later input
  bin) and *end-aligned* (the last output always ends at the last input bin,
  whatever the strides), the temporal model of the reference chapter.

Both are the same stack on 4-D tensors (a time series is a ``1 x T`` image
with ``1 x k`` kernels, padded on the left only), so every option works the
same way in both. Each core owns its penalties (:meth:`regularizer`):

* ``gamma_input``: smoothness of the first-layer filters, the squared
  Laplacian of the filters over their squared norm (scale-free, so BatchNorm
  cannot defeat it by shrinking the weights);
* ``gamma_hidden``: group sparsity of the hidden filters, for each output
  channel the sum of the norms of its per-input-channel kernels over the
  norm of the whole filter (prunes input channels, scale-free);
* ``gamma_activity``: L1 on the activations of every layer for the current
  training batch, the sparseness prior under which Gabor-like filters
  emerge on natural images. The core records this penalty during a
  training ``forward`` and hands it over (once) in :meth:`regularizer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .locally_connected import LocallyConnected2d, _is_int

__all__ = [
    "Core2d",
    "CausalCore1d",
    "ACTIVATIONS",
    "per_layer",
    "receptive_field",
    "resolve_architecture",
    "resolve_dilation",
]

ACTIVATIONS = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

# the isotropic 9-point Laplacian (as in neuralpredictors) and its 1-D analogue
_LAPLACE_2D = torch.tensor([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]])
_LAPLACE_1D = torch.tensor([[-1.0, 2.0, -1.0]])
# keeps the gradients of the square roots and ratios finite at all-zero filters
_EPS = 1e-12


def per_layer(value, n_layers: int, name: str) -> list:
    """Expand a per-layer setting to a list of ``n_layers`` entries.

    A scalar applies to every layer; a list gives the value of each layer in
    turn and its last entry repeats for deeper layers, so ``[9, 5]`` means a
    9-wide first layer and 5-wide hidden layers for any depth (entries
    beyond ``n_layers`` are unused). This keeps a grid search over
    ``n_layers`` valid for a fixed list.

    Parameters
    ----------
    value : scalar or sequence
    n_layers : int
    name : str
        Parameter name for error messages.

    Returns
    -------
    values : list of length n_layers

    Examples
    --------
    >>> from sklearn_cnnenc.nn import per_layer
    >>> per_layer([9, 5], 3, "kernel_size")
    [9, 5, 5]
    >>> per_layer(16, 2, "channels")
    [16, 16]
    """
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value] * n_layers
    values = list(value)
    if not values:
        raise ValueError(f"{name} must not be an empty list.")
    return [values[min(i, len(values) - 1)] for i in range(n_layers)]


def _positive_ints(value, n_layers: int, name: str) -> list[int]:
    """Per-layer positive integers; every list entry is checked, used or not."""
    entries = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not all(_is_int(v) and v >= 1 for v in entries):
        raise ValueError(
            f"{name} must be a positive integer or a list of positive integers; got {value!r}."
        )
    return [int(v) for v in per_layer(value, n_layers, name)]


def resolve_dilation(dilation, n_layers: int) -> list[int]:
    """Per-layer dilations; ``"exponential"`` is ``2^(i-1)`` for layer ``i = 1..n_layers``.

    Parameters
    ----------
    dilation : int, list of int or "exponential"
        A positive integer for every layer, a list per layer (its last entry
        repeating, as in :func:`per_layer`), or ``"exponential"``.
    n_layers : int

    Returns
    -------
    dilations : list of int of length n_layers

    Raises
    ------
    ValueError
        For any other string, or entries that are not positive integers.

    Examples
    --------
    >>> from sklearn_cnnenc.nn import resolve_dilation
    >>> resolve_dilation("exponential", 4)
    [1, 2, 4, 8]
    >>> resolve_dilation([1, 3], 3)
    [1, 3, 3]
    """
    if isinstance(dilation, str):
        if dilation != "exponential":
            raise ValueError(
                f"dilation must be an int, a list of ints or 'exponential'; got {dilation!r}."
            )
        return [2**i for i in range(n_layers)]
    return _positive_ints(dilation, n_layers, "dilation")


def receptive_field(kernel_size, dilation, stride, pool_size=None) -> int:
    """Extent along one axis of the input seen by one output of a stack of layers.

    The one implementation of the receptive-field arithmetic: the cores,
    :class:`~sklearn_cnnenc.CNNEncoder` and
    :func:`~sklearn_cnnenc.inspection.receptive_field_size` all call it.

    Parameters
    ----------
    kernel_size, dilation, stride : list of int
        Per layer.
    pool_size : int or list of int, optional
        Size (and stride) of the pooling after every layer, or per layer
        (1: no pooling).

    Returns
    -------
    extent : int

    Examples
    --------
    >>> from sklearn_cnnenc.nn.cores import receptive_field
    >>> receptive_field([3, 3, 3], [1, 2, 4], [1, 1, 1])  # 1 + (3 - 1) * (1 + 2 + 4)
    15
    """
    if pool_size is None:
        pool_size = 1
    pools = pool_size if isinstance(pool_size, Sequence) else [pool_size] * len(kernel_size)
    extent, jump = 1, 1
    for kernel, step, gap, pool in zip(kernel_size, stride, dilation, pools, strict=True):
        extent += (kernel - 1) * gap * jump
        jump *= step
        extent += (pool - 1) * jump
        jump *= pool
    return extent


_POOLING_ERROR = "pooling must be None, 'max', 'avg' or a pair like ('max', 2); got {!r}."


def _resolve_pooling(pooling) -> tuple[str, int] | None:
    if pooling is None:
        return None
    if isinstance(pooling, str):
        kind, size = pooling, 2
    else:
        try:
            kind, size = pooling
        except (TypeError, ValueError):
            raise ValueError(_POOLING_ERROR.format(pooling)) from None
    if kind not in ("max", "avg") or not _is_int(size) or size < 1:
        raise ValueError(_POOLING_ERROR.format(pooling))
    return kind, int(size)


def _resolve_padding(padding, n_layers: int) -> list:
    entries = padding if isinstance(padding, Sequence) and not isinstance(padding, str) else [
        padding
    ]
    for value in entries:
        if not (value in ("valid", "same") or (_is_int(value) and value >= 0)):
            raise ValueError(
                "padding must be 'valid', 'same', a non-negative int or a list of "
                f"these; got {padding!r}."
            )
    return [v if isinstance(v, str) else int(v) for v in per_layer(padding, n_layers, "padding")]


def resolve_architecture(
    n_layers, channels, kernel_size, dilation, stride, pooling, padding
) -> dict:
    """Validate a core's layer settings and expand them to one entry per layer.

    The single place where these settings are checked: the cores call it,
    and so does :class:`~sklearn_cnnenc.CNNEncoder` (which needs the
    receptive field before it builds a core). Integers may be Python or
    numpy integers (a grid over ``np.arange`` works); floats and bools are
    rejected, never truncated.

    Parameters
    ----------
    n_layers : int
    channels, kernel_size, stride : int or list of int
        Positive; per layer as in :func:`per_layer`.
    dilation : int, list of int or "exponential"
    pooling : None, "max", "avg" or (kind, size)
    padding : "valid", "same", int or list of these

    Returns
    -------
    architecture : dict
        ``n_layers`` (int); ``channels``, ``kernel_size``, ``dilation``,
        ``stride``, ``padding`` (lists of length ``n_layers``); ``pooling``
        (None or ``(kind, size)``); ``receptive_field`` (int, along each
        convolved axis).

    Raises
    ------
    ValueError
        Naming the first invalid setting.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.nn.cores import resolve_architecture
    >>> spec = resolve_architecture(3, 8, [9, 5], "exponential", 1, ("max", np.int64(2)), "same")
    >>> spec["kernel_size"], spec["dilation"], spec["pooling"], spec["receptive_field"]
    ([9, 5, 5], [1, 2, 4], ('max', 2), 96)
    """
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer; got {n_layers!r}.")
    n_layers = int(n_layers)
    spec = {
        "n_layers": n_layers,
        "channels": _positive_ints(channels, n_layers, "channels"),
        "kernel_size": _positive_ints(kernel_size, n_layers, "kernel_size"),
        "dilation": resolve_dilation(dilation, n_layers),
        "stride": _positive_ints(stride, n_layers, "stride"),
        "pooling": _resolve_pooling(pooling),
        "padding": _resolve_padding(padding, n_layers),
    }
    spec["receptive_field"] = receptive_field(
        spec["kernel_size"],
        spec["dilation"],
        spec["stride"],
        None if spec["pooling"] is None else spec["pooling"][1],
    )
    return spec


def _group_sparsity(weight: torch.Tensor) -> torch.Tensor:
    """Sum over filters of ``sum_c ||W_oc|| / ||W_o||`` (scale-free group sparsity).

    ``weight`` is ``(..., out, in, kernel entries)``: a group is one input
    channel's kernel of one output filter.
    """
    group_norms = torch.sqrt(weight.pow(2).sum(-1) + _EPS)
    filter_norms = torch.sqrt(weight.pow(2).sum((-1, -2)) + _EPS)
    return (group_norms.sum(-1) / filter_norms).sum()


class _Block(nn.Module):
    """One layer: (pad) -> conv -> bias -> BatchNorm -> nonlinearity -> (crop) -> pool."""

    def __init__(self, conv, pad, batch_norm_channels, activation, pool_crop, pool) -> None:
        super().__init__()
        self.pad = pad
        self.conv = conv
        self.norm = (
            nn.BatchNorm2d(batch_norm_channels, dtype=conv.weight.dtype)
            if batch_norm_channels
            else nn.Identity()
        )
        self.activation = ACTIVATIONS[activation]()
        self.pool_crop = pool_crop
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        x = self.activation(self.norm(self.conv(x)))
        if self.pool is not None:
            if any(self.pool_crop):
                x = F.pad(x, self.pool_crop)
            x = self.pool(x)
        return x


class _StackedCore(nn.Module):
    """Stack of conv blocks on 4-D tensors; see :class:`Core2d` and :class:`CausalCore1d`."""

    causal: bool = False

    def __init__(
        self,
        in_channels: int,
        input_size: tuple[int, int],
        *,
        n_layers: int,
        channels,
        kernel_size,
        dilation,
        stride,
        pooling,
        padding,
        batch_norm: bool,
        activation: str,
        weight_sharing: bool,
        gamma_input: float,
        gamma_hidden: float,
        gamma_activity: float,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}."
            )
        spec = resolve_architecture(
            n_layers, channels, kernel_size, dilation, stride, pooling, padding
        )
        self.in_channels = in_channels
        self.input_size = tuple(input_size)
        self.n_layers = spec["n_layers"]
        self.channels = spec["channels"]
        self.kernel_size = spec["kernel_size"]
        self.dilation = spec["dilation"]
        self.stride = spec["stride"]
        self.pooling = spec["pooling"]
        self.padding = spec["padding"]
        self.weight_sharing = weight_sharing
        self.gamma_input = gamma_input
        self.gamma_hidden = gamma_hidden
        self.gamma_activity = gamma_activity
        n_layers = self.n_layers
        # a buffer, so that it moves with the module instead of being copied
        # to the device at every training step; non-persistent: not part of
        # the state_dict, which stays loadable across versions
        self.register_buffer("_laplace", self._laplace_kernel(dtype), persistent=False)

        blocks = []
        size = list(self.input_size)
        c_in = in_channels
        for layer in range(n_layers):
            kernel, dilation, stride = self._layer_geometry(layer)
            pad, size = self._padding(layer, size, kernel, dilation, stride)
            if weight_sharing:
                conv = nn.Conv2d(
                    c_in,
                    self.channels[layer],
                    kernel,
                    stride=stride,
                    dilation=dilation,
                    bias=not batch_norm,
                    dtype=dtype,
                )
            else:
                padded = (size[0], size[1])
                conv = LocallyConnected2d(
                    c_in,
                    self.channels[layer],
                    padded,
                    kernel,
                    stride=stride,
                    dilation=dilation,
                    bias=not batch_norm,
                    dtype=dtype,
                )
            size = [
                (size[axis] - (dilation[axis] * (kernel[axis] - 1) + 1)) // stride[axis] + 1
                for axis in (0, 1)
            ]
            pool_crop, pool = (0, 0, 0, 0), None
            if self.pooling is not None:
                pool_crop, pool, size = self._pool(layer, size)
            blocks.append(
                _Block(
                    conv,
                    pad,
                    self.channels[layer] if batch_norm else 0,
                    activation,
                    pool_crop,
                    pool,
                )
            )
            c_in = self.channels[layer]
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = c_in
        self.output_size = tuple(size)
        self._activity: torch.Tensor | None = None

    # ----------------------------------------------------------- geometry
    def _layer_geometry(self, layer):
        k, d, s = self.kernel_size[layer], self.dilation[layer], self.stride[layer]
        if self.causal:
            return (1, k), (1, d), (1, s)
        return (k, k), (d, d), (s, s)

    def _too_small(self, layer, size, span, what="kernel") -> ValueError:
        shape = "x".join(str(v) for v in self._public_size(size))
        return ValueError(
            f"Layer {layer + 1}: the {what} (span {span} along "
            f"{'time' if self.causal else 'each axis'}) is larger than its input "
            f"({shape}); use smaller kernels, dilations, strides or pooling, fewer "
            "layers, padding='same', or larger inputs."
        )

    def _public_size(self, size):
        return (size[1],) if self.causal else tuple(size)

    def _padding(self, layer, size, kernel, dilation, stride):
        """F.pad amounts (negative = crop) and the padded size for one layer."""
        spans = [dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1)]
        padding = self.padding[layer]
        span = spans[1] if self.causal else min(spans)
        extent = size[1] if self.causal else min(size)
        limit = max(span - 1, extent - 1)
        if not isinstance(padding, str) and padding > limit:
            # more zeros than both the kernel span and the input gives outputs that see
            # nothing but padding, and sizes (and compute) that grow without bound
            raise ValueError(
                f"Layer {layer + 1}: padding={padding} is larger than the kernel span "
                f"and the input ({extent} bins/pixels); outputs would see only zeros. Use "
                f"0 <= padding <= {limit}, 'same' or 'valid'."
            )
        if self.causal:
            span, length, step = spans[1], size[1], stride[1]
            padding = self.padding[layer]
            if padding == "valid":
                left = 0
            elif padding == "same":
                left = span - 1
            else:
                left = padding
            # drop the earliest bins that a strided kernel would not reach, so
            # the last output ends exactly at the last input bin
            left -= (length + left - span) % step if length + left >= span else 0
            if length + left < span:
                raise self._too_small(layer, size, span)
            return (left, 0, 0, 0), [size[0], length + left]
        pads = []
        for axis in (1, 0):  # F.pad lists the last axis first
            padding = self.padding[layer]
            if padding == "valid":
                before = after = 0
            elif padding == "same":
                total = spans[axis] - 1
                before, after = total // 2, total - total // 2
            else:
                before = after = padding
            pads += [before, after]
        padded = [size[0] + pads[2] + pads[3], size[1] + pads[0] + pads[1]]
        if padded[0] < spans[0] or padded[1] < spans[1]:
            raise self._too_small(layer, size, max(spans))
        return tuple(pads), padded

    def _pool(self, layer, size):
        kind, p = self.pooling
        pool_cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
        if self.causal:
            if size[1] < p:
                raise self._too_small(layer, size, p, what="pooling window")
            # end-aligned: drop the earliest bins that do not fill a window
            crop = (-(size[1] % p), 0, 0, 0)
            return crop, pool_cls((1, p), stride=(1, p)), [size[0], size[1] // p]
        if size[0] < p or size[1] < p:
            raise self._too_small(layer, size, p, what="pooling window")
        return (0, 0, 0, 0), pool_cls(p, stride=p), [size[0] // p, size[1] // p]

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Input extent seen by one output unit, per spatial axis (time only for 1-D).

        For a stack of stride-1 layers this is the reference chapter's
        ``R_L = 1 + (k - 1) * sum_i d_i``; strides and pooling multiply the
        contribution of later layers.
        """
        extent = receptive_field(
            self.kernel_size,
            self.dilation,
            self.stride,
            None if self.pooling is None else self.pooling[1],
        )
        return (extent,) if self.causal else (extent, extent)

    # ------------------------------------------------------------ forward
    def _forward4d(self, x: torch.Tensor) -> torch.Tensor:
        return _run_blocks_tracking_activity(self, x)

    # -------------------------------------------------------- penalties
    def first_layer_filters(self) -> torch.Tensor:
        """First-layer filters ``(n_filters, kh, kw)`` (one per output-input channel pair,
        and per position without weight sharing)."""
        conv = self.blocks[0].conv
        kh, kw = self._layer_geometry(0)[0]
        return conv.weight.reshape(-1, kh, kw)

    def _laplace_kernel(self, dtype: torch.dtype) -> torch.Tensor:
        kernel = _LAPLACE_1D if self.causal else _LAPLACE_2D
        return kernel.to(dtype)[None, None]

    def _laplace_penalty(self) -> torch.Tensor:
        filters = self.first_layer_filters()
        padding = (0, 1) if self.causal else 1
        laplace = F.conv2d(filters[:, None], self._laplace, padding=padding)
        return laplace.pow(2).sum() / (filters.pow(2).sum() + _EPS)

    def _group_sparsity(self) -> torch.Tensor:
        total = 0.0
        for layer in range(1, self.n_layers):
            conv = self.blocks[layer].conv
            # (positions, out, in, kernel entries): a group is one input
            # channel's kernel; a convolution has a single "position"
            n_positions = 1 if isinstance(conv, nn.Conv2d) else conv.weight.shape[0]
            weight = conv.weight.reshape(n_positions, conv.out_channels, conv.in_channels, -1)
            total = total + _group_sparsity(weight)
        return total

    def regularizer(self) -> torch.Tensor:
        """Sum of the core's penalties (a scalar).

        The activity penalty is that of the last training ``forward``; it is
        consumed here, so the graph of those activations is released.
        """
        param = self.blocks[0].conv.weight
        total = torch.zeros((), dtype=param.dtype, device=param.device)
        if self.gamma_input > 0:
            total = total + self.gamma_input * self._laplace_penalty()
        if self.gamma_hidden > 0 and self.n_layers > 1:
            total = total + self.gamma_hidden * self._group_sparsity()
        if self.gamma_activity > 0 and self._activity is not None:
            total = total + self.gamma_activity * self._activity
            self._activity = None
        return total

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_activity"] = None  # part of an autograd graph: never pickled
        return state

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if "_laplace" not in self._buffers:
            # pickled before the kernel became a buffer
            param = self.blocks[0].conv.weight
            kernel = self._laplace_kernel(param.dtype).to(param.device)
            self.register_buffer("_laplace", kernel, persistent=False)


class Core2d(_StackedCore):
    """Convolutional core for images ``(n, C, H, W)``.

    Parameters
    ----------
    in_channels : int
    input_size : (int, int)
        Height and width of the images (fixes the geometry and, without
        weight sharing, the number of positions).
    n_layers : int, default=2
    channels : int or list of int, default=16
        Feature maps per layer (a list: per layer, last entry repeating).
    kernel_size : int or list of int, default=[9, 5]
        Square kernel sizes, per layer as for ``channels``.
    dilation : int, list of int or "exponential", default=1
    stride : int or list of int, default=1
    pooling : None, "max", "avg" or (kind, size), default=None
        Pooling after every layer (size 2 for a bare kind).
    padding : "valid", "same", int or list of these, default="valid"
        Per layer as for ``channels``: ``["valid", "same"]`` keeps the size
        of the maps after the first layer.
    batch_norm : bool, default=True
        BatchNorm with learned scale and shift after each convolution (the
        convolution then has no bias of its own: the shift replaces it).
    activation : {"elu", "relu", "softplus", "identity"}, default="elu"
    weight_sharing : bool, default=True
        False swaps each convolution for a :class:`LocallyConnected2d`.
    gamma_input, gamma_hidden, gamma_activity : float, default=0.0
        Penalty strengths (see the module docstring).
    dtype : torch.dtype, default=torch.float32

    Attributes
    ----------
    output_size : (int, int)
    out_channels : int
    receptive_field : (int, int)

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import Core2d
    >>> core = Core2d(1, (16, 16), channels=8, kernel_size=[9, 5])
    >>> core(torch.randn(4, 1, 16, 16)).shape
    torch.Size([4, 8, 4, 4])
    >>> core.receptive_field
    (13, 13)
    """

    def __init__(
        self,
        in_channels: int,
        input_size: tuple[int, int],
        *,
        n_layers: int = 2,
        channels=16,
        kernel_size=(9, 5),
        dilation=1,
        stride=1,
        pooling=None,
        padding="valid",
        batch_norm: bool = True,
        activation: str = "elu",
        weight_sharing: bool = True,
        gamma_input: float = 0.0,
        gamma_hidden: float = 0.0,
        gamma_activity: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            in_channels,
            input_size,
            n_layers=n_layers,
            channels=channels,
            kernel_size=kernel_size,
            dilation=dilation,
            stride=stride,
            pooling=pooling,
            padding=padding,
            batch_norm=batch_norm,
            activation=activation,
            weight_sharing=weight_sharing,
            gamma_input=gamma_input,
            gamma_hidden=gamma_hidden,
            gamma_activity=gamma_activity,
            dtype=dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward4d(x)


class CausalCore1d(_StackedCore):
    """Causal dilated 1-D convolutional core for time series ``(n, C, T)``.

    Every layer pads (or crops) on the left only, so the output at position
    ``t`` depends on input bins up to the end of its window and never on a
    later one, and the last output is aligned with the last input bin. With
    ``padding="valid"`` (the default) the output at index ``j`` ends at input
    bin ``T - T_out + j`` (stride 1: bin ``j + R - 1``, ``R`` the receptive
    field); with ``padding="same"`` (zeros before the first bin) the output
    has ``ceil(T / stride)`` bins and, at stride 1, output ``t`` ends at
    input bin ``t``.

    Parameters
    ----------
    in_channels : int
    length : int
        Number of time bins ``T`` of the inputs.
    n_layers, channels, kernel_size, dilation, stride, pooling, padding,
    batch_norm, activation, weight_sharing, gamma_input, gamma_hidden,
    gamma_activity, dtype
        As for :class:`Core2d`, along time. ``dilation="exponential"``
        doubles the dilation at every layer (``1, 2, 4, ...``).

    Attributes
    ----------
    output_length : int
    out_channels : int
    receptive_field : (int,)
        ``R = 1 + (k - 1) * sum_i d_i`` for stride-1 layers without pooling.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import CausalCore1d
    >>> core = CausalCore1d(1, 64, n_layers=3, kernel_size=3, dilation="exponential")
    >>> core.receptive_field
    (15,)
    >>> core(torch.randn(2, 1, 64)).shape
    torch.Size([2, 16, 50])
    """

    causal = True

    def __init__(
        self,
        in_channels: int,
        length: int,
        *,
        n_layers: int = 2,
        channels=16,
        kernel_size=(9, 5),
        dilation=1,
        stride=1,
        pooling=None,
        padding="valid",
        batch_norm: bool = True,
        activation: str = "elu",
        weight_sharing: bool = True,
        gamma_input: float = 0.0,
        gamma_hidden: float = 0.0,
        gamma_activity: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            in_channels,
            (1, length),
            n_layers=n_layers,
            channels=channels,
            kernel_size=kernel_size,
            dilation=dilation,
            stride=stride,
            pooling=pooling,
            padding=padding,
            batch_norm=batch_norm,
            activation=activation,
            weight_sharing=weight_sharing,
            gamma_input=gamma_input,
            gamma_hidden=gamma_hidden,
            gamma_activity=gamma_activity,
            dtype=dtype,
        )
        self.output_length = self.output_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward4d(x.unsqueeze(2)).squeeze(2)


def _run_blocks_tracking_activity(core: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``core.blocks`` in order; in training with ``core.gamma_activity > 0``,
    keep the summed mean absolute activity in ``core._activity`` for the penalty."""
    track = core.training and core.gamma_activity > 0
    activity = 0.0
    for block in core.blocks:
        x = block(x)
        if track:
            activity = activity + x.abs().mean()
    core._activity = activity if track else None
    return x
