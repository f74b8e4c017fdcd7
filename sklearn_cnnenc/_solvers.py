"""Full-batch optimizers for many independent problems solved at once.

Both optimizers in this module solve K *separable* problems simultaneously: the
objective is a sum over problems and problem ``k`` owns row ``k`` of every
parameter tensor (for example a Poisson GLM fitted to K neurons that share one
design matrix, with weight of shape (K, p) and bias of shape (K,)). Each problem
follows the trajectory it would follow if it were solved alone (its own
curvature history, step size and convergence test), while all arithmetic is
done on (K, d) tensors.

The closure contract is shared by both optimizers: ``closure()`` zeroes the
gradients, computes the per-problem *smooth* objective as a tensor of shape
(K,), calls ``.backward()`` on its sum and returns the objective detached. The
L1 term requested through the ``l1`` parameter-group option is added by the
optimizer.

State layout
------------
After :meth:`step`, ``optimizer.state`` holds the following string keys, which
describe the last call to ``step``:

``"n_iter"`` : int64 tensor of shape (K,)
    Iterations used by each problem.
``"converged"`` : bool tensor of shape (K,)
    Whether each problem met its convergence criterion.
``"failed"`` : bool tensor of shape (K,)
    Whether each problem was stopped because its line search (or step-size
    backtracking) found no acceptable point. Failed problems are not converged.
``"n_iter_total"`` : int
    Largest number of iterations used by a problem.
``"n_evals"`` : int
    Number of closure evaluations.
``"by_gradient"`` : bool tensor of shape (K,) (BatchedLBFGS only)
    Whether each problem met the gradient test (not only the objective test).

A closure may compute in a lower precision than the parameters (a float32
pass over float64 data): it then has an ``eps`` attribute (the relative
precision of its values), which scales the round-off allowances of the line
search and the objective test, and a ``gradient_errors`` attribute (pairs
``(parameter, bound)`` of the rounding bound of the last gradient), which the
gradient test of :class:`BatchedLBFGS` adds to the gradient's magnitude.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["BatchedFISTA", "BatchedLBFGS", "LinearGLMObjective", "batched_glm_newton"]

Closure = Callable[[], torch.Tensor]

_ARMIJO_C1 = 1e-4


class _FlatLayout:
    """Parameters of K separable problems seen as one (K, d) matrix.

    Column block ``slices[i]`` of the matrix holds parameter ``params[i]``
    reshaped to (K, -1). Parameters that do not require gradients are left out.
    """

    def __init__(self, param_groups: list[dict[str, Any]]) -> None:
        self.params: list[torch.Tensor] = []
        self.slices: list[slice] = []
        l1_blocks: list[tuple[Any, int]] = []
        group_blocks: list[tuple[Any, int]] = []
        scale_blocks: list[tuple[Any, torch.Tensor]] = []
        n_problems = None
        start = 0
        for group in param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                if p.dim() == 0:
                    raise ValueError(
                        "Every parameter must have a leading problem dimension K; "
                        "got a 0-d parameter."
                    )
                if not p.is_floating_point():
                    raise ValueError(f"Parameters must be floating point; got dtype {p.dtype}.")
                if n_problems is None:
                    n_problems, dtype, device = p.shape[0], p.dtype, p.device
                elif p.shape[0] != n_problems:
                    raise ValueError(
                        "All parameters must share the same leading dimension K "
                        f"(number of problems); got {n_problems} and {p.shape[0]}."
                    )
                elif p.dtype != dtype or p.device != device:
                    raise ValueError(
                        "All parameters must share one dtype and device; got "
                        f"{dtype} on {device} and {p.dtype} on {p.device}."
                    )
                size = math.prod(p.shape[1:])
                self.params.append(p)
                self.slices.append(slice(start, start + size))
                l1_blocks.append((group["l1"], size))
                group_blocks.append((group.get("groups"), size))
                scale_blocks.append((group.get("scale", 1.0), p))
                start += size
        if n_problems is None:
            raise ValueError("The optimizer has no parameter that requires grad.")
        self.n_problems: int = n_problems
        self.dtype: torch.dtype = dtype
        self.device: torch.device = device
        # Per-coordinate L1 strength of shape (d,), or None for a smooth problem.
        strengths = [
            torch.as_tensor(strength, dtype=dtype, device=device).expand(size)
            for strength, size in l1_blocks
        ]
        l1 = torch.cat(strengths)
        # Group lasso: coordinate j belongs to group group_index[j] (-1: plain L1)
        # and group g costs group_strength[g] * ||x_g||_2; l1 is then zero on
        # the grouped coordinates.
        self.group_index: torch.Tensor | None = None
        self.group_strength: torch.Tensor | None = None
        if any(groups is not None for groups, _ in group_blocks):
            index, strength, n_groups = [], [], 0
            for (groups, size), block in zip(group_blocks, strengths, strict=True):
                if groups is None:
                    index.append(torch.full((size,), -1, dtype=torch.int64, device=device))
                    continue
                labels = torch.as_tensor(groups, device=device).reshape(-1)
                if labels.shape != (size,):
                    raise ValueError(
                        f"'groups' must label every coordinate of its parameters ({size}); "
                        f"got {labels.numel()} labels."
                    )
                _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
                # a group's strength: its per-coordinate strength (constant in the
                # group) times sqrt(group size)
                first = torch.zeros(len(counts), dtype=dtype, device=device)
                first.scatter_(0, inverse, block)
                spread = (block - first[inverse]).abs().max()
                if bool(spread > 0):
                    raise ValueError("The L1 strength must be constant within each group.")
                index.append(inverse + n_groups)
                strength.append(first * counts.to(dtype).sqrt())
                n_groups += len(counts)
            self.group_index = torch.cat(index)
            self.group_strength = torch.cat(strength)
            l1 = torch.where(self.group_index >= 0, 0.0, l1)
            grouped = self.group_index >= 0
            self._grouped = grouped
            self._group_onehot = torch.zeros(n_groups, l1.numel(), dtype=dtype, device=device)
            cols = torch.nonzero(grouped).squeeze(1)
            self._group_onehot[self.group_index[cols], cols] = 1.0
        # Per-coordinate scale of shape (d,), or None: the solvers work in the
        # coordinates z = theta * scale (a diagonal preconditioner, e.g. the
        # feature RMS of a GLM), so their steps and tests do not depend on units.
        self.scale: torch.Tensor | None = None
        if any(not (isinstance(v, numbers.Real) and v == 1.0) for v, _ in scale_blocks):
            if self.group_index is not None:
                raise ValueError("A per-group 'scale' cannot be combined with 'groups'.")
            blocks = []
            for value, p in scale_blocks:
                value = torch.as_tensor(value, dtype=dtype, device=device)
                if not bool(torch.all(torch.isfinite(value) & (value > 0))):
                    raise ValueError("scale must be finite and > 0.")
                blocks.append(torch.broadcast_to(value, p.shape[1:]).reshape(-1))
            self.scale = torch.cat(blocks)
            # l1 * |theta| = (l1 / scale) * |z|
            l1 = l1 / self.scale
        self.l1: torch.Tensor | None = l1 if bool((l1 > 0).any()) else None

    @property
    def has_groups(self) -> bool:
        return self.group_index is not None

    @property
    def nonsmooth(self) -> bool:
        return self.l1 is not None or self.has_groups

    def group_norms(self, x: torch.Tensor) -> torch.Tensor:
        """Per-problem Euclidean norm of every group, shape (K, n_groups)."""
        return ((x * x) @ self._group_onehot.T).sqrt()

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        """Per-problem non-smooth term (L1 plus group lasso), shape (K,)."""
        total = x.new_zeros(x.shape[0])
        if self.l1 is not None:
            total = total + x.abs() @ self.l1
        if self.has_groups:
            total = total + self.group_norms(x) @ self.group_strength
        return total

    def prox(self, z: torch.Tensor, step_size: torch.Tensor) -> torch.Tensor:
        """Proximal operator of ``step_size * penalty`` (per problem)."""
        t = step_size[:, None]
        if self.l1 is not None:
            z = _soft_threshold(z, t * self.l1)
        if self.has_groups:
            # block soft-thresholding: shrink each group's norm by t * lambda_g
            norms = self.group_norms(z)
            shrink = (1.0 - t * self.group_strength / norms.clamp_min(1e-300)).clamp_min(0.0)
            z = torch.where(self._grouped, z * (shrink @ self._group_onehot), z)
        return z

    def get(self) -> torch.Tensor:
        """Return a (K, d) copy of the current parameters (scaled coordinates)."""
        x = torch.cat([p.detach().reshape(self.n_problems, -1) for p in self.params], dim=1)
        return x if self.scale is None else x * self.scale

    def set(self, x: torch.Tensor) -> None:
        """Write the (K, d) matrix ``x`` (scaled coordinates) into the parameters in place."""
        if self.scale is not None:
            x = x / self.scale
        for p, cols in zip(self.params, self.slices, strict=True):
            p.copy_(x[:, cols].reshape(p.shape))

    def grad(self) -> torch.Tensor:
        """Return the (K, d) gradient in scaled coordinates; a missing ``.grad`` is zero."""
        blocks = []
        for p in self.params:
            if p.grad is None:
                blocks.append(p.new_zeros(self.n_problems, p[0].numel()))
            else:
                blocks.append(p.grad.reshape(self.n_problems, -1))
        # torch.cat copies, so a later in-place zero_grad cannot alter the result.
        g = torch.cat(blocks, dim=1)
        return g if self.scale is None else g / self.scale

    def evaluate(self, closure: Closure) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the closure; return the smooth objective (K,) and gradient (K, d)."""
        with torch.enable_grad():
            f = closure()
        f = torch.as_tensor(f).detach()
        if f.shape != (self.n_problems,):
            raise ValueError(
                "The closure must return the per-problem objective of shape "
                f"({self.n_problems},); got shape {tuple(f.shape)}."
            )
        return f.to(self.dtype), self.grad()

    def l1_penalty(self, x: torch.Tensor) -> torch.Tensor:
        """Return the per-problem L1 term of shape (K,)."""
        return x.abs() @ self.l1

    def gradient_error(self, closure: Closure) -> torch.Tensor | None:
        """Rounding bound of the closure's last gradient, (K, d) in scaled coordinates.

        A closure that computes in a lower precision than the parameters
        states it as ``closure.gradient_errors``: pairs ``(parameter, bound)``
        with ``bound`` shaped like the parameter (a missing one is zero).
        None where the closure states none.
        """
        pairs = getattr(closure, "gradient_errors", None)
        if pairs is None:
            return None
        blocks = []
        for p in self.params:
            bound = next((b for q, b in pairs if q is p), None)
            if bound is None:
                blocks.append(p.new_zeros(self.n_problems, p[0].numel()))
            else:
                blocks.append(bound.to(self.dtype).reshape(self.n_problems, -1))
        e = torch.cat(blocks, dim=1)
        return e if self.scale is None else e / self.scale


def _pseudo_gradient(x: torch.Tensor, g: torch.Tensor, l1: torch.Tensor) -> torch.Tensor:
    """Minimum-norm subgradient of ``f(x) + sum(l1 * |x|)`` (Andrew & Gao 2007)."""
    right = g + l1
    left = g - l1
    at_zero = torch.where(right < 0, right, torch.where(left > 0, left, 0.0))
    return torch.where(x > 0, right, torch.where(x < 0, left, at_zero))


def _soft_threshold(z: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Proximal operator of ``threshold * |z|`` applied elementwise."""
    return z.sign() * (z.abs() - threshold).clamp_min(0.0)


def _max_abs(a: torch.Tensor) -> torch.Tensor:
    return a.abs().amax(dim=1)


class _BatchedOptimizer(torch.optim.Optimizer):
    """Shared validation and bookkeeping; only ``l1`` and ``groups`` may differ between groups.

    ``l1`` is a float or a 1-D tensor with one strength per coordinate of a
    problem's slice of the group's parameters (per-feature penalty weights).
    ``groups`` (FISTA only) labels those coordinates; the L1 term of the group
    then becomes the group lasso ``sum_g l1_g * sqrt(|g|) * ||theta_g||_2``.
    """

    # Tells EncoderNet.train_step to pass a closure returning one objective per problem.
    separable = True
    _global_options: tuple[str, ...] = ()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        l1 = group["l1"]
        if isinstance(l1, numbers.Real):
            ok = l1 >= 0
        else:
            values = torch.as_tensor(l1)
            ok = values.dim() == 1 and bool((values >= 0).all()) and bool(values.isfinite().all())
        if not ok:
            raise ValueError(
                f"l1 must be a float >= 0 or a 1-D tensor of such values; got {l1!r}."
            )
        group.setdefault("groups", None)
        group.setdefault("scale", 1.0)

    def _layout_and_options(self) -> tuple[_FlatLayout, dict[str, Any]]:
        first = self.param_groups[0]
        for group in self.param_groups[1:]:
            for name in self._global_options:
                same = group[name] is first[name]
                if not same and not torch.is_tensor(group[name]):
                    same = group[name] == first[name]
                if not same:
                    raise ValueError(
                        "Only 'l1' may differ between parameter groups (and 'groups', "
                        f"'scale'); '{name}' "
                        f"is {first[name]!r} and {group[name]!r}."
                    )
        options = {name: first[name] for name in self._global_options}
        return _FlatLayout(self.param_groups), options

    def _record(
        self,
        n_iter: torch.Tensor,
        converged: torch.Tensor,
        failed: torch.Tensor,
        n_evals: int,
    ) -> None:
        self.state["n_iter"] = n_iter
        self.state["converged"] = converged
        self.state["failed"] = failed
        self.state["n_iter_total"] = int(n_iter.max()) if n_iter.numel() else 0
        self.state["n_evals"] = n_evals


def _tolerance(tol: float, tol_scale, n_problems: int, like: torch.Tensor) -> torch.Tensor:
    """Per-problem gradient tolerance ``tol * tol_scale`` of shape (K,)."""
    if tol_scale is None:
        return like.new_full((n_problems,), float(tol))
    tol_scale = torch.as_tensor(tol_scale, dtype=like.dtype, device=like.device)
    return float(tol) * torch.broadcast_to(tol_scale, (n_problems,))


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}.")


class BatchedLBFGS(_BatchedOptimizer):
    """L-BFGS (OWL-QN under L1) for K independent problems solved at once.

    Every parameter tensor has leading dimension K and row ``k`` of every
    parameter belongs to problem ``k``. Each problem keeps its own L-BFGS
    history, backtracking Armijo line search and convergence test; a converged
    problem is frozen while the others continue. When a parameter group has
    ``l1 > 0`` the method is OWL-QN (Andrew & Gao 2007), which yields exact
    zeros.

    Parameters
    ----------
    params : iterable of torch.Tensor or dict
        Parameters or parameter groups. All tensors share the leading dimension
        K. Only ``l1`` may differ between groups. Parameters with
        ``requires_grad=False`` are left untouched.
    lr : float, default=1.0
        First trial step of each line search. On the first iteration, and
        whenever a problem has no curvature information (for example after a
        history reset), the first trial step is ``lr * min(1, 1 / ||pg||_1)``
        as in :class:`torch.optim.LBFGS`.
    max_iter : int, default=100
        Maximum number of iterations per call to :meth:`step`.
    tol : float, default=1e-4
        A problem has converged when ``max_j |pg_kj| <= tol``, where ``pg`` is
        the gradient, or the pseudo-gradient under L1.
    ftol : float or None, default=None
        A problem has also converged when its objective decrease satisfies
        ``f_prev - f <= ftol * max(|f_prev|, |f|, 1)``. ``None`` means
        ``64 * torch.finfo(dtype).eps``, as scipy and scikit-learn use.
    history_size : int, default=10
        Number of curvature pairs kept per problem.
    max_line_search : int, default=25
        Maximum number of trial points per line search. A problem whose line
        search fails is stopped and reported as failed.
    l1 : float, default=0.0
        Per-group L1 strength: ``l1 * sum(|theta|)`` over the group's
        parameters is added to each problem's objective.
    tol_scale : float or tensor of shape (K,), optional
        Per-problem reference scale of the gradient: the gradient test is
        ``max_j |pg_kj| <= tol * tol_scale[k]`` (e.g. each neuron's mean
        response, so that sparse spikes are fitted as precisely as dense
        ones). None means 1.
    curvature : float or tensor of shape (K,), optional
        Per-problem estimate of the objective's curvature at the starting
        point (in the scaled coordinates): the first trial step is then the
        Newton step ``-lr * pg / curvature`` instead of the short
        ``lr * min(1, 1 / ||pg||_1)`` one. Non-positive entries keep the
        default. Only the first iteration of each :meth:`step` uses it.

    Notes
    -----
    A parameter group may carry a ``scale`` (a float, or a tensor that
    broadcasts against one problem's slice of the parameter, e.g. shape
    (p,) for a weight of shape (K, p)): the solver then works in the
    coordinates ``z = theta * scale``, so the line search, the curvature
    pairs and the gradient test (on ``d objective / d z = grad / scale``)
    see a problem whose scale does not depend on the units of the data
    (a diagonal preconditioner; a GLM passes its feature RMS).

    ``step(closure)`` returns the final per-problem objective (L1 included) and
    fills ``self.state`` with ``"n_iter"``, ``"converged"``, ``"failed"``,
    ``"n_iter_total"`` and ``"n_evals"`` (see the module docstring). Calling
    ``step`` again continues from the current parameters with a fresh history.

    The Armijo test accepts a trial point whose objective rises by at most
    ``1024 * eps * |f|`` above the sufficient-decrease line: such a change is
    round-off (another BLAS kernel, batch size or thread count moves the last
    bits of ``f``), so the accepted steps, the iterates and the iteration
    counts do not depend on it nor on the other problems of the batch.

    A curvature pair is skipped for a problem when
    ``s.y <= max(1e-10, eps) * ||y||^2``. A problem whose search direction is
    not a descent direction has its history reset and takes a steepest descent
    step.

    References
    ----------
    Galen Andrew and Jianfeng Gao (2007). "Scalable training of L1-regularized
    log-linear models." ICML.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc._solvers import BatchedLBFGS
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(100, 3, dtype=torch.float64)
    >>> W_true = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]], dtype=torch.float64)
    >>> Y = X @ W_true.T  # two least-squares problems sharing X
    >>> W = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    >>> opt = BatchedLBFGS([W], tol=1e-8)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = 0.5 * ((Y - X @ W.T) ** 2).mean(dim=0)
    ...     loss.sum().backward()
    ...     return loss.detach()
    >>> objective = opt.step(closure)
    >>> torch.allclose(W, W_true)
    True
    >>> opt.state["converged"]
    tensor([True, True])
    """

    _global_options = (
        "lr",
        "max_iter",
        "tol",
        "tol_scale",
        "ftol",
        "history_size",
        "max_line_search",
        "curvature",
    )

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-4,
        ftol: float | None = None,
        history_size: int = 10,
        max_line_search: int = 25,
        l1: float = 0.0,
        tol_scale: torch.Tensor | float | None = None,
        curvature: torch.Tensor | float | None = None,
    ) -> None:
        _check_positive("lr", lr)
        _check_positive("max_iter", max_iter)
        _check_positive("history_size", history_size)
        _check_positive("max_line_search", max_line_search)
        if tol < 0 or (ftol is not None and ftol < 0):
            raise ValueError("tol and ftol must be >= 0.")
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            tol=tol,
            ftol=ftol,
            history_size=history_size,
            max_line_search=max_line_search,
            l1=l1,
            tol_scale=tol_scale,
            curvature=curvature,
        )
        super().__init__(params, defaults)
        self._layout_and_options()

    @torch.no_grad()
    def step(self, closure: Closure) -> torch.Tensor:  # type: ignore[override]
        """Run up to ``max_iter`` iterations on every unconverged problem.

        Parameters
        ----------
        closure : callable
            Zeroes the gradients, computes the per-problem smooth objective of
            shape (K,), calls ``.backward()`` on its sum and returns the
            objective detached.

        Returns
        -------
        objective : torch.Tensor of shape (K,)
            Final per-problem objective, L1 term included.
        """
        layout, opt = self._layout_and_options()
        lr, m = opt["lr"], opt["history_size"]
        eps = torch.finfo(layout.dtype).eps
        # a closure that computes in a lower precision than the parameters (a
        # float32 pass over float64 data) states its relative precision
        closure_eps = float(getattr(closure, "eps", eps))
        ftol = 64 * max(eps, closure_eps) if opt["ftol"] is None else opt["ftol"]
        curvature_eps = max(1e-10, eps)
        # objectives that differ by less than this are equal up to round-off (another
        # BLAS kernel, batch size or thread count moves their last bits), as in FISTA;
        # a lower-precision sum is noisier, but the factor stays small there so
        # that the objective still decides at the 1e-6 level
        noise_tol = 1024 * eps if closure_eps <= eps else 32 * closure_eps
        if layout.has_groups:
            raise ValueError(
                "BatchedLBFGS (OWL-QN) cannot minimise a group-lasso penalty; use BatchedFISTA."
            )
        l1 = layout.l1
        owlqn = l1 is not None
        n_problems, device = layout.n_problems, layout.device
        rows = torch.arange(n_problems, device=device)

        x = layout.get()
        f, g = layout.evaluate(closure)
        n_evals = 1
        if owlqn:
            f = f + layout.l1_penalty(x)
            pg = _pseudo_gradient(x, g, l1)
            smooth_coord = l1 == 0
        else:
            pg = g

        tol = _tolerance(opt["tol"], opt["tol_scale"], n_problems, f)

        def gradient_test(pg: torch.Tensor) -> torch.Tensor:
            passed = _max_abs(pg) <= tol
            if not bool(passed.any()):
                return passed
            # with a rounding bound the test must hold for every gradient within it
            error = layout.gradient_error(closure)
            return passed if error is None else _max_abs(pg.abs() + error) <= tol

        converged = gradient_test(pg)
        by_gradient = converged.clone()
        failed = torch.zeros_like(converged)
        active = ~converged
        n_iter = torch.zeros(n_problems, dtype=torch.int64, device=device)

        # Per-problem ring buffers of curvature pairs: slot head[k] is written
        # next and the count[k] slots before it are valid.
        dim = x.shape[1]
        s_hist = x.new_zeros(n_problems, m, dim)
        y_hist = x.new_zeros(n_problems, m, dim)
        rho_hist = x.new_zeros(n_problems, m)
        head = torch.zeros(n_problems, dtype=torch.int64, device=device)
        count = torch.zeros_like(head)
        gamma = x.new_ones(n_problems)
        n_hist = 0  # upper bound on count, known without a device sync

        first_step = None
        if opt["curvature"] is not None:
            curvature = torch.broadcast_to(
                torch.as_tensor(opt["curvature"], dtype=x.dtype, device=device), (n_problems,)
            )
            usable = torch.isfinite(curvature) & (curvature > 0)
            first_step = torch.where(usable, lr / torch.where(usable, curvature, 1.0), -1.0)

        for it in range(opt["max_iter"]):
            if not bool(active.any()):
                break
            n_iter += active

            d = _two_loop(pg, s_hist, y_hist, rho_hist, head, count, gamma, n_hist)
            if owlqn:
                d = torch.where((d.sign() == -pg.sign()) | smooth_coord, d, 0.0)
            gd = torch.linalg.vecdot(pg, d)
            reset = ~(gd < 0)
            d = torch.where(reset[:, None], -pg, d)
            gd = torch.where(reset, -torch.linalg.vecdot(pg, pg), gd)
            count = torch.where(reset, 0, count)
            gamma = torch.where(reset, 1.0, gamma)
            step_size = torch.where(
                count == 0,
                lr * torch.reciprocal(pg.abs().sum(dim=1)).clamp_max(1.0),
                lr,
            )
            if it == 0 and first_step is not None:
                # a Newton step along -pg for the stated curvature (e.g. a GLM's
                # Fisher weight at its null model, in scaled coordinates)
                step_size = torch.where((first_step > 0) & (count == 0), first_step, step_size)
            if owlqn:
                orthant = torch.where(x != 0, x.sign(), -pg.sign())

            x_new, f_new, g_new = x, f, g
            pending = active
            for _ in range(opt["max_line_search"]):
                x_trial = x + step_size[:, None] * d
                if owlqn:
                    x_trial = torch.where((x_trial.sign() == orthant) | smooth_coord, x_trial, 0.0)
                # Problems already accepted stay at their point.
                x_eval = torch.where(pending[:, None], x_trial, x_new)
                layout.set(x_eval)
                f_eval, g_eval = layout.evaluate(closure)
                n_evals += 1
                if owlqn:
                    f_eval = f_eval + layout.l1_penalty(x_eval)
                    decrease = torch.linalg.vecdot(pg, x_eval - x)
                else:
                    decrease = step_size * gd
                # Armijo, where a change at rounding level counts as no change: near the
                # optimum both sides are noise, and an exact test would accept or reject
                # a step by the last bits of the objective
                ok = pending & torch.isfinite(f_eval) & (
                    f_eval <= f + _ARMIJO_C1 * decrease + noise_tol * f.abs()
                )
                x_new = torch.where(ok[:, None], x_eval, x_new)
                f_new = torch.where(ok, f_eval, f_new)
                g_new = torch.where(ok[:, None], g_eval, g_new)
                pending = pending & ~ok
                if not bool(pending.any()):
                    break
                # backtrack to the minimiser of the quadratic through f(0),
                # f'(0) = gd and f(t), kept within [0.1 t, 0.5 t] (Nocedal &
                # Wright, section 3.5); a non-finite trial point divides t by 10
                curvature = f_eval - f - gd * step_size
                quadratic = -gd * step_size**2 / (2 * curvature)
                shrunk = torch.where(
                    torch.isfinite(quadratic) & (curvature > 0),
                    torch.minimum(torch.maximum(quadratic, 0.1 * step_size), 0.5 * step_size),
                    0.1 * step_size,
                )
                step_size = torch.where(pending, shrunk, step_size)
            else:
                failed = failed | pending
                active = active & ~pending
                layout.set(x_new)

            s = x_new - x
            y = g_new - g
            sy = torch.linalg.vecdot(s, y)
            yy = torch.linalg.vecdot(y, y)
            update = active & (sy > curvature_eps * yy)
            s_hist[rows, head] = torch.where(update[:, None], s, s_hist[rows, head])
            y_hist[rows, head] = torch.where(update[:, None], y, y_hist[rows, head])
            rho_hist[rows, head] = torch.where(update, torch.reciprocal(sy), rho_hist[rows, head])
            gamma = torch.where(update, sy / yy, gamma)
            head = torch.where(update, (head + 1) % m, head)
            count = torch.where(update, (count + 1).clamp_max(m), count)
            n_hist = min(n_hist + 1, m)

            pg_new = _pseudo_gradient(x_new, g_new, l1) if owlqn else g_new
            scale = torch.maximum(torch.maximum(f.abs(), f_new.abs()), f.new_ones(()))
            # the closure's last evaluation was at x_new for every active problem
            # (accepted rows stay at their point; a failed line search deactivates)
            gradient_done = active & gradient_test(pg_new)
            done = gradient_done | (active & (f - f_new <= ftol * scale))
            by_gradient = by_gradient | gradient_done
            converged = converged | done
            active = active & ~done
            x, f, g, pg = x_new, f_new, g_new, pg_new

        self._record(n_iter, converged, failed, n_evals)
        self.state["by_gradient"] = by_gradient
        return f


def _two_loop(
    pg: torch.Tensor,
    s_hist: torch.Tensor,
    y_hist: torch.Tensor,
    rho_hist: torch.Tensor,
    head: torch.Tensor,
    count: torch.Tensor,
    gamma: torch.Tensor,
    n_hist: int,
) -> torch.Tensor:
    """Return ``-H @ pg`` per problem with the L-BFGS two-loop recursion."""
    if n_hist == 0:
        return -pg
    m = s_hist.shape[1]
    n_problems = pg.shape[0]
    # Newest pair first: column j holds the j-th most recent slot of each problem.
    ages = torch.arange(n_hist, device=pg.device)
    slots = (head[:, None] - 1 - ages) % m
    rows = torch.arange(n_problems, device=pg.device)[:, None]
    s = s_hist[rows, slots]
    y = y_hist[rows, slots]
    # Slots beyond a problem's own count are stale or empty: rho = 0 ignores them.
    rho = torch.where(ages < count[:, None], rho_hist[rows, slots], 0.0)

    q = pg.clone()
    alpha = []
    for j in range(n_hist):
        a = rho[:, j] * torch.linalg.vecdot(s[:, j], q)
        q.sub_(a[:, None] * y[:, j])
        alpha.append(a)
    r = q.mul_(gamma[:, None])
    for j in reversed(range(n_hist)):
        b = rho[:, j] * torch.linalg.vecdot(y[:, j], r)
        r.add_((alpha[j] - b)[:, None] * s[:, j])
    return r.neg_()


class BatchedFISTA(_BatchedOptimizer):
    """Accelerated proximal gradient for K independent problems solved at once.

    FISTA (Beck & Teboulle 2009) with a per-problem backtracking step size,
    soft-thresholding for parameter groups with ``l1 > 0`` and per-problem
    adaptive restart of the momentum when the objective increases
    (O'Donoghue & Candès 2015). Row ``k`` of every parameter belongs to
    problem ``k``; a converged problem is frozen while the others continue.

    Parameters
    ----------
    params : iterable of torch.Tensor or dict
        Parameters or parameter groups. All tensors share the leading dimension
        K. Only ``l1`` may differ between groups. Parameters with
        ``requires_grad=False`` are left untouched.
    lr : float, default=1.0
        Initial step size of every problem.
    max_iter : int, default=1000
        Maximum number of iterations per call to :meth:`step`.
    tol : float, default=1e-4
        A problem has converged when the largest absolute entry of its gradient
        mapping ``(theta - prox(theta - t * g)) / t`` is at most ``tol``.
    max_line_search : int, default=25
        Maximum number of step-size halvings per iteration. A problem that
        exhausts them is stopped and reported as failed.
    step_growth : float, default=1.25
        Factor applied to each problem's step size at the start of every
        iteration after the first, so that the step is not only shrunk.
    l1 : float, default=0.0
        Per-group L1 strength: ``l1 * sum(|theta|)`` over the group's
        parameters is added to each problem's objective.
    tol_scale : float or tensor of shape (K,), optional
        Per-problem reference scale of the gradient mapping, as for
        :class:`BatchedLBFGS`.

    Notes
    -----
    A per-group ``scale`` makes the solver work in the coordinates
    ``z = theta * scale``, as for :class:`BatchedLBFGS` (not with ``groups``).

    A step size ``t`` is accepted when the smooth part at the new point lies
    below its quadratic upper bound at the extrapolated point ``v``:
    ``f(x) <= f(v) + g(v).(x - v) + ||x - v||^2 / (2 t)``. When ``f(x) - f(v)``
    is too small to be computed accurately, ``f(x) - f(v) - g(v).(x - v)`` is
    replaced by its trapezoid estimate ``(g(x) - g(v)).(x - v) / 2`` (as TFOCS,
    Becker, Candès & Grant 2011, does).
    The momentum restarts when the objective rises by more than
    ``1024 * eps * |f|``: a rise at rounding level is noise, and the last bits
    of ``f`` differ between BLAS kernels (batch size, thread count, CPU), so an
    exact comparison would let that noise decide restarts near the optimum and
    make a problem's solution depend on the batch it is solved in.
    ``step(closure)`` returns the final per-problem objective (L1 included) and
    fills ``self.state`` like :class:`BatchedLBFGS`, plus ``"step_size"``
    (tensor of shape (K,)).

    References
    ----------
    Amir Beck and Marc Teboulle (2009). "A fast iterative shrinkage-thresholding
    algorithm for linear inverse problems." SIAM J. Imaging Sciences.

    Brendan O'Donoghue and Emmanuel Candès (2015). "Adaptive restart for
    accelerated gradient schemes." Foundations of Computational Mathematics.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc._solvers import BatchedFISTA
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(100, 3, dtype=torch.float64)
    >>> W_true = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 3.0]], dtype=torch.float64)
    >>> Y = X @ W_true.T
    >>> W = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    >>> opt = BatchedFISTA([W], tol=1e-8, l1=0.1)  # lasso
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = 0.5 * ((Y - X @ W.T) ** 2).mean(dim=0)
    ...     loss.sum().backward()
    ...     return loss.detach()
    >>> objective = opt.step(closure)
    >>> (W == 0).sum(dim=1)  # exact zeros where the true weight is zero
    tensor([1, 1])
    """

    _global_options = ("lr", "max_iter", "tol", "tol_scale", "max_line_search", "step_growth")

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        max_iter: int = 1000,
        tol: float = 1e-4,
        max_line_search: int = 25,
        step_growth: float = 1.25,
        l1: float = 0.0,
        tol_scale: torch.Tensor | float | None = None,
    ) -> None:
        _check_positive("lr", lr)
        _check_positive("max_iter", max_iter)
        _check_positive("max_line_search", max_line_search)
        if tol < 0:
            raise ValueError(f"tol must be >= 0; got {tol!r}.")
        if step_growth < 1:
            raise ValueError(f"step_growth must be >= 1; got {step_growth!r}.")
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            tol=tol,
            max_line_search=max_line_search,
            step_growth=step_growth,
            l1=l1,
            tol_scale=tol_scale,
        )
        super().__init__(params, defaults)
        self._layout_and_options()

    @torch.no_grad()
    def step(self, closure: Closure) -> torch.Tensor:  # type: ignore[override]
        """Run up to ``max_iter`` iterations on every unconverged problem.

        Parameters
        ----------
        closure : callable
            Zeroes the gradients, computes the per-problem smooth objective of
            shape (K,), calls ``.backward()`` on its sum and returns the
            objective detached.

        Returns
        -------
        objective : torch.Tensor of shape (K,)
            Final per-problem objective, L1 term included.
        """
        layout, opt = self._layout_and_options()
        eps = torch.finfo(layout.dtype).eps
        backtrack_tol = eps**0.5
        restart_tol = 1024 * eps
        nonsmooth = layout.nonsmooth
        n_problems, device = layout.n_problems, layout.device

        def prox(z: torch.Tensor, step_size: torch.Tensor) -> torch.Tensor:
            return layout.prox(z, step_size) if nonsmooth else z

        def gradient_mapping_max(
            x: torch.Tensor, g: torch.Tensor, step_size: torch.Tensor
        ) -> torch.Tensor:
            if not nonsmooth:
                return _max_abs(g)
            t = step_size[:, None]
            return _max_abs((x - prox(x - t * g, step_size)) / t)

        def penalty(x: torch.Tensor) -> torch.Tensor:
            return layout.penalty(x) if nonsmooth else 0.0

        x = layout.get()
        f, g = layout.evaluate(closure)
        n_evals = 1
        objective = f + penalty(x)
        step_size = torch.full((n_problems,), float(opt["lr"]), dtype=x.dtype, device=device)
        tol = _tolerance(opt["tol"], opt["tol_scale"], n_problems, f)
        converged = gradient_mapping_max(x, g, step_size) <= tol
        failed = torch.zeros_like(converged)
        active = ~converged
        n_iter = torch.zeros(n_problems, dtype=torch.int64, device=device)
        momentum = x.new_ones(n_problems)
        v, f_v, g_v = x, f, g  # extrapolated point and its smooth part

        for it in range(opt["max_iter"]):
            if not bool(active.any()):
                break
            n_iter += active
            if it > 0:
                step_size = torch.where(active, opt["step_growth"] * step_size, step_size)

            x_new, f_new, g_new = x, f, g
            pending = active
            for _ in range(opt["max_line_search"]):
                x_trial = prox(v - step_size[:, None] * g_v, step_size)
                x_eval = torch.where(pending[:, None], x_trial, x_new)
                layout.set(x_eval)
                f_eval, g_eval = layout.evaluate(closure)
                n_evals += 1
                diff = x_trial - v
                excess = f_eval - f_v - torch.linalg.vecdot(g_v, diff)
                # Once f(x) - f(v) is down to rounding noise the excess above is
                # noise too; the trapezoid estimate from the gradients (exact for a
                # quadratic) then decides, as in TFOCS.
                reliable = (f_eval - f_v).abs() >= backtrack_tol * torch.maximum(
                    f_eval.abs(), f_v.abs()
                )
                excess = torch.where(
                    reliable, excess, 0.5 * torch.linalg.vecdot(g_eval - g_v, diff)
                )
                ok = (
                    pending
                    & torch.isfinite(f_eval)
                    & (excess <= torch.linalg.vecdot(diff, diff) / (2 * step_size))
                )
                x_new = torch.where(ok[:, None], x_eval, x_new)
                f_new = torch.where(ok, f_eval, f_new)
                g_new = torch.where(ok[:, None], g_eval, g_new)
                pending = pending & ~ok
                if not bool(pending.any()):
                    break
                step_size = torch.where(pending, 0.5 * step_size, step_size)
            else:
                failed = failed | pending
                active = active & ~pending

            objective_new = f_new + penalty(x_new)
            restart = objective_new - objective > restart_tol * torch.maximum(
                objective.abs(), objective_new.abs()
            )
            momentum_next = 0.5 * (1 + torch.sqrt(1 + 4 * momentum**2))
            beta = torch.where(restart, 0.0, (momentum - 1) / momentum_next)
            momentum = torch.where(restart, 1.0, momentum_next)

            done = active & (gradient_mapping_max(x_new, g_new, step_size) <= tol)
            converged = converged | done
            active = active & ~done
            beta = torch.where(active, beta, 0.0)
            x_prev = x
            x, f, g, objective = x_new, f_new, g_new, objective_new

            if it + 1 < opt["max_iter"] and bool((beta != 0).any()):
                v = x + beta[:, None] * (x - x_prev)
                layout.set(v)
                f_v, g_v = layout.evaluate(closure)
                n_evals += 1
            else:
                v, f_v, g_v = x, f, g

        layout.set(x)
        self._record(n_iter, converged, failed, n_evals)
        self.state["step_size"] = step_size
        return objective


class LinearGLMObjective:
    """Closure of the batched solvers for a GLM ``eta = X @ W.T + b (+ offset)``.

    Evaluates the per-problem objective ``mean_i s_i loss(eta)[i, k] +
    penalty_k`` and writes the gradients into ``weight.grad`` and ``bias.grad``
    without an autograd graph through the design: autograd differentiates the
    elementwise loss only (``R = d loss / d eta``, shape (n, K)), and the
    gradient is the single matrix product ``R.T @ X``. That keeps one pass
    over ``X`` for the predictor and one for the gradient per evaluation, and
    none of the generic path's elementwise backward bookkeeping.

    Parameters
    ----------
    predictor : module with ``weight`` (K, p), ``bias`` (K,) or None and ``regularizer()``
        Read at every call, so the solver's in-place updates are seen.
    X : tensor of shape (n, p)
    loss : callable
        Maps ``eta`` of shape (n, K) to the elementwise loss of shape (n, K).
    sample_weight : tensor of shape (n,), optional
        Weights of mean 1 (the objective is ``sample_weight @ loss / n``).
    offset : tensor of shape (n, 1) or (n, K), optional
    loss_and_derivative : callable, optional
        Maps ``eta`` to ``(loss, d loss / d eta)`` in closed form (a canonical
        link), or to None where ``loss`` and autograd must be used instead.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.nn import LinearPredictor
    >>> from sklearn_cnnenc._solvers import BatchedLBFGS, LinearGLMObjective
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(500, 2, dtype=torch.float64)
    >>> Y = torch.poisson(torch.exp(X @ torch.tensor([[0.5], [-0.5]], dtype=torch.float64)))
    >>> predictor = LinearPredictor(2, 1, dtype=torch.float64)
    >>> objective = LinearGLMObjective(predictor, X, lambda eta: torch.exp(eta) - Y * eta)
    >>> _ = BatchedLBFGS(predictor.parameters(), tol=1e-8).step(objective)
    >>> bool((predictor.weight - torch.tensor([[0.5, -0.5]])).abs().max() < 0.2)
    True
    """

    def __init__(
        self, predictor, X, loss, sample_weight=None, offset=None, loss_and_derivative=None
    ) -> None:
        self.predictor = predictor
        self.X = X
        self.loss = loss
        self.sample_weight = sample_weight
        self.offset = offset
        self.loss_and_derivative = loss_and_derivative
        self._column_norms = None
        self._last = None  # what the rounding bounds of the last gradient need
        self._eta_buffer = None

    @property
    def eps(self) -> float:
        """Relative precision of the computed values (that of ``X``'s dtype)."""
        return torch.finfo(self.X.dtype).eps

    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        if self.sample_weight is None:
            return values.mean(dim=0)
        return (self.sample_weight @ values) / len(values)

    def _penalty(self, weight) -> tuple:
        """The predictor's penalty (K,) and its gradient in ``weight`` (or None)."""
        from .nn.linear import LinearPredictor

        predictor = self.predictor
        if type(predictor).regularizer is LinearPredictor.regularizer:
            # the ridge in closed form: no autograd call per evaluation
            with torch.no_grad():
                factors = predictor.penalty_weights
                scaled = weight if factors is None else weight * factors
                penalty = 0.5 * predictor.l2 * (weight * scaled).sum(dim=1)
                return penalty, (predictor.l2 * scaled if predictor.l2 else None)
        with torch.enable_grad():
            penalty = predictor.regularizer()
            if torch.is_tensor(penalty) and penalty.requires_grad:
                (penalty_grad,) = torch.autograd.grad(penalty.sum(), weight)
                return penalty, penalty_grad
        return penalty, None

    @property
    def gradient_errors(self) -> list | None:
        """Rounding bounds ``(parameter, bound)`` of the last gradient (low precision only)."""
        return None if self._last is None else self._rounding_bounds(*self._last)

    def _rounding_bounds(self, weight, bias, residual: torch.Tensor, scale: float) -> list:
        """Probabilistic rounding bounds of ``X.T @ residual`` and ``residual.sum(0)``.

        Higham & Mary (2019): a sum of n terms computed with unit roundoff
        ``u = eps / 2`` errs by about ``sqrt(n) * u * sum |terms|`` (their
        probabilistic bound; blocked BLAS sums err less); by Cauchy-Schwarz
        ``sum_i |x_ij r_ik| <= ||x_j|| ||r_k||``. Rounding ``X`` itself to the
        working precision adds ``u * sum |terms|``, far within the bound.
        """
        if self._column_norms is None:
            self._column_norms = torch.linalg.vector_norm(self.X, dim=0).to(weight.dtype)
        factor = math.sqrt(len(residual)) * self.eps / 2 * scale
        # (a sum over rows of the squares: torch's strided norm is slower)
        norms = (residual * residual).sum(dim=0).sqrt().to(weight.dtype) * factor
        pairs = [(weight, norms[:, None] * self._column_norms)]
        if bias is not None:
            pairs.append((bias, norms * math.sqrt(len(residual))))
        return pairs

    def __call__(self) -> torch.Tensor:
        weight, bias = self.predictor.weight, self.predictor.bias
        X = self.X
        # parameters in a higher precision than X (a float32 pass over float64
        # data): the products run in X's precision, the results are cast back
        low_precision = X.dtype != weight.dtype
        with torch.no_grad():
            if low_precision:
                weight_x = weight.to(X.dtype)
                bias_x = None if bias is None else bias.to(X.dtype)
            else:
                weight_x, bias_x = weight, bias
            # one (n, K) buffer for eta, reused by every evaluation: a fresh
            # allocation of that size costs page faults comparable to the product
            shape = (X.shape[0], weight.shape[0])
            buffer = self._eta_buffer
            if buffer is None or buffer.shape != shape or buffer.dtype != X.dtype:
                buffer = self._eta_buffer = X.new_empty(shape)
            if bias is None:
                eta = torch.matmul(X, weight_x.T, out=buffer)
            else:
                eta = torch.addmm(bias_x, X, weight_x.T, out=buffer)
            if self.offset is not None:
                eta.add_(self.offset)
            closed_form = None
            if self.loss_and_derivative is not None:
                closed_form = self.loss_and_derivative(eta)
            if closed_form is None:
                eta = eta.clone()  # autograd must not hold the reused buffer
        # the gradient is (X.T @ residual) * residual_scale: the 1 / n of the
        # mean is applied to the small (p, K) product, not to the (n, K) residual
        residual_scale = 1.0
        if closed_form is not None:
            values, derivative = closed_form
            with torch.no_grad():
                per_problem = self._reduce(values)
                if self.sample_weight is not None:
                    derivative = derivative * self.sample_weight[:, None]
                residual, residual_scale = derivative, 1.0 / len(derivative)
        else:
            eta.requires_grad_(True)
            with torch.enable_grad():
                per_problem = self._reduce(self.loss(eta))
                (residual,) = torch.autograd.grad(per_problem.sum(), eta)
        penalty, penalty_grad = self._penalty(weight)
        with torch.no_grad():
            # (X.T @ R).T: one matrix product; for one problem a matrix-vector one
            grad = (X.T @ residual).T.to(weight.dtype) * residual_scale
            if penalty_grad is not None:
                grad = grad + penalty_grad
            weight.grad = grad.contiguous()
            if bias is not None:
                bias.grad = residual.sum(dim=0).to(weight.dtype) * residual_scale
            # (computed only when a gradient test asks: a pass over the residual)
            self._last = (weight, bias, residual, residual_scale) if low_precision else None
            per_problem = per_problem.detach().to(weight.dtype)
            return (per_problem + penalty.detach()).detach()


def batched_glm_newton(
    design: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
    weights: torch.Tensor,
    theta: torch.Tensor,
    ridge: torch.Tensor,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> torch.Tensor:
    """Damped Newton for K smooth, convex GLM problems sharing one design matrix.

    Problem ``k`` minimises
    ``sum_i weights[i, k] * loss(eta)[i, k] + 1/2 * sum_j ridge[j] * theta[k, j]^2``
    with ``eta = design @ theta.T``, where ``loss`` acts elementwise on the
    linear predictor and is convex in it (a canonical-link negative
    log-likelihood). The Hessian of each problem is ``design^T diag(weights[:, k]
    * loss''(eta[:, k])) design + diag(ridge)``, formed for all problems in one
    ``einsum``; each step has a per-problem Armijo backtracking line search,
    and a problem stops once its largest absolute gradient entry is at most
    ``tol`` (the criterion of :class:`BatchedLBFGS`).

    Parameters
    ----------
    design : tensor of shape (n, d)
    loss : callable
        Maps ``eta`` of shape (n, K) to the elementwise loss of shape (n, K).
    weights : tensor of shape (n, K)
    theta : tensor of shape (K, d)
        Starting point (a warm start along a path).
    ridge : tensor of shape (d,)
    max_iter : int, default=100
    tol : float, default=1e-4

    Returns
    -------
    theta : tensor of shape (K, d)

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc._solvers import batched_glm_newton
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(200, 2, dtype=torch.float64)
    >>> W_true = torch.tensor([[0.5, -0.5], [0.2, 0.3]], dtype=torch.float64)
    >>> Y = torch.poisson(torch.exp(X @ W_true.T))  # two Poisson neurons
    >>> weights = torch.full((200, 2), 1 / 200.0, dtype=torch.float64)
    >>> theta = batched_glm_newton(
    ...     X, lambda eta: torch.exp(eta) - Y * eta, weights,
    ...     torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
    ...     tol=1e-10)
    >>> bool((theta - W_true).abs().max() < 0.2)
    True
    """
    eye = torch.eye(design.shape[1], dtype=design.dtype, device=design.device)

    def objective(theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            value = (weights * loss(design @ theta.T)).sum(dim=0)
        return value + 0.5 * (theta**2 @ ridge)

    for _ in range(max_iter):
        eta = (design @ theta.T).requires_grad_(True)
        with torch.enable_grad():
            values = loss(eta)
            (d1,) = torch.autograd.grad(values.sum(), eta, create_graph=True)
            (d2,) = torch.autograd.grad(d1.sum(), eta)
        f = (weights * values.detach()).sum(dim=0) + 0.5 * (theta**2 @ ridge)
        grad = (weights * d1.detach()).T @ design + ridge * theta
        active = grad.abs().amax(dim=1) > tol
        if not bool(active.any()):
            break
        hessian = torch.einsum("ik,iq,ir->kqr", weights * d2, design, design)
        hessian = hessian + torch.diag_embed(ridge).expand_as(hessian)
        # a relative jitter keeps a rank-deficient, unpenalised problem solvable
        scale = hessian.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
        hessian = hessian + 1e-12 * scale[:, None, None] * eye
        # a singular or non-finite Hessian (an overflowing rate) falls back to
        # a gradient step scaled by the curvature: the line search then decides
        usable = torch.isfinite(hessian).all(dim=2).all(dim=1) & torch.isfinite(grad).all(dim=1)
        hessian = torch.where(usable[:, None, None], hessian, eye.expand_as(hessian))
        # Cholesky (the Hessian is symmetric positive semi-definite): unlike
        # torch's LU solve, cholesky_ex reports a singular matrix instead of raising
        factor, info = torch.linalg.cholesky_ex(hessian)
        factored = usable & (info == 0)
        factor = torch.where(factored[:, None, None], factor, eye.expand_as(factor))
        rhs = torch.where(factored[:, None], grad, 0.0)
        step = torch.cholesky_solve(rhs[:, :, None], factor)[:, :, 0]
        fallback = ~factored | ~torch.isfinite(step).all(dim=1)
        gradient_step = grad / torch.where(usable, scale, 1.0)[:, None]
        step = torch.where(fallback[:, None], gradient_step, step)
        step = torch.where(active[:, None] & torch.isfinite(step), step, 0.0)
        decrease = (grad * step).sum(dim=1)
        t = torch.ones_like(f)
        pending = active.clone()
        for _ in range(30):
            trial = theta - t[:, None] * step
            f_trial = objective(trial)
            ok = pending & torch.isfinite(f_trial) & (f_trial <= f - _ARMIJO_C1 * t * decrease)
            theta = torch.where(ok[:, None], trial, theta)
            pending = pending & ~ok
            if not bool(pending.any()):
                break
            t = torch.where(pending, 0.5 * t, t)
        if bool(pending.all()):  # no problem can progress at this precision
            break
    return theta
