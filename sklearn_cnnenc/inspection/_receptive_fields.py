"""Receptive fields of convolutional stacks: analytic size, gradient maps, parameter counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import Bunch

from ..nn.cores import _StackedCore, receptive_field
from ..nn.locally_connected import _pair
from ..utils import evaluating
from ._models import (
    _gradient_footprint,
    _name,
    as_model_input,
    check_fitted_encoder,
    conv_core,
    is_cnn_encoder,
    linear_predictor,
    parameter_like,
)
from ._video import is_video_model, video_receptive_field

__all__ = ["count_parameters", "empirical_receptive_field", "receptive_field_size"]


@dataclass(frozen=True)
class AxisGeometry:
    """Where the output units of a stack sit in its input, along one axis.

    Output unit ``j`` reads the input positions ``offset + j * jump`` to
    ``offset + j * jump + extent - 1`` (``offset`` is negative when padding
    puts the first windows partly outside the input).
    """

    offset: int
    jump: int
    extent: int

    def pad(self, before: int) -> AxisGeometry:
        # padded index q is the previous index q - before (a negative
        # `before` crops the earliest positions)
        return AxisGeometry(self.offset - before * self.jump, self.jump, self.extent)

    def window(self, kernel: int, dilation: int, stride: int) -> AxisGeometry:
        return AxisGeometry(
            self.offset, self.jump * stride, self.extent + (kernel - 1) * dilation * self.jump
        )


def core_geometry(core: _StackedCore) -> tuple[AxisGeometry, AxisGeometry]:
    """Geometry of a core's output units along (height, width), read from its modules."""
    axes = [AxisGeometry(0, 1, 1), AxisGeometry(0, 1, 1)]
    for block in core.blocks:
        # F.pad amounts list the last axis first: (left, right, top, bottom)
        axes = [axes[0].pad(block.pad[2]), axes[1].pad(block.pad[0])]
        conv = block.conv
        kernel, dilation, stride = _pair(conv.kernel_size), _pair(conv.dilation), _pair(
            conv.stride
        )
        axes = [axes[a].window(kernel[a], dilation[a], stride[a]) for a in (0, 1)]
        if block.pool is not None:
            axes = [axes[0].pad(block.pool_crop[2]), axes[1].pad(block.pool_crop[0])]
            size = _pair(block.pool.kernel_size)
            step = _pair(block.pool.stride if block.pool.stride is not None else size)
            axes = [axes[a].window(size[a], 1, step[a]) for a in (0, 1)]
    return axes[0], axes[1]


def _per_layer(value, n_layers: int, name: str) -> list[int]:
    values = [value] * n_layers if isinstance(value, Integral) else list(value)
    if len(values) != n_layers:
        raise ValueError(
            f"{name} must be an int or a list with one entry per layer ({n_layers}); "
            f"got {value!r}."
        )
    if any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1 for v in values):
        raise ValueError(f"{name} must hold positive integers; got {value!r}.")
    return [int(v) for v in values]


def receptive_field_size(kernel_sizes, dilations=1, strides=1, pool_sizes=None):
    """Extent of the input that one output unit of a convolutional stack sees.

    For layers ``l = 1..L`` with kernel size ``k_l``, dilation ``d_l``,
    stride ``s_l`` and, optionally, pooling of size (and stride) ``p_l``
    after the layer, the receptive field is

    .. math::

        R = 1 + \\sum_l \\big[(k_l - 1) d_l J_{l-1} + (p_l - 1) J_{l-1} s_l\\big],
        \\qquad J_l = \\prod_{i \\le l} s_i p_i

    (``J`` is the distance between neighbouring units, in input samples).
    For stride-1 stacks without pooling and one kernel size this is the
    reference chapter's ``R_L = 1 + (k - 1) sum_l d_l``. Padding does not
    change the size (only where the field sits).

    Parameters
    ----------
    kernel_sizes : int, list of int, fitted CNNEncoder, Core2d or CausalCore1d
        Kernel size of every layer (an int applies to every layer; the
        lists among the arguments fix the number of layers, one when all
        are ints); or a model, whose
        core is read (its actual convolutions and pooling, whatever the
        constructor arguments were).
    dilations, strides : int or list of int, default=1
        Per layer (an int applies to every layer).
    pool_sizes : None, int or list of int, default=None
        Pooling window (and stride) after every layer; 1 means no pooling.

    Returns
    -------
    size : int, or tuple of int for a model
        ``(height, width)`` for image cores, ``(n_bins,)`` for causal
        time-series cores: equal to the model's ``receptive_field_``.

    See Also
    --------
    empirical_receptive_field : the same, measured from input gradients.

    Examples
    --------
    >>> from sklearn_cnnenc.inspection import receptive_field_size
    >>> receptive_field_size(3, dilations=[1, 2, 4, 8])  # 1 + 2 * (1 + 2 + 4 + 8)
    31
    >>> receptive_field_size([5, 3], strides=[2, 1], pool_sizes=[2, 1])  # 1 + 4 + 2 + 2 * 4
    15
    """
    if isinstance(kernel_sizes, _StackedCore) or hasattr(kernel_sizes, "fit"):
        core = conv_core(kernel_sizes, "receptive_field_size")
        height, width = core_geometry(core)
        return (width.extent,) if core.causal else (height.extent, width.extent)
    settings = {
        "kernel_sizes": kernel_sizes,
        "dilations": dilations,
        "strides": strides,
        "pool_sizes": 1 if pool_sizes is None else pool_sizes,
    }
    lengths = set()
    for name, value in settings.items():
        if isinstance(value, Integral):
            continue
        if not isinstance(value, Sequence) or isinstance(value, str):
            what = " or a model with a convolutional core" if name == "kernel_sizes" else ""
            raise TypeError(
                f"{name} must be an int or a list of ints{what}; got {_name(value)}."
            )
        lengths.add(len(value))
    if len(lengths) > 1 or 0 in lengths:
        raise ValueError(
            "kernel_sizes, dilations, strides and pool_sizes must be ints or lists of one "
            f"common, non-zero length (one entry per layer); got lengths {sorted(lengths)}."
        )
    n_layers = lengths.pop() if lengths else 1
    kernels = _per_layer(kernel_sizes, n_layers, "kernel_sizes")
    gaps = _per_layer(dilations, n_layers, "dilations")
    steps = _per_layer(strides, n_layers, "strides")
    pools = _per_layer(settings["pool_sizes"], n_layers, "pool_sizes")
    return receptive_field(kernels, gaps, steps, pools)


def _core_input(core: _StackedCore, X) -> tuple[torch.Tensor, int | None]:
    """``X`` as ``(n, C, H, W)`` or ``(n, C, T)`` for a bare core, and the bins it reads.

    A causal core reads the last ``length`` bins of longer windows (as
    :class:`~sklearn_cnnenc.CNNEncoder` crops them); the window is returned
    whole, so that a tool can transform it before the crop.
    """
    param = parameter_like(core)
    X = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=param.dtype, device=param.device)
    channels = core.in_channels
    if core.causal:
        length = core.input_size[1]
        if X.dim() == 2 and channels == 1:
            X = X[:, None]
        if X.dim() != 3 or X.shape[1] != channels or X.shape[2] < length:
            raise ValueError(
                f"This causal core takes time series of shape (n, {channels}, T) with "
                f"T >= {length}; got {tuple(X.shape)}."
            )
        return X, (length if X.shape[2] > length else None)
    if X.dim() == 3 and channels == 1:
        X = X[:, None]
    if X.dim() != 4 or tuple(X.shape[1:]) != (channels, *core.input_size):
        raise ValueError(
            f"This core takes images of shape (n, {channels}, {core.input_size[0]}, "
            f"{core.input_size[1]}); got {tuple(X.shape)}."
        )
    return X, None


def core_input(model_or_core, X, tool: str) -> tuple[_StackedCore, torch.Tensor, int | None]:
    """The core, ``X`` as the model takes it, and the number of last time bins the core reads.

    For a fitted CNNEncoder ``X`` is reshaped exactly as ``predict`` reshapes
    it, ``(n, *input_shape_)``, and the core reads what the model's predictor
    passes on: with ``readout="last"`` only the last ``receptive_field_`` bins
    of each window (the crop of :class:`~sklearn_cnnenc.nn.CNNPredictor`).
    The window is returned uncropped, so that a transformation (a shift)
    acts on the stimulus, as it would before ``predict``; apply
    :func:`read_by_core` to get the core's input. ``None``: the core reads
    everything.
    """
    core = conv_core(model_or_core, tool)
    if is_cnn_encoder(model_or_core):
        inputs = as_model_input(model_or_core, X)
        return core, inputs, model_or_core.module_.predictor.crop
    inputs, n_read = _core_input(core, X)
    return core, inputs, n_read


def read_by_core(inputs: torch.Tensor, n_read: int | None) -> torch.Tensor:
    """The part of the inputs of :func:`core_input` that the core reads."""
    return inputs if n_read is None else inputs[..., -n_read:]


def empirical_receptive_field(model, X, neuron=None, *, unit=None) -> Bunch:
    """Input positions that influence one output: the support of its input gradient.

    The gradient of the chosen output with respect to every input sample of
    ``X`` is computed by autograd (BatchNorm in inference mode); a position
    belongs to the receptive field when the gradient there is non-zero for
    at least one sample. Several samples matter for ReLU networks and max
    pooling, where a unit that happens to be silent, or not the maximum,
    passes no gradient for one input.

    Parameters
    ----------
    model : fitted CNNEncoder, LNModel, PoissonGLM, or a Core2d / CausalCore1d / CausalCore3d
    X : array-like
        Stimuli, shaped as for the model's ``fit`` (for a bare core:
        ``(n, C, H, W)``, ``(n, C, T)`` or, for a movie core, ``(n, C, T, H, W)``).
    neuron : int, optional
        Index of the neuron whose linear predictor is differentiated. By
        default (CNN cores only), one unit of the core's output, summed over
        channels: the field of a core unit, whose extent is
        :func:`receptive_field_size`.
    unit : tuple of int, optional
        Position of that core unit on the output map, ``(row, column)`` or
        ``(bin,)``; default: of the units whose whole field lies inside the
        input (none of it in padding), the one nearest the centre of the map
        (the last one for causal cores).

    Returns
    -------
    field : Bunch
        ``mask`` (bool, the sample's spatial shape ``(H, W)``, ``(T,)`` or
        ``(n_features,)``; ``(T, H, W)`` for movies, whose extent is then
        ``(frames, h, w)``): positions with a non-zero gradient;
        ``gradient``: the mean gradient over samples (summed over input
        channels); ``sensitivity``: the mean absolute gradient; ``extent``
        (tuple of int): the side lengths of the smallest box holding the
        mask (``0`` where it is empty), to compare with
        :func:`receptive_field_size`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.nn import Core2d
    >>> from sklearn_cnnenc.inspection import empirical_receptive_field
    >>> core = Core2d(1, (32, 32), n_layers=3, kernel_size=3, dilation=[1, 2, 4])
    >>> X = np.random.default_rng(0).normal(size=(4, 1, 32, 32))
    >>> empirical_receptive_field(core, X).extent
    (15, 15)
    """
    if is_video_model(model):
        # movies: the field spans frames, rows and columns
        if neuron is not None:
            check_fitted_encoder(model, "empirical_receptive_field")
            if isinstance(neuron, bool) or not isinstance(neuron, Integral) or not (
                0 <= neuron < model.n_outputs_
            ):
                raise ValueError(
                    f"neuron must be an integer in [0, {model.n_outputs_}); got {neuron!r}."
                )
        return video_receptive_field(model, X, neuron, unit)
    if neuron is None:
        core, inputs, n_read = core_input(model, X, "empirical_receptive_field with neuron=None")
        inputs = inputs.clone().requires_grad_(True)
        with evaluating(core), torch.enable_grad():
            # the gradient is taken with respect to the whole window: the
            # bins the core does not read get zero, and the mask is laid out
            # like the stimulus, as for neuron=k
            read = read_by_core(inputs, n_read)
            out = core(read)
            out4d = out.unsqueeze(2) if core.causal else out
            row, column = _unit_position(core, read.shape[2:], out4d.shape[2:], unit)
            (gradient,) = torch.autograd.grad(out4d[:, :, row, column].sum(), inputs)
        gradient = gradient.sum(dim=1)  # over input channels
    else:
        check_fitted_encoder(model, "empirical_receptive_field")
        if (
            isinstance(neuron, bool)
            or not isinstance(neuron, Integral)
            or not 0 <= neuron < model.n_outputs_
        ):
            raise ValueError(
                f"neuron must be an integer in [0, {model.n_outputs_}); got {neuron!r}."
            )
        if unit is not None:
            raise ValueError("unit picks a core unit; it applies only with neuron=None.")
        inputs = as_model_input(model, X).requires_grad_(True)
        with evaluating(model.module_), torch.enable_grad():
            eta = linear_predictor(model, inputs)
            (gradient,) = torch.autograd.grad(eta[:, neuron].sum(), inputs)
        if is_cnn_encoder(model):
            gradient = gradient.sum(dim=1)  # over input channels
        else:
            shape = tuple(getattr(model, "input_shape_", gradient.shape[1:]))
            gradient = gradient.reshape(len(gradient), *shape)
    return _gradient_footprint(gradient)


def _unit_position(core, input_size, map_shape, unit) -> tuple[int, int]:
    causal = core.causal
    height, width = int(map_shape[0]), int(map_shape[1])
    if unit is None:
        # the unit whose whole field lies inside the input (no padding in it)
        # nearest the centre of the map; the last such bin for causal cores,
        # the one a "last" readout reads
        position = []
        sizes = (1, *input_size) if causal else tuple(input_size)
        for geometry, n_out, size in zip(core_geometry(core), (height, width), sizes, strict=True):
            starts = geometry.offset + np.arange(n_out) * geometry.jump
            inside = np.flatnonzero((starts >= 0) & (starts + geometry.extent <= size))
            if inside.size == 0:
                inside = np.arange(n_out)
            if causal and n_out > 1:
                position.append(int(inside[-1]))
            else:
                position.append(int(inside[np.argmin(np.abs(inside - (n_out - 1) / 2))]))
        return position[0], position[1]
    unit = tuple(unit) if isinstance(unit, Sequence) else (unit,)
    position = (0, *unit) if causal else unit
    if (
        len(position) != 2
        or not all(isinstance(p, Integral) for p in position)
        or not (0 <= position[0] < height and 0 <= position[1] < width)
    ):
        expected = (
            f"(bin,) with bin < {width}" if causal else f"(row, column) < ({height}, {width})"
        )
        raise ValueError(f"unit must be {expected} on the core's output map; got {unit!r}.")
    return int(position[0]), int(position[1])


def count_parameters(model, *, by_module: bool = False):
    """Number of trained parameters of a model or torch module.

    A convolution with ``C_in`` input and ``C_out`` output channels and
    ``k x k`` kernels has ``k^2 C_in C_out`` weights, whatever the size of
    the image; a locally connected layer (the same receptive fields, one
    filter bank per output position, ``CNNEncoder(weight_sharing=False)``)
    has ``H W`` times more for an ``H x W`` output map. Weight sharing
    divides the parameters of a layer by about ``H W`` (the reference
    chapter).

    Parameters
    ----------
    model : fitted estimator or torch.nn.Module
    by_module : bool, default=False
        Return a dict ``{module name: count}`` over the modules that own
        parameters (e.g. ``"predictor.core.blocks.0.conv"``) instead of the
        total.

    Returns
    -------
    count : int or dict of str to int

    Examples
    --------
    >>> from sklearn_cnnenc.nn import Core2d
    >>> from sklearn_cnnenc.inspection import count_parameters
    >>> shared = Core2d(1, (12, 12), n_layers=1, channels=4, kernel_size=3, batch_norm=False)
    >>> local = Core2d(1, (12, 12), n_layers=1, channels=4, kernel_size=3, batch_norm=False,
    ...                weight_sharing=False)
    >>> count_parameters(shared), count_parameters(local)  # 10 x 10 output positions
    (40, 4000)
    """
    if isinstance(model, torch.nn.Module):
        module = model
    else:
        check_fitted_encoder(model, "count_parameters")
        module = model.module_
    if not by_module:
        return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
    counts = {}
    for name, sub in module.named_modules():
        n = sum(p.numel() for p in sub.parameters(recurse=False) if p.requires_grad)
        if n:
            counts[name] = int(n)
    return counts

