"""The scientific claims of the toolkit's examples, at the examples' full size (slow)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gabor_emergence_example(tmp_path, monkeypatch):
    example = _load("gabor_emergence")
    monkeypatch.setattr(example, "OUTPUT", tmp_path)
    r2 = example.main()
    assert r2["random"] < 0.3
    assert r2["no prior"] > r2["random"] + 0.2
    # sparseness alone makes the filters more Gabor-like; the smoothness prior more so
    assert r2["sparse"] > r2["no prior"] + 0.05
    assert r2["smooth"] > r2["no prior"] + 0.1
    assert (tmp_path / "gabor_emergence.png").exists()


@pytest.mark.slow
def test_ood_energy_model_example(tmp_path, monkeypatch):
    example = _load("ood_energy_model_test")
    monkeypatch.setattr(example, "OUTPUT", tmp_path)
    results = example.main()
    truth, cnn, glm = (results[name] for name in ("energy model (truth)", "CNN", "GLM"))
    assert truth["invariance"] > 0.99 and cnn["invariance"] > 0.9
    assert glm["invariance"] < 0.5
    assert cnn["f1_f0"] < 1.0 < glm["f1_f0"]  # complex-like vs simple-like (Skottun 1991)
    assert cnn["scrambled"] > 0.85 and glm["scrambled"] < 0.5
    assert cnn["bits"] > 0.8 * truth["bits"]
    assert (tmp_path / "ood_energy_model_test.csv").exists()
