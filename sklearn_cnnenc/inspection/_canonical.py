"""A canonical parameterisation of models with positively homogeneous hidden units."""

from __future__ import annotations

import copy

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..nn.readouts import DenseReadout, FactorizedReadout, GaussianReadout
from ._models import _name, is_cnn_encoder

__all__ = ["canonicalize"]

# filters whose norm is below this are dead (all zeros): they keep their scale
_TINY = 1e-30


def canonicalize(model):
    """The same fitted model, in a canonical parameterisation of its hidden units.

    With a positively homogeneous hidden nonlinearity (ReLU:
    ``phi(a u) = a phi(u)`` for ``a > 0``), scaling a hidden channel's
    incoming weights and bias by ``a`` and its outgoing weights by ``1 / a``
    leaves the model's function unchanged, and so does permuting hidden
    channels: many parameter vectors give one model (the reference
    chapter's non-identifiability). This function picks one representative:

    1. BatchNorm (in inference mode, with its running statistics) is folded
       into the preceding convolution, ``W' = W gamma / sqrt(var + eps)``,
       ``b' = (b - mean) gamma / sqrt(var + eps) + beta``;
    2. layer by layer, every hidden channel's incoming weights are scaled to
       unit Euclidean norm (its bias with them), the scale moving into the
       next layer's weights for that channel (into the readout for the last
       layer; biases of later layers are untouched);
    3. the readout's own symmetries are fixed: a factorized readout's
       spatial masks get unit norm and a positive largest entry (the
       feature weights absorb the factor, sign included);
    4. the channels of every layer are sorted by decreasing norm of their
       (now canonical) outgoing weights, most used first, ties broken by
       the bias.

    Predictions are unchanged (to float precision), and two models that
    differ by a permutation and a positive rescaling of hidden channels
    canonicalise to the same parameters, which can then be compared.

    For an :class:`~sklearn_cnnenc.LNModel` the hidden units are its
    filters: ``"relu"`` filters get unit norm (the output weights absorb the
    scale); ``"square"`` models (energy models) are rewritten with the
    eigenvectors of the quadratic form ``sum_j w_j h_j h_j^T`` as filters
    and its eigenvalues as weights (which also removes the rotations within
    a subspace that leave an energy model unchanged), sign-fixed so that each
    filter's largest entry is positive; ``"identity"`` models put the whole
    (identified) filter sum in the first filter. Space-time separable
    filters are refactored by SVD (balanced factors). A
    :class:`~sklearn_cnnenc.PoissonGLM` has no hidden units: it is returned
    as a copy.

    Parameters
    ----------
    model : fitted CNNEncoder, LNModel or PoissonGLM
        CNNs need ``activation`` "relu" or "identity" and weight sharing;
        LN models need ``nonlinearity`` "relu", "square" or "identity".

    Returns
    -------
    canonical : estimator
        A new fitted estimator of the same class (the input is not
        modified). A CNN whose BatchNorm was folded comes back with
        ``batch_norm=False``, its convolutions holding the folded biases, so
        cloning, warm starts and pickling see the architecture it has.

    Raises
    ------
    ValueError
        For hidden nonlinearities without positive homogeneity (ELU,
        softplus, exp: rescaling would change the predictions), for locally
        connected cores (their symmetry group is larger: every position of
        a channel can be rescaled), and for identity LN models with several
        separable filters (not identifiable: see
        :func:`~sklearn_cnnenc.inspection.equivalent_glm`).

    Notes
    -----
    With the identity activation any invertible mixing of channels (not only
    permutations and positive scales) preserves a CNN's function; only the
    latter are removed here.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc import CNNEncoder
    >>> from sklearn_cnnenc.datasets import make_v1_population
    >>> from sklearn_cnnenc.inspection import canonicalize
    >>> data = make_v1_population(n_samples=200, n_simple=2, n_complex=1, image_size=12,
    ...                           random_state=0)
    >>> model = CNNEncoder(channels=4, kernel_size=[5, 3], activation="relu", max_epochs=2,
    ...                    n_ensemble=1, device="cpu", random_state=0).fit(data.X, data.y)
    >>> canonical = canonicalize(model)
    >>> bool(np.allclose(canonical.predict(data.X), model.predict(data.X), rtol=1e-4))
    True
    >>> weight = canonical.core_.blocks[0].conv.weight.detach()
    >>> bool(np.allclose(weight.flatten(1).norm(dim=1), 1.0))
    True
    """
    check_is_fitted(model)
    if is_cnn_encoder(model):
        return _canonical_cnn(model)
    if hasattr(model, "filters_") and hasattr(model, "nonlinearity"):
        return _canonical_ln(model)
    if hasattr(model, "coef_"):
        return copy.deepcopy(model)
    raise TypeError(
        f"canonicalize needs a fitted CNNEncoder, LNModel or PoissonGLM; got {_name(model)}."
    )


def _not_homogeneous(what: str, name: str, allowed: str) -> ValueError:
    return ValueError(
        f"canonicalize needs positively homogeneous hidden units ({allowed}): "
        f"phi(a u) = a phi(u) for a > 0 is what lets a unit's scale move into the next "
        f"layer. {what}={name!r} has no such symmetry, so rescaling would change the "
        "predictions."
    )


# -------------------------------------------------------------------- CNN
def _readout_channels(readout: nn.Module) -> tuple[torch.Tensor, int]:
    """The readout weights that multiply the core's channels, and their channel axis."""
    if isinstance(readout, (FactorizedReadout, GaussianReadout)):
        return readout.features.detach().double(), 1
    if isinstance(readout, DenseReadout):
        weight = readout.weight.detach().double()
        return weight.reshape(readout.n_outputs, readout.in_channels, -1), 1
    return readout.weight.detach().double(), 1


def _write_readout(readout: nn.Module, channels: torch.Tensor) -> None:
    if isinstance(readout, (FactorizedReadout, GaussianReadout)):
        readout.features.copy_(channels)
    elif isinstance(readout, DenseReadout):
        readout.weight.copy_(channels.reshape(readout.weight.shape))
    else:
        readout.weight.copy_(channels)


def _largest_entry_sign(rows: torch.Tensor) -> torch.Tensor:
    """Sign of the entry of largest magnitude of every row (1 for all-zero rows)."""
    index = rows.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(rows.gather(1, index)).squeeze(1)
    return torch.where(sign == 0, torch.ones_like(sign), sign)


def _descending(key: torch.Tensor, tie: torch.Tensor) -> torch.Tensor:
    """Indices sorting the last axis by decreasing ``key``, then decreasing ``tie``."""
    order = torch.argsort(-tie, dim=-1, stable=True)
    return order.gather(-1, torch.argsort(-key.gather(-1, order), dim=-1, stable=True))


def _fold_batch_norm(block) -> tuple[torch.Tensor, torch.Tensor]:
    conv = block.conv
    weight = conv.weight.detach().double()
    bias = (
        torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
        if conv.bias is None
        else conv.bias.detach().double()
    )
    norm = block.norm
    if isinstance(norm, nn.BatchNorm2d):
        if norm.running_mean is None:
            raise ValueError(
                "canonicalize folds BatchNorm with its running statistics; this BatchNorm "
                "does not track them (track_running_stats=False)."
            )
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.detach().double()
        shift = (
            torch.zeros_like(scale) if norm.bias is None else norm.bias.detach().double()
        )
        weight = weight * scale[:, None, None, None]
        bias = (bias - norm.running_mean.double()) * scale + shift
    return weight, bias


def _canonical_cnn(model):
    if model.activation not in ("relu", "identity"):
        raise _not_homogeneous("activation", model.activation, "'relu' or 'identity'")
    if getattr(model, "n_ensemble_", 1) > 1:
        raise ValueError(
            f"canonicalize takes one fitted CNN; this model averages {model.n_ensemble_} "
            "(n_ensemble_), whose mean is not a CNN of the same architecture. Fit with "
            "n_ensemble=1."
        )
    core = model.core_
    if not all(isinstance(block.conv, nn.Conv2d) for block in core.blocks):
        raise ValueError(
            "canonicalize handles convolutional cores (weight_sharing=True); a locally "
            "connected layer can rescale every position of a channel separately, a larger "
            "symmetry that this canonical form does not fix."
        )
    canonical = copy.deepcopy(model)
    core, readout = canonical.core_, canonical.readout_module_
    with torch.no_grad():
        layers = [list(_fold_batch_norm(block)) for block in core.blocks]
        channels, axis = _readout_channels(readout)
        if isinstance(readout, FactorizedReadout):
            masks = readout.spatial.detach().double()
            factor = masks.norm(dim=1) * _largest_entry_sign(masks)
            factor = torch.where(factor.abs() > _TINY, factor, torch.ones_like(factor))
            readout.spatial.copy_(masks / factor[:, None])
            channels = channels * factor[:, None]
        if isinstance(readout, GaussianReadout):
            # only the training noise reads sigma, through a symmetric distribution
            readout.sigma.abs_()

        def scale_inputs(layer: int, factor: torch.Tensor):
            nonlocal channels
            if layer < len(layers):
                layers[layer][0] = layers[layer][0] * factor[None, :, None, None]
            else:
                shape = [1] * channels.dim()
                shape[axis] = -1
                channels = channels * factor.reshape(shape)

        for index, (weight, bias) in enumerate(layers):
            norms = weight.flatten(1).norm(dim=1)
            factor = torch.where(norms > _TINY, norms, torch.ones_like(norms))
            layers[index] = [weight / factor[:, None, None, None], bias / factor]
            scale_inputs(index + 1, factor)

        for index in range(len(layers)):
            if index + 1 < len(layers):
                outgoing = layers[index + 1][0].transpose(0, 1).flatten(1)
            else:
                outgoing = channels.movedim(axis, 0).flatten(1)
            order = _descending(outgoing.norm(dim=1), layers[index][1])
            layers[index] = [layers[index][0][order], layers[index][1][order]]
            if index + 1 < len(layers):
                layers[index + 1][0] = layers[index + 1][0][:, order]
            else:
                channels = channels.index_select(axis, order)

        folded = False
        for block, (weight, bias) in zip(core.blocks, layers, strict=True):
            conv = block.conv
            if conv.bias is None:
                conv = nn.Conv2d(
                    conv.in_channels,
                    conv.out_channels,
                    conv.kernel_size,
                    stride=conv.stride,
                    dilation=conv.dilation,
                    bias=True,
                    dtype=conv.weight.dtype,
                    device=conv.weight.device,
                )
                block.conv = conv
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
            if isinstance(block.norm, nn.BatchNorm2d):
                block.norm = nn.Identity()
                folded = True
        _write_readout(readout, channels)
    if folded:
        canonical.batch_norm = False
        # the optimizer must point at the parameters the module now has
        canonical.net_.initialize_optimizer()
    canonical._set_fitted_attributes()
    return canonical


# --------------------------------------------------------------------- LN
def _refactor(filters: torch.Tensor, n_lags: int, rank: int):
    """Balanced rank-``rank`` factors of every filter by SVD, largest spatial entry positive."""
    K, k, n_features = filters.shape
    u, sigma, vh = torch.linalg.svd(filters.reshape(K, k, n_lags, -1), full_matrices=False)
    root = sigma[..., :rank].sqrt()
    temporal = (u[..., :rank] * root[..., None, :]).transpose(-1, -2)  # (K, k, r, n_lags)
    spatial = vh[..., :rank, :] * root[..., :, None]  # (K, k, r, n_space)
    flat = spatial.reshape(-1, spatial.shape[-1])
    sign = _largest_entry_sign(flat).reshape(*spatial.shape[:-1], 1)
    return temporal * sign, spatial * sign


def _canonical_ln(model):
    nonlinearity = model.nonlinearity
    if nonlinearity not in ("relu", "square", "identity"):
        raise _not_homogeneous("nonlinearity", nonlinearity, "'relu', 'square' or 'identity'")
    rank = model.filter_rank
    if nonlinearity == "identity" and rank is not None and model.n_filters > 1:
        raise ValueError(
            "An identity LNModel with several separable filters is not identifiable (only the "
            "sum of its filters matters, and that sum need not be separable); use "
            "equivalent_glm(model) for its identified filter."
        )
    canonical = copy.deepcopy(model)
    predictor = canonical.module_.predictor
    with torch.no_grad():
        filters = predictor.full_filters().detach().double()  # (K, k, n_features)
        weights = predictor.weights.detach().double()
        bias = None if predictor.filter_bias is None else predictor.filter_bias.detach().double()
        if nonlinearity == "identity":
            summed = filters.sum(dim=1, keepdim=True)
            filters = torch.cat([summed, torch.zeros_like(filters[:, 1:])], dim=1)
        elif nonlinearity == "square" and rank is None:
            # the quadratic form sum_j w_j h_j h_j^T = U M U^T with H^T = U R and
            # M = R diag(w) R^T: its eigenvectors U V are the canonical filters
            basis, upper = torch.linalg.qr(filters.transpose(1, 2))
            form = upper @ (weights[:, :, None] * upper.transpose(1, 2))
            values, vectors = torch.linalg.eigh(form)
            filters = (basis @ vectors).transpose(1, 2)
            weights = values
            missing = model.n_filters - weights.shape[1]
            if missing > 0:  # more filters than features: the rest are zero
                filters = torch.cat([filters, filters.new_zeros(len(filters), missing,
                                                                filters.shape[2])], dim=1)
                weights = torch.cat([weights, weights.new_zeros(len(weights), missing)], dim=1)
        else:
            norms = filters.norm(dim=2)
            factor = torch.where(norms > _TINY, norms, torch.ones_like(norms))
            filters = filters / factor[..., None]
            weights = weights * (factor**2 if nonlinearity == "square" else factor)
            if bias is not None:
                bias = bias / factor
        if nonlinearity == "square":
            # (-h . x)^2 = (h . x)^2: the sign of a squared filter is free
            sign = _largest_entry_sign(filters.reshape(-1, filters.shape[-1]))
            filters = filters * sign.reshape(*filters.shape[:2], 1)
        if nonlinearity != "identity":
            tie = weights if bias is None else bias
            order = _descending(weights.abs(), tie)
            filters = filters.gather(1, order[..., None].expand_as(filters))
            weights = weights.gather(1, order)
            if bias is not None:
                bias = bias.gather(1, order)
        if rank is None:
            predictor.filters.copy_(filters)
        else:
            temporal, spatial = _refactor(filters, model.input_shape_[0], rank)
            predictor.temporal.copy_(temporal)
            predictor.spatial.copy_(spatial)
        predictor.weights.copy_(weights)
        if bias is not None:
            predictor.filter_bias.copy_(bias)
    canonical._set_fitted_attributes()
    return canonical
