import pickle

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_cnnenc.nn import CausalCore1d, Core2d, LocallyConnected2d, per_layer, resolve_dilation
from sklearn_cnnenc.nn.cores import receptive_field


def _dependent_bins(core, length, t_out, n_channels=1):
    """Earliest and latest input bins with a nonzero gradient on output ``t_out``."""
    x = torch.randn(1, n_channels, length, requires_grad=True)
    core.eval()
    core(x)[0, :, t_out].sum().backward()
    touched = torch.nonzero(x.grad.abs().sum(1)[0] > 0).ravel()
    return int(touched.min()), int(touched.max())


@pytest.mark.parametrize("padding", ["valid", "same", 3])
@pytest.mark.parametrize(
    "options, step",
    [
        (dict(n_layers=3, kernel_size=3, dilation="exponential"), 1),
        (dict(n_layers=2, kernel_size=[5, 3], stride=2), 4),
        (dict(n_layers=2, kernel_size=3, pooling=("max", 2)), 4),
        (dict(n_layers=2, kernel_size=3, weight_sharing=False, batch_norm=False), 1),
    ],
)
def test_causal_core_outputs_ignore_later_input_bins(options, step, padding):
    torch.manual_seed(0)
    length = 40
    core = CausalCore1d(2, length, channels=3, padding=padding, **options).eval()
    x = torch.randn(4, 2, length)
    out = core(x)
    n_out = out.shape[-1]
    for j in range(n_out):
        # end-aligned: output j ends at this input bin (strides/pools of `step`)
        end = length - 1 - (n_out - 1 - j) * step
        changed = x.clone()
        changed[..., end + 1 :] = 10 * torch.randn_like(changed[..., end + 1 :])
        torch.testing.assert_close(core(changed)[..., : j + 1], out[..., : j + 1])
    changed = x.clone()
    changed[..., -1] += 5.0
    assert not torch.allclose(core(changed)[..., -1], out[..., -1])


def test_causal_receptive_field_matches_the_chapter_formula():
    k, dilations = 3, [1, 2, 4, 8]
    core = CausalCore1d(1, 100, n_layers=4, kernel_size=k, dilation="exponential")
    expected = 1 + (k - 1) * sum(dilations)
    assert core.receptive_field == (expected,)
    first, last = _dependent_bins(core, 100, core.output_length - 1)
    assert last - first + 1 == expected
    assert core.output_length == 100 - expected + 1


@pytest.mark.parametrize(
    "options",
    [
        dict(n_layers=2, kernel_size=[5, 3]),
        dict(n_layers=2, kernel_size=3, stride=2),
        dict(n_layers=2, kernel_size=3, dilation=2, pooling="avg"),
    ],
)
def test_2d_receptive_field_is_the_extent_of_the_input_gradient(options):
    torch.manual_seed(0)
    core = Core2d(1, (32, 32), channels=2, **options).eval()
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    out = core(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows, cols = torch.nonzero(x.grad[0, 0] != 0, as_tuple=True)
    extent = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    assert extent == core.receptive_field


def test_receptive_field_function():
    assert receptive_field([3], [1], [1]) == 3
    assert receptive_field([3, 3], [1, 1], [2, 1]) == 1 + 2 + 2 * 2
    assert receptive_field([3, 3], [1, 1], [1, 1], pool_size=2) == 1 + 2 + 1 + 2 * 2 + 2


@pytest.mark.parametrize("size, k, c_in, c_out", [(8, 3, 2, 4), (10, 5, 1, 3)])
def test_conv_and_locally_connected_parameter_counts(size, k, c_in, c_out):
    conv = Core2d(c_in, (size, size), n_layers=1, channels=c_out, kernel_size=k, padding="same")
    local = Core2d(
        c_in,
        (size, size),
        n_layers=1,
        channels=c_out,
        kernel_size=k,
        padding="same",
        weight_sharing=False,
    )
    assert conv.blocks[0].conv.weight.numel() == k**2 * c_in * c_out
    assert local.blocks[0].conv.weight.numel() == size * size * k**2 * c_in * c_out
    assert conv.output_size == local.output_size == (size, size)


def test_locally_connected_with_shared_weights_equals_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, dilation=2)
    local = LocallyConnected2d(2, 3, (11, 11), 3, stride=2, dilation=2)
    with torch.no_grad():
        flat = conv.weight.reshape(3, -1)
        local.weight.copy_(flat.expand(local.weight.shape[0], -1, -1))
        local.bias.copy_(conv.bias[:, None, None].expand_as(local.bias))
    x = torch.randn(5, 2, 11, 11)
    torch.testing.assert_close(local(x), conv(x))
    assert local.filters().shape == (*local.output_size, 3, 2, 3, 3)


def test_kernel_larger_than_input_is_a_clear_error():
    with pytest.raises(ValueError, match="larger than its input"):
        Core2d(1, (8, 8), n_layers=1, kernel_size=9)
    with pytest.raises(ValueError, match="Layer 2.*larger than its input"):
        Core2d(1, (10, 10), n_layers=2, kernel_size=[5, 7])
    with pytest.raises(ValueError, match="larger than its input"):
        CausalCore1d(1, 4, n_layers=1, kernel_size=5)
    with pytest.raises(ValueError, match="pooling window"):
        Core2d(1, (4, 4), n_layers=1, kernel_size=3, pooling=("max", 3))
    with pytest.raises(ValueError, match="larger than the input"):
        LocallyConnected2d(1, 1, (4, 4), 5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(activation="tanh"), "Unknown activation"),
        (dict(padding="full"), "padding"),
        (dict(pooling="median"), "pooling"),
        (dict(dilation="linear"), "dilation"),
        (dict(channels=0), "channels"),
        (dict(n_layers=0), "n_layers"),
    ],
)
def test_bad_core_options_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        Core2d(1, (16, 16), **{"kernel_size": 3, **bad})


def test_same_padding_keeps_the_image_size_and_batch_norm_replaces_the_bias():
    core = Core2d(1, (15, 15), n_layers=3, kernel_size=[4, 3], padding="same")
    assert core(torch.randn(2, 1, 15, 15)).shape[2:] == (15, 15)
    assert all(block.conv.bias is None for block in core.blocks)
    plain = Core2d(1, (15, 15), n_layers=1, kernel_size=3, batch_norm=False)
    assert plain.blocks[0].conv.bias is not None
    assert isinstance(plain.blocks[0].norm, nn.Identity)


def test_laplace_penalty_prefers_smooth_filters_and_ignores_scale():
    core = Core2d(1, (16, 16), n_layers=1, channels=1, kernel_size=7, gamma_input=1.0)
    y, x = np.mgrid[-3:4, -3:4]
    smooth = torch.tensor(np.exp(-(x**2 + y**2) / 4.0), dtype=torch.float32)
    rough = torch.tensor(np.random.default_rng(0).standard_normal((7, 7)), dtype=torch.float32)
    penalties = []
    for filt in (smooth, rough, 5 * smooth):
        with torch.no_grad():
            core.blocks[0].conv.weight.copy_(filt[None, None])
        penalties.append(core.regularizer().item())
    assert penalties[0] < penalties[1] / 5
    assert penalties[2] == pytest.approx(penalties[0], rel=1e-5)


def test_group_sparsity_is_lower_when_input_channels_are_pruned():
    core = Core2d(1, (16, 16), n_layers=2, channels=4, kernel_size=3, gamma_hidden=1.0)
    weight = core.blocks[1].conv.weight
    torch.manual_seed(0)
    dense = torch.randn_like(weight)
    sparse = dense.clone()
    sparse[:, 1:] = 0.0  # every output channel reads input channel 0 only
    values = []
    for w in (dense, sparse, 3 * dense):
        with torch.no_grad():
            weight.copy_(w)
        values.append(core.regularizer().item())
    # each output channel contributes sum_c ||w_oc|| / ||w_o|| in [1, sqrt(C_in)]
    assert values[1] == pytest.approx(4.0, rel=1e-5)
    assert 4.0 < values[0] <= 4 * 2.0 + 1e-5
    assert values[2] == pytest.approx(values[0], rel=1e-5)
    # gradients stay finite at exactly-zero groups
    core.regularizer().backward()
    assert torch.isfinite(weight.grad).all()


def test_activity_penalty_is_recorded_in_training_and_consumed_once():
    torch.manual_seed(0)
    core = Core2d(1, (12, 12), n_layers=2, channels=3, kernel_size=3, gamma_activity=2.0)
    x = torch.randn(6, 1, 12, 12)
    core.train()
    first = core.blocks[0](x)
    second = core.blocks[1](first)
    core.train()
    core(x)
    # BatchNorm in training mode makes the two passes identical
    expected = 2.0 * (first.abs().mean() + second.abs().mean())
    torch.testing.assert_close(core.regularizer(), expected)
    assert float(core.regularizer()) == 0.0  # consumed
    core.eval()
    core(x)
    assert float(core.regularizer()) == 0.0  # never recorded in evaluation
    core.train()
    core(x)
    restored = pickle.loads(pickle.dumps(core))  # no autograd graph in the pickle
    assert restored._activity is None


def test_per_layer_and_dilation_helpers():
    assert per_layer([9, 5], 1, "k") == [9]
    assert per_layer([9, 5], 4, "k") == [9, 5, 5, 5]
    assert per_layer(3, 2, "k") == [3, 3]
    assert resolve_dilation("exponential", 3) == [1, 2, 4]
    assert resolve_dilation([1, 3], 3) == [1, 3, 3]
    with pytest.raises(ValueError, match="empty"):
        per_layer([], 2, "channels")


def test_per_layer_padding_keeps_hidden_maps_and_deep_cores_valid():
    # 16 x 16 patches: three 'valid' layers of sizes 9, 5, 5 would leave nothing
    with pytest.raises(ValueError, match="Layer 3"):
        Core2d(1, (16, 16), n_layers=3, kernel_size=[9, 5])
    core = Core2d(1, (16, 16), n_layers=3, kernel_size=[9, 5], padding=["valid", "same"])
    assert core.output_size == (8, 8)
    assert core.receptive_field == (17, 17)
    with pytest.raises(ValueError, match="padding"):
        Core2d(1, (16, 16), kernel_size=3, padding=["valid", "full"])


def test_numpy_integers_are_accepted_wherever_ints_are():
    """A grid over np.arange hands numpy integers to every architecture setting."""
    k, two = np.int64(3), np.int32(2)
    core = Core2d(1, (16, 16), n_layers=np.int64(2), channels=np.int64(4), kernel_size=[k, k],
                  dilation=[1, two], stride=np.int64(1), pooling=("max", two), padding=[k, "same"])
    reference = Core2d(1, (16, 16), n_layers=2, channels=4, kernel_size=3, dilation=[1, 2],
                       pooling=("max", 2), padding=[3, "same"])
    assert core.output_size == reference.output_size
    assert core.receptive_field == reference.receptive_field
    assert core.pooling == ("max", 2) and type(core.pooling[1]) is int
    causal = CausalCore1d(1, 32, kernel_size=k, pooling=("avg", two), padding=np.int64(1))
    assert causal.output_length == CausalCore1d(1, 32, kernel_size=3, pooling=("avg", 2),
                                                padding=1).output_length


@pytest.mark.parametrize(
    "bad, name",
    [
        (dict(kernel_size=2.5), "kernel_size"),
        (dict(kernel_size=[3, 2.0]), "kernel_size"),
        (dict(channels=True), "channels"),
        (dict(stride=[1, 1.5]), "stride"),
        (dict(dilation=[1, 2.5]), "dilation"),
        (dict(pooling=("max", True)), "pooling"),
        (dict(pooling=("avg", 2.0)), "pooling"),
        (dict(padding=True), "padding"),
        (dict(padding=[0, 1.5]), "padding"),
        (dict(n_layers=2.0), "n_layers"),
        (dict(n_layers=True), "n_layers"),
    ],
)
def test_floats_and_bools_are_rejected_not_truncated(bad, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        Core2d(1, (16, 16), **{"kernel_size": 3, **bad})


def test_laplace_kernel_is_a_non_persistent_buffer_and_old_pickles_still_load():
    core = Core2d(1, (12, 12), n_layers=1, channels=2, kernel_size=5, gamma_input=1.0)
    # moves with the module (no host-to-device copy per step), not in the state_dict
    assert any(buffer is core._laplace for buffer in core.buffers())
    assert not any("laplace" in key for key in core.state_dict())
    assert core.double()._laplace.dtype == torch.float64
    expected = core.regularizer()
    fresh = Core2d(1, (12, 12), n_layers=1, channels=2, kernel_size=5, gamma_input=1.0).double()
    fresh.load_state_dict(core.state_dict())
    torch.testing.assert_close(fresh.regularizer(), expected)
    # a core pickled before the kernel was a buffer has none in its state
    del core._buffers["_laplace"]
    core._non_persistent_buffers_set.discard("_laplace")
    restored = pickle.loads(pickle.dumps(core))
    assert restored._laplace.dtype == torch.float64
    torch.testing.assert_close(restored.regularizer(), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_laplace_penalty_equals_its_formula_without_building_a_kernel_per_step(
    causal, monkeypatch
):
    torch.manual_seed(0)
    if causal:
        core = CausalCore1d(1, 20, n_layers=1, channels=3, kernel_size=7, gamma_input=0.5)
        kernel, padding = torch.tensor([[-1.0, 2.0, -1.0]]), (0, 1)
    else:
        core = Core2d(1, (12, 12), n_layers=1, channels=3, kernel_size=5, gamma_input=0.5)
        kernel = torch.tensor([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]])
        padding = 1
    core = core.double()
    filters = core.first_layer_filters().detach()
    laplace = torch.nn.functional.conv2d(
        filters[:, None], kernel.double()[None, None], padding=padding
    )
    expected = 0.5 * laplace.pow(2).sum() / filters.pow(2).sum()

    def rebuilt(*args, **kwargs):
        raise AssertionError("the Laplacian kernel was rebuilt during a training step")

    monkeypatch.setattr(type(core), "_laplace_kernel", rebuilt)
    torch.testing.assert_close(core.regularizer(), expected)
    assert core._laplace.dtype == torch.float64
