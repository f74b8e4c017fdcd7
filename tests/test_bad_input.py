"""The bad-input table of issue 10: each row a clear error or a correct result.

Every test here failed before its fix: a torch traceback, NaN, +-inf without a
word, or a result that was silently wrong.
"""

import json
import warnings

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc import io as cnnenc_io
from sklearn_cnnenc.metrics import (
    bits_per_spike,
    correlation,
    feve,
    log_likelihood,
    pseudo_r2,
)
from sklearn_cnnenc.preprocessing import RaisedCosineBasis, TimeLagger, raised_cosine_basis

RNG = np.random.default_rng(0)
X_FLAT = RNG.random((20, 3))
Y_COUNTS = RNG.poisson(1.0, 20).astype(float)


# --- devices ------------------------------------------------------------------


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "hpu", "cuda:99", "tpu"])
@pytest.mark.parametrize(
    "make", [lambda d: PoissonGLM(device=d), lambda d: LNModel(device=d)], ids=["glm", "ln"]
)
def test_unsupported_devices_are_refused_naming_what_is_available(make, device):
    with pytest.raises(ValueError, match=rf"{device}.*available"):
        make(device).fit(X_FLAT, Y_COUNTS)


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_cnn_refuses_unsupported_devices_before_torch_sees_them(device):
    X = RNG.random((16, 1, 8, 8))
    with pytest.raises(ValueError, match=rf"device='{device}' is not supported.*available"):
        CNNEncoder(device=device, max_epochs=1, channels=2, kernel_size=(3, 3)).fit(
            X, Y_COUNTS[:16]
        )


# --- data and model files -------------------------------------------------------


def test_load_npz_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        cnnenc_io.load_npz(path)


def test_load_npz_renamed_npy(tmp_path):
    np.save(tmp_path / "data.npy", X_FLAT)
    path = tmp_path / "data.npz"
    (tmp_path / "data.npy").rename(path)
    with pytest.raises(ValueError, match="not a readable .npz archive"):
        cnnenc_io.load_npz(path)


def test_load_npz_zero_dimensional_arrays(tmp_path):
    path = tmp_path / "scalars.npz"
    np.savez(path, X=np.array(1.0), y=np.array(2.0))
    with pytest.raises(ValueError, match="0-d array"):
        cnnenc_io.load_npz(path)


def _model_file(path, header, payload):
    with path.open("wb") as handle:
        handle.write(json.dumps(header).encode() + b"\n")
        joblib.dump(payload, handle)
    return path


def test_load_model_header_missing_keys(tmp_path):
    path = _model_file(tmp_path / "m.joblib", {"format": "sklearn-cnnenc-model"}, PoissonGLM())
    with pytest.raises(ValueError, match="damaged header"):
        cnnenc_io.load_model(path)


def test_load_model_followed_by_a_pickled_list(tmp_path):
    header = {"format": "sklearn-cnnenc-model", "versions": cnnenc_io._versions()}
    path = _model_file(tmp_path / "m.joblib", header, [1, 2])
    with pytest.raises(TypeError, match="holds a list, not an estimator"):
        cnnenc_io.load_model(path)


# --- metrics --------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-160, 1.0, 1e154, 1e300])
def test_correlation_is_scale_invariant(scale):
    rng = np.random.default_rng(1)
    y_true = rng.random(50)
    y_pred = y_true + 0.3 * rng.random(50)
    expected = np.corrcoef(y_true, y_pred)[0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = correlation(y_true * scale, y_pred * scale)
    assert value == pytest.approx(expected, rel=1e-12)


def test_an_impossible_null_is_refused():
    y_true = np.array([1.0, 2.0, 0.0])
    y_pred = np.array([1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="y_null gives the recorded responses probability 0"):
        bits_per_spike(y_true, y_pred, y_null=0)
    with pytest.raises(ValueError, match="y_null gives the recorded responses probability 0"):
        pseudo_r2(y_true, y_pred, y_null=0)


@pytest.mark.parametrize("metric", [log_likelihood, bits_per_spike, pseudo_r2])
def test_a_zero_prediction_where_spikes_were_recorded_warns(metric):
    y_true = np.array([1.0, 2.0, 0.0])
    with pytest.warns(RuntimeWarning, match="probability 0 in 1 sample"):
        value = metric(y_true, np.array([0.0, 2.0, 1.0]))
    assert value == -np.inf


def _barely_explainable(seed=4):
    rng = np.random.default_rng(seed)
    signal = 0.1 * rng.normal(size=50)
    return signal + rng.normal(size=(5, 50))


def test_feve_of_a_barely_explainable_neuron_is_undefined():
    responses = _barely_explainable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        unstable = feve(responses, np.ones(50), significance=None)
    assert abs(unstable) > 100  # the number the issue saw (251): meaningless
    with pytest.warns(UndefinedMetricWarning, match="not significant"):
        assert np.isnan(feve(responses, np.ones(50)))


def test_feve_of_a_clearly_driven_neuron_is_unchanged_by_the_test():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=40)
    responses = signal + 0.5 * rng.normal(size=(4, 40))
    assert feve(responses, signal) == feve(responses, signal, significance=None)


def test_feve_significance_is_validated():
    with pytest.raises(ValueError, match="significance"):
        feve(_barely_explainable(), np.ones(50), significance=1.5)


# --- raised-cosine bases ----------------------------------------------------------


def test_raised_cosine_basis_with_a_huge_offset_is_the_linear_basis():
    huge = raised_cosine_basis(4, 10, offset=1e16)
    assert np.all(np.isfinite(huge))
    np.testing.assert_allclose(huge, raised_cosine_basis(4, 10, log_scaling=False), atol=1e-12)
    X = TimeLagger(n_lags=10).fit_transform(RNG.random((30, 1)))
    features = RaisedCosineBasis(n_basis=4, offset=1e16).fit_transform(X)
    assert np.all(np.isfinite(features))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_basis": 3, "window": 0}, "window must be an integer >= 1"),
        ({"n_basis": 3, "window": 10, "offset": 0}, "offset must be a finite number > 0"),
        ({"n_basis": 0, "window": 10}, "n_basis must be an integer >= 1"),
        ({"n_basis": 3, "window": 10.5}, "window must be an integer >= 1"),
    ],
)
def test_raised_cosine_basis_validates_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        raised_cosine_basis(**kwargs)


# --- CNN training -------------------------------------------------------------------


def test_a_diverging_cnn_fit_warns_and_stops():
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 1, 10, 10)), rng.poisson(1.0, (64, 2)).astype(float)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        model = CNNEncoder(lr=1e3, max_epochs=10, channels=4, kernel_size=(5, 3),
                           device="cpu", random_state=0).fit(X, y)
    assert len(model.net_.history) < 10


def test_a_sane_cnn_fit_does_not_warn_of_divergence():
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 1, 10, 10)), rng.poisson(1.0, (64, 2)).astype(float)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*diverged.*")
        CNNEncoder(max_epochs=3, channels=4, kernel_size=(5, 3), device="cpu",
                   random_state=0).fit(X, y)


@pytest.mark.parametrize("input_type, shape", [("image", (16, 1, 8, 8)),
                                               ("time_series", (16, 1, 30))])
def test_cnn_padding_larger_than_the_kernel_is_refused(input_type, shape):
    X = RNG.random(shape)
    model = CNNEncoder(padding=1000, max_epochs=1, channels=2, kernel_size=(3, 3),
                       input_type=input_type, device="cpu")
    with pytest.raises(ValueError, match="padding=1000 is larger than the kernel span and"):
        model.fit(X, Y_COUNTS[:16])


# --- the command line: one line, exit status 2, no traceback -------------------------


@pytest.fixture
def cli_files(tmp_path):
    from sklearn_cnnenc.datasets import make_glm_data

    data = make_glm_data(n_samples=120, n_features=4, n_neurons=2, random_state=0)
    files = {name: tmp_path / f"{name}.npz" for name in ("good", "empty", "nan_X", "negative")}
    np.savez(files["good"], X=data.X, y=data.y)
    files["empty"].write_bytes(b"")
    X_nan = data.X.copy()
    X_nan[3, 1] = np.nan
    np.savez(files["nan_X"], X=X_nan, y=data.y)
    y_negative = data.y.copy()
    y_negative[5, 0] = -1
    np.savez(files["negative"], X=data.X, y=y_negative)
    header = {"format": "sklearn-cnnenc-model", "versions": cnnenc_io._versions()}
    files["list_model"] = _model_file(tmp_path / "list.joblib", header, [1, 2])
    return files


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--data", "{empty}"], "is empty (0 bytes)"),
        (["fit", "--data", "{good}", "--param", "device=mps"], "device='mps' is not supported"),
        (["predict", "--data", "{good}", "--model", "{list_model}"], "holds a list"),
        (["compare", "--data", "{nan_X}", "--models", "glm,ln", "--cv", "2"], "NaN"),
        (["compare", "--data", "{negative}", "--models", "glm", "--cv", "2"], "negative"),
        (["compare", "--data", "{good}", "--models", "glm", "--cv", "2", "--device", "tpu"],
         "Unknown device 'tpu'"),
        (["compare", "--data", "{good}", "--models", "cnn", "--cv", "2", "--input-shape",
          "1,3,3"], "has 9 values but each sample of X has 4"),
    ],
    ids=["empty-npz", "mps", "list-model", "nan-X", "negative-counts", "tpu", "input-shape"],
)
def test_cli_bad_input_is_one_line_with_status_2(cli_files, tmp_path, capsys, argv, message):
    from sklearn_cnnenc.cli import main

    argv = [arg.format(**cli_files) for arg in argv] + (
        ["--out", str(tmp_path / "out")] if argv[0] != "predict" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().split("\n")
    assert err[-1].startswith("cnnenc: error: ") and message in err[-1], err[-1]
    assert "fits failed" not in err[-1]
    assert not any("Traceback" in line for line in err)


# --- data sets ----------------------------------------------------------------------


def test_recordings_read_cnnenc_data_dir_or_say_it_is_unset(monkeypatch, tmp_path):
    from sklearn_cnnenc.datasets import load_grasshopper_auditory, load_hippocampus_linear_track

    monkeypatch.delenv("CNNENC_DATA_DIR", raising=False)
    for loader in (load_grasshopper_auditory, load_hippocampus_linear_track):
        with pytest.raises(FileNotFoundError, match=r"\$CNNENC_DATA_DIR is not set"):
            loader()
    monkeypatch.setenv("CNNENC_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="holds no grasshopper-auditory/"):
        load_grasshopper_auditory()


def test_grasshopper_recording_from_cnnenc_data_dir(monkeypatch, shared_data_dir):
    from sklearn_cnnenc.datasets import load_grasshopper_auditory

    monkeypatch.setenv("CNNENC_DATA_DIR", str(shared_data_dir))
    assert int(load_grasshopper_auditory().counts.sum()) == 929
