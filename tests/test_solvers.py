"""Tests for the batched full-batch optimizers in sklearn_cnnenc._solvers."""

import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.linear_model import Lasso, PoissonRegressor

from sklearn_cnnenc._solvers import BatchedFISTA, BatchedLBFGS

RATES = [0.05, 0.5, 2.0, 10.0, 50.0]


def poisson_data(n=2000, p=10, rates=RATES, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = 0.3 * rng.standard_normal((len(rates), p))
    Y = rng.poisson(np.exp(X @ W.T + np.log(rates))).astype(float)
    return X, Y


def lasso_data(n=500, p=20, k=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((k, p)) * (rng.random((k, p)) < 0.4)
    Y = X @ W.T + 0.5 * rng.standard_normal((n, k)) + rng.standard_normal(k)
    return X, Y


def poisson_loss(X, Y, W, b, alpha):
    eta = X @ W.T + b
    return (torch.exp(eta) - Y * eta).mean(dim=0) + 0.5 * alpha * (W * W).sum(dim=1)


def squared_loss(X, Y, W, b):
    return 0.5 * ((Y - X @ W.T - b) ** 2).mean(dim=0)


def fit(solver, loss, X, Y, l1=0.0, dtype=torch.float64, W0=None, b0=None, **kwargs):
    """Fit weight (K, p) and bias (K,) with the bias in an unpenalised group."""
    X = torch.as_tensor(X, dtype=dtype)
    Y = torch.as_tensor(Y, dtype=dtype)
    n_problems, n_features = Y.shape[1], X.shape[1]
    W = torch.zeros(n_problems, n_features, dtype=dtype) if W0 is None else W0.clone()
    b = torch.zeros(n_problems, dtype=dtype) if b0 is None else b0.clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = solver([{"params": [W], "l1": l1}, {"params": [b]}], **kwargs)

    def closure():
        opt.zero_grad()
        value = loss(X, Y, W, b)
        value.sum().backward()
        return value.detach()

    objective = opt.step(closure)
    return W.detach(), b.detach(), objective, opt


def fit_poisson(solver, X, Y, alpha, **kwargs):
    b0 = torch.log(torch.as_tensor(Y.mean(axis=0), dtype=kwargs.get("dtype", torch.float64)))
    return fit(solver, lambda X, Y, W, b: poisson_loss(X, Y, W, b, alpha), X, Y, b0=b0, **kwargs)


def scipy_poisson(X, y, alpha):
    n, p = X.shape

    def fun(theta):
        w, c = theta[:p], theta[p]
        eta = X @ w + c
        mu = np.exp(eta)
        residual = (mu - y) / n
        value = np.mean(mu - y * eta) + 0.5 * alpha * w @ w
        return value, np.r_[X.T @ residual + alpha * w, residual.sum()]

    theta0 = np.r_[np.zeros(p), np.log(y.mean())]
    options = dict(gtol=1e-12, ftol=0.0, maxiter=10_000)
    res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", options=options)
    return res.x[:p], res.x[p]


def test_lbfgs_poisson_ridge_matches_scipy_and_sklearn():
    X, Y = poisson_data()
    alpha = 0.01
    W, b, objective, opt = fit_poisson(BatchedLBFGS, X, Y, alpha, tol=1e-10, ftol=0.0)
    assert opt.state["converged"].all()
    assert not opt.state["failed"].any()
    expected_objective = poisson_loss(torch.from_numpy(X), torch.from_numpy(Y), W, b, alpha)
    np.testing.assert_allclose(objective, expected_objective, rtol=1e-12)
    for k in range(Y.shape[1]):
        coef, intercept = scipy_poisson(X, Y[:, k], alpha)
        np.testing.assert_allclose(W[k], coef, atol=1e-6)
        np.testing.assert_allclose(b[k], intercept, atol=1e-6)
        sk = PoissonRegressor(alpha=alpha, tol=1e-10, max_iter=10_000).fit(X, Y[:, k])
        np.testing.assert_allclose(W[k], sk.coef_, atol=1e-6)
        np.testing.assert_allclose(b[k], sk.intercept_, atol=1e-6)


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
@pytest.mark.parametrize("l1", [0.0, 0.01])
def test_problems_are_solved_independently(solver, l1):
    X, Y = poisson_data()
    alpha = 0.01
    # tol stays well above rounding noise, where FISTA's restart test would
    # amplify the last-bit differences between batched and single matmuls.
    W, b, objective, opt = fit_poisson(solver, X, Y, alpha, l1=l1, tol=1e-6)
    n_iter = opt.state["n_iter"]
    assert opt.state["converged"].all()
    assert len(set(n_iter.tolist())) > 1
    assert opt.state["n_iter_total"] == int(n_iter.max())
    for k in range(Y.shape[1]):
        Wk, bk, objective_k, opt_k = fit_poisson(solver, X, Y[:, [k]], alpha, l1=l1, tol=1e-6)
        np.testing.assert_allclose(Wk[0], W[k], rtol=0, atol=1e-10)
        np.testing.assert_allclose(bk[0], b[k], rtol=0, atol=1e-10)
        np.testing.assert_allclose(objective_k[0], objective[k], rtol=1e-13)
        assert opt_k.state["n_iter"][0] == n_iter[k]


def test_fista_decisions_do_not_depend_on_round_off():
    # Another BLAS kernel (other batch size, thread count or CPU) changes the
    # objective and gradient in their last bits. FISTA's restart test used to
    # compare objectives exactly, so such noise flipped restarts near the optimum
    # and moved the solution by ~1e-9 (tests/test_problems_are_solved_independently
    # failed on some machines). A rise must now exceed 1024 eps |f| to restart.
    X, Y = poisson_data()
    alpha = 0.01
    generator = torch.Generator().manual_seed(0)

    def loss(X, Y, W, b, noise):
        value = poisson_loss(X, Y, W, b, alpha)
        if noise:  # relative noise of up to 8 eps on the value and the gradient
            u = torch.rand(value.shape, generator=generator, dtype=value.dtype) - 0.5
            value = value * (1 + 16 * torch.finfo(value.dtype).eps * u)
        return value

    b0 = torch.log(torch.as_tensor(Y.mean(axis=0)))
    W, b, _, opt = fit(BatchedFISTA, lambda *a: loss(*a, False), X, Y, b0=b0, l1=0.01, tol=1e-6)
    for _ in range(3):
        W_noisy, b_noisy, _, opt_noisy = fit(BatchedFISTA, lambda *a: loss(*a, True), X, Y,
                                             b0=b0, l1=0.01, tol=1e-6)
        np.testing.assert_allclose(W_noisy, W, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b_noisy, b, rtol=0, atol=1e-12)
        assert torch.equal(opt_noisy.state["n_iter"], opt.state["n_iter"])


@pytest.mark.parametrize("l1", [0.0, 0.01])
def test_lbfgs_decisions_do_not_depend_on_round_off(l1):
    # As for FISTA: last-bit noise in the objective (another BLAS kernel, batch size or
    # thread count) used to flip L-BFGS's Armijo test near the optimum, where both of its
    # sides are rounding noise, and moved the solution by ~3e-8. A change of the
    # objective below 1024 eps |f| now counts as no change.
    X, Y = poisson_data()
    alpha = 0.01
    generator = torch.Generator().manual_seed(0)

    def loss(X, Y, W, b, noise):
        value = poisson_loss(X, Y, W, b, alpha)
        if noise:  # relative noise of up to 8 eps on the value and the gradient
            u = torch.rand(value.shape, generator=generator, dtype=value.dtype) - 0.5
            value = value * (1 + 16 * torch.finfo(value.dtype).eps * u)
        return value

    b0 = torch.log(torch.as_tensor(Y.mean(axis=0)))
    W, b, _, opt = fit(BatchedLBFGS, lambda *a: loss(*a, False), X, Y, b0=b0, l1=l1, tol=1e-6)
    for _ in range(4):
        W_noisy, b_noisy, _, opt_noisy = fit(BatchedLBFGS, lambda *a: loss(*a, True), X, Y,
                                             b0=b0, l1=l1, tol=1e-6)
        np.testing.assert_allclose(W_noisy, W, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b_noisy, b, rtol=0, atol=1e-12)
        assert torch.equal(opt_noisy.state["n_iter"], opt.state["n_iter"])
    # and so a problem's solution does not depend on its neighbours in the batch
    for k in range(Y.shape[1]):
        Wk, bk, _, opt_k = fit(BatchedLBFGS, lambda *a: loss(*a, True), X, Y[:, [k]],
                               b0=b0[[k]], l1=l1, tol=1e-6)
        np.testing.assert_allclose(Wk[0], W[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(bk[0], b[k], rtol=0, atol=1e-12)
        assert opt_k.state["n_iter"][0] == opt.state["n_iter"][k]


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
def test_problem_started_at_optimum_is_frozen(solver):
    X, Y = poisson_data()
    alpha = 0.01
    W_opt, b_opt, _, _ = fit_poisson(BatchedLBFGS, X, Y, alpha, tol=1e-10, ftol=0.0)
    W0 = torch.zeros_like(W_opt)
    W0[2] = W_opt[2]
    b0 = torch.log(torch.from_numpy(Y.mean(axis=0)))
    b0[2] = b_opt[2]
    loss = lambda X, Y, W, b: poisson_loss(X, Y, W, b, alpha)  # noqa: E731
    W, b, _, opt = fit(solver, loss, X, Y, W0=W0, b0=b0, tol=1e-6)
    assert opt.state["converged"].all()
    assert opt.state["n_iter"][2] <= 1
    assert (opt.state["n_iter"][[0, 1, 3, 4]] > 1).all()
    assert torch.equal(W[2], W_opt[2])
    assert torch.equal(b[2], b_opt[2])
    np.testing.assert_allclose(W, W_opt, atol=1e-4)


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
def test_lasso_matches_sklearn(solver):
    X, Y = lasso_data()
    l1 = 0.1
    W, b, objective, opt = fit(solver, squared_loss, X, Y, l1=l1, tol=1e-10)
    assert opt.state["converged"].all()
    for k in range(Y.shape[1]):
        sk = Lasso(alpha=l1, tol=1e-12, max_iter=100_000).fit(X, Y[:, k])
        assert 0 < (sk.coef_ == 0).sum() < X.shape[1]
        np.testing.assert_array_equal(W[k] == 0, sk.coef_ == 0)
        np.testing.assert_allclose(W[k], sk.coef_, atol=1e-6)
        np.testing.assert_allclose(b[k], sk.intercept_, atol=1e-6)
        residual = Y[:, k] - X @ sk.coef_ - sk.intercept_
        sk_objective = 0.5 * np.mean(residual**2) + l1 * np.abs(sk.coef_).sum()
        np.testing.assert_allclose(objective[k], sk_objective, rtol=1e-10)


def test_lasso_zeros_grow_with_l1_and_vanish_past_lambda_max():
    X, Y = lasso_data()
    # KKT: with a free intercept, all coefficients are zero iff l1 >= lambda_max.
    lambda_max = np.abs(X.T @ (Y - Y.mean(axis=0))).max(axis=0) / X.shape[0]
    n_zeros = []
    for l1 in [0.001, 0.05, 0.2, 0.5]:
        W, _, _, opt = fit(BatchedLBFGS, squared_loss, X, Y, l1=l1, tol=1e-8)
        assert opt.state["converged"].all()
        n_zeros.append((W == 0).sum(dim=1))
    n_zeros = torch.stack(n_zeros)
    assert (n_zeros[1:] >= n_zeros[:-1]).all()
    assert (n_zeros[-1] > n_zeros[0]).all()

    for scale, all_zero in [(1.01, True), (0.99, False)]:
        for k in range(Y.shape[1]):
            l1 = scale * lambda_max[k]
            W, _, _, _ = fit(BatchedLBFGS, squared_loss, X, Y[:, [k]], l1=l1, tol=1e-10)
            assert bool((W == 0).all()) is all_zero


def test_l1_poisson_owlqn_matches_fista():
    X, Y = poisson_data()
    alpha, l1 = 0.01, 0.02
    W1, b1, f1, opt1 = fit_poisson(BatchedLBFGS, X, Y, alpha, l1=l1, tol=1e-10, ftol=0.0)
    W2, b2, f2, opt2 = fit_poisson(BatchedFISTA, X, Y, alpha, l1=l1, tol=1e-9)
    assert opt1.state["converged"].all()
    assert opt2.state["converged"].all()
    assert (W1 == 0).any()
    np.testing.assert_array_equal(W1 == 0, W2 == 0)
    np.testing.assert_allclose(W1, W2, atol=1e-6)
    np.testing.assert_allclose(b1, b2, atol=1e-6)
    np.testing.assert_allclose(f1, f2, rtol=1e-12)


def test_fista_poisson_ridge_matches_lbfgs():
    X, Y = poisson_data()
    alpha = 0.01
    W1, b1, f1, _ = fit_poisson(BatchedLBFGS, X, Y, alpha, tol=1e-10, ftol=0.0)
    W2, b2, f2, opt = fit_poisson(BatchedFISTA, X, Y, alpha, tol=1e-9)
    assert opt.state["converged"].all()
    np.testing.assert_allclose(W2, W1, atol=1e-6)
    np.testing.assert_allclose(b2, b1, atol=1e-6)
    np.testing.assert_allclose(f2, f1, rtol=1e-12)


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
@pytest.mark.parametrize("l1", [0.0, 0.02])
def test_float32(solver, l1):
    X, Y = poisson_data()
    alpha = 0.01
    W64, b64, _, _ = fit_poisson(BatchedLBFGS, X, Y, alpha, l1=l1, tol=1e-10, ftol=0.0)
    W, b, objective, opt = fit_poisson(solver, X, Y, alpha, l1=l1, dtype=torch.float32)
    assert W.dtype == b.dtype == objective.dtype == torch.float32
    assert not opt.state["failed"].any()
    np.testing.assert_allclose(W, W64, atol=2e-3)
    np.testing.assert_allclose(b, b64, atol=2e-3)


def nan_outside_ball_loss(radius):
    def loss(X, Y, W, b):
        value = squared_loss(X, Y, W, b)
        too_far = W.detach().abs().amax(dim=1) > radius
        return torch.where(too_far, torch.nan, value)

    return loss


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
def test_non_finite_trial_points_are_backtracked(solver):
    X, Y = lasso_data()
    Xc = np.c_[X, np.ones(len(X))]
    expected = np.linalg.lstsq(Xc, Y, rcond=None)[0].T
    W, b, objective, opt = fit(solver, nan_outside_ball_loss(5.0), X, Y, lr=1e4, tol=1e-9)
    assert opt.state["converged"].all()
    assert torch.isfinite(objective).all()
    np.testing.assert_allclose(W, expected[:, :-1], atol=1e-7)
    np.testing.assert_allclose(b, expected[:, -1], atol=1e-7)


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
def test_failed_line_search_stops_only_that_problem(solver):
    X, Y = lasso_data()
    loss = nan_outside_ball_loss(5.0)

    def poisoned_loss(X, Y, W, b):
        value = loss(X, Y, W, b)
        # Problem 1 is undefined everywhere except at its starting point.
        moved = W.detach()[1].abs().amax() > 0
        return torch.where(moved & (torch.arange(3) == 1), torch.nan, value)

    W, b, objective, opt = fit(solver, poisoned_loss, X, Y, max_line_search=5, tol=1e-8)
    np.testing.assert_array_equal(opt.state["failed"], [False, True, False])
    np.testing.assert_array_equal(opt.state["converged"], [True, False, True])
    assert opt.state["n_iter"][1] == 1
    assert torch.equal(W[1], torch.zeros_like(W[1]))
    assert torch.isfinite(objective).all()


def test_parameters_of_any_shape_and_warm_start():
    X, Y = lasso_data()
    Xc = torch.from_numpy(np.c_[X, np.ones(len(X))])
    expected = np.linalg.lstsq(Xc.numpy(), Y, rcond=None)[0].T
    Yt = torch.from_numpy(Y)
    W = torch.zeros(3, 3, 7, dtype=torch.float64, requires_grad=True)
    opt = BatchedLBFGS([W], tol=1e-9, max_iter=3)

    def closure():
        opt.zero_grad()
        value = 0.5 * ((Yt - Xc @ W.reshape(3, -1).T) ** 2).mean(dim=0)
        value.sum().backward()
        return value.detach()

    opt.step(closure)
    assert opt.state["n_iter"].dtype == torch.int64
    assert opt.state["converged"].dtype == torch.bool
    assert opt.state["n_iter"].tolist() == [3, 3, 3]
    assert not opt.state["converged"].any()
    assert isinstance(opt.state["n_iter_total"], int)
    assert opt.state["n_iter_total"] == 3

    opt.param_groups[0]["max_iter"] = 100
    opt.step(closure)
    assert opt.state["converged"].all()
    assert opt.state["n_evals"] > opt.state["n_iter_total"] > 0
    np.testing.assert_allclose(W.detach().reshape(3, -1), expected, atol=1e-7)

    before = W.detach().clone()
    opt.param_groups[0]["tol"] = 1e-6
    opt.step(closure)
    assert opt.state["n_iter_total"] == 0
    assert opt.state["n_evals"] == 1
    assert opt.state["converged"].all()
    assert torch.equal(W.detach(), before)


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
def test_invalid_parameters_raise(solver):
    with pytest.raises(ValueError, match="same leading dimension"):
        solver([torch.zeros(3, 2, requires_grad=True), torch.zeros(4, requires_grad=True)])
    with pytest.raises(ValueError, match="0-d"):
        solver([torch.zeros(3, 2, requires_grad=True), torch.zeros((), requires_grad=True)])
    with pytest.raises(ValueError, match="l1"):
        solver([torch.zeros(3, 2, requires_grad=True)], l1=-1.0)
    with pytest.raises(ValueError, match="Only 'l1' may differ"):
        solver(
            [
                {"params": [torch.zeros(3, 2, requires_grad=True)]},
                {"params": [torch.zeros(3, requires_grad=True)], "tol": 1.0},
            ]
        )

    W = torch.zeros(3, 2, requires_grad=True)
    opt = solver([W])

    def closure():
        opt.zero_grad()
        value = (W**2).sum()
        value.backward()
        return value.detach()

    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        opt.step(closure)


def test_batched_glm_newton_matches_sklearn_ridge_poisson():
    from sklearn.linear_model import PoissonRegressor

    from sklearn_cnnenc._solvers import batched_glm_newton

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    Y = rng.poisson(np.exp(0.2 + X @ rng.normal(scale=0.3, size=(3, 2)))).astype(float)
    design = torch.as_tensor(np.column_stack([np.ones(300), X]))
    Yt = torch.as_tensor(Y)
    alpha = 0.1
    ridge = torch.tensor([0.0, alpha, alpha, alpha], dtype=torch.float64)
    theta = batched_glm_newton(
        design, lambda eta: torch.exp(eta) - Yt * eta,
        torch.full((300, 2), 1 / 300.0, dtype=torch.float64),
        torch.zeros(2, 4, dtype=torch.float64), ridge, tol=1e-10,
    )
    for k in range(2):
        reference = PoissonRegressor(alpha=alpha, tol=1e-12, max_iter=1000).fit(X, Y[:, k])
        np.testing.assert_allclose(theta[k, 1:].numpy(), reference.coef_, rtol=1e-6)
        np.testing.assert_allclose(theta[k, 0].item(), reference.intercept_, rtol=1e-6)


@pytest.mark.parametrize("solver", [BatchedLBFGS, BatchedFISTA])
def test_per_group_scale_makes_the_fit_independent_of_feature_units(solver):
    # least squares on standardised features, and on the same features in
    # units from 1e-4 to 1e4: with scale = the feature RMS both fits take the
    # same steps, and the coefficients are the same up to the units
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(400, 5, dtype=torch.float64, generator=gen)
    units = torch.logspace(-4, 4, 5, dtype=torch.float64)
    y = Z @ torch.tensor([1.0, -0.5, 0.3, 2.0, 0.0], dtype=torch.float64) + 1.0

    def fit(X, scale):
        W = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = solver([{"params": [W], "scale": scale}, {"params": [b]}], tol=1e-10,
                     max_iter=2000)

        def closure():
            opt.zero_grad()
            loss = 0.5 * ((y[:, None] - X @ W.T - b) ** 2).mean(dim=0)
            loss.sum().backward()
            return loss.detach()

        opt.step(closure)
        return W.detach()[0], b.detach(), opt.state

    W_std, b_std, state_std = fit(Z, 1.0)
    W_raw, b_raw, state_raw = fit(Z * units, units)
    assert bool(state_raw["converged"].all())
    torch.testing.assert_close(W_raw * units, W_std, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(b_raw, b_std, rtol=1e-8, atol=1e-8)
    assert int(state_raw["n_iter"][0]) == int(state_std["n_iter"][0])


def test_tol_scale_sets_a_per_problem_gradient_tolerance():
    # two copies of one problem; the second must meet a 1e-6 times tighter test
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(200, 3, dtype=torch.float64, generator=gen)
    y = torch.poisson(torch.exp(X @ torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)),
                      generator=gen)
    W = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    opt = BatchedLBFGS([W], tol=1e-3, ftol=0.0,
                       tol_scale=torch.tensor([1.0, 1e-6], dtype=torch.float64))

    def closure():
        opt.zero_grad()
        eta = X @ W.T
        loss = (torch.exp(eta) - y[:, None] * eta).mean(dim=0)
        loss.sum().backward()
        return loss.detach()

    opt.step(closure)
    W.grad = None
    closure()
    gradient = W.grad.abs().amax(dim=1)
    assert bool(opt.state["converged"].all())
    assert gradient[0] <= 1e-3 and gradient[1] <= 1e-9
    assert opt.state["n_iter"][1] > opt.state["n_iter"][0]


def test_invalid_scale_is_a_clear_error():
    W = torch.zeros(1, 3, requires_grad=True)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        BatchedLBFGS([{"params": [W], "scale": torch.tensor([1.0, 0.0, 1.0])}])


def test_batched_newton_survives_a_singular_or_overflowing_hessian():
    # A silent neuron (all-zero counts) drives its unpenalised intercept to
    # -inf: the Hessian underflows to exactly singular. A huge start makes
    # another problem's rate overflow. Neither may take down the batch
    # (torch's LU solve raised "Pivots given to lu_solve..." in the demo).
    from sklearn_cnnenc._solvers import batched_glm_newton

    rng = np.random.RandomState(0)
    X = torch.as_tensor(np.column_stack([np.ones(300), rng.randn(300)]))
    Y = torch.as_tensor(np.column_stack([
        rng.poisson(np.exp(0.2 + 0.5 * X[:, 1].numpy())), np.zeros(300), np.ones(300)
    ]).astype(float))
    weights = torch.full((300, 3), 1 / 300.0, dtype=torch.float64)
    start = torch.tensor([[0.0, 0.0], [0.0, 0.0], [800.0, 0.0]], dtype=torch.float64)
    theta = batched_glm_newton(
        X, lambda eta: torch.exp(eta) - Y * eta, weights, start,
        torch.zeros(2, dtype=torch.float64), max_iter=200, tol=1e-8,
    )
    reference = PoissonRegressor(alpha=0.0, tol=1e-12, max_iter=1000)
    reference.fit(X[:, 1:].numpy(), Y[:, 0].numpy())
    np.testing.assert_allclose(theta[0, 1].item(), reference.coef_[0], rtol=1e-5)
    assert theta[1, 0] < -5  # heading to -inf, finite
    assert torch.isfinite(theta).all()


def test_curvature_makes_the_first_step_a_newton_step():
    # a separable quadratic with Hessian c * I: the Newton step is exact
    torch.manual_seed(0)
    target = torch.randn(3, 4, dtype=torch.float64)
    curvature = torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64)
    W = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    opt = BatchedLBFGS([W], tol=1e-10, curvature=curvature)

    def closure():
        opt.zero_grad()
        loss = 0.5 * curvature * ((W - target) ** 2).sum(dim=1)
        loss.sum().backward()
        return loss.detach()

    opt.step(closure)
    torch.testing.assert_close(W.detach(), target)
    assert opt.state["n_iter"].tolist() == [1, 1, 1]


def test_float32_glm_closure_states_its_precision_and_rounding_bounds():
    from sklearn_cnnenc._solvers import LinearGLMObjective
    from sklearn_cnnenc.nn import LinearPredictor

    torch.manual_seed(0)
    X = torch.randn(20000, 5, dtype=torch.float64)
    Y = torch.poisson(torch.exp(X @ torch.full((5, 2), 0.1, dtype=torch.float64)))
    predictor = LinearPredictor(5, 2, dtype=torch.float64)
    with torch.no_grad():
        predictor.weight.normal_(0.0, 0.1)

    def objective(X_, Y_):
        return LinearGLMObjective(
            predictor, X_, lambda eta: torch.exp(eta) - Y_ * eta,
            loss_and_derivative=lambda eta: (torch.exp(eta) - Y_ * eta, torch.exp(eta) - Y_),
        )

    exact = objective(X, Y)
    f64 = exact()
    g64 = predictor.weight.grad.clone(), predictor.bias.grad.clone()
    assert exact.eps == torch.finfo(torch.float64).eps and exact.gradient_errors is None
    low = objective(X.float(), Y.float())
    f32 = low()
    assert f32.dtype == torch.float64 and low.eps == torch.finfo(torch.float32).eps
    torch.testing.assert_close(f32, f64, rtol=1e-6, atol=0)
    bounds = dict((id(p), b) for p, b in low.gradient_errors)
    for p, reference in zip((predictor.weight, predictor.bias), g64, strict=True):
        assert p.grad.dtype == torch.float64
        assert bool(((p.grad - reference).abs() <= bounds[id(p)]).all())
