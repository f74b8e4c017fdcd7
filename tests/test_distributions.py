"""The distributions package: every family against scipy, closed forms and statsmodels,
and a family a user registers working everywhere a built-in one does."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.utils import check_random_state

import sklearn_cnnenc
from sklearn_cnnenc import BayesianDecoder, CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.distributions import (
    FAMILIES,
    Family,
    Gamma,
    Poisson,
    ResponseDistribution,
    get_family,
    register_family,
)
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.metrics import METRICS, log_likelihood, make_encoding_scorer, pseudo_r2

BUILT_IN = ["poisson", "gaussian", "bernoulli", "negative_binomial", "gamma", "zig"]
# (q, phi) of the zero-inflated gamma for three neurons: mostly zeros to none
ZIG_DISPERSION = np.array([[0.3, 0.3], [0.7, 1.0], [1.0, 2.5]])


def _scipy_log_prob(name, y, mean, dispersion):
    if name == "poisson":
        return stats.poisson.logpmf(y, mean)
    if name == "gaussian":
        return stats.norm.logpdf(y, mean, np.sqrt(dispersion))
    if name == "bernoulli":
        return stats.bernoulli.logpmf(y, mean)
    if name == "gamma":
        return stats.gamma.logpdf(y, 1.0 / dispersion, scale=mean * dispersion)
    if name == "zig":
        # by hand: log(1 - q) for a zero, log q + gamma(shape 1/phi, mean mu/q) otherwise
        q, phi = dispersion[..., 0], dispersion[..., 1]
        with np.errstate(divide="ignore"):
            zero = np.log(1.0 - q) + 0.0 * y
        gamma = np.log(q) + stats.gamma.logpdf(np.where(y > 0, y, 1.0), 1.0 / phi,
                                               scale=mean / q * phi)
        return np.where(y > 0, gamma, zero)
    r = 1.0 / dispersion
    return stats.nbinom.logpmf(y, r, r / (r + mean))


def _draw(name, n=300, seed=0):
    rng = np.random.default_rng(seed)
    family = get_family(name)
    link = get_link(family.default_link)
    eta = rng.normal(0.0, 0.7, size=(n, 3))
    mean = link.inverse(torch.as_tensor(eta)).numpy()
    dispersion = np.array([0.3, 1.0, 2.5]) if family.has_dispersion else None
    if name == "zig":
        dispersion = ZIG_DISPERSION
    y = family.sample(mean, dispersion, random_state=seed + 1)
    return family, link, eta, mean, dispersion, y


# ------------------------------------------------------------- per family
@pytest.mark.parametrize("name", BUILT_IN)
def test_torch_nll_equals_numpy_log_prob_equals_scipy(name):
    family, link, eta, mean, dispersion, y = _draw(name)
    expected = _scipy_log_prob(name, y, mean, dispersion)
    np.testing.assert_allclose(family.log_prob(y, mean, dispersion), expected, rtol=1e-10,
                               atol=1e-10)
    nll = family.negative_log_likelihood(
        torch.as_tensor(y), torch.as_tensor(eta), link,
        None if dispersion is None else torch.as_tensor(dispersion),
    )
    np.testing.assert_allclose(-nll.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", BUILT_IN)
def test_deviance_closed_form_is_twice_the_log_likelihood_ratio_to_the_saturated_model(name):
    family, _, _, mean, dispersion, y = _draw(name)
    if name == "bernoulli":
        saturated = np.zeros_like(y)  # p(y | mu = y) = 1
    elif name == "zig":
        # the likelihood of a non-zero y peaks where the gamma mean mu / q is y
        saturated = family.log_prob(y, dispersion[:, 0] * y, dispersion)
    else:
        saturated = family.log_prob(y, y, dispersion)
    np.testing.assert_allclose(family.saturated_log_prob(y, dispersion), saturated, rtol=1e-12)
    expected = 2.0 * (saturated - family.log_prob(y, mean, dispersion))
    np.testing.assert_allclose(family.deviance(y, mean, dispersion), expected, rtol=1e-9,
                               atol=1e-9)
    assert np.all(family.deviance(y, mean, dispersion) >= -1e-12)


@pytest.mark.parametrize("name", BUILT_IN)
def test_sampler_has_the_family_mean_and_variance(name):
    family = get_family(name)
    mu = 0.4 if name == "bernoulli" else 3.0
    phi, q = 0.5, 0.4
    variance = {
        "poisson": mu, "gaussian": phi, "bernoulli": mu * (1 - mu),
        "negative_binomial": mu + phi * mu**2, "gamma": phi * mu**2,
        "zig": mu**2 * ((1 + phi) / q - 1),
    }[name]
    dispersion = phi if family.has_dispersion else None
    if name == "zig":
        dispersion = np.array([q, phi])
    draws = family.sample(np.full(200_000, mu), dispersion, 0)
    assert draws.mean() == pytest.approx(mu, rel=0.01)
    assert draws.var() == pytest.approx(variance, rel=0.03)
    if name == "zig":
        assert np.mean(draws == 0) == pytest.approx(1 - q, abs=0.005)
    family.validate_response(draws)


@pytest.mark.parametrize("name", BUILT_IN)
def test_candidate_form_equals_the_summed_log_probability(name):
    """The decoder's A, b, c(y) reproduce sum_n log p(y_in | candidate k) for every pair."""
    family, link, eta, mean, dispersion, y = _draw(name, n=40)
    candidates, responses = eta[:7], y[7:19]
    weights, candidate_term = family.candidate_terms(candidates, link, dispersion)
    gemm = (family.response_statistics(responses) @ weights.T + candidate_term
            + family.response_term(responses, dispersion)[:, None])
    expected = family.log_prob(responses[:, None, :], mean[None, :7], dispersion).sum(axis=2)
    np.testing.assert_allclose(gemm, expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "y", "message"),
    [
        ("poisson", [1.0, -1.0], "non-negative"),
        ("negative_binomial", [-2.0], "non-negative"),
        ("bernoulli", [0.0, 2.0], "binary"),
        ("gamma", [1.0, 0.0], "strictly positive"),
        ("zig", [1.0, -0.5], "non-negative"),
    ],
)
def test_responses_outside_the_support_are_clear_errors(name, y, message):
    with pytest.raises(ValueError, match=message):
        get_family(name).validate_response(np.array(y))


def test_links_outside_the_family_are_refused_and_the_hook_is_there():
    gamma = get_family("gamma")
    assert gamma.check_link("exp").name == "exp"
    assert gamma.canonical_link == "exp"
    with pytest.raises(ValueError, match="not valid for the 'gamma' family"):
        gamma.check_link("identity")
    with pytest.raises(ValueError, match="not valid for the 'poisson' family"):
        get_family("poisson").check_link("identity", predictor_nonnegative=False)
    with pytest.raises(ValueError, match="lie in"):
        get_family("bernoulli").check_mean(np.array([0.5, 1.5]))
    assert get_family("negative_binomial").dispersion_shape(4) == (4,)
    assert get_family("poisson").dispersion_shape(4) == ()
    assert get_family("zig").dispersion_shape(4) == (4, 2)


# ----------------------------------------------------------------- gamma
def _gamma_data(n=400, seed=0):
    rng = check_random_state(seed)
    X = rng.standard_normal((n, 3))
    mean = np.exp(0.3 + X @ np.array([0.5, -0.3, 0.2]))
    y = Gamma().sample(mean, dispersion=0.4, random_state=rng)
    return X, y


def test_gamma_glm_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    X, y = _gamma_data()
    model = PoissonGLM(family="gamma", alpha=0.0, tol=1e-10, max_iter=5000).fit(X, y)
    reference = sm.GLM(y, sm.add_constant(X),
                       family=sm.families.Gamma(sm.families.links.Log())).fit(tol=1e-12)
    np.testing.assert_allclose(model.intercept_, reference.params[0], atol=1e-4)
    np.testing.assert_allclose(model.coef_, reference.params[1:], atol=1e-4)
    assert model.link_.name == "exp"
    # the shape is its maximum-likelihood estimate, near the truth 1 / 0.4
    assert 1.0 / model.dispersion_[0] == pytest.approx(2.5, rel=0.15)
    assert np.isfinite(model.score(X, y))


def test_gamma_std_errors_match_statsmodels():
    """The family's variance function and Pearson scale give statsmodels' standard errors."""
    sm = pytest.importorskip("statsmodels.api")
    X, y = _gamma_data()
    model = PoissonGLM(family="gamma", alpha=0.0, tol=1e-10, max_iter=5000).fit(X, y)
    reference = sm.GLM(y, sm.add_constant(X),
                       family=sm.families.Gamma(sm.families.links.Log())).fit(tol=1e-12)
    np.testing.assert_allclose(model.std_errors(X, y), reference.bse, rtol=1e-3)


def test_gamma_dispersion_estimate_is_the_maximum_likelihood_shape():
    family = get_family("gamma")
    mean = np.full((50_000, 2), 3.0)
    y = family.sample(mean, np.array([0.2, 2.0]), random_state=0)
    phi = family.estimate_dispersion(y, mean)
    np.testing.assert_allclose(phi, [0.2, 2.0], rtol=0.03)
    # the score equation of the shape holds at the estimate
    k = 1.0 / phi
    from scipy.special import digamma

    s = np.mean(y / mean - 1.0 - np.log(y / mean), axis=0)
    np.testing.assert_allclose(np.log(k) - digamma(k), s, rtol=1e-8)


# -------------------------------------------------------------- gaussian
def test_gaussian_dispersion_is_floored_with_a_warning_naming_the_neurons():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 2))
    y = np.column_stack([X[:, 0] + rng.standard_normal(50), np.full(50, 2.0)])
    with pytest.warns(UserWarning, match=r"neuron\(s\) 1 is \(near\) zero"):
        model = PoissonGLM(family="gaussian", alpha=0.0).fit(X, y)
    assert model.dispersion_[1] >= 1e-10 * 4.0
    assert model.dispersion_[0] > 0.5


def test_gaussian_dispersion_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        PoissonGLM(family="gaussian").fit(np.ones((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match="at least 2 samples"):
        log_likelihood(np.array([1.0]), np.array([0.5]), family="gaussian")


# --------------------------------------------------------- registered families
class _Counts(Poisson):
    """A Poisson under another name: must behave exactly like the built-in one."""

    name = "my_counts"


class _Exponential(Family):
    """A minimal custom family: only the likelihood, the log-probability and a sampler."""

    name = "my_exponential"
    default_link = "exp"
    links = ("exp",)
    non_negative = True
    mean_bounds = (0.0, np.inf)

    def negative_log_likelihood(self, y, eta, link, dispersion=None, log_normalizer=None):
        log_mean = link.log_inverse(eta)
        return log_mean + y * torch.exp(-log_mean)

    def log_prob(self, y, mean, dispersion=None):
        return stats.expon.logpdf(y, scale=mean)

    def sample(self, mean, dispersion=None, random_state=None):
        return check_random_state(random_state).exponential(mean)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(FAMILIES, "my_counts", _Counts())
    monkeypatch.setitem(FAMILIES, "my_exponential", _Exponential())


def test_register_family_validates_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(sklearn_cnnenc.distributions._registry, "FAMILIES", dict(FAMILIES))
    family = register_family(_Counts())
    assert get_family("my_counts") is family
    with pytest.raises(ValueError, match="already registered"):
        register_family(_Counts())
    with pytest.raises(TypeError, match="Family instance"):
        register_family("poisson")
    with pytest.raises(ValueError, match="Unknown family 'nope'"):
        get_family("nope")


def _counts_data():
    return make_glm_data(n_samples=300, n_features=3, n_neurons=2, random_state=0)


def test_a_registered_family_works_in_poisson_glm_and_every_metric(registered):
    data = _counts_data()
    ours = PoissonGLM(alpha=1e-2, family="my_counts").fit(data.X, data.y)
    reference = PoissonGLM(alpha=1e-2, family="poisson").fit(data.X, data.y)
    assert ours.family_.name == "my_counts"
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10)
    assert ours.score(data.X, data.y) == pytest.approx(reference.score(data.X, data.y))
    for name in [name for name, spec in METRICS.items() if not spec.takes_repeats]:
        scorer = make_encoding_scorer(name)
        assert scorer(ours, data.X, data.y) == pytest.approx(
            scorer(reference, data.X, data.y), rel=1e-9
        ), name
    mean = reference.predict(data.X)
    assert pseudo_r2(data.y, mean, family="my_counts") == pytest.approx(
        pseudo_r2(data.y, mean, family="poisson")
    )
    assert ours.__sklearn_tags__().target_tags.positive_only


def test_a_registered_family_works_in_ln_and_cnn_encoders(registered):
    data = _counts_data()
    for make in (
        lambda family: LNModel(1, "softplus", n_init=2, max_iter=300, family=family,
                               random_state=0),
    ):
        ours = make("my_counts").fit(data.X, data.y)
        reference = make("poisson").fit(data.X, data.y)
        np.testing.assert_allclose(ours.predict(data.X), reference.predict(data.X), rtol=1e-8)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((60, 1, 10, 10)).astype(np.float32)
    counts = rng.poisson(1.0, (60, 2)).astype(np.float32)
    small = dict(channels=2, kernel_size=[3], max_epochs=2, device="cpu", random_state=0)
    ours = CNNEncoder(family="my_counts", **small).fit(images, counts)
    reference = CNNEncoder(family="poisson", **small).fit(images, counts)
    assert ours.link_.name == "softplus"
    np.testing.assert_allclose(ours.predict(images), reference.predict(images), rtol=1e-5)


def test_a_registered_family_works_in_the_bayesian_decoder(registered):
    data = _counts_data()
    rng = np.random.default_rng(1)
    stimuli = rng.standard_normal((5, 3))
    labels = np.arange(80) % 5
    ours = PoissonGLM(alpha=1e-2, family="my_counts").fit(data.X, data.y)
    reference = PoissonGLM(alpha=1e-2).fit(data.X, data.y)
    Y = reference.sample(stimuli[labels], random_state=2)
    decoded = BayesianDecoder(ours, stimuli, prefit=True).fit(Y, labels)
    expected = BayesianDecoder(reference, stimuli, prefit=True).fit(Y, labels)
    assert decoded._likelihood._gemm  # inherited candidate form, no fallback
    np.testing.assert_allclose(decoded.predict_proba(Y), expected.predict_proba(Y), rtol=1e-9)


def test_a_minimal_custom_family_fits_scores_and_decodes(registered):
    X, y = _gamma_data(n=300)
    model = PoissonGLM(family="my_exponential", alpha=0.0, tol=1e-10).fit(X, y)
    # the exponential is the gamma of shape one: same fitted means
    gamma = PoissonGLM(family="gamma", alpha=0.0, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(model.coef_, gamma.coef_, atol=1e-5)
    mean = model.predict(X)
    assert model.score(X, y) == pytest.approx(np.mean(stats.expon.logpdf(y, scale=mean)))
    assert log_likelihood(y, mean, family="my_exponential") == pytest.approx(
        np.mean(stats.expon.logpdf(y, scale=mean))
    )
    stimuli = X[:4]
    Y = y[:12, None]
    with pytest.warns(UserWarning, match="defines no candidate_terms"):
        decoder = BayesianDecoder(model, stimuli, prefit=True).fit(Y, np.arange(12) % 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        log_like = decoder.log_likelihood(Y)
    expected = stats.expon.logpdf(Y, scale=model.predict(stimuli)[None, :])
    np.testing.assert_allclose(log_like, expected, rtol=1e-10)


def test_response_distribution_of_a_custom_family(registered):
    distribution = ResponseDistribution(get_family("my_exponential"), get_link("exp"),
                                        np.zeros((2, 1)))
    np.testing.assert_allclose(distribution.log_prob(np.array([[1.0], [2.0]])),
                               [[-1.0], [-2.0]])


def test_no_module_outside_distributions_branches_on_a_family():
    root = Path(sklearn_cnnenc.__file__).parent
    pattern = re.compile(
        r"family\w*(\.name)?\s*(==|!=|in\b)\s*\(?\s*[\"']|"
        r"name\s*(==|in)\s*\(?\s*[\"'](poisson|gaussian|"
        r"bernoulli|negative_binomial|gamma)[\"']|(\)|_kind)\s+is\s+(Poisson|Gaussian|Bernoulli|"
        r"NegativeBinomial|Gamma)\b|isinstance\([^)]*(Poisson|Gaussian|Bernoulli|"
        r"NegativeBinomial|Gamma)\)"
    )
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        if "distributions" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
