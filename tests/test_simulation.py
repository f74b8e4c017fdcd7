import numpy as np
import pytest
from sklearn.utils import Bunch

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.families import get_family
from sklearn_cnnenc.links import get_link
from sklearn_cnnenc.preprocessing import TimeLagger
from sklearn_cnnenc.simulation import simulate

N_HISTORY = 4


def _true_model():
    """Two coupled neurons: refractory self-history, excitatory coupling 0 -> 1."""
    # history[k, i, j]: weight of neuron j at lag 1 + i on neuron k
    history = np.zeros((2, N_HISTORY, 2))
    history[0, :, 0] = [-2.0, -1.0, -0.4, -0.1]
    history[1, :, 1] = [-1.5, -0.5, 0.0, 0.0]
    history[1, :, 0] = [0.8, 0.4, 0.0, 0.0]
    stimulus_weights = np.array([[0.5], [-0.3]])
    coef = np.hstack([stimulus_weights, history.reshape(2, -1)])
    return Bunch(coef_=coef, intercept_=np.array([-1.2, -1.5]), link_=get_link("exp"),
                 family_=get_family("poisson"), dispersion_=None)


def _design(stimulus, spikes):
    history = TimeLagger(n_lags=N_HISTORY, min_lag=1).fit_transform(spikes)
    return np.hstack([stimulus, history])


def test_simulated_rates_are_the_model_prediction_given_the_simulated_past():
    rng = np.random.default_rng(0)
    stimulus = rng.normal(size=(2000, 1))
    spikes = rng.poisson(0.3, size=(2000, 2)).astype(float)
    glm = PoissonGLM(alpha=1e-2).fit(_design(stimulus, spikes), spikes)
    simulated, rate = simulate(glm, stimulus, n_history=N_HISTORY, random_state=1,
                               return_rate=True)
    assert simulated.shape == rate.shape == (2000, 2)
    np.testing.assert_allclose(rate, glm.predict(_design(stimulus, simulated)), rtol=1e-9)


def test_initial_spikes_are_the_history_of_the_first_bins():
    model = _true_model()
    stimulus = np.zeros((3, 1))
    initial = np.array([[1.0, 0.0], [0.0, 2.0]])  # most recent last
    _, rate = simulate(model, stimulus, n_history=N_HISTORY, initial_spikes=initial,
                       random_state=0, return_rate=True)
    # bin 0 sees neuron 1's 2 spikes at lag 1 and neuron 0's spike at lag 2
    history = model.coef_[:, 1:].reshape(2, N_HISTORY, 2)
    eta = model.intercept_ + 2.0 * history[:, 0, 1] + 1.0 * history[:, 1, 0]
    np.testing.assert_allclose(rate[0], np.exp(eta))


def test_a_glm_fitted_to_simulated_spikes_recovers_history_and_coupling():
    model = _true_model()
    stimulus = np.random.default_rng(2).normal(size=(40000, 1))
    spikes = simulate(model, stimulus, n_history=N_HISTORY, random_state=3)
    # refractoriness: a strongly self-inhibited neuron rarely fires twice in a row
    fired = spikes[:-1, 0] > 0
    assert np.mean(spikes[1:, 0][fired] > 0) < 0.5 * np.mean(spikes[:, 0] > 0)
    fitted = PoissonGLM(alpha=1e-5, tol=1e-6).fit(_design(stimulus, spikes), spikes)
    np.testing.assert_allclose(fitted.coef_, model.coef_, atol=0.25)
    np.testing.assert_allclose(fitted.intercept_, model.intercept_, atol=0.1)


def test_one_dimensional_models_and_bad_arguments():
    rng = np.random.default_rng(4)
    stimulus = rng.normal(size=(500, 2))
    spikes = rng.poisson(0.5, size=(500, 1)).astype(float)
    glm = PoissonGLM(alpha=1e-2).fit(_design(stimulus, spikes), spikes[:, 0])
    assert simulate(glm, stimulus, n_steps=100, n_history=N_HISTORY).shape == (100,)
    with pytest.raises(ValueError, match="history_min_lag must be at least 1"):
        simulate(glm, stimulus, n_history=N_HISTORY, history_min_lag=0)
    with pytest.raises(ValueError, match="stimulus has 1 feature"):
        simulate(glm, stimulus[:, :1], n_history=N_HISTORY)
    with pytest.raises(ValueError, match="fewer than the n_history"):
        simulate(glm, stimulus, n_history=10)
    with pytest.raises(ValueError, match="n_steps must be"):
        simulate(glm, stimulus, n_steps=501, n_history=N_HISTORY)
    with pytest.raises(ValueError, match="initial_spikes must have 1 column"):
        simulate(glm, stimulus, n_history=N_HISTORY, initial_spikes=np.zeros((3, 2)))


def test_an_unfitted_model_is_a_clear_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="has no coef_"):
        simulate(PoissonGLM(), np.zeros((5, 1)), n_history=2)
