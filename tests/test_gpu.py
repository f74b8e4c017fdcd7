"""CUDA paths of the linear models and the decoder (skipped without a GPU)."""

import pickle

import numpy as np
import pytest
import torch
from skorch.exceptions import DeviceWarning

from sklearn_cnnenc import BayesianDecoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.decoding import reconstruct

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def data():
    return make_glm_data(n_samples=3000, n_features=6, n_neurons=4, random_state=0)


def test_glm_on_cuda_matches_the_cpu_fit_and_unpickles(data):
    cpu = PoissonGLM(alpha=1e-3, tol=1e-8).fit(data.X, data.y)
    gpu = PoissonGLM(alpha=1e-3, tol=1e-8, device="cuda").fit(data.X, data.y)
    assert gpu.device_.type == "cuda"
    assert gpu.net_.module_.predictor.weight.device.type == "cuda"
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, atol=1e-6)
    np.testing.assert_allclose(gpu.score(data.X, data.y), cpu.score(data.X, data.y), rtol=1e-9)
    restored = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_allclose(restored.predict(data.X), gpu.predict(data.X), rtol=1e-12)


def test_ln_model_on_cuda_reaches_the_cpu_objective(data):
    cpu = LNModel(n_filters=2, random_state=0).fit(data.X, data.y)
    gpu = LNModel(n_filters=2, random_state=0, device="cuda").fit(data.X, data.y)
    assert gpu.score(data.X, data.y) == pytest.approx(cpu.score(data.X, data.y), abs=1e-3)


def test_decoder_and_reconstruction_with_a_cuda_encoder(data):
    encoder = PoissonGLM(alpha=1e-3, device="cuda").fit(data.X, data.y)
    candidates = data.X[:50]
    decoder = BayesianDecoder(encoder, stimuli=candidates, prior="uniform", prefit=True)
    decoder.fit(data.y[:50], np.arange(50))
    cpu_decoder = BayesianDecoder(PoissonGLM(alpha=1e-3).fit(data.X, data.y),
                                  stimuli=candidates, prior="uniform", prefit=True)
    cpu_decoder.fit(data.y[:50], np.arange(50))
    np.testing.assert_allclose(decoder.predict_proba(data.y[:50]),
                               cpu_decoder.predict_proba(data.y[:50]), atol=1e-6)
    x_hat, _ = reconstruct(encoder, data.y[0], prior="gaussian")
    assert x_hat.shape == (6,) and np.all(np.isfinite(x_hat))
    assert torch.cuda.is_available()


def test_a_model_saved_on_a_missing_gpu_number_loads_on_the_current_gpu(data):
    model = PoissonGLM(alpha=1e-3, device="cuda").fit(data.X, data.y)
    expected = model.predict(data.X)
    # as if fitted on a GPU number this machine does not have
    missing = torch.cuda.device_count()
    model.device_, model.net_.device = torch.device("cuda", missing), f"cuda:{missing}"
    with pytest.warns(DeviceWarning, match="does not exist here"):
        restored = pickle.loads(pickle.dumps(model))
    assert restored.device_ == torch.device("cuda", torch.cuda.current_device())
    np.testing.assert_allclose(restored.predict(data.X), expected, rtol=1e-12)


def test_streaming_on_cuda_pins_memory_copies_asynchronously_and_equals_in_memory(
    tmp_path, monkeypatch
):
    # a store's mini-batches reach the GPU through page-locked memory with
    # non-blocking copies, and the fit equals the in-memory fit on cuda (the
    # training part fits one shuffle window: the in-memory order)
    h5py = pytest.importorskip("h5py")
    from sklearn_cnnenc import CNNEncoder
    from sklearn_cnnenc.datasets import make_v1_population

    d = make_v1_population(n_samples=600, n_simple=2, n_complex=1, image_size=12,
                           random_state=0)
    X = d.X.astype(np.float32)
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f.create_dataset("X", data=X, chunks=(16, 12, 12))
    params = dict(channels=3, kernel_size=(5, 3), max_epochs=2, batch_size=64,
                  device="cuda", random_state=0)
    reference = CNNEncoder(**params).fit(X, d.y)
    copies = []
    original_to = torch.Tensor.to

    def spy_to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if self.device.type == "cpu" and str(target).startswith("cuda"):
            copies.append((self.is_pinned(), bool(kwargs.get("non_blocking"))))
        return original_to(self, *args, **kwargs)

    with h5py.File(tmp_path / "X.h5", "r") as f:
        monkeypatch.setattr(torch.Tensor, "to", spy_to)
        streamed = CNNEncoder(**params).fit(f["X"], d.y)
        monkeypatch.undo()
        assert streamed.device_.type == "cuda"
        # every batch of X: a pinned tensor copied without blocking
        assert sum(pinned and asynchronous for pinned, asynchronous in copies) >= 2 * 9
        np.testing.assert_allclose(streamed.predict(f["X"]), reference.predict(X),
                                   rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(streamed.history_[:, "valid_loss"],
                               reference.history_[:, "valid_loss"], rtol=1e-4)


def test_video_core_on_cuda_matches_the_cpu_fit():
    from sklearn_cnnenc import CNNEncoder
    from sklearn_cnnenc.datasets import make_direction_selective_cells

    d = make_direction_selective_cells(n_samples=200, n_cells=2, image_size=8, random_state=0)
    params = dict(n_layers=1, channels=2, kernel_size=3, temporal_kernel_size=3,
                  input_type="video", max_epochs=2, random_state=0)
    cpu = CNNEncoder(**params, device="cpu").fit(d.X, d.y)
    gpu = CNNEncoder(**params, device="cuda").fit(d.X, d.y)
    np.testing.assert_allclose(gpu.predict(d.X), cpu.predict(d.X), rtol=1e-3, atol=1e-5)
