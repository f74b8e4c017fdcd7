"""Symmetries of convolutional models: translation equivariance and the weight gradient."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F

from ..nn.locally_connected import _pair
from ..utils import evaluating
from ._models import _name, is_cnn_encoder, predict
from ._receptive_fields import core_geometry, core_input, read_by_core

__all__ = ["conv_weight_gradient", "translation_equivariance_error"]


def _shifts(shift, n_axes: int, sizes: tuple[int, ...]) -> tuple[int, ...]:
    values = (shift,) * n_axes if isinstance(shift, Integral) else tuple(np.ravel(shift))
    if len(values) != n_axes or not all(
        isinstance(v, Integral | np.integer) and not isinstance(v, bool) for v in values
    ):
        expected = "an int (time bins)" if n_axes == 1 else "an int or a pair (rows, columns)"
        raise ValueError(f"shift must be {expected} of whole samples; got {shift!r}.")
    values = tuple(int(v) for v in values)
    if any(abs(v) >= size for v, size in zip(values, sizes, strict=True)):
        raise ValueError(
            f"shift {values} must be smaller than the input {sizes} along every axis "
            "(a shift by the whole input leaves nothing to compare)."
        )
    return values


def _interior(geometry, n_out: int, size: int, shift: int, step: int, first: int) -> np.ndarray:
    """Output units of the shifted input whose field avoids padding and the wrapped border,
    and whose partner ``j - step`` in the unshifted output exists and avoids padding.

    Positions are in the whole input of ``size`` samples, of which the core
    reads those from ``first`` on (a time-series model reads only the last
    bins of each window); a field that starts before ``first`` holds padding.
    """
    starts = first + geometry.offset + np.arange(n_out) * geometry.jump
    ends = starts + geometry.extent - 1
    keep = (starts >= max(shift, first)) & (ends <= size - 1 + min(shift, 0))
    partner = np.arange(n_out) - step
    moved = step * geometry.jump
    keep &= (starts - moved >= first) & (ends - moved <= size - 1)
    return np.flatnonzero(keep & (partner >= 0) & (partner < n_out))


def translation_equivariance_error(model_or_core, X, shift, *, output: str = "core") -> float:
    """Relative change ``||f(T_a x) - T_a f(x)|| / ||f(x)||`` under a translation ``T_a``.

    The input is shifted by ``a`` samples (circularly, ``torch.roll``) and
    the result compared with the shifted output. A convolution followed by
    pointwise nonlinearities is equivariant, ``f(T_a x) = T_a f(x)``; with a
    total stride ``S`` (product of the strides and pooling sizes) the
    output grid is ``S`` times coarser, so the output can follow only shifts
    that are multiples of ``S`` (the symmetry group shrinks to that
    subgroup, reference chapter). For other shifts the output is compared
    with its shift by the nearest whole output step, ``round(a / S)``, and
    the error measures how far the network is from following the input.

    ``output="core"``: ``f`` is the core's feature maps, compared only on
    the *interior*: output units whose receptive field lies inside the
    input and away from the wrapped border, in both the shifted and the
    unshifted input (padding and the circular wrap break equivariance at
    the edges, by construction).

    ``output="response"`` (fitted CNNEncoder only): ``f`` is the model's
    predicted responses, which have no spatial axes, so ``T_a f = f`` and the
    error measures *invariance*; it is divided by the spread of the
    responses over the stimuli, ``||f(x) - mean_x f(x)||`` (not by the
    baseline rate, which no stimulus changes). A ``"pooled"`` readout (global average)
    makes a stride-1 model invariant to translations of a pattern on a
    blank background; readouts that weight positions (``"factorized"``,
    ``"gaussian"``, ``"dense"``) are not. Use stimuli with a blank border
    wider than the shift, so that the circular shift is a translation.

    Parameters
    ----------
    model_or_core : fitted CNNEncoder, Core2d or CausalCore1d
    X : array-like
        Stimuli as for the model's ``fit`` (for a bare core ``(n, C, H, W)``
        or ``(n, C, T)``). The shift acts on the whole stimulus; a
        time-series core then reads the last bins of the shifted window, as
        ``predict`` feeds it (``readout="last"`` crops windows to the
        receptive field; a bare causal core reads its ``length``).
    shift : int or (int, int)
        Translation in input samples: ``(rows, columns)`` for images (an int
        shifts both), time bins for time series; smaller than the input.
    output : {"core", "response"}, default="core"

    Returns
    -------
    error : float
        Zero (to float precision) for an equivariant (or invariant) map.

    Raises
    ------
    TypeError
        If the model has no convolutional core.
    ValueError
        If the shift is not smaller than the input, or leaves no interior.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.nn import Core2d
    >>> from sklearn_cnnenc.inspection import translation_equivariance_error
    >>> X = np.random.default_rng(0).normal(size=(3, 1, 24, 24))
    >>> core = Core2d(1, (24, 24), n_layers=2, kernel_size=3, stride=[2, 1])
    >>> translation_equivariance_error(core, X, shift=2) < 1e-6  # a multiple of the stride
    True
    >>> translation_equivariance_error(core, X, shift=1) > 0.1
    True
    """
    if output not in ("core", "response"):
        raise ValueError(f"output must be 'core' or 'response'; got {output!r}.")
    # the shift acts on the whole stimulus, as on a stimulus shown to the
    # model; a time-series model's core then reads the last bins of it
    core, inputs, n_read = core_input(model_or_core, X, "translation_equivariance_error")
    causal = core.causal
    sizes = (inputs.shape[-1],) if causal else tuple(inputs.shape[-2:])
    shifts = _shifts(shift, len(sizes), sizes)
    dims = tuple(range(inputs.dim() - len(sizes), inputs.dim()))
    shifted = torch.roll(inputs, shifts, dims)

    if output == "response":
        if not is_cnn_encoder(model_or_core):
            raise TypeError(
                "output='response' needs a fitted CNNEncoder (a core has no responses); got "
                f"{_name(model_or_core)}."
            )
        reference = predict(model_or_core, inputs.cpu().double().numpy())
        moved = predict(model_or_core, shifted.cpu().double().numpy())
        spread = np.linalg.norm(reference - reference.mean(axis=0))
        if spread == 0:
            raise ValueError(
                "The model predicts the same responses to every stimulus of X; "
                "response invariance needs stimuli that drive it differently."
            )
        return float(np.linalg.norm(moved - reference) / spread)

    with evaluating(core), torch.no_grad():
        reference = core(read_by_core(inputs, n_read))
        moved = core(read_by_core(shifted, n_read))
    geometry = core_geometry(core)
    geometry = (geometry[1],) if causal else geometry
    out_sizes = tuple(reference.shape[-len(sizes) :])
    firsts = (0,) * len(sizes) if n_read is None else (sizes[0] - n_read,)
    index_ref, index_moved = [], []
    for axis, (g, n_out, size, a, first) in enumerate(
        zip(geometry, out_sizes, sizes, shifts, firsts, strict=True)
    ):
        step = int(np.round(a / g.jump))
        kept = _interior(g, n_out, size, a, step, first)
        if kept.size == 0:
            name = "time" if causal else ("rows", "columns")[axis]
            if n_read is not None:
                why = (
                    "readout='last' crops each window to the receptive field"
                    if is_cnn_encoder(model_or_core)
                    else "the length it was built for"
                )
                raise ValueError(
                    f"The core reads only the last {n_read} bins of each {size}-bin window "
                    f"({why}); no output unit there has its receptive field ({g.extent}) in "
                    f"those bins both before and after a shift of {a}. Use output='response', "
                    "a smaller shift, or a core that reads longer windows."
                )
            raise ValueError(
                f"No output unit along {name} has its receptive field ({g.extent}) inside "
                f"the input ({size}) after a shift of {a}; use a larger input or a smaller "
                "shift."
            )
        index_moved.append(torch.as_tensor(kept))
        index_ref.append(torch.as_tensor(kept - step))
    if causal:
        a_ref, a_mov = reference[..., index_ref[0]], moved[..., index_moved[0]]
    else:
        a_ref = reference[..., index_ref[0], :][..., index_ref[1]]
        a_mov = moved[..., index_moved[0], :][..., index_moved[1]]
    return float(torch.linalg.norm(a_mov - a_ref) / torch.linalg.norm(a_ref))


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array or tensor; got dtype {array.dtype}.")
    return torch.as_tensor(array.astype(np.float64, copy=False))


def conv_weight_gradient(X, delta, *, kernel_size=None, stride=1, dilation=1, padding=0):
    """Gradient of a loss with respect to convolution weights: a cross-correlation of X and delta.

    For the cross-correlation ``Y[n, o, u, v] = sum_{c,i,j} W[o, c, i, j]
    X[n, c, s u + d i, s v + d j]`` (stride ``s``, dilation ``d``, the
    convention of :func:`torch.nn.functional.conv2d`) and the error map
    ``delta = dL/dY``, the chain rule gives the reference chapter's formula

    .. math::

        \\frac{\\partial L}{\\partial W_{o,c,i,j}}
        = \\sum_{n,u,v} X_{n,c,\\,s u + d i,\\,s v + d j}\\; \\delta_{n,o,u,v}

    itself a cross-correlation of the input with the error map, in which
    the roles of stride and dilation are swapped. It is computed here as one
    :func:`~torch.nn.functional.conv2d` (input channels as the batch,
    samples as the channels), the learning rule of a convolutional layer.

    Parameters
    ----------
    X : array-like or tensor of shape (n, C_in, H, W) or (n, C_in, T)
        Input of the layer.
    delta : array-like or tensor of shape (n, C_out, H_out, W_out) or (n, C_out, T_out)
        Gradient of the loss with respect to the layer's output.
    kernel_size : int or tuple of int, optional
        Needed only when strides make it ambiguous; by default the largest
        kernel that gives outputs of ``delta``'s size.
    stride, dilation, padding : int or tuple of int, default=1, 1, 0
        As in the forward convolution (zero padding on both sides).

    Returns
    -------
    gradient : torch.Tensor of shape (C_out, C_in, kh, kw) or (C_out, C_in, k)
        In the dtype of ``X`` (float64 for arrays).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.inspection import conv_weight_gradient
    >>> X = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    >>> W = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> Y = torch.nn.functional.conv2d(X, W, stride=2)
    >>> delta = torch.randn_like(Y)
    >>> (Y * delta).sum().backward()  # a loss with dL/dY = delta
    >>> torch.allclose(conv_weight_gradient(X, delta, stride=2), W.grad)
    True
    """
    X, delta = _as_tensor(X, "X"), _as_tensor(delta, "delta")
    if X.dim() not in (3, 4) or delta.dim() != X.dim():
        raise ValueError(
            "X and delta must both be (n, C, H, W) images or both (n, C, T) time series; "
            f"got shapes {tuple(X.shape)} and {tuple(delta.shape)}."
        )
    if X.shape[0] != delta.shape[0]:
        raise ValueError(
            f"X and delta must hold the same samples; got {X.shape[0]} and {delta.shape[0]}."
        )
    one_d = X.dim() == 3
    if one_d:
        X, delta = X.unsqueeze(2), delta.unsqueeze(2)
    n_axes = 1 if one_d else 2
    stride = (1, *_pair(stride, "stride", 1)) if one_d else _pair(stride, "stride", 2)
    dilation = (1, *_pair(dilation, "dilation", 1)) if one_d else _pair(dilation, "dilation", 2)
    padding = (0, *_pair(padding, "padding", 1)) if one_d else _pair(padding, "padding", 2)
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError("stride and dilation must be positive and padding non-negative.")
    delta = delta.to(X.dtype)
    if any(padding):
        X = F.pad(X, (padding[1], padding[1], padding[0], padding[0]))
    sizes, out_sizes = X.shape[2:], delta.shape[2:]
    largest = tuple(
        (sizes[a] - 1 - (out_sizes[a] - 1) * stride[a]) // dilation[a] + 1 for a in (0, 1)
    )
    if kernel_size is None:
        kernel = largest
    else:
        kernel = (1, *_pair(kernel_size, "kernel_size", 1)) if one_d else _pair(
            kernel_size, "kernel_size", 2
        )
    expected = tuple(
        (sizes[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in (0, 1)
    )
    if min(largest) < 1 or min(kernel) < 1 or expected != tuple(out_sizes):
        shown = tuple(out_sizes[-n_axes:])
        raise ValueError(
            f"delta's output size {shown} does not match a convolution of X "
            f"{tuple(sizes[-n_axes:])} with kernel {kernel[-n_axes:]}, stride "
            f"{stride[-n_axes:]}, dilation {dilation[-n_axes:]}."
        )
    # samples become channels and channels the batch: the weight gradient is
    # the cross-correlation of X with delta, stride and dilation swapped
    gradient = F.conv2d(
        X.transpose(0, 1), delta.transpose(0, 1), stride=dilation, dilation=stride
    )[..., : kernel[0], : kernel[1]].transpose(0, 1)
    return gradient.squeeze(2) if one_d else gradient
