import matplotlib
import numpy as np
import pytest
from sklearn.model_selection import KFold

from sklearn_cnnenc import PoissonGLM
from sklearn_cnnenc.datasets import make_glm_data
from sklearn_cnnenc.model_selection import compare_models
from sklearn_cnnenc.plotting import plot_model_comparison

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def results():
    data = make_glm_data(n_samples=600, n_features=3, n_neurons=5, random_state=0)
    return compare_models({"ridge": PoissonGLM(alpha=1e-3), "strong": PoissonGLM(alpha=3.0)},
                          data.X, data.y, cv=KFold(2), oracle_rates=data.mean, verbose=False)


def test_model_comparison_figure_shows_every_model_and_neuron(results, tmp_path):
    figure = plot_model_comparison(results, reference="ridge")
    summary_axis, scatter_axis = figure.axes
    assert [label.get_text() for label in summary_axis.get_xticklabels()] == results.models
    bars = [patch.get_height() for patch in summary_axis.patches]
    expected = [np.nanmean(results.per_neuron("bits_per_spike")[m]) for m in results.models]
    np.testing.assert_allclose(bars, expected)
    # one scatter series per non-reference model, one point per neuron
    offsets = [collection.get_offsets() for collection in scatter_axis.collections]
    assert len(offsets) == 2 and all(len(points) == 5 for points in offsets)
    figure.savefig(tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 1000


def test_unknown_reference_is_a_clear_error(results):
    with pytest.raises(ValueError, match="Unknown reference model 'cnn'"):
        plot_model_comparison(results, reference="cnn")


# ------------------------------------------------------------- model figures
@pytest.fixture(scope="module")
def fitted():
    from sklearn_cnnenc import CNNEncoder, LNModel
    from sklearn_cnnenc.datasets import make_v1_population

    data = make_v1_population(300, n_simple=2, n_complex=1, image_size=12, random_state=0)
    options = dict(max_epochs=1, device="cpu", random_state=0)
    cnn = CNNEncoder(channels=5, kernel_size=[5, 3], **options).fit(data.X, data.y)
    flat = data.X.reshape(300, -1)
    glm = PoissonGLM().fit(flat, data.y)
    ln = LNModel(n_filters=2, nonlinearity="square", input_shape=(12, 12), n_init=1,
                 max_iter=20).fit(flat, data.y[:, 0])
    rng = np.random.default_rng(0)
    series = CNNEncoder(channels=3, kernel_size=4, input_type="time_series", **options).fit(
        rng.normal(size=(100, 2, 16)), rng.poisson(1.0, size=100).astype(float)
    )
    return dict(data=data, cnn=cnn, glm=glm, ln=ln, series=series)


def _images(figure):
    return [axis.images[0].get_array() for axis in figure.axes if axis.images]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plot_filters_draws_each_first_layer_kernel_of_a_cnn(fitted, tmp_path):
    from sklearn_cnnenc.plotting import plot_filters

    cnn = fitted["cnn"]
    figure = plot_filters(cnn, title="first layer")
    weights = cnn.core_.blocks[0].conv.weight.detach().numpy()[:, 0]
    shown = _images(figure)
    assert len(figure.axes) == len(shown) == 5
    for image, weight in zip(shown, weights, strict=True):
        np.testing.assert_allclose(image, weight)
    figure.savefig(tmp_path / "filters.png")
    assert (tmp_path / "filters.png").stat().st_size > 1000
    assert len(plot_filters(cnn, max_filters=3).axes) == 3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plot_filters_of_glm_ln_time_series_and_arrays(fitted):
    from sklearn_cnnenc.plotting import plot_filters

    glm_figure = plot_filters(fitted["glm"], image_shape=(12, 12))
    for image, coef in zip(_images(glm_figure), fitted["glm"].coef_, strict=True):
        np.testing.assert_allclose(image, coef.reshape(12, 12))
    # without a shape, a GLM's coefficients are curves
    assert [len(axis.lines) for axis in plot_filters(fitted["glm"]).axes] == [2, 2, 2]
    ln_images = _images(plot_filters(fitted["ln"]))
    np.testing.assert_allclose(ln_images[1], fitted["ln"].filters_[0, 1])
    series = plot_filters(fitted["series"])
    kernels = fitted["series"].core_.blocks[0].conv.weight.detach().numpy()[:, :, 0]
    assert len(series.axes) == 3
    for axis, kernel in zip(series.axes, kernels, strict=True):
        curves = [line.get_ydata() for line in axis.lines[:2]]  # two input channels
        np.testing.assert_allclose(curves, kernel)
    assert len(plot_filters(np.zeros((4, 9))).axes) == 4


def test_plot_filters_bad_input(fitted):
    from sklearn_cnnenc.plotting import plot_filters

    with pytest.raises(ValueError, match="image_shape"):
        plot_filters(fitted["glm"], image_shape=(10, 10))
    with pytest.raises(ValueError, match="plot_filters needs"):
        plot_filters(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="max_filters"):
        plot_filters(fitted["cnn"], max_filters=0)


def test_plot_receptive_fields_shows_the_gradient_sensitivity(fitted):
    from sklearn_cnnenc.inspection import empirical_receptive_field
    from sklearn_cnnenc.plotting import plot_receptive_fields

    X = fitted["data"].X[:30]
    figure = plot_receptive_fields(fitted["cnn"], X, neurons=[0, 2])
    shown = _images(figure)
    assert len(shown) == 2
    np.testing.assert_allclose(shown[1],
                               empirical_receptive_field(fitted["cnn"], X, neuron=2).sensitivity)
    glm = plot_receptive_fields(fitted["glm"], X.reshape(30, -1), image_shape=(12, 12))
    np.testing.assert_allclose(_images(glm)[0], np.abs(fitted["glm"].coef_[0]).reshape(12, 12),
                               rtol=1e-10)


def test_plot_tuning_overlays_models_per_neuron(fitted):
    from sklearn_cnnenc.inspection import tuning_curve
    from sklearn_cnnenc.plotting import plot_tuning
    from sklearn_cnnenc.stimuli import gratings

    probes = gratings(12, orientation=0.5, frequency=0.25,
                      phase=np.linspace(0, 2 * np.pi, 8, endpoint=False))
    curves = {"CNN": tuning_curve(fitted["cnn"], probes, "phase"),
              "GLM": tuning_curve(fitted["glm"], probes, "phase")}
    figure = plot_tuning(curves, normalize=True)
    assert len(figure.axes) == 3
    lines = figure.axes[1].lines
    assert [line.get_label() for line in lines] == ["CNN", "GLM"]
    expected = curves["GLM"].responses[:, 1]
    np.testing.assert_allclose(lines[1].get_ydata(), expected / expected.mean())
    np.testing.assert_allclose(lines[1].get_xdata(), probes.phase)
    assert figure.axes[0].get_xlabel() == "phase"
    single = plot_tuning(curves["CNN"], neurons=[1])
    np.testing.assert_allclose(single.axes[0].lines[0].get_ydata(),
                               curves["CNN"].responses[:, 1])
    with pytest.raises(ValueError, match="tuning_curve result"):
        plot_tuning([1, 2, 3])
