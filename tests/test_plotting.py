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
