"""Per-feature penalty weights and the group lasso of PoissonGLM."""

import numpy as np
import pytest
from sklearn.linear_model import PoissonRegressor

from sklearn_cnnenc import PoissonGLM

N = 300


def _gaussian_data(seed=0, n_features=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, n_features))
    w = np.zeros(n_features)
    w[:2] = [1.0, -0.8]
    return X, 0.5 + X @ w + rng.normal(scale=0.5, size=N)


def _gradient(model, X, y):
    """Gradient of the mean Gaussian loss 0.5 (y - mu)^2 with respect to the coefficients."""
    residual = y - model.predict(X)
    return -X.T @ residual / len(y)


def test_ridge_penalty_weights_closed_form():
    X, y = _gaussian_data()
    weights = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 3.0])
    alpha = 0.3
    model = PoissonGLM(alpha=alpha, family="gaussian", penalty_weights=weights, tol=1e-10).fit(X, y)
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    expected = np.linalg.solve(Xc.T @ Xc / N + alpha * np.diag(weights), Xc.T @ yc / N)
    np.testing.assert_allclose(model.coef_, expected, rtol=1e-6, atol=1e-8)


def test_ridge_penalty_weights_equal_rescaled_features_poisson():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, 3))
    y = rng.poisson(np.exp(0.2 + X @ [0.4, -0.3, 0.2])).astype(float)
    weights = np.array([4.0, 0.25, 1.0])
    alpha = 0.05
    model = PoissonGLM(alpha=alpha, penalty_weights=weights, tol=1e-10).fit(X, y)
    reference = PoissonRegressor(alpha=alpha, tol=1e-12, max_iter=1000).fit(X / np.sqrt(weights), y)
    np.testing.assert_allclose(model.coef_, reference.coef_ / np.sqrt(weights), rtol=1e-5)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=1e-5)


@pytest.mark.parametrize("solver", ["owlqn", "fista"])
def test_l1_penalty_weights_kkt(solver):
    X, y = _gaussian_data(seed=2)
    weights = np.array([0.0, 1.0, 1.0, 0.0, 2.0, 1.0])
    alpha = 0.2
    model = PoissonGLM(
        alpha=alpha,
        l1_ratio=1.0,
        family="gaussian",
        penalty_weights=weights,
        solver=solver,
        tol=1e-9,
        max_iter=20000,
    ).fit(X, y)
    grad = _gradient(model, X, y)
    zero = model.coef_ == 0
    # unpenalised features are never zeroed and have zero gradient
    assert not zero[weights == 0].any()
    np.testing.assert_allclose(
        grad[~zero], -alpha * weights[~zero] * np.sign(model.coef_[~zero]), atol=1e-6
    )
    assert np.all(np.abs(grad[zero]) <= alpha * weights[zero] + 1e-6)
    assert zero[[2, 4, 5]].all()  # the pure-noise penalised features


def test_group_lasso_exact_group_zeros_and_kkt():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, 9))
    groups = np.repeat(["a", "b", "c"], 3)
    w = np.r_[0.8, -0.5, 0.3, np.zeros(3), 0.05, 0.0, 0.0]
    y = 0.5 + X @ w + rng.normal(scale=0.5, size=N)
    alpha = 0.1
    model = PoissonGLM(
        alpha=alpha,
        l1_ratio=1.0,
        family="gaussian",
        groups=groups,
        tol=1e-9,
        max_iter=20000,
    ).fit(X, y)
    coef = model.coef_
    assert np.all(coef[3:6] == 0) and np.all(coef[6:] == 0)
    assert np.all(coef[:3] != 0)  # whole groups, not single coordinates, vanish
    grad = _gradient(model, X, y)
    lam = alpha * np.sqrt(3)
    np.testing.assert_allclose(grad[:3], -lam * coef[:3] / np.linalg.norm(coef[:3]), atol=1e-6)
    for g in (slice(3, 6), slice(6, 9)):
        assert np.linalg.norm(grad[g]) <= lam + 1e-6


def test_group_lasso_population_and_singletons_are_lasso():
    X, y = _gaussian_data(seed=4)
    Y = np.column_stack([y, -y])
    lasso = PoissonGLM(alpha=0.1, l1_ratio=1.0, family="gaussian", tol=1e-9, max_iter=20000)
    grouped = PoissonGLM(
        alpha=0.1,
        l1_ratio=1.0,
        family="gaussian",
        groups=np.arange(6),
        tol=1e-9,
        max_iter=20000,
    )
    np.testing.assert_allclose(grouped.fit(X, Y).coef_, lasso.fit(X, Y).coef_, atol=1e-6)
    np.testing.assert_allclose(grouped.coef_[0], -grouped.coef_[1], atol=1e-6)


def test_penalty_validation():
    X, y = _gaussian_data()
    with pytest.raises(ValueError, match="penalty_weights must have shape"):
        PoissonGLM(penalty_weights=[1.0, 2.0], family="gaussian").fit(X, y)
    with pytest.raises(ValueError, match="non-negative"):
        PoissonGLM(penalty_weights=-np.ones(6), family="gaussian").fit(X, y)
    with pytest.raises(ValueError, match="groups must have shape"):
        PoissonGLM(groups=[0, 1], family="gaussian").fit(X, y)
    with pytest.raises(ValueError, match="constant within each group"):
        PoissonGLM(
            l1_ratio=1.0,
            groups=[0, 0, 1, 1, 2, 2],
            penalty_weights=[1, 2, 1, 1, 1, 1],
            family="gaussian",
        ).fit(X, y)
    with pytest.raises(ValueError, match="group-lasso"):
        PoissonGLM(l1_ratio=1.0, groups=np.arange(6), solver="owlqn", family="gaussian").fit(X, y)
