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
    # one LN candidate (not the default two): the tables and figure are under test here
    assert main(["compare", "--data", str(npz_file), "--models", "glm,ln", "--cv", "3",
                 "--grid", "ln:nonlinearity=softplus",
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "glm" in printed and "ln" in printed and "bits/spike" in printed
    for name in ("scores.csv", "summary.csv", "paired.csv", "results.json",
                 "model_comparison.png"):
        assert (out / name).is_file(), name
    payload = json.loads((out / "results.json").read_text())
    assert payload["models"] == ["glm", "ln"] and payload["n_folds"] == 3
    assert payload["n_neurons"] == 3
    # the GLM's path is searched in each of 3 folds; a one-value LN grid is a setting
    assert [row["model"] for row in payload["best_params"]] == ["glm"] * 3


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


# --- one tool: the same reading of files in every command --------------------------


@pytest.fixture(scope="module")
def image_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6, 6))
    rate = np.exp(0.3 * X[:, 2, 3] - 0.2 * X[:, 4, 1])
    y = rng.poisson(np.column_stack([rate, rate * 0.5])).astype(float)
    path = tmp_path_factory.mktemp("images") / "images.npz"
    np.savez(path, X=X, y=y)
    return path


def test_fit_glm_on_images_flattens_them_like_compare(image_npz, tmp_path):
    assert main(["fit", "--data", str(image_npz), "--model", "glm",
                 "--out", str(tmp_path / "glm.joblib")]) == 0


def test_fit_cnn_on_flat_x_needs_an_input_shape_like_compare(npz_file, tmp_path, capsys):
    assert main(["fit", "--data", str(npz_file), "--model", "cnn",
                 "--out", str(tmp_path / "cnn.joblib")]) == 2
    assert "cnn needs --input-shape" in _one_line_error(capsys)


def test_fit_cnn_with_input_shape_then_predict_on_x_alone(image_npz, tmp_path, capsys):
    model_path = tmp_path / "cnn.joblib"
    flat = tmp_path / "flat.npz"
    data = np.load(image_npz)
    np.savez(flat, X=data["X"].reshape(200, -1), y=data["y"])
    assert main(["fit", "--data", str(flat), "--model", "cnn", "--input-shape", "1,6,6",
                 "--param", "max_epochs=2", "--param", "channels=2",
                 "--param", "kernel_size=(3, 3)", "--param", "device='cpu'",
                 "--out", str(model_path)]) == 0
    stimuli = tmp_path / "stimuli.npz"
    np.savez(stimuli, X=data["X"][:7].reshape(7, -1))  # no y
    out = tmp_path / "pred.npz"
    assert main(["predict", "--data", str(stimuli), "--model", str(model_path),
                 "--input-shape", "1,6,6", "--out", str(out)]) == 0
    assert np.load(out)["y_pred"].shape == (7, 2)


def test_n_lags_fits_the_stimulus_history(tmp_path, capsys):
    rng = np.random.default_rng(0)
    stimulus = rng.normal(size=1500)
    drive = 0.8 * np.roll(stimulus, 3)  # the response follows the stimulus 3 bins later
    y = rng.poisson(np.exp(drive - 0.5)).astype(float)
    path = tmp_path / "series.npz"
    np.savez(path, X=stimulus, y=y)

    def bits(extra):
        out = tmp_path / f"out{len(extra)}"
        assert main(["compare", "--data", str(path), "--models", "glm", "--cv", "3",
                     "--out", str(out), *extra]) == 0
        summary = json.loads((out / "results.json").read_text())["summary"]
        return summary[0]["bits_per_spike"]

    assert bits(["--n-lags", "6"]) > bits([]) + 0.1
    model_path = tmp_path / "lagged.joblib"
    assert main(["fit", "--data", str(path), "--n-lags", "6", "--out", str(model_path)]) == 0
    out = tmp_path / "pred.npz"
    assert main(["predict", "--data", str(path), "--model", str(model_path), "--n-lags", "6",
                 "--out", str(out)]) == 0
    assert np.load(out)["y_pred"].shape == (1500,)


def test_n_lags_compares_the_cnn_with_other_models(tmp_path):
    # one lagged design for every model: the CNN reads TimeLagger's order itself
    rng = np.random.default_rng(1)
    stimulus = rng.normal(size=600)
    y = rng.poisson(np.exp(0.8 * np.roll(stimulus, 2) - 0.5)).astype(float)
    path = tmp_path / "series.npz"
    np.savez(path, X=stimulus, y=y)
    out = tmp_path / "out"
    assert main(["compare", "--data", str(path), "--models", "glm,cnn", "--cv", "2",
                 "--n-lags", "5", "--grid", "cnn:max_epochs=2", "--grid", "cnn:channels=2",
                 "--grid", "cnn:kernel_size=3", "--device", "cpu",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert {row["model"] for row in summary} == {"glm", "cnn"}


def test_version_and_help_without_markup(capsys):
    from sklearn_cnnenc import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    printed = capsys.readouterr().out
    assert "``" not in printed and ":class:" not in printed and "cnnenc command" in printed


@pytest.mark.parametrize("flag", [["--stimulus", "movie"], ["--bin-s", "0.01"]])
def test_nwb_flags_are_refused_for_npz(npz_file, tmp_path, capsys, flag):
    assert main(["fit", "--data", str(npz_file), *flag,
                 "--out", str(tmp_path / "m.joblib")]) == 2
    assert "apply to NWB files only" in _one_line_error(capsys)


def test_grid_override_and_its_errors(npz_file, tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["compare", "--data", str(npz_file), "--models", "glm", "--cv", "2",
                 "--grid", "glm:alpha=1e-3,1e-2,0.1", "--out", str(out)]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert {row["params"]["alpha"] for row in payload["best_params"]} <= {1e-3, 1e-2, 0.1}
    for grid, message in [("glm-alpha", "expected MODEL:PARAM"),
                          ("ln:alpha=1", "not among the compared models"),
                          ("glm:gamma=1", "has no parameter 'gamma'")]:
        capsys.readouterr()
        assert main(["compare", "--data", str(npz_file), "--models", "glm", "--grid", grid,
                     "--out", str(out)]) == 2
        assert message in _one_line_error(capsys)


def test_the_cnn_runs_on_its_defaults_and_a_one_value_grid_is_a_setting():
    from sklearn.model_selection import GridSearchCV

    from sklearn_cnnenc import CNNEncoder
    from sklearn_cnnenc.cli import _build_models

    models = _build_models(["glm", "ln", "cnn"], (1, 6, 6), "cpu", quick=False)
    assert isinstance(models["cnn"], CNNEncoder)  # no inner search: its defaults are "auto"
    assert models["cnn"].get_params()["channels"] == "auto"
    assert isinstance(models["ln"], GridSearchCV)
    models = _build_models(["cnn"], (1, 6, 6), "cpu", quick=False,
                           grids={"cnn": {"channels": [4], "kernel_size": [3, 5]}})
    search = models["cnn"]
    assert isinstance(search, GridSearchCV)
    assert search.param_grid == {"kernel_size": [3, 5]}
    assert search.estimator.get_params()["channels"] == 4
    models = _build_models(["cnn"], (1, 6, 6), "cpu", quick=False,
                           grids={"cnn": {"channels": [4]}})
    assert isinstance(models["cnn"], CNNEncoder) and models["cnn"].channels == 4


def test_glm_alpha_grid_is_alpha_max_down_four_decades():
    from sklearn_cnnenc import PoissonGLM
    from sklearn_cnnenc.cli import glm_alpha_grid

    data = make_glm_data(n_samples=400, n_features=5, n_neurons=2, random_state=0)
    alphas = glm_alpha_grid(data.X, data.y, l1_ratio=1.0)
    assert alphas[0] / alphas[-1] == pytest.approx(1e4)
    # alpha_max is the smallest lasso penalty that zeroes every coefficient
    at_max = PoissonGLM(alpha=alphas[0] * 1.001, l1_ratio=1.0).fit(data.X, data.y)
    below = PoissonGLM(alpha=alphas[0] * 0.9, l1_ratio=1.0).fit(data.X, data.y)
    assert np.all(np.abs(at_max.coef_) < 1e-8)
    assert np.any(np.abs(below.coef_) > 1e-6)


@pytest.mark.slow
def test_compare_brackets_the_glm_penalty_on_v1_images(tmp_path, capsys):
    """Issue 15 §5: 2,000 V1 images; the fixed grid {1e-3..1} chose its edge (-3.44 bits/spike)."""
    from sklearn_cnnenc.datasets import make_v1_population

    data = make_v1_population(n_samples=2000, random_state=0)
    path = tmp_path / "v1.npz"
    np.savez(path, X=data.X, y=data.y)
    out = tmp_path / "v1"
    assert main(["compare", "--data", str(path), "--models", "glm", "--cv", "3",
                 "--out", str(out)]) == 0
    assert "edge of its grid" not in capsys.readouterr().err
    payload = json.loads((out / "results.json").read_text())
    assert payload["summary"][0]["bits_per_spike"] > 0
