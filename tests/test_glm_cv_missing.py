"""PoissonGLMCV(missing_responses="mask"): NaN responses (other sessions' neurons) on the path."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_cnnenc import PoissonGLM, PoissonGLMCV
from sklearn_cnnenc.datasets import make_glm_data


@pytest.fixture(scope="module")
def sessions():
    data = make_glm_data(n_samples=600, n_features=5, n_neurons=4, random_state=1)
    y = data.y.astype(float)
    y[:300, 2:] = np.nan  # session 1 recorded neurons 0-1
    y[300:, :2] = np.nan  # session 2 neurons 2-3
    y[::7, 0] = np.nan  # and some dropped trials
    return data.X, y


CV = KFold(3, shuffle=True, random_state=0)


def test_masked_path_equals_a_loop_of_masked_glm_fits(sessions):
    X, y = sessions
    model = PoissonGLMCV(
        n_alphas=5, eps=1e-5, cv=CV, missing_responses="mask", tol=1e-8
    ).fit(X, y)
    assert model.alphas_[0] > model.alpha_ > model.alphas_[-1]  # an inner choice
    grid = GridSearchCV(
        PoissonGLM(missing_responses="mask", tol=1e-8), {"alpha": model.alphas_}, cv=CV
    ).fit(X, y)
    # the fold scores are PoissonGLM.score on the held-out part (observed entries)
    np.testing.assert_allclose(
        model.score_path_.mean(axis=1), grid.cv_results_["mean_test_score"], rtol=1e-6
    )
    assert model.alpha_ == pytest.approx(grid.best_params_["alpha"])
    reference = PoissonGLM(alpha=model.alpha_, missing_responses="mask", tol=1e-8).fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-6)
    # each neuron is the fit on its observed rows alone
    for j in range(y.shape[1]):
        rows = ~np.isnan(y[:, j])
        alone = PoissonGLM(alpha=model.alpha_, tol=1e-8).fit(X[rows], y[rows, j])
        np.testing.assert_allclose(model.coef_[j], alone.coef_, atol=1e-5)
        assert model.intercept_[j] == pytest.approx(alone.intercept_, abs=1e-5)


def test_per_neuron_scores_equal_fold_fits_on_observed_rows(sessions):
    X, y = sessions
    model = PoissonGLMCV(
        alphas=[1.0, 0.01], cv=CV, per_neuron=True, missing_responses="mask", tol=1e-8
    ).fit(X, y)
    train, test = next(CV.split(X))
    for j in (0, 3):
        rows = train[~np.isnan(y[train, j])]
        held = test[~np.isnan(y[test, j])]
        fold_fit = PoissonGLM(alpha=0.01, tol=1e-8).fit(X[rows], y[rows, j])
        expected = fold_fit.log_likelihood(X[held], y[held, j]).mean()
        assert model.neuron_score_path_[1, 0, j] == pytest.approx(expected, rel=1e-6)
    assert np.all(np.isfinite(model.coef_))


def test_a_neuron_missing_from_a_held_out_part_is_left_out_of_that_fold(sessions):
    X, y = sessions
    y = y.copy()
    folds = list(CV.split(X))
    y[folds[0][1], 1] = np.nan  # neuron 1 is never observed in fold 0's test part
    model = PoissonGLMCV(n_alphas=3, cv=folds, per_neuron=True, missing_responses="mask")
    model.fit(X, y)
    assert np.all(np.isnan(model.neuron_score_path_[:, 0, 1]))
    assert np.all(np.isfinite(model.neuron_score_path_[:, 1:, 1]))
    assert np.all(np.isfinite(model.score_path_))
    assert np.all(np.isfinite(model.coef_))


def test_refit_path_masks_too(sessions):
    X, y = sessions
    model = PoissonGLMCV(
        alphas=[1.0, 0.01], cv=CV, family="negative_binomial", missing_responses="mask"
    ).fit(X, y)
    assert np.all(np.isfinite(model.score_path_))
    assert np.all(np.isfinite(model.coef_))


def test_bad_missing_responses_are_clear_errors(sessions):
    X, y = sessions
    with pytest.raises(ValueError, match="NaN"):
        PoissonGLMCV(n_alphas=3, cv=CV).fit(X, y)
    with pytest.raises(ValueError, match="missing_responses"):
        PoissonGLMCV(missing_responses="drop").fit(X, y)
    never = y.copy()
    never[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"no observed response.*\[2\]"):
        PoissonGLMCV(n_alphas=3, cv=CV, missing_responses="mask").fit(X, never)
    # a session held out entirely: its neurons have no training response in that fold
    folds = [(np.arange(300, 600), np.arange(300)), (np.arange(300), np.arange(300, 600))]
    with pytest.raises(ValueError, match=r"Fold 0 has no observed training response.*\[0, 1\]"):
        PoissonGLMCV(n_alphas=3, cv=folds, missing_responses="mask").fit(X, y)


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
def test_weighted_per_neuron_path_equals_masked_glm_fits(sessions, family):
    X, y = sessions
    weights = np.random.RandomState(0).uniform(0.2, 2.0, len(y))
    model = PoissonGLMCV(
        alphas=[1.0, 0.1, 0.01], cv=CV, per_neuron=True, family=family,
        missing_responses="mask", tol=1e-9,
    ).fit(X, y, sample_weight=weights)
    for j in range(y.shape[1]):  # coefficients from the batched path, at each neuron's alpha
        reference = PoissonGLM(
            alpha=model.alpha_[j], family=family, missing_responses="mask", tol=1e-9
        ).fit(X, y, sample_weight=weights)
        np.testing.assert_allclose(model.coef_[j], reference.coef_[j], atol=1e-7)
        assert model.intercept_[j] == pytest.approx(reference.intercept_[j], abs=1e-7)
    if family == "gaussian":  # noise variances from each neuron's observed entries
        np.testing.assert_allclose(model.estimator_.dispersion_[-1], reference.dispersion_[-1],
                                   rtol=1e-6)
