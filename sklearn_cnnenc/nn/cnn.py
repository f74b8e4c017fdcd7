"""Core + readout: the predictor of :class:`~sklearn_cnnenc.CNNEncoder`."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CNNPredictor"]


class CNNPredictor(nn.Module):
    """Stimulus -> shared core -> readout -> linear predictor per neuron.

    Parameters
    ----------
    core : torch.nn.Module
        A :class:`Core2d` (inputs ``(n, C, H, W)``) or :class:`CausalCore1d`
        (inputs ``(n, C, T)``).
    readout : torch.nn.Module
        Maps the core's feature maps to ``(n, n_outputs)``.
    crop : int, optional
        Keep only the last ``crop`` time bins of each input. A readout of the
        last bin needs only the core's receptive field, so longer windows are
        cut to it instead of computing outputs nobody reads.
    lagged : bool, default=False
        Inputs are rows of a lagged design ``(n, n_lags, C)`` in the library's
        lag order (:class:`~sklearn_cnnenc.preprocessing.TimeLagger`: lag 0,
        the current bin, first); they are turned into the causal core's
        windows ``(n, C, n_lags)`` (oldest bin first) before the core runs.
    shifter : EyeShifter, optional
        Maps ``eye_position`` to a shift of the read-out positions (the
        readout must take ``shift=``, as :class:`GaussianReadout` does).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import CausalCore1d, CNNPredictor, LastStepReadout
    >>> core = CausalCore1d(1, 13, channels=4)
    >>> readout = LastStepReadout(4, (1, core.output_length), n_outputs=2)
    >>> predictor = CNNPredictor(core, readout, crop=13)
    >>> predictor(torch.randn(5, 1, 40)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        core: nn.Module,
        readout: nn.Module,
        crop: int | None = None,
        lagged: bool = False,
        shifter: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self.readout = readout
        self.crop = crop
        self.lagged = lagged
        self.shifter = shifter
        dtype = next(readout.parameters()).dtype
        # returned when nothing is penalised, instead of building zeros every batch
        self.register_buffer("_zero", torch.zeros((), dtype=dtype), persistent=False)

    def forward(self, X: torch.Tensor, eye_position: torch.Tensor | None = None) -> torch.Tensor:
        if getattr(self, "lagged", False):  # models pickled before ``lagged`` existed
            if self.crop is not None:
                X = X[:, : self.crop]
            # (n, lags, C), lag 0 first -> (n, C, time), the current bin last
            X = X.flip(1).transpose(1, 2)
            features = self.core(X)
        else:
            if self.crop is not None:
                X = X[..., -self.crop :]
            features = self.core(X)
        if getattr(self, "shifter", None) is None:
            return self.readout(features)
        if eye_position is None:
            raise ValueError("This predictor shifts its readout by eye position: pass it.")
        return self.readout(features, shift=self.shifter(eye_position))

    def regularizer(self) -> torch.Tensor:
        """Core and readout penalties (a scalar)."""
        core, readout = self.core, self.readout
        if not (
            core.gamma_input or core.gamma_hidden or core.gamma_activity or readout.gamma_readout
        ):
            return self._zero
        return core.regularizer() + readout.regularizer()

    def initialize_intercept(self, eta: torch.Tensor) -> None:
        """Start each neuron's readout bias at ``eta`` (the link of its mean response)."""
        self.readout.initialize_intercept(eta)
