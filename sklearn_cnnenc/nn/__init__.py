"""Plain torch modules behind the estimators (no scikit-learn in here).

A model is a *predictor* (stimulus -> linear predictor, one column per neuron)
wrapped in an :class:`EncodingModule` that adds the inverse link and the
per-neuron dispersion of the observation family. Every module owns its
penalty as a ``regularizer()`` method, so training code only sums them.

Predictors: :class:`LinearPredictor` (GLM) and :class:`CNNPredictor` (a
convolutional core, :class:`Core2d` or :class:`CausalCore1d`, followed by a
readout: :class:`FactorizedReadout`, :class:`GaussianReadout`,
:class:`PooledReadout`, :class:`DenseReadout` or :class:`LastStepReadout`).
:class:`VideoPredictor` with :class:`CausalCore3d` models movies.
:class:`LocallyConnected2d` replaces convolutions when weights are not shared.
"""

from .cnn import CNNPredictor
from .cores import ACTIVATIONS, CausalCore1d, Core2d, per_layer, resolve_dilation
from .encoding import EncodingModule
from .linear import LinearPredictor
from .ln import FilterBankPredictor
from .locally_connected import LocallyConnected2d
from .modulators import BehaviorModulator, EyeShifter
from .readouts import (
    READOUTS,
    DenseReadout,
    FactorizedReadout,
    GaussianReadout,
    LastStepReadout,
    PooledReadout,
    make_readout,
)
from .video import CausalCore3d, VideoPredictor

__all__ = [
    "ACTIVATIONS",
    "READOUTS",
    "BehaviorModulator",
    "CNNPredictor",
    "CausalCore1d",
    "CausalCore3d",
    "Core2d",
    "DenseReadout",
    "EncodingModule",
    "EyeShifter",
    "FactorizedReadout",
    "FilterBankPredictor",
    "GaussianReadout",
    "LastStepReadout",
    "LinearPredictor",
    "LocallyConnected2d",
    "PooledReadout",
    "VideoPredictor",
    "make_readout",
    "per_layer",
    "resolve_dilation",
]
