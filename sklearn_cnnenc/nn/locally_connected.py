"""A locally connected layer: the receptive fields of a convolution, without weight sharing."""

from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocallyConnected2d"]


def _is_int(value) -> bool:
    """Python or numpy integer, not a bool (``True`` is no kernel size)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def _pair(value, name: str = "value", n_axes: int = 2) -> tuple[int, ...]:
    """An int repeated over ``n_axes`` axes, or a sequence of one int per axis."""
    if _is_int(value):
        return (int(value),) * n_axes
    try:
        values = tuple(value)
    except TypeError:
        values = ()
    if len(values) != n_axes or not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or {n_axes} ints; got {value!r}.")
    return tuple(int(v) for v in values)


class LocallyConnected2d(nn.Module):
    """Like :class:`torch.nn.Conv2d` (no padding), but every output position has its own filter.

    A convolution applies one bank of ``C_out`` filters of size ``k x k x
    C_in`` at every position, ``k^2 C_in C_out`` weights in all; this layer
    learns a separate bank for each of the ``H_out x W_out`` output
    positions, ``H_out W_out k^2 C_in C_out`` weights: the same receptive
    fields, without the translation equivariance (and the parameter economy)
    of weight sharing. Padding, if any, is applied by the caller.

    Parameters
    ----------
    in_channels, out_channels : int
    input_size : (int, int)
        Height and width of the (already padded) input; fixes the number of
        output positions.
    kernel_size, stride, dilation : int or (int, int)
    bias : bool, default=True
        One bias per output channel *and position* (nothing is shared).
    dtype : torch.dtype, default=torch.float32

    Attributes
    ----------
    weight : Parameter of shape (H_out * W_out, out_channels, in_channels * kh * kw)
    bias : Parameter of shape (out_channels, H_out, W_out) or None
    output_size : (int, int)

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import LocallyConnected2d
    >>> layer = LocallyConnected2d(2, 3, input_size=(8, 8), kernel_size=3)
    >>> layer(torch.randn(5, 2, 8, 8)).shape
    torch.Size([5, 3, 6, 6])
    >>> layer.weight.numel() == 6 * 6 * 3 * 3 * 2 * 3
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: tuple[int, int],
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        height, width = _pair(input_size, "input_size")
        spans = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size, strict=True)]
        if spans[0] > height or spans[1] > width:
            raise ValueError(
                f"The kernel (span {spans[0]}x{spans[1]}) is larger than the input "
                f"({height}x{width})."
            )
        self.output_size = (
            (height - spans[0]) // self.stride[0] + 1,
            (width - spans[1]) // self.stride[1] + 1,
        )
        n_positions = self.output_size[0] * self.output_size[1]
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        # the default initialisation of torch's Conv2d, so that swapping one
        # layer for the other changes only the weight sharing
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(
            torch.empty(n_positions, out_channels, fan_in, dtype=dtype).uniform_(-bound, bound)
        )
        if bias:
            self.bias = nn.Parameter(
                torch.empty(out_channels, *self.output_size, dtype=dtype).uniform_(-bound, bound)
            )
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (n, C_in * kh * kw, positions): every receptive field as a column
        patches = F.unfold(x, self.kernel_size, dilation=self.dilation, stride=self.stride)
        out = torch.einsum("njl,loj->nol", patches, self.weight)
        out = out.reshape(len(x), self.out_channels, *self.output_size)
        if self.bias is not None:
            out = out + self.bias
        return out

    def filters(self) -> torch.Tensor:
        """Weights as ``(H_out, W_out, out_channels, in_channels, kh, kw)`` filters."""
        return self.weight.reshape(
            *self.output_size, self.out_channels, self.in_channels, *self.kernel_size
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, dilation={self.dilation}, output_size={self.output_size}"
        )
