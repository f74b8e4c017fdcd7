"""Likelihood-ratio tests of nested GLMs against statsmodels and chi2 by hand."""

import numpy as np
import pytest
from scipy import stats

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.model_selection import likelihood_ratio_test

sm = pytest.importorskip("statsmodels.api")


def _data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = rng.poisson(np.exp(0.2 + X @ [0.4, 0.0, 0.15, 0.0])).astype(float)
    return X, y


def test_matches_statsmodels_compare_lr_test():
    X, y = _data()
    full = PoissonGLM(alpha=0.0, tol=1e-10).fit(X, y)
    reduced = PoissonGLM(alpha=0.0, tol=1e-10).fit(X[:, :2], y)
    result = likelihood_ratio_test(full, reduced, X, X[:, :2], y)
    sm_full = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-12)
    sm_reduced = sm.GLM(y, sm.add_constant(X[:, :2]), family=sm.families.Poisson()).fit(tol=1e-12)
    statistic = 2 * (sm_full.llf - sm_reduced.llf)
    assert result.df == 2
    assert result.statistic == pytest.approx(statistic, rel=1e-4)
    assert result.p_value == pytest.approx(stats.chi2.sf(statistic, 2), rel=1e-3)
    # statsmodels' own deviance difference
    assert result.statistic == pytest.approx(sm_reduced.deviance - sm_full.deviance, rel=1e-4)


def test_population_and_gaussian_by_hand():
    X, y1 = _data(1)
    _, y2 = _data(2)
    Y = np.column_stack([y1, y2])
    full = PoissonGLM(alpha=0.0, tol=1e-10).fit(X, Y)
    reduced = PoissonGLM(alpha=0.0, tol=1e-10).fit(X[:, [0]], Y)
    result = likelihood_ratio_test(full, reduced, X, X[:, [0]], Y)
    assert result.statistic.shape == (2,) and result.df == 3
    for k in range(2):
        single = likelihood_ratio_test(
            PoissonGLM(alpha=0.0, tol=1e-10).fit(X, Y[:, k]),
            PoissonGLM(alpha=0.0, tol=1e-10).fit(X[:, [0]], Y[:, k]),
            X,
            X[:, [0]],
            Y[:, k],
        )
        assert single.statistic == pytest.approx(result.statistic[k], rel=1e-4)
    # Gaussian: with ML variances the statistic is n log(RSS_reduced / RSS_full)
    rng = np.random.default_rng(3)
    y = 1.0 + 0.3 * X[:, 0] + rng.normal(size=len(X))
    g_full = PoissonGLM(alpha=0.0, family="gaussian", tol=1e-10).fit(X, y)
    g_reduced = PoissonGLM(alpha=0.0, family="gaussian", tol=1e-10).fit(X[:, [0]], y)
    rss = [np.sum((y - m.predict(Z)) ** 2) for m, Z in ((g_full, X), (g_reduced, X[:, [0]]))]
    g = likelihood_ratio_test(g_full, g_reduced, X, X[:, [0]], y)
    assert g.statistic == pytest.approx(len(y) * np.log(rss[1] / rss[0]), rel=1e-5)


def test_size_under_the_null_is_uniform():
    p_values = []
    for seed in range(30):
        X, y = _data(seed, n=300)
        full = PoissonGLM(alpha=0.0).fit(X[:, [0, 1]], y)  # feature 1 is null
        reduced = PoissonGLM(alpha=0.0).fit(X[:, [0]], y)
        p_values.append(likelihood_ratio_test(full, reduced, X[:, [0, 1]], X[:, [0]], y).p_value)
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def test_refusals():
    X, y = _data()
    full = PoissonGLM(alpha=0.0).fit(X, y)
    with pytest.raises(ValueError, match="L1"):
        likelihood_ratio_test(PoissonGLM(alpha=0.1, l1_ratio=1.0).fit(X, y), full, X, X, y)
    with pytest.warns(UserWarning, match="ridge"):
        likelihood_ratio_test(PoissonGLM(alpha=0.1).fit(X, y), full, X, X, y, df=1)
    with pytest.raises(ValueError, match="df must be a positive"):
        likelihood_ratio_test(full, full, X, X, y)
    gaussian = PoissonGLM(alpha=0.0, family="gaussian").fit(X[:, :1], y)
    with pytest.raises(ValueError, match="one family"):
        likelihood_ratio_test(full, gaussian, X, X[:, :1], y)


def test_compare_models_nested_option():
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline

    from sklearn_cnnenc.model_selection import compare_models

    X, y1 = _data(4)
    _, y2 = _data(5)
    Y = np.column_stack([y1, y2])
    reduced = make_pipeline(
        ColumnTransformer([("keep", "passthrough", [0, 1])]), PoissonGLM(alpha=0.0, tol=1e-10)
    )
    models = {"full": PoissonGLM(alpha=0.0, tol=1e-10), "reduced": reduced}
    results = compare_models(models, X, Y, cv=KFold(2), verbose=False, nested=[("full", "reduced")])
    test = results.likelihood_ratio_tests["full", "reduced"]
    expected = likelihood_ratio_test(
        PoissonGLM(alpha=0.0, tol=1e-10).fit(X, Y),
        PoissonGLM(alpha=0.0, tol=1e-10).fit(X[:, :2], Y),
        X,
        X[:, :2],
        Y,
    )
    assert test.df == 2
    np.testing.assert_allclose(test.statistic, expected.statistic, rtol=1e-5)
    with pytest.raises(ValueError, match="nested must hold"):
        compare_models(models, X, Y, cv=KFold(2), verbose=False, nested=[("full", "other")])
