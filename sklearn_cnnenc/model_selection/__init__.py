"""Model selection for encoding models of time series of neural responses.

Neighbouring time bins are correlated, and lagged features (stimulus history,
spike history) copy values across bins, so shuffled K-fold cross-validation
overstates held-out performance. Use contiguous blocks, with a gap of at least
the lag window between training and test bins:

* :class:`BlockedKFold`: every block is the test set once; ``gap`` bins on
  each side of the test block are dropped from training.
* scikit-learn's ``TimeSeriesSplit(n_splits, gap=n_lags)``: train on the past,
  test on the following block (forward chaining), for a model that must
  predict the future.

:func:`compare_models` runs the cross-validated, neuron-by-neuron comparison
of several models (nested when a model is a search object), and
:func:`likelihood_ratio_test` tests nested GLMs neuron by neuron.
"""

from ._compare import GridEdgeWarning, ModelComparison, SilentUnitWarning, compare_models
from ._likelihood_ratio import likelihood_ratio_test
from ._split import BlockedKFold

__all__ = ["BlockedKFold", "GridEdgeWarning", "ModelComparison", "SilentUnitWarning",
           "compare_models", "likelihood_ratio_test"]
