import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, EarlyStopping
from torch.optim.lr_scheduler import ReduceLROnPlateau

from sklearn_cnnenc.families import get_family
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.nn import EncodingModule, FilterBankPredictor, LinearPredictor
from sklearn_cnnenc.training import (
    EncoderNet,
    LRScheduler,
    NegativeLogLikelihood,
    TensorBatchIterator,
    TensorDataset,
    ValidationSplit,
)


@pytest.fixture
def data():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(203, 5, generator=generator)
    y = torch.poisson(torch.exp(0.3 * X[:, :2]), generator=generator)
    return TensorDataset({"X": X}, y)


class BatchCounter(Callback):
    """A callback with a batch hook: forces skorch's own per-batch loop."""

    def initialize(self):
        self.calls_ = 0
        return self

    def on_batch_end(self, net, **kwargs):
        self.calls_ += 1


def _net(callbacks=()):
    torch.manual_seed(0)
    link = get_link("softplus")
    return EncoderNet(
        EncodingModule(LinearPredictor(5, 2), link, n_outputs=2),
        criterion=NegativeLogLikelihood,
        criterion__family=get_family("poisson"),
        criterion__link=link,
        optimizer=torch.optim.Adam,
        lr=0.05,
        batch_size=32,
        max_epochs=4,
        train_split=ValidationSplit(0.2, "random", random_state=0),
        iterator_train__shuffle=True,
        iterator_train__generator=torch.Generator().manual_seed(1),
        callbacks=[
            ("lr_scheduler", LRScheduler(ReduceLROnPlateau, monitor="valid_loss")),
            ("early_stopping", EarlyStopping(patience=10, load_best=True)),
            *callbacks,
        ],
        verbose=0,
    )


def test_fast_epoch_writes_the_history_of_skorchs_own_loop(data):
    fast = _net().fit(data)
    counter = BatchCounter()
    standard = _net(callbacks=[("counter", counter)]).fit(data)
    assert not fast.batch_hooks_ and standard.batch_hooks_
    assert counter.calls_ == sum(standard.history[:, "train_batch_count"]) + sum(
        standard.history[:, "valid_batch_count"]
    )
    for key in ("train_loss", "valid_loss", "train_batch_count", "valid_batch_count"):
        np.testing.assert_allclose(fast.history[:, key], standard.history[:, key], rtol=1e-6)
    for epoch in range(4):
        np.testing.assert_allclose(
            fast.history[epoch, "batches", :, "train_loss"],
            standard.history[epoch, "batches", :, "train_loss"],
            rtol=1e-6,
        )
        assert (
            fast.history[epoch, "batches", :, "train_batch_size"]
            == standard.history[epoch, "batches", :, "train_batch_size"]
        )
    torch.testing.assert_close(
        fast.module_.predictor.weight, standard.module_.predictor.weight
    )


def test_validation_splits_share_the_data_tensors(data):
    storage = data.X["X"].untyped_storage().data_ptr()
    train, valid = ValidationSplit(0.25, "blocked")(data)
    assert train.X["X"].untyped_storage().data_ptr() == storage  # views
    assert valid.X["X"].untyped_storage().data_ptr() == storage
    train, valid = ValidationSplit(0.25, "random", random_state=0)(data)
    assert train._X["X"] is data._X["X"] and valid._X["X"] is data._X["X"]
    assert len(train) + len(valid) == len(data)
    together = torch.cat([train.indices, valid.indices]).sort().values
    assert torch.equal(together, torch.arange(len(data)))
    # batches of an index subset are the samples at those indices
    X, y = next(iter(TensorBatchIterator(valid, batch_size=8)))
    torch.testing.assert_close(X["X"], data.X["X"][valid.indices[:8]])
    # a subset of a subset composes the indices
    inner = valid.subset(torch.tensor([2, 0]))
    torch.testing.assert_close(inner.X["X"], data.X["X"][valid.indices[[2, 0]]])


def test_validation_split_needs_a_sample_on_each_side():
    tiny = TensorDataset({"X": torch.zeros(1, 2)}, torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"from 1 sample\(s\)"):
        ValidationSplit(0.1)(tiny)
    with pytest.raises(ValueError, match="Unknown validation split"):
        ValidationSplit(0.5, "stratified")(TensorDataset({"X": torch.zeros(4, 2)}))


@pytest.mark.parametrize("n, batch, sizes", [(10, 3, [3, 3, 4]), (10, 4, [4, 4, 2]), (1, 4, [1])])
def test_batches_never_end_with_a_single_sample(n, batch, sizes):
    dataset = TensorDataset({"X": torch.arange(float(n))[:, None]}, torch.zeros(n, 1))
    for shuffle in (False, True):
        iterator = TensorBatchIterator(dataset, batch_size=batch, shuffle=shuffle)
        batches = [X["X"].ravel() for X, _ in iterator]
        assert [len(b) for b in batches] == sizes == [sizes[i] for i in range(len(iterator))]
        assert sorted(torch.cat(batches).tolist()) == list(range(n))


def test_lr_scheduler_pickles_without_its_optimizer(data):
    net = _net().fit(data)
    callback = dict(net.callbacks_)["lr_scheduler"]
    assert hasattr(callback, "lr_scheduler_")
    restored = pickle.loads(pickle.dumps(callback))
    assert not hasattr(restored, "lr_scheduler_")
    # training again rebuilds it
    net.partial_fit(data)
    assert dict(net.callbacks_)["lr_scheduler"].lr_scheduler_.optimizer is net.optimizer_


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_stacked_restarts_are_scored_against_their_own_neurons(family):
    family, link = get_family(family), get_link("exp")
    generator = torch.Generator().manual_seed(0)
    eta = torch.randn(30, 3 * 2, generator=generator, dtype=torch.float64)
    y = torch.poisson(torch.full((30, 2), 2.0, dtype=torch.float64), generator=generator)
    raw = None if not family.trains_dispersion else torch.linspace(0.2, 1.0, 6).double()
    weight = torch.rand(30, generator=generator, dtype=torch.float64)
    weight = weight / weight.mean()
    loss = NegativeLogLikelihood(family, link)
    stacked = loss(eta, y, raw, sample_weight=weight)
    tiled = loss(eta, y.repeat(1, 3), raw, sample_weight=weight)
    torch.testing.assert_close(stacked, tiled, rtol=1e-12, atol=0.0)
    with_normalizer = loss(eta, y, raw, sample_weight=weight,
                           log_normalizer=family.log_normalizer(y))
    torch.testing.assert_close(with_normalizer, tiled, rtol=1e-12, atol=0.0)


def test_every_restart_copy_gets_its_neurons_offset():
    predictor = FilterBankPredictor((2,), n_outputs=3 * 2, nonlinearity="identity",
                                    init="zeros", dtype=torch.float64)
    with torch.no_grad():
        predictor.bias.copy_(torch.arange(6.0))
    module = EncodingModule(predictor, get_link("exp"), n_outputs=2, n_restarts=3)
    offset = torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=torch.float64)
    eta = module(torch.zeros(2, 2, dtype=torch.float64), offset)
    # copy r of neuron j is column r * 2 + j
    torch.testing.assert_close(eta, torch.arange(6.0).double() + offset.repeat(1, 3))
    module.keep(torch.tensor([4, 1]))
    eta = module(torch.zeros(2, 2, dtype=torch.float64), offset)
    torch.testing.assert_close(eta, torch.tensor([4.0, 1.0]).double() + offset)


class _Terminal:
    """A stderr stand-in that says it is a terminal."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass


@pytest.mark.parametrize("terminal", [True, False])
def test_cnn_fits_show_epoch_progress_only_on_a_terminal(monkeypatch, capsys, terminal):
    import sys

    from sklearn_cnnenc import CNNEncoder

    stream = _Terminal()
    if terminal:
        monkeypatch.setattr(sys, "stderr", stream)
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 1, 8, 8)), rng.poisson(1.0, (40, 2)).astype(float)
    CNNEncoder(max_epochs=3, channels=2, kernel_size=(3, 3), device="cpu",
               random_state=0).fit(X, y)
    written = stream.buffer.getvalue() if terminal else capsys.readouterr().err
    assert ("epoch 3/3" in written) is terminal
    assert ("train loss" in written) is terminal
