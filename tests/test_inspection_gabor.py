import numpy as np
import pytest
import torch

from sklearn_cnnenc import CNNEncoder, PoissonGLM
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.inspection import fit_gabor, gabor_similarity
from sklearn_cnnenc.nn import CausalCore1d, Core2d
from sklearn_cnnenc.stimuli import gabor_patch


def _angle_difference(a, b, period):
    return (a - b + period / 2) % period - period / 2


@pytest.mark.parametrize("seed", range(8))
def test_gabor_parameters_are_recovered_from_noisy_filters(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(9, 17))
    truth = dict(
        orientation=rng.uniform(0, np.pi),
        frequency=rng.uniform(0.1, 0.3),
        phase=rng.uniform(0, 2 * np.pi),
        sigma=rng.uniform(1.5, 3.0),
    )
    center = rng.uniform(0.35 * size, 0.65 * size, 2)
    aspect = rng.uniform(0.7, 1.5)
    image = gabor_patch(size, center=center, aspect=aspect, amplitude=2.0, **truth).X[0]
    noisy = image + rng.normal(0, 0.1 * image.std(), image.shape)
    fit = fit_gabor(noisy)
    assert fit.r2 > 0.97
    assert abs(_angle_difference(fit.orientation, truth["orientation"], np.pi)) < 0.05
    # the canonical orientation may be the opposite direction, which mirrors the phase
    flipped = abs(_angle_difference(fit.orientation, truth["orientation"], 2 * np.pi)) > np.pi / 2
    phase = -truth["phase"] if flipped else truth["phase"]
    assert abs(_angle_difference(fit.phase, phase, 2 * np.pi)) < 0.2
    assert fit.frequency == pytest.approx(truth["frequency"], rel=0.05)
    assert fit.wavelength == pytest.approx(1 / truth["frequency"], rel=0.05)
    np.testing.assert_allclose(fit.center, center, atol=0.25)
    assert fit.sigma_along == pytest.approx(truth["sigma"], rel=0.1)
    assert fit.sigma_across == pytest.approx(aspect * truth["sigma"], rel=0.1)
    assert fit.amplitude == pytest.approx(2.0, rel=0.1)
    assert 0 <= fit.orientation < np.pi and 0 <= fit.phase < 2 * np.pi
    np.testing.assert_allclose(fit.fitted, image, atol=0.15)


def test_noise_filters_are_not_gabors():
    rng = np.random.default_rng(0)
    r2 = gabor_similarity(rng.normal(size=(12, 9, 9)), n_starts=2).r2
    # 8 parameters against 81 pixels of noise: a little variance by chance only
    assert r2.max() < 0.45 and r2.mean() < 0.3


def test_constant_filter_has_undefined_r2():
    assert np.isnan(fit_gabor(np.ones((5, 5))).r2)
    assert np.isnan(gabor_similarity(np.zeros((2, 5, 5))).mean_r2)


def test_gabor_similarity_reads_the_first_layer_of_a_cnn():
    data = make_v1_population(150, n_simple=1, n_complex=1, image_size=12, random_state=0)
    X = np.repeat(data.X[:, None], 2, axis=1)  # two input channels
    model = CNNEncoder(channels=3, kernel_size=[5, 3], max_epochs=1, device="cpu",
                       random_state=0).fit(X, data.y)
    similarity = gabor_similarity(model, n_starts=1)
    assert similarity.filters.shape == (6, 5, 5)  # output x input channels
    weight = model.core_.blocks[0].conv.weight.detach().double().numpy().reshape(6, 5, 5)
    np.testing.assert_allclose(similarity.filters, weight)
    assert similarity.r2.shape == (6,) and len(similarity.fits) == 6
    assert similarity.mean_r2 == pytest.approx(similarity.r2.mean())


def test_bad_filters_are_clear_errors():
    with pytest.raises(ValueError, match=r"2-D filter of shape \(height, width\); got .*\(9,\)"):
        fit_gabor(np.zeros(9))
    with pytest.raises(ValueError, match="one 2-D filter.*gabor_similarity"):
        fit_gabor(np.zeros((2, 9, 9)))
    with pytest.raises(ValueError, match="at least 3 x 3"):
        fit_gabor(np.zeros((2, 9)))
    with pytest.raises(ValueError, match="finite"):
        fit_gabor(np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="n_starts"):
        fit_gabor(np.ones((5, 5)), n_starts=0)
    with pytest.raises(ValueError, match="causal 1-D"):
        gabor_similarity(CausalCore1d(1, 20, kernel_size=5))
    with pytest.raises(ValueError, match=r"\(n_filters, height, width\)"):
        gabor_similarity(np.zeros((4, 9)))
    glm = PoissonGLM().fit(np.random.default_rng(0).normal(size=(50, 4)), np.ones(50))
    with pytest.raises(TypeError, match="needs a convolutional core"):
        gabor_similarity(glm)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ~50 s on a loaded 2-core machine (three CNN trainings): slow. Reading a CNN's first
# layer stays in the default run (test_gabor_similarity_reads_the_first_layer_of_a_cnn)
@pytest.mark.slow
def test_sparse_activity_makes_first_layer_filters_more_gabor_like_than_none_or_random():
    """The chapter's emergence claim at CI size (examples/gabor_emergence.py at full size).

    The default smoothness prior is off in both fits so that sparseness is the
    only difference; random filters are the initialisation of the same core.
    """
    n_train = 1500
    data = make_v1_population(n_train, n_simple=8, n_complex=8, random_state=0)
    options = dict(gamma_input=0.0, max_epochs=100, device="cpu", random_state=0)
    plain = CNNEncoder(**options).fit(data.X, data.y)
    sparse = CNNEncoder(gamma_activity=30.0, **options).fit(data.X, data.y)
    torch.manual_seed(0)
    random = Core2d(1, (16, 16), channels=16, kernel_size=[9, 5])
    r2_random = gabor_similarity(random, n_starts=2).mean_r2
    r2_plain = gabor_similarity(plain, n_starts=2).mean_r2
    r2_sparse = gabor_similarity(sparse, n_starts=2).mean_r2
    assert r2_random < 0.3
    assert r2_plain > r2_random + 0.15
    assert r2_sparse > r2_plain + 0.05
