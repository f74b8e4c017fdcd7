"""The filter bank of a linear-nonlinear (LN) cascade."""

from __future__ import annotations

import math

import torch
from torch import nn

from .linear import LinearPredictor

__all__ = ["NONLINEARITIES", "FilterBankPredictor"]


# named functions, not lambdas: modules holding them must pickle
def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


def _square(z: torch.Tensor) -> torch.Tensor:
    return z * z


NONLINEARITIES = {
    "identity": _identity,
    "relu": torch.relu,
    "softplus": nn.functional.softplus,
    "square": _square,
    "exp": torch.exp,
}

# Nonlinearities with a threshold learn one bias per filter; for the others a
# filter bias is redundant (identity, exp: absorbed by the intercept or the
# output weight) or changes the model class (square: adds a linear term).
_THRESHOLD_NONLINEARITIES = {"relu", "softplus"}


class FilterBankPredictor(nn.Module):
    """Linear predictor of an LN cascade: a bank of filters, a pointwise nonlinearity, a sum.

    For problem (neuron) ``k`` with filters ``h_kj``, output weights ``w_kj``
    and filter biases ``c_kj``::

        eta[:, k] = b_k + sum_j w_kj * f(X @ h_kj + c_kj)

    With ``nonlinearity="identity"`` the output weights are fixed at 1 (a
    buffer, not a parameter), so the predictor is affine in ``X`` with filter
    ``sum_j h_kj``: with one filter it is exactly a GLM's
    :class:`~sklearn_cnnenc.nn.LinearPredictor` (same parameters, in the same
    order, same penalty). Filter biases exist only for thresholding
    nonlinearities (``"relu"``, ``"softplus"``).

    With ``filter_rank=r`` each filter over an input of shape ``(n_lags,
    *spatial)`` is space-time separable of rank r,
    ``h = sum_q temporal_q (outer) spatial_q``.

    Every parameter has the problem axis first, so ``n_outputs`` independent
    fits (neurons, or neurons times random restarts) are solved as one batch
    by the separable full-batch solvers.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one flattened input row, e.g. ``(n_features,)`` or
        ``(n_lags, n_pixels)``.
    n_outputs : int
        Number of independent problems (columns of the linear predictor).
    n_filters : int, default=1
        Filters per problem, ``j = 1 .. n_filters`` above, each with its own
        output weight (and filter bias for thresholding nonlinearities).
    nonlinearity : {"identity", "relu", "softplus", "square", "exp"}, default="softplus"
        The pointwise ``f`` applied to every filter output
        (:data:`NONLINEARITIES`). ``"identity"`` makes the predictor affine
        (output weights fixed at 1); ``"square"`` with two filters is an
        energy model; ``"relu"`` and ``"softplus"`` learn a threshold
        ``c_kj`` per filter.
    filter_rank : int, optional
        Rank of space-time separable filters (needs ``len(input_shape) >= 2``).
    fit_intercept : bool, default=True
    l2 : float, default=0.0
        Ridge strength on the filters (on both separable factors with
        ``filter_rank``), the filter biases and the learned output weights.
    smoothness : float, default=0.0
        Strength of the second-difference penalty of the full filters along
        every axis of ``input_shape`` of length at least 3.
    init : {"random", "zeros"}, default="random"
        ``"zeros"`` starts at the GLM's starting point (valid only when the
        problem is convex: identity nonlinearity, full-rank filters).
        ``"random"`` draws filters with unit expected norm (unit-variance
        projections of standardised inputs) and output weights of size 0.1,
        from torch's global generator.
    nonnegative : bool, default=False
        Make the predictor positive by construction, for the identity link of
        count families: ``eta[:, k] = exp(b_k) + sum_j w_kj (X @ h_kj)^2``
        (the energy model with a positive baseline); the output weights are a
        buffer of ones, not trained (they absorb no more than the filter norms).
        Needs ``nonlinearity="square"`` and ``fit_intercept=True``; ``bias``
        then holds the log of the baseline.
    dtype : torch.dtype, default=torch.float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import FilterBankPredictor
    >>> predictor = FilterBankPredictor((20, 3), n_outputs=2, n_filters=2,
    ...                                 nonlinearity="square", filter_rank=1)
    >>> predictor(torch.randn(5, 60)).shape
    torch.Size([5, 2])
    >>> predictor.full_filters().shape
    torch.Size([2, 2, 60])
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int,
        n_filters: int = 1,
        nonlinearity: str = "softplus",
        filter_rank: int | None = None,
        fit_intercept: bool = True,
        l2: float = 0.0,
        smoothness: float = 0.0,
        init: str = "random",
        nonnegative: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"Unknown nonlinearity {nonlinearity!r}; use one of {sorted(NONLINEARITIES)}."
            )
        if init not in ("random", "zeros"):
            raise ValueError(f"init must be 'random' or 'zeros'; got {init!r}.")
        if nonnegative and (nonlinearity != "square" or not fit_intercept):
            raise ValueError(
                "nonnegative=True needs nonlinearity='square' and fit_intercept=True (a sum "
                f"of squares plus a positive baseline); got nonlinearity={nonlinearity!r}, "
                f"fit_intercept={fit_intercept}."
            )
        self.nonnegative = nonnegative
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_features = math.prod(self.input_shape)
        self.n_filters = n_filters
        self.nonlinearity = nonlinearity
        self.filter_rank = filter_rank
        self.l2 = l2
        self.smoothness = smoothness
        self._activation = NONLINEARITIES[nonlinearity]
        random = init == "random"
        K, k = n_outputs, n_filters

        def draw(*shape: int, scale: float) -> torch.Tensor:
            if not random:
                return torch.zeros(*shape, dtype=dtype)
            return torch.randn(*shape, dtype=dtype) * scale

        # registration order matters: with the identity nonlinearity the flat
        # parameter layout (filters, then bias) is the GLM's (weight, bias), so
        # both models take the same solver path from the same start
        if filter_rank is None:
            self.filters = nn.Parameter(draw(K, k, self.n_features, scale=self.n_features**-0.5))
        else:
            if len(self.input_shape) < 2:
                raise ValueError(
                    "filter_rank needs a two-dimensional input_shape=(n_lags, n_pixels) "
                    f"(or more axes); got input_shape={self.input_shape}."
                )
            n_lags = self.input_shape[0]
            n_space = self.n_features // n_lags
            if not 1 <= filter_rank <= min(n_lags, n_space):
                raise ValueError(
                    f"filter_rank must be between 1 and min(n_lags, n_pixels) = "
                    f"{min(n_lags, n_space)} for input_shape {self.input_shape}; "
                    f"got {filter_rank}."
                )
            self.temporal = nn.Parameter(draw(K, k, filter_rank, n_lags, scale=n_lags**-0.5))
            self.spatial = nn.Parameter(draw(K, k, filter_rank, n_space, scale=n_space**-0.5))
        if nonlinearity == "identity" or nonnegative:
            self.register_buffer("weights", torch.ones(K, k, dtype=dtype))
        else:
            self.weights = nn.Parameter(draw(K, k, scale=0.1))
        if nonlinearity in _THRESHOLD_NONLINEARITIES:
            self.filter_bias = nn.Parameter(torch.zeros(K, k, dtype=dtype))
        else:
            self.register_parameter("filter_bias", None)
        if fit_intercept:
            self.bias = nn.Parameter(torch.zeros(K, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    @property
    def n_outputs(self) -> int:
        return self.weights.shape[0]

    def full_filters(self) -> torch.Tensor:
        """All filters, flattened: a tensor of shape (n_outputs, n_filters, n_features)."""
        if self.filter_rank is None:
            return self.filters
        full = torch.einsum("kjqt,kjqs->kjts", self.temporal, self.spatial)
        return full.reshape(self.n_outputs, self.n_filters, self.n_features)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        filters = self.full_filters()
        if self.nonlinearity == "identity":
            # an affine map: sum the filters first (one product with X, as a GLM)
            weight = filters[:, 0] if self.n_filters == 1 else filters.sum(dim=1)
            if self.bias is None:
                return X @ weight.T
            return torch.addmm(self.bias, X, weight.T)
        K, k = self.n_outputs, self.n_filters
        projection = (X @ filters.reshape(K * k, -1).T).view(-1, K, k)
        if self.nonnegative:
            # a positive baseline exp(b) plus squares with non-negative weights
            # (fixed at 1 in training; canonical forms rescale them): positive
            return (projection * projection * self.weights).sum(dim=2) + self.baseline()
        if self.filter_bias is not None:
            projection = projection + self.filter_bias
        eta = (self._activation(projection) * self.weights).sum(dim=2)
        if self.bias is not None:
            eta = eta + self.bias
        return eta

    def baseline(self) -> torch.Tensor:
        """The additive term of every problem, shape (n_outputs,): ``exp(bias)`` when
        ``nonnegative``, else ``bias`` (zeros without an intercept)."""
        if self.bias is None:
            return self.weights.new_zeros(self.n_outputs)
        return torch.exp(self.bias) if self.nonnegative else self.bias

    def regularizer(self) -> torch.Tensor:
        """Per-problem penalty, shape (n_outputs,)."""
        K = self.n_outputs
        if self.filter_rank is None:
            penalty = 0.5 * self.l2 * (self.filters**2).reshape(K, -1).sum(dim=1)
        else:
            # ridge on both factors fixes their scale ambiguity (t * c, s / c)
            penalty = 0.5 * self.l2 * (
                (self.temporal**2).reshape(K, -1).sum(dim=1)
                + (self.spatial**2).reshape(K, -1).sum(dim=1)
            )
        if self.weights.requires_grad:
            penalty = penalty + 0.5 * self.l2 * (self.weights**2).sum(dim=1)
        if self.filter_bias is not None:
            # without it, a threshold can drift to infinity along a flat
            # direction (a softplus driven into its linear regime)
            penalty = penalty + 0.5 * self.l2 * (self.filter_bias**2).sum(dim=1)
        if self.smoothness > 0:
            penalty = penalty + 0.5 * self.smoothness * self._roughness()
        return penalty

    def _roughness(self) -> torch.Tensor:
        """Squared second differences of every filter along each axis of length >= 3.

        Summed over the filters of each problem, shape (n_outputs,).
        """
        K, k = self.n_outputs, self.n_filters
        total = torch.zeros(K, dtype=self.weights.dtype, device=self.weights.device)
        if self.filter_rank is None:
            shaped = self.filters.reshape(K, k, *self.input_shape)
            for axis, size in enumerate(self.input_shape):
                if size >= 3:
                    curvature = torch.diff(shaped, n=2, dim=axis + 2)
                    total = total + (curvature**2).reshape(K, -1).sum(dim=1)
            return total

        # A separable filter h = sum_q t_q (outer) s_q has its second
        # difference along time in the temporal factors and along a spatial
        # axis in the spatial ones, so ||D h||^2 = sum_qq' (D t_q . D t_q')
        # (s_q . s_q') (and likewise in space): small Gram matrices of the
        # factors, without building the full filters forward() already built.
        def gram(factors: torch.Tensor) -> torch.Tensor:
            flat = factors.reshape(K, k, self.filter_rank, -1)
            return flat @ flat.transpose(-1, -2)

        def contract(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return (left * right).sum(dim=(1, 2, 3))

        spatial = self.spatial.reshape(K, k, self.filter_rank, *self.input_shape[1:])
        if self.input_shape[0] >= 3:
            total = total + contract(
                gram(torch.diff(self.temporal, n=2, dim=-1)), gram(self.spatial)
            )
        temporal_gram = gram(self.temporal)
        for axis, size in enumerate(self.input_shape[1:]):
            if size >= 3:
                total = total + contract(
                    temporal_gram, gram(torch.diff(spatial, n=2, dim=axis + 3))
                )
        return total

    @torch.no_grad()
    def initialize_intercept(self, eta: torch.Tensor) -> None:
        """Start every problem at the linear predictor ``eta`` of its mean response.

        As a GLM's intercept; when ``nonnegative`` (where ``eta`` is the mean
        rate itself) half of it goes to the baseline and half to the squares:
        the filters are rescaled to a total squared norm of ``eta / 2``, the
        mean of the sum of squares for unit-variance (standardised) inputs.
        """
        if not self.nonnegative:
            LinearPredictor.initialize_intercept(self, eta)
            return
        half = 0.5 * eta.to(self.bias.dtype).clamp_min(1e-10)
        self.bias.copy_(torch.log(half))
        norm2 = (self.full_filters() ** 2).sum(dim=(1, 2))
        scale = torch.sqrt(half / torch.where(norm2 > 0, norm2, 1.0))
        if self.filter_rank is None:
            self.filters.mul_(scale[:, None, None])
        else:
            self.temporal.mul_(scale.sqrt()[:, None, None, None])
            self.spatial.mul_(scale.sqrt()[:, None, None, None])

    @torch.no_grad()
    def initialize_filters(self, direction: torch.Tensor) -> None:
        """Start the first filter of the first ``len(direction)`` problems along ``direction``.

        ``direction`` (n_problems, n_features), e.g. each neuron's
        spike-triggered average, is scaled to unit norm (reduced to its best
        rank-``filter_rank`` approximation for separable filters), and that
        filter's output weight is made positive, so the model's response
        grows along ``direction``. Rows of zeros are left unchanged.
        """
        n = len(direction)
        norm = direction.norm(dim=1, keepdim=True)
        valid = (norm[:, 0] > 0) & torch.isfinite(norm[:, 0])
        unit = direction.to(self.weights.dtype) / torch.where(norm > 0, norm, 1.0)
        if self.filter_rank is None:
            self.filters[:n, 0] = torch.where(valid[:, None], unit, self.filters[:n, 0])
        else:
            n_lags = self.input_shape[0]
            u, sigma, vh = torch.linalg.svd(unit.reshape(n, n_lags, -1), full_matrices=False)
            rank = self.filter_rank
            root = sigma[:, :rank].sqrt()
            temporal = (u[:, :, :rank] * root[:, None, :]).transpose(1, 2)
            spatial = vh[:, :rank, :] * root[:, :, None]
            self.temporal[:n, 0] = torch.where(valid[:, None, None], temporal, self.temporal[:n, 0])
            self.spatial[:n, 0] = torch.where(valid[:, None, None], spatial, self.spatial[:n, 0])
        if self.weights.requires_grad:
            self.weights[:n, 0] = torch.where(valid, 0.1, self.weights[:n, 0])

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        """Keep only the problems at ``index`` (e.g. the best restart of each neuron)."""
        for name, param in list(self.named_parameters(recurse=False)):
            setattr(self, name, nn.Parameter(param.detach()[index].clone()))
        for name, buffer in list(self.named_buffers(recurse=False)):
            setattr(self, name, buffer[index].clone())
