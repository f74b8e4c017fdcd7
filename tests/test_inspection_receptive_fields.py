import numpy as np
import pytest
import torch

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data, make_v1_population
from sklearn_cnnenc.inspection import (
    count_parameters,
    empirical_receptive_field,
    receptive_field_size,
)
from sklearn_cnnenc.inspection._receptive_fields import core_input, read_by_core
from sklearn_cnnenc.nn import CausalCore1d, Core2d
from sklearn_cnnenc.utils import evaluating

SMALL = dict(channels=3, max_epochs=1, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def images():
    data = make_v1_population(120, n_simple=2, n_complex=1, image_size=16, random_state=0)
    return data.X, data.y


@pytest.mark.parametrize("seed", range(5))
def test_chapter_formula_for_stride_one_dilated_stacks(seed):
    rng = np.random.default_rng(seed)
    kernel = int(rng.integers(2, 6))
    dilations = [int(d) for d in rng.integers(1, 9, size=rng.integers(1, 6))]
    assert receptive_field_size(kernel, dilations) == 1 + (kernel - 1) * sum(dilations)
    # exponential dilations: the field doubles with every layer
    assert receptive_field_size(3, [1, 2, 4, 8, 16]) == 2**6 - 1


def _random_stack(rng):
    n_layers = int(rng.integers(1, 4))
    options = dict(
        n_layers=n_layers,
        kernel_size=[int(k) for k in rng.integers(1, 5, n_layers)],
        dilation=[int(d) for d in rng.integers(1, 4, n_layers)],
        stride=[int(s) for s in rng.integers(1, 3, n_layers)],
        pooling=[None, ("max", 2), ("avg", 2), ("max", 3)][int(rng.integers(0, 4))],
        padding=["valid", "same"][int(rng.integers(0, 2))],
        activation=["relu", "elu"][int(rng.integers(0, 2))],
    )
    pool = None if options["pooling"] is None else options["pooling"][1]
    analytic = receptive_field_size(
        options["kernel_size"], options["dilation"], options["stride"], pool
    )
    return options, analytic


@pytest.mark.parametrize("seed", range(16))
def test_analytic_field_equals_gradient_support_of_random_strided_dilated_pooled_stacks(seed):
    rng = np.random.default_rng(seed)
    options, analytic = _random_stack(rng)
    torch.manual_seed(seed)
    causal = seed % 2 == 1
    # large enough that the centre unit's field lies inside the input
    size = 2 * analytic + 12
    if causal:
        core = CausalCore1d(2, size, channels=3, **options).eval()
        X = rng.normal(size=(6, 2, size))
    else:
        core = Core2d(2, (size, size), channels=3, **options).eval()
        X = rng.normal(size=(6, 2, size, size))
    expected = (analytic,) if causal else (analytic, analytic)
    # three implementations agree: the formula on the constructor lists, the
    # modules' own geometry, and the support of the input gradient
    assert receptive_field_size(core) == core.receptive_field == expected
    field = empirical_receptive_field(core, X)
    assert field.extent == expected
    assert field.mask.shape == ((size,) if causal else (size, size))


def test_dilated_field_has_holes_but_the_chapter_extent():
    core = Core2d(1, (20, 20), n_layers=1, channels=2, kernel_size=3, dilation=4).eval()
    X = np.random.default_rng(0).normal(size=(3, 1, 20, 20))
    field = empirical_receptive_field(core, X)
    rows = np.flatnonzero(field.mask.any(axis=1))
    assert field.extent == (9, 9)
    assert np.all(np.diff(rows) == 4)  # a dilated kernel skips three positions in four


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=[5, 3]),
        dict(kernel_size=3, n_layers=3, dilation="exponential", padding="same"),
        dict(kernel_size=5, n_layers=1, stride=2, pooling="max"),
    ],
)
def test_fitted_cnn_receptive_field_agrees_with_its_attribute_and_gradients(images, options):
    X, y = images
    model = CNNEncoder(n_ensemble=1, **{**SMALL, **options}).fit(X, y)
    assert receptive_field_size(model) == model.receptive_field_
    field = empirical_receptive_field(model, X[:8])
    assert field.extent == model.receptive_field_
    assert field.gradient.shape == field.sensitivity.shape == (16, 16)


def test_causal_model_field_counts_time_bins():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 1, 24)), rng.poisson(1.0, 200).astype(float)
    model = CNNEncoder(n_ensemble=1, n_layers=3, kernel_size=3, dilation="exponential",
                       input_type="time_series", **SMALL).fit(X, y)
    assert receptive_field_size(model) == model.receptive_field_ == (15,)
    assert empirical_receptive_field(model, X[:5]).extent == (15,)
    # the neuron's own field: the last 15 bins of each window, nothing before
    neuron = empirical_receptive_field(model, X[:5], neuron=0)
    assert neuron.mask.shape == (24,)
    assert not neuron.mask[:9].any() and neuron.mask[9:].all()


def test_time_series_core_input_through_the_readout_is_the_models_linear_predictor(
    time_series_cnn,
):
    """The inspection tools feed the core what predict feeds it: the last 7 bins."""
    model, X = time_series_cnn
    for stimuli in (X[:10], X[:10].reshape(10, -1)):
        core, inputs, n_read = core_input(model, stimuli, "test")
        assert tuple(inputs.shape) == (10, 2, 30) and n_read == 7
        with torch.no_grad(), evaluating(model.net_.module_):
            eta = model.readout_module_(core(read_by_core(inputs, n_read)))
        np.testing.assert_allclose(
            model.link_.inverse(eta).numpy(), model.predict(X[:10]), rtol=1e-5
        )


def test_time_series_core_field_is_laid_out_like_the_window(time_series_cnn):
    """neuron=None and neuron=k give masks over the same 30 bins: the core reads the last 7."""
    model, X = time_series_cnn
    core_unit = empirical_receptive_field(model, X[:5])
    neuron = empirical_receptive_field(model, X[:5], neuron=1)
    assert core_unit.mask.shape == neuron.mask.shape == (30,)
    assert core_unit.extent == neuron.extent == model.receptive_field_
    np.testing.assert_array_equal(core_unit.mask, np.arange(30) >= 23)
    np.testing.assert_array_equal(neuron.mask, core_unit.mask)
    # the gradient of the last core bin, by hand
    inputs = torch.tensor(X[:5], dtype=torch.float32, requires_grad=True)
    with evaluating(model.core_):
        model.core_(inputs[..., -7:])[:, :, -1].sum().backward()
    np.testing.assert_allclose(
        core_unit.gradient, inputs.grad.sum(dim=1).mean(dim=0).numpy(), rtol=1e-5, atol=1e-7
    )


def test_glm_neuron_field_is_its_filter():
    data = make_glm_data(n_samples=500, n_features=6, n_neurons=2, random_state=0)
    glm = PoissonGLM(alpha=1e-3).fit(data.X, data.y)
    field = empirical_receptive_field(glm, data.X[:10], neuron=1)
    # d eta / d x = w exactly, for every sample
    np.testing.assert_allclose(field.gradient, glm.coef_[1], rtol=1e-10)
    assert field.mask.all() and field.extent == (6,)


def test_ln_neuron_field_is_reshaped_to_its_input_shape():
    data = make_glm_data(n_samples=400, n_features=12, random_state=0)
    model = LNModel(input_shape=(3, 4), nonlinearity="identity").fit(data.X, data.y)
    field = empirical_receptive_field(model, data.X[:5], neuron=0)
    np.testing.assert_allclose(field.gradient, model.linear_filter_[0], rtol=1e-8)
    assert field.extent == (3, 4)


def test_weight_sharing_divides_parameters_by_the_number_of_positions(images):
    X, y = images
    options = dict(SMALL, n_layers=1, kernel_size=5, batch_norm=False)
    shared = CNNEncoder(n_ensemble=1, **options).fit(X, y)
    local = CNNEncoder(n_ensemble=1, weight_sharing=False, **options).fit(X, y)
    conv = count_parameters(shared, by_module=True)["predictor.core.blocks.0.conv"]
    lc = count_parameters(local, by_module=True)["predictor.core.blocks.0.conv"]
    height, width = shared.core_.output_size
    assert conv == 5 * 5 * 1 * 3 + 3  # weights and one bias per channel
    # the chapter's ratio: exactly 1 / (H W) here, biases included
    assert conv / lc == pytest.approx(1 / (height * width))
    assert count_parameters(shared) == shared.n_parameters_
    assert count_parameters(shared.core_) == conv
    assert sum(count_parameters(local, by_module=True).values()) == local.n_parameters_


def test_bad_inputs_name_what_is_expected(images):
    X, y = images
    glm = PoissonGLM().fit(X.reshape(len(X), -1), y)
    with pytest.raises(TypeError, match="needs a convolutional core.*PoissonGLM"):
        receptive_field_size(glm)
    with pytest.raises(TypeError, match="needs a convolutional core"):
        empirical_receptive_field(glm, X.reshape(len(X), -1))
    with pytest.raises(ValueError, match="one common, non-zero length"):
        receptive_field_size([3, 3], dilations=[1, 2, 4])
    with pytest.raises(ValueError, match="positive integers"):
        receptive_field_size([3, 0])
    with pytest.raises(TypeError, match="kernel_sizes must be"):
        receptive_field_size("3")
    model = CNNEncoder(n_ensemble=1, kernel_size=[5, 3], **SMALL).fit(X, y)
    with pytest.raises(ValueError, match=r"neuron must be an integer in \[0, 3\)"):
        empirical_receptive_field(model, X, neuron=3)
    with pytest.raises(ValueError, match="unit must be"):
        empirical_receptive_field(model, X, unit=(50, 0))
    with pytest.raises(ValueError, match="takes images of shape"):
        empirical_receptive_field(model.core_, X[:, :8, :8])
    with pytest.raises(TypeError, match="fitted encoding model"):
        count_parameters(object())
