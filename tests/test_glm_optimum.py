"""The default (``solver="auto"``) PoissonGLM fit reaches the reference optimum.

Benchmarks compare fit times only at the same optimum (issue 15); these fast
checks pin that optimum on small problems: the penalised objective of the
default fit lies within 1e-6 (relative) of scikit-learn's newton-cholesky
solution (Poisson) and of the closed-form ridge solution (Gaussian), for one
neuron and for a population fitted in one batched solve.
"""

import numpy as np
import pytest
import torch
from scipy.special import gammaln
from sklearn.linear_model import PoissonRegressor, Ridge

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data


def _objective(family, X, Y, coef, intercept, alpha):
    coef = np.atleast_2d(coef)
    eta = X @ coef.T + np.reshape(intercept, (1, -1))
    Y = Y.reshape(len(Y), -1)
    if family == "poisson":
        loss = np.exp(eta) - Y * eta + gammaln(Y + 1.0)
    else:
        loss = 0.5 * (Y - eta) ** 2
    return loss.mean(axis=0) + 0.5 * alpha * (coef**2).sum(axis=1)


def _reference(family, X, y, alpha):
    if family == "poisson":
        model = PoissonRegressor(alpha=alpha, solver="newton-cholesky", tol=1e-12, max_iter=100)
    else:
        # mean squared error / 2 + alpha / 2 ||w||^2 is Ridge at alpha * n
        model = Ridge(alpha=alpha * len(X))
    model.fit(X, y)
    return model.coef_, model.intercept_


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
@pytest.mark.parametrize("n_neurons", [1, 4])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_default_fit_reaches_reference_optimum(family, n_neurons, alpha):
    data = make_glm_data(
        n_samples=2000, n_features=8, n_neurons=n_neurons, family=family, random_state=0
    )
    X, y = data.X, data.y
    model = PoissonGLM(alpha=alpha, family=family).fit(X, y)
    ours = _objective(family, X, y, model.coef_, model.intercept_, alpha)
    Y = y.reshape(len(y), -1)
    refs = [_reference(family, X, Y[:, k], alpha) for k in range(Y.shape[1])]
    coef = np.array([r[0] for r in refs])
    intercept = np.array([r[1] for r in refs])
    best = _objective(family, X, y, coef, intercept, alpha)
    np.testing.assert_array_less((ours - best) / np.abs(best), 1e-6)


@pytest.mark.parametrize("family", ["poisson", "gaussian", "bernoulli"])
def test_structured_closure_matches_generic_closure(family, monkeypatch):
    """The fast GLM closure computes the net's objective: same fit, weights and offset included."""
    data = make_glm_data(n_samples=600, n_features=5, n_neurons=3, family=family, random_state=1)
    rng = np.random.default_rng(0)
    weight = rng.uniform(0.2, 2.0, size=600)
    offset = 0.1 * rng.standard_normal((600, 1)) if family != "bernoulli" else None

    def fit():
        return PoissonGLM(alpha=1e-2, family=family, tol=1e-8).fit(
            data.X, data.y, sample_weight=weight, offset=offset
        )

    fast = fit()
    assert fast.net_.optimizer_.objective.function is None  # emptied after the fit
    monkeypatch.setattr(PoissonGLM, "_structured_objective", lambda *args: None)
    generic = fit()
    np.testing.assert_allclose(fast.coef_, generic.coef_, atol=1e-6)
    np.testing.assert_allclose(fast.intercept_, generic.intercept_, atol=1e-6)


# --- the float32 first phase of large float64 fits (issue 15 §4) -------------
# Forced on small data by lowering the size threshold; each case checks that
# the fit still reaches the float64 reference optimum.


@pytest.fixture
def float32_phase(monkeypatch):
    """Give every float64 L-BFGS fit the float32 first phase; record the phases run."""
    from sklearn_cnnenc import glm
    from sklearn_cnnenc._solvers import BatchedLBFGS

    monkeypatch.setattr(glm, "_FLOAT32_TWIN_MIN_WORK", 0)
    phases = []
    step = BatchedLBFGS.step

    def recording_step(self, closure):
        phases.append(closure.X.dtype if hasattr(closure, "X") else None)
        return step(self, closure)

    monkeypatch.setattr(BatchedLBFGS, "step", recording_step)
    return phases


@pytest.mark.parametrize("n_neurons", [1, 4])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_float32_phase_reaches_the_float64_optimum(float32_phase, n_neurons, alpha):
    data = make_glm_data(n_samples=4000, n_features=8, n_neurons=n_neurons, random_state=0)
    X, y = data.X, data.y
    model = PoissonGLM(alpha=alpha).fit(X, y)
    assert float32_phase[0] == torch.float32
    assert model.coef_.dtype == np.float64
    ours = _objective("poisson", X, y, model.coef_, model.intercept_, alpha)
    Y = y.reshape(len(y), -1)
    refs = [_reference("poisson", X, Y[:, k], alpha) for k in range(Y.shape[1])]
    best = _objective(
        "poisson", X, y, np.array([r[0] for r in refs]), np.array([r[1] for r in refs]), alpha
    )
    np.testing.assert_array_less((ours - best) / np.abs(best), 1e-6)


def test_float32_phase_hands_what_it_cannot_resolve_to_float64(float32_phase):
    # tol far below float32's resolution: the float64 phase finishes, and the
    # fit matches the float64-only one
    data = make_glm_data(n_samples=3000, n_features=5, n_neurons=2, random_state=3)
    model = PoissonGLM(alpha=1e-3, tol=1e-12).fit(data.X, data.y)
    assert float32_phase == [torch.float32, torch.float64]
    assert model.net_.optimizer_.state["converged"].all()
    assert model.n_iter_ <= 1000
    float32_phase.clear()
    data32 = make_glm_data(n_samples=3000, n_features=5, n_neurons=2, random_state=3)
    from sklearn_cnnenc import glm

    reference = PoissonGLM(alpha=1e-3, tol=1e-12)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(glm, "_FLOAT32_TWIN_MIN_WORK", 2**62)
        reference.fit(data32.X, data32.y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-7)


def test_float32_phase_shares_max_iter_and_reports_non_convergence(float32_phase):
    from sklearn.exceptions import ConvergenceWarning

    data = make_glm_data(n_samples=2000, n_features=5, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"reached max_iter=2 before the gradient"):
        model = PoissonGLM(alpha=0, max_iter=2).fit(data.X, data.y)
    assert model.n_iter_ == 2


def test_float32_phase_does_not_depend_on_the_memory_layout(float32_phase):
    data = make_glm_data(n_samples=3000, n_features=6, n_neurons=3, random_state=2)
    c_order = PoissonGLM(alpha=1e-2).fit(np.ascontiguousarray(data.X), data.y)
    f_order = PoissonGLM(alpha=1e-2).fit(np.asfortranarray(data.X), data.y)
    # the same float32 path: equal up to float64 round-off (the feature scales)
    np.testing.assert_allclose(c_order.coef_, f_order.coef_, rtol=1e-12, atol=1e-14)


def test_float32_phase_is_refused_where_float32_cannot_hold_the_data(float32_phase):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((2000, 3))
    y = rng.poisson(np.exp(Z @ [0.3, -0.2, 0.1])).astype(float)
    # features of order 1e40 overflow float32
    model = PoissonGLM(alpha=0).fit(Z * 1e40, y)
    assert torch.float32 not in float32_phase
    np.testing.assert_allclose(model.coef_ * 1e40, [0.3, -0.2, 0.1], atol=0.1)
