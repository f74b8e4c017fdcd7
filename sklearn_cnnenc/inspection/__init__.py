"""Looking inside encoding models, and the classic estimators they generalise.

* :func:`spike_triggered_average`, :func:`spike_triggered_covariance`:
  moment-based receptive-field estimates (white-noise analysis).
* :func:`equivalent_glm`: the GLM filter of a model whose hidden
  nonlinearity is the identity.
"""

from ._glm import equivalent_glm
from ._spike_triggered import spike_triggered_average, spike_triggered_covariance

__all__ = ["equivalent_glm", "spike_triggered_average", "spike_triggered_covariance"]
