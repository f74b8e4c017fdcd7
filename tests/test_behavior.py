"""fit(X, y, behavior=...) and eye_position=: modulated CNNs, checks and metadata routing."""

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_cnnenc import CNNEncoder, PoissonGLM, PoissonGLMCV

_KERNEL = np.array([[-1.0, 0.0, 1.0]] * 3)


def _cells(n, positions, rng, gain=0.0, shift_with_eye=0):
    """Poisson edge cells; the rate is multiplied by exp(gain * running speed).

    With ``shift_with_eye`` the receptive field moves by that many pixels per
    unit of horizontal eye position (-1, 0 or 1).
    """
    X = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    run = rng.normal(size=(n, 1)).astype(np.float32)
    eye = np.zeros((n, 2), np.float32)
    eye[:, 0] = rng.randint(-1, 2, size=n)
    drive = np.empty((n, len(positions)))
    for j, (r, c) in enumerate(positions):
        col = c + (shift_with_eye * eye[:, 0]).astype(int)
        patches = np.stack([X[i, 0, r - 1 : r + 2, k - 1 : k + 2] for i, k in enumerate(col)])
        drive[:, j] = np.maximum((patches * _KERNEL).sum((1, 2)), 0)
    rate = np.exp(-0.3 + 0.4 * drive + gain * run)
    return X, run, eye, rate, rng.poisson(rate).astype(np.float32)


def _cnn(**params):
    defaults = dict(
        n_layers=1, channels=2, kernel_size=3, padding="same", batch_norm=False,
        gamma_input=0.0, lr=3e-2, link="exp", batch_size=64, max_epochs=40, patience=10,
        modulator_hidden_units=4, device="cpu", random_state=0,
        # one model and the former training settings (not the small-data defaults),
        # so that the fits with and without behaviour compare like for like
        n_ensemble=1, validation_fraction=0.1, gamma_readout=0.0,
    )
    return CNNEncoder(**{**defaults, **params})


@pytest.mark.parametrize("gain", [0.6, 0.0])
def test_behaviour_gain_helps_held_out_likelihood_only_when_it_is_in_the_data(gain):
    rng = np.random.RandomState(0)
    positions = [(rng.randint(2, 6), rng.randint(2, 6)) for _ in range(4)]
    X, run, _, _, y = _cells(700, positions, rng, gain=gain)
    X_test, run_test, _, _, y_test = _cells(400, positions, rng, gain=gain)
    without = _cnn().fit(X, y).score(X_test, y_test)
    with_behaviour = _cnn().fit(X, y, behavior=run).score(X_test, y_test, behavior=run_test)
    if gain:
        assert with_behaviour > without + 0.1
    else:
        assert with_behaviour < without + 0.02


def test_covariates_must_match_the_fit():
    rng = np.random.RandomState(1)
    X, run, _, _, y = _cells(200, [(3, 3)], rng)
    model = _cnn(max_epochs=2).fit(X, y, behavior=run)
    assert model.n_behavior_covariates_ == 1 and not model.uses_eye_position_
    with pytest.raises(ValueError, match="fitted with behavior="):
        model.predict(X)
    with pytest.raises(ValueError, match="fitted with behavior="):
        model.score(X, y)
    with pytest.raises(ValueError, match="column"):
        model.predict(X, behavior=np.hstack([run, run]))
    plain = _cnn(max_epochs=2).fit(X, y)
    with pytest.raises(ValueError, match="fitted without behavior="):
        plain.predict(X, behavior=run)
    with pytest.raises(ValueError, match="shape"):
        _cnn(max_epochs=2).fit(X, y, behavior=run[:10])
    with pytest.raises(ValueError, match="readout='gaussian'"):
        _cnn(max_epochs=2, readout="factorized").fit(X, y, eye_position=np.zeros((200, 2)))
    with pytest.raises(ValueError, match="CNNEncoder"):
        PoissonGLM().fit(X.reshape(200, -1), y[:, 0], behavior=run)


def test_behaviour_is_routed_through_pipeline_grid_search_and_cross_validate():
    rng = np.random.RandomState(2)
    X, run, _, _, y = _cells(300, [(3, 3), (4, 5)], rng, gain=0.5)
    with sklearn.config_context(enable_metadata_routing=True):
        model = _cnn(max_epochs=5).set_fit_request(behavior=True).set_score_request(
            behavior=True
        )
        pipeline = make_pipeline(FunctionTransformer(), model)
        search = GridSearchCV(pipeline, {"cnnencoder__lr": [1e-2, 3e-2]}, cv=KFold(2))
        search.fit(X, y, behavior=run)
        assert np.isfinite(search.best_score_)
        assert search.best_estimator_[-1].n_behavior_covariates_ == 1
        scores = cross_validate(
            model, X, y, cv=KFold(2), params={"behavior": run}
        )["test_score"]
        assert np.all(np.isfinite(scores))


def _pixel_cells(n, rng, positions):
    """Cells driven by one pixel that moves one pixel right per unit of horizontal eye position."""
    X = rng.normal(size=(n, 1, 6, 6)).astype(np.float32)
    eye = np.zeros((n, 2), np.float32)
    eye[:, 0] = rng.randint(-1, 2, size=n)
    rows = np.array([r for r, _ in positions])[None, :]
    cols = np.array([c for _, c in positions])[None, :] + eye[:, :1].astype(int)
    rate = np.exp(0.8 * X[np.arange(n)[:, None], 0, rows, cols])
    return X, eye, rate, rng.poisson(rate).astype(np.float32)


@pytest.mark.slow
def test_eye_shifter_recovers_a_cell_that_moves_with_the_eye():
    rng = np.random.RandomState(3)
    positions = [(2, 2), (3, 3)]
    X, eye, _, y = _pixel_cells(700, rng, positions)
    X_test, eye_test, _, y_test = _pixel_cells(400, rng, positions)
    params = dict(
        readout="gaussian", kernel_size=1, channels=1, padding="valid", activation="identity",
        lr=1e-2, max_epochs=60, patience=15,
    )
    fixed = _cnn(**params).fit(X, y).score(X_test, y_test)
    shifted = _cnn(**params).fit(X, y, eye_position=eye)
    assert shifted.uses_eye_position_
    assert shifted.score(X_test, y_test, eye_position=eye_test) > fixed + 0.1
    # one pixel of a 6-pixel map is 2/5 in the readout's [-1, 1] coordinates
    steps = shifted.module_.predictor.shifter(torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
    assert np.all(np.diff(steps[:, 0].detach().numpy()) > 0.1)


def test_compare_models_passes_behaviour_to_the_cnn_only():
    from sklearn_cnnenc.model_selection import compare_models

    rng = np.random.RandomState(4)
    X, run, _, _, y = _cells(300, [(3, 3), (4, 5)], rng, gain=0.5)
    flat = FunctionTransformer(lambda Z: Z.reshape(len(Z), -1))
    result = compare_models(
        {"cnn": _cnn(max_epochs=3), "glm": make_pipeline(flat, PoissonGLM())},
        X, y, cv=KFold(2), behavior=run, return_estimators=True, verbose=False,
    )
    assert result.estimators[("cnn", 0)].n_behavior_covariates_ == 1
    assert np.all(np.isfinite(result.per_neuron("log_likelihood")["cnn"]))


def test_grid_search_in_compare_models_gets_the_behaviour_of_its_inner_folds():
    from sklearn_cnnenc.model_selection import compare_models

    rng = np.random.RandomState(7)
    X, run, _, _, y = _cells(300, [(3, 3), (4, 5)], rng, gain=0.8)
    grid = {"lr": [1e-2, 3e-2]}
    search = GridSearchCV(_cnn(max_epochs=5), grid, cv=KFold(2))
    outer = KFold(2)
    with pytest.warns(Warning):  # a choice on the edge of this two-value grid
        result = compare_models({"cnn": search}, X, y, cv=outer, behavior=run, verbose=False,
                                scoring=["log_likelihood"])
        without = compare_models({"cnn": search}, X, y, cv=outer, verbose=False,
                                 scoring=["log_likelihood"])
    with_behaviour = result.per_neuron("log_likelihood")["cnn"]
    assert np.all(with_behaviour > without.per_neuron("log_likelihood")["cnn"] + 0.2)
    # the same nested cross-validation by hand: every inner fit and score with its rows'
    # behaviour, the refit on the outer training fold, its held-out fold with its own
    for fold, (train, test) in enumerate(outer.split(X)):
        Xt, yt, bt = X[train], y[train], run[train]
        inner_scores = {
            lr: np.mean([
                _cnn(max_epochs=5, lr=lr).fit(Xt[i], yt[i], behavior=bt[i])
                .score(Xt[o], yt[o], behavior=bt[o])
                for i, o in KFold(2).split(Xt)
            ])
            for lr in grid["lr"]
        }
        best = max(inner_scores, key=inner_scores.get)
        chosen = [r["params"] for r in result.best_params if r["fold"] == fold]
        assert chosen == [{"lr": best}]
        model = _cnn(max_epochs=5, lr=best).fit(Xt, yt, behavior=bt)
        expected = model.log_likelihood(X[test], y[test], per_neuron=True,
                                        behavior=run[test]).mean(axis=0)
        recorded = [r["value"] for r in result.scores
                    if r["fold"] == fold and r["metric"] == "log_likelihood"]
        np.testing.assert_allclose(recorded, expected, rtol=1e-5)


def test_a_pipeline_ending_in_a_search_routes_behaviour_like_the_bare_search():
    from sklearn_cnnenc.model_selection import compare_models

    rng = np.random.RandomState(7)
    X, run, _, _, y = _cells(240, [(3, 3), (4, 5)], rng, gain=0.8)
    grid = {"lr": [1e-2, 3e-2]}
    runs = {}
    for kind in ("bare", "pipeline"):
        search = GridSearchCV(_cnn(max_epochs=4), grid, cv=KFold(2))
        model = search if kind == "bare" else make_pipeline(FunctionTransformer(), search)
        with pytest.warns(Warning):  # a choice on the edge of this two-value grid
            runs[kind] = compare_models({"cnn": model}, X, y, cv=KFold(2), behavior=run,
                                        verbose=False, scoring=["log_likelihood"],
                                        return_estimators=True)
    # an identity step changes nothing: the same choices, the same held-out scores
    assert runs["pipeline"].best_params == runs["bare"].best_params
    np.testing.assert_allclose(runs["pipeline"].per_neuron("log_likelihood")["cnn"],
                               runs["bare"].per_neuron("log_likelihood")["cnn"], rtol=1e-6)
    fitted = runs["pipeline"].estimators[("cnn", 0)]
    assert fitted[-1].n_behavior_covariates_ == 1  # the best estimator, not the search
    # and the behaviour mattered: the model needs it to predict
    with pytest.raises(ValueError, match="behavior="):
        fitted.predict(X[:5])


def test_routing_covariates_needs_a_search_object():
    from sklearn_cnnenc.utils._estimators import fit_search_with_covariates

    X = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(TypeError, match="search object or a pipeline ending in one"):
        fit_search_with_covariates(make_pipeline(FunctionTransformer(), _cnn()), X,
                                   np.zeros(4), {"behavior": np.zeros((4, 1))})


def test_compare_models_routes_eye_position_into_a_searched_pipeline():
    from sklearn_cnnenc.model_selection import compare_models

    rng = np.random.RandomState(9)
    X, _, eye, _, y = _cells(160, [(3, 3)], rng)
    search = GridSearchCV(
        make_pipeline(FunctionTransformer(), _cnn(readout="gaussian", max_epochs=2)),
        {"cnnencoder__lr": [1e-2]}, cv=KFold(2),
    )
    result = compare_models({"cnn": search}, X, y, cv=KFold(2), eye_position=eye,
                            return_estimators=True, verbose=False, scoring=["log_likelihood"])
    assert result.estimators[("cnn", 0)][-1].uses_eye_position_
    assert np.all(np.isfinite(result.per_neuron("log_likelihood")["cnn"]))
    scored = GridSearchCV(_cnn(max_epochs=2), {"lr": [1e-2]}, cv=KFold(2), scoring="r2")
    with pytest.raises(ValueError, match="scoring=None"):
        compare_models({"cnn": scored}, X, y, cv=KFold(2), behavior=eye[:, :1], verbose=False)


def test_compare_models_predicts_each_repeated_trial_with_its_own_behaviour():
    from sklearn_cnnenc.metrics import feve
    from sklearn_cnnenc.model_selection import compare_models

    rng = np.random.RandomState(4)
    X, run, _, _, y = _cells(200, [(3, 3), (4, 5)], rng, gain=0.8)
    # 3 repeats of 12 stimuli; each trial its own running speed
    X_stimuli, _, _, rate, _ = _cells(12, [(3, 3), (4, 5)], rng)
    run_trials = rng.normal(size=(3, 12, 1))
    responses = rng.poisson(4 * rate**2 * np.exp(0.8 * run_trials)).astype(float)
    flat = FunctionTransformer(lambda Z: Z.reshape(len(Z), -1))
    models = {"cnn": _cnn(max_epochs=3), "glm": make_pipeline(flat, PoissonGLM(alpha=1.0))}
    scoring = ["log_likelihood", "correlation_to_average", "fev", "feve"]
    result = compare_models(models, X, y, cv=KFold(2), behavior=run, scoring=scoring,
                            repeats=(X_stimuli, responses), repeats_behavior=run_trials,
                            return_estimators=True, verbose=False)
    average, total = responses.mean(axis=0), responses.reshape(-1, 2).var(axis=0)
    noise = responses.var(axis=0, ddof=1).mean(axis=0)
    for fold in (0, 1):
        cnn = result.estimators[("cnn", fold)]
        trials = np.stack([cnn.predict(X_stimuli, behavior=run_trials[k]) for k in range(3)])
        # the trials' predictions differ with their behaviour
        assert np.ptp(trials, axis=0).max() > 1e-3
        glm = result.estimators[("glm", fold)].predict(X_stimuli)  # stimulus-only
        for name, predictions in (("cnn", trials), ("glm", np.broadcast_to(glm, trials.shape))):
            recorded = {metric: [r["value"] for r in result.scores if r["model"] == name
                                 and r["fold"] == fold and r["metric"] == metric]
                        for metric in scoring}
            mean = predictions.mean(axis=0)
            mse = ((responses - predictions) ** 2).reshape(-1, 2).mean(axis=0)
            np.testing.assert_allclose(
                recorded["correlation_to_average"],
                [np.corrcoef(average[:, j], mean[:, j])[0, 1] for j in range(2)], rtol=1e-6)
            np.testing.assert_allclose(recorded["fev"], 1 - mse / total, rtol=1e-6)
            np.testing.assert_allclose(
                recorded["feve"], feve(responses, predictions, multioutput="raw_values"),
                rtol=1e-6)
            np.testing.assert_allclose(recorded["feve"], 1 - (mse - noise) / (total - noise),
                                       rtol=1e-6)
    # a model fitted with behaviour is never scored on the repeats without it
    repeats = (X_stimuli, responses)
    # (stimulus-only models need no trial behaviour)
    only_glm = compare_models({"glm": models["glm"]}, X, y, cv=KFold(2), behavior=run,
                              repeats=repeats, scoring=["correlation_to_average"], verbose=False)
    assert len(only_glm.scores) == 2 * 2
    with pytest.raises(ValueError, match=r"\['cnn'\] are fitted with behavior.*repeats_behavior="):
        compare_models(models, X, y, behavior=run, repeats=repeats, verbose=False)
    with pytest.raises(ValueError, match="repeats_behavior is given but behavior is not"):
        compare_models(models, X, y, repeats=repeats, repeats_behavior=run_trials,
                       verbose=False)
    with pytest.raises(ValueError, match=r"shape .* = \(3, 12, 1\).*got \(3, 11, 1\)"):
        compare_models(models, X, y, behavior=run, repeats=repeats,
                       repeats_behavior=run_trials[:, :11], verbose=False)
    with pytest.raises(ValueError, match="pass repeats as well"):
        compare_models(models, X, y, behavior=run, repeats_behavior=run_trials, verbose=False)
    with pytest.raises(ValueError, match="repeats_eye_position="):
        compare_models(models, X, y, behavior=run, eye_position=np.zeros((200, 2)),
                       repeats=repeats, repeats_behavior=run_trials, verbose=False)


def test_cnn_encoder_cv_scores_its_candidates_with_their_held_out_behaviour():
    from sklearn_cnnenc import CNNEncoderCV

    rng = np.random.RandomState(8)
    X, run, _, _, y = _cells(200, [(3, 3)], rng, gain=0.8)
    search = CNNEncoderCV(_cnn(max_epochs=3), {"lr": [1e-2, 3e-2]}, cv=2, factor=2)
    search.fit(X, y, behavior=run)
    assert search.best_estimator_.n_behavior_covariates_ == 1
    assert np.isfinite(search.best_score_)
    assert np.isfinite(search.score(X, y, behavior=run))
    with pytest.raises(ValueError, match="behavio"):
        search.predict(X)
    with pytest.raises(ValueError, match="scoring=None"):
        CNNEncoderCV(_cnn(max_epochs=3), {"lr": [1e-2]}, cv=2, scoring="r2").fit(
            X, y, behavior=run
        )


def test_npz_behaviour_and_the_cli_session_models(tmp_path):
    from sklearn_cnnenc.cli import _build_models, _for_sessions
    from sklearn_cnnenc.io import load_npz

    path = tmp_path / "data.npz"
    np.savez(path, X=np.zeros((4, 2)), y=np.ones(4), behavior=np.arange(4.0))
    assert load_npz(path).behavior.shape == (4,)
    np.savez(path, X=np.zeros((4, 2)), y=np.ones(4), behavior=np.arange(3.0))
    with pytest.raises(ValueError, match="behavior has 3 rows"):
        load_npz(path)
    # (the full demo's models: quick mode fits the LN model without a search)
    models = _build_models(["glm", "ln", "cnn"], (1, 8, 8), "cpu", quick=False)
    models = _for_sessions(models, "mask")
    assert isinstance(models["glm"], PoissonGLMCV) and models["glm"].missing_responses == "mask"
    assert models["ln"].estimator.missing_responses == "mask"
    assert isinstance(models["cnn"], CNNEncoder) and models["cnn"].missing_responses == "mask"
    # a CNN search (--grid) is kept: compare_models gives it the behaviour of its inner folds
    searched = _build_models(["cnn"], (1, 8, 8), "cpu", quick=True,
                             grids={"cnn": {"channels": [2, 3]}})
    searched = _for_sessions(searched, "mask")
    assert isinstance(searched["cnn"], GridSearchCV)
    assert searched["cnn"].estimator.missing_responses == "mask"


@pytest.mark.slow
def test_cli_compare_with_missing_mask_and_a_behaviour_array(tmp_path, capsys):
    from sklearn_cnnenc.cli import main

    rng = np.random.RandomState(5)
    X, run, _, _, y = _cells(240, [(3, 3), (4, 5), (2, 4)], rng, gain=0.5)
    y[::2, 0] = np.nan  # neuron 0 was recorded in every other trial only
    path = tmp_path / "sessions.npz"
    X = np.pad(X, ((0, 0), (0, 0), (4, 4), (4, 4)))  # room for the CLI CNN's 9x9 kernels
    np.savez(path, X=X.reshape(len(X), -1), y=y, behavior=run)
    out = tmp_path / "results"
    assert main(["compare", "--data", str(path), "--models", "glm,cnn", "--cv", "2",
                 "--missing", "mask", "--input-shape", "1,16,16", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert (out / "summary.csv").is_file()
    assert "cnn" in capsys.readouterr().out


@pytest.fixture
def eye_npz(tmp_path):
    """A tiny recording with eye positions (and the same without them)."""
    rng = np.random.RandomState(6)
    X, _, eye, _, y = _cells(120, [(3, 3), (4, 5)], rng, shift_with_eye=1)
    X = np.pad(X, ((0, 0), (0, 0), (4, 4), (4, 4))).reshape(len(X), -1)  # 9x9 kernels fit
    with_eye, without = tmp_path / "eye.npz", tmp_path / "no_eye.npz"
    np.savez(with_eye, X=X, y=y, eye_position=eye)
    np.savez(without, X=X, y=y)
    return with_eye, without


def test_cli_compare_gives_the_npz_eye_position_to_a_gaussian_readout_cnn(
    eye_npz, tmp_path, monkeypatch
):
    from sklearn_cnnenc import model_selection
    from sklearn_cnnenc.cli import main

    compare_models, seen = model_selection.compare_models, {}

    def keep_estimators(*args, **kwargs):
        seen["kwargs"] = kwargs
        seen["results"] = compare_models(*args, **{**kwargs, "return_estimators": True})
        return seen["results"]

    monkeypatch.setattr(model_selection, "compare_models", keep_estimators)
    out = tmp_path / "results"
    assert main(["compare", "--data", str(eye_npz[0]), "--models", "glm,cnn", "--cv", "2",
                 "--input-shape", "1,16,16", "--device", "cpu", "--grid", "cnn:max_epochs=2",
                 "--out", str(out)]) == 0
    assert (out / "summary.csv").is_file()
    np.testing.assert_array_equal(seen["kwargs"]["eye_position"],
                                  np.load(eye_npz[0])["eye_position"])
    for fold in (0, 1):
        cnn = seen["results"].estimators[("cnn", fold)]
        # the eye positions turn the CLI's CNN to a shifted Gaussian readout
        assert cnn.readout == "gaussian" and cnn.uses_eye_position_
        assert cnn.max_epochs == 2
        assert isinstance(seen["results"].estimators[("glm", fold)], PoissonGLMCV)


def test_cli_fit_and_predict_a_cnn_with_eye_positions(eye_npz, tmp_path, capsys):
    from sklearn_cnnenc.cli import main
    from sklearn_cnnenc.io import load_model

    with_eye, without = eye_npz
    model_path, predictions = tmp_path / "cnn.joblib", tmp_path / "y_pred.npz"
    assert main(["fit", "--data", str(with_eye), "--model", "cnn", "--input-shape", "1,16,16",
                 "--param", "max_epochs=2", "--param", "n_layers=1", "--param", "channels=2",
                 "--param", "device='cpu'", "--out", str(model_path)]) == 0
    model = load_model(model_path)
    assert model.readout == "gaussian" and model.uses_eye_position_
    assert main(["predict", "--data", str(with_eye), "--model", str(model_path),
                 "--out", str(predictions)]) == 0
    data = np.load(with_eye)
    expected = model.predict(data["X"], eye_position=data["eye_position"])
    np.testing.assert_allclose(np.load(predictions)["y_pred"], expected, rtol=1e-6)
    # the eye positions are used: predictions move with them
    shifted = model.predict(data["X"], eye_position=data["eye_position"] + 1.0)
    assert not np.allclose(expected, shifted)
    capsys.readouterr()
    # a model fitted with eye positions needs them; one fitted without refuses them
    assert main(["predict", "--data", str(without), "--model", str(model_path),
                 "--out", str(predictions)]) == 2
    assert capsys.readouterr().err.strip() == (
        "cnnenc: error: The model was fitted with eye position: the data need an eye_position "
        "array.")
    plain_path = tmp_path / "plain.joblib"
    assert main(["fit", "--data", str(without), "--model", "cnn", "--input-shape", "1,16,16",
                 "--param", "max_epochs=1", "--param", "device='cpu'",
                 "--out", str(plain_path)]) == 0
    capsys.readouterr()
    assert main(["predict", "--data", str(with_eye), "--model", str(plain_path),
                 "--out", str(predictions)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cnnenc: error: The data have an eye_position array but the model "
                            "was fitted without eye position") and "\n" not in error


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--data", "{bad}", "--model", "cnn"],
         r"eye_position in .*bad.npz has shape \(120, 3\); expected \(n_samples, 2\)"),
        (["compare", "--data", "{short}", "--models", "glm"],
         "eye_position has 119 rows but X has 120"),
        (["fit", "--data", "{eye}", "--model", "cnn", "--param", "readout='factorized'"],
         r"needs readout='gaussian' .*--param readout= gives \['factorized'\]"),
        (["compare", "--data", "{eye}", "--models", "cnn", "--grid",
          "cnn:readout=factorized,gaussian"],
         r"needs readout='gaussian' .*--grid cnn:readout= gives \['factorized', 'gaussian'\]"),
        (["fit", "--data", "{eye}", "--model", "glm"], "PoissonGLM does not take eye_position="),
        # refused before any model is fitted
        (["compare", "--data", "{nan}", "--models", "glm,cnn"], "Input eye_position contains NaN"),
    ],
)
def test_cli_eye_position_errors_are_one_line(eye_npz, tmp_path, capsys, argv, message):
    import re

    from sklearn_cnnenc.cli import main

    data = np.load(eye_npz[0])
    paths = {name: tmp_path / f"{name}.npz" for name in ("bad", "short", "nan")}
    paths["eye"] = eye_npz[0]
    np.savez(paths["bad"], X=data["X"], y=data["y"], eye_position=np.zeros((120, 3)))
    np.savez(paths["short"], X=data["X"], y=data["y"], eye_position=np.zeros((119, 2)))
    eye = data["eye_position"].copy()
    eye[3, 0] = np.nan
    np.savez(paths["nan"], X=data["X"], y=data["y"], eye_position=eye)
    argv = [item.format(**paths) for item in argv]
    assert main([*argv, "--input-shape", "1,16,16", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().split("\n")
    assert len(error) == 1 and error[0].startswith("cnnenc: error: ")
    assert re.search(message, error[0]), error[0]


def test_nwb_behaviour_time_series_is_sampled_at_the_bins(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from sklearn_cnnenc.io import load_nwb

    session = pynwb.NWBFile(session_description="demo", identifier="demo",
                            session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    session.add_stimulus(pynwb.TimeSeries(name="sound", data=np.zeros(20), unit="dB", rate=10.0))
    module = session.create_processing_module("behavior", "running")
    module.add(pynwb.TimeSeries(name="speed", data=np.arange(40.0), unit="cm/s", rate=20.0))
    session.add_unit(spike_times=[0.05, 0.12, 1.31])
    path = tmp_path / "session.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(session)
    data = load_nwb(path, stimulus="sound", behavior="speed")
    np.testing.assert_array_equal(data.behavior[:, 0], np.arange(0.0, 40.0, 2.0))
    assert load_nwb(path, stimulus="sound").behavior is None
    with pytest.raises(ValueError, match="speed"):
        load_nwb(path, stimulus="sound", behavior="pupil")
