"""Repeated-trial metrics: oracle correlation (as Sensorium computes it),
correlation to the repeat average, FEVE, their scorers and compare_models(repeats=...)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.model_selection import KFold

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.metrics import (
    METRICS,
    SCORERS,
    correlation_to_average,
    feve,
    get_scorer,
    make_encoding_scorer,
    oracle_correlation,
)
from sklearn_cnnenc.model_selection import compare_models


def _repeats(n_repeats=5, n_stimuli=40, n_neurons=3, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.gamma(2.0, 1.0, (n_stimuli, n_neurons))
    return rng.poisson(signal, (n_repeats, n_stimuli, n_neurons)).astype(float), signal


def test_oracle_correlation_equals_a_hand_leave_one_out_loop():
    responses, _ = _repeats()
    n_repeats, n_stimuli, n_neurons = responses.shape
    expected = []
    for j in range(n_neurons):
        trials, oracles = [], []
        for i in range(n_stimuli):
            for k in range(n_repeats):
                others = [responses[m, i, j] for m in range(n_repeats) if m != k]
                trials.append(responses[k, i, j])
                oracles.append(sum(others) / len(others))
        expected.append(np.corrcoef(trials, oracles)[0, 1])
    assert_allclose(oracle_correlation(responses, multioutput="raw_values"), expected,
                    rtol=1e-12)
    assert oracle_correlation(responses) == pytest.approx(np.mean(expected), rel=1e-12)
    # sensorium's layout (n_stimuli, n_repeats, n_neurons) and its vectorised formula
    outputs = responses.transpose(1, 0, 2)
    r = n_repeats
    sensorium = (outputs.mean(axis=1, keepdims=True) - outputs / r) * r / (r - 1)
    assert_allclose(sensorium.transpose(1, 0, 2),
                    (responses.sum(0) - responses) / (r - 1), rtol=1e-12)


def test_oracle_correlation_edge_cases():
    responses, _ = _repeats()
    with pytest.raises(ValueError, match="At least 2 repeats"):
        oracle_correlation(responses[:1])
    constant = responses.copy()
    constant[:, :, 1] = 2.0
    with pytest.warns(UndefinedMetricWarning, match="oracle_correlation is undefined for 1"):
        values = oracle_correlation(constant, multioutput="raw_values")
    assert np.isnan(values[1]) and np.all(np.isfinite(values[[0, 2]]))
    # a single neuron as (n_repeats, n_stimuli)
    assert oracle_correlation(responses[:, :, 0]) == pytest.approx(
        oracle_correlation(responses, multioutput="raw_values")[0])
    with pytest.raises(ValueError, match="multioutput"):
        oracle_correlation(responses, multioutput="mean")
    with pytest.raises(ValueError, match="NaN"):
        oracle_correlation(np.where(responses > 3, np.nan, responses))


def test_correlation_to_average_equals_np_corrcoef():
    responses, signal = _repeats()
    y_pred = signal + np.random.default_rng(1).normal(0, 0.3, signal.shape)
    average = responses.mean(axis=0)
    expected = [np.corrcoef(average[:, j], y_pred[:, j])[0, 1] for j in range(3)]
    assert_allclose(correlation_to_average(responses, y_pred, multioutput="raw_values"),
                    expected, rtol=1e-12)
    # one repeat is allowed: the correlation with that repeat
    assert correlation_to_average(responses[:1, :, 0], y_pred[:, 0]) == pytest.approx(
        np.corrcoef(responses[0, :, 0], y_pred[:, 0])[0, 1])
    with pytest.raises(ValueError, match="y_pred must have shape"):
        correlation_to_average(responses, y_pred[:-1])
    with pytest.warns(UndefinedMetricWarning, match="correlation_to_average"):
        assert np.isnan(correlation_to_average(responses, np.ones_like(y_pred)))


def test_feve_on_the_repeat_layout_per_neuron():
    responses, signal = _repeats(n_repeats=20, n_stimuli=60)
    values = feve(responses, signal, multioutput="raw_values")
    assert values.shape == (3,)
    assert_allclose(values, 1.0, atol=0.15)  # the true mean explains the explainable variance
    for j in range(3):
        assert values[j] == pytest.approx(feve(responses[:, :, j], signal[:, j]))


def _glm_with_repeats(seed=0):
    rng = np.random.default_rng(seed)
    coef = np.array([[0.6, -0.4, 0.2], [-0.3, 0.5, 0.4]])
    X = rng.standard_normal((600, 3))
    y = rng.poisson(np.exp(0.3 + X @ coef.T)).astype(float)
    X_stimuli = rng.standard_normal((30, 3))
    responses = rng.poisson(np.exp(0.3 + X_stimuli @ coef.T), (8, 30, 2)).astype(float)
    return X, y, X_stimuli, responses


def test_repeat_scorers_score_the_prediction_of_the_stimuli():
    X, y, X_stimuli, responses = _glm_with_repeats()
    model = PoissonGLM(alpha=1e-3).fit(X, y)
    prediction = model.predict(X_stimuli)
    assert make_encoding_scorer("feve")(model, X_stimuli, responses) == pytest.approx(
        feve(responses, prediction))
    assert get_scorer("correlation_to_average")(model, X_stimuli, responses) == pytest.approx(
        correlation_to_average(responses, prediction))
    assert get_scorer("oracle_correlation")(None, X_stimuli, responses) == pytest.approx(
        oracle_correlation(responses))
    assert {name for name, spec in METRICS.items() if spec.takes_repeats} >= {
        "oracle_correlation", "correlation_to_average", "feve"}
    assert "feve" not in SCORERS  # SCORERS stays usable as scoring= of cross-validation
    with pytest.raises(ValueError, match="X_stimuli, responses"):
        make_encoding_scorer("feve")(model, X, y[:, 0])
    with pytest.raises(ValueError, match="no sample_weight"):
        make_encoding_scorer("feve")(model, X_stimuli, responses, sample_weight=np.ones(30))


def test_compare_models_reports_repeat_metrics_per_model():
    X, y, X_stimuli, responses = _glm_with_repeats()
    models = {"glm": PoissonGLM(alpha=1e-3), "strong": PoissonGLM(alpha=100.0)}
    results = compare_models(models, X, y, cv=KFold(3), verbose=False,
                             repeats=(X_stimuli, responses))
    assert results.metrics == ["log_likelihood", "bits_per_spike", "pseudo_r2", "correlation",
                               "oracle_correlation", "correlation_to_average", "feve"]
    assert_allclose(results.per_neuron("oracle_correlation")["glm"],
                    oracle_correlation(responses, multioutput="raw_values"))
    # fold by fold, each model's prediction of the repeated stimuli
    for fold, (train, _) in enumerate(KFold(3).split(X)):
        model = PoissonGLM(alpha=1e-3).fit(X[train], y[train])
        expected = feve(responses, model.predict(X_stimuli), multioutput="raw_values")
        recorded = [r["value"] for r in results.scores
                    if r["model"] == "glm" and r["fold"] == fold and r["metric"] == "feve"]
        assert_allclose(recorded, expected, rtol=1e-6)
    summary = {row["model"]: row for row in results.summary()}
    assert summary["glm"]["feve"] > summary["strong"]["feve"]
    # chosen metrics; a repeat metric without repeats is a clear error
    results = compare_models(models, X, y, cv=KFold(3), verbose=False,
                             scoring=["correlation", "feve"], repeats=(X_stimuli, responses))
    assert results.metrics == ["correlation", "feve"]
    with pytest.raises(ValueError, match="pass repeats="):
        compare_models(models, X, y, cv=KFold(3), verbose=False, scoring=["feve"])
    with pytest.raises(ValueError, match="n_neurons = 2"):
        compare_models(models, X, y, verbose=False, repeats=(X_stimuli, responses[..., :1]))


def test_per_trial_predictions_equal_hand_formulas():
    from sklearn_cnnenc.metrics import fev

    responses, signal = _repeats(n_repeats=4, n_stimuli=30)
    rng = np.random.default_rng(2)
    trials = signal + rng.normal(0, 0.5, responses.shape)  # e.g. each trial's behaviour
    average = responses.mean(axis=0)
    expected = [np.corrcoef(average[:, j], trials.mean(axis=0)[:, j])[0, 1] for j in range(3)]
    assert_allclose(correlation_to_average(responses, trials, multioutput="raw_values"),
                    expected, rtol=1e-12)
    flat = responses.reshape(-1, 3)
    mse = ((responses - trials) ** 2).reshape(-1, 3).mean(axis=0)
    noise = responses.var(axis=0, ddof=1).mean(axis=0)
    assert_allclose(fev(responses, trials, multioutput="raw_values"),
                    1 - mse / flat.var(axis=0), rtol=1e-12)
    assert_allclose(feve(responses, trials, multioutput="raw_values", significance=None),
                    1 - (mse - noise) / (flat.var(axis=0) - noise), rtol=1e-12)
    # the same prediction on every repeat is the per-stimulus prediction
    same = np.broadcast_to(signal, responses.shape)
    for metric in (correlation_to_average, fev, feve):
        assert_allclose(metric(responses, same, multioutput="raw_values"),
                        metric(responses, signal, multioutput="raw_values"), rtol=1e-12)
    # one neuron: (n_repeats, n_stimuli) responses, per-trial predictions alike
    assert fev(responses[..., 0], trials[..., 0]) == pytest.approx(
        fev(responses[..., :1], trials[..., :1]))
    with pytest.raises(ValueError, match=r"or \(4, 30, 3\) \(one per trial\)"):
        fev(responses, trials[:3])
