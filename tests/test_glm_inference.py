"""Standard errors, covariances and coefficient tables against statsmodels."""

import numpy as np
import pytest

from sklearn_cnnenc import PoissonGLM

sm = pytest.importorskip("statsmodels.api")

N, P = 400, 3
W = np.array([0.3, -0.2, 0.1])


def _data(family, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, P))
    eta = 0.5 + X @ W
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    elif family == "gaussian":
        y = eta + rng.normal(size=N)
    elif family == "bernoulli":
        y = rng.random(N) < 1 / (1 + np.exp(-eta))
    else:
        y = rng.negative_binomial(2, 2 / (2 + np.exp(eta)))
    return X, y.astype(float)


def _sm_family(family, model):
    if family == "negative_binomial":
        return sm.families.NegativeBinomial(alpha=float(model.dispersion_[0]))
    return {
        "poisson": sm.families.Poisson(),
        "gaussian": sm.families.Gaussian(),
        "bernoulli": sm.families.Binomial(),
    }[family]


@pytest.mark.parametrize("family", ["poisson", "gaussian", "bernoulli", "negative_binomial"])
@pytest.mark.parametrize("robust", [False, True])
def test_std_errors_match_statsmodels(family, robust):
    X, y = _data(family)
    model = PoissonGLM(alpha=0.0, family=family, tol=1e-10, max_iter=5000).fit(X, y)
    cov_type = "HC0" if robust else "nonrobust"
    reference = sm.GLM(y, sm.add_constant(X), family=_sm_family(family, model)).fit(
        tol=1e-12, cov_type=cov_type
    )
    se = model.std_errors(X, y, robust=robust)
    np.testing.assert_allclose(se, reference.bse, rtol=1e-3)
    table = model.coef_table(X, y, robust=robust)
    np.testing.assert_allclose(table["p_value"], reference.pvalues, rtol=1e-3)
    ci = reference.conf_int()
    np.testing.assert_allclose(table["ci_lower"], ci[:, 0], rtol=1e-3)
    np.testing.assert_allclose(table["ci_upper"], ci[:, 1], rtol=1e-3)


def test_frequency_weights_and_offset_match_statsmodels():
    X, y = _data("poisson", seed=1)
    rng = np.random.default_rng(2)
    weights = rng.integers(1, 4, size=N).astype(float)
    offset = rng.normal(scale=0.2, size=N)
    model = PoissonGLM(alpha=0.0, tol=1e-10).fit(X, y, sample_weight=weights, offset=offset)
    reference = sm.GLM(
        y, sm.add_constant(X), family=sm.families.Poisson(), freq_weights=weights, offset=offset
    ).fit(tol=1e-12)
    se = model.std_errors(X, y, sample_weight=weights, offset=offset)
    np.testing.assert_allclose(se, reference.bse, rtol=1e-3)


def test_population_is_batched_per_neuron():
    X, y1 = _data("poisson", seed=0)
    _, y2 = _data("poisson", seed=3)
    Y = np.column_stack([y1, y2])
    model = PoissonGLM(alpha=0.0, tol=1e-10).fit(X, Y)
    se = model.std_errors(X, Y)
    assert se.shape == (2, P + 1)
    assert model.covariance_matrix(X, Y).shape == (2, P + 1, P + 1)
    for k in range(2):
        single = PoissonGLM(alpha=0.0, tol=1e-10).fit(X, Y[:, k])
        np.testing.assert_allclose(se[k], single.std_errors(X, Y[:, k]), rtol=1e-5)
    table = model.coef_table(X, Y)
    assert table.index.names == ["neuron", "feature"]
    assert table.shape == (2 * (P + 1), 6)
    np.testing.assert_allclose(table.loc[1]["se"], se[1])


def test_feature_names_and_no_intercept():
    pd = pytest.importorskip("pandas")
    X, y = _data("poisson")
    frame = pd.DataFrame(X, columns=["speed", "theta", "phase"])
    table = PoissonGLM(alpha=0.0).fit(frame, y).coef_table(frame, y)
    assert list(table.index) == ["intercept", "speed", "theta", "phase"]
    model = PoissonGLM(alpha=0.0, fit_intercept=False, tol=1e-10).fit(X, y)
    reference = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(model.std_errors(X, y), reference.bse, rtol=1e-3)


def test_ridge_is_the_penalised_sandwich():
    X, y = _data("poisson")
    alpha = 0.05
    model = PoissonGLM(alpha=alpha, tol=1e-10).fit(X, y)
    cov = model.covariance_matrix(X, y)
    # closed form: H^-1 I H^-1 with H = I + n alpha diag(0, 1, ..., 1)
    Xc = np.column_stack([np.ones(N), X])
    mu = np.exp(Xc @ np.r_[model.intercept_, model.coef_])
    info = Xc.T @ (mu[:, None] * Xc)
    hessian = info + N * alpha * np.diag([0.0, 1, 1, 1])
    expected = np.linalg.inv(hessian) @ info @ np.linalg.inv(hessian)
    np.testing.assert_allclose(cov, expected, rtol=1e-6)
    unpenalised = PoissonGLM(alpha=0.0, tol=1e-10).fit(X, y).std_errors(X, y)
    assert np.all(model.std_errors(X, y)[1:] < unpenalised[1:])


@pytest.mark.parametrize(
    "params", [{"alpha": 0.1, "l1_ratio": 1.0}, {"alpha": 0.1, "l1_ratio": 0.5}]
)
def test_refuses_l1_penalties(params):
    X, y = _data("poisson")
    model = PoissonGLM(**params).fit(X, y)
    with pytest.raises(ValueError, match="L1, elastic-net or group-lasso"):
        model.std_errors(X, y)


def test_bad_input():
    X, y = _data("poisson")
    model = PoissonGLM(alpha=0.0).fit(X, y)
    with pytest.raises(ValueError, match="y must have shape"):
        model.std_errors(X, y[:-1])
    with pytest.raises(ValueError, match="confidence_level"):
        model.coef_table(X, y, confidence_level=1.5)
    with pytest.raises(ValueError, match="singular"):
        Xd = np.column_stack([X, X[:, 0]])
        PoissonGLM(alpha=0.0).fit(Xd, y).std_errors(Xd, y)


def test_ridge_sandwich_with_frequency_weights_equals_repeated_samples():
    X, y = _data("poisson", seed=5)
    weights = np.random.default_rng(6).integers(1, 3, size=N).astype(float)
    repeat = np.repeat(np.arange(N), weights.astype(int))
    weighted = PoissonGLM(alpha=0.05, tol=1e-10).fit(X, y, sample_weight=weights)
    repeated = PoissonGLM(alpha=0.05, tol=1e-10).fit(X[repeat], y[repeat])
    np.testing.assert_allclose(
        weighted.std_errors(X, y, sample_weight=weights),
        repeated.std_errors(X[repeat], y[repeat]),
        rtol=1e-5,
    )
