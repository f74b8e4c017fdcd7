"""Looking inside encoding models, and the classic estimators they generalise.

* :func:`spike_triggered_average`, :func:`spike_triggered_covariance`:
  moment-based receptive-field estimates (white-noise analysis).
* :func:`equivalent_glm`: the GLM filter of a model whose hidden
  nonlinearity is the identity.
* :func:`receptive_field_size`, :func:`empirical_receptive_field`,
  :func:`count_parameters`: receptive fields and weight sharing.
"""

from ._canonical import canonicalize
from ._gabor import fit_gabor, gabor_similarity
from ._glm import equivalent_glm
from ._receptive_fields import count_parameters, empirical_receptive_field, receptive_field_size
from ._spike_triggered import spike_triggered_average, spike_triggered_covariance
from ._symmetries import conv_weight_gradient, translation_equivariance_error
from ._tuning import (
    most_exciting_input,
    phase_invariance_index,
    preferred_grating,
    tuning_curve,
)

__all__ = [
    "canonicalize",
    "conv_weight_gradient",
    "count_parameters",
    "empirical_receptive_field",
    "equivalent_glm",
    "fit_gabor",
    "gabor_similarity",
    "most_exciting_input",
    "phase_invariance_index",
    "preferred_grating",
    "receptive_field_size",
    "spike_triggered_average",
    "spike_triggered_covariance",
    "translation_equivariance_error",
    "tuning_curve",
]
