"""Plain torch modules behind the estimators (no scikit-learn in here).

A model is a *predictor* (stimulus -> linear predictor, one column per neuron)
wrapped in an :class:`EncodingModule` that adds the inverse link and the
per-neuron dispersion of the observation family. Every module owns its
penalty as a ``regularizer()`` method, so training code only sums them.
"""

from .encoding import EncodingModule
from .linear import LinearPredictor
from .ln import FilterBankPredictor

__all__ = ["EncodingModule", "FilterBankPredictor", "LinearPredictor"]
