import numpy as np
import pytest

from sklearn_cnnenc.datasets import make_v1_population


@pytest.fixture(scope="module")
def population():
    return make_v1_population(n_samples=4000, n_simple=3, n_complex=3, random_state=0)


def _r2(design, target):
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    return 1 - residual.var() / target.var()


def test_shapes_and_cell_types(population):
    data = population
    assert data.X.shape == (4000, 16, 16)
    assert data.y.shape == data.mean.shape == (4000, 6)
    assert data.filters.shape == data.filters_quadrature.shape == (6, 16, 16)
    assert list(data.cell_type) == ["simple"] * 3 + ["complex"] * 3
    for key in ("center", "orientation", "wavelength", "sigma", "phase"):
        assert len(data[key]) == 6


def test_filters_are_zero_mean_unit_norm_quadrature_pairs(population):
    even = population.filters.reshape(6, -1)
    odd = population.filters_quadrature.reshape(6, -1)
    np.testing.assert_allclose(np.linalg.norm(even, axis=1), 1.0)
    np.testing.assert_allclose(even.sum(axis=1), 0.0, atol=1e-10)
    assert np.all(np.abs((even * odd).sum(axis=1)) < 0.2)


def test_rates_follow_the_ln_and_energy_models_of_the_returned_filters(population):
    data = population
    flat = data.X.reshape(len(data.X), -1)
    even = flat @ data.filters.reshape(6, -1).T
    odd = flat @ data.filters_quadrature.reshape(6, -1).T
    ones = np.ones((len(flat), 1))
    for k in range(6):
        if data.cell_type[k] == "simple":
            design = np.column_stack([ones, np.maximum(even[:, k], 0) ** 2])
        else:
            # each drive is scaled to unit variance before squaring
            design = np.column_stack([ones, even[:, k] ** 2, odd[:, k] ** 2])
        assert _r2(design, data.mean[:, k]) == pytest.approx(1.0, abs=1e-10)
    # a complex cell ignores the sign (phase) of its even filter's drive
    complex_rate = data.mean[:, 3:]
    assert np.corrcoef(even[:, 3], complex_rate[:, 0])[0, 1] ** 2 < 0.05


def test_counts_are_poisson_around_the_mean_rate(population):
    data = population
    np.testing.assert_allclose(data.mean.mean(axis=0), 1.0, rtol=0.15)
    np.testing.assert_allclose(data.y.mean(axis=0), data.mean.mean(axis=0), rtol=0.1)
    assert np.all(data.y == np.round(data.y)) and data.y.min() >= 0
    # Poisson: residual variance equals the mean
    residual_var = ((data.y - data.mean) ** 2).mean()
    assert residual_var == pytest.approx(data.mean.mean(), rel=0.1)


def test_reproducible_and_scaled():
    a = make_v1_population(100, 1, 1, image_size=12, mean_rate=3.0, random_state=5)
    b = make_v1_population(100, 1, 1, image_size=12, mean_rate=3.0, random_state=5)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.X.shape == (100, 12, 12)
    assert a.mean.min() == pytest.approx(0.3)  # baseline of 10% of the mean rate


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples"),
        (dict(n_simple=0, n_complex=0), "at least one neuron"),
        (dict(image_size=4), "image_size"),
        (dict(mean_rate=0.0), "mean_rate"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_v1_population(**kwargs)
