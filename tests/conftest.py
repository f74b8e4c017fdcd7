"""Shared fixtures: the real recordings beside the checkout, and the CUDA marker."""

import os
from pathlib import Path

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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
