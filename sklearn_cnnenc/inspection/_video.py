"""Receptive fields of movie models in space *and* time (``CNNEncoder(input_type="video")``)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import Bunch

from ..utils import evaluating
from ._models import _gradient_footprint, as_model_input, is_cnn_encoder, linear_predictor


def is_video_model(model) -> bool:
    """A fitted movie CNNEncoder or a bare :class:`~sklearn_cnnenc.nn.CausalCore3d`."""
    from ..nn import CausalCore3d

    if isinstance(model, CausalCore3d):
        return True
    return is_cnn_encoder(model) and getattr(model, "input_type_", None) == "video"


def video_receptive_field(model, X, neuron=None, unit=None) -> Bunch:
    """The support of the input gradient over (frames, rows, columns); see
    :func:`~sklearn_cnnenc.inspection.empirical_receptive_field`."""
    from ..nn import CausalCore3d

    if neuron is not None:
        if unit is not None:
            raise ValueError("unit picks a core unit; it applies only with neuron=None.")
        inputs = as_model_input(model, X).requires_grad_(True)
        with evaluating(model.module_), torch.enable_grad():
            eta = linear_predictor(model, inputs)
            (gradient,) = torch.autograd.grad(eta[:, neuron].sum(), inputs)
        gradient = gradient.sum(dim=2)  # (n, T, C, H, W): over input channels
    else:
        if isinstance(model, CausalCore3d):
            core = model
            param = next(core.parameters())
            inputs = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=param.dtype,
                                     device=param.device)
            if inputs.dim() != 5 or inputs.shape[1] != core.in_channels:
                raise ValueError(
                    f"This core takes movies of shape (n, {core.in_channels}, T, H, W); got "
                    f"{tuple(inputs.shape)}."
                )
            inputs = inputs.transpose(1, 2)  # as (n, T, C, H, W), like the model's input
            crop = None
        else:
            core = model.core_
            inputs = as_model_input(model, X)
            crop = model.module_.predictor.crop
        inputs = inputs.clone().requires_grad_(True)
        with evaluating(core), torch.enable_grad():
            read = inputs if crop is None else inputs[:, -crop:]
            out = core(read.transpose(1, 2))  # (n, C_out, T, H', W')
            height, width = out.shape[-2:]
            row, column = (height // 2, width // 2) if unit is None else tuple(unit)
            if not (0 <= row < height and 0 <= column < width):
                raise ValueError(f"unit {unit} is outside the {height}x{width} output map.")
            (gradient,) = torch.autograd.grad(out[:, :, -1, row, column].sum(), inputs)
        gradient = gradient.sum(dim=2)
    return _gradient_footprint(gradient)
