import pickle

import pytest
import torch

from sklearn_cnnenc.nn import (
    READOUTS,
    CNNPredictor,
    Core2d,
    DenseReadout,
    FactorizedReadout,
    GaussianReadout,
    LastStepReadout,
    PooledReadout,
    make_readout,
)


@pytest.fixture
def features():
    torch.manual_seed(0)
    return torch.randn(5, 4, 6, 7)


def test_factorized_readout_is_mask_times_feature_weights(features):
    readout = FactorizedReadout(4, (6, 7), n_outputs=3)
    expected = torch.einsum("nchw,khw,kc->nk", features, readout.masks(), readout.features)
    torch.testing.assert_close(readout(features), expected + readout.bias)
    assert readout.spatial.numel() + readout.features.numel() == 3 * (6 * 7 + 4)


def test_gaussian_readout_reads_the_feature_vector_at_its_position(features):
    readout = GaussianReadout(4, (6, 7), n_outputs=2).eval()
    # normalised (x, y) of pixel (row 2, col 5) and of the corner (row 0, col 0)
    with torch.no_grad():
        readout.mu.copy_(torch.tensor([[2 * 5 / 6 - 1, 2 * 2 / 5 - 1], [-1.0, -1.0]]))
    expected = torch.stack(
        [features[:, :, 2, 5] @ readout.features[0], features[:, :, 0, 0] @ readout.features[1]],
        dim=1,
    )
    torch.testing.assert_close(readout(features), expected + readout.bias)
    assert readout.positions().shape == (2, 2)


def test_gaussian_readout_samples_positions_only_while_training(features):
    torch.manual_seed(1)
    readout = GaussianReadout(4, (6, 7), n_outputs=3, init_sigma=0.3)
    readout.train()
    assert not torch.allclose(readout(features), readout(features))
    readout.eval()
    torch.testing.assert_close(readout(features), readout(features))
    # gradients reach the positions and the widths
    readout.train()
    readout(features).sum().backward()
    assert readout.mu.grad.abs().sum() > 0 and readout.sigma.grad.abs().sum() > 0


def test_pooled_readout_is_invariant_to_circular_shifts(features):
    readout = PooledReadout(4, (6, 7), n_outputs=3)
    shifted = torch.roll(features, shifts=(2, 3), dims=(2, 3))
    torch.testing.assert_close(readout(shifted), readout(features))
    torch.testing.assert_close(
        readout(features), features.mean((2, 3)) @ readout.weight.T + readout.bias
    )


def test_dense_and_last_step_readouts(features):
    dense = DenseReadout(4, (6, 7), n_outputs=3)
    torch.testing.assert_close(
        dense(features), features.flatten(1) @ dense.weight.T + dense.bias
    )
    series = torch.randn(5, 4, 9)
    last = LastStepReadout(4, (1, 9), n_outputs=3)
    torch.testing.assert_close(last(series), series[:, :, -1] @ last.weight.T + last.bias)
    with pytest.raises(ValueError, match="1 x T"):
        LastStepReadout(4, (6, 7), n_outputs=3)


@pytest.mark.parametrize("name", sorted(set(READOUTS) - {"last"}))
def test_readout_l1_penalty_and_intercept(name, features):
    readout = make_readout(name, 4, (6, 7), 3, gamma_readout=0.5)
    weights = [p for n, p in readout.named_parameters() if n not in ("bias", "mu", "sigma")]
    expected = 0.5 * sum(w.abs().sum() for w in weights)
    torch.testing.assert_close(readout.regularizer(), expected)
    readout.initialize_intercept(torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(readout.bias.detach(), torch.tensor([0.1, 0.2, 0.3]))
    unpenalised = make_readout(name, 4, (6, 7), 3)
    assert unpenalised.regularizer().item() == 0.0
    readout.eval()
    assert readout(features).shape == (5, 3)
    assert pickle.loads(pickle.dumps(readout)).n_outputs == 3


def test_unknown_readout_is_rejected():
    with pytest.raises(ValueError, match="Unknown readout"):
        make_readout("attention", 4, (6, 7), 3)


def test_predictor_sums_penalties_and_sets_the_intercept():
    torch.manual_seed(0)
    core = Core2d(1, (12, 12), channels=3, kernel_size=[5, 3], gamma_input=0.1)
    readout = FactorizedReadout(3, core.output_size, n_outputs=2, gamma_readout=0.01)
    predictor = CNNPredictor(core, readout)
    assert predictor(torch.randn(4, 1, 12, 12)).shape == (4, 2)
    torch.testing.assert_close(
        predictor.regularizer(), core.regularizer() + readout.regularizer()
    )
    predictor.initialize_intercept(torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(readout.bias.detach(), torch.tensor([1.0, -1.0]))
