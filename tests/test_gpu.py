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
