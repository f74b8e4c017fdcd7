import pickle
import warnings

import joblib
import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    TweedieRegressor,
)
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.metrics import log_likelihood


@pytest.fixture(scope="module")
def poisson_data():
    return make_glm_data(n_samples=3000, n_features=8, n_neurons=1, random_state=0)


@pytest.fixture(scope="module")
def population():
    return make_glm_data(n_samples=2000, n_features=6, n_neurons=5, random_state=1)


def _objective(X, y, coef, intercept, alpha):
    eta = X @ coef + intercept
    return np.mean(np.exp(eta) - y * eta) + alpha / 2 * coef @ coef


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.1])
def test_matches_sklearn_poisson_regressor_optimum(poisson_data, alpha):
    X, y = poisson_data.X, poisson_data.y
    reference = PoissonRegressor(alpha=alpha, tol=1e-10, max_iter=10_000).fit(X, y)
    model = PoissonGLM(alpha=alpha, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-5)
    assert model.intercept_ == pytest.approx(reference.intercept_, abs=1e-5)
    assert model.score(X, y) == pytest.approx(
        log_likelihood(y, reference.predict(X)), abs=1e-8
    )
    assert _objective(X, y, model.coef_, model.intercept_, alpha) <= _objective(
        X, y, reference.coef_, reference.intercept_, alpha
    ) + 1e-12


def test_float32_input_fits_in_float32_close_to_float64(poisson_data):
    X, y = poisson_data.X, poisson_data.y
    model64 = PoissonGLM(alpha=1e-3, tol=1e-8).fit(X, y)
    model32 = PoissonGLM(alpha=1e-3, tol=1e-4).fit(X.astype(np.float32), y)
    assert model32.net_.module_.predictor.weight.dtype.is_floating_point
    assert str(model32.net_.module_.predictor.weight.dtype) == "torch.float32"
    np.testing.assert_allclose(model32.coef_, model64.coef_, atol=1e-3)


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
@pytest.mark.parametrize("solver", ["owlqn", "fista"])
def test_elastic_net_matches_glum_with_exact_zeros(solver, l1_ratio):
    glum = pytest.importorskip("glum")
    data = make_glm_data(n_samples=2000, n_features=12, random_state=3)
    X, y = data.X, data.y
    X[:, 6:] *= 0.1  # weak features that the L1 penalty should zero out
    alpha = 0.02
    reference = glum.GeneralizedLinearRegressor(
        family="poisson", alpha=alpha, l1_ratio=l1_ratio, gradient_tol=1e-10, max_iter=1000
    ).fit(X, y)
    model = PoissonGLM(alpha=alpha, l1_ratio=l1_ratio, solver=solver, tol=1e-9, max_iter=20_000)
    model.fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-5)
    assert model.intercept_ == pytest.approx(reference.intercept_, abs=1e-5)
    assert np.sum(reference.coef_ == 0) > 0
    np.testing.assert_array_equal(model.coef_ == 0, reference.coef_ == 0)


def test_lbfgs_refuses_an_l1_penalty(poisson_data):
    with pytest.raises(ValueError, match="cannot minimise an L1 penalty"):
        PoissonGLM(alpha=0.1, l1_ratio=0.5, solver="lbfgs").fit(poisson_data.X, poisson_data.y)


def test_population_fit_equals_single_neuron_fits(population):
    X, Y = population.X, population.y
    joint = PoissonGLM(alpha=1e-3, tol=1e-8).fit(X, Y)
    assert joint.coef_.shape == (5, 6) and joint.intercept_.shape == (5,)
    assert joint.predict(X).shape == Y.shape
    for k in range(Y.shape[1]):
        single = PoissonGLM(alpha=1e-3, tol=1e-8).fit(X, Y[:, k])
        np.testing.assert_allclose(joint.coef_[k], single.coef_, atol=1e-7)
        assert joint.intercept_[k] == pytest.approx(single.intercept_, abs=1e-7)


def test_recovers_ground_truth_coefficients():
    data = make_glm_data(n_samples=40_000, n_features=5, n_neurons=3, random_state=2)
    model = PoissonGLM(alpha=0.0).fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, data.coef, atol=0.03)
    np.testing.assert_allclose(model.intercept_, data.intercept, atol=0.03)


def test_softplus_link_recovers_ground_truth():
    data = make_glm_data(n_samples=40_000, n_features=4, link="softplus", modulation=1.0,
                         random_state=4)
    model = PoissonGLM(alpha=0.0, link="softplus").fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, data.coef, atol=0.05)


def test_gaussian_family_is_least_squares_with_fitted_noise_variance():
    data = make_glm_data(n_samples=3000, n_features=5, family="gaussian", dispersion=2.0,
                         random_state=5)
    model = PoissonGLM(alpha=0.0, family="gaussian", tol=1e-9).fit(data.X, data.y)
    reference = LinearRegression().fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-6)
    residual_variance = np.mean((data.y - reference.predict(data.X)) ** 2)
    assert model.dispersion_[0] == pytest.approx(residual_variance, rel=1e-6)
    assert model.dispersion_[0] == pytest.approx(2.0, rel=0.1)
    expected_score = np.mean(stats.norm.logpdf(data.y, reference.predict(data.X),
                                               np.sqrt(residual_variance)))
    assert model.score(data.X, data.y) == pytest.approx(expected_score, rel=1e-8)


def test_penalised_gaussian_family_matches_sklearn_tweedie_power_zero():
    data = make_glm_data(n_samples=1000, n_features=5, family="gaussian", random_state=8)
    model = PoissonGLM(alpha=0.3, family="gaussian", tol=1e-10).fit(data.X, data.y)
    reference = TweedieRegressor(power=0, alpha=0.3, link="identity", tol=1e-12,
                                 max_iter=10_000).fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-7)


def test_gaussian_family_fits_data_it_can_interpolate():
    X = np.random.default_rng(0).standard_normal((10, 12))
    y = X @ np.arange(12.0)
    model = PoissonGLM(alpha=1e-3, family="gaussian", tol=1e-10).fit(X, y)
    assert np.all(np.isfinite(model.coef_)) and model.dispersion_[0] > 0


def test_bernoulli_family_matches_penalised_logistic_regression():
    data = make_glm_data(n_samples=3000, n_features=5, family="bernoulli", modulation=1.5,
                         random_state=6)
    alpha = 1e-3
    model = PoissonGLM(alpha=alpha, family="bernoulli", tol=1e-10).fit(data.X, data.y)
    # LogisticRegression minimises C * sum(loss) + ||w||^2 / 2, i.e. alpha = 1 / (C n)
    reference = LogisticRegression(C=1.0 / (alpha * len(data.y)), tol=1e-12, max_iter=10_000)
    reference.fit(data.X, data.y)
    np.testing.assert_allclose(model.coef_, reference.coef_[0], atol=1e-5)
    np.testing.assert_allclose(model.predict(data.X), reference.predict_proba(data.X)[:, 1],
                               atol=1e-6)


def test_negative_binomial_matches_statsmodels_maximum_likelihood():
    sm = pytest.importorskip("statsmodels.api")
    data = make_glm_data(n_samples=4000, n_features=3, family="negative_binomial",
                         dispersion=0.7, modulation=0.8, random_state=7)
    model = PoissonGLM(alpha=0.0, family="negative_binomial", tol=1e-9).fit(data.X, data.y)
    reference = sm.NegativeBinomial(data.y, sm.add_constant(data.X), loglike_method="nb2")
    # Newton on the analytic Hessian converges cleanly (BFGS cannot reach gtol=1e-10 in
    # floating point and warns although it stands at the optimum)
    result = reference.fit(disp=0, maxiter=100, method="newton")
    np.testing.assert_allclose(model.coef_, result.params[1:4], atol=1e-4)
    assert model.intercept_ == pytest.approx(result.params[0], abs=1e-4)
    assert model.dispersion_[0] == pytest.approx(result.params[-1], rel=1e-3)
    assert model.score(data.X, data.y) * len(data.y) == pytest.approx(result.llf, rel=1e-6)


def test_offset_is_added_to_the_linear_predictor(poisson_data):
    X, y = poisson_data.X, poisson_data.y
    plain = PoissonGLM(alpha=1e-3, tol=1e-9).fit(X, y)
    shifted = PoissonGLM(alpha=1e-3, tol=1e-9).fit(X, y, offset=np.full(len(y), 0.7))
    np.testing.assert_allclose(shifted.coef_, plain.coef_, atol=1e-6)
    assert shifted.intercept_ == pytest.approx(plain.intercept_ - 0.7, abs=1e-6)
    np.testing.assert_allclose(
        shifted.predict(X, offset=np.full(len(y), 0.7)), plain.predict(X), rtol=1e-6
    )


def test_sample_weights_equal_repeated_samples(poisson_data):
    X, y = poisson_data.X[:500], poisson_data.y[:500]
    weights = np.random.default_rng(0).integers(0, 3, size=len(y))
    weighted = PoissonGLM(alpha=1e-2, tol=1e-10).fit(X, y, sample_weight=weights)
    repeated = PoissonGLM(alpha=1e-2, tol=1e-10).fit(np.repeat(X, weights, axis=0),
                                                     np.repeat(y, weights))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, atol=1e-7)


def test_warm_start_continues_from_the_previous_solution(poisson_data):
    X, y = poisson_data.X, poisson_data.y
    model = PoissonGLM(alpha=1e-3, tol=1e-9, warm_start=True).fit(X, y)
    first = model.coef_.copy()
    model.fit(X, y)
    assert model.n_iter_ <= 2
    np.testing.assert_allclose(model.coef_, first, atol=1e-8)


def test_works_in_pipeline_grid_search_and_cross_validation(population):
    X, y = population.X, population.y[:, 0]
    pipeline = make_pipeline(StandardScaler(), PoissonGLM(alpha=1e-3))
    scores = cross_val_score(pipeline, X, y, cv=KFold(3))
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and np.all(scores < 0)
    search = GridSearchCV(
        PoissonGLM(),
        {"alpha": [1e-3, 10.0], "l1_ratio": [0.0, 0.5], "link": ["exp", "softplus"]},
        cv=KFold(3),
    ).fit(X, y)
    assert search.best_params_["alpha"] == 1e-3  # a strong penalty hurts held-out likelihood
    assert len(search.cv_results_["params"]) == 8


def test_clone_pickle_and_joblib_round_trip_give_identical_predictions(population, tmp_path):
    model = PoissonGLM(alpha=1e-2).fit(population.X, population.y)
    assert clone(model).get_params() == model.get_params()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(population.X), model.predict(population.X))
    joblib.dump(model, tmp_path / "glm.joblib")
    loaded = joblib.load(tmp_path / "glm.joblib")
    np.testing.assert_array_equal(loaded.predict(population.X), model.predict(population.X))


def test_the_fit_scratch_state_lives_in_one_object_the_fit_deletes(population, monkeypatch):
    """Issue 11: hooks share one _GLMFitState, made once per fit and gone after it."""
    from sklearn_cnnenc.glm import _GLMFitState

    seen = []
    net_params = PoissonGLM._net_params

    def recording(self, n_samples):
        seen.append(self._fit_state)
        return net_params(self, n_samples)

    monkeypatch.setattr(PoissonGLM, "_net_params", recording)
    weight = np.linspace(0.5, 2.0, len(population.X))
    model = PoissonGLM(alpha=1e-2).fit(population.X, population.y, sample_weight=weight)
    (state,) = seen
    assert isinstance(state, _GLMFitState) and state.sample_weight is weight
    X = population.X
    rms = np.sqrt((weight[:, None] * X**2).sum(axis=0) / weight.sum())
    np.testing.assert_allclose(state.feature_scale, rms)
    # the closures (and the training data they hold) are dropped with it
    assert state.objective.function is None and state.objective.fast is None
    # fitted state is public; the private leftovers are the base's alone
    assert [name for name in vars(model) if name.startswith("_")] == ["_y_ndim"]
    with pytest.raises(ValueError, match="penalty_weights"):
        model.set_params(penalty_weights=[1.0]).fit(X, population.y)
    assert not hasattr(model, "_fit_state")


def test_a_model_pickled_with_the_former_scratch_attributes_loads_without_them(population):
    model = PoissonGLM(alpha=1e-2).fit(population.X, population.y)
    # what a model pickled before _GLMFitState held
    model.__dict__.update(
        _penalty_weights=None, _group_codes=None, _feature_scale=np.ones(6),
        _response_scale=np.ones(5), _null_curvature=None,
    )
    restored = pickle.loads(pickle.dumps(model))
    assert [name for name in vars(restored) if name.startswith("_")] == ["_y_ndim"]
    np.testing.assert_array_equal(restored.predict(population.X), model.predict(population.X))


def test_score_log_likelihood_and_sample_shapes(population):
    X, Y = population.X, population.y
    model = PoissonGLM(alpha=1e-3).fit(X, Y)
    per_sample = model.log_likelihood(X, Y)
    per_entry = model.log_likelihood(X, Y, per_neuron=True)
    assert per_sample.shape == (len(X),) and per_entry.shape == Y.shape
    np.testing.assert_allclose(per_sample, per_entry.sum(axis=1))
    assert model.score(X, Y) == pytest.approx(per_entry.mean())
    draws = model.sample(X, random_state=0)
    assert draws.shape == Y.shape and np.all(draws >= 0)
    np.testing.assert_array_equal(draws, model.sample(X, random_state=0))
    assert model.mean_response_ == pytest.approx(Y.mean(axis=0))


def test_zero_spike_neuron_fits_with_finite_intercept(population):
    Y = population.y.copy()
    Y[:, 2] = 0.0
    model = PoissonGLM(alpha=1e-3).fit(population.X, Y)
    assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(model.intercept_))
    assert model.intercept_[2] < -15
    assert np.all(model.predict(population.X)[:, 2] < 1e-6)
    assert np.isfinite(model.score(population.X, Y))


def test_huge_linear_predictors_give_finite_predictions_and_scores(population):
    model = PoissonGLM(alpha=1e-3).fit(population.X, population.y)
    X_huge = population.X * 1e6
    prediction = model.predict(X_huge)
    assert np.all(np.isfinite(prediction))
    assert np.isfinite(model.score(X_huge, population.y))


@pytest.mark.parametrize(
    ("X_change", "y_change", "message"),
    [
        (lambda X: np.where(X > 2, np.nan, X), None, "Input X contains NaN"),
        (lambda X: np.where(X > 2, np.inf, X), None, "Input X contains infinity"),
        (None, lambda y: np.where(y > 2, np.nan, y), "Input y contains NaN"),
        (None, lambda y: y - 1.0, "non-negative"),
        (None, lambda y: y[:-5], "inconsistent numbers of samples"),
        (lambda X: X[:0], lambda y: y[:0], "0 sample"),
    ],
)
def test_bad_input_is_a_clear_error(poisson_data, X_change, y_change, message):
    X, y = poisson_data.X, poisson_data.y
    X = X_change(X) if X_change else X
    y = y_change(y) if y_change else y
    with pytest.raises(ValueError, match=message):
        PoissonGLM().fit(X, y)


def test_bad_parameters_and_predict_inputs_are_clear_errors(poisson_data):
    X, y = poisson_data.X, poisson_data.y
    with pytest.raises(ValueError, match="alpha"):
        PoissonGLM(alpha=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="family"):
        PoissonGLM(family="weibull").fit(X, y)
    with pytest.raises(ValueError, match="link"):
        PoissonGLM(link="cube").fit(X, y)
    with pytest.raises(ValueError, match="not valid for the 'poisson' family"):
        PoissonGLM(link="identity").fit(X, y)
    with pytest.raises(ValueError, match="binary"):
        PoissonGLM(family="bernoulli").fit(X, y + 2)
    model = PoissonGLM().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match="neuron"):
        model.score(X, np.c_[y, y])
    with pytest.raises(ValueError, match="offset must have shape"):
        model.predict(X, offset=np.zeros(3))


def _poisson_objective(X, y, coef, intercept):
    eta = X @ coef + intercept
    return float(np.mean(np.exp(eta) - y * eta))


def _newton_cholesky_objective(X, y):
    """sklearn newton-cholesky's optimum, on the raw and on RMS-standardised features.

    On features spanning ten decades newton-cholesky's Hessian is singular in
    float64 (it falls back to lbfgs); its fit on standardised features, with
    the coefficients mapped back, is then the reference (the better of both).
    """
    rms = np.sqrt((X**2).mean(axis=0))
    best = np.inf
    for scale in (np.ones(X.shape[1]), rms):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = PoissonRegressor(alpha=0, solver="newton-cholesky", tol=1e-12,
                                   max_iter=1000).fit(X / scale, y)
        best = min(best, _poisson_objective(X, y, ref.coef_ / scale, ref.intercept_))
    return best


def _units_cases():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5000, 8))
    X = Z * np.logspace(-4, 6, 8)  # features in wildly different units
    y = rng.poisson(np.exp(Z @ rng.normal(0, 0.3, 8))).astype(float)
    yield "scaled", X, y
    X = rng.standard_normal((40000, 6))  # sparse spikes: 1e-3 per bin
    y = rng.poisson(np.exp(X @ rng.normal(0, 0.5, 6) + np.log(1e-3))).astype(float)
    yield "sparse", X, y


@pytest.mark.parametrize("solver", ["auto", "fista"])
@pytest.mark.parametrize("case", ["scaled", "sparse"])
def test_default_fit_reaches_newton_cholesky_optimum_in_any_units(case, solver):
    X, y = dict((name, (X, y)) for name, X, y in _units_cases())[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = PoissonGLM(alpha=0, solver=solver).fit(X, y)
    reference = _newton_cholesky_objective(X, y)
    ours = _poisson_objective(X, y, model.coef_, model.intercept_)
    assert ours - reference <= 1e-6 * abs(reference)


def test_convergence_warning_names_the_criterion_that_failed():
    data = make_glm_data(n_samples=2000, n_features=5, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"1 reached max_iter=2 before the gradient"):
        PoissonGLM(alpha=0, max_iter=2).fit(data.X, data.y)


def test_a_numerically_zero_column_does_not_stall_the_fit():
    # sin(2 * pi / 2) = 1.2e-16: rescaling such a column to unit RMS made the
    # ridge penalty on its coefficient 1e32 times stiffer than the likelihood,
    # and the fit stopped after one iteration at the null model
    rng = np.random.RandomState(0)
    x = rng.choice([-1.0, 1.0], size=600)
    X = np.column_stack([x, np.where(x > 0, 0.0, 1.2e-16)])
    y = rng.poisson(np.exp(0.3 + 0.8 * x)).astype(float)
    ours = PoissonGLM(alpha=1e-3).fit(X, y)
    reference = PoissonRegressor(alpha=1e-3, tol=1e-10, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(ours.coef_[0], reference.coef_[0], rtol=1e-3)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-3)


@pytest.mark.parametrize("case", ["scaled", "sparse"])
def test_float32_first_phase_keeps_the_units_free_optimum(case, monkeypatch):
    # issue 15 §4's float32 phase of large float64 fits, forced on the §3 cases:
    # the rounding-aware gradient test hands sparse spikes to float64
    from sklearn_cnnenc import glm

    monkeypatch.setattr(glm, "_FLOAT32_TWIN_MIN_WORK", 0)
    X, y = dict((name, (X, y)) for name, X, y in _units_cases())[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = PoissonGLM(alpha=0).fit(X, y)
    reference = _newton_cholesky_objective(X, y)
    ours = _poisson_objective(X, y, model.coef_, model.intercept_)
    assert ours - reference <= 1e-6 * abs(reference)
