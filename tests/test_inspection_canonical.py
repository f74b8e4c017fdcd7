import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_energy_model_data, make_v1_population
from sklearn_cnnenc.inspection import canonicalize
from sklearn_cnnenc.nn import DenseReadout, FactorizedReadout, GaussianReadout

# one model (not the small-data ensemble): canonicalize takes one CNN
SMALL = dict(channels=4, kernel_size=[5, 3], activation="relu", max_epochs=3, n_ensemble=1,
             device="cpu", random_state=0)


@pytest.fixture(scope="module")
def images():
    data = make_v1_population(200, n_simple=2, n_complex=2, image_size=12, random_state=0)
    return data.X, data.y


def _state(model):
    return {k: v.detach().double().clone() for k, v in model.net_.module_.state_dict().items()
            if v.dtype.is_floating_point}


def _assert_same_parameters(a, b, rtol=1e-5):
    first, second = _state(a), _state(b)
    assert first.keys() == second.keys()
    for key in first:
        scale = max(float(first[key].abs().max()), 1e-12)
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=rtol * scale,
                                   msg=f"parameter {key} differs")


def _shuffled(n, rng):
    """A random permutation of n items that moves at least one."""
    while True:
        order = rng.permutation(n)
        if np.any(order != np.arange(n)):
            return torch.as_tensor(order)


@torch.no_grad()
def _permute_and_rescale(model, rng):
    """A copy of ``model`` with every hidden channel permuted and positively rescaled
    (through BatchNorm's affine parameters when there is one), the inverse applied to
    the next layer or readout: the same function, other parameters."""
    other = copy.deepcopy(model)
    core, readout = other.core_, other.readout_module_
    blocks = core.blocks
    for index, block in enumerate(blocks):
        n = block.conv.out_channels
        order = _shuffled(n, rng)
        scale = torch.as_tensor(rng.uniform(0.2, 5.0, n), dtype=block.conv.weight.dtype)
        block.conv.weight.copy_(block.conv.weight[order])
        if isinstance(block.norm, torch.nn.BatchNorm2d):
            norm = block.norm
            for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
                tensor.copy_(tensor[order])
            norm.weight.mul_(scale)
            norm.bias.mul_(scale)
        else:
            block.conv.bias.copy_(block.conv.bias[order] * scale)
            block.conv.weight.mul_(scale[:, None, None, None])
        if index + 1 < len(blocks):
            following = blocks[index + 1].conv.weight
            following.copy_(following[:, order] / scale[None, :, None, None])
        elif isinstance(readout, FactorizedReadout | GaussianReadout):
            readout.features.copy_(readout.features[:, order] / scale)
        elif isinstance(readout, DenseReadout):
            weight = readout.weight.view(readout.n_outputs, readout.in_channels, -1)
            weight.copy_(weight[:, order] / scale[None, :, None])
        else:
            readout.weight.copy_(readout.weight[:, order] / scale)
    if isinstance(readout, FactorizedReadout):
        # the readout's own symmetry: mask times b, features over b (any sign)
        factor = torch.as_tensor(rng.uniform(0.3, 3.0, readout.n_outputs)
                                 * rng.choice([-1.0, 1.0], readout.n_outputs),
                                 dtype=readout.spatial.dtype)
        readout.spatial.mul_(factor[:, None])
        readout.features.div_(factor[:, None])
    return other


@pytest.mark.parametrize(
    "options",
    [
        dict(readout="factorized"),
        dict(readout="gaussian"),
        dict(readout="pooled", pooling="max", padding="same"),
        dict(readout="dense", batch_norm=False),
        dict(readout="factorized", n_layers=3, kernel_size=3, stride=[2, 1], padding="same"),
        dict(readout="pooled", activation="identity"),
    ],
)
def test_canonical_cnn_predicts_the_same_and_removes_permutations_and_scales(images, options):
    X, y = images
    model = CNNEncoder(**{**SMALL, **options}).fit(X, y)
    before = _state(model)
    canonical = canonicalize(model)
    np.testing.assert_allclose(canonical.predict(X), model.predict(X), rtol=2e-5)
    # the input model is untouched
    _assert_same_parameters_dict(before, _state(model))
    assert model.batch_norm == options.get("batch_norm", True)

    # BatchNorm folded, unit-norm incoming weights, channels sorted by outgoing weight
    assert canonical.batch_norm is False
    blocks = canonical.core_.blocks
    assert all(isinstance(block.norm, torch.nn.Identity) for block in blocks)
    for index, block in enumerate(blocks):
        weight = block.conv.weight.detach()
        torch.testing.assert_close(weight.flatten(1).norm(dim=1),
                                   torch.ones(weight.shape[0]), rtol=0, atol=1e-5)
        if index + 1 < len(blocks):
            outgoing = blocks[index + 1].conv.weight.detach().transpose(0, 1).flatten(1)
            assert torch.all(torch.diff(outgoing.norm(dim=1)) <= 1e-6)

    other = _permute_and_rescale(model, np.random.default_rng(1))
    np.testing.assert_allclose(other.predict(X), model.predict(X), rtol=2e-5)
    assert not np.allclose(_state(other)["predictor.core.blocks.0.conv.weight"],
                           before["predictor.core.blocks.0.conv.weight"])
    _assert_same_parameters(canonicalize(other), canonical)
    # already canonical: a fixed point
    _assert_same_parameters(canonicalize(canonical), canonical)


def _assert_same_parameters_dict(first, second):
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_canonical_causal_cnn_with_last_step_readout():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 2, 20)), rng.poisson(1.0, size=(300, 3)).astype(float)
    options = {**SMALL, "kernel_size": 3}
    model = CNNEncoder(n_layers=3, dilation="exponential", input_type="time_series",
                       **options).fit(X, y)
    canonical = canonicalize(model)
    np.testing.assert_allclose(canonical.predict(X), model.predict(X), rtol=2e-5)
    other = _permute_and_rescale(model, np.random.default_rng(2))
    _assert_same_parameters(canonicalize(other), canonical)


def test_canonical_cnn_pickles_clones_and_warm_starts_as_what_it_is(images):
    X, y = images
    canonical = canonicalize(CNNEncoder(**SMALL).fit(X, y))
    restored = pickle.loads(pickle.dumps(canonical))
    np.testing.assert_array_equal(restored.predict(X), canonical.predict(X))
    assert clone(canonical).get_params()["batch_norm"] is False
    assert canonical.n_parameters_ == sum(
        p.numel() for p in canonical.net_.module_.parameters()
    )
    # the module matches its parameters: a warm start loads it without complaint
    before = canonical.predict(X)
    canonical.set_params(warm_start=True, lr=1e-12, max_epochs=1, early_stopping=False)
    canonical.fit(X, y)
    np.testing.assert_allclose(canonical.predict(X), before, rtol=1e-5)


@pytest.fixture(scope="module")
def energy_data():
    return make_energy_model_data(n_samples=2000, n_lags=8, random_state=0)


def _fit_ln(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LNModel(n_init=2, random_state=0, max_iter=200, **options).fit(data.X, data.y)


@torch.no_grad()
def _ln_symmetry(model, degree, flip_signs, rng):
    other = copy.deepcopy(model)
    predictor = other.net_.module_.predictor
    k = model.n_filters
    order = _shuffled(k, rng)
    scale = torch.as_tensor(rng.uniform(0.3, 3.0, k), dtype=predictor.weights.dtype)
    sign = torch.as_tensor(rng.choice([-1.0, 1.0], k) if flip_signs else np.ones(k),
                           dtype=scale.dtype)
    if predictor.filter_rank is None:
        predictor.filters.copy_(predictor.filters[:, order] * (scale * sign)[None, :, None])
    else:
        predictor.temporal.copy_(predictor.temporal[:, order] * scale[None, :, None, None])
        predictor.spatial.copy_(predictor.spatial[:, order] * sign[None, :, None, None])
    predictor.weights.copy_(predictor.weights[:, order] / scale**degree)
    if predictor.filter_bias is not None:
        predictor.filter_bias.copy_(predictor.filter_bias[:, order] * scale)
    other._set_fitted_attributes()
    return other


@pytest.mark.parametrize(
    "options, degree, flip",
    [
        (dict(nonlinearity="relu"), 1, False),
        (dict(nonlinearity="square"), 2, True),
        (dict(nonlinearity="square", filter_rank=1, input_shape=(4, 2)), 2, True),
        (dict(nonlinearity="relu", filter_rank=1, input_shape=(4, 2)), 1, False),
    ],
)
def test_canonical_ln_filters_remove_permutation_scale_and_sign(energy_data, options, degree,
                                                                 flip):
    model = _fit_ln(energy_data, n_filters=3, **options)
    canonical = canonicalize(model)
    X = energy_data.X
    np.testing.assert_allclose(canonical.predict(X), model.predict(X), rtol=1e-10)
    flat = canonical.filters_.reshape(*canonical.filters_.shape[:2], -1)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=2), 1.0)
    assert np.all(np.diff(np.abs(canonical.weights_), axis=1) <= 1e-12)
    other = _ln_symmetry(model, degree, flip, np.random.default_rng(0))
    np.testing.assert_allclose(other.predict(X), model.predict(X), rtol=1e-10)
    twin = canonicalize(other)
    np.testing.assert_allclose(twin.filters_, canonical.filters_, atol=1e-10)
    np.testing.assert_allclose(twin.weights_, canonical.weights_, atol=1e-10)


def test_energy_model_rotated_within_its_subspace_has_one_canonical_form(energy_data):
    model = _fit_ln(energy_data, n_filters=2, nonlinearity="square")
    # a positive-definite energy model sum_j w_j (h_j . x)^2: any rotation R of
    # the rows of diag(sqrt(w)) H, with unit weights, is the same function
    canonical = canonicalize(model)
    if np.any(canonical.weights_ <= 0):
        pytest.skip("fitted quadratic form is not positive definite")
    other = copy.deepcopy(model)
    predictor = other.net_.module_.predictor
    angle = 0.7
    rotation = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]],
                            dtype=predictor.filters.dtype)
    with torch.no_grad():
        root = predictor.weights.clamp_min(0).sqrt()
        predictor.filters.copy_(rotation @ (root[:, :, None] * predictor.filters))
        predictor.weights.fill_(1.0)
    other._set_fitted_attributes()
    X = energy_data.X
    np.testing.assert_allclose(other.predict(X), model.predict(X), rtol=1e-8)
    twin = canonicalize(other)
    np.testing.assert_allclose(twin.filters_, canonical.filters_, atol=1e-8)
    np.testing.assert_allclose(twin.weights_, canonical.weights_, atol=1e-8)


def test_identity_ln_keeps_only_the_identified_filter_sum(energy_data):
    model = _fit_ln(energy_data, n_filters=3, nonlinearity="identity")
    canonical = canonicalize(model)
    np.testing.assert_allclose(canonical.predict(energy_data.X), model.predict(energy_data.X))
    np.testing.assert_allclose(canonical.filters_[:, 0], model.linear_filter_)
    np.testing.assert_array_equal(canonical.filters_[:, 1:], 0.0)


def test_glm_is_returned_as_an_equal_copy(energy_data):
    glm = PoissonGLM().fit(energy_data.X, energy_data.y)
    copied = canonicalize(glm)
    assert copied is not glm
    np.testing.assert_array_equal(copied.coef_, glm.coef_)


@pytest.mark.parametrize("activation", ["elu", "softplus"])
def test_non_homogeneous_cnn_is_refused(images, activation):
    X, y = images
    model = CNNEncoder(**{**SMALL, "activation": activation, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match=f"positively homogeneous.*activation='{activation}'"):
        canonicalize(model)


@pytest.mark.parametrize("nonlinearity", ["softplus", "exp"])
def test_non_homogeneous_ln_is_refused(energy_data, nonlinearity):
    model = _fit_ln(energy_data, nonlinearity=nonlinearity)
    with pytest.raises(ValueError, match=f"nonlinearity='{nonlinearity}' has no such symmetry"):
        canonicalize(model)


def test_other_refusals(images, energy_data):
    X, y = images
    local = CNNEncoder(**{**SMALL, "weight_sharing": False, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="locally connected"):
        canonicalize(local)
    separable = _fit_ln(
        type("D", (), {"X": np.hstack([energy_data.X] * 2), "y": energy_data.y}),
        n_filters=2, nonlinearity="identity", filter_rank=1, input_shape=(8, 2),
    )
    with pytest.raises(ValueError, match="equivalent_glm"):
        canonicalize(separable)
    ensemble = CNNEncoder(**{**SMALL, "n_ensemble": 2, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="n_ensemble=1"):
        canonicalize(ensemble)
    with pytest.raises(NotFittedError):
        canonicalize(CNNEncoder())
    with pytest.raises(TypeError, match="canonicalize needs a fitted CNNEncoder"):
        canonicalize(BayesianDecoderLike())


class BayesianDecoderLike(BaseEstimator):
    """A fitted estimator that is not an encoding model."""

    def fit(self, X=None, y=None):
        return self

    def __init__(self):
        self.classes_ = np.arange(2)
