"""missing_responses="mask": NaN responses (neurons of other sessions) drop out of fit and score."""

import numpy as np
import pytest
from scipy.stats import poisson

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM


def _two_sessions(n=400, n_neurons=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3))
    coef = rng.normal(scale=0.5, size=(3, n_neurons))
    y = rng.poisson(np.exp(X @ coef)).astype(float)
    y_nan = y.copy()
    half = n_neurons // 2
    y_nan[: n // 2, half:] = np.nan  # session 1 records the first neurons
    y_nan[n // 2 :, :half] = np.nan  # session 2 the others
    return X, y, y_nan


def test_nan_is_an_error_by_default():
    X, _, y_nan = _two_sessions()
    for model in (PoissonGLM(), LNModel(n_init=1), CNNEncoder(max_epochs=1)):
        with pytest.raises(ValueError, match="NaN"):
            model.fit(X, y_nan)


def test_masked_glm_equals_one_fit_per_neuron_on_its_observed_rows():
    X, _, y_nan = _two_sessions()
    model = PoissonGLM(alpha=0.0, tol=1e-10, missing_responses="mask").fit(X, y_nan)
    for j in range(y_nan.shape[1]):
        rows = ~np.isnan(y_nan[:, j])
        reference = PoissonGLM(alpha=0.0, tol=1e-10).fit(X[rows], y_nan[rows, j])
        np.testing.assert_allclose(model.coef_[j], reference.coef_, atol=1e-6)
        np.testing.assert_allclose(model.intercept_[j], reference.intercept_, atol=1e-6)
        assert model.mean_response_[j] == pytest.approx(np.mean(y_nan[rows, j]))


@pytest.mark.parametrize("make", [lambda: PoissonGLM(alpha=0.1), lambda: LNModel(n_init=2)])
def test_masking_a_neuron_equals_zero_weights_on_its_missing_rows(make):
    # per-neuron normalisation by the observed count = sample weights of mean 1
    X, y, _ = _two_sessions(n_neurons=1)
    missing = np.zeros(len(y), bool)
    missing[::3] = True
    y_nan = y.copy()
    y_nan[missing] = np.nan
    masked = make().set_params(missing_responses="mask", random_state=0).fit(X, y_nan[:, 0])
    weighted = make().set_params(random_state=0).fit(
        X, y[:, 0], sample_weight=(~missing).astype(float)
    )
    np.testing.assert_allclose(masked.predict(X), weighted.predict(X), rtol=2e-3)


def test_score_and_log_likelihood_skip_missing_entries():
    X, _, y_nan = _two_sessions()
    model = PoissonGLM(missing_responses="mask").fit(X, y_nan)
    per_neuron = model.log_likelihood(X, y_nan, per_neuron=True)
    missing = np.isnan(y_nan)
    np.testing.assert_array_equal(np.isnan(per_neuron), missing)
    by_hand = poisson.logpmf(y_nan[~missing], model.predict(X)[~missing])
    np.testing.assert_allclose(per_neuron[~missing], by_hand, rtol=1e-8)
    assert model.score(X, y_nan) == pytest.approx(np.mean(by_hand))
    np.testing.assert_allclose(model.log_likelihood(X, y_nan), np.nansum(per_neuron, axis=1))


def test_a_neuron_never_observed_is_named():
    X, _, y_nan = _two_sessions()
    y_nan[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"columns \[2\]"):
        PoissonGLM(missing_responses="mask").fit(X, y_nan)


def test_gaussian_dispersion_from_observed_entries():
    rng = np.random.RandomState(3)
    X = rng.normal(size=(300, 2))
    y = X @ [[1.0, -1.0], [0.5, 2.0]] + rng.normal(scale=[0.5, 2.0], size=(300, 2))
    y[:150, 0] = np.nan
    model = PoissonGLM(alpha=0.0, family="gaussian", missing_responses="mask").fit(X, y)
    for j in range(2):
        rows = ~np.isnan(y[:, j])
        reference = PoissonGLM(alpha=0.0, family="gaussian").fit(X[rows], y[rows, j])
        assert model.dispersion_[j] == pytest.approx(reference.dispersion_[0], rel=1e-5)


def _edge_cells(n, positions, rng):
    """Poisson cells that rectify one shared edge filter at their own positions."""
    X = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    kernel = np.zeros((3, 3))
    kernel[:, 0], kernel[:, 2] = -1.0, 1.0
    drive = np.stack(
        [
            np.maximum((X[:, 0, r - 1 : r + 2, c - 1 : c + 2] * kernel).sum((1, 2)), 0)
            for r, c in positions
        ],
        axis=1,
    )
    rate = np.exp(-0.5 + 0.8 * drive)
    return X, rate, rng.poisson(rate).astype(np.float32)


def test_cnn_on_two_sessions_with_disjoint_neurons_predicts_every_neuron():
    """Shared core, per-neuron readouts: each session's neurons are predicted on held-out data."""
    rng = np.random.RandomState(0)
    positions = [(rng.randint(2, 6), rng.randint(2, 6)) for _ in range(8)]
    X, _, y = _edge_cells(900, positions, rng)  # each session sees different stimuli
    y[:450, 4:] = np.nan  # session 1: neurons 0-3
    y[450:, :4] = np.nan  # session 2: neurons 4-7
    model = CNNEncoder(
        n_layers=1, channels=4, kernel_size=3, padding="same", readout="factorized",
        batch_norm=False, gamma_input=0.0, lr=1e-2, batch_size=64, max_epochs=40,
        patience=15, missing_responses="mask", device="cpu", random_state=0,
    ).fit(X, y)
    assert np.all(np.isfinite(model.history_[:, "valid_loss"]))
    X_test, rate_test, _ = _edge_cells(400, positions, rng)
    prediction = model.predict(X_test)
    correlation = [np.corrcoef(prediction[:, j], rate_test[:, j])[0, 1] for j in range(8)]
    # chance level for 400 samples is about +-0.1
    assert min(correlation) > 0.25, correlation


@pytest.mark.parametrize("name", ["log_likelihood", "bits_per_spike", "pseudo_r2", "correlation"])
def test_metrics_with_missing_mask_score_each_neuron_on_its_observed_samples(name):
    from sklearn_cnnenc.metrics import METRICS

    X, _, y_nan = _two_sessions()
    prediction = PoissonGLM().fit(X, np.nan_to_num(y_nan)).predict(X)
    metric = METRICS[name].function
    with pytest.raises(ValueError, match="NaN"):
        metric(y_nan, prediction)
    values = metric(y_nan, prediction, missing="mask", multioutput="raw_values")
    for j in range(y_nan.shape[1]):
        rows = ~np.isnan(y_nan[:, j])
        assert values[j] == pytest.approx(metric(y_nan[rows, j], prediction[rows, j]))
    assert metric(y_nan, prediction, missing="mask") == pytest.approx(np.mean(values))


def test_scorers_mask_for_a_masked_model_inside_grid_search():
    from sklearn.model_selection import GridSearchCV, KFold

    from sklearn_cnnenc.metrics import correlation, get_scorer

    X, _, y_nan = _two_sessions()
    model = PoissonGLM(missing_responses="mask").fit(X, y_nan)
    expected = correlation(y_nan, model.predict(X), missing="mask")
    assert get_scorer("correlation")(model, X, y_nan) == pytest.approx(expected)
    own = get_scorer("log_likelihood")(model, X, y_nan)
    per_neuron = np.nanmean(model.log_likelihood(X, y_nan, per_neuron=True), axis=0)
    assert own == pytest.approx(np.mean(per_neuron))
    scoring = {name: get_scorer(name) for name in ("correlation", "bits_per_spike")}
    search = GridSearchCV(
        PoissonGLM(missing_responses="mask"),
        {"alpha": [0.1, 1.0]},
        cv=KFold(2, shuffle=True, random_state=0),
        scoring=scoring,
        refit="correlation",
    ).fit(X, y_nan)
    assert np.all(np.isfinite(search.cv_results_["mean_test_bits_per_spike"]))


def test_compare_models_scores_masked_models_on_observed_entries():
    from sklearn.model_selection import KFold

    from sklearn_cnnenc.model_selection import compare_models

    X, _, y_nan = _two_sessions()
    result = compare_models(
        {"glm": PoissonGLM(missing_responses="mask")}, X, y_nan,
        cv=KFold(3, shuffle=True, random_state=0), verbose=False,
    )
    for metric in result.metrics:
        assert np.all(np.isfinite(result.per_neuron(metric)["glm"])), metric


def test_decoder_leaves_missing_neurons_out_of_the_likelihood():
    from sklearn_cnnenc.decoding import BayesianDecoder

    rng = np.random.RandomState(6)
    labels = rng.randint(0, 3, size=300)
    rates = np.array([[1.0, 4.0, 2.0, 0.5], [3.0, 1.0, 0.5, 2.0], [0.5, 2.0, 4.0, 1.0]])
    X = rng.poisson(rates[labels]).astype(float)
    X[:150, :2] = np.nan  # session 1 recorded neurons 2-3, session 2 neurons 0-1
    X[150:, 2:] = np.nan
    decoder = BayesianDecoder(PoissonGLM(alpha=0.0, missing_responses="mask")).fit(X, labels)
    with pytest.raises(ValueError, match="NaN"):
        BayesianDecoder(PoissonGLM(alpha=0.0)).fit(X, labels)
    log_likelihood = decoder.log_likelihood(X)
    observed = ~np.isnan(X)
    by_hand = np.stack([
        np.where(observed, poisson.logpmf(np.nan_to_num(X), mean), 0.0).sum(axis=1)
        for mean in decoder.candidate_mean_
    ], axis=1)
    np.testing.assert_allclose(log_likelihood, by_hand, rtol=1e-10)
    assert decoder.score(X, labels) > 0.6  # chance is 1/3


def _session_decoders(keep):
    """Decoders of masked encoders on all four neurons and on the neurons ``keep``."""
    from sklearn_cnnenc.decoding import BayesianDecoder

    rng = np.random.RandomState(7)
    labels = rng.randint(0, 3, size=400)
    rates = np.array([[1.0, 4.0, 2.0, 0.5], [3.0, 1.0, 0.5, 2.0], [0.5, 2.0, 4.0, 1.0]])
    X = rng.poisson(rates[labels]).astype(float)
    X[:200, 0] = np.nan  # neuron 0 was recorded in the second session only

    def decoder():
        return BayesianDecoder(PoissonGLM(alpha=0.0, tol=1e-10, missing_responses="mask"))

    full, reduced = decoder().fit(X, labels), decoder().fit(X[:, keep], labels)
    responses = rng.poisson(rates[rng.randint(0, 3, size=60)]).astype(float)
    return full, reduced, responses


def test_decoding_with_a_missing_neuron_equals_decoding_without_that_neuron():
    k, keep = 2, [0, 1, 3]
    full, reduced, responses = _session_decoders(keep)
    # the encoders agree on the neurons they share (each neuron is its own problem)
    np.testing.assert_allclose(full.candidate_mean_[:, keep], reduced.candidate_mean_,
                               rtol=1e-7)
    with_nan = responses.copy()
    dropped = np.arange(len(responses)) % 2 == 0
    with_nan[dropped, k] = np.nan  # neuron k not recorded in these samples
    log_posterior = full.predict_log_proba(with_nan)
    np.testing.assert_allclose(
        log_posterior[dropped], reduced.predict_log_proba(responses[dropped][:, keep]),
        rtol=1e-6, atol=1e-9,
    )
    np.testing.assert_allclose(
        log_posterior[~dropped], full.predict_log_proba(responses[~dropped]), rtol=1e-12
    )
    np.testing.assert_allclose(full.predict_proba(with_nan), np.exp(log_posterior))
    np.testing.assert_array_equal(full.predict(with_nan),
                                  full.classes_[np.argmax(log_posterior, axis=1)])


def test_decoding_nan_with_an_encoder_that_does_not_mask_is_a_clear_error():
    from sklearn_cnnenc.decoding import BayesianDecoder

    full, _, responses = _session_decoders([0, 1, 3])
    observed = ~np.isnan(responses).any(axis=1)
    decoder = BayesianDecoder(PoissonGLM(alpha=0.0)).fit(responses[observed], np.arange(
        observed.sum()) % 3)
    with_nan = responses.copy()
    with_nan[0, 1] = np.nan
    for method in (decoder.predict, decoder.predict_proba, decoder.predict_log_proba):
        with pytest.raises(ValueError, match="NaN.*missing_responses='mask'"):
            method(with_nan)
    assert np.isfinite(full.predict_log_proba(with_nan)).all()


def test_reconstruct_with_a_missing_neuron_equals_reconstruct_without_it():
    from sklearn_cnnenc.datasets import make_glm_data
    from sklearn_cnnenc.decoding import reconstruct

    data = make_glm_data(n_samples=1500, n_features=3, n_neurons=6, random_state=2)
    y = data.y.astype(float)
    y[:500, 4] = np.nan
    k, keep = 4, [0, 1, 2, 3, 5]
    full = PoissonGLM(alpha=1e-3, tol=1e-10, missing_responses="mask").fit(data.X, y)
    reduced = PoissonGLM(alpha=1e-3, tol=1e-10).fit(data.X, data.y[:, keep])
    np.testing.assert_allclose(full.coef_[keep], reduced.coef_, atol=1e-7)
    targets = data.y[-4:].astype(float)
    with_nan = targets.copy()
    with_nan[:2, k] = np.nan
    x_hat, log_posterior = reconstruct(full, with_nan)
    x_reduced, log_reduced = reconstruct(reduced, targets[:2][:, keep])
    np.testing.assert_allclose(x_hat[:2], x_reduced, atol=1e-5)
    np.testing.assert_allclose(log_posterior[:2], log_reduced, rtol=1e-7)
    x_full, log_full = reconstruct(full, targets[2:])
    np.testing.assert_allclose(x_hat[2:], x_full, atol=1e-8)
    np.testing.assert_allclose(log_posterior[2:], log_full, rtol=1e-10)
    with pytest.raises(ValueError, match="NaN.*missing_responses='mask'"):
        reconstruct(reduced, with_nan[:, [0, 1, 2, 4, 5]])  # an encoder that does not mask
