"""Property-based bad input for every public estimator, transformer, metric and command.

The public names are enumerated from the package's ``__all__`` lists and the
command line's parser, and every constructor parameter from
``_parameter_constraints``: a new estimator, parameter, metric or command is
covered the day it lands (an estimator or metric without a recipe below makes
``test_every_public_name_has_a_recipe`` fail). The property: bad input gives a
clear ``ValueError`` / ``TypeError`` (CLI: exit status 2 and one line), never
another exception, a traceback, or a silent non-finite result.
"""

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import (
    InvalidParameterError,
    generate_invalid_param_val,
    make_constraint,
)

import sklearn_cnnenc
from sklearn_cnnenc import metrics, preprocessing
from sklearn_cnnenc.cli import _parser, main

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
RNG = np.random.default_rng(0)


def _public(module, kind):
    return {name: getattr(module, name) for name in module.__all__
            if kind(getattr(module, name))}


def _is_estimator(value):
    return inspect.isclass(value) and issubclass(value, BaseEstimator)


ESTIMATORS = {**_public(sklearn_cnnenc, _is_estimator), **_public(preprocessing, _is_estimator)}
METRICS = {name: value for name, value in _public(metrics, inspect.isfunction).items()
           if name not in ("make_encoding_scorer", "get_scorer")}

# the cheapest valid configuration of each estimator, with data it fits
X_FLAT, Y_COUNTS = RNG.random((24, 6)), RNG.poisson(1.0, (24, 2)).astype(float)
RECIPES = {
    "PoissonGLM": lambda: sklearn_cnnenc.PoissonGLM(max_iter=20),
    "PoissonGLMCV": lambda: sklearn_cnnenc.PoissonGLMCV(alphas=[0.1, 1.0], cv=2, max_iter=20),
    "LNModel": lambda: sklearn_cnnenc.LNModel(max_iter=10, n_init=1, random_state=0),
    "CNNEncoder": lambda: sklearn_cnnenc.CNNEncoder(
        input_shape=(1, 6), input_type="time_series", max_epochs=1, channels=2,
        kernel_size=3, n_layers=1, device="cpu", random_state=0),
    "CNNEncoderCV": lambda: sklearn_cnnenc.CNNEncoderCV(
        sklearn_cnnenc.CNNEncoder(
            input_shape=(1, 6), input_type="time_series", max_epochs=1, kernel_size=3,
            n_ensemble=1, device="cpu", random_state=0),
        {"n_layers": [1], "channels": [2]}, cv=2, random_state=0),
    "BayesianDecoder": lambda: sklearn_cnnenc.BayesianDecoder(sklearn_cnnenc.PoissonGLM()),
    "TimeLagger": lambda: preprocessing.TimeLagger(n_lags=2),
    "RaisedCosineBasis": lambda: preprocessing.RaisedCosineBasis(n_basis=2),
}
# metric(y_true_like, y_pred_like) on good data of each metric's shape
GOOD_METRIC_INPUTS = {
    "log_likelihood": (Y_COUNTS, Y_COUNTS + 0.5),
    "bits_per_spike": (Y_COUNTS, Y_COUNTS + 0.5),
    "pseudo_r2": (Y_COUNTS, Y_COUNTS + 0.5),
    "correlation": (Y_COUNTS, Y_COUNTS + RNG.random(Y_COUNTS.shape)),
    "fev": (RNG.random((3, 24, 2)), RNG.random((24, 2))),
    "feve": (RNG.random((3, 24, 2)), RNG.random((24, 2))),
    "explainable_variance": (RNG.random((3, 24, 2)),),
    "oracle_correlation": (RNG.random((3, 24, 2)),),
    "correlation_to_average": (RNG.random((3, 24, 2)), RNG.random((24, 2))),
}


def _fit(estimator, X, y):
    if isinstance(estimator, sklearn_cnnenc.BayesianDecoder):
        # the decoder reads responses and decodes stimulus labels
        return estimator.fit(X, np.arange(len(y)) % 3)
    if isinstance(estimator, BaseEstimator) and not hasattr(estimator, "predict"):
        return estimator.fit(X)
    return estimator.fit(X, y)


# the recipes are deliberately tiny (max_iter=10): they must fit, not converge
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_every_public_name_has_a_recipe():
    assert set(ESTIMATORS) <= set(RECIPES), set(ESTIMATORS) - set(RECIPES)
    assert set(METRICS) <= set(GOOD_METRIC_INPUTS), set(METRICS) - set(GOOD_METRIC_INPUTS)
    for name in ESTIMATORS:  # the recipes themselves fit
        _fit(RECIPES[name](), X_FLAT, Y_COUNTS)


def _bad_array(kind):
    X = X_FLAT.copy()
    if kind == "nan":
        X[2, 1] = np.nan
    elif kind == "inf":
        X[0, 0] = np.inf
    elif kind == "empty":
        X = X[:0]
    elif kind == "scalar":
        X = np.float64(3.0)
    elif kind == "strings":
        X = np.full(X.shape, "a")
    elif kind == "short":
        X = X[:5]
    return X


BAD_ARRAYS = ("nan", "inf", "empty", "scalar", "strings", "short")


@SETTINGS
@given(name=st.sampled_from(sorted(ESTIMATORS)), kind=st.sampled_from(BAD_ARRAYS))
def test_bad_data_is_a_clear_error(name, kind):
    with pytest.raises((ValueError, TypeError)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "short":  # X and y disagree on the number of samples
                _fit(RECIPES[name](), _bad_array(kind), Y_COUNTS)
            else:
                _fit(RECIPES[name](), _bad_array(kind), Y_COUNTS[: len(np.atleast_1d(
                    _bad_array(kind)))])


def _invalid_values(estimator):
    for parameter, constraints in estimator._parameter_constraints.items():
        if constraints == "no_validation":
            continue
        try:
            value = generate_invalid_param_val(make_constraint(constraints[0])) \
                if len(constraints) == 1 else None
        except NotImplementedError:
            value = None
        if value is None:
            value = object()  # satisfies no constraint but "no_validation"
        yield parameter, value


@SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(ESTIMATORS)))
def test_every_parameter_refuses_an_invalid_value(data, name):
    estimator = RECIPES[name]()
    parameter, value = data.draw(st.sampled_from(list(_invalid_values(estimator))))
    estimator.set_params(**{parameter: value})
    with pytest.raises(InvalidParameterError, match=parameter):
        _fit(estimator, X_FLAT, Y_COUNTS)


@SETTINGS
@given(name=st.sampled_from(sorted(METRICS)),
       kind=st.sampled_from(("nan", "inf", "negative", "shape", "empty", "zero_pred")))
def test_metrics_refuse_bad_input_or_warn(name, kind):
    arrays = [np.array(a, dtype=float) for a in GOOD_METRIC_INPUTS[name]]
    if kind == "nan":
        arrays[0].flat[0] = np.nan
    elif kind == "inf":
        arrays[-1].flat[0] = np.inf
    elif kind == "negative":
        arrays[-1].flat[0] = -1.0
    elif kind == "shape":
        arrays[-1] = arrays[-1][..., :1] if len(arrays) > 1 else arrays[-1][:1]
    elif kind == "empty":
        arrays = [a[:0] for a in arrays]
    elif kind == "zero_pred":
        arrays[-1] = np.zeros_like(arrays[-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = METRICS[name](*arrays)
        except (ValueError, TypeError):
            return
    value = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(value)):
        # a non-finite result is never silent
        assert caught, f"{name}({kind}) returned {value} without a warning"


COMMANDS = sorted(_parser()._subparsers._group_actions[0].choices)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    files = {"empty": folder / "empty.npz", "scalar": folder / "scalar.npz",
             "nan": folder / "nan.npz", "text": folder / "text.npz"}
    files["empty"].write_bytes(b"")
    np.savez(files["scalar"], X=np.array(1.0), y=np.array(1.0))
    X = X_FLAT.copy()
    X[1, 1] = np.nan
    np.savez(files["nan"], X=X, y=Y_COUNTS)
    files["text"].write_text("X,y\n1,2\n")
    return files


@SETTINGS
@given(command=st.sampled_from(COMMANDS),
       kind=st.sampled_from(("empty", "scalar", "nan", "text", "device")))
def test_every_command_answers_bad_input_in_one_line(bad_files, tmp_path_factory, capsys,
                                                     command, kind):
    out = tmp_path_factory.mktemp("out")
    model = out / "model.joblib"
    argv = {"demo": ["demo", "--quick", "--device", "tpu", "--out", str(out)],
            "compare": ["compare", "--models", "glm", "--cv", "2", "--out", str(out)],
            "fit": ["fit", "--out", str(model)],
            "predict": ["predict", "--model", str(model), "--out", str(out / "p.npz")]}[command]
    if command != "demo":
        good = bad_files["nan"] if kind == "device" else bad_files[kind]
        argv += ["--data", str(good)]
        if kind == "device" and command != "predict":
            argv += ["--device", "mps"] if command == "compare" else ["--param", "device='mps'"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().split("\n")
    assert err[-1].startswith("cnnenc: error: ")
    assert not any("Traceback" in line for line in err)
