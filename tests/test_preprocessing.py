import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_ln_data
from sklearn_cnnenc.metrics import make_encoding_scorer
from sklearn_cnnenc.model_selection import BlockedKFold
from sklearn_cnnenc.preprocessing import RaisedCosineBasis, TimeLagger, raised_cosine_basis


def _naive_lags(X, lags, padding):
    """Reference: one row at a time, lag-major columns."""
    n, c = X.shape
    out = np.zeros((n, len(lags) * c))
    for t in range(n):
        for i, lag in enumerate(lags):
            source = t - lag
            if 0 <= source < n:
                value = X[source]
            elif padding == "edge":
                value = X[0] if source < 0 else X[-1]
            else:
                value = np.zeros(c)
            out[t, i * c : (i + 1) * c] = value
    return out


@pytest.mark.parametrize(
    "params, lags",
    [
        ({"n_lags": 4}, [0, 1, 2, 3]),
        ({"n_lags": 3, "min_lag": 2}, [2, 3, 4]),
        ({"n_lags": 5, "causal": False}, [2, 1, 0, -1, -2]),
        ({"n_lags": 4, "causal": False}, [1, 0, -1, -2]),
    ],
)
@pytest.mark.parametrize("padding", ["zero", "edge"])
def test_time_lagger_matches_a_row_by_row_reference(params, lags, padding):
    X = np.random.default_rng(0).normal(size=(12, 3))
    lagger = TimeLagger(**params, padding=padding).fit(X)
    np.testing.assert_array_equal(lagger.lags_, lags)
    np.testing.assert_array_equal(lagger.transform(X), _naive_lags(X, lags, padding))


def test_time_lagger_output_is_column_major_in_the_input_precision():
    X = np.random.default_rng(1).normal(size=(1000, 2)).astype(np.float32)
    lagged = TimeLagger(n_lags=7).fit_transform(X)
    assert lagged.dtype == np.float32
    assert lagged.flags.f_contiguous
    assert lagged.shape == (1000, 14)


def test_glm_uses_the_lagged_design_without_copying_it():
    data = make_ln_data(n_samples=3000, n_lags=10, nonlinearity="identity", random_state=0)
    lagged = TimeLagger(n_lags=10).fit_transform(data.stimulus.astype(np.float32))
    model = PoissonGLM(alpha=1e-3).fit(lagged, data.y)
    validated = model._validate_X(lagged, reset=False)
    assert validated is lagged
    assert np.corrcoef(model.coef_, data.filters.ravel())[0, 1] > 0.9


def test_time_lagger_refuses_a_window_longer_than_the_recording():
    with pytest.raises(ValueError, match="larger than the recording"):
        TimeLagger(n_lags=10).fit(np.zeros((5, 1)))
    lagger = TimeLagger(n_lags=10).fit(np.zeros((50, 1)))
    with pytest.raises(ValueError, match="larger than the recording"):
        lagger.transform(np.zeros((9, 1)))
    with pytest.raises(ValueError, match="min_lag applies to causal windows"):
        TimeLagger(n_lags=3, causal=False, min_lag=1).fit(np.zeros((10, 1)))


def test_time_lagger_feature_names():
    import pandas as pd

    X = pd.DataFrame({"light": np.zeros(5), "sound": np.ones(5)})
    names = TimeLagger(n_lags=2, min_lag=1).fit(X).get_feature_names_out()
    assert list(names) == ["light_lag1", "sound_lag1", "light_lag2", "sound_lag2"]


def test_spike_history_excludes_the_current_bin_and_does_not_leak():
    rng = np.random.default_rng(2)
    n_bins = 6000
    stimulus = rng.normal(size=(n_bins, 1))
    # two neurons without any history dependence: no history term may help
    spikes = rng.poisson(np.exp(-1.0 + 0.6 * stimulus) * np.array([1.0, 0.5])).astype(float)
    X = np.hstack([stimulus, spikes])

    def model(min_lag):
        features = ColumnTransformer([
            ("stimulus", TimeLagger(n_lags=5), [0]),
            ("history", TimeLagger(n_lags=5, min_lag=min_lag), [1, 2]),
        ])
        return make_pipeline(features, PoissonGLM(alpha=1e-3))

    scorer = make_encoding_scorer("bits_per_spike")
    cv = BlockedKFold(4, gap=5)
    causal = cross_val_score(model(1), X, spikes[:, 0], cv=cv, scoring=scorer)
    leaky = cross_val_score(model(0), X, spikes[:, 0], cv=cv, scoring=scorer)
    stimulus_only = cross_val_score(
        make_pipeline(ColumnTransformer([("stimulus", TimeLagger(n_lags=5), [0])]),
                      PoissonGLM(alpha=1e-3)),
        X, spikes[:, 0], cv=cv, scoring=scorer,
    )
    # causal history adds nothing to a history-free neuron ...
    assert causal.mean() == pytest.approx(stimulus_only.mean(), abs=0.01)
    # ... while the current bin lets the model read its own response
    assert leaky.mean() > causal.mean() + 0.5
    fitted = model(1).fit(X, spikes[:, 0])
    history_coef = fitted[-1].coef_[5:]
    assert np.abs(history_coef).max() < 0.1
    # the stimulus still drives the neuron through lag 0
    assert fitted[-1].coef_[0] == pytest.approx(0.6, abs=0.1)


def test_raised_cosine_basis_properties():
    basis = raised_cosine_basis(6, 60)
    assert basis.shape == (60, 6)
    assert np.all((basis >= 0) & (basis <= 1))
    peaks = basis.argmax(axis=0)
    assert peaks[0] == 0 and np.all(np.diff(peaks) > 0)
    # log-stretched time: bumps widen with lag
    widths = (basis > 0.5).sum(axis=0)
    assert np.all(np.diff(widths[1:]) >= 0) and widths[-1] > 3 * widths[1]
    # where every neighbouring bump exists the bumps sum to 2 (Pillow's tiling)
    total = basis.sum(axis=1)[peaks[1] : peaks[-2] + 1]
    np.testing.assert_allclose(total, 2.0, rtol=1e-10)
    linear = raised_cosine_basis(5, 40, log_scaling=False)
    np.testing.assert_allclose(np.diff(linear.argmax(axis=0)), 40 / 6, atol=1)


def test_raised_cosine_transform_and_reconstruct_are_the_basis_products():
    rng = np.random.default_rng(3)
    signals = rng.normal(size=(200, 2))
    lagged = TimeLagger(n_lags=30).fit_transform(signals)
    rcb = RaisedCosineBasis(n_basis=5).set_params(window=30).fit(lagged)
    features = rcb.transform(lagged)
    assert features.shape == (200, 10)
    per_signal = lagged.reshape(200, 30, 2)
    np.testing.assert_allclose(features.reshape(200, 5, 2),
                               np.einsum("ntc,tb->nbc", per_signal, rcb.basis_))
    coef = rng.normal(size=(3, 10))
    filters = rcb.reconstruct(coef).reshape(3, 30, 2)
    np.testing.assert_allclose(filters, np.einsum("tb,kbc->ktc", rcb.basis_,
                                                  coef.reshape(3, 5, 2)))
    # reconstructing the coefficients of a fitted GLM gives its filter: the
    # linear predictor is the same through the basis or through the full filter
    np.testing.assert_allclose(features @ coef.T, lagged @ rcb.reconstruct(coef).T)
    with pytest.raises(ValueError, match="n_basis \\* n_signals"):
        rcb.reconstruct(np.ones(7))
    with pytest.raises(ValueError, match="not a multiple of window"):
        RaisedCosineBasis(window=7).fit(lagged)


def test_raised_cosine_basis_gives_a_better_filter_than_free_lags_from_little_data():
    # a 16-bin filter seen through a 40-lag window, from 2000 bins
    data = make_ln_data(n_samples=2000, n_lags=16, nonlinearity="identity", gain=0.7,
                        mean_rate=0.2, random_state=4)
    truth = np.r_[data.filters.ravel(), np.zeros(24)]
    smooth = make_pipeline(TimeLagger(n_lags=40), RaisedCosineBasis(n_basis=8),
                           PoissonGLM(alpha=1e-4)).fit(data.stimulus, data.y)
    free = make_pipeline(TimeLagger(n_lags=40), PoissonGLM(alpha=1e-4)).fit(data.stimulus, data.y)
    smooth_filter = smooth[1].reconstruct(smooth[-1].coef_)
    assert np.corrcoef(smooth_filter, truth)[0, 1] > 0.96
    assert np.corrcoef(smooth_filter, truth)[0, 1] > np.corrcoef(free[-1].coef_, truth)[0, 1]
