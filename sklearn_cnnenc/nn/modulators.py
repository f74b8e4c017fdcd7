"""Per-sample modulation of the linear predictor: behaviour gain and eye-position shifts.

* :class:`BehaviorModulator` (the Sensorium baselines, Franke et al. 2022;
  Willeke et al. 2022): a small MLP maps the behavioural covariates of a
  sample (running speed, pupil size ...) to a positive per-neuron gain
  ``exp(g)`` that multiplies the predicted rate, and optionally a shift
  ``s`` added to the linear predictor first:
  ``mean = inverse_link(eta + s) * exp(g)``.
* :class:`EyeShifter` (Sinz et al. 2018): a small MLP maps the eye position of
  a sample to a shift of every neuron's read-out position (a
  :class:`~sklearn_cnnenc.nn.GaussianReadout`), in the map's normalised
  ``[-1, 1]`` coordinates.

Both start as the identity (last layer at zero): a model begins at the
unmodulated prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..links import Link

__all__ = ["BehaviorModulator", "EyeShifter", "GAIN_LINKS", "apply_gain"]

# links for which a gain on the mean has a closed-form linear predictor
GAIN_LINKS = ("exp", "softplus", "elu1", "identity")
_TINY = 1e-12


def apply_gain(eta: torch.Tensor, log_gain: torch.Tensor, link: Link) -> torch.Tensor:
    """The linear predictor whose mean is ``link.inverse(eta) * exp(log_gain)``.

    Exact for the links in ``GAIN_LINKS``: an addition for ``exp``, the
    inverse softplus or ELU-plus-one of the scaled mean otherwise.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import get_link
    >>> from sklearn_cnnenc.nn.modulators import apply_gain
    >>> link = get_link("softplus")
    >>> eta = apply_gain(torch.tensor([0.5]), torch.log(torch.tensor([2.0])), link)
    >>> torch.allclose(link.inverse(eta), 2 * link.inverse(torch.tensor([0.5])))
    True
    """
    if link.name == "exp":
        return eta + log_gain
    if link.name == "identity":
        return eta * torch.exp(log_gain)
    mean = (link.inverse(eta) * torch.exp(log_gain)).clamp(min=_TINY)
    if link.name == "softplus":
        return mean + torch.log(-torch.expm1(-mean))
    if link.name == "elu1":
        return torch.where(mean < 1.0, torch.log(mean), mean - 1.0)
    raise ValueError(
        f"A behaviour gain needs one of the links {list(GAIN_LINKS)}; got {link.name!r}."
    )


def _mlp(n_in: int, hidden_units: int, n_out: int, dtype) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    if hidden_units > 0:
        layers += [nn.Linear(n_in, hidden_units, dtype=dtype), nn.ELU()]
        width = hidden_units
    last = nn.Linear(width, n_out, dtype=dtype)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class BehaviorModulator(nn.Module):
    """Behaviour -> per-neuron gain (and optional shift) of the linear predictor.

    Parameters
    ----------
    n_covariates : int
        Columns of the behaviour matrix.
    n_outputs : int
        Number of neurons (columns of the linear predictor).
    hidden_units : int, default=16
        Width of the MLP's hidden layer (0: a linear map per neuron).
    shift : bool, default=False
        Also add a per-neuron shift to the linear predictor before the gain.
    dtype : torch.dtype, default=torch.float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.links import get_link
    >>> from sklearn_cnnenc.nn import BehaviorModulator
    >>> modulator = BehaviorModulator(2, n_outputs=3)
    >>> eta = torch.zeros(4, 3)
    >>> torch.equal(modulator(eta, torch.randn(4, 2), get_link("exp")), eta)  # starts at gain 1
    True
    """

    def __init__(
        self,
        n_covariates: int,
        n_outputs: int,
        hidden_units: int = 16,
        shift: bool = False,
        dtype=torch.float32,
    ) -> None:
        super().__init__()
        self.n_outputs = int(n_outputs)
        self.shift = bool(shift)
        self.mlp = _mlp(n_covariates, hidden_units, n_outputs * (2 if shift else 1), dtype)

    def forward(self, eta: torch.Tensor, behavior: torch.Tensor, link: Link) -> torch.Tensor:
        out = self.mlp(behavior)
        log_gain = out[:, : self.n_outputs]
        if self.shift:
            eta = eta + out[:, self.n_outputs :]
        return apply_gain(eta, log_gain, link)


class EyeShifter(nn.Module):
    """Eye position ``(n, 2)`` -> read-out shift ``(n, 2)`` in ``(-1, 1)`` (Sinz et al. 2018).

    Parameters
    ----------
    n_inputs : int, default=2
    hidden_units : int, default=8
    dtype : torch.dtype, default=torch.float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import EyeShifter
    >>> EyeShifter()(torch.randn(5, 2)).shape
    torch.Size([5, 2])
    """

    def __init__(self, n_inputs: int = 2, hidden_units: int = 8, dtype=torch.float32) -> None:
        super().__init__()
        self.mlp = _mlp(n_inputs, hidden_units, 2, dtype)

    def forward(self, eye_position: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(eye_position))

