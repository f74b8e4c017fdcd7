"""The movie branch of :class:`~sklearn_cnnenc.CNNEncoder` (``input_type="video"``)."""

from __future__ import annotations

import torch

from .nn import CausalCore3d, VideoPredictor, make_readout
from .nn.cores import _positive_ints

__all__ = ["build_video_predictor"]

# options of the image/time-series cores that the movie core does not have
_FIXED = {"dilation": 1, "stride": 1, "pooling": None, "weight_sharing": True}


def build_video_predictor(
    model, X, y, dtype: torch.dtype, *, settings: dict, split, readout: str
) -> VideoPredictor:
    """Core + readout of a movie ``CNNEncoder`` for validated windows ``X`` (n, T, C, H, W).

    ``model`` gives its constructor parameters only; what the fit has
    resolved comes as arguments: ``settings`` (the ``"auto"`` settings
    resolved), ``split`` (the validation split, or None) and ``readout`` (the
    readout's name). The window shape is that of ``X``.

    Raises ``ValueError`` for options the movie core does not support, windows
    shorter than its temporal receptive field, or too few training samples
    for BatchNorm.
    """
    changed = [name for name, value in _FIXED.items() if getattr(model, name) != value]
    if changed:
        raise ValueError(
            f"input_type='video' does not support {', '.join(changed)}; keep the "
            "default(s) (the movie core is a stack of stride-1 factorised convolutions)."
        )
    n_frames, channels, height, width = X.shape[1:]
    n_samples = len(X)
    if split is not None:
        split.check(n_samples)
    n_train = n_samples - (0 if split is None else split.n_valid(n_samples))
    if model.batch_norm and n_train < 2:
        raise ValueError(f"BatchNorm needs at least 2 training samples; got {n_train} sample(s).")
    temporal = _positive_ints(
        model.temporal_kernel_size, settings["n_layers"], "temporal_kernel_size"
    )
    extent = 1 + sum(t - 1 for t in temporal)
    if n_frames < extent:
        raise ValueError(
            f"The movie windows have {n_frames} frame(s), fewer than the temporal "
            f"receptive field of the core ({extent} frames); pass longer windows or a "
            "smaller temporal_kernel_size or fewer layers."
        )
    core = CausalCore3d(
        channels,
        (extent, height, width),
        n_layers=settings["n_layers"],
        channels=settings["channels"],
        kernel_size=settings["kernel_size"],
        temporal_kernel_size=temporal,
        padding=model.padding,
        batch_norm=model.batch_norm,
        activation=model.activation,
        gamma_input=model.gamma_input,
        gamma_hidden=model.gamma_hidden,
        gamma_activity=model.gamma_activity,
        dtype=dtype,
    )
    head = make_readout(
        readout,
        core.out_channels,
        core.output_size,
        y.shape[1],
        settings["gamma_readout"],
        dtype,
    )
    # the last output frame sees only the last `extent` frames: crop the rest
    return VideoPredictor(core, head, crop=extent)
