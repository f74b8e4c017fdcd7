import numpy as np
import pytest
import torch

from sklearn_cnnenc import CNNEncoder, CNNEncoderCV
from sklearn_cnnenc.cnn_cv import DEFAULT_ARCHITECTURE_GRID
from sklearn_cnnenc.datasets import make_shared_filter_population


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow  # about 4 s on a quiet core, 12 s on a busy one
def test_picks_the_readout_that_can_tell_neurons_apart():
    # cells at different locations: a translation-invariant (pooled) readout
    # gives every neuron the same tuning, a factorized one reads each location
    data = make_shared_filter_population(1500, n_neurons=4, image_size=8, kernel_size=3,
                                         random_state=0)
    X, y, X_test, y_test = data.X[:1200], data.y[:1200], data.X[1200:], data.y[1200:]
    base = CNNEncoder(n_layers=1, channels=4, kernel_size=3, max_epochs=30, n_ensemble=1,
                      device="cpu", random_state=0)
    search = CNNEncoderCV(base, {"readout": ["pooled", "factorized"]}, cv=2, factor=2,
                          random_state=0).fit(X, y)
    assert search.best_params_ == {"readout": "factorized"}
    assert isinstance(search.best_estimator_, CNNEncoder)
    assert search.best_estimator_.readout == "factorized"
    np.testing.assert_array_equal(search.predict(X_test), search.best_estimator_.predict(X_test))
    assert search.score(X_test, y_test) == search.best_estimator_.score(X_test, y_test)
    # two candidates, factor 2: two rounds, the second on (about) all samples
    assert list(search.cv_results_["iter"]) == [0, 0, 1]
    assert search.n_features_in_ == 64 and search.n_outputs_ == 4


def test_default_grid_is_documented_and_the_parameters_are_kept_verbatim():
    assert DEFAULT_ARCHITECTURE_GRID == {"n_layers": [1, 2, 3], "channels": [8, 16, 32]}
    search = CNNEncoderCV()
    assert search.estimator is None and search.param_grid is None
    with pytest.raises(ValueError, match="requires y"):
        search.fit(np.zeros((10, 8, 8)), None)
