"""Shared plumbing of the inspection tools: what a model is, and how to run it."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ..nn.cores import _StackedCore

__all__: list[str] = []


def _name(model) -> str:
    return type(model).__name__


def is_cnn_encoder(model) -> bool:
    return hasattr(model, "core_") and hasattr(model, "readout_module_")


def conv_core(model_or_core, tool: str) -> _StackedCore:
    """The convolutional core of a fitted CNNEncoder, or the core itself."""
    if isinstance(model_or_core, _StackedCore):
        return model_or_core
    if hasattr(model_or_core, "readout_module_") or type(model_or_core).__name__ == "CNNEncoder":
        check_is_fitted(model_or_core, "net_")
        return model_or_core.core_
    raise TypeError(
        f"{tool} needs a convolutional core: a fitted CNNEncoder, a Core2d or a "
        f"CausalCore1d; got {_name(model_or_core)}."
    )


def check_fitted_encoder(model, tool: str) -> None:
    if not hasattr(model, "net_") and not hasattr(model, "fit"):
        raise TypeError(
            f"{tool} needs a fitted encoding model (PoissonGLM, LNModel or CNNEncoder); "
            f"got {_name(model)}."
        )
    check_is_fitted(model, "net_")


def parameter_like(module: torch.nn.Module) -> torch.Tensor:
    return next(p for p in module.parameters())


def sample_shape(model) -> tuple[int, ...]:
    """Shape of one sample as the model's torch module takes it."""
    shape = getattr(model, "sample_shape_", None)
    if shape is not None:
        return tuple(shape)
    if is_cnn_encoder(model):
        return tuple(model.input_shape_)
    return (int(model.n_features_in_),)


def user_sample_shape(model) -> tuple[int, ...]:
    """Shape of one sample as the user passed it to ``fit``."""
    if is_cnn_encoder(model):
        return tuple(model.input_layout_.given_shape)
    return (int(model.n_features_in_),)


def as_model_input(model, X) -> torch.Tensor:
    """``X`` as a tensor ``(n, *sample_shape)`` on the model's device and dtype."""
    shape = sample_shape(model)
    X = np.asarray(X, dtype=np.float64)
    n_values = int(np.prod(shape))
    if X.ndim == 0 or X.size % n_values or (X.ndim > 1 and int(np.prod(X.shape[1:])) != n_values):
        raise ValueError(
            f"X must hold samples of {n_values} values (shape {user_sample_shape(model)}) for "
            f"this {_name(model)}; got an array of shape {X.shape}."
        )
    param = parameter_like(model.module_)
    return torch.as_tensor(X.reshape(-1, *shape), dtype=param.dtype, device=param.device)


def linear_predictor(model, inputs: torch.Tensor) -> torch.Tensor:
    """The model's linear predictor ``eta`` (n, n_neurons), differentiable in ``inputs``."""
    return model.module_(inputs)


def predict(model, X) -> np.ndarray:
    """Predicted mean responses ``(n, n_neurons)`` of an estimator or a callable.

    Estimators fitted on flat features receive image stacks flattened; a
    callable is called as ``model(X)``.
    """
    X = np.asarray(X)
    if hasattr(model, "predict"):
        if not is_cnn_encoder(model) and X.ndim > 2:
            X = X.reshape(len(X), -1)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            prediction = np.asarray(model.predict(X), dtype=np.float64)
    elif callable(model):
        prediction = np.asarray(model(X), dtype=np.float64)
    else:
        raise TypeError(
            "model must be a fitted estimator with predict(X) or a callable returning "
            f"responses; got {_name(model)}."
        )
    return prediction.reshape(len(X), -1)


def _gradient_footprint(gradient: torch.Tensor) -> Bunch:
    """Mask, mean gradient, sensitivity and extent of per-sample input gradients."""
    gradient = gradient.detach().cpu().double().numpy()
    mask = np.any(gradient != 0.0, axis=0)
    extent = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        extent.append(int(hits[-1] - hits[0] + 1) if hits.size else 0)
    return Bunch(
        mask=mask,
        gradient=gradient.mean(axis=0),
        sensitivity=np.abs(gradient).mean(axis=0),
        extent=tuple(extent),
    )
