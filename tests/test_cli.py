"""The cnnenc command: compare, fit and predict on files; one-line errors."""

import json
import subprocess
import sys

import joblib
import numpy as np
import pytest

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.cli import main
from sklearn_cnnenc.datasets import make_glm_data


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory):
    data = make_glm_data(n_samples=600, n_features=4, n_neurons=3, random_state=0)
    path = tmp_path_factory.mktemp("data") / "recording.npz"
    np.savez(path, X=data.X, y=data.y)
    return path


def test_compare_writes_tables_and_figure(npz_file, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["compare", "--data", str(npz_file), "--models", "glm,ln", "--cv", "3",
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "glm" in printed and "ln" in printed and "bits/spike" in printed
    for name in ("scores.csv", "summary.csv", "paired.csv", "results.json",
                 "model_comparison.png"):
        assert (out / name).is_file(), name
    payload = json.loads((out / "results.json").read_text())
    assert payload["models"] == ["glm", "ln"] and payload["n_folds"] == 3
    assert payload["n_neurons"] == 3
    assert len(payload["best_params"]) == 6  # both models are searches, 3 folds each


def test_fit_then_predict_round_trip(npz_file, tmp_path, capsys):
    model_path = tmp_path / "glm.joblib"
    assert main(["fit", "--data", str(npz_file), "--model", "glm", "--param", "alpha=0.01",
                 "--out", str(model_path)]) == 0
    assert "saved to" in capsys.readouterr().out
    predictions = tmp_path / "y_pred.npz"
    assert main(["predict", "--data", str(npz_file), "--model", str(model_path),
                 "--out", str(predictions)]) == 0
    data = np.load(npz_file)
    expected = PoissonGLM(alpha=0.01).fit(data["X"], data["y"]).predict(data["X"])
    np.testing.assert_allclose(np.load(predictions)["y_pred"], expected, rtol=1e-10)


def _one_line_error(capsys):
    # the progress bar may precede the error on stderr; the error is its own last line
    error = capsys.readouterr().err.strip().split("\n")[-1]
    assert error.startswith("cnnenc: error: ")
    return error


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--data", "missing.npz"], "No such file"),
        (["compare", "--data", "{bad_npz}"], "lacks the array(s) ['y']"),
        (["compare", "--data", "{short_npz}"], "X has 5 samples but y has 4"),
        (["compare", "--data", "{fake_nwb}"], "not a readable NWB file"),
        (["compare", "--data", "{text}"], "expected a .npz or .nwb file"),
        (["compare", "--data", "{npz}", "--models", "glm,svm"], "Unknown model(s) ['svm']"),
        (["compare", "--data", "{npz}", "--models", "cnn"], "cnn needs --input-shape"),
        (["fit", "--data", "{npz}", "--param", "alpha"], "expected NAME=VALUE"),
        (["fit", "--data", "{npz}", "--param", "alpha=-1"], "alpha"),
        (["predict", "--data", "{npz}", "--model", "{old_model}"],
         "saved with sklearn_cnnenc 0.0.1"),
        (["fit", "--data", "{corrupt_npz}"], "not a readable .npz archive"),
        (["compare", "--data", "{npz}", "--models", "glm", "--out", "{text}"], "data.txt"),
        (["compare", "--data", "{npz}", "--models", "cnn", "--input-shape", "a,b"],
         "expected integers"),
    ],
)
def test_errors_are_one_line(npz_file, tmp_path, capsys, argv, message):
    files = {"npz": npz_file, "bad_npz": tmp_path / "bad.npz", "short_npz": tmp_path / "s.npz",
             "fake_nwb": tmp_path / "fake.nwb", "text": tmp_path / "data.txt",
             "old_model": tmp_path / "old.joblib", "corrupt_npz": tmp_path / "corrupt.npz"}
    np.savez(files["corrupt_npz"], X=np.ones((30, 2)), y=np.ones(30))
    files["corrupt_npz"].write_bytes(files["corrupt_npz"].read_bytes()[:100])
    np.savez(files["bad_npz"], X=np.ones((4, 2)))
    np.savez(files["short_npz"], X=np.ones((5, 2)), y=np.ones(4))
    files["fake_nwb"].write_text("not hdf5")
    files["text"].write_text("1 2 3")
    with files["old_model"].open("wb") as handle:
        handle.write(json.dumps({"format": "sklearn-cnnenc-model",
                                 "versions": {"sklearn_cnnenc": "0.0.1", "scikit-learn": "1.0",
                                              "torch": "1.0"}}).encode() + b"\n")
        joblib.dump(PoissonGLM(), handle)
    argv = [arg.format(**files) for arg in argv]
    assert main(argv) == 2
    assert message in _one_line_error(capsys)


def test_module_entry_point_shows_the_commands():
    completed = subprocess.run([sys.executable, "-m", "sklearn_cnnenc", "--help"],
                               capture_output=True, text=True, check=True)
    for command in ("demo", "compare", "fit", "predict"):
        assert command in completed.stdout


def test_demo_quick_compares_the_three_models_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "fraction of oracle" in printed and "complex cells" in printed
    for name in ("summary.csv", "results.json", "model_comparison.png",
                 "cnn_first_layer_filters.png", "predicted_vs_true_rates.png"):
        assert (out / name).is_file(), name
    payload = json.loads((out / "results.json").read_text())
    assert payload["models"] == ["glm", "ln", "cnn", "oracle"]
    summary = {row["model"]: row for row in payload["summary"]}
    # the CNN must beat the GLM clearly, and nothing beats the true rates
    assert summary["cnn"]["bits_per_spike"] > summary["glm"]["bits_per_spike"] + 0.3
    assert summary["oracle"]["bits_per_spike"] >= summary["cnn"]["bits_per_spike"]
    assert 0.0 < summary["cnn"]["fraction_of_oracle"] <= 1.0


def test_compare_keeps_groups_together_in_outer_and_inner_folds(tmp_path, capsys):
    data = make_glm_data(n_samples=600, n_features=3, n_neurons=2, random_state=1)
    path = tmp_path / "trials.npz"
    np.savez(path, X=data.X, y=data.y, groups=np.repeat(np.arange(12), 50))
    out = tmp_path / "grouped"
    assert main(["compare", "--data", str(path), "--models", "glm", "--cv", "3",
                 "--out", str(out)]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["n_folds"] == 3 and len(payload["best_params"]) == 3


def test_three_dimensional_stimuli_are_images_unless_told_time_series():
    from sklearn_cnnenc.cli import _input_shape

    X = np.zeros((10, 4, 20))
    assert _input_shape(X, None, "auto") == (1, 4, 20)
    assert _input_shape(X, None, "time_series") == (4, 20)
    assert _input_shape(X.reshape(10, -1), "4,20", "time_series") == (4, 20)
