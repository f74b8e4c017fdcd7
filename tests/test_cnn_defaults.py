"""The data-dependent ("auto") defaults of CNNEncoder, and what they must achieve."""

import numpy as np
import pytest
import torch

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.cnn import resolve_auto_defaults
from sklearn_cnnenc.datasets import make_shared_filter_population


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def split_population(n_train, n_test, **kwargs):
    data = make_shared_filter_population(n_train + n_test, **kwargs)
    return data.X[:n_train], data.y[:n_train], data.X[n_train:], data.mean[n_train:]


def _mean_correlation(prediction, truth):
    return np.mean(
        [np.corrcoef(prediction[:, k], truth[:, k])[0, 1] for k in range(truth.shape[1])]
    )


def _cnn_vs_glm(n_train, size, kernel, n_neurons, channels, seed):
    X, y, X_test, rate = split_population(
        n_train, 2000, image_size=size, kernel_size=kernel, n_neurons=n_neurons,
        random_state=seed,
    )
    glm = PoissonGLM().fit(X.reshape(n_train, -1), y)
    cnn = CNNEncoder(
        n_layers=1, channels=channels, kernel_size=kernel, device="cpu", random_state=0
    ).fit(X, y)
    return (
        _mean_correlation(cnn.predict(X_test), rate),
        _mean_correlation(glm.predict(X_test.reshape(len(X_test), -1)), rate),
        cnn,
    )


# ------------------------------------------------------------------ rules
def test_auto_rules_follow_the_documented_formulas():
    resolved = resolve_auto_defaults(
        input_type="image", input_shape=(1, 20, 20), n_samples=9500, n_neurons=4
    )
    # the hand recipe that won on 20 x 20 V1 recordings: 3 layers of (7, 5, 5), 16 channels
    assert resolved["n_layers"] == 3 and resolved["kernel_size"] == [7, 5]
    assert resolved["channels"] == 16 and resolved["n_ensemble"] == 1
    n_batches = int(np.ceil((9500 - 950) / 64))
    assert resolved["validation_fraction"] == 0.1
    assert resolved["patience"] == max(8, int(np.ceil(1000 / n_batches)))
    assert resolved["max_epochs"] == max(40, int(np.ceil(8000 / n_batches)))
    assert resolved["gamma_readout"] == pytest.approx(10.0 / (9500 - 950))

    # between the floor and the cap: about 1,000 optimizer steps (2,700 / 64 -> 43 batches)
    middle = resolve_auto_defaults(
        input_type="image", input_shape=(1, 20, 20), n_samples=3000, n_neurons=8
    )
    assert middle["patience"] == int(np.ceil(1000 / 43)) == 24

    small = resolve_auto_defaults(
        input_type="image", input_shape=(1, 12, 12), n_samples=700, n_neurons=6
    )
    # small data: a larger validation set, more patience (few steps per epoch), an ensemble
    assert small["validation_fraction"] == pytest.approx(0.2)
    assert small["n_layers"] == 2 and small["kernel_size"] == [5, 3]
    # 1000 / 9 batches = 112 epochs: the cap of 50
    assert small["patience"] == 50
    # 8 * floor(sqrt(6)) = 16 channels, and the cap sqrt(560 * 6) / 3 = 19.3 -> 16: a hidden
    # layer's 16 * 16 * 3 * 3 = 2,304 weights stay below the 3,360 training responses
    assert small["n_ensemble"] == 5 and small["channels"] == 16
    assert small["gamma_readout"] == pytest.approx(10.0 / 560)
    # below 500 training samples the readout prior stops growing (a stronger one zeroes
    # a small model's readout before its core has learned anything)
    tiny = resolve_auto_defaults(
        input_type="image", input_shape=(1, 8, 8), n_samples=300, n_neurons=4,
        response_scale=2.0,
    )
    assert tiny["gamma_readout"] == pytest.approx(2.0 * 0.02)

    # a third layer from 1,500 images on, without an ensemble from 2,000 on
    middle = resolve_auto_defaults(
        input_type="image", input_shape=(1, 16, 16), n_samples=1500, n_neurons=8
    )
    assert middle["n_layers"] == 3 and middle["channels"] == 16 and middle["n_ensemble"] == 5
    assert resolve_auto_defaults(
        input_type="image", input_shape=(1, 16, 16), n_samples=1499, n_neurons=8
    )["n_layers"] == 2
    large = resolve_auto_defaults(
        input_type="image", input_shape=(3, 64, 64), n_samples=20000, n_neurons=200
    )
    assert large["kernel_size"] == [13, 5] and large["channels"] == 64
    series = resolve_auto_defaults(
        input_type="time_series", input_shape=(1, 40), n_samples=500, n_neurons=1
    )
    assert series["kernel_size"] == [9, 5] and series["n_layers"] == 2


def test_auto_channels_are_capped_by_the_training_responses_of_images_only():
    def channels(n_samples, n_neurons, size=16, **kwargs):
        return resolve_auto_defaults(
            input_type="image", input_shape=(1, size, size), n_samples=n_samples,
            n_neurons=n_neurons, **kwargs,
        )["channels"]

    # 8 * floor(sqrt(K)) within [16, 64] where the data allow
    assert channels(20000, 4) == 16 and channels(20000, 9) == 24 and channels(20000, 50) == 56
    # 1,200 images of 25 neurons: 40 channels, capped at sqrt(1,000 * 25) / 5 = 31.6 -> 24
    assert channels(1200, 25) == 24
    # one neuron of 1,000 images: sqrt(800) / 5 = 5.7 -> 8 (the floor)
    assert channels(1000, 1) == 8 and channels(20, 1) == 8
    # the cap follows the hidden kernel the user sets, and the training samples
    assert channels(1200, 25, kernel_size=[5, 3]) == 40
    assert channels(1200, 25, early_stopping=False) == 32  # sqrt(1,200 * 25) / 5 = 34.6
    for n in (100, 700, 2000, 5000, 20000):
        for k in (1, 4, 30, 200):
            c = channels(n, k)
            assert c % 8 == 0 and 8 <= c <= 64
            assert c <= max(8, np.sqrt(n * k) / 5)
    # time series keep 8 * floor(sqrt(K)) within [16, 64]
    series = resolve_auto_defaults(
        input_type="time_series", input_shape=(1, 40), n_samples=300, n_neurons=1
    )
    assert series["channels"] == 16


def test_auto_rules_are_deterministic_and_keep_explicit_settings():
    args = dict(input_type="image", input_shape=(1, 16, 16), n_samples=3000, n_neurons=10)
    assert resolve_auto_defaults(**args) == resolve_auto_defaults(**args)
    explicit = resolve_auto_defaults(
        **args, n_layers=1, channels=[3], kernel_size=11, max_epochs=7, patience=2,
        validation_fraction=0.3, n_ensemble=2, gamma_readout=0.5,
    )
    assert explicit == dict(
        n_layers=1, channels=[3], kernel_size=11, max_epochs=7, patience=2,
        validation_fraction=0.3, n_ensemble=2, gamma_readout=0.5,
    )


def test_fitted_attributes_hold_the_resolved_settings():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 10, 10)), rng.poisson(1.0, (60, 3)).astype(float)
    model = CNNEncoder(max_epochs=1, device="cpu", random_state=0).fit(X, y)
    # below 1,500 images "auto" compares one and two layers (see the next tests)
    assert model.n_layers_ in (1, 2)
    expected = resolve_auto_defaults(
        input_type="image", input_shape=(1, 10, 10), n_samples=60, n_neurons=3,
        max_epochs=1, response_scale=y.mean(axis=0).mean(), n_layers=model.n_layers_,
    )
    assert model.n_layers == "auto" and model.channels == "auto"  # parameters kept verbatim
    assert model.random_state == 0
    assert model.channels_ == [expected["channels"]] * expected["n_layers"]
    assert model.kernel_size_ == expected["kernel_size"][: model.n_layers_] == [3] * model.n_layers_
    assert model.validation_fraction_ == expected["validation_fraction"]
    assert model.patience_ == expected["patience"] and model.max_epochs_ == 1
    assert model.n_ensemble_ == 5
    assert model.gamma_readout_ == pytest.approx(expected["gamma_readout"])
    # the five members are averaged into one prediction per neuron
    assert model.predict(X).shape == (60, 3)
    assert len(model.net_.module_.predictor.members) == 5


def test_auto_depth_below_1500_images_keeps_the_better_of_one_and_two_layers():
    X, y, _, _ = split_population(300, 10, image_size=8, kernel_size=3, n_neurons=4,
                                  random_state=0)
    options = dict(channels=4, max_epochs=4, device="cpu", random_state=3)
    model = CNNEncoder(**options).fit(X, y)
    assert model.n_layers == "auto"
    assert set(model.depth_scores_) == {1, 2}
    # each depth's score is the best held-out likelihood of its ensemble's average
    for depth, score in model.depth_scores_.items():
        alone = CNNEncoder(n_layers=depth, **options).fit(X, y)
        assert score == min(alone.history_[:, "valid_ensemble_loss"])
        if depth == model.n_layers_:
            np.testing.assert_array_equal(model.predict(X), alone.predict(X))
    kept = 1 if model.depth_scores_[1] < model.depth_scores_[2] else 2
    assert model.n_layers_ == kept and len(model.channels_) == kept


def test_auto_depth_is_compared_only_for_small_image_sets_with_early_stopping():
    images = np.zeros((1499, 8, 8))
    assert CNNEncoder()._compares_depths(images)
    assert CNNEncoder()._compares_depths(images.reshape(1499, -1)) is False  # a time series
    assert CNNEncoder(input_shape=(8, 8))._compares_depths(images.reshape(1499, -1))
    assert not CNNEncoder()._compares_depths(np.zeros((1500, 8, 8)))
    assert not CNNEncoder(n_layers=2)._compares_depths(images)
    assert not CNNEncoder(early_stopping=False)._compares_depths(images)
    assert not CNNEncoder(input_type="time_series")._compares_depths(images)
    # a refit that does not compare leaves no stale scores behind
    X, y, _, _ = split_population(200, 10, image_size=8, kernel_size=3, n_neurons=2,
                                  random_state=1)
    model = CNNEncoder(channels=2, max_epochs=2, device="cpu").fit(X, y)
    assert model.random_state is None and set(model.depth_scores_) == {1, 2}
    model.set_params(n_layers=1).fit(X, y)
    assert not hasattr(model, "depth_scores_")


def test_a_bad_random_state_is_reported_before_the_depths_are_compared():
    images, y = np.zeros((50, 8, 8)), np.ones(50)
    with pytest.raises(ValueError, match="'random_state' parameter of CNNEncoder"):
        CNNEncoder(random_state="abc").fit(images, y)


@pytest.mark.parametrize("random_state", [3, 4])
def test_warm_start_continues_the_depth_that_auto_kept(random_state):
    X, y, _, _ = split_population(300, 10, image_size=8, kernel_size=3, n_neurons=4,
                                  random_state=0)
    model = CNNEncoder(channels=4, max_epochs=4, warm_start=True, device="cpu",
                       random_state=random_state).fit(X, y)
    kept = model.n_layers_
    model.set_params(max_epochs=2).fit(X, y)
    assert model.n_layers_ == kept and len(model.history_) == 2


def test_an_ensemble_predicts_the_mean_of_its_members_linear_predictors():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((120, 10, 10)), rng.poisson(1.0, (120, 2)).astype(float)
    model = CNNEncoder(n_layers=1, channels=2, kernel_size=3, n_ensemble=3, max_epochs=2,
                       device="cpu", random_state=0).fit(X, y)
    ensemble = model.net_.module_.predictor
    inputs = torch.as_tensor(X[:, None], dtype=torch.float32)
    with torch.no_grad():
        members = torch.stack([member(inputs) for member in ensemble.members]).mean(0)
    expected = model.link_.inverse(members).numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5)


def test_an_ensemble_keeps_every_member_and_continues_as_one_model():
    # the base trains the members as batched restarts; CNNEncoder averages
    # them (_combine_restarts() == "average"), so no member is dropped
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((80, 8, 8)), rng.poisson(1.0, (80, 2)).astype(float)
    model = CNNEncoder(n_layers=1, channels=2, kernel_size=3, n_ensemble=3, max_epochs=2,
                       device="cpu", random_state=0)
    assert model.fit(X, y)._combine_restarts() == "average"
    assert model.module_.n_restarts == 1 and len(model.module_.predictor.members) == 3
    before = model.predict(X)
    # a warm start continues the averaged ensemble (three members, one output per neuron)
    model.set_params(warm_start=True, max_epochs=1).fit(X, y)
    assert model.n_ensemble_ == 3 and len(model.module_.predictor.members) == 3
    assert model.predict(X).shape == before.shape == (80, 2)


def test_n_init_and_covariates_replace_the_automatic_ensemble():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((60, 8, 8)), rng.poisson(1.0, (60, 2)).astype(float)
    options = dict(n_layers=1, channels=2, kernel_size=3, max_epochs=1, device="cpu",
                   random_state=0)
    model = CNNEncoder(n_init=2, **options).fit(X, y)
    assert model.n_ensemble_ == 1 and model._combine_restarts() == "best"
    with pytest.raises(ValueError, match="n_init=2 keeps the best of several fits"):
        CNNEncoder(n_init=2, n_ensemble=3, **options).fit(X, y)
    # behaviour modulates one model: the automatic ensemble is off, an explicit one refused
    behavior = rng.standard_normal((60, 1))
    model = CNNEncoder(link="exp", **options).fit(X, y, behavior=behavior)
    assert model.n_ensemble_ == 1
    with pytest.raises(ValueError, match="behavior modulate"):
        CNNEncoder(n_ensemble=2, link="exp", **options).fit(X, y, behavior=behavior)


# ----------------------------------------------- small data: never lose to a GLM
def test_cnn_beats_a_pixel_glm_on_cells_it_represents_exactly_small_fast():
    cnn_r, glm_r, cnn = _cnn_vs_glm(300, size=8, kernel=3, n_neurons=4, channels=4, seed=0)
    assert cnn.n_ensemble_ == 5
    print(f"CNN r = {cnn_r:.3f}, GLM r = {glm_r:.3f}")
    assert cnn_r > glm_r


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_default_cnn_beats_a_pixel_glm_on_cells_it_represents_exactly_700_samples(seed):
    # the case of the issue: 700 samples, 12 x 12 white noise, one shared 5 x 5 filter;
    # every setting "auto" (2 layers of 16 channels, 5 averaged fits, stopped on the held-out
    # likelihood of their average): r = 0.70 and 0.69 against 0.63 for the GLM (stopped on
    # the members' own likelihood: 0.68 and 0.69; the former rules, 24 channels and half the
    # readout prior: 0.59)
    X, y, X_test, rate = split_population(
        700, 2000, image_size=12, kernel_size=5, n_neurons=6, random_state=seed
    )
    glm = PoissonGLM().fit(X.reshape(700, -1), y)
    cnn = CNNEncoder(device="cpu", random_state=0).fit(X, y)
    assert cnn.n_layers_ == 2 and cnn.channels_ == [16, 16] and cnn.n_ensemble_ == 5
    cnn_r = _mean_correlation(cnn.predict(X_test), rate)
    glm_r = _mean_correlation(glm.predict(X_test.reshape(len(X_test), -1)), rate)
    assert cnn_r > glm_r + 0.02


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(0, marks=pytest.mark.xfail(
            reason="the issue's one-layer model reaches r = 0.636 against the GLM's 0.630 on "
            "this seed (0.62 when its ensemble stopped on its members' likelihood): a margin "
            "that rounding on another CPU can undo",
            strict=False,
        )),
        1,
    ],
)
def test_cnn_beats_a_pixel_glm_on_cells_it_represents_exactly_700_samples(seed):
    # the explicit model: n_layers=1, channels=8, kernel_size=5 (other settings auto)
    cnn_r, glm_r, _ = _cnn_vs_glm(700, size=12, kernel=5, n_neurons=6, channels=8, seed=seed)
    assert cnn_r > glm_r
