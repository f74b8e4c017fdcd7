import numpy as np
import pytest
import torch
from scipy.signal import correlate

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.inspection import conv_weight_gradient, translation_equivariance_error
from sklearn_cnnenc.nn import CausalCore1d, Core2d
from sklearn_cnnenc.stimuli import gabor_patch

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "options",
    [
        dict(n_layers=2, kernel_size=[5, 3]),
        dict(n_layers=3, kernel_size=3, dilation="exponential", padding="same"),
        dict(n_layers=2, kernel_size=3, activation="relu", padding=["valid", 1]),
    ],
)
@pytest.mark.parametrize("shift", [1, 3, (2, -1)])
def test_stride_one_cores_are_translation_equivariant(options, shift):
    torch.manual_seed(0)
    core = Core2d(2, (24, 24), channels=4, **options)
    X = RNG.normal(size=(4, 2, 24, 24))
    assert translation_equivariance_error(core, X, shift) < 1e-6


@pytest.mark.parametrize("shift", [1, 2, 5])
def test_stride_one_causal_cores_are_equivariant_in_time(shift):
    torch.manual_seed(0)
    core = CausalCore1d(1, 40, n_layers=3, channels=4, kernel_size=3, dilation="exponential")
    X = RNG.normal(size=(4, 1, 40))
    assert translation_equivariance_error(core, X, shift) < 1e-6


@pytest.mark.parametrize(
    "options, total_stride",
    [
        (dict(n_layers=2, kernel_size=3, stride=[2, 1]), 2),
        (dict(n_layers=2, kernel_size=3, stride=2), 4),
        (dict(n_layers=1, kernel_size=3, pooling=("max", 3)), 3),
        (dict(n_layers=2, kernel_size=3, pooling="avg", padding="same"), 4),
    ],
)
def test_strided_cores_follow_only_shifts_by_multiples_of_the_total_stride(options, total_stride):
    torch.manual_seed(0)
    core = Core2d(1, (40, 40), channels=4, **options)
    X = RNG.normal(size=(4, 1, 40, 40))
    for multiple in (1, 2):
        shift = multiple * total_stride
        assert translation_equivariance_error(core, X, shift) < 1e-6
        assert translation_equivariance_error(core, X, (shift, -total_stride)) < 1e-6
    for shift in range(1, total_stride):
        # the output grid has no matching shift: the error is of order one
        assert translation_equivariance_error(core, X, shift) > 0.05
        assert translation_equivariance_error(core, X, (0, shift)) > 0.05


def test_strided_causal_core():
    torch.manual_seed(0)
    core = CausalCore1d(1, 60, n_layers=2, channels=4, kernel_size=3, stride=2)
    X = RNG.normal(size=(4, 1, 60))
    assert translation_equivariance_error(core, X, 4) < 1e-6
    assert translation_equivariance_error(core, X, 2) > 0.05


@pytest.fixture(scope="module")
def patterns():
    """Small Gabor patches on a blank background, so a circular shift is a translation.

    High contrast: after two epochs the models' responses vary little around
    their baseline, and float32 rounding of the baseline must stay small
    next to that variation."""
    data = make_v1_population(200, n_simple=2, n_complex=1, image_size=32, random_state=0)
    probes = gabor_patch(32, orientation=np.linspace(0, np.pi, 6, endpoint=False),
                         frequency=0.25, phase=[0.0, 1.5], sigma=1.2, amplitude=5.0).X
    return data.X, data.y, probes


@pytest.mark.parametrize("stride, shifts_kept", [(1, [1, 3, (2, -3)]), (2, [2, (2, -2)])])
def test_pooled_readout_is_shift_invariant_and_factorized_is_not(patterns, stride, shifts_kept):
    X, y, probes = patterns
    options = dict(channels=4, kernel_size=[5, 3], padding="valid", stride=[stride, 1],
                   max_epochs=2, device="cpu", random_state=0)
    pooled = CNNEncoder(n_ensemble=1, readout="pooled", **options).fit(X, y)
    factorized = CNNEncoder(n_ensemble=1, readout="factorized", **options).fit(X, y)
    for shift in shifts_kept:
        assert translation_equivariance_error(pooled, probes, shift, output="response") < 1e-3
        assert translation_equivariance_error(factorized, probes, shift, output="response") > 0.1
    if stride > 1:
        assert translation_equivariance_error(pooled, probes, 1, output="response") > 0.1
    # the feature maps of the fitted core are equivariant whatever the readout
    assert translation_equivariance_error(factorized, probes, stride) < 1e-5


def test_bad_shifts_and_models_are_clear_errors(patterns):
    X, y, _ = patterns
    core = Core2d(1, (32, 32), n_layers=2, channels=2, kernel_size=[5, 3])
    with pytest.raises(ValueError, match=r"must be smaller than the input \(32, 32\)"):
        translation_equivariance_error(core, X[:, None], 32)
    with pytest.raises(ValueError, match="shift must be an int or a pair"):
        translation_equivariance_error(core, X[:, None], 1.5)
    with pytest.raises(ValueError, match="No output unit"):
        translation_equivariance_error(core, X[:, None], 26)
    glm = PoissonGLM().fit(X.reshape(len(X), -1), y)
    with pytest.raises(TypeError, match="needs a convolutional core.*PoissonGLM"):
        translation_equivariance_error(glm, X, 1)
    with pytest.raises(TypeError, match="output='response' needs a fitted CNNEncoder"):
        translation_equivariance_error(core, X[:, None], 1, output="response")
    with pytest.raises(ValueError, match="output must be"):
        translation_equivariance_error(core, X[:, None], 1, output="maps")


@pytest.mark.parametrize("shift", [1, 4, -3])
def test_time_series_response_shift_is_that_of_the_stimulus_window(time_series_cnn, shift):
    """The whole window is shifted, then the model crops it, exactly as predict would."""
    model, X = time_series_cnn
    reference = model.predict(X[:20])
    moved = model.predict(np.roll(X[:20], shift, axis=-1))
    expected = np.linalg.norm(moved - reference) / np.linalg.norm(reference - reference.mean(0))
    for stimuli in (X[:20], X[:20].reshape(20, -1)):
        error = translation_equivariance_error(model, stimuli, shift, output="response")
        assert error == pytest.approx(expected, rel=1e-5)


def test_time_series_core_shift_acts_on_the_window_before_the_crop(time_series_cnn):
    model, X = time_series_cnn
    # the core reads one 7-bin field per window: its one-bin map cannot follow a shift
    with pytest.raises(ValueError, match=r"reads only the last 7 bins .*readout='last'"):
        translation_equivariance_error(model, X[:5], 2)
    with pytest.raises(ValueError, match=r"reads only the last 7 bins .*length it was built"):
        translation_equivariance_error(model.core_, X[:5], 2)
    # a core that reads 20 of the 30 bins: a shift by 6 moves the stimulus within them
    # (the wrapped bins stay outside), and a stride-1 causal convolution follows it
    long_core = CausalCore1d(2, 20, n_layers=2, channels=3, kernel_size=3, dilation=[1, 2])
    assert translation_equivariance_error(long_core, X[:5], 6) < 1e-6


def _autograd_weight_gradient(X, weight, delta, conv, **options):
    weight = weight.clone().requires_grad_(True)
    (conv(X, weight, **options) * delta).sum().backward()
    return weight.grad


@pytest.mark.parametrize("seed", range(12))
def test_weight_gradient_formula_matches_autograd_for_random_2d_layers(seed):
    rng = np.random.default_rng(seed)
    n, c_in, c_out = (int(v) for v in rng.integers(1, 4, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    padding = tuple(int(v) for v in rng.integers(0, 3, 2))
    X = torch.as_tensor(rng.normal(size=(n, c_in, 13, 11)))
    weight = torch.as_tensor(rng.normal(size=(c_out, c_in, *kernel)))
    options = dict(stride=stride, dilation=dilation, padding=padding)
    out = torch.nn.functional.conv2d(X, weight, **options)
    delta = torch.as_tensor(rng.normal(size=out.shape))
    expected = _autograd_weight_gradient(X, weight, delta, torch.nn.functional.conv2d, **options)
    gradient = conv_weight_gradient(X, delta, kernel_size=kernel, **options)
    torch.testing.assert_close(gradient, expected)


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 3), (3, 2)])
def test_weight_gradient_formula_for_causal_1d_layers(stride, dilation):
    rng = np.random.default_rng(stride * 10 + dilation)
    X = torch.as_tensor(rng.normal(size=(3, 2, 30)))
    weight = torch.as_tensor(rng.normal(size=(4, 2, 3)))
    out = torch.nn.functional.conv1d(X, weight, stride=stride, dilation=dilation)
    delta = torch.as_tensor(rng.normal(size=out.shape))
    expected = _autograd_weight_gradient(
        X, weight, delta, torch.nn.functional.conv1d, stride=stride, dilation=dilation
    )
    gradient = conv_weight_gradient(X, delta, kernel_size=3, stride=stride, dilation=dilation)
    torch.testing.assert_close(gradient, expected)


def test_stride_one_gradient_is_the_cross_correlation_of_input_and_error():
    rng = np.random.default_rng(0)
    X, delta = rng.normal(size=(3, 2, 10, 9)), rng.normal(size=(3, 4, 7, 5))
    gradient = conv_weight_gradient(X, delta).numpy()  # kernel inferred: 4 x 5
    assert gradient.shape == (4, 2, 4, 5)
    # the chapter's formula, sum_n X[n, c] (cross-correlated with) delta[n, o]
    expected = np.array([
        [sum(correlate(X[n, c], delta[n, o], mode="valid") for n in range(3)) for c in range(2)]
        for o in range(4)
    ])
    np.testing.assert_allclose(gradient, expected)


def test_weight_gradient_bad_shapes():
    X = np.zeros((2, 1, 8, 8))
    with pytest.raises(ValueError, match="both be"):
        conv_weight_gradient(X, np.zeros((2, 1, 6)))
    with pytest.raises(ValueError, match="same samples"):
        conv_weight_gradient(X, np.zeros((3, 1, 6, 6)))
    with pytest.raises(ValueError, match="does not match a convolution"):
        conv_weight_gradient(X, np.zeros((2, 1, 6, 6)), kernel_size=4)
    with pytest.raises(ValueError, match="stride"):
        conv_weight_gradient(X, np.zeros((2, 1, 6, 6)), stride=(1, 2, 3))
