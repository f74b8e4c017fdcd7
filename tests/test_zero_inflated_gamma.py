"""The zero-inflated gamma family ("zig", deconvolved calcium) in every estimator, metric
and the decoder, and a fit on simulated data that recovers the truth."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from sklearn_cnnenc import BayesianDecoder, CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.distributions import ZeroInflatedGamma, get_family
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.metrics import METRICS, log_likelihood, make_encoding_scorer

TRUE_DISPERSION = np.array([[0.3, 0.5], [0.8, 1.5]])  # (q, phi) per neuron


def _zig_data(n_samples=4000, seed=0):
    return make_glm_data(n_samples=n_samples, n_features=3, n_neurons=2, family="zig",
                         dispersion=TRUE_DISPERSION, random_state=seed)


def _hand_log_prob(y, mean, dispersion):
    q, phi = dispersion[:, 0], dispersion[:, 1]
    positive = np.log(q) + stats.gamma.logpdf(np.where(y > 0, y, 1.0), 1.0 / phi,
                                              scale=mean / q * phi)
    return np.where(y > 0, positive, np.log(1.0 - q))


def test_glm_fit_on_simulated_zig_data_recovers_coefficients_and_zero_fraction():
    data = _zig_data()
    assert np.mean(data.y == 0, axis=0) == pytest.approx(1 - TRUE_DISPERSION[:, 0], abs=0.03)
    model = PoissonGLM(family="zig", alpha=0.0).fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, data.coef, atol=0.1)
    np.testing.assert_allclose(model.intercept_, data.intercept, atol=0.1)
    assert model.dispersion_.shape == (2, 2)
    # q is the fraction of non-zero responses, exactly
    np.testing.assert_allclose(model.dispersion_[:, 0], np.mean(data.y > 0, axis=0))
    np.testing.assert_allclose(model.dispersion_[:, 1], TRUE_DISPERSION[:, 1], rtol=0.15)
    assert model.__sklearn_tags__().target_tags.positive_only
    # the model's samples have its zero fraction
    draws = model.sample(data.X, random_state=0)
    np.testing.assert_allclose(np.mean(draws == 0, axis=0), 1 - model.dispersion_[:, 0],
                               atol=0.03)


def test_score_and_every_metric_use_the_zig_likelihood():
    data = _zig_data(n_samples=600)
    model = PoissonGLM(family="zig", alpha=1e-3).fit(data.X, data.y)
    mean = model.predict(data.X)
    expected = np.mean(_hand_log_prob(data.y, mean, model.dispersion_))
    assert model.score(data.X, data.y) == pytest.approx(expected, rel=1e-8)
    assert log_likelihood(data.y, mean, family="zig",
                          dispersion=model.dispersion_) == pytest.approx(expected, rel=1e-8)
    # one (q, phi) pair for every neuron is accepted, a wrong shape is refused
    log_likelihood(data.y, mean, family="zig", dispersion=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        log_likelihood(data.y, mean, family="zig", dispersion=[0.5, 0.5, 0.5])
    for name in [name for name, spec in METRICS.items() if not spec.takes_repeats]:
        assert np.isfinite(make_encoding_scorer(name)(model, data.X, data.y)), name
    assert make_encoding_scorer("log_likelihood")(model, data.X, data.y) == pytest.approx(
        expected, rel=1e-8
    )


def test_zig_in_ln_and_cnn_encoders():
    data = _zig_data(n_samples=400)
    ln = LNModel(1, "softplus", max_iter=200, family="zig", random_state=0).fit(data.X, data.y)
    assert ln.dispersion_.shape == (2, 2)
    assert np.isfinite(ln.score(data.X, data.y))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((60, 1, 10, 10)).astype(np.float32)
    y = get_family("zig").sample(np.full((60, 2), 1.5), TRUE_DISPERSION, 0).astype(np.float32)
    cnn = CNNEncoder(family="zig", channels=2, kernel_size=[3], max_epochs=2, device="cpu",
                     random_state=0).fit(images, y)
    assert cnn.dispersion_.shape == (2, 2)
    assert np.isfinite(cnn.score(images, y))
    assert np.all(cnn.predict(images) > 0)


def test_zig_bayesian_decoder_uses_the_matrix_product_form():
    data = _zig_data(n_samples=600)
    model = PoissonGLM(family="zig", alpha=1e-3).fit(data.X, data.y)
    rng = np.random.default_rng(1)
    stimuli = rng.standard_normal((5, 3))
    labels = np.arange(60) % 5
    Y = model.sample(stimuli[labels], random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no pair-by-pair fallback
        decoder = BayesianDecoder(model, stimuli, prefit=True).fit(Y, labels)
    assert decoder._likelihood._gemm
    expected = _hand_log_prob(Y[:, None, :], model.predict(stimuli)[None], model.dispersion_)
    np.testing.assert_allclose(decoder.log_likelihood(Y), expected.sum(axis=2), rtol=1e-9)


def test_zig_dispersion_errors_are_clear():
    family = ZeroInflatedGamma()
    y = np.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.5]])
    with pytest.raises(ValueError, match=r"at least 2 non-zero responses.*\[0\]"):
        family.estimate_dispersion(y, np.ones_like(y))
    with pytest.raises(ValueError, match=r"q in \(0, 1\]"):
        family.log_prob(y, np.ones_like(y), [1.5, 0.5])
    with pytest.raises(ValueError, match="needs its dispersion"):
        family.sample(np.ones(3))
    with pytest.raises(ValueError, match=r"\(q, phi\) pairs"):
        family.negative_log_likelihood(torch.ones(3), torch.zeros(3), get_link("exp"),
                                       torch.ones(3))


def test_zig_mean_fit_and_std_errors_match_statsmodels_gamma_quasi_likelihood():
    """The mean is the gamma quasi-likelihood fit (variance mu^2, zeros included):
    statsmodels' Tweedie(var_power=2) GLM, whose Pearson-scale standard errors ours equal."""
    sm = pytest.importorskip("statsmodels.api")
    data = make_glm_data(n_samples=800, n_features=3, n_neurons=1, family="zig",
                         dispersion=[0.4, 0.5], random_state=0)
    model = PoissonGLM(family="zig", alpha=0.0, tol=1e-10, max_iter=5000).fit(data.X, data.y)
    family = sm.families.Tweedie(var_power=2, link=sm.families.links.Log())
    reference = sm.GLM(data.y, sm.add_constant(data.X), family=family).fit(tol=1e-12,
                                                                           scale="X2")
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], reference.params,
                               rtol=1e-6)
    np.testing.assert_allclose(model.std_errors(data.X, data.y), reference.bse, rtol=1e-4)


def test_zig_in_poisson_glm_cv():
    from sklearn_cnnenc import PoissonGLMCV

    data = _zig_data(n_samples=600)
    model = PoissonGLMCV(family="zig", alphas=[1e-3, 1e-1], cv=3).fit(data.X, data.y)
    assert model.estimator_.dispersion_.shape == (2, 2)
    assert np.all(np.isfinite(model.score_path_))
    assert np.isfinite(model.score(data.X, data.y))


def test_zig_in_grid_search_and_compare_models_with_repeats():
    from sklearn.model_selection import GridSearchCV, KFold

    from sklearn_cnnenc.metrics import SCORERS
    from sklearn_cnnenc.model_selection import compare_models

    data = _zig_data(n_samples=450)
    search = GridSearchCV(PoissonGLM(family="zig"), {"alpha": [1e-3, 1.0]}, cv=3,
                          scoring=SCORERS["log_likelihood"]).fit(data.X, data.y)
    assert search.best_estimator_.dispersion_.shape == (2, 2)
    rng = np.random.default_rng(3)
    X_stimuli = rng.standard_normal((20, 3))
    mean = np.exp(X_stimuli @ data.coef.T + data.intercept)
    responses = get_family("zig").sample(np.broadcast_to(mean, (6, 20, 2)), TRUE_DISPERSION, 4)
    results = compare_models({"zig": search}, data.X, data.y, cv=KFold(3), verbose=False,
                             repeats=(X_stimuli, responses))
    summary = {row["model"]: row for row in results.summary()}
    assert np.isfinite(summary["zig"]["log_likelihood"])
    assert np.isfinite(summary["zig"]["correlation_to_average"])
