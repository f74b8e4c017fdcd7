"""Shared fixtures: the real recordings beside the checkout, a fitted time-series CNN, and
the CUDA marker."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# ../shared/data beside the repository (see its README); CNNENC_DATA_DIR overrides.
SHARED_DATA_DIR = Path(
    os.environ.get("CNNENC_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of real recordings; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def time_series_cnn():
    """A CNNEncoder on two-channel windows of 30 bins and the windows.

    Its readout reads the last bin of the core's map, so the model crops each
    window to the core's receptive field, 1 + 2 * (1 + 2) = 7 bins.
    """
    from sklearn_cnnenc import CNNEncoder

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2, 30))
    y = rng.poisson(1.0, size=(200, 3)).astype(float)
    model = CNNEncoder(n_layers=2, channels=3, kernel_size=3, dilation=[1, 2],
                       input_type="time_series", max_epochs=2, n_ensemble=1, device="cpu",
                       random_state=0).fit(X, y)
    assert model.readout_type_ == "last" and model.receptive_field_ == (7,)
    return model, X


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
