import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from scipy.special import gammaln
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_cnnenc import LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_energy_model_data, make_glm_data, make_ln_data
from sklearn_cnnenc.inspection import equivalent_glm
from sklearn_cnnenc.metrics import bits_per_spike
from sklearn_cnnenc.model_selection import BlockedKFold
from sklearn_cnnenc.nn import FilterBankPredictor


def _cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ln_objective(model, X, y):
    """Mean Poisson NLL (with log y!) plus the ridge, recomputed in numpy."""
    from scipy.special import gammaln

    mean = model.predict(X).reshape(len(X), -1)
    nll = np.mean(mean - y.reshape(len(X), -1) * np.log(mean) + gammaln(y.reshape(len(X), -1) + 1),
                  axis=0)
    penalty = 0.5 * model.alpha * (
        (model.filters_**2).reshape(model.n_outputs_, -1).sum(axis=1)
        + (model.weights_**2).sum(axis=1)
        + (model.filter_bias_**2).sum(axis=1)
    )
    return nll + penalty


@pytest.fixture(scope="module")
def ln_data():
    return make_ln_data(n_samples=12000, n_lags=15, random_state=0)


@pytest.fixture(scope="module")
def energy_data():
    return make_energy_model_data(n_samples=12000, n_lags=12, random_state=1)


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_identity_single_filter_is_exactly_the_poisson_glm(alpha):
    data = make_glm_data(n_samples=2000, n_features=6, n_neurons=3, random_state=0)
    glm = PoissonGLM(alpha=alpha, tol=1e-8).fit(data.X, data.y)
    ln = LNModel(1, "identity", link="exp", alpha=alpha, tol=1e-8).fit(data.X, data.y)
    np.testing.assert_allclose(ln.linear_filter_, glm.coef_, atol=1e-10)
    np.testing.assert_allclose(ln.intercept_, glm.intercept_, atol=1e-10)
    assert ln.score(data.X, data.y) == pytest.approx(glm.score(data.X, data.y), abs=1e-12)
    assert np.all(ln.weights_ == 1.0)
    assert ln.n_restarts_ == 1


def test_equivalent_glm_of_an_identity_filter_bank_predicts_like_the_model():
    data = make_glm_data(n_samples=1500, n_features=5, random_state=2)
    model = LNModel(3, "identity", alpha=1e-3, tol=1e-8).fit(data.X, data.y)
    glm = equivalent_glm(model)
    np.testing.assert_allclose(glm.coef, model.filters_.sum(axis=1))
    eta = data.X @ glm.coef.T + glm.intercept
    np.testing.assert_allclose(np.exp(eta[:, 0]), model.predict(data.X), rtol=1e-10)
    # a bank of identity filters is still the (convex) GLM, with the ridge
    # shared between the filters: alpha on the sum becomes alpha * n_filters
    reference = PoissonGLM(alpha=1e-3 / 3, tol=1e-8).fit(data.X, data.y)
    np.testing.assert_allclose(glm.coef[0], reference.coef_, atol=1e-5)
    # a GLM is its own equivalent
    np.testing.assert_array_equal(equivalent_glm(reference).coef[0], reference.coef_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_equivalent_glm_refuses_a_hidden_nonlinearity(ln_data):
    model = LNModel(1, "softplus", n_init=1, max_iter=5).fit(ln_data.X[:500], ln_data.y[:500])
    assert not hasattr(model, "linear_filter_")
    with pytest.raises(ValueError, match="not a GLM of its input"):
        equivalent_glm(model)


@pytest.mark.parametrize("nonlinearity", ["softplus", "relu", "exp"])
def test_recovers_the_filter_of_a_simulated_ln_neuron(ln_data, nonlinearity):
    model = LNModel(1, nonlinearity, n_init=2, random_state=0).fit(ln_data.X, ln_data.y)
    assert model.filters_.shape == (1, 1, 15)
    # the sign of a (filter, weight) pair is arbitrary only for the response's
    # shape; the fitted response grows along the true filter
    cosine = _cosine(model.filters_[0, 0], ln_data.filters) * np.sign(model.weights_[0, 0])
    assert cosine > 0.97


def test_ln_model_beats_the_glm_on_held_out_ln_data():
    data = make_ln_data(n_samples=16000, n_lags=10, nonlinearity="relu", gain=1.5,
                        threshold=-0.5, mean_rate=0.2, random_state=3)
    train, test = slice(0, 12000), slice(12000, None)
    glm = PoissonGLM(alpha=1e-3).fit(data.X[train], data.y[train])
    ln = LNModel(1, "softplus", n_init=2, random_state=0).fit(data.X[train], data.y[train])
    assert ln.score(data.X[test], data.y[test]) > glm.score(data.X[test], data.y[test]) + 5e-3


def test_energy_model_recovers_the_quadrature_subspace(energy_data):
    X, y = energy_data.X, energy_data.y
    model = LNModel(2, "square", n_init=4, random_state=0).fit(X, y)
    fitted = model.filters_[0].reshape(2, -1).T
    true = energy_data.filters.reshape(2, -1).T
    assert np.rad2deg(subspace_angles(fitted, true)).max() < 10
    # a phase-invariant (squaring) neuron: both units excitatory
    assert np.all(model.weights_ > 0)
    # a GLM cannot see it at all
    train, test = slice(0, 9000), slice(9000, None)
    glm = PoissonGLM(alpha=1e-3).fit(X[train], y[train])
    energy = clone(model).fit(X[train], y[train])
    assert energy.score(X[test], y[test]) > glm.score(X[test], y[test]) + 0.02


def test_keeps_the_restart_with_the_lowest_training_objective(energy_data):
    X, y = energy_data.X[:6000], energy_data.y[:6000]
    # the exp link (the data's own) has local optima; the energy model's
    # default identity link reaches the same optimum from every start
    model = LNModel(2, "square", link="exp", n_init=6, random_state=0).fit(X, y)
    objectives = model.restart_objectives_
    assert objectives.shape == (1, 6)
    # restarts genuinely end in different local optima here ...
    assert np.ptp(objectives) > 1e-3
    # ... and the kept parameters are the best one's
    assert _ln_objective(model, X, y) == pytest.approx(objectives.min(axis=1), abs=1e-9)


def test_population_fit_equals_single_neuron_fits():
    datasets = [make_ln_data(n_samples=5000, n_lags=8, random_state=s) for s in (4, 5)]
    X = datasets[0].X
    # neuron 2 sees the same stimulus as neuron 1 (its own filter, noise)
    y2 = make_ln_data(n_samples=5000, n_lags=8, gain=0.7, random_state=4).y
    Y = np.column_stack([datasets[0].y, y2])
    joint = LNModel(1, "softplus", n_init=1, tol=1e-7, random_state=0).fit(X, Y)
    for k in range(2):
        single = LNModel(1, "softplus", n_init=1, tol=1e-7, random_state=0).fit(X, Y[:, k])
        np.testing.assert_allclose(joint.filters_[k], single.filters_[0], atol=1e-4)
        np.testing.assert_allclose(joint.intercept_[k], single.intercept_[0], atol=1e-4)


def test_separable_filters_recover_space_and_time_from_little_data():
    data = make_ln_data(n_samples=3000, n_lags=12, n_pixels=10, nonlinearity="identity",
                        gain=0.8, mean_rate=0.3, random_state=6)
    rank1 = LNModel(1, "identity", input_shape=(12, 10), filter_rank=1, n_init=2,
                    random_state=0).fit(data.X, data.y)
    full = LNModel(1, "identity", input_shape=(12, 10)).fit(data.X, data.y)
    assert rank1.filters_.shape == (1, 1, 12, 10)
    assert rank1.temporal_filters_.shape == (1, 1, 1, 12)
    assert rank1.spatial_filters_.shape == (1, 1, 1, 10)
    assert abs(_cosine(rank1.temporal_filters_, data.temporal)) > 0.95
    assert abs(_cosine(rank1.spatial_filters_, data.spatial)) > 0.95
    # 22 parameters instead of 120: closer to the truth from 3000 bins
    assert _cosine(rank1.filters_, data.filters) > _cosine(full.filters_, data.filters) + 0.02
    assert _cosine(rank1.linear_filter_, data.filters) == pytest.approx(
        _cosine(rank1.filters_, data.filters)
    )


def test_smoothness_penalty_is_the_squared_second_difference():
    torch.manual_seed(0)
    predictor = FilterBankPredictor((7, 4), n_outputs=3, n_filters=2, nonlinearity="relu",
                                    smoothness=0.3, dtype=torch.float64)
    filters = predictor.filters.detach().numpy().reshape(3, 2, 7, 4)
    expected = 0.5 * 0.3 * (
        (np.diff(filters, n=2, axis=2) ** 2).sum(axis=(1, 2, 3))
        + (np.diff(filters, n=2, axis=3) ** 2).sum(axis=(1, 2, 3))
    )
    np.testing.assert_allclose(predictor.regularizer().detach().numpy(), expected)


def test_smoothness_prior_gives_smoother_and_more_accurate_filters():
    data = make_ln_data(n_samples=2000, n_lags=30, nonlinearity="identity", gain=0.6,
                        mean_rate=0.2, random_state=7)
    plain = LNModel(1, "identity", alpha=1e-4).fit(data.X, data.y)
    smooth = LNModel(1, "identity", alpha=1e-4, smoothness=0.05).fit(data.X, data.y)

    def roughness(filters):
        return np.sum(np.diff(filters.ravel(), n=2) ** 2)

    assert roughness(smooth.filters_) < 0.5 * roughness(plain.filters_)
    assert _cosine(smooth.filters_, data.filters) > _cosine(plain.filters_, data.filters)


def test_negative_binomial_restarts_keep_one_dispersion_per_neuron(ln_data):
    X, y = ln_data.X[:3000], np.column_stack([ln_data.y[:3000], ln_data.y[3000:6000]])
    model = LNModel(1, "softplus", family="negative_binomial", n_init=3, random_state=0)
    model.fit(X, y)
    assert model.dispersion_.shape == (2,)
    assert np.all(np.isfinite(model.dispersion_))
    assert model.predict(X).shape == (3000, 2)
    assert model.restart_objectives_.shape == (2, 3)


def test_warm_start_continues_without_restarts(ln_data):
    X, y = ln_data.X[:4000], ln_data.y[:4000]
    model = LNModel(1, "softplus", n_init=2, tol=1e-6, warm_start=True, random_state=0)
    model.fit(X, y)
    first = model.filters_.copy()
    model.fit(X, y)
    assert model.n_restarts_ == 1
    assert model.n_iter_ <= 2
    np.testing.assert_allclose(model.filters_, first, atol=1e-4)


def test_float32_input_fits_in_float32(ln_data):
    X = ln_data.X[:4000].astype(np.float32)
    model = LNModel(1, "softplus", n_init=1, random_state=0).fit(X, ln_data.y[:4000])
    assert model.net_.module_.predictor.filters.dtype == torch.float32
    assert _cosine(model.filters_, ln_data.filters) * np.sign(model.weights_[0, 0]) > 0.9


def test_works_in_pipeline_grid_search_and_pickle(energy_data, tmp_path):
    X, y = energy_data.X[:4000], energy_data.y[:4000]
    pipeline = make_pipeline(StandardScaler(), LNModel(nonlinearity="square", n_init=2,
                                                       random_state=0))
    search = GridSearchCV(pipeline, {"lnmodel__n_filters": [1, 2]}, cv=BlockedKFold(3, gap=12))
    search.fit(X, y)
    assert search.best_params_ == {"lnmodel__n_filters": 2}
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    np.testing.assert_array_equal(restored.predict(X), search.best_estimator_.predict(X))


def test_same_random_state_gives_identical_fits(energy_data):
    X, y = energy_data.X[:3000], energy_data.y[:3000]
    a = LNModel(2, "square", n_init=3, random_state=11).fit(X, y)
    b = LNModel(2, "square", n_init=3, random_state=11).fit(X, y)
    np.testing.assert_array_equal(a.filters_, b.filters_)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"input_shape": (4, 4)}, "product must equal n_features"),
        ({"input_shape": (3, -5)}, "positive integers"),
        ({"filter_rank": 1}, "two-dimensional input_shape"),
        ({"input_shape": (3, 5), "filter_rank": 4}, r"filter_rank must be between 1 and"),
        ({"nonlinearity": "tanh"}, "nonlinearity"),
        ({"n_init": 0}, "n_init"),
    ],
)
def test_bad_parameters_are_clear_errors(params, message):
    data = make_glm_data(n_samples=50, n_features=15, random_state=0)
    with pytest.raises(ValueError, match=message):
        LNModel(**params).fit(data.X, data.y)


def test_predict_checks_the_number_of_features(ln_data):
    model = LNModel(1, "identity").fit(ln_data.X[:500], ln_data.y[:500])
    with pytest.raises(ValueError, match="features"):
        model.predict(ln_data.X[:10, :5])


def test_sample_weights_equal_repeated_samples(ln_data):
    X, y = ln_data.X[:3000], ln_data.y[:3000]
    weights = np.random.default_rng(0).integers(0, 3, size=3000)
    weighted = LNModel(1, "softplus", n_init=2, tol=1e-8, random_state=0)
    weighted.fit(X, y, sample_weight=weights)
    repeated = LNModel(1, "softplus", n_init=2, tol=1e-8, random_state=0)
    repeated.fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-5)


def test_restarts_with_an_offset_reach_the_single_start_objective(ln_data):
    X = ln_data.X[:3000]
    y = np.column_stack([ln_data.y[:3000], ln_data.y[3000:6000]])
    # a different exposure for each neuron: its copies in the batched
    # restarts must all get that neuron's offset, not the other's
    offset = np.column_stack([np.full(3000, np.log(0.5)), np.full(3000, np.log(2.0))])
    offset = offset + np.random.default_rng(0).normal(0.0, 0.2, size=offset.shape)
    single = LNModel(1, "softplus", n_init=1, tol=1e-7, random_state=0).fit(X, y, offset=offset)
    model = LNModel(1, "softplus", n_init=3, tol=1e-7, random_state=0).fit(X, y, offset=offset)
    assert model.restart_objectives_.shape == (2, 3)

    def objective(fitted):
        mean = fitted.predict(X, offset=offset)
        nll = np.mean(mean - y * np.log(mean) + gammaln(y + 1.0), axis=0)
        penalty = 0.5 * fitted.alpha * (
            (fitted.filters_**2).reshape(2, -1).sum(axis=1)
            + (fitted.weights_**2).sum(axis=1)
            + (fitted.filter_bias_**2).sum(axis=1)
        )
        return nll + penalty

    # the kept restart is trained and selected on the objective with the offset ...
    np.testing.assert_allclose(objective(model), model.restart_objectives_.min(axis=1),
                               atol=1e-9)
    # ... and is at least as good as a single start
    assert np.all(objective(model) <= objective(single) + 1e-7)


def test_separable_smoothness_penalty_is_that_of_the_full_filters():
    torch.manual_seed(0)
    # two spatial axes, one of them too short to have a second difference
    shape = (6, 5, 2)
    predictor = FilterBankPredictor(shape, n_outputs=3, n_filters=2, nonlinearity="square",
                                    filter_rank=2, smoothness=0.3, dtype=torch.float64)
    factored = predictor.regularizer()
    full = predictor.full_filters().reshape(3, 2, *shape)
    explicit = 0.5 * 0.3 * sum(
        (torch.diff(full, n=2, dim=axis + 2) ** 2).reshape(3, -1).sum(dim=1)
        for axis, size in enumerate(shape)
        if size >= 3
    )
    torch.testing.assert_close(factored, explicit, rtol=1e-12, atol=1e-12)
    factors = [predictor.temporal, predictor.spatial]
    factored_grad = torch.autograd.grad(factored.sum(), factors)
    explicit_grad = torch.autograd.grad(explicit.sum(), factors)
    for got, expected in zip(factored_grad, explicit_grad, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_default_link_is_the_familys_canonical_link(ln_data):
    X = ln_data.X[:2000]
    spikes = (ln_data.y[:2000] > 0).astype(float)
    assert LNModel().link == "auto"
    binary = LNModel(1, "softplus", family="bernoulli", n_init=1, random_state=0).fit(X, spikes)
    assert binary.link_.name == "logit"
    assert np.all((binary.predict(X) > 0) & (binary.predict(X) < 1))
    counts = LNModel(1, "softplus", n_init=1, random_state=0).fit(X, ln_data.y[:2000])
    assert counts.link_.name == "exp"


def test_ridge_penalises_filters_output_weights_and_filter_biases():
    predictor = FilterBankPredictor((4,), n_outputs=2, n_filters=2, nonlinearity="softplus",
                                    l2=0.4, dtype=torch.float64)
    with torch.no_grad():
        predictor.filters.fill_(0.0)
        predictor.weights.fill_(0.0)
        predictor.filter_bias.copy_(torch.tensor([[1.0, 2.0], [0.0, 3.0]]))
        predictor.bias.fill_(5.0)
    # the intercept (5.0) is not penalised, the thresholds are
    np.testing.assert_allclose(predictor.regularizer().detach().numpy(),
                               [0.5 * 0.4 * 5.0, 0.5 * 0.4 * 9.0])


def _energy_cell(n_train=6000, n_test=20000, seed=0):
    """The issue's complex cell: rate = 0.2 ((w1.x)^2 + (w2.x)^2) + 0.05, Poisson."""
    rng = np.random.default_rng(seed)
    w = np.linalg.qr(rng.standard_normal((16, 2)))[0].T
    X = rng.standard_normal((n_train + n_test, 16))
    rate = 0.2 * ((X @ w.T) ** 2).sum(axis=1) + 0.05
    y = rng.poisson(rate).astype(float)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:], rate[n_train:]


def test_energy_cell_reaches_the_oracle_with_the_default_identity_link():
    X, y, X_test, y_test, rate_test = _energy_cell()
    model = LNModel(n_filters=2, nonlinearity="square", n_init=3, random_state=0).fit(X, y)
    assert model.link_.name == "identity"
    oracle = bits_per_spike(y_test, rate_test)
    assert bits_per_spike(y_test, model.predict(X_test)) >= 0.9 * oracle
    # rate = baseline + sum of squares: a positive baseline near 0.05, unit weights
    assert np.all(model.weights_ == 1.0)
    assert model.intercept_[0] == pytest.approx(0.05, abs=0.02)
    assert np.all(model.predict(X_test) >= model.intercept_[0] - 1e-12)


def test_identity_link_refused_for_counts_where_the_predictor_can_be_negative():
    X, y = _energy_cell(n_train=300, n_test=0)[:2]
    with pytest.raises(ValueError, match="positive by construction"):
        LNModel(1, "relu", link="identity").fit(X, y)
    with pytest.raises(ValueError, match="positive by construction"):
        LNModel(2, "square", link="identity", fit_intercept=False).fit(X, y)
    # without a positive baseline the energy model keeps the canonical exp link
    model = LNModel(2, "square", fit_intercept=False, n_init=1, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert model.fit(X, y).link_.name == "exp"
    with pytest.raises(ValueError, match="offset must be non-negative"):
        LNModel(2, "square").fit(X, y, offset=np.full(len(y), -0.1))
    # the Gaussian keeps its free (signed) square model under the identity link
    gaussian = LNModel(2, "square", family="gaussian", n_init=1, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert gaussian.fit(X, y).net_.module_.predictor.nonnegative is False


def test_nonnegative_filter_bank_is_a_sum_of_squares_plus_a_positive_baseline():
    predictor = FilterBankPredictor((5,), n_outputs=3, n_filters=2, nonlinearity="square",
                                    nonnegative=True, dtype=torch.float64)
    X = torch.randn(7, 5, dtype=torch.float64)
    filters = predictor.filters.detach()
    expected = (torch.einsum("nf,kjf->nkj", X, filters) ** 2).sum(dim=2) + torch.exp(
        predictor.bias.detach())
    torch.testing.assert_close(predictor(X).detach(), expected)
    predictor.initialize_intercept(torch.tensor([0.2, 1.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(predictor.baseline().detach().numpy(), [0.1, 0.5, 5e-11])
    norm2 = (predictor.filters.detach() ** 2).sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(norm2, [0.1, 0.5, 5e-11], rtol=1e-10)
    assert not predictor.weights.requires_grad
    with pytest.raises(ValueError, match="nonnegative=True needs"):
        FilterBankPredictor((5,), n_outputs=1, nonlinearity="relu", nonnegative=True)
