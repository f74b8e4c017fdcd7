"""BayesianDecoder and reconstruct, against hand computations, closed forms and simulations."""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from scipy import optimize, stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, SplineTransformer

import sklearn_cnnenc
from sklearn_cnnenc import BayesianDecoder, PoissonGLM
from sklearn_cnnenc._decoding_likelihood import CandidateLikelihood
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.decoding import DECODING_SCORERS, make_decoding_scorer, reconstruct
from sklearn_cnnenc.families import Gaussian, Poisson, ResponseDistribution
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.nn import EncodingModule

# --------------------------------------------------------------------- helpers


def _orientation_population(n_trials, n_neurons, n_orientations=12, seed=0):
    """Von Mises orientation-tuned Poisson neurons: an exact GLM on (cos 2θ, sin 2θ)."""
    rng = np.random.RandomState(seed)
    angles = np.linspace(0.0, np.pi, n_orientations, endpoint=False)
    stimuli = np.column_stack([np.cos(2 * angles), np.sin(2 * angles)])
    preferred = np.linspace(0.0, np.pi, n_neurons, endpoint=False) + rng.uniform(0, 0.1)
    labels = rng.randint(n_orientations, size=n_trials)
    rates = 1.5 * np.exp(np.cos(2 * (angles[labels, None] - preferred)) - 1.0)
    return stimuli, labels, rng.poisson(rates).astype(float)


def _fitted_encoder(family, n_neurons=6, n_features=3, seed=0):
    data = make_glm_data(
        n_samples=600, n_features=n_features, n_neurons=n_neurons, family=family,
        modulation=1.0, random_state=seed,
    )
    return PoissonGLM(alpha=1e-3, family=family).fit(data.X, data.y)


def _scipy_log_likelihood(encoder, stimuli, Y):
    """log p(y_i | s_k) summed over neurons, neuron by neuron with scipy.stats."""
    mean = encoder.predict(stimuli)  # (K, N)
    y = Y[:, None, :]
    family = encoder.family
    if family == "poisson":
        log_p = stats.poisson.logpmf(y, mean)
    elif family == "gaussian":
        log_p = stats.norm.logpdf(y, mean, np.sqrt(encoder.dispersion_))
    elif family == "bernoulli":
        log_p = stats.bernoulli.logpmf(y, mean)
    else:
        r = 1.0 / encoder.dispersion_
        log_p = stats.nbinom.logpmf(y, r, r / (r + mean))
    return log_p.sum(axis=2)


# ------------------------------------------------------------ the posterior


@pytest.mark.parametrize("family", ["poisson", "gaussian", "bernoulli", "negative_binomial"])
def test_posterior_equals_scipy_likelihood_times_prior_normalised(family):
    encoder = _fitted_encoder(family)
    rng = np.random.RandomState(1)
    stimuli = rng.standard_normal((5, 3))
    prior = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    Y = encoder.sample(stimuli[rng.randint(5, size=40)], random_state=2)
    decoder = BayesianDecoder(encoder, stimuli, prior, prefit=True).fit(Y, np.arange(40) % 5)

    log_likelihood = _scipy_log_likelihood(encoder, stimuli, Y)
    joint = np.exp(log_likelihood) * prior
    expected = joint / joint.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(decoder.log_likelihood(Y), log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(decoder.predict_proba(Y), expected, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(decoder.predict_proba(Y).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(decoder.predict(Y), expected.argmax(axis=1))


def test_families_without_a_candidate_form_fall_back_to_broadcasting_with_a_warning():
    class CustomPoisson(Poisson):  # inherits the GEMM form
        name = "custom_poisson"

    class NoFormPoisson(Poisson):  # declines it
        name = "no_form_poisson"

        def candidate_terms(self, eta, link, dispersion=None):
            return None

    rng = np.random.RandomState(0)
    eta = rng.normal(0.0, 1.0, (7, 4))
    Y = rng.poisson(2.0, (30, 4)).astype(float)
    gemm = CandidateLikelihood(ResponseDistribution(Poisson(), get_link("exp"), eta))
    subclass = CandidateLikelihood(ResponseDistribution(CustomPoisson(), get_link("exp"), eta))
    with pytest.warns(UserWarning, match="defines no candidate_terms"):
        broadcast = CandidateLikelihood(
            ResponseDistribution(NoFormPoisson(), get_link("exp"), eta)
        )
    assert gemm._gemm and subclass._gemm and not broadcast._gemm
    np.testing.assert_allclose(subclass(Y), gemm(Y), rtol=1e-12)
    np.testing.assert_allclose(broadcast(Y), gemm(Y), rtol=1e-12)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial", "custom"])
def test_response_term_is_computed_once_per_call_and_the_posterior_is_unchanged(
    family, monkeypatch
):
    """c(y) (log y!) once per call, not per chunk, with the brute-force posterior."""
    encoder = _fitted_encoder("poisson" if family == "custom" else family)
    if family == "custom":
        class CustomPoisson(Poisson):  # no GEMM form: the broadcasting path
            name = "custom_no_form"

            def candidate_terms(self, eta, link, dispersion=None):
                return None

        encoder.family_ = CustomPoisson()
    rng = np.random.RandomState(1)
    stimuli = rng.standard_normal((5, 3))
    Y = encoder.sample(stimuli[rng.randint(5, size=60)], random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the custom family's slower path
        decoder = BayesianDecoder(encoder, stimuli, "uniform", prefit=True,
                                  integrate_bins=3).fit(Y, np.arange(60) % 5)
    assert decoder._likelihood._gemm == (family != "custom")
    per_bin = _scipy_log_likelihood(encoder, stimuli, Y)
    expected = np.array([per_bin[max(0, t - 2) : t + 1].sum(axis=0) for t in range(len(Y))])
    posterior = np.exp(expected - expected.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)

    calls = []
    family_type = type(encoder.family_)
    original_normalizer = family_type.log_normalizer
    original_term = family_type.response_term

    def counted_normalizer(self, y):
        calls.append(len(y))
        return original_normalizer(self, y)

    def counted_term(self, Y, dispersion=None):
        calls.append(len(Y))
        return original_term(self, Y, dispersion)

    if family == "custom":
        monkeypatch.setattr(family_type, "log_normalizer", counted_normalizer)
    else:
        monkeypatch.setattr(family_type, "response_term", counted_term)
    with sklearn.config_context(working_memory=0.001):  # chunks of a few rows
        assert decoder._likelihood.chunk_rows(len(Y)) < 10
        log_likelihood = decoder.log_likelihood(Y)
        assert calls == [len(Y)]
        proba = decoder.predict_proba(Y)
    np.testing.assert_allclose(log_likelihood, expected, rtol=1e-10)
    np.testing.assert_allclose(proba, posterior, rtol=1e-9, atol=1e-300)


def test_strong_prior_moves_the_map_as_bayes_rule_says():
    stimuli, labels, Y = _orientation_population(600, 10, n_orientations=2)
    uniform = BayesianDecoder(PoissonGLM(alpha=1e-3), stimuli, "uniform").fit(Y, labels)
    log_likelihood = uniform.log_likelihood(Y)
    evidence = log_likelihood[:, 1] - log_likelihood[:, 0]  # log Bayes factor for class 1
    weak = np.argmin(np.abs(evidence - 2.0))  # a response favouring class 1 by e^2
    assert uniform.predict(Y[[weak]])[0] == 1

    # prior odds of e^-3 for class 1 must overturn a likelihood ratio of about e^2
    prior = np.array([1.0, np.exp(-3.0)]) / (1.0 + np.exp(-3.0))
    biased = BayesianDecoder(uniform.encoder_, stimuli, prior, prefit=True).fit(Y, labels)
    assert biased.predict(Y[[weak]])[0] == 0
    log_posterior = biased.predict_log_proba(Y)
    np.testing.assert_allclose(
        log_posterior[:, 1] - log_posterior[:, 0], evidence - 3.0, rtol=1e-10, atol=1e-10
    )


def test_prior_defaults_to_training_class_frequencies():
    stimuli, labels, Y = _orientation_population(300, 5, n_orientations=4)
    labels = np.where(labels == 3, 2, labels)  # class 3 never seen
    decoder = BayesianDecoder(PoissonGLM(), stimuli).fit(Y, labels)
    np.testing.assert_allclose(decoder.class_prior_, np.bincount(labels, minlength=4) / 300)
    assert np.all(decoder.predict_proba(Y)[:, 3] == 0.0)
    assert np.all(np.isneginf(decoder.predict_log_proba(Y)[:, 3]))


def test_accuracy_grows_with_population_size_and_posterior_is_calibrated():
    stimuli, labels, Y = _orientation_population(6000, 32)
    train, test = slice(0, 3000), slice(3000, None)
    accuracies, confidences = [], []
    for n_neurons in (4, 8, 16, 32):
        decoder = BayesianDecoder(PoissonGLM(alpha=1e-4), stimuli, "uniform")
        decoder.fit(Y[train, :n_neurons], labels[train])
        accuracies.append(decoder.score(Y[test, :n_neurons], labels[test]))
        confidences.append(decoder.predict_proba(Y[test, :n_neurons]).max(axis=1).mean())
    assert np.all(np.diff(accuracies) > 0.02), accuracies
    assert accuracies[0] > 2 / 12  # well above chance
    # calibration: the mean probability given to the MAP class is its hit rate
    # (3000 test trials: the standard error of an accuracy is below 0.01)
    np.testing.assert_allclose(confidences, accuracies, atol=0.03)


def test_integrate_bins_sums_log_likelihoods_over_the_trailing_window():
    stimuli, labels, Y = _orientation_population(200, 6)
    single = BayesianDecoder(PoissonGLM(), stimuli, "uniform").fit(Y, labels)
    window = BayesianDecoder(single.encoder_, stimuli, "uniform", prefit=True,
                             integrate_bins=4).fit(Y, labels)
    per_bin = single.log_likelihood(Y)
    expected = np.array([per_bin[max(0, t - 3) : t + 1].sum(axis=0) for t in range(len(Y))])
    np.testing.assert_allclose(window.log_likelihood(Y), expected, rtol=1e-10)
    # chunk boundaries (tiny working memory: a few rows per chunk) change nothing
    with sklearn.config_context(working_memory=0.001):
        np.testing.assert_allclose(window.log_likelihood(Y), expected, rtol=1e-10)
        chunked_posterior = window.predict_proba(Y)
    np.testing.assert_allclose(chunked_posterior, window.predict_proba(Y), rtol=1e-12)


def _place_cells(n_bins, n_cells=20, seed=0):
    """Gaussian place fields on a unit track; the animal runs back and forth."""
    rng = np.random.RandomState(seed)
    position = 0.5 - 0.5 * np.cos(np.linspace(0, 8 * np.pi, n_bins))
    centres = np.linspace(0.0, 1.0, n_cells)
    rates = 0.02 + 0.6 * np.exp(-((position[:, None] - centres) ** 2) / (2 * 0.08**2))
    return position, rng.poisson(rates).astype(float)


def test_place_cell_decoding_with_a_spline_pipeline_and_integrated_bins():
    position, Y = _place_cells(6000)
    grid = np.linspace(0.0, 1.0, 41)
    labels = np.abs(position[:, None] - grid).argmin(axis=1)
    encoder = make_pipeline(SplineTransformer(n_knots=10), PoissonGLM(alpha=1e-4))
    train, test = slice(0, 3000), slice(3000, None)
    errors = {}
    for window in (1, 8):
        decoder = BayesianDecoder(encoder, grid, "uniform", integrate_bins=window)
        decoder.fit(Y[train], labels[train])
        decoded = decoder.predict_stimulus(Y[test], estimate="mean")
        assert decoded.shape == (3000,)
        errors[window] = np.median(np.abs(decoded - position[test]))
    # the candidate tuning curves are the pipeline's predictions on the grid
    expected_mean = decoder.encoder_.predict(grid[:, None])
    np.testing.assert_allclose(decoder.candidate_mean_, expected_mean, rtol=1e-10)
    assert errors[8] < 0.5 * errors[1], errors
    assert errors[8] < 0.05, errors  # 5% of the track


def test_predict_stimulus_is_the_posterior_mean_or_the_map_candidate():
    stimuli, labels, Y = _orientation_population(100, 6)
    decoder = BayesianDecoder(PoissonGLM(), stimuli).fit(Y, labels)
    proba = decoder.predict_proba(Y)
    np.testing.assert_allclose(decoder.predict_stimulus(Y), proba @ stimuli, rtol=1e-12)
    np.testing.assert_array_equal(
        decoder.predict_stimulus(Y, estimate="map"), stimuli[decoder.predict(Y)]
    )


def test_default_candidates_are_one_hot_classes_with_any_labels():
    stimuli, labels, Y = _orientation_population(400, 8, n_orientations=3)
    names = np.array(["horizontal", "oblique", "vertical"])[labels]
    decoder = BayesianDecoder(PoissonGLM(alpha=1e-8, tol=1e-10)).fit(Y, names)
    np.testing.assert_array_equal(decoder.classes_, ["horizontal", "oblique", "vertical"])
    np.testing.assert_array_equal(decoder.stimuli_, np.eye(3))
    # one-hot inputs: the encoder learns the mean response of each class
    class_means = np.array([Y[labels == k].mean(axis=0) for k in range(3)])
    np.testing.assert_allclose(decoder.candidate_mean_, class_means, rtol=1e-4)
    assert decoder.score(Y, names) > 0.8


# ------------------------------------------------- sklearn model selection


def test_cross_val_score_refits_the_encoder_in_every_fold():
    stimuli, labels, Y = _orientation_population(600, 8)
    decoder = BayesianDecoder(PoissonGLM(alpha=1e-3), stimuli, "uniform")
    cv = KFold(3)
    scores = cross_val_score(decoder, Y, labels, cv=cv)
    by_hand = [
        sklearn.base.clone(decoder).fit(Y[train], labels[train]).score(Y[test], labels[test])
        for train, test in cv.split(Y)
    ]
    np.testing.assert_allclose(scores, by_hand)
    assert scores.min() > 0.2  # chance is 1/12


def test_grid_search_over_the_encoder_penalty():
    stimuli, labels, Y = _orientation_population(600, 8)
    search = GridSearchCV(
        BayesianDecoder(PoissonGLM(), stimuli, "uniform"),
        {"encoder__alpha": [1e-4, 1e3]},
        scoring=DECODING_SCORERS["log_posterior"],
        cv=3,
    ).fit(Y, labels)
    # alpha=1e3 flattens every tuning curve: the posterior falls back to the prior
    assert search.best_params_ == {"encoder__alpha": 1e-4}
    worst = search.cv_results_["mean_test_score"][1]
    np.testing.assert_allclose(worst, np.log(1 / 12), atol=0.01)


def test_frozen_prefit_encoder_survives_cloning_in_cross_validation():
    stimuli, labels, Y = _orientation_population(600, 8)
    encoder = PoissonGLM(alpha=1e-3).fit(stimuli[labels], Y)
    decoder = BayesianDecoder(FrozenEstimator(encoder), stimuli, "uniform")
    scores = cross_val_score(decoder, Y, labels, cv=KFold(3))
    expected = [
        BayesianDecoder(encoder, stimuli, "uniform", prefit=True).fit(Y, labels)
        .score(Y[test], labels[test])
        for _, test in KFold(3).split(Y)
    ]
    np.testing.assert_allclose(scores, expected)


def test_prefit_uses_a_copy_of_the_fitted_encoder():
    stimuli, labels, Y = _orientation_population(300, 5)
    encoder = PoissonGLM(alpha=1e-3).fit(stimuli[labels[:100]], Y[:100])
    decoder = BayesianDecoder(encoder, stimuli, prefit=True).fit(Y, labels)
    assert decoder.encoder_ is not encoder
    np.testing.assert_array_equal(decoder.encoder_.coef_, encoder.coef_)


def test_decoding_scorers_match_their_definitions():
    stimuli, labels, Y = _orientation_population(300, 8)
    decoder = BayesianDecoder(PoissonGLM(), stimuli).fit(Y, labels)
    log_proba = decoder.predict_log_proba(Y)
    expected = log_proba[np.arange(300), labels].mean()
    assert DECODING_SCORERS["log_posterior"](decoder, Y, labels) == pytest.approx(expected)

    errors = np.linalg.norm(decoder.predict_stimulus(Y, "map") - stimuli[labels], axis=1)
    scorer = make_decoding_scorer("neg_decoding_error", estimate="map", statistic="median")
    assert scorer(decoder, Y, labels) == pytest.approx(-np.median(errors))
    mean_error = np.linalg.norm(decoder.predict_stimulus(Y) - stimuli[labels], axis=1).mean()
    assert DECODING_SCORERS["neg_decoding_error"](decoder, Y, labels) == pytest.approx(
        -mean_error
    )
    assert repr(scorer) == (
        "make_decoding_scorer('neg_decoding_error', estimate='map', statistic='median')"
    )
    with pytest.raises(ValueError, match="median decoding error does not take sample_weight"):
        scorer(decoder, Y, labels, sample_weight=np.ones(300))
    # a decoder behind response preprocessing is scored through the pipeline
    pipeline = make_pipeline(FunctionTransformer(), decoder)
    assert DECODING_SCORERS["log_posterior"](pipeline, Y, labels) == pytest.approx(expected)


def test_log_posterior_scorer_stays_exact_where_probabilities_underflow():
    stimuli, labels, Y = _orientation_population(600, 32)
    decoder = BayesianDecoder(PoissonGLM(), stimuli, "uniform", integrate_bins=1000)
    decoder.fit(Y, labels)
    # two blocks of 1200 trials of one orientation: 1000 integrated bins make
    # the posterior so sharp that the orthogonal orientation falls far below
    # log(float64 tiny) ~ -708, where predict_proba underflows to 0
    blocks = np.repeat([0, 5], 1200)
    wrong = (blocks + 6) % 12
    responses = decoder.encoder_.sample(stimuli[blocks], random_state=0)
    log_posterior = decoder._log_posterior_of_labels(responses, wrong)
    inside_blocks = np.r_[999:1200, 2199:2400]  # windows within one block
    assert log_posterior[inside_blocks].max() < -1000
    assert np.all(np.isfinite(log_posterior))
    scorer = DECODING_SCORERS["log_posterior"]
    assert scorer(decoder, responses, wrong) == pytest.approx(log_posterior.mean())


# ----------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small_problem():
    stimuli, labels, Y = _orientation_population(120, 4, n_orientations=4)
    return stimuli, labels, Y


@pytest.mark.parametrize(
    "kwargs, labels_change, error, message",
    [
        ({}, lambda y: np.where(y == 0, 7, y), ValueError, r"outside the candidate set: \[7\]"),
        ({}, lambda y: y - 1, ValueError, "outside the candidate set"),
        ({}, lambda y: y.astype(str), ValueError, "integer row indices"),
        ({"prior": [0.5, 0.6, 0.2, -0.3]}, None, ValueError, "non-negative"),
        ({"prior": [0.5, 0.5, 0.2, 0.3]}, None, ValueError, "must sum to 1"),
        ({"prior": [0.5, 0.5]}, None, ValueError, r"one probability per candidate, shape \(4,\)"),
        ({"prior": "flat"}, None, ValueError, "prior"),
        ({"integrate_bins": 0}, None, ValueError, "integrate_bins"),
    ],
)
def test_bad_fit_input_is_a_clear_error(small_problem, kwargs, labels_change, error, message):
    stimuli, labels, Y = small_problem
    if labels_change is not None:
        labels = labels_change(labels)
    decoder = BayesianDecoder(PoissonGLM(), stimuli, **kwargs)
    with pytest.raises(error, match=message):
        decoder.fit(Y, labels)


def test_encoder_without_a_likelihood_is_rejected(small_problem):
    stimuli, labels, Y = small_problem
    with pytest.raises(TypeError, match="LinearRegression has no predict_distribution"):
        BayesianDecoder(LinearRegression(), stimuli).fit(Y, labels)
    pipeline = make_pipeline(SplineTransformer(), LinearRegression())
    with pytest.raises(TypeError, match="must define the likelihood"):
        BayesianDecoder(pipeline, stimuli).fit(Y, labels)


def test_wrong_number_of_neurons_is_a_clear_error(small_problem):
    stimuli, labels, Y = small_problem
    decoder = BayesianDecoder(PoissonGLM(), stimuli).fit(Y, labels)
    with pytest.raises(ValueError, match="X has 3 features, but BayesianDecoder is expecting 4"):
        decoder.predict(Y[:, :3])
    encoder = PoissonGLM().fit(stimuli[labels], Y[:, :3])
    with pytest.raises(ValueError, match=r"X has 4 neuron\(s\) \(columns\) but the encoder"):
        BayesianDecoder(encoder, stimuli, prefit=True).fit(Y, labels)


def test_bad_responses_and_options_at_prediction_are_clear_errors(small_problem):
    stimuli, labels, Y = small_problem
    with pytest.raises(NotFittedError):
        BayesianDecoder(PoissonGLM(), stimuli).predict(Y)
    with pytest.raises(NotFittedError):
        BayesianDecoder(PoissonGLM(), stimuli, prefit=True).fit(Y, labels)
    decoder = BayesianDecoder(PoissonGLM(), stimuli).fit(Y, labels)
    with pytest.raises(ValueError, match="Negative values in data"):
        decoder.predict_proba(-Y)
    with pytest.raises(ValueError, match="estimate must be 'mean' or 'map'"):
        decoder.predict_stimulus(Y, estimate="median")
    with pytest.raises(ValueError, match=r"labels outside the classes seen in fit: \['x'\]"):
        one_hot = BayesianDecoder(PoissonGLM()).fit(Y, labels.astype(str))
        DECODING_SCORERS["log_posterior"](one_hot, Y, np.full(len(Y), "x"))
    with pytest.raises(ValueError, match="Unknown decoding scorer"):
        make_decoding_scorer("accuracy_score")
    with pytest.raises(TypeError, match="needs a BayesianDecoder"):
        DECODING_SCORERS["log_posterior"](PoissonGLM().fit(Y, labels), Y, labels)


# ----------------------------------------------------------- reconstruction


@pytest.fixture(scope="module")
def linear_gaussian():
    data = make_glm_data(n_samples=2000, n_features=6, n_neurons=12, family="gaussian",
                         modulation=2.0, dispersion=0.5, random_state=0)
    encoder = PoissonGLM(family="gaussian", alpha=0.0, tol=1e-10).fit(data.X, data.y)
    return encoder, data.y[:5]


def _gaussian_posterior_mean(encoder, y, prior_precision, prior_mean):
    """(W' Φ^-1 W + Λ)^-1 (W' Φ^-1 (y - b) + Λ m): the linear-Gaussian posterior mean."""
    W, b, phi = encoder.coef_, encoder.intercept_, encoder.dispersion_
    precision = W.T @ (W / phi[:, None]) + prior_precision
    rhs = ((y - b) / phi) @ W + prior_mean @ prior_precision
    return np.linalg.solve(precision, rhs.T).T


def test_reconstruct_matches_the_linear_gaussian_posterior_mean(linear_gaussian):
    encoder, y = linear_gaussian
    prior_mean = np.linspace(-0.5, 0.5, 6)
    x_hat, log_posterior = reconstruct(
        encoder, y, prior="gaussian", prior_mean=prior_mean, prior_scale=0.7, tol=1e-10
    )
    expected = _gaussian_posterior_mean(encoder, y, np.eye(6) / 0.49, prior_mean)
    np.testing.assert_allclose(x_hat, expected, rtol=1e-6, atol=1e-8)
    # the log posterior is the encoder's own log-likelihood plus the log prior
    log_prior = stats.norm.logpdf(x_hat, prior_mean, 0.7).sum(axis=1)
    np.testing.assert_allclose(
        log_posterior, encoder.log_likelihood(x_hat, y) + log_prior, rtol=1e-10
    )


def test_reconstruct_with_a_smoothness_prior_matches_its_closed_form(linear_gaussian):
    encoder, y = linear_gaussian
    x_hat, _ = reconstruct(encoder, y, prior="smooth", prior_scale=0.3, tol=1e-10)
    differences = np.diff(np.eye(6), axis=0)  # (5, 6) first-difference operator
    expected = _gaussian_posterior_mean(
        encoder, y, differences.T @ differences / 0.09, np.zeros(6)
    )
    np.testing.assert_allclose(x_hat, expected, rtol=1e-6, atol=1e-7)


def test_reconstruct_accepts_a_callable_prior_and_adam(linear_gaussian):
    encoder, y = linear_gaussian
    x_ref, log_ref = reconstruct(encoder, y, prior="gaussian", tol=1e-10)

    def standard_normal(x):
        return torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(dim=1)

    x_callable, log_callable = reconstruct(encoder, y, prior=standard_normal, tol=1e-10)
    # The two priors round differently, so each L-BFGS run ends where its line
    # search can no longer decrease the objective: a gradient of ~1e-8, i.e.
    # |x - x*| <= |g| / lambda_min ~ 1e-8 / 1 (the prior's unit precision).
    np.testing.assert_allclose(x_callable, x_ref, rtol=1e-8, atol=2e-8)
    np.testing.assert_allclose(log_callable, log_ref, rtol=1e-10)
    x_adam, _ = reconstruct(encoder, y, solver="adam", n_steps=3000, lr=0.01)
    np.testing.assert_allclose(x_adam, x_ref, atol=1e-3)


def test_reconstruct_through_a_poisson_glm_matches_scipy_minimize():
    data = make_glm_data(n_samples=3000, n_features=4, n_neurons=25, modulation=1.0,
                         random_state=1)
    encoder = PoissonGLM(alpha=1e-4).fit(data.X, data.y)
    W, b = encoder.coef_, encoder.intercept_
    y = data.y[7]

    def negative_log_posterior(x):
        eta = W @ x + b
        value = np.sum(np.exp(eta) - y * eta) + 0.5 * x @ x
        return value, W.T @ (np.exp(eta) - y) + x

    expected = optimize.minimize(negative_log_posterior, np.zeros(4), jac=True,
                                 method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15}).x
    x_hat, log_posterior = reconstruct(encoder, y, tol=1e-10)
    assert x_hat.shape == (4,) and isinstance(log_posterior, float)
    np.testing.assert_allclose(x_hat, expected, rtol=1e-6, atol=1e-8)


def test_reconstruct_computes_log_y_factorial_once_and_reports_the_exact_posterior(
    monkeypatch,
):
    data = make_glm_data(n_samples=2000, n_features=3, n_neurons=12, random_state=3)
    encoder = PoissonGLM(alpha=1e-4).fit(data.X, data.y)
    y = data.y[:4]
    calls = []
    original = Poisson.log_normalizer

    def counted(self, targets):
        calls.append(tuple(targets.shape))
        return original(self, targets)

    monkeypatch.setattr(Poisson, "log_normalizer", counted)
    x_hat, log_posterior = reconstruct(encoder, y, tol=1e-10)
    assert calls == [(4, 12)]  # not once per L-BFGS evaluation
    mean = np.exp(x_hat @ encoder.coef_.T + encoder.intercept_)
    expected = (stats.poisson.logpmf(y, mean).sum(axis=1)
                + stats.norm.logpdf(x_hat).sum(axis=1))
    np.testing.assert_allclose(log_posterior, expected, rtol=1e-10)


def _maybe_estimator(name):
    return getattr(sklearn_cnnenc, name)


def _flat_problem():
    data = make_glm_data(n_samples=1500, n_features=4, n_neurons=10, random_state=2)
    return data.X, data.y, {}


def _image_problem():
    """Counts of 6 neurons driven by random linear filters of 16 x 16 noise images.

    The test asks whether reconstruct finds a local maximum of whatever the
    fitted network is, not how good the fit is: a few epochs do. Below 2,000
    samples the CNN averages an ensemble by default; two members keep that path
    (reconstruct through an averaged ensemble) at 2/5 of the default's cost.
    """
    rng = np.random.RandomState(2)
    X = rng.standard_normal((1500, 16, 16)).astype(np.float32)
    filters = rng.standard_normal((6, 256)) / 16
    return X, rng.poisson(np.exp(X.reshape(1500, -1) @ filters.T)).astype(float), {
        "max_epochs": 4, "n_ensemble": 2,
    }


@pytest.mark.parametrize(
    "name, problem",
    [("PoissonGLM", _flat_problem), ("LNModel", _flat_problem), ("CNNEncoder", _image_problem)],
)
def test_reconstruct_finds_a_local_maximum_of_the_log_posterior(name, problem):
    """Generic over encoders: any estimator whose net_.module_ maps X to eta.

    LNModel and CNNEncoder are tested once they are part of the package.
    """
    cls = _maybe_estimator(name)
    X, Y, params = problem()
    encoder = cls(random_state=0, **params).fit(X, Y)
    y = Y[:3]
    x_hat, log_posterior = reconstruct(encoder, y, prior="gaussian", tol=1e-8)
    assert x_hat.shape[0] == 3 and x_hat.size == 3 * X[0].size

    def log_posterior_at(x):
        log_prior = stats.norm.logpdf(x).reshape(len(x), -1).sum(axis=1)
        return encoder.log_likelihood(x, y) + log_prior

    # float32 models (CNN) agree to single precision
    np.testing.assert_allclose(log_posterior, log_posterior_at(x_hat), rtol=1e-5)
    slack = 1e-3 if name == "CNNEncoder" else 1e-9  # the CNN trains in float32
    rng = np.random.RandomState(0)
    for _ in range(5):
        perturbed = x_hat + 1e-2 * rng.standard_normal(x_hat.shape)
        assert np.all(log_posterior_at(perturbed) <= log_posterior + slack)
    assert np.all(log_posterior > log_posterior_at(np.zeros_like(x_hat)))


class _ImageEncoder(BaseEstimator):
    """A fitted linear-Gaussian encoder of 3 x 4 images, duck-typed like the library's."""

    def __init__(self, weight, bias, noise_variance):
        predictor = torch.nn.Linear(12, len(bias), dtype=torch.float64)
        with torch.no_grad():
            predictor.weight.copy_(torch.as_tensor(weight))
            predictor.bias.copy_(torch.as_tensor(bias))
        flatten_then_linear = torch.nn.Sequential(torch.nn.Flatten(), predictor)
        # the public fitted surface reconstruct reads: module_ and sample_shape_
        self.module_ = EncodingModule(flatten_then_linear, get_link("identity"), len(bias))
        self.family_, self.link_ = Gaussian(), get_link("identity")
        self.dispersion_, self.n_outputs_, self.sample_shape_ = noise_variance, len(bias), (3, 4)

    def fit(self, X, y):  # scikit-learn's check_is_fitted wants an estimator
        return self

    def __sklearn_is_fitted__(self):
        return True


@pytest.mark.parametrize("smooth_axes", [None, 1])
def test_reconstruct_smooths_images_along_the_requested_axes(smooth_axes):
    rng = np.random.RandomState(0)
    weight, bias = rng.standard_normal((20, 12)), rng.standard_normal(20)
    phi = rng.uniform(0.5, 2.0, 20)
    encoder = _ImageEncoder(weight, bias, phi)
    y = rng.standard_normal((3, 20)) * 3
    x_hat, _ = reconstruct(encoder, y, prior="smooth", prior_scale=0.5,
                           smooth_axes=smooth_axes, tol=1e-10)
    assert x_hat.shape == (3, 3, 4)
    # row-major flattening: neighbours along H are 4 apart, along W adjacent
    along_h = np.kron(np.diff(np.eye(3), axis=0), np.eye(4))
    along_w = np.kron(np.eye(3), np.diff(np.eye(4), axis=0))
    penalty = along_w.T @ along_w
    if smooth_axes is None:
        penalty = penalty + along_h.T @ along_h
    precision = weight.T @ (weight / phi[:, None]) + penalty / 0.25
    expected = np.linalg.solve(precision, (((y - bias) / phi) @ weight).T).T
    np.testing.assert_allclose(x_hat.reshape(3, 12), expected, rtol=1e-6, atol=1e-7)


def test_reconstruct_bad_input_is_a_clear_error(linear_gaussian):
    encoder, y = linear_gaussian
    with pytest.raises(TypeError, match="not a Pipeline"):
        reconstruct(make_pipeline(SplineTransformer(), PoissonGLM()), y)
    with pytest.raises(NotFittedError):
        reconstruct(PoissonGLM(), y)
    with pytest.raises(TypeError, match="no fitted torch module"):
        reconstruct(LinearRegression().fit(np.eye(3), np.eye(3)), np.ones(3))
    with pytest.raises(ValueError, match=r"y must have shape \(12,\)"):
        reconstruct(encoder, y[:, :5])
    with pytest.raises(ValueError, match="prior must be 'gaussian', 'smooth' or a callable"):
        reconstruct(encoder, y, prior="laplace")
    with pytest.raises(ValueError, match="prior_scale must be a positive number"):
        reconstruct(encoder, y, prior_scale=0.0)
    with pytest.raises(ValueError, match="one log-probability per stimulus"):
        reconstruct(encoder, y, prior=lambda x: x.sum())
    with pytest.raises(ValueError, match=r"x0 must have shape \(6,\)"):
        reconstruct(encoder, y, x0=np.zeros(5))
    with pytest.raises(ValueError, match="solver must be"):
        reconstruct(encoder, y, solver="sgd")
    with pytest.raises(ValueError, match="smooth_axes"):
        reconstruct(encoder, y, prior="smooth", smooth_axes=3)


def test_reconstruct_leaves_the_encoder_unchanged(linear_gaussian):
    encoder, y = linear_gaussian
    module = encoder.net_.module_
    before = {k: v.clone() for k, v in module.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in module.parameters()]
    reconstruct(encoder, y)
    assert all(p.requires_grad for p in module.parameters())
    for p, grad in zip(module.parameters(), grads, strict=True):
        assert (p.grad is None) if grad is None else torch.equal(p.grad, grad)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])
