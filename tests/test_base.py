"""Behaviour every estimator inherits from BaseEncoder (weights, warm starts, devices, score)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.linear_model import PoissonRegressor
from skorch.exceptions import DeviceWarning

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc._base import _best_restart, resolve_device
from sklearn_cnnenc.datasets import make_glm_data, make_v1_population
from sklearn_cnnenc.families import get_family
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.training import NegativeLogLikelihood, available_device

CNN_OPTIONS = dict(channels=4, kernel_size=[5, 3], device="cpu", random_state=0)


@pytest.fixture(scope="module")
def glm_data():
    return make_glm_data(n_samples=600, n_features=4, n_neurons=2, random_state=0)


@pytest.fixture(scope="module")
def images():
    data = make_v1_population(200, n_simple=1, n_complex=1, image_size=12, random_state=1)
    return data.X, data.y


# ------------------------------------------------------------------ restarts
def test_one_selection_rule_for_every_restart_lowest_loss_nan_never_wins():
    losses = np.array([[np.nan, 2.0, 1.0], [3.0, 2.0, np.nan], [1.0, np.inf, np.nan]])
    # per column (a neuron, or the one column of sequential restarts): the
    # lowest loss; NaN (a diverged restart) never beats a finite one; ties
    # and all-failed columns go to the earliest restart
    np.testing.assert_array_equal(_best_restart(losses), [2, 0, 0])
    np.testing.assert_array_equal(_best_restart([[np.nan], [5.0]]), [1])


# ------------------------------------------------------------ sample weights
def test_a_batch_of_zero_weights_has_zero_loss_not_nan():
    loss = NegativeLogLikelihood(get_family("poisson"), get_link("exp"))
    eta, y = torch.zeros(4, 2), torch.ones(4, 2)
    np.testing.assert_array_equal(loss(eta, y, sample_weight=torch.zeros(4)).numpy(), 0.0)


def test_zero_weight_batches_and_validation_part_train_finitely(images):
    X, y = images
    # nonzero weights on 10 of the 160 training samples only, so that most
    # shuffled batches of 8 hold none; the blocked validation part (the last
    # 40 samples) has none at all
    weights = np.zeros(len(y))
    weights[:160:16] = 1.0
    model = CNNEncoder(
        batch_size=8, max_epochs=3, validation_split="blocked", validation_fraction=0.2,
        **CNN_OPTIONS,
    ).fit(X, y, sample_weight=weights)
    assert np.all(np.isfinite(model.history_[:, "train_loss"]))
    assert np.all(np.isfinite(model.history_[:, "valid_loss"]))
    assert np.all(np.isfinite(model.predict(X)))


def test_weighted_glm_is_sklearns_weighted_poisson_regression(glm_data):
    X, y = glm_data.X, glm_data.y[:, 0]
    weights = np.random.default_rng(0).uniform(0.0, 3.0, size=len(y))
    reference = PoissonRegressor(alpha=1e-2, tol=1e-10, max_iter=10_000).fit(
        X, y, sample_weight=weights
    )
    model = PoissonGLM(alpha=1e-2, tol=1e-10).fit(X, y, sample_weight=weights)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-6)
    assert model.intercept_ == pytest.approx(reference.intercept_, abs=1e-6)


def test_equal_weights_are_no_weights(glm_data):
    X, y = glm_data.X, glm_data.y
    plain = PoissonGLM(alpha=1e-2).fit(X, y)
    equal = PoissonGLM(alpha=1e-2).fit(X, y, sample_weight=np.full(len(y), 3.0))
    # the objective is the weighted mean, so only round-off of 3 / (3 n) versus
    # 1 / n separates the two fits: a few ulps, far below any solver tolerance
    np.testing.assert_allclose(equal.coef_, plain.coef_, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------- warm starts
@pytest.mark.parametrize(
    "estimator, change",
    [
        (PoissonGLM(warm_start=True), {"family": "negative_binomial"}),
        (PoissonGLM(warm_start=True), {"fit_intercept": False}),
        (LNModel(1, "softplus", n_init=1, warm_start=True, random_state=0), {"n_filters": 2}),
    ],
)
def test_warm_start_after_a_change_of_parameters_is_a_clear_error(glm_data, estimator, change):
    model = estimator.fit(glm_data.X, glm_data.y)
    model.set_params(**change)
    with pytest.raises(ValueError, match="warm_start cannot continue the previous fit"):
        model.fit(glm_data.X, glm_data.y)
    # without warm_start the new model fits
    model.set_params(warm_start=False).fit(glm_data.X, glm_data.y)


# --------------------------------------------------------------------- score
@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda n: np.r_[-1.0, np.ones(n - 1)], "non-negative"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], "NaN"),
        (lambda n: np.ones(n - 1), "inconsistent numbers of samples"),
        (lambda n: np.zeros(n), "positive sum"),
        (lambda n: np.ones((n, 2)), "1-D"),
    ],
)
def test_score_rejects_invalid_sample_weights(glm_data, weights, message):
    model = PoissonGLM(alpha=1e-2).fit(glm_data.X, glm_data.y)
    with pytest.raises(ValueError, match=message):
        model.score(glm_data.X, glm_data.y, sample_weight=weights(len(glm_data.y)))


def test_weighted_score_with_an_offset_is_the_log_likelihood_by_hand(glm_data):
    X, y = glm_data.X, glm_data.y
    rng = np.random.default_rng(0)
    offset = rng.normal(0.0, 0.3, size=y.shape)
    weights = rng.uniform(0.0, 2.0, size=len(y))
    model = PoissonGLM(alpha=1e-2).fit(X, y, offset=offset)
    mean = np.exp(X @ model.coef_.T + model.intercept_ + offset)
    per_sample = stats.poisson.logpmf(y, mean).mean(axis=1)
    assert model.score(X, y, offset=offset) == pytest.approx(per_sample.mean(), rel=1e-10)
    assert model.score(X, y, sample_weight=weights, offset=offset) == pytest.approx(
        np.average(per_sample, weights=weights), rel=1e-10
    )
    # zero weights leave samples out
    weights[::2] = 0.0
    assert model.score(X, y, sample_weight=weights, offset=offset) == pytest.approx(
        model.score(X[1::2], y[1::2], sample_weight=weights[1::2], offset=offset[1::2]),
        rel=1e-12,
    )


# ------------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_number_this_machine_lacks_is_a_clear_error():
    missing = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"this machine has {missing} GPU"):
        resolve_device(f"cuda:{missing}")
    with pytest.raises(ValueError, match="GPU"):
        PoissonGLM(device=f"cuda:{missing}").fit(np.zeros((5, 2)), np.ones(5))
    assert available_device(f"cuda:{missing}") == torch.device(
        "cuda", torch.cuda.current_device()
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_model_saved_on_any_gpu_predicts_on_the_cpu_without_cuda(glm_data):
    assert available_device("cuda:3") == torch.device("cpu")
    assert available_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")
    model = PoissonGLM(alpha=1e-2).fit(glm_data.X, glm_data.y)
    expected = model.predict(glm_data.X)
    # as if fitted on GPU 3 of another machine
    model.device_, model.net_.device = torch.device("cuda", 3), "cuda:3"
    with warnings.catch_warnings():
        # skorch says it loads the net on the CPU instead
        warnings.simplefilter("ignore", DeviceWarning)
        restored = pickle.loads(pickle.dumps(model))
    assert restored.device_ == torch.device("cpu")
    np.testing.assert_array_equal(restored.predict(glm_data.X), expected)
