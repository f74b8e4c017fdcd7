import mpmath
import numpy as np
import pytest
import torch
from scipy import stats

from sklearn_cnnenc.families import FAMILIES, Poisson, ResponseDistribution, get_family
from sklearn_cnnenc.links import get_link

rng = np.random.default_rng(0)


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
        q, phi = dispersion[..., 0], dispersion[..., 1]
        positive = np.log(q) + stats.gamma.logpdf(np.where(y > 0, y, 1.0), 1.0 / phi,
                                                  scale=mean / q * phi)
        with np.errstate(divide="ignore"):
            return np.where(y > 0, positive, np.log(1.0 - q))
    r = 1.0 / dispersion
    return stats.nbinom.logpmf(y, r, r / (r + mean))


def _draw(name, n=200):
    family = get_family(name)
    link = get_link(family.default_link)
    eta = rng.normal(0.0, 0.7, size=(n, 3))
    mean = link.inverse(torch.as_tensor(eta)).numpy()
    dispersion = np.array([0.3, 1.0, 2.5]) if family.has_dispersion else None
    if family.dispersion_shape(3) == (3, 2):  # zig: (q, phi) per neuron
        dispersion = np.array([[0.3, 0.3], [0.7, 1.0], [1.0, 2.5]])
    y = family.sample(mean, dispersion, random_state=1)
    return family, link, eta, mean, dispersion, y


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_log_prob_matches_scipy(name):
    family, _, _, mean, dispersion, y = _draw(name)
    np.testing.assert_allclose(
        family.log_prob(y, mean, dispersion), _scipy_log_prob(name, y, mean, dispersion),
        rtol=1e-10, atol=1e-10,
    )


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_nll_equals_minus_numpy_log_prob(name, dtype):
    family, link, eta, mean, dispersion, y = _draw(name)
    dispersion_tensor = None if dispersion is None else torch.as_tensor(dispersion, dtype=dtype)
    nll = family.negative_log_likelihood(
        torch.as_tensor(y, dtype=dtype), torch.as_tensor(eta, dtype=dtype), link, dispersion_tensor
    )
    tolerance = 1e-10 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(
        nll.double().numpy(), -family.log_prob(y, mean, dispersion), rtol=tolerance, atol=tolerance
    )


@pytest.mark.parametrize("name", ["poisson", "negative_binomial"])
def test_count_nll_is_finite_for_underflowing_rates_and_zero_counts(name):
    family = get_family(name)
    link = get_link("exp")
    eta = torch.tensor([[-900.0], [-900.0], [0.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [3.0], [0.0]], dtype=torch.float64)
    dispersion = torch.ones(1, dtype=torch.float64) if family.has_dispersion else None
    nll = family.negative_log_likelihood(y, eta, link, dispersion)
    assert torch.all(torch.isfinite(nll))
    assert nll[0].item() == pytest.approx(0.0, abs=1e-12)  # P(0 | rate ~ 0) = 1
    assert nll[1].item() > 2000  # three spikes at rate e^-900 are very unlikely


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_sampler_has_the_family_mean_and_variance(name):
    family = get_family(name)
    mean = np.full(200_000, 0.4 if name == "bernoulli" else 3.0)
    dispersion = np.array(0.5) if family.has_dispersion else None
    if name == "zig":
        dispersion = np.array([0.4, 0.5])  # (q, phi): Var = mu^2 ((1 + phi) / q - 1)
    draws = family.sample(mean, dispersion, random_state=0)
    variance = {"poisson": 3.0, "gaussian": 0.5, "bernoulli": 0.24, "negative_binomial": 7.5,
                "gamma": 4.5, "zig": 24.75}[name]
    assert draws.mean() == pytest.approx(mean[0], abs=0.03)
    assert draws.var() == pytest.approx(variance, rel=0.03)
    np.testing.assert_array_equal(draws, family.sample(mean, dispersion, random_state=0))


def test_gaussian_dispersion_estimate_is_the_mean_squared_residual():
    y = np.array([[1.0, 0.0], [3.0, 2.0]])
    mean = np.array([[2.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(get_family("gaussian").estimate_dispersion(y, mean), [1.0, 2.0])


def test_negative_binomial_dispersion_estimate_recovers_the_truth():
    family = get_family("negative_binomial")
    mean = np.full((100_000, 1), 5.0)
    y = family.sample(mean, np.array([0.8]), random_state=0)
    assert family.estimate_dispersion(y, mean)[0] == pytest.approx(0.8, rel=0.05)


@pytest.mark.parametrize(
    ("name", "y", "message"),
    [
        ("poisson", np.array([1.0, -1.0]), "non-negative"),
        ("negative_binomial", np.array([-2.0]), "non-negative"),
        ("bernoulli", np.array([0.0, 2.0]), "binary"),
    ],
)
def test_responses_outside_the_support_are_rejected(name, y, message):
    with pytest.raises(ValueError, match=message):
        get_family(name).validate_response(y)


def test_invalid_link_and_unknown_family_are_clear_errors():
    with pytest.raises(ValueError, match="not valid for the 'bernoulli' family"):
        get_family("bernoulli").validate_link(get_link("exp"))
    with pytest.raises(ValueError, match="Unknown family 'weibull'"):
        get_family("weibull")
    with pytest.raises(ValueError, match="needs a dispersion"):
        get_family("gaussian").log_prob(0.0, 0.0)


@pytest.mark.parametrize("name", ["poisson", "negative_binomial"])
def test_identity_link_for_counts_only_with_a_nonnegative_predictor(name):
    family = get_family(name)
    with pytest.raises(ValueError, match="positive by construction"):
        family.validate_link(get_link("identity"))
    family.validate_link(get_link("identity"), predictor_nonnegative=True)
    # the flag never admits a link the family cannot use at all
    with pytest.raises(ValueError, match="not valid"):
        get_family("bernoulli").validate_link(get_link("identity"), predictor_nonnegative=True)
    # and the identity link's Poisson NLL is the closed form at a positive mean
    mean = torch.tensor([0.5, 2.0], dtype=torch.float64)
    y = torch.tensor([1.0, 3.0], dtype=torch.float64)
    if name == "poisson":
        expected = -Poisson().log_prob(y.numpy(), mean.numpy())
        nll = family.negative_log_likelihood(y, mean, get_link("identity"))
        np.testing.assert_allclose(nll.numpy(), expected, rtol=1e-12)


def test_response_distribution_broadcasts_responses_against_means():
    mean = np.array([[1.0, 2.0], [3.0, 4.0]])
    distribution = ResponseDistribution(get_family("poisson"), get_link("exp"), np.log(mean))
    y = np.array([[[0.0, 1.0]], [[2.0, 2.0]], [[1.0, 0.0]]])  # 3 responses x 1 x 2 neurons
    log_prob = distribution.log_prob(y)
    assert log_prob.shape == (3, 2, 2)
    np.testing.assert_allclose(log_prob[2, 1], stats.poisson.logpmf([1.0, 0.0], mean[1]))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_response_distribution_log_prob_matches_the_numpy_log_prob(name):
    family, link, eta, mean, dispersion, y = _draw(name)
    distribution = ResponseDistribution(family, link, eta, dispersion)
    np.testing.assert_allclose(distribution.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(
        distribution.log_prob(y), family.log_prob(y, mean, dispersion), rtol=1e-10, atol=1e-10
    )


def test_response_distribution_is_finite_where_the_mean_saturates():
    poisson = ResponseDistribution(get_family("poisson"), get_link("exp"), np.array([[-1e6]]))
    assert poisson.log_prob(np.array([[2.0]]))[0, 0] == pytest.approx(-2e6 - np.log(2.0))
    bernoulli = ResponseDistribution(get_family("bernoulli"), get_link("logit"),
                                     np.array([[1e6]]))
    assert bernoulli.log_prob(np.array([[0.0]]))[0, 0] == pytest.approx(-1e6)


def _nb_log_pmf_50_digits(y, mean, alpha):
    mpmath.mp.dps = 50
    r, mean = mpmath.mpf(1) / mpmath.mpf(alpha), mpmath.mpf(mean)
    return np.array([
        float(mpmath.loggamma(k + r) - mpmath.loggamma(r) - mpmath.loggamma(k + 1)
              + r * mpmath.log(r / (r + mean)) + k * mpmath.log(mean / (r + mean)))
        for k in y
    ])


def test_negative_binomial_log_prob_is_accurate_near_the_poisson_limit():
    # scipy's nbinom.logpmf loses 1e-6 here (lgamma differences); ours must not
    family = get_family("negative_binomial")
    y = np.arange(8.0)
    for alpha in [1e-3, 1e-5, 1e-7, 1e-9]:
        exact = _nb_log_pmf_50_digits(y, 2.5, alpha)
        np.testing.assert_allclose(family.log_prob(y, 2.5, alpha), exact, rtol=1e-11)
        nll = family.negative_log_likelihood(
            torch.as_tensor(y), torch.full((8,), np.log(2.5), dtype=torch.float64),
            get_link("exp"), torch.tensor(alpha, dtype=torch.float64),
        )
        np.testing.assert_allclose(-nll.numpy(), exact, rtol=1e-11)
    # and tends to the Poisson
    np.testing.assert_allclose(family.log_prob(y, 2.5, 1e-12), stats.poisson.logpmf(y, 2.5),
                               rtol=1e-9)


@pytest.mark.parametrize("name", ["gaussian", "negative_binomial"])
def test_raw_dispersion_round_trips_and_is_positive(name):
    family = get_family(name)
    dispersion = np.array([1e-3, 0.5, 40.0])
    raw = family.raw_from_dispersion(dispersion)
    np.testing.assert_allclose(family.dispersion_from_raw(torch.as_tensor(raw)).numpy(),
                               dispersion, rtol=1e-12)
    assert torch.all(family.dispersion_from_raw(torch.tensor([-1e4, 1e4])) > 0)
