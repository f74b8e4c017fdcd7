import json

import numpy as np
import pytest
from joblib import parallel_config
from scipy import stats
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.metrics import bits_per_spike, correlation, pseudo_r2
from sklearn_cnnenc.model_selection import GridEdgeWarning, ModelComparison, compare_models


@pytest.fixture(scope="module")
def data():
    return make_glm_data(n_samples=900, n_features=5, n_neurons=8, modulation=0.8,
                         random_state=0)


@pytest.fixture(scope="module")
def comparison(data):
    models = {"good": PoissonGLM(alpha=1e-3), "over-penalised": PoissonGLM(alpha=30.0)}
    return compare_models(models, data.X, data.y, cv=KFold(3), oracle_rates=data.mean,
                          verbose=False)


def test_records_every_model_fold_neuron_and_metric(comparison):
    assert comparison.models == ["good", "over-penalised", "oracle"]
    assert comparison.metrics == ["log_likelihood", "bits_per_spike", "pseudo_r2", "correlation"]
    assert len(comparison.scores) == 3 * 3 * 8 * 4
    assert len(comparison.fit_times) == 3 * 3
    assert all(record["fit_time"] >= 0 for record in comparison.fit_times)


def test_scores_equal_a_hand_computed_held_out_fold(data, comparison):
    train, test = list(KFold(3).split(data.X))[1]
    model = PoissonGLM(alpha=1e-3).fit(data.X[train], data.y[train])
    prediction = model.predict(data.X[test])
    train_mean = data.y[train].mean(axis=0)
    expected = {
        "log_likelihood": model.log_likelihood(data.X[test], data.y[test],
                                               per_neuron=True).mean(axis=0),
        "bits_per_spike": bits_per_spike(data.y[test], prediction, y_null=train_mean,
                                         multioutput="raw_values"),
        "pseudo_r2": pseudo_r2(data.y[test], prediction, y_null=train_mean,
                               multioutput="raw_values"),
        "correlation": correlation(data.y[test], prediction, multioutput="raw_values"),
    }
    for metric, values in expected.items():
        recorded = [r["value"] for r in comparison.scores
                    if r["model"] == "good" and r["fold"] == 1 and r["metric"] == metric]
        np.testing.assert_allclose(recorded, values, rtol=1e-6, err_msg=metric)


def test_paired_comparison_is_a_wilcoxon_test_across_neurons(comparison):
    pairs = comparison.paired_comparisons("log_likelihood")
    first = next(p for p in pairs if (p["model_a"], p["model_b"]) == ("good", "over-penalised"))
    values = comparison.per_neuron("log_likelihood")
    difference = values["good"] - values["over-penalised"]
    assert first["mean_difference"] == pytest.approx(difference.mean())
    assert first["wilcoxon_p"] == pytest.approx(stats.wilcoxon(difference).pvalue)
    assert first["fraction_a_better"] == 1.0
    assert first["wilcoxon_p"] < 0.01
    assert first["n_neurons"] == 8


def test_oracle_bounds_the_models(comparison):
    fractions = comparison.fraction_of_oracle()
    np.testing.assert_allclose(fractions["oracle"], 1.0)
    assert 0.5 < np.nanmean(fractions["good"]) < 1.05
    assert np.nanmean(fractions["over-penalised"]) < np.nanmean(fractions["good"])
    summary = {row["model"]: row for row in comparison.summary()}
    assert summary["oracle"]["bits_per_spike"] >= summary["good"]["bits_per_spike"] - 0.02
    assert summary["good"]["fraction_of_oracle"] == pytest.approx(
        np.nanmean(fractions["good"]))


@pytest.mark.filterwarnings("ignore::sklearn_cnnenc.model_selection.GridEdgeWarning")
def test_nested_cross_validation_records_the_chosen_hyper_parameters(data):
    search = GridSearchCV(PoissonGLM(), {"alpha": [1e-3, 100.0]}, cv=KFold(2))
    results = compare_models({"searched": search}, data.X, data.y[:, 0], cv=KFold(3),
                             scoring=("log_likelihood",), verbose=False)
    assert [r["fold"] for r in results.best_params] == [0, 1, 2]
    assert all(r["params"] == {"alpha": 1e-3} for r in results.best_params)
    assert results.n_neurons == 1


def test_a_search_at_the_end_of_a_pipeline_gets_its_groups_and_reports_its_choice(data):
    from sklearn.model_selection import GroupKFold

    groups = np.repeat(np.arange(9), 100)
    grid = {"alpha": [1e-3, 100.0]}
    bare = GridSearchCV(PoissonGLM(), grid, cv=GroupKFold(2))
    piped = make_pipeline(StandardScaler(), GridSearchCV(PoissonGLM(), grid, cv=GroupKFold(2)))
    results = {}
    for name, model in (("bare", bare), ("piped", piped)):
        # the choice sits on the grid's edge, and the pipeline's search says so too
        with pytest.warns(GridEdgeWarning, match="alpha=0.001"):
            results[name] = compare_models({"m": model}, data.X, data.y[:, 0], cv=GroupKFold(3),
                                           groups=groups, scoring=("log_likelihood",),
                                           verbose=False, return_estimators=True)
    # GroupKFold inside needs the training fold's groups: it fails without them
    assert [r["params"] for r in results["piped"].best_params] == [{"alpha": 1e-3}] * 3
    # the kept model is the pipeline with the best estimator in place of the search
    assert isinstance(results["piped"].estimators[("m", 0)][-1], PoissonGLM)
    # standardising the features does not change an almost unpenalised GLM's fit
    np.testing.assert_allclose(results["piped"].per_neuron("log_likelihood")["m"],
                               results["bare"].per_neuron("log_likelihood")["m"], rtol=1e-3)


def test_default_folds_are_contiguous_blocks(data):
    model = {"glm": make_pipeline(StandardScaler(), PoissonGLM(alpha=1e-3))}
    default = compare_models(model, data.X, data.y, scoring=("correlation",), verbose=False)
    explicit = compare_models(model, data.X, data.y, cv=KFold(5), scoring=("correlation",),
                              verbose=False)
    assert default.n_folds == 5
    np.testing.assert_allclose([r["value"] for r in default.scores],
                               [r["value"] for r in explicit.scores], rtol=1e-12)


# worker processes each import torch (~3 s, far more on a busy machine): slow
@pytest.mark.parametrize("backend", ["threading", pytest.param("loky", marks=pytest.mark.slow)])
def test_parallel_fits_equal_serial_fits(data, backend):
    models = {"a": PoissonGLM(alpha=1e-3), "b": PoissonGLM(alpha=1.0)}
    serial = compare_models(models, data.X, data.y, cv=KFold(2), verbose=False)
    with parallel_config(backend=backend):
        parallel = compare_models(models, data.X, data.y, cv=KFold(2), n_jobs=2, verbose=False)
    np.testing.assert_allclose([r["value"] for r in parallel.scores],
                               [r["value"] for r in serial.scores], rtol=1e-12)


def test_tables_and_files(comparison, tmp_path):
    pandas = pytest.importorskip("pandas")
    frame = comparison.to_frame()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == len(comparison.scores)
    assert set(comparison.to_frame("summary")["model"]) == set(comparison.models)
    paths = comparison.to_csv(tmp_path / "csv")
    assert [p.name for p in paths] == ["scores.csv", "fit_times.csv", "summary.csv",
                                       "paired.csv"]
    assert len(paths[0].read_text().splitlines()) == len(comparison.scores) + 1
    payload = json.loads(comparison.to_json(tmp_path / "results.json").read_text())
    assert payload["models"] == comparison.models and len(payload["summary"]) == 3
    assert "good" in repr(comparison)


def test_fitted_estimators_and_test_folds_are_kept_on_request(data):
    results = compare_models({"glm": PoissonGLM(alpha=1e-3)}, data.X, data.y, cv=KFold(2),
                             scoring=("correlation",), verbose=False, return_estimators=True)
    assert sorted(results.estimators) == [("glm", 0), ("glm", 1)]
    test = results.test_indices[1]
    np.testing.assert_array_equal(test, np.arange(450, 900))
    prediction = results.estimators[("glm", 1)].predict(data.X[test])
    recorded = [r["value"] for r in results.scores if r["fold"] == 1]
    np.testing.assert_allclose(recorded, correlation(data.y[test], prediction,
                                                     multioutput="raw_values"))


def test_custom_metric_callable(data):
    results = compare_models({"glm": PoissonGLM(alpha=1e-3)}, data.X, data.y, cv=KFold(2),
                             scoring={"mse": lambda y, p: ((y - p) ** 2).mean(axis=0)},
                             verbose=False)
    assert results.per_neuron("mse")["glm"].shape == (8,)


def test_progress_bar_reports_every_fit(data, capsys):
    compare_models({"glm": PoissonGLM()}, data.X, data.y, cv=KFold(2), verbose=True)
    assert "2/2 fits" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"models": {}}, ValueError, "non-empty dict"),
        ({"models": {"x": object()}}, TypeError, "not an estimator"),
        ({"models": {"oracle": PoissonGLM()}}, ValueError, "reserved"),
        ({"scoring": ("r2_adjusted",)}, ValueError, "Unknown metric"),
        ({"oracle_rates": np.ones(3)}, ValueError, "oracle_rates must be shaped like y"),
    ],
)
def test_bad_arguments_are_clear_errors(data, kwargs, error, message):
    arguments = {"models": {"glm": PoissonGLM()}, "X": data.X, "y": data.y, "verbose": False}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        compare_models(**arguments)


def test_results_object_rejects_unknown_metric(comparison):
    assert isinstance(comparison, ModelComparison)
    with pytest.raises(ValueError, match="Unknown metric"):
        comparison.per_neuron("accuracy")


def test_dataframe_inputs_are_indexed_by_row(data):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(data.X, columns=[f"f{i}" for i in range(data.X.shape[1])])
    from_frame = compare_models({"glm": PoissonGLM(alpha=1e-3)}, frame, data.y, cv=KFold(3),
                                scoring=("correlation",), verbose=False)
    from_array = compare_models({"glm": PoissonGLM(alpha=1e-3)}, data.X, data.y, cv=KFold(3),
                                scoring=("correlation",), verbose=False)
    np.testing.assert_allclose([r["value"] for r in from_frame.scores],
                               [r["value"] for r in from_array.scores], rtol=1e-10)


def test_gaussian_models_and_their_oracle_are_scored_as_gaussians():
    calcium = make_glm_data(n_samples=600, n_features=4, n_neurons=3, family="gaussian",
                            dispersion=0.5, random_state=0)
    results = compare_models({"glm": PoissonGLM(alpha=1e-3, family="gaussian")}, calcium.X,
                             calcium.y, cv=KFold(3), oracle_rates=calcium.mean,
                             oracle_family="gaussian", oracle_dispersion=0.5,
                             scoring=("log_likelihood",), verbose=False)
    log_likelihoods = results.per_neuron("log_likelihood")
    # the oracle's score is the Gaussian log-density of the true noise: -0.5 log(2 pi e 0.5)
    np.testing.assert_allclose(log_likelihoods["oracle"], -0.5 * np.log(2 * np.pi * np.e * 0.5),
                               atol=0.1)
    assert np.all(log_likelihoods["glm"] <= log_likelihoods["oracle"] + 0.02)


# --- issue 15 §5: grids that bracket the optimum, silent units, quiet progress -------


def test_a_choice_on_the_grid_edge_warns(data):
    from sklearn_cnnenc.model_selection import GridEdgeWarning

    search = GridSearchCV(PoissonGLM(), {"alpha": [10.0, 100.0]}, cv=KFold(2))
    with pytest.warns(GridEdgeWarning, match=r"alpha=10.0 \(smallest of \[10.0, 100.0\]\)"):
        compare_models({"glm": search}, data.X, data.y, cv=KFold(2), verbose=False)


def test_an_inner_choice_does_not_warn(data):
    import warnings

    from sklearn_cnnenc.model_selection import GridEdgeWarning

    search = GridSearchCV(PoissonGLM(), {"alpha": [1e-6, 1e-4, 10.0]}, cv=KFold(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridEdgeWarning)
        results = compare_models({"glm": search}, data.X, data.y, cv=KFold(2), verbose=False)
    assert {row["params"]["alpha"] for row in results.best_params} == {1e-4}


def test_silent_units_warn_and_a_spike_weighted_average_is_offered(data):
    from sklearn_cnnenc.model_selection import SilentUnitWarning

    y = data.y.copy()
    y[: len(y) // 2, 0] = 0  # unit 0 is silent in the first half: no training spikes
    y[len(y) // 2:, 0] = np.where(np.arange(len(y) - len(y) // 2) % 50 == 0, 1, 0)
    with pytest.warns(SilentUnitWarning, match=r"1 unit\(s\).*units \[0\]"):
        results = compare_models({"glm": PoissonGLM(alpha=1e-3)}, data.X, y, cv=KFold(2),
                                 verbose=False)
    values = results.per_neuron("bits_per_spike")["glm"]
    spikes = y.sum(axis=0)
    expected = np.sum(values * spikes) / spikes.sum()
    uniform = results.summary()[0]["bits_per_spike"]
    weighted = results.summary(average="spikes")[0]["bits_per_spike"]
    assert weighted == pytest.approx(expected)
    assert uniform == pytest.approx(values.mean()) and weighted != pytest.approx(uniform)
    with pytest.raises(ValueError, match="average"):
        results.summary(average="median")


def test_convergence_warnings_are_summarised_per_model(data, recwarn):
    from sklearn.exceptions import ConvergenceWarning

    compare_models({"glm": PoissonGLM(alpha=1e-6, max_iter=1)}, data.X, data.y, cv=KFold(3),
                   verbose=False)
    convergence = [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]
    assert len(convergence) == 1
    assert str(convergence[0].message).startswith("glm: ")
    assert "in 3 of 3 outer fold(s)" in str(convergence[0].message)
