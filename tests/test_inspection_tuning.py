import numpy as np
import pytest
import torch

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data, make_v1_population
from sklearn_cnnenc.inspection import (
    most_exciting_input,
    phase_invariance_index,
    preferred_grating,
    tuning_curve,
)
from sklearn_cnnenc.stimuli import gabor_patch, gratings, natural_image_patches, phase_scramble


def _flat(X):
    return X.reshape(len(X), -1)


def _ground_truth(data):
    """The simulated population as a function of the stimulus.

    Rates are ``a + b (g_even . x)^2 + c (g_odd . x)^2`` for complex cells: the
    coefficients are recovered exactly (R^2 = 1) from the returned rates."""
    even, odd = _flat(data.filters), _flat(data.filters_quadrature)
    drive_even, drive_odd = _flat(data.X) @ even.T, _flat(data.X) @ odd.T
    coefs = np.array([
        np.linalg.lstsq(
            np.column_stack([np.ones(len(data.X)), drive_even[:, k] ** 2, drive_odd[:, k] ** 2]),
            data.mean[:, k],
            rcond=None,
        )[0]
        for k in range(data.mean.shape[1])
    ])

    def rates(X):
        e, o = _flat(X) @ even.T, _flat(X) @ odd.T
        return coefs[:, 0] + coefs[:, 1] * e**2 + coefs[:, 2] * o**2

    np.testing.assert_allclose(rates(data.X), data.mean, rtol=1e-8)
    return rates


@pytest.fixture(scope="module")
def complex_cells():
    """Four energy-model complex cells; a CNN and a GLM fitted at CI size."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    n_train = 1500
    data = make_v1_population(n_train + 300, n_simple=0, n_complex=4, random_state=0)
    X_train, y_train = data.X[:n_train], data.y[:n_train]
    cnn = CNNEncoder(channels=8, kernel_size=(9, 5), max_epochs=30, n_ensemble=1, device="cpu",
                     random_state=0).fit(
        X_train, y_train
    )
    glm = PoissonGLM(alpha=10.0).fit(_flat(X_train), y_train)
    torch.set_num_threads(previous)
    truth = _ground_truth(data)
    return dict(data=data, truth=truth, cnn=cnn, glm=glm, X_test=data.X[n_train:])


# ------------------------------------------------------------- MEI
def test_mei_of_a_glm_is_its_filter_scaled_to_the_norm():
    data = make_glm_data(n_samples=2000, n_features=12, n_neurons=2, random_state=0)
    glm = PoissonGLM(alpha=1e-3).fit(data.X, data.y)
    for neuron in (0, 1):
        mei = most_exciting_input(glm, neuron, norm=3.0, random_state=0)
        expected = 3.0 * glm.coef_[neuron] / np.linalg.norm(glm.coef_[neuron])
        np.testing.assert_allclose(mei.stimulus, expected, atol=1e-4)
        eta = glm.coef_[neuron] @ mei.stimulus + glm.intercept_[neuron]
        assert mei.linear_predictor == pytest.approx(eta, rel=1e-6)
        assert mei.response == pytest.approx(np.exp(eta), rel=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mei_of_an_energy_model_lies_in_its_filter_subspace():
    # a fitted shell whose filters are then set by hand
    data = make_glm_data(n_samples=10, n_features=10, random_state=0)
    model = LNModel(n_filters=2, nonlinearity="square", n_init=1, max_iter=1).fit(data.X, data.y)
    rng = np.random.default_rng(0)
    filters = torch.as_tensor(rng.normal(size=(1, 2, 10)))
    with torch.no_grad():
        model.net_.module_.predictor.filters.copy_(filters)
        model.net_.module_.predictor.weights.copy_(torch.tensor([[1.0, 0.5]]))
    mei = most_exciting_input(model, 0, norm=1.0, n_steps=300, random_state=0).stimulus
    # the top eigenvector of the quadratic form sum_j w_j h_j h_j^T
    form = (filters[0].T * torch.tensor([1.0, 0.5], dtype=filters.dtype)) @ filters[0]
    top = np.linalg.eigh(form.numpy())[1][:, -1]
    assert abs(mei @ top) == pytest.approx(1.0, abs=1e-4)


def test_mei_of_a_cnn_complex_cell_is_in_the_quadrature_pair_subspace(complex_cells):
    data, cnn = complex_cells["data"], complex_cells["cnn"]
    rng = np.random.default_rng(0)
    for neuron in range(4):
        mei = most_exciting_input(cnn, neuron, random_state=0)
        assert mei.stimulus.shape == (16, 16)
        assert np.linalg.norm(mei.stimulus) == pytest.approx(16.0, rel=1e-5)
        basis, _ = np.linalg.qr(np.stack([data.filters[neuron].ravel(),
                                          data.filters_quadrature[neuron].ravel()]).T)
        inside = np.linalg.norm(basis.T @ mei.stimulus.ravel()) / 16.0
        assert inside > 0.6  # a random direction: about 0.09
        noise = rng.normal(size=(20, 16, 16))
        noise *= 16.0 / np.linalg.norm(noise.reshape(20, -1), axis=1)[:, None, None]
        assert mei.response > cnn.predict(noise)[:, neuron].max()


# ------------------------------------------------------------- tuning
def test_tuning_curves_of_known_energy_and_linear_cells():
    pair = gabor_patch(16, orientation=0.6, frequency=0.2, phase=[0.0, np.pi / 2], sigma=3.0).X
    pair = pair.reshape(2, -1)

    def cells(X):
        drive = _flat(X) @ pair.T
        return np.column_stack([drive[:, 0], (drive**2).sum(axis=1)])

    probes = gratings(16, orientation=np.linspace(0, np.pi, 12, endpoint=False),
                      frequency=0.2, phase=np.linspace(0, 2 * np.pi, 16, endpoint=False))
    by_phase = tuning_curve(cells, probes, "phase")
    assert by_phase.parameter == "phase" and by_phase.responses.shape == (16, 2)
    orientation = tuning_curve(cells, probes, "orientation", aggregate="max")
    # both cells prefer 0.6 rad (the nearest of 12 orientations is 0.52)
    assert np.all(orientation.parameter_values[orientation.responses.argmax(axis=0)]
                  == pytest.approx(np.pi * 2 / 12))
    at_preferred = gratings(16, orientation=0.6, frequency=0.2,
                            phase=np.linspace(0, 2 * np.pi, 16, endpoint=False))
    curve = tuning_curve(cells, at_preferred, "phase").responses
    # complex cell: flat in phase; linear cell: a full sinusoid around zero
    assert curve[:, 1].max() / curve[:, 1].min() < 1.05
    assert curve[:, 0].max() > 0 > curve[:, 0].min()
    np.testing.assert_allclose(curve[:, 0], curve[:, 0].max() * np.cos(
        np.linspace(0, 2 * np.pi, 16, endpoint=False) - np.argmax(curve[:, 0]) * np.pi / 8),
        atol=0.05 * curve[:, 0].max())
    # an array of stimuli with explicit values gives the same curve
    same = tuning_curve(cells, at_preferred.X, at_preferred.phase)
    np.testing.assert_allclose(same.responses, curve)
    np.testing.assert_allclose(same.all_responses, cells(at_preferred.X))


def test_tuning_curve_of_a_flat_glm_and_of_positions():
    data = make_v1_population(600, n_simple=2, n_complex=0, image_size=12, random_state=0)
    glm = PoissonGLM().fit(_flat(data.X), data.y)
    probes = gabor_patch(12, sigma=1.5, center=[(3, 3), (8, 8), (3, 8)])
    curve = tuning_curve(glm, probes, "center")
    assert curve.parameter_values.shape == (3, 2) and curve.responses.shape == (3, 2)
    np.testing.assert_allclose(curve.all_responses, glm.predict(_flat(probes.X)))


def test_tuning_curve_bad_arguments():
    probes = gratings(8, phase=[0.0, 1.0])
    with pytest.raises(ValueError, match="Unknown parameter 'colour'"):
        tuning_curve(lambda X: _flat(X), probes, "colour")
    with pytest.raises(ValueError, match="one value"):
        tuning_curve(lambda X: _flat(X), probes.X, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="names a field"):
        tuning_curve(lambda X: _flat(X), probes.X, "phase")
    with pytest.raises(ValueError, match="aggregate"):
        tuning_curve(lambda X: _flat(X), probes, "phase", aggregate="median")
    with pytest.raises(TypeError, match="callable"):
        tuning_curve(object(), probes, "phase")


def test_preferred_grating_finds_the_true_orientation_and_frequency(complex_cells):
    data, truth = complex_cells["data"], complex_cells["truth"]
    best = preferred_grating(truth, image_shape=(16, 16), orientations=32,
                             frequencies=np.linspace(0.05, 0.45, 17))
    error = (best.orientation - data.orientation + np.pi / 2) % np.pi - np.pi / 2
    assert np.all(np.abs(error) <= np.pi / 32)
    np.testing.assert_allclose(best.frequency, 1 / data.wavelength, atol=0.04)
    # a fitted CNN is probed the same way, with the image shape read from it
    fitted = preferred_grating(complex_cells["cnn"], orientations=32)
    error = (fitted.orientation - data.orientation + np.pi / 2) % np.pi - np.pi / 2
    assert np.all(np.abs(error) <= 2 * np.pi / 32)


# ---------------------------------------------------------- phase invariance
def test_phase_invariance_index_of_known_cells():
    data = make_v1_population(10, n_simple=2, n_complex=2, random_state=0)
    even, odd = _flat(data.filters), _flat(data.filters_quadrature)

    def cells(X):  # linear drive, half-squared simple cell, energy model
        e, o = _flat(X) @ even.T, _flat(X) @ odd.T
        energy = e[:, 2:] ** 2 + o[:, 2:] ** 2
        return np.column_stack([e[:, 0], np.maximum(e[:, 1], 0) ** 2, energy])

    X = natural_image_patches(400, size=16, random_state=1)
    result = phase_invariance_index(cells, X, random_state=0, orientation=data.orientation)
    assert abs(result.index[0]) < 0.1
    assert 0.05 < result.index[1] < 0.6
    assert np.all(result.index[2:] > 0.97)
    # the directions found with gratings give the same answer
    found = phase_invariance_index(cells, X, random_state=0)
    np.testing.assert_allclose(found.index[2:], result.index[2:], atol=0.02)


def test_complex_cells_cnn_is_phase_invariant_like_the_truth_and_the_glm_is_not(complex_cells):
    """The out-of-distribution test of mechanism at CI size
    (examples/ood_energy_model_test.py at full size)."""
    X = complex_cells["X_test"][:150]
    truth = phase_invariance_index(complex_cells["truth"], X, random_state=0).index
    cnn = phase_invariance_index(complex_cells["cnn"], X, random_state=0).index
    glm = phase_invariance_index(complex_cells["glm"], X, random_state=0).index
    assert np.all(truth > 0.97)
    assert cnn.mean() > 0.85 and np.all(cnn > glm + 0.3)
    assert glm.mean() < 0.5
    # and on the chapter's phase-scrambled images the CNN still predicts the truth
    scrambled = phase_scramble(complex_cells["X_test"], random_state=0)
    target = complex_cells["truth"](scrambled)

    def accuracy(prediction):
        return np.mean([np.corrcoef(prediction[:, k], target[:, k])[0, 1] for k in range(4)])

    cnn_accuracy = accuracy(complex_cells["cnn"].predict(scrambled))
    glm_accuracy = accuracy(complex_cells["glm"].predict(_flat(scrambled)))
    assert cnn_accuracy > 0.8 and cnn_accuracy > glm_accuracy + 0.4


def test_phase_invariance_accepts_flat_and_channel_inputs(complex_cells):
    glm, X = complex_cells["glm"], complex_cells["X_test"][:40]
    flat = phase_invariance_index(glm, _flat(X), image_shape=(16, 16), random_state=0,
                                  orientation=0.3)
    images = phase_invariance_index(glm, X[:, None], random_state=0, orientation=0.3)
    np.testing.assert_allclose(flat.index, images.index)


def test_bad_tuning_inputs(complex_cells):
    cnn, glm = complex_cells["cnn"], complex_cells["glm"]
    with pytest.raises(ValueError, match=r"neuron must be in \[0, 4\)"):
        most_exciting_input(cnn, 4)
    with pytest.raises(ValueError, match="norm must be a positive"):
        most_exciting_input(cnn, 0, norm=-1.0)
    with pytest.raises(TypeError, match="fitted encoding model"):
        most_exciting_input(lambda X: X, 0)
    with pytest.raises(ValueError, match="at least 2 grey-level images"):
        phase_invariance_index(cnn, np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="pass image_shape"):
        preferred_grating(glm)
    with pytest.raises(ValueError, match="image_shape"):
        phase_invariance_index(glm, np.zeros((5, 256)), image_shape=(10, 10))
    with pytest.raises(ValueError, match="n_scrambles"):
        phase_invariance_index(cnn, np.zeros((5, 16, 16)), n_scrambles=0)


def test_time_series_cnn_is_no_image_model(time_series_cnn):
    """Windows of 2 channels x 30 bins: no grating fits, whatever image_shape claims."""
    model, X = time_series_cnn
    for call in (
        lambda: preferred_grating(model),
        lambda: preferred_grating(model, image_shape=(6, 10)),  # 60 values, like a window
        lambda: phase_invariance_index(model, X[:10]),
        lambda: phase_invariance_index(model, X[:10].reshape(10, -1), image_shape=(6, 10)),
    ):
        with pytest.raises(ValueError, match=r"fitted on time series .*no spatial axes"):
            call()
