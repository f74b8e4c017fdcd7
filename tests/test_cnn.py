import io
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.cnn import InputLayout
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.metrics import bits_per_spike
from sklearn_cnnenc.nn import CausalCore1d, Core2d
from sklearn_cnnenc.stimuli import pink_noise
from sklearn_cnnenc.training import ValidationCorrelation

N_TRAIN = 1500
# one fitted model, not the small-data ensemble, keeps these tests fast
SMALL = dict(
    channels=4, kernel_size=[5, 3], max_epochs=3, n_ensemble=1, validation_fraction=0.1,
    device="cpu", random_state=0,
)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: these small convolutions gain nothing from more, and on a
    machine whose cores are busy, OpenMP threads waiting on each other make a fit
    several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def v1():
    """Simple (first 4) and complex (last 4) cells; train on 1500 patches, test on 500."""
    data = make_v1_population(N_TRAIN + 500, n_simple=4, n_complex=4, random_state=0)
    split = dict(
        X_train=data.X[:N_TRAIN],
        y_train=data.y[:N_TRAIN],
        X_test=data.X[N_TRAIN:],
        y_test=data.y[N_TRAIN:],
        mean_test=data.mean[N_TRAIN:],
    )
    split["null"] = split["y_train"].mean(axis=0)
    return split


@pytest.fixture(scope="module")
def cnn(v1):
    # the former defaults (two layers of 9 and 5, patience 10, no ensemble),
    # whose fit these acceptance tests were sized for
    return CNNEncoder(
        n_layers=2, channels=8, kernel_size=(9, 5), max_epochs=30, patience=10,
        validation_fraction=0.1, n_ensemble=1, device="cpu", random_state=0,
    ).fit(
        v1["X_train"], v1["y_train"]
    )


@pytest.fixture(scope="module")
def small_images():
    data = make_v1_population(200, n_simple=1, n_complex=2, image_size=12, random_state=1)
    return data.X, data.y


def _bits(v1, prediction):
    return bits_per_spike(v1["y_test"], prediction, v1["null"], multioutput="raw_values")


# ---------------------------------------------------------------- acceptance
def test_cnn_beats_glm_on_complex_cells_and_approaches_the_oracle(v1, cnn):
    n_test = len(v1["X_test"])
    glm = PoissonGLM().fit(v1["X_train"].reshape(N_TRAIN, -1), v1["y_train"])
    glm_bits = _bits(v1, glm.predict(v1["X_test"].reshape(n_test, -1)))
    cnn_bits = _bits(v1, cnn.predict(v1["X_test"]))
    oracle = _bits(v1, v1["mean_test"])
    # complex cells are invisible to a linear filter; a shared conv core sees them
    assert cnn_bits[4:].mean() > glm_bits[4:].mean() + 1.0
    assert np.all(cnn_bits[4:] > glm_bits[4:])
    assert cnn_bits[4:].mean() > 0.6 * oracle[4:].mean()
    assert cnn_bits.mean() > glm_bits.mean()
    assert cnn.score(v1["X_test"], v1["y_test"]) > glm.score(
        v1["X_test"].reshape(n_test, -1), v1["y_test"]
    )


# LN restarts on benchmark-sized data (2+ min on a loaded 2-core machine): slow;
# the GLM and oracle comparison stays in the default run
@pytest.mark.slow
def test_cnn_beats_ln_model_on_complex_cells(v1, cnn):
    from sklearn_cnnenc import LNModel

    n_test = len(v1["X_test"])
    ln = LNModel(random_state=0).fit(v1["X_train"].reshape(N_TRAIN, -1), v1["y_train"])
    ln_bits = _bits(v1, ln.predict(v1["X_test"].reshape(n_test, -1)))
    cnn_bits = _bits(v1, cnn.predict(v1["X_test"]))
    assert cnn_bits[4:].mean() > ln_bits[4:].mean()


def test_fitted_attributes_and_history(cnn):
    assert cnn.input_type_ == "image" and cnn.input_shape_ == (1, 16, 16)
    assert cnn.readout_type_ == "factorized"
    assert cnn.receptive_field_ == (13, 13)
    assert cnn.n_features_in_ == 256
    assert cnn.link_.name == "softplus"
    assert isinstance(cnn.core_, Core2d)
    assert cnn.n_parameters_ == sum(p.numel() for p in cnn.net_.module_.parameters())
    assert len(cnn.history_) == cnn.n_iter_
    assert {"train_loss", "valid_loss", "dur"} <= set(cnn.history_[-1])


# ------------------------------------------------------------------- inputs
def test_image_layouts_flat_inputs_and_pipelines_agree(small_images):
    X, y = small_images
    n = len(X)
    reference = CNNEncoder(**SMALL).fit(X, y).predict(X)
    with_channel = CNNEncoder(**SMALL).fit(X[:, None], y)
    flat = CNNEncoder(input_shape=(12, 12), **SMALL).fit(X.reshape(n, -1), y)
    np.testing.assert_array_equal(with_channel.predict(X[:, None]), reference)
    np.testing.assert_array_equal(flat.predict(X.reshape(n, -1)), reference)
    # a model fitted on images accepts flat rows of the same size, and back
    np.testing.assert_array_equal(flat.predict(X), reference)
    np.testing.assert_array_equal(with_channel.predict(X), reference)
    assert flat.n_features_in_ == with_channel.n_features_in_ == 144
    scaled = FunctionTransformer(lambda Z: 2.0 * Z)
    pipeline = make_pipeline(scaled, CNNEncoder(input_shape=(1, 12, 12), **SMALL))
    pipeline.fit(X.reshape(n, -1), y)
    assert pipeline.predict(X.reshape(n, -1)).shape == y.shape


def test_float32_data_single_neuron_and_channels(small_images):
    X, y = small_images
    colour = np.repeat(X[:, None], 3, axis=1).astype(np.float32)
    model = CNNEncoder(**SMALL).fit(colour, y[:, 0])
    assert model.input_shape_ == (3, 12, 12)
    assert model.predict(colour).shape == (len(X),)
    assert next(model.net_.module_.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    "make_fit, match",
    [
        (lambda X, y: CNNEncoder(input_shape=(10, 10), **SMALL).fit(X.reshape(len(X), -1), y),
         r"input_shape=\(10, 10\) holds 100 values per sample, but X has 144 features"),
        (lambda X, y: CNNEncoder(input_shape=(12, 13), **SMALL).fit(X, y),
         "X has samples of shape"),
        (lambda X, y: CNNEncoder(**SMALL).fit(X[:2], y[:2]),
         "BatchNorm needs at least 2 training samples"),
        (lambda X, y: CNNEncoder(**SMALL).fit(X[:1], y[:1]), "1 sample"),
        (lambda X, y: CNNEncoder(**{**SMALL, "kernel_size": 13}).fit(X, y),
         "larger than its input"),
        (lambda X, y: CNNEncoder(readout="last", **SMALL).fit(X, y), "needs time series"),
        (lambda X, y: CNNEncoder(pooling=("max", 0), **SMALL).fit(X, y), "pooling"),
        (lambda X, y: CNNEncoder(**{**SMALL, "channels": [4, 0]}).fit(X, y), "channels"),
        (lambda X, y: CNNEncoder(input_type="time_series", **SMALL).fit(X[:, None], y),
         "Time series need"),
        (lambda X, y: CNNEncoder(input_type="image", **SMALL).fit(X.reshape(len(X), -1), y),
         "Images need"),
    ],
)
def test_bad_inputs_fail_before_training(small_images, make_fit, match):
    X, y = small_images
    with pytest.raises(ValueError, match=match):
        make_fit(X, y)


def test_numpy_integer_architectures_fit_and_fractions_are_named_errors(small_images):
    """A grid over np.arange passes numpy integers; 2.5 is an error, not a 2."""
    X, y = small_images
    options = {**SMALL, "max_epochs": 1}
    model = CNNEncoder(**{**options, "kernel_size": [np.int64(5), np.int64(3)],
                          "pooling": ("max", np.int64(2)), "padding": np.int64(1)}).fit(X, y)
    reference = CNNEncoder(**{**options, "pooling": ("max", 2), "padding": 1}).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), reference.predict(X))
    for name, bad in [("kernel_size", [5, 2.5]), ("pooling", ("max", 2.5)),
                      ("padding", [0, True]), ("stride", 1.0)]:
        with pytest.raises(ValueError, match=name):
            CNNEncoder(**{**options, name: bad}).fit(X, y)


def test_nan_inputs_and_responses_are_rejected(small_images):
    X, y = small_images
    model = CNNEncoder(**SMALL)
    bad_X = X.copy()
    bad_X[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad_X, y)
    bad_y = y.copy()
    bad_y[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, bad_y)
    assert not hasattr(model, "net_")


def test_predicting_on_differently_shaped_stimuli_is_an_error(small_images):
    X, y = small_images
    model = CNNEncoder(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="fitted on samples of shape"):
        model.predict(X.reshape(len(X), 1, 6, 24))
    with pytest.raises(ValueError, match="X has 100 features"):
        model.predict(X[:, :10, :10].reshape(len(X), -1))


def test_input_layout_is_fitted_state_that_a_refit_recomputes(small_images):
    X, y = small_images
    model = CNNEncoder(**SMALL).fit(X, y)
    assert model.input_layout_ == InputLayout("image", (1, 12, 12), (12, 12))
    assert model.input_shape_ == model.sample_shape_ == model.input_layout_.input_shape
    assert model.input_type_ == model.input_layout_.input_type
    # another shape: a cold refit of the same estimator describes the new inputs
    X2 = np.concatenate([X, X[:, ::-1]], axis=1).reshape(len(X), 2, 12, 12)
    model.set_params(input_shape=(2, 12, 12)).fit(X2.reshape(len(X), -1), y)
    assert model.input_layout_ == InputLayout("image", (2, 12, 12), (2, 12, 12))
    assert model.predict(X2).shape == y.shape
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(2, 12, 12\)"):
        model.predict(X2.reshape(len(X), 4, 6, 12))
    # the core and the "auto" settings followed the new layout
    assert model.core_.blocks[0].conv.in_channels == 2


def test_model_pickled_with_the_former_private_layout_still_predicts(small_images):
    X, y = small_images
    model = CNNEncoder(**SMALL).fit(X, y)
    expected = model.predict(X)
    # what a model pickled before input_layout_ was public holds
    layout = model.__dict__.pop("input_layout_")
    model.__dict__["_fit_layout"] = (layout.input_type, layout.input_shape, layout.given_shape)
    restored = pickle.loads(pickle.dumps(model))
    assert "_fit_layout" not in vars(restored)
    assert restored.input_layout_ == layout
    np.testing.assert_array_equal(restored.predict(X), expected)


# ------------------------------------------------------------- time series
def _temporal_neuron(n_bins, random_state=0):
    """An auditory-like neuron: rate = squared output of a temporal filter of pink noise."""
    rng = np.random.default_rng(random_state)
    stimulus = pink_noise(1, n_bins, exponent=1.0, random_state=random_state)[0]
    lags = np.arange(12)
    kernel = np.sin(2 * np.pi * lags / 8) * np.exp(-lags / 4)
    drive = np.convolve(stimulus, kernel)[:n_bins]  # causal: bin t sees t-11..t
    rate = 0.2 + 1.5 * drive**2 / drive.var()
    return stimulus, rng.poisson(rate).astype(float), rate


def _windows(stimulus, length):
    """Stimulus windows ending at each bin: X[i] = s[i : i + length], for bin i + length - 1."""
    view = np.lib.stride_tricks.sliding_window_view(stimulus, length)
    return view[:, None, :]


@pytest.mark.slow  # 40 epochs on 4500 windows; the time-series fixture tests stay
def test_causal_cnn_learns_a_temporal_energy_neuron_that_a_glm_cannot():
    stimulus, counts, rate = _temporal_neuron(6000)
    length = 16
    X = _windows(stimulus, length)
    y, rate = counts[length - 1 :], rate[length - 1 :]
    n_train = 4500
    cnn = CNNEncoder(
        n_layers=2,
        channels=8,
        kernel_size=[8, 5],
        input_type="time_series",
        max_epochs=40,
        device="cpu",
        random_state=0,
    ).fit(X[:n_train], y[:n_train])
    assert cnn.input_type_ == "time_series" and cnn.readout_type_ == "last"
    assert isinstance(cnn.core_, CausalCore1d)
    assert cnn.receptive_field_ == (12,)
    glm = PoissonGLM().fit(X[:n_train, 0], y[:n_train])
    null = y[:n_train].mean()
    cnn_bits = bits_per_spike(y[n_train:], cnn.predict(X[n_train:]), null)
    glm_bits = bits_per_spike(y[n_train:], glm.predict(X[n_train:, 0]), null)
    oracle = bits_per_spike(y[n_train:], rate[n_train:], null)
    assert cnn_bits > glm_bits + 0.3
    assert cnn_bits > 0.5 * oracle
    # only the last receptive_field_ bins of a window matter
    changed = X[n_train:].copy()
    changed[..., : length - 12] = 100.0
    np.testing.assert_array_equal(cnn.predict(changed), cnn.predict(X[n_train:]))
    changed[..., -1] += 1.0
    assert not np.allclose(cnn.predict(changed), cnn.predict(X[n_train:]))


def test_time_series_shorter_than_the_receptive_field_is_an_error():
    X = np.random.default_rng(0).standard_normal((100, 2, 10))
    y = np.ones(100)
    model = CNNEncoder(
        n_layers=3, kernel_size=3, dilation="exponential", input_type="time_series",
        **{k: v for k, v in SMALL.items() if k != "kernel_size"},
    )
    with pytest.raises(ValueError, match=r"10 bin\(s\), fewer than the receptive field of the "
                                         r"core \(15 bins\)"):
        model.fit(X, y)
    with pytest.raises(ValueError, match=r"X has 10 feature\(s\)"):
        model.fit(X[:, 0], y)


def test_flat_inputs_without_input_shape_are_one_channel_signals():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((80, 20)), rng.poisson(1.0, 80).astype(float)
    model = CNNEncoder(**SMALL).fit(X, y)
    assert model.input_type_ == "time_series" and model.input_shape_ == (1, 20)
    assert model.validation_split == "auto"
    # time series hold out the *last* block: the split is blocked
    assert repr(model.net_.train_split) == "ValidationSplit(fraction=0.1, method='blocked')"


# ------------------------------------------------------------- training
def test_random_state_makes_cpu_fits_bit_for_bit_reproducible(small_images):
    X, y = small_images
    first = CNNEncoder(readout="gaussian", **SMALL).fit(X, y).predict(X)
    second = CNNEncoder(readout="gaussian", **SMALL).fit(X, y).predict(X)
    other = CNNEncoder(readout="gaussian", **{**SMALL, "random_state": 1}).fit(X, y).predict(X)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_early_stopping_restores_the_weights_of_the_best_validation_epoch(small_images):
    X, y = small_images
    model = CNNEncoder(
        validation_split="blocked", lr=0.05, patience=3, max_epochs=40,
        early_stopping_metric="log_likelihood",
        **{k: v for k, v in SMALL.items() if k != "max_epochs"},
    ).fit(X, y)
    valid_losses = model.history_[:, "valid_loss"]
    n_valid = int(np.ceil(0.1 * len(X)))
    held_out = model.log_likelihood(X[-n_valid:], y[-n_valid:], per_neuron=True)
    # the validation loss is the held-out NLL (constants included), summed over neurons
    assert -held_out.mean(axis=0).sum() == pytest.approx(min(valid_losses), rel=1e-4)
    assert len(valid_losses) < 40  # it stopped early
    assert np.argmin(valid_losses) < len(valid_losses) - 1


def test_an_ensemble_stops_on_the_held_out_likelihood_of_its_average(small_images):
    X, y = small_images
    options = dict(
        validation_split="blocked", lr=0.05, patience=3, max_epochs=40,
        **{k: v for k, v in SMALL.items() if k not in ("max_epochs", "n_ensemble")},
    )
    model = CNNEncoder(n_ensemble=3, **options).fit(X, y)
    assert model.early_stopping_metric == "log_likelihood"
    ensemble_losses = model.history_[:, "valid_ensemble_loss"]
    n_valid = int(np.ceil(0.1 * len(X)))
    # the fitted (averaged) model's held-out NLL is the best epoch's recorded loss
    held_out = model.log_likelihood(X[-n_valid:], y[-n_valid:], per_neuron=True)
    assert -held_out.mean(axis=0).sum() == pytest.approx(min(ensemble_losses), rel=1e-4)
    assert np.argmin(ensemble_losses) < len(ensemble_losses) - 1
    # the members, each judged alone, do worse than their average
    members = model.history_[:, "valid_loss"]
    assert all(np.array(members) / 3 >= np.array(ensemble_losses) - 1e-6)
    # one model is its own average: it stops on skorch's validation loss
    single = CNNEncoder(n_ensemble=1, **options).fit(X, y)
    assert "valid_ensemble_loss" not in single.history_[-1]
    assert dict(single.net_.callbacks_)["early_stopping"].monitor == "valid_loss"


@pytest.mark.parametrize("metric", ["log_likelihood", "correlation"])
def test_validation_scores_of_a_family_with_fitted_dispersion_build_no_graph(metric):
    # the dispersion is a trained parameter: a score computed from it outside no_grad
    # would build a graph and warn when converted to a number
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 8, 8))
    y = rng.poisson(np.exp(0.5 * X[:, 4, 4])[:, None] * np.ones((1, 2))).astype(float)
    model = CNNEncoder(family="negative_binomial", n_layers=1,
                       early_stopping_metric=metric, **{**SMALL, "n_ensemble": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y)
    key = "valid_corr" if metric == "correlation" else "valid_ensemble_loss"
    assert np.isfinite(model.history_[:, key]).all()


def _mean_correlation(prediction, y):
    return np.mean([np.corrcoef(prediction[:, k], y[:, k])[0, 1] for k in range(y.shape[1])])


@pytest.mark.parametrize("n_ensemble", [1, 3])
def test_correlation_stopping_restores_the_epoch_of_the_best_held_out_correlation(
    small_images, n_ensemble
):
    X, y = small_images
    model = CNNEncoder(
        validation_split="blocked", lr=0.05, patience=3, max_epochs=40, n_ensemble=n_ensemble,
        early_stopping_metric="correlation",
        **{k: v for k, v in SMALL.items() if k not in ("max_epochs", "n_ensemble")},
    ).fit(X, y)
    valid_corr = model.history_[:, "valid_corr"]
    n_valid = int(np.ceil(0.1 * len(X)))
    # the recorded score is the mean Pearson correlation of the (averaged) fitted
    # model's predictions with the held-out responses, computed here independently
    held_out = _mean_correlation(model.predict(X[-n_valid:]), y[-n_valid:])
    assert held_out == pytest.approx(max(valid_corr), abs=1e-5)
    assert len(valid_corr) < 40
    assert np.argmax(valid_corr) < len(valid_corr) - 1


def test_validation_correlation_weights_samples_and_leaves_out_missing_responses():
    rng = np.random.default_rng(0)
    prediction = rng.random((50, 2)) + 0.1
    y = rng.poisson(3 * prediction).astype(float)
    weight = rng.integers(0, 3, 50).astype(float)
    y[:10, 1] = np.nan
    mean = torch.as_tensor(prediction)
    responses = torch.as_tensor(y)
    observed = ~torch.isnan(responses)
    w = torch.where(observed, torch.as_tensor(weight)[:, None].expand_as(mean), 0.0)
    r = torch.where(observed, responses, 0.0)
    moments = torch.stack([w, w * mean, w * r, w * mean**2, w * r**2, w * mean * r]).sum(1)
    expected = []
    for k in range(2):
        keep = ~np.isnan(y[:, k])
        cov = np.cov(prediction[keep, k], y[keep, k], aweights=weight[keep])
        expected.append(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
    assert ValidationCorrelation.correlation(moments) == pytest.approx(np.mean(expected))
    # a neuron whose held-out responses are constant is left out; a constant
    # prediction of varying responses counts 0
    constant = moments.clone()
    constant[:, 0] = torch.stack([w[:, 0].sum(), 2 * w[:, 0].sum(), 2 * w[:, 0].sum(),
                                  4 * w[:, 0].sum(), 4 * w[:, 0].sum(), 4 * w[:, 0].sum()])
    assert ValidationCorrelation.correlation(constant) == pytest.approx(expected[1])
    flat_prediction = moments.clone()
    flat_prediction[1, 0] = flat_prediction[0, 0]  # sum w m = sum w: m = 1
    flat_prediction[3, 0] = flat_prediction[0, 0]
    flat_prediction[5, 0] = flat_prediction[2, 0]
    assert ValidationCorrelation.correlation(flat_prediction) == pytest.approx(expected[1] / 2)
    nothing = torch.zeros_like(moments)
    assert np.isnan(ValidationCorrelation.correlation(nothing))


def test_constant_held_out_responses_warn_that_the_correlation_cannot_rank_epochs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 1, 6, 6))
    y = np.r_[rng.poisson(1.0, 50), np.zeros(10)].astype(float)
    model = CNNEncoder(
        validation_split="blocked", early_stopping_metric="correlation",
        **{**SMALL, "validation_fraction": 0.15},
    )
    with pytest.warns(UserWarning, match="held-out responses are constant"):
        model.fit(X, y)
    assert np.isnan(model.history_[:, "valid_corr"]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.set_params(early_stopping_metric="log_likelihood").fit(X, y)


@pytest.mark.parametrize(
    ("metric", "key", "best"),
    [("log_likelihood", "valid_loss", min), ("correlation", "valid_corr", max)],
)
def test_n_init_keeps_the_restart_with_the_best_validation_score(
    small_images, metric, key, best
):
    X, y = small_images
    single = CNNEncoder(early_stopping_metric=metric, **SMALL).fit(X, y)
    several = CNNEncoder(early_stopping_metric=metric, n_init=3, **SMALL).fit(X, y)
    best_single = best(single.history_[:, key])
    best_several = best(several.history_[:, key])
    assert best(best_several, best_single) == best_several


def test_warm_start_continues_from_the_previous_weights(small_images):
    X, y = small_images
    # without BatchNorm, whose running statistics follow the batches whatever lr
    model = CNNEncoder(batch_norm=False, **SMALL).fit(X, y)
    before = model.predict(X)
    model.set_params(warm_start=True, lr=1e-9, max_epochs=1)
    model.fit(X, y)
    assert len(model.history_) == 1
    warm_change = np.abs(model.predict(X) - before).max()
    cold = clone(model).set_params(warm_start=False).fit(X, y)
    cold_change = np.abs(cold.predict(X) - before).max()
    assert warm_change < 1e-5 and cold_change > 1e-2
    with pytest.raises(ValueError, match="warm_start needs inputs"):
        model.fit(X[:, :10, :10], y)


def test_readout_biases_start_at_the_link_of_the_mean_response(small_images):
    X, y = small_images
    model = CNNEncoder(**{**SMALL, "max_epochs": 1}, lr=1e-9).fit(X, y)
    expected = get_link("softplus").link(y.mean(axis=0))
    np.testing.assert_allclose(
        model.readout_module_.bias.detach().numpy(), expected, rtol=1e-4
    )


def test_zero_sample_weights_equal_removing_the_samples(small_images):
    X, y = small_images
    options = dict(batch_norm=False, early_stopping=False, batch_size=1000, **SMALL)
    weights = np.r_[np.ones(120), np.zeros(80)]
    weighted = CNNEncoder(**options).fit(X, y, sample_weight=weights)
    subset = CNNEncoder(**options).fit(X[:120], y[:120])
    np.testing.assert_allclose(weighted.predict(X), subset.predict(X), rtol=1e-4)


def test_gaussian_family_fits_negative_calcium_like_responses(small_images):
    X, y = small_images
    responses = y - y.mean(axis=0)  # can be negative, like dF/F
    model = CNNEncoder(family="gaussian", **SMALL).fit(X, responses)
    assert model.link_.name == "identity"
    assert model.dispersion_.shape == (3,) and np.all(model.dispersion_ > 0)
    assert np.isfinite(model.score(X, responses))


@pytest.mark.parametrize(
    "options",
    [
        dict(readout="gaussian"),
        dict(readout="pooled", pooling="avg", padding="same"),
        dict(readout="dense", activation="softplus", batch_norm=False, link="exp"),
        dict(readout="factorized", stride=2, kernel_size=3, link="elu1", n_layers=1),
        dict(weight_sharing=False, gamma_input=0.1, gamma_hidden=0.1, gamma_readout=1e-3,
             gamma_activity=0.1, weight_decay=1e-4),
    ],
)
def test_architectures_and_penalties_train(small_images, options):
    X, y = small_images
    model = CNNEncoder(**{**SMALL, **options}).fit(X, y)
    prediction = model.predict(X)
    assert prediction.shape == y.shape and np.all(prediction > 0)
    losses = model.history_[:, "train_loss"]
    assert np.all(np.isfinite(losses))


def test_locally_connected_model_has_h_w_times_more_first_layer_weights(small_images):
    X, y = small_images
    options = dict(SMALL, n_layers=1, kernel_size=3, padding="same", max_epochs=1)
    shared = CNNEncoder(**options).fit(X, y)
    local = CNNEncoder(weight_sharing=False, **options).fit(X, y)
    conv_weights = shared.core_.blocks[0].conv.weight.numel()
    local_weights = local.core_.blocks[0].conv.weight.numel()
    assert conv_weights == 3 * 3 * 1 * 4
    assert local_weights == 12 * 12 * conv_weights
    assert local.n_parameters_ - shared.n_parameters_ == local_weights - conv_weights


def test_verbose_prints_the_epoch_table(small_images, capsys):
    X, y = small_images
    CNNEncoder(verbose=1, **SMALL).fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_loss" in out and out.count("\n") >= 3
    CNNEncoder(verbose=0, **SMALL).fit(X, y)
    assert capsys.readouterr().out == ""


@pytest.mark.slow  # worker processes import torch; tests/test_threads.py fits in parallel threads
def test_grid_search_over_architectures_in_parallel(small_images):
    X, y = small_images
    search = GridSearchCV(
        CNNEncoder(**{**SMALL, "max_epochs": 2}),
        {"n_layers": [1, 2], "readout": ["factorized", "pooled"]},
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.n_layers in (1, 2)


# ---------------------------------------------------------------- persistence
def test_clone_and_pickle_round_trip(small_images):
    X, y = small_images
    model = CNNEncoder(readout="gaussian", **SMALL).fit(X, y)
    assert clone(model).get_params() == model.get_params()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_pickle_holds_tensors_only_in_skorchs_device_mapped_part(small_images):
    """skorch pickles module_, optimizer_ and criterion_ so that they load on any device;
    a tensor pickled anywhere else would make a GPU-fitted model fail to load on a CPU."""
    X, y = small_images
    model = CNNEncoder(**SMALL).fit(X, y)
    found = []

    class Spy(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, torch.Generator):
                # the shuffling generator lives on the CPU by design; its state
                # is a CPU tensor, loadable anywhere
                assert obj.device.type == "cpu"
                return torch.Generator, ()
            if isinstance(obj, (torch.Tensor, torch.optim.Optimizer, torch.nn.Module)):
                found.append(type(obj).__name__)
            return NotImplemented

    Spy(io.BytesIO()).dump(model)
    assert found == []
    restored = pickle.loads(pickle.dumps(model))
    assert restored.net_.module is restored.net_.module_


def test_model_marked_as_fitted_on_cuda_predicts_on_cpu_after_unpickling(small_images):
    X, y = small_images
    model = CNNEncoder(**SMALL).fit(X, y)
    expected = model.predict(X)
    # what a CUDA fit leaves behind, as seen by a machine without CUDA
    model.device_ = torch.device("cuda")
    model.net_.device = "cuda"
    payload = pickle.dumps(model)
    if torch.cuda.is_available():
        pytest.skip("this check simulates a machine without CUDA")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = pickle.loads(payload)
    assert any("not available" in str(w.message) for w in caught)
    assert restored.device_ == torch.device("cpu")
    np.testing.assert_allclose(restored.predict(X), expected)


@pytest.mark.gpu
def test_cuda_fit_predicts_and_unpickles_on_a_cpu_only_process(small_images, tmp_path):
    X, y = small_images
    model = CNNEncoder(**{**SMALL, "device": "cuda", "max_epochs": 5}).fit(X, y)
    assert model.device_.type == "cuda"
    assert next(model.net_.module_.parameters()).is_cuda
    expected = model.predict(X)
    np.save(tmp_path / "X.npy", X)
    with open(tmp_path / "model.pkl", "wb") as file:
        pickle.dump(model, file)
    script = textwrap.dedent(
        f"""
        import pickle, warnings
        import numpy as np, torch
        assert not torch.cuda.is_available()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = pickle.load(open({str(tmp_path / "model.pkl")!r}, "rb"))
        assert model.device_.type == "cpu"
        np.save({str(tmp_path / "pred.npy")!r}, model.predict(np.load({str(tmp_path / "X.npy")!r})))
        """
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    np.testing.assert_allclose(np.load(tmp_path / "pred.npy"), expected, rtol=1e-4)


@pytest.mark.gpu
def test_cuda_and_cpu_fits_agree_in_quality(v1):
    gpu = CNNEncoder(channels=8, max_epochs=30, device="cuda", random_state=0)
    gpu.fit(v1["X_train"], v1["y_train"])
    bits = _bits(v1, gpu.predict(v1["X_test"]))
    oracle = _bits(v1, v1["mean_test"])
    assert bits[4:].mean() > 0.6 * oracle[4:].mean()


def test_lagged_design_gives_the_glm_filter_in_the_same_lag_order():
    # one lag order for the library: TimeLagger's design (lag 0 first) feeds the 1-D CNN
    # as it is, and a linear one-layer CNN recovers the simulated filter in the order of
    # the PoissonGLM fitted on the same design
    from sklearn_cnnenc.preprocessing import TimeLagger

    rng = np.random.default_rng(0)
    n_lags = 8
    lags = np.arange(n_lags)
    true = 0.8 * np.exp(-lags / 2.0) * np.sin(lags / 1.5 + 0.3)  # lag 0 first, peak at lag 1
    X = TimeLagger(n_lags=n_lags).fit_transform(rng.standard_normal((2000, 1)))
    y = rng.poisson(np.exp(X @ true - 0.5)).astype(float)
    glm = PoissonGLM(alpha=1e-6).fit(X, y).coef_.ravel()
    cnn = CNNEncoder(
        input_type="lagged", n_layers=1, channels=1, kernel_size=n_lags, batch_norm=False,
        activation="identity", link="exp", gamma_input=0.0, lr=3e-2, max_epochs=30, batch_size=200,
        early_stopping=False, device="cpu", random_state=0,
    ).fit(X, y)
    assert cnn.input_shape_ == (n_lags, 1) and cnn.input_type_ == "lagged"
    # the CNN's filter in input space: log-rate response to a unit impulse at each lag
    eta = np.log(cnn.predict(np.vstack([np.zeros(n_lags), np.eye(n_lags)]))).ravel()
    filt = eta[1:] - eta[0]
    assert np.argmax(filt) == np.argmax(glm) == np.argmax(true) == 1
    assert np.corrcoef(filt, glm)[0, 1] > 0.9 > np.corrcoef(filt[::-1], glm)[0, 1]
    np.testing.assert_allclose(filt, true, atol=0.1)
    # several signals: (n_lags, n_columns) like LNModel's input_shape
    X2 = TimeLagger(n_lags=4).fit_transform(rng.standard_normal((300, 2)))
    two = CNNEncoder(input_type="lagged", input_shape=(4, 2), n_layers=1, channels=2,
                     kernel_size=4, max_epochs=1, device="cpu", random_state=0).fit(X2, y[:300])
    assert two.input_shape_ == (4, 2) and two.predict(X2).shape == (300,)
