"""PoissonGLMCV: cross-validated regularisation paths."""

import time

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_cnnenc import PoissonGLM, PoissonGLMCV
from sklearn_cnnenc.datasets import make_glm_data


@pytest.fixture(scope="module")
def data():
    return make_glm_data(n_samples=1200, n_features=10, n_neurons=3, random_state=0)


def _within_one_step(alphas, chosen, reference):
    i = int(np.argmin(np.abs(alphas - chosen)))
    j = int(np.argmin(np.abs(alphas - reference)))
    return abs(i - j) <= 1


@pytest.mark.parametrize("l1_ratio", [0.0, 1.0])
def test_agrees_with_grid_search(data, l1_ratio):
    cv = KFold(3)
    model = PoissonGLMCV(n_alphas=6, cv=cv, l1_ratio=l1_ratio).fit(data.X, data.y)
    grid = GridSearchCV(PoissonGLM(l1_ratio=l1_ratio), {"alpha": model.alphas_}, cv=cv)
    grid.fit(data.X, data.y)
    assert _within_one_step(model.alphas_, model.alpha_, grid.best_params_["alpha"])
    np.testing.assert_allclose(
        model.score_path_.mean(axis=1), grid.cv_results_["mean_test_score"], rtol=1e-3
    )
    reference = PoissonGLM(alpha=model.alpha_, l1_ratio=l1_ratio).fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-6)
    np.testing.assert_allclose(model.predict(data.X), reference.predict(data.X), rtol=1e-5)
    assert model.score(data.X, data.y) == pytest.approx(reference.score(data.X, data.y))


def test_alpha_max_zeroes_every_lasso_coefficient(data):
    model = PoissonGLMCV(n_alphas=5, eps=0.5, l1_ratio=1.0, cv=3).fit(data.X, data.y)
    top = PoissonGLM(alpha=model.alphas_[0] * 1.001, l1_ratio=1.0).fit(data.X, data.y)
    assert np.all(top.coef_ == 0)
    below = PoissonGLM(alpha=model.alphas_[0] * 0.9, l1_ratio=1.0).fit(data.X, data.y)
    assert np.any(below.coef_ != 0)
    np.testing.assert_allclose(model.alphas_[-1] / model.alphas_[0], 0.5)


def test_per_neuron_alphas():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 12))
    dense = 0.15 * rng.normal(size=12)
    sparse = np.r_[0.6, np.zeros(11)]
    y = rng.poisson(np.exp(0.3 + X @ np.column_stack([dense, sparse]))).astype(float)
    model = PoissonGLMCV(n_alphas=10, l1_ratio=1.0, cv=KFold(3), per_neuron=True).fit(X, y)
    assert model.alpha_.shape == (2,)
    assert model.alpha_[1] > model.alpha_[0]  # the sparse neuron wants more shrinkage
    best = model.alphas_[np.argmax(model.neuron_score_path_.mean(axis=1), axis=0)]
    np.testing.assert_allclose(model.alpha_, best)
    for k in range(2):
        single = PoissonGLM(alpha=model.alpha_[k], l1_ratio=1.0).fit(X, y[:, k])
        np.testing.assert_allclose(model.coef_[k], single.coef_, atol=1e-3)
        assert np.array_equal(model.coef_[k] == 0, single.coef_ == 0)


def test_l1_ratio_list_and_given_alphas(data):
    model = PoissonGLMCV(alphas=[0.1, 0.01, 0.001], l1_ratio=[0.0, 0.5], cv=3)
    model.fit(data.X, data.y)
    assert model.alphas_.shape == (2, 3)
    assert model.score_path_.shape == (2, 3, 3)
    assert model.neuron_score_path_.shape == (2, 3, 3, 3)
    assert model.l1_ratio_ in (0.0, 0.5)
    assert model.alpha_ in (0.1, 0.01, 0.001)


def test_custom_scoring_and_trained_dispersion_use_refits():
    data = make_glm_data(n_samples=600, n_features=4, n_neurons=1, random_state=1)
    y = data.y.ravel()
    cv = KFold(3)
    alphas = [1.0, 0.1, 0.01]
    model = PoissonGLMCV(alphas=alphas, cv=cv, scoring="neg_mean_poisson_deviance").fit(data.X, y)
    grid = GridSearchCV(
        PoissonGLM(), {"alpha": alphas}, cv=cv, scoring="neg_mean_poisson_deviance"
    ).fit(data.X, y)
    assert model.alpha_ == grid.best_params_["alpha"]
    np.testing.assert_allclose(
        model.score_path_.mean(axis=1), grid.cv_results_["mean_test_score"], rtol=1e-3
    )
    nb = PoissonGLMCV(alphas=alphas, cv=cv, family="negative_binomial").fit(data.X, y)
    assert nb.estimator_.dispersion_.shape == (1,)


def test_group_lasso_path(data):
    groups = np.repeat(np.arange(5), 2)
    model = PoissonGLMCV(n_alphas=4, l1_ratio=1.0, groups=groups, cv=3).fit(data.X, data.y)
    top = PoissonGLM(alpha=model.alphas_[0] * 1.001, l1_ratio=1.0, groups=groups)
    assert np.all(top.fit(data.X, data.y).coef_ == 0)


def test_validation(data):
    with pytest.raises(ValueError, match="needs scoring=None"):
        PoissonGLMCV(per_neuron=True, scoring="r2").fit(data.X, data.y)
    with pytest.raises(ValueError, match="alphas"):
        PoissonGLMCV(alphas=[-1.0]).fit(data.X, data.y)
    with pytest.raises(ValueError, match="l1_ratio"):
        PoissonGLMCV(l1_ratio=[0.5, 2.0]).fit(data.X, data.y)


@pytest.mark.slow
def test_faster_than_grid_search():
    data = make_glm_data(n_samples=3000, n_features=20, n_neurons=4, random_state=0)
    cv = KFold(5)
    PoissonGLM().fit(data.X, data.y)  # warm up torch
    start = time.process_time()
    model = PoissonGLMCV(n_alphas=10, cv=cv, l1_ratio=1.0).fit(data.X, data.y)
    path_time = time.process_time() - start
    start = time.process_time()
    GridSearchCV(PoissonGLM(l1_ratio=1.0), {"alpha": model.alphas_}, cv=cv).fit(data.X, data.y)
    grid_time = time.process_time() - start
    assert grid_time > 3 * path_time


def test_group_aware_cv_and_best_params(data):
    from sklearn.model_selection import GroupKFold

    trials = np.repeat(np.arange(6), len(data.X) // 6)
    model = PoissonGLMCV(alphas=[0.1, 0.01], cv=GroupKFold(3)).fit(data.X, data.y, groups=trials)
    assert model.score_path_.shape == (2, 3)
    assert model.best_params_ == {"alpha": model.alpha_, "l1_ratio": 0.0}
    with pytest.raises(ValueError, match="groups"):
        PoissonGLMCV(alphas=[0.1], cv=GroupKFold(3)).fit(data.X, data.y)
