import pickle

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import d2_tweedie_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.families import get_family
from sklearn_cnnenc.metrics import (
    SCORERS,
    bits_per_spike,
    correlation,
    explainable_variance,
    fev,
    feve,
    get_scorer,
    log_likelihood,
    make_encoding_scorer,
    pseudo_r2,
)

N_SAMPLES, N_NEURONS = 60, 3
DISPERSION = {"gaussian": np.array([0.5, 1.0, 2.0]), "negative_binomial": np.array([0.3, 1.0, 2.5])}


def _draw(family, seed=0):
    """Responses, means and dispersion of one family, and scipy's log-probabilities."""
    rng = np.random.default_rng(seed)
    shape = (N_SAMPLES, N_NEURONS)
    dispersion = DISPERSION.get(family)
    if family == "poisson":
        mean = rng.uniform(0.2, 4.0, shape)
        y = rng.poisson(mean).astype(float)
        expected = stats.poisson.logpmf(y, mean)
    elif family == "gaussian":
        mean = rng.normal(size=shape)
        y = mean + rng.normal(size=shape) * np.sqrt(dispersion)
        expected = stats.norm.logpdf(y, mean, np.sqrt(dispersion))
    elif family == "bernoulli":
        mean = rng.uniform(0.05, 0.95, shape)
        y = rng.binomial(1, mean).astype(float)
        expected = stats.bernoulli.logpmf(y, mean)
    else:
        mean = rng.uniform(0.2, 4.0, shape)
        n = 1.0 / dispersion
        y = rng.negative_binomial(n, n / (n + mean)).astype(float)
        expected = stats.nbinom.logpmf(y, n, n / (n + mean))
    return y, mean, dispersion, expected


def _poisson_population(n_samples=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.poisson(rng.uniform(0.5, 3.0, size=(n_samples, N_NEURONS))).astype(float)
    y_pred = rng.uniform(0.3, 3.5, size=y.shape)
    return y, y_pred


# --- log_likelihood --------------------------------------------------------


@pytest.mark.parametrize("family", ["poisson", "gaussian", "bernoulli", "negative_binomial"])
@pytest.mark.parametrize("aggregate", ["mean", "sum", "none"])
@pytest.mark.parametrize("multioutput", ["raw_values", "uniform_average"])
def test_log_likelihood_matches_scipy(family, aggregate, multioutput):
    y, mean, dispersion, expected = _draw(family)
    result = log_likelihood(
        y, mean, family=family, dispersion=dispersion, aggregate=aggregate, multioutput=multioutput
    )
    if aggregate == "none":
        assert_allclose(result, expected, rtol=1e-10)
        return
    per_neuron = expected.mean(axis=0) if aggregate == "mean" else expected.sum(axis=0)
    if multioutput == "raw_values":
        assert result.shape == (N_NEURONS,)
        assert_allclose(result, per_neuron, rtol=1e-10)
    else:
        assert isinstance(result, float)
        assert_allclose(result, per_neuron.mean(), rtol=1e-10)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_log_likelihood_weights_samples(family):
    y, mean, dispersion, expected = _draw(family, seed=1)
    weights = np.random.default_rng(2).uniform(0.0, 2.0, N_SAMPLES)
    mean_ll = log_likelihood(
        y,
        mean,
        family=family,
        dispersion=dispersion,
        sample_weight=weights,
        multioutput="raw_values",
    )
    sum_ll = log_likelihood(
        y,
        mean,
        family=family,
        dispersion=dispersion,
        sample_weight=weights,
        aggregate="sum",
        multioutput="raw_values",
    )
    assert_allclose(mean_ll, np.average(expected, axis=0, weights=weights), rtol=1e-10)
    assert_allclose(sum_ll, weights @ expected, rtol=1e-10)


def test_log_likelihood_of_one_neuron_keeps_its_shape():
    y, mean, _, expected = _draw("poisson")
    assert log_likelihood(y[:, 0], mean[:, 0], aggregate="none").shape == (N_SAMPLES,)
    assert log_likelihood(y[:, 0], mean[:, 0], multioutput="raw_values").shape == (1,)
    assert_allclose(log_likelihood(list(y[:, 0]), list(mean[:, 0])), expected[:, 0].mean())


def test_log_likelihood_gaussian_default_dispersion_is_residual_mse():
    y, mean, _, _ = _draw("gaussian")
    mse = np.mean((y - mean) ** 2, axis=0)
    result = log_likelihood(y, mean, family="gaussian", multioutput="raw_values")
    assert_allclose(result, stats.norm.logpdf(y, mean, np.sqrt(mse)).mean(axis=0), rtol=1e-10)
    # The maximum-likelihood variance gives the closed form -(1 + log(2 pi mse)) / 2.
    assert_allclose(result, -0.5 * (1.0 + np.log(2.0 * np.pi * mse)), rtol=1e-10)

    weights = np.random.default_rng(3).uniform(0.1, 2.0, N_SAMPLES)
    weighted_mse = np.average((y - mean) ** 2, axis=0, weights=weights)
    weighted = log_likelihood(
        y, mean, family="gaussian", sample_weight=weights, multioutput="raw_values"
    )
    assert_allclose(weighted, -0.5 * (1.0 + np.log(2.0 * np.pi * weighted_mse)), rtol=1e-10)


def test_log_likelihood_is_minus_inf_for_a_spike_at_zero_rate():
    with pytest.warns(RuntimeWarning, match="probability 0"):  # -inf, but never silently
        assert log_likelihood([0, 1], [0.0, 0.0]) == -np.inf
    assert log_likelihood([0, 0], [0.0, 0.0]) == 0.0


# --- bits_per_spike --------------------------------------------------------


def _hand_bits(y, y_pred, y_null):
    gain = stats.poisson.logpmf(y, y_pred).sum(axis=0) - stats.poisson.logpmf(y, y_null).sum(axis=0)
    return gain / y.sum(axis=0) / np.log(2)


def test_bits_per_spike_of_the_mean_rate_is_exactly_zero():
    y, _ = _poisson_population()
    null = np.broadcast_to(y.mean(axis=0), y.shape)
    assert_array_equal(bits_per_spike(y, null, multioutput="raw_values"), np.zeros(N_NEURONS))
    weights = np.random.default_rng(1).uniform(0.0, 3.0, len(y))
    weighted_null = np.broadcast_to(np.average(y, axis=0, weights=weights), y.shape)
    assert bits_per_spike(y, weighted_null, sample_weight=weights) == 0.0


def test_bits_per_spike_matches_hand_computation():
    y, y_pred = _poisson_population()
    expected = _hand_bits(y, y_pred, y.mean(axis=0))
    assert_allclose(bits_per_spike(y, y_pred, multioutput="raw_values"), expected, rtol=1e-10)
    assert_allclose(bits_per_spike(y, y_pred), expected.mean(), rtol=1e-10)


def test_bits_per_spike_with_weights_counts_weighted_spikes():
    y, y_pred = _poisson_population()
    weights = np.random.default_rng(4).integers(0, 3, len(y))
    # Integer weights are the same as repeating samples.
    repeated = bits_per_spike(
        np.repeat(y, weights, axis=0), np.repeat(y_pred, weights, axis=0), multioutput="raw_values"
    )
    weighted = bits_per_spike(y, y_pred, sample_weight=weights, multioutput="raw_values")
    assert_allclose(weighted, repeated, rtol=1e-10)


def test_bits_per_spike_of_true_rates_is_clearly_positive():
    rng = np.random.default_rng(0)
    time = np.arange(4000)
    rates = np.exp(-0.5 + 1.5 * np.sin(2 * np.pi * time / 100.0))[:, None] * [1.0, 0.5]
    y = rng.poisson(rates).astype(float)
    bits = bits_per_spike(y, rates, multioutput="raw_values")
    assert np.all(bits > 0.4)
    # The same rates, shuffled in time, do worse than the mean rate.
    assert np.all(bits_per_spike(y, rng.permutation(rates), multioutput="raw_values") < 0)


def test_bits_per_spike_null_rules():
    y, y_pred = _poisson_population()
    y_train, _ = _poisson_population(seed=5)
    train_mean = y_train.mean(axis=0)
    psth = np.random.default_rng(6).uniform(0.5, 2.0, size=y.shape)
    cases = [
        (1.5, np.full(y.shape, 1.5)),
        ([1.0, 2.0, 3.0], np.broadcast_to([1.0, 2.0, 3.0], y.shape)),
        (train_mean, np.broadcast_to(train_mean, y.shape)),
        (psth, psth),
        (psth[:, :1], np.broadcast_to(psth[:, :1], y.shape)),
    ]
    for y_null, null in cases:
        result = bits_per_spike(y, y_pred, y_null, multioutput="raw_values")
        assert_allclose(result, _hand_bits(y, y_pred, null), rtol=1e-10)
    # A per-neuron null differs from the default null, the scored data's own mean.
    assert not np.allclose(
        bits_per_spike(y, y_pred, train_mean, multioutput="raw_values"),
        bits_per_spike(y, y_pred, multioutput="raw_values"),
    )


def test_bits_per_spike_of_silent_neuron_is_nan_with_warning():
    y, y_pred = _poisson_population()
    y[:, 1] = 0.0
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 neuron"):
        raw = bits_per_spike(y, y_pred, multioutput="raw_values")
    assert np.isnan(raw[1]) and np.all(np.isfinite(raw[[0, 2]]))
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 neuron.*excluded from the average"):
        average = bits_per_spike(y, y_pred)
    assert_allclose(average, np.mean(raw[[0, 2]]))
    with pytest.warns(UndefinedMetricWarning, match="3 of 3 neuron"):
        assert np.isnan(bits_per_spike(np.zeros((5, 3)), np.ones((5, 3))))


# --- pseudo_r2 -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mcfadden", "deviance"])
@pytest.mark.parametrize("family", ["poisson", "gaussian", "bernoulli", "negative_binomial"])
def test_pseudo_r2_of_null_is_zero_and_of_saturated_is_one(kind, family):
    y, _, dispersion, _ = _draw(family)
    null = np.broadcast_to(y.mean(axis=0), y.shape)
    kwargs = {"kind": kind, "family": family, "dispersion": dispersion, "multioutput": "raw_values"}
    assert_allclose(pseudo_r2(y, null, **kwargs), 0.0, atol=1e-12)
    if kind == "deviance":
        assert_allclose(pseudo_r2(y, y, **kwargs), 1.0, rtol=1e-12)


def test_pseudo_r2_matches_hand_computation():
    y, y_pred = _poisson_population()
    ll_model = stats.poisson.logpmf(y, y_pred).sum(axis=0)
    ll_null = stats.poisson.logpmf(y, y.mean(axis=0)).sum(axis=0)
    ll_saturated = stats.poisson.logpmf(y, y).sum(axis=0)
    mcfadden = pseudo_r2(y, y_pred, multioutput="raw_values")
    deviance = pseudo_r2(y, y_pred, kind="deviance", multioutput="raw_values")
    assert_allclose(mcfadden, 1 - ll_model / ll_null, rtol=1e-10)
    assert_allclose(deviance, (ll_model - ll_null) / (ll_saturated - ll_null), rtol=1e-10)
    d2 = [d2_tweedie_score(y[:, j], y_pred[:, j], power=1) for j in range(N_NEURONS)]
    assert_allclose(deviance, d2, rtol=1e-10)
    assert_allclose(pseudo_r2(y, y_pred), mcfadden.mean(), rtol=1e-12)


def test_pseudo_r2_deviance_of_gaussian_is_r2():
    y, mean, _, _ = _draw("gaussian")
    assert_allclose(
        pseudo_r2(y, mean, kind="deviance", family="gaussian", multioutput="raw_values"),
        r2_score(y, mean, multioutput="raw_values"),
        rtol=1e-10,
    )


def test_pseudo_r2_null_rules():
    y, y_pred = _poisson_population()
    ll_model = stats.poisson.logpmf(y, y_pred).sum(axis=0)
    for y_null in (2.0, np.array([1.0, 2.0, 3.0])):
        ll_null = stats.poisson.logpmf(y, np.broadcast_to(y_null, y.shape)).sum(axis=0)
        result = pseudo_r2(y, y_pred, y_null=y_null, multioutput="raw_values")
        assert_allclose(result, 1 - ll_model / ll_null, rtol=1e-10)


def test_pseudo_r2_undefined_for_constant_neuron():
    y, y_pred = _poisson_population()
    y[:, 2] = 2.0
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 neuron"):
        raw = pseudo_r2(y, y_pred, kind="deviance", multioutput="raw_values")
    assert np.isnan(raw[2]) and np.all(np.isfinite(raw[:2]))
    # Constant over the samples that carry weight is constant too.
    y[0, 2] = 7.0
    weights = np.ones(len(y))
    weights[0] = 0.0
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 neuron"):
        raw = pseudo_r2(y, y_pred, kind="deviance", sample_weight=weights, multioutput="raw_values")
    assert np.isnan(raw[2])


# --- correlation -----------------------------------------------------------


def test_correlation_equals_corrcoef_per_column():
    y, y_pred = _poisson_population()
    expected = [np.corrcoef(y[:, j], y_pred[:, j])[0, 1] for j in range(N_NEURONS)]
    assert_allclose(correlation(y, y_pred, multioutput="raw_values"), expected, rtol=1e-10)
    assert_allclose(correlation(y, y_pred), np.mean(expected), rtol=1e-10)
    assert_allclose(correlation(y[:, 0], y_pred[:, 0]), expected[0], rtol=1e-10)


def test_correlation_with_integer_weights_equals_repeated_samples():
    y, y_pred = _poisson_population()
    weights = np.random.default_rng(7).integers(0, 4, len(y))
    expected = correlation(
        np.repeat(y, weights, axis=0), np.repeat(y_pred, weights, axis=0), multioutput="raw_values"
    )
    result = correlation(y, y_pred, sample_weight=weights, multioutput="raw_values")
    assert_allclose(result, expected, rtol=1e-10)


def test_correlation_of_constant_column_is_nan_with_warning():
    y, y_pred = _poisson_population()
    y_pred[:, 0] = 0.1
    with pytest.warns(UndefinedMetricWarning, match="correlation is undefined for 1 of 3"):
        raw = correlation(y, y_pred, multioutput="raw_values")
    assert np.isnan(raw[0])
    with pytest.warns(UndefinedMetricWarning):
        assert_allclose(correlation(y, y_pred), np.mean(raw[1:]))


# --- fev / feve ------------------------------------------------------------


def test_fev_feve_on_tiny_example_by_hand():
    responses = [[1.0, 4.0, 2.0], [2.0, 5.0, 1.0]]
    # All six responses have mean 2.5 and variance 13.5 / 6 = 2.25; each stimulus's
    # two repeats differ by 1, so each across-repeat variance (ddof=1) is 0.5.
    # Predicting [1, 4, 2] misses three of the six responses by 1: MSE = 0.5.
    assert_allclose(explainable_variance(responses), (2.25 - 0.5) / 2.25)
    assert_allclose(fev(responses, [1.0, 4.0, 2.0]), 1 - 0.5 / 2.25)
    assert_allclose(feve(responses, [1.0, 4.0, 2.0]), 1.0)
    # The repeat means [1.5, 4.5, 1.5] miss every response by 0.5: MSE = 0.25.
    assert_allclose(fev(responses, [1.5, 4.5, 1.5]), 1 - 0.25 / 2.25)
    assert_allclose(feve(responses, [1.5, 4.5, 1.5]), 1 - (0.25 - 0.5) / (2.25 - 0.5))


def _repeated_trials(n_repeats=10, n_stimuli=3000, seed=0):
    rng = np.random.default_rng(seed)
    signal_variance = np.array([2.0, 1.0, 0.5])
    true_mean = rng.normal(size=(n_stimuli, 3)) * np.sqrt(signal_variance)
    responses = true_mean + rng.normal(size=(n_repeats, n_stimuli, 3))
    return responses, true_mean, signal_variance / (signal_variance + 1.0)


def test_feve_of_true_mean_is_one_and_fev_is_explainable_fraction():
    responses, true_mean, explainable = _repeated_trials()
    assert_allclose(feve(responses, true_mean, multioutput="raw_values"), 1.0, atol=0.05)
    assert_allclose(fev(responses, true_mean, multioutput="raw_values"), explainable, atol=0.03)
    assert_allclose(
        explainable_variance(responses, multioutput="raw_values"), explainable, atol=0.03
    )


def test_fev_feve_of_constant_prediction_are_not_positive():
    responses, true_mean, _ = _repeated_trials(n_stimuli=200)
    grand_mean = responses.mean(axis=(0, 1))
    for constant in (grand_mean, grand_mean + 0.3, np.zeros(3)):
        y_pred = np.broadcast_to(constant, true_mean.shape)
        assert np.all(feve(responses, y_pred, multioutput="raw_values") <= 1e-12)
        assert np.all(fev(responses, y_pred, multioutput="raw_values") <= 1e-12)
    assert_allclose(fev(responses, np.broadcast_to(grand_mean, true_mean.shape)), 0.0, atol=1e-12)


def test_fev_feve_per_neuron_equal_single_neuron_calls():
    responses, true_mean, _ = _repeated_trials(n_stimuli=50)
    y_pred = true_mean + 0.3
    for metric in (fev, feve):
        raw = metric(responses, y_pred, multioutput="raw_values")
        single = [metric(responses[:, :, j], y_pred[:, j]) for j in range(3)]
        assert_allclose(raw, single, rtol=1e-12)
        assert_allclose(metric(responses, y_pred), np.mean(single), rtol=1e-12)


def test_feve_without_explainable_variance_is_nan_with_warning():
    # Both stimuli have the same repeat mean: all variance is noise.
    responses = [[1.0, 2.0], [2.0, 1.0]]
    with pytest.warns(UndefinedMetricWarning, match="no explainable variance"):
        assert np.isnan(feve(responses, [1.5, 1.5]))


# --- scorers ---------------------------------------------------------------


def _poisson_regression_data(n_samples=150, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = rng.poisson(np.exp(0.3 + X @ np.array([0.6, -0.4, 0.2, 0.0]))).astype(float)
    return X, y


def _poisson_regressor(alpha=1.0):
    # Newton-Cholesky fits these small problems ~30 times faster than the default lbfgs.
    return PoissonRegressor(alpha=alpha, solver="newton-cholesky")


def _held_out(estimator, X, y, cv, metric, sample_weight=None, **kwargs):
    scores = []
    for train, test in cv.split(X):
        fitted = clone(estimator).fit(X[train], y[train])
        weight = None if sample_weight is None else sample_weight[test]
        scores.append(metric(y[test], fitted.predict(X[test]), sample_weight=weight, **kwargs))
    return np.array(scores)


def test_bits_per_spike_scorer_in_cross_val_score():
    X, y = _poisson_regression_data()
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(
        _poisson_regressor(), X, y, cv=cv, scoring=make_encoding_scorer("bits_per_spike")
    )
    assert_allclose(scores, _held_out(_poisson_regressor(), X, y, cv, bits_per_spike), rtol=1e-10)
    assert np.all(scores > 0)


def test_scorers_dict_in_grid_search():
    X, y = _poisson_regression_data()
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(
        _poisson_regressor(),
        {"alpha": [1e-3, 10.0]},
        scoring=SCORERS,
        refit="log_likelihood",
        cv=cv,
    ).fit(X, y)
    metrics = {
        "log_likelihood": (log_likelihood, {}),
        "bits_per_spike": (bits_per_spike, {}),
        "pseudo_r2": (pseudo_r2, {}),
        "pseudo_r2_deviance": (pseudo_r2, {"kind": "deviance"}),
        "correlation": (correlation, {}),
    }
    for index, alpha in enumerate([1e-3, 10.0]):
        for split, (train, test) in enumerate(cv.split(X)):
            y_pred = _poisson_regressor(alpha=alpha).fit(X[train], y[train]).predict(X[test])
            for name, (metric, kwargs) in metrics.items():
                result = search.cv_results_[f"split{split}_test_{name}"][index]
                assert_allclose(result, metric(y[test], y_pred, **kwargs), rtol=1e-8)
    assert search.best_params_ == {"alpha": 1e-3}
    assert_allclose(
        search.score(X, y), log_likelihood(y, search.best_estimator_.predict(X)), rtol=1e-12
    )


def test_grid_search_passes_sample_weight_to_scorers():
    X, y = _poisson_regression_data()
    weights = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(
        _poisson_regressor(), {"alpha": [1.0]}, scoring=SCORERS, refit=False, cv=cv
    ).fit(X, y, sample_weight=weights)
    for split, (train, test) in enumerate(cv.split(X)):
        fitted = _poisson_regressor().fit(X[train], y[train], sample_weight=weights[train])
        expected = bits_per_spike(y[test], fitted.predict(X[test]), sample_weight=weights[test])
        assert_allclose(search.cv_results_[f"split{split}_test_bits_per_spike"][0], expected)


def test_scorer_with_metadata_routing_receives_sample_weight():
    X, y = _poisson_regression_data()
    weights = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    cv = KFold(3, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = get_scorer("correlation").set_score_request(sample_weight=True)
        results = cross_validate(
            _poisson_regressor().set_fit_request(sample_weight=True),
            X,
            y,
            cv=cv,
            scoring=scorer,
            params={"sample_weight": weights},
        )
    for split, (train, test) in enumerate(cv.split(X)):
        fitted = _poisson_regressor().fit(X[train], y[train], sample_weight=weights[train])
        expected = correlation(y[test], fitted.predict(X[test]), sample_weight=weights[test])
        assert_allclose(results["test_score"][split], expected)
    # The shared scorer in SCORERS was not changed by set_score_request on the copy.
    assert SCORERS["correlation"]._sample_weight_request is None


def test_scorer_in_pipeline():
    X, y = _poisson_regression_data()
    X = X * [1.0, 100.0, 0.01, 5.0]
    cv = KFold(3, shuffle=True, random_state=0)
    pipeline = make_pipeline(StandardScaler(), _poisson_regressor())
    for name, metric, kwargs in [
        ("log_likelihood", log_likelihood, {}),
        ("pseudo_r2_deviance", pseudo_r2, {"kind": "deviance"}),
    ]:
        scores = cross_val_score(pipeline, X, y, cv=cv, scoring=SCORERS[name])
        assert_allclose(scores, _held_out(pipeline, X, y, cv, metric, **kwargs), rtol=1e-10)


def test_scorers_are_picklable():
    X, y = _poisson_regression_data()
    fitted = _poisson_regressor().fit(X, y)
    for scorer in [*SCORERS.values(), make_encoding_scorer("log_likelihood", aggregate="sum")]:
        restored = pickle.loads(pickle.dumps(scorer))
        assert repr(restored) == repr(scorer)
        assert restored(fitted, X, y) == scorer(fitted, X, y)


def test_scorer_in_parallel_cross_validation():
    X, y = _poisson_regression_data()
    cv = KFold(2, shuffle=True, random_state=0)
    scorer = make_encoding_scorer("bits_per_spike")
    parallel = cross_val_score(_poisson_regressor(), X, y, cv=cv, scoring=scorer, n_jobs=2)
    assert_allclose(parallel, cross_val_score(_poisson_regressor(), X, y, cv=cv, scoring=scorer))


class _GaussianEncoder(RegressorMixin, BaseEstimator):
    """Stands in for the library's estimators: fitted family_, dispersion_, mean_response_."""

    def __init__(self, with_mean_response=True):
        self.with_mean_response = with_mean_response

    def fit(self, X, y):
        self.coef_, *_ = np.linalg.lstsq(X, np.log1p(y), rcond=None)
        self.family_ = get_family("gaussian")
        self.dispersion_ = np.array([0.7])
        if self.with_mean_response:
            self.mean_response_ = np.atleast_1d(np.mean(y, axis=0))
        return self

    def predict(self, X):
        return np.exp(X @ self.coef_)


def test_scorer_uses_fitted_family_and_dispersion():
    X, y = _poisson_regression_data()
    for estimator in (_GaussianEncoder().fit(X, y), make_pipeline(_GaussianEncoder()).fit(X, y)):
        y_pred = estimator.predict(X)
        expected = log_likelihood(y, y_pred, family="gaussian", dispersion=0.7)
        assert_allclose(SCORERS["log_likelihood"](estimator, X, y), expected, rtol=1e-12)
        assert_allclose(
            SCORERS["pseudo_r2_deviance"](estimator, X, y),
            pseudo_r2(y, y_pred, kind="deviance", family="gaussian", dispersion=0.7),
            rtol=1e-12,
        )
    # Arguments given to make_encoding_scorer take precedence.
    scorer = make_encoding_scorer("log_likelihood", dispersion=2.0)
    assert_allclose(
        scorer(estimator, X, y),
        log_likelihood(y, y_pred, family="gaussian", dispersion=2.0),
        rtol=1e-12,
    )


def test_bits_per_spike_scorer_with_training_null():
    X, y = _poisson_regression_data()
    X_train, X_test, y_train, y_test = X[:100], X[100:], y[:100], y[100:]
    fitted = make_pipeline(StandardScaler(), _GaussianEncoder()).fit(X_train, y_train)
    scorer = make_encoding_scorer("bits_per_spike", null="train")
    assert repr(scorer) == "make_encoding_scorer('bits_per_spike', null='train')"
    assert_allclose(
        scorer(fitted, X_test, y_test),
        bits_per_spike(y_test, fitted.predict(X_test), y_null=y_train.mean()),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="mean_response_"):
        scorer(_GaussianEncoder(with_mean_response=False).fit(X_train, y_train), X_test, y_test)
    with pytest.raises(ValueError, match="mean_response_"):
        scorer(_poisson_regressor().fit(X_train, y_train), X_test, y_test)


def test_get_scorer():
    assert repr(get_scorer("bits_per_spike")) == "make_encoding_scorer('bits_per_spike')"
    assert get_scorer("bits_per_spike") is not SCORERS["bits_per_spike"]
    assert "poisson" in repr(get_scorer("neg_mean_poisson_deviance"))
    scorer = make_encoding_scorer("correlation")
    assert get_scorer(scorer) is scorer
    with pytest.raises(ValueError, match="Unknown scorer name 'bits'"):
        get_scorer("bits")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"name": "bits"}, ValueError, "Unknown encoding scorer name"),
        ({"name": "log_likelihood", "multioutput": "raw_values"}, ValueError, "multioutput="),
        ({"name": "pseudo_r2", "kind": "deviance"}, ValueError, "kind="),
        ({"name": "log_likelihood", "aggregate": "none"}, ValueError, "aggregate='none'"),
        ({"name": "correlation", "null": "train"}, ValueError, "null= applies only"),
        ({"name": "bits_per_spike", "null": "test"}, ValueError, "Unknown null"),
        ({"name": "bits_per_spike", "null": "train", "y_null": 1.0}, ValueError, "not both"),
        ({"name": "bits_per_spike", "family": "gaussian"}, TypeError, "unexpected keyword"),
    ],
)
def test_make_encoding_scorer_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_encoding_scorer(**kwargs)


# --- input validation ------------------------------------------------------

Y = np.array([[0.0, 1.0], [2.0, 3.0], [1.0, 0.0]])
P = np.array([[0.5, 1.0], [1.5, 2.0], [1.0, 0.5]])
R = np.array([[1.0, 4.0, 2.0], [2.0, 5.0, 1.0]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: log_likelihood([[0.0, np.nan]], [[1.0, 1.0]]), "y_true contains NaN"),
        (lambda: log_likelihood(Y, np.where(P == 2.0, np.inf, P)), "y_pred contains infinity"),
        (lambda: bits_per_spike(Y, P[:, :1]), "different shapes"),
        (lambda: pseudo_r2(Y, P[:2]), "different shapes"),
        (lambda: correlation(Y[:, 0], P), "different shapes"),
        (lambda: log_likelihood(-Y, P), "non-negative responses"),
        (lambda: bits_per_spike(-Y, P), "non-negative responses"),
        (lambda: log_likelihood(Y, -P), "y_pred must be non-negative"),
        (lambda: bits_per_spike(Y, -P), "y_pred must be non-negative"),
        (lambda: pseudo_r2(Y, -P), "y_pred must be non-negative"),
        (lambda: log_likelihood([], []), "0 sample"),
        (lambda: bits_per_spike([], []), "0 sample"),
        (lambda: correlation(np.zeros((3, 0)), np.zeros((3, 0))), "0 feature"),
        (lambda: log_likelihood(Y, P, multioutput="variance_weighted"), "Unknown multioutput"),
        (lambda: bits_per_spike(Y, P, multioutput="mean"), "Unknown multioutput"),
        (lambda: fev(R, R[0], multioutput=None), "Unknown multioutput"),
        (lambda: log_likelihood(Y, P, aggregate="median"), "Unknown aggregate"),
        (lambda: pseudo_r2(Y, P, kind="cox_snell"), "Unknown kind"),
        (lambda: log_likelihood(Y, P, family="weibull"), "Unknown family"),
        (lambda: pseudo_r2(Y, P, family="weibull"), "Unknown family"),
        (lambda: log_likelihood(Y, P, family="negative_binomial"), "needs its dispersion"),
        (lambda: log_likelihood(Y, P, dispersion=1.0), "has no dispersion"),
        (lambda: log_likelihood(Y, P, family="gaussian", dispersion=[1.0, 2.0, 3.0]), "shape"),
        (lambda: log_likelihood(Y, P, family="gaussian", dispersion=0.0), "positive"),
        (lambda: log_likelihood(Y, P + 1, family="bernoulli"), "binary responses"),
        (lambda: log_likelihood(Y > 0, P, family="bernoulli"), r"in \[0, 1\]"),
        (lambda: log_likelihood(Y, P, sample_weight=[1.0, 1.0]), "inconsistent numbers"),
        (lambda: log_likelihood(Y, P, sample_weight=[1.0, -1.0, 1.0]), "non-negative"),
        (lambda: log_likelihood(Y, P, sample_weight=[0.0, 0.0, 0.0]), "positive sum"),
        (lambda: bits_per_spike(Y, P, y_null=[1.0, 2.0, 3.0]), "cannot be broadcast"),
        (lambda: bits_per_spike(Y, P, y_null=np.nan), "y_null contains NaN"),
        (lambda: bits_per_spike(Y, P, y_null=-1.0), "y_null must be non-negative"),
        (lambda: correlation(Y[:1], P[:1]), "at least 2 samples"),
        (lambda: fev(R[:1], R[0]), "At least 2 repeats"),
        (lambda: feve(R[:1], R[0]), "At least 2 repeats"),
        (lambda: explainable_variance(R[:1]), "At least 2 repeats"),
        (lambda: feve(R, R[0, :2]), "y_pred has shape"),
        (lambda: fev(R[:, :, None], np.ones((3, 2))), "y_pred has shape"),
        (lambda: fev(R[0], R[0]), "responses must have shape"),
        (lambda: feve(np.where(R == 4.0, np.nan, R), R[0]), "responses contains NaN"),
        (lambda: fev(np.zeros((2, 0, 3)), np.zeros((0, 3))), "empty"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _fitted_in_a_search(family, X, y):
    search = GridSearchCV(
        make_pipeline(StandardScaler(), PoissonGLM(family=family)),
        {"poissonglm__alpha": [1e-3, 1e-1]},
        cv=KFold(2),
    )
    return search.fit(X, y)


@pytest.mark.parametrize("family", ["negative_binomial", "gaussian"])
def test_log_likelihood_scorer_scores_a_search_in_its_fitted_family(family):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    mean = np.exp(0.5 + X @ np.array([0.4, -0.3, 0.2]))
    if family == "negative_binomial":
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mean)).astype(float)
    else:
        y = mean + rng.normal(size=400)
    search = _fitted_in_a_search(family, X, y)
    model = search.best_estimator_[-1]
    y_pred, dispersion = search.predict(X), model.dispersion_[0]
    if family == "negative_binomial":
        r = 1.0 / dispersion
        expected = stats.nbinom.logpmf(y, r, r / (r + y_pred)).mean()
    else:
        expected = stats.norm.logpdf(y, y_pred, np.sqrt(dispersion)).mean()
    assert_allclose(SCORERS["log_likelihood"](search, X, y), expected, rtol=1e-8)
    assert_allclose(SCORERS["log_likelihood"](search, X, y), search.best_estimator_.score(X, y),
                    rtol=1e-12)
    weights = rng.uniform(0.0, 2.0, size=400)
    assert_allclose(SCORERS["log_likelihood"](search, X, y, sample_weight=weights),
                    search.best_estimator_.score(X, y, sample_weight=weights), rtol=1e-12)
    per_sample = model.log_likelihood(search.best_estimator_[0].transform(X), y)
    assert_allclose(
        make_encoding_scorer("log_likelihood", aggregate="sum")(search, X, y, weights),
        weights @ per_sample,
        rtol=1e-12,
    )


def test_log_likelihood_scorer_is_finite_where_a_predicted_probability_rounds_to_one():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (rng.uniform(size=300) < 1.0 / (1.0 + np.exp(-2.0 * X[:, 0]))).astype(float)
    model = PoissonGLM(family="bernoulli").fit(X, y)
    # a sample far out along the filter, yet silent: its predicted spike
    # probability is 1.0 in floating point, its log-likelihood -eta
    direction = np.ravel(model.coef_)
    X_far = np.vstack([50.0 * direction / (direction @ direction), X])
    y_far = np.r_[0.0, y]
    assert model.predict(X_far)[0] == 1.0
    score = SCORERS["log_likelihood"](model, X_far, y_far)
    assert np.isfinite(score)
    assert_allclose(score, model.score(X_far, y_far), rtol=1e-12)
