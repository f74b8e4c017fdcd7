import numpy as np
import pytest
from scipy.linalg import subspace_angles

from sklearn_cnnenc.datasets import make_energy_model_data, make_ln_data
from sklearn_cnnenc.inspection import spike_triggered_average, spike_triggered_covariance
from sklearn_cnnenc.preprocessing import TimeLagger


def _cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# "identity" inside the exponential link: the classic exponential LNP neuron
@pytest.mark.parametrize("nonlinearity", ["identity", "softplus", "relu"])
def test_sta_of_an_ln_neuron_is_parallel_to_its_filter(nonlinearity):
    data = make_ln_data(n_samples=30000, n_lags=12, n_pixels=3, nonlinearity=nonlinearity,
                        random_state=0)
    sta = spike_triggered_average(data.stimulus, data.y, n_lags=12)
    assert sta.shape == (12, 3)
    assert _cosine(sta, data.filters) > 0.95


def test_sta_is_the_spike_weighted_mean_of_the_lagged_stimulus():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2)) + 1.0
    y = rng.poisson(1.0, size=(300, 2)).astype(float)
    sta = spike_triggered_average(X, y, n_lags=5)
    windows = TimeLagger(n_lags=5).fit_transform(X)[4:]
    expected = (y[4:].T @ (windows - windows.mean(axis=0))) / y[4:].sum(axis=0)[:, None]
    np.testing.assert_allclose(sta, expected.reshape(2, 5, 2))
    uncentred = spike_triggered_average(X, y[:, 0], center=False)
    np.testing.assert_allclose(uncentred, y[:, 0] @ X / y[:, 0].sum())


@pytest.mark.parametrize("n_lags", [None, 4])
def test_sta_and_stc_centre_a_non_zero_mean_stimulus_the_same_textbook_way(n_lags):
    """STA: spike-weighted mean of the windows; STC: spike-weighted covariance about it.

    The stimulus mean is far from zero and the bins before the first whole
    window differ from the rest, so the mean of the whole recording is not
    the mean of the windows the spikes are counted in."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 3)) @ rng.normal(size=(3, 3)) + [3.0, -2.0, 0.5]
    X[:3] += 10.0
    y = rng.poisson(np.exp(0.3 * X[:, 0] - 1.0)).astype(float)
    if n_lags is None:
        windows, counts, shape = X, y, (3,)
    else:
        windows = np.stack([X[n_lags - 1 - lag : len(X) - lag] for lag in range(n_lags)], axis=1)
        windows, counts, shape = windows.reshape(len(windows), -1), y[n_lags - 1 :], (n_lags, 3)
    # every spike as one sample: the textbook definitions, by numpy
    triggered = np.repeat(windows, counts.astype(int), axis=0)
    sta = triggered.mean(axis=0)
    c_spike = np.cov(triggered, rowvar=False, bias=True)  # about the STA
    c_prior = np.cov(windows, rowvar=False, bias=True)
    mean = windows.mean(axis=0)

    raw = spike_triggered_average(X, y, n_lags, center=False)
    np.testing.assert_allclose(raw, sta.reshape(shape), rtol=1e-12)
    centred = spike_triggered_average(X, y, n_lags)
    np.testing.assert_allclose(centred, (sta - mean).reshape(shape), rtol=1e-10, atol=1e-12)
    stc = spike_triggered_covariance(X, y, n_lags)
    np.testing.assert_allclose(stc.sta, centred, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stc.covariance, c_spike - c_prior, rtol=1e-9, atol=1e-10)


def test_stc_finds_the_energy_model_subspace_that_the_sta_misses():
    data = make_energy_model_data(n_samples=40000, n_lags=12, random_state=2)
    stc = spike_triggered_covariance(data.stimulus, data.y, n_lags=12)
    assert stc.eigenvectors.shape == (12, 12, 1)
    assert np.all(np.diff(stc.eigenvalues) <= 0)
    top = stc.eigenvectors[:2].reshape(2, -1).T
    true = data.filters.reshape(2, -1).T
    assert np.rad2deg(subspace_angles(top, true)).max() < 10
    # two clearly excitatory directions, nothing else
    assert stc.eigenvalues[1] > 10 * np.abs(stc.eigenvalues[2:]).max()
    # a phase-invariant neuron has (almost) no STA
    sta = spike_triggered_average(data.stimulus, data.y, n_lags=12)
    assert np.linalg.norm(sta) < 0.1 * np.sqrt(stc.eigenvalues[0])


def test_stc_sees_a_suppressive_direction_as_a_negative_eigenvalue():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40000, 6))
    suppressive = np.array([1.0, -1.0, 0, 0, 0, 0]) / np.sqrt(2)
    y = rng.poisson(0.5 * np.exp(-0.5 * (X @ suppressive) ** 2)).astype(float)
    stc = spike_triggered_covariance(X, y)
    assert stc.eigenvalues[-1] < -0.2
    assert abs(_cosine(stc.eigenvectors[-1], suppressive)) > 0.98


def test_bad_inputs_are_clear_errors():
    X, y = np.zeros((20, 2)), np.ones(20)
    with pytest.raises(ValueError, match="larger than the recording"):
        spike_triggered_average(X, y, n_lags=21)
    with pytest.raises(ValueError, match="non-negative"):
        spike_triggered_average(X, -y)
    with pytest.raises(ValueError, match="at least one spike"):
        spike_triggered_average(X, np.zeros(20))
    with pytest.raises(ValueError, match="must be 1-D"):
        spike_triggered_covariance(X, np.ones((20, 2)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        spike_triggered_average(X, np.ones(19))
