"""sklearn-cnnenc: neural encoding models with a scikit-learn API.

Estimators predict a neuron's (or a population's) response from a stimulus
and are fitted by maximum likelihood on PyTorch through skorch:

* :class:`PoissonGLM`: generalised linear model (ridge / elastic net / group
  lasso, with standard errors); :class:`PoissonGLMCV` picks its penalty by
  cross-validation along a regularisation path.
* :class:`LNModel`: linear-nonlinear cascade (filter banks, energy models,
  space-time separable filters).
* :class:`CNNEncoder`: convolutional core + per-neuron readout (images or
  causal time series); :class:`CNNEncoderCV` chooses its architecture by
  successive halving.
* :class:`BayesianDecoder`: decodes the stimulus from responses through any
  fitted encoder and a stimulus prior (a scikit-learn classifier).

Submodules: ``families`` (observation models), ``links`` (inverse links),
``stimuli`` (natural image patches, pink noise, gratings, Gabor patches,
phase scrambling), ``metrics`` (log-likelihood,
bits per spike, pseudo-R2, correlation, FEVE and scikit-learn scorers),
``datasets`` (simulated neurons, real recordings),
``nn`` (the torch modules), ``training`` (the skorch net), ``preprocessing``
(time lags, raised-cosine bases, spike history), ``model_selection``
(contiguous-block cross-validation, model comparison), ``inspection``
(STA/STC, GLM-equivalent filters, receptive fields, equivariance,
canonical parameters, Gabor fits, most exciting inputs, tuning, phase
invariance), ``simulation`` (recurrent simulation of
history GLMs), ``decoding`` (Bayesian decoding and MAP stimulus
reconstruction), ``io`` (data files, saved models), ``plotting``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

# The estimators import torch and skorch (seconds): they load on first use, so
# that ``cnnenc --help``, ``cnnenc --version`` and submodules that need no
# torch start fast (PEP 562).
_ESTIMATORS = {
    "BayesianDecoder": "decoding",
    "CNNEncoder": "cnn",
    "CNNEncoderCV": "cnn_cv",
    "LNModel": "ln",
    "PoissonGLM": "glm",
    "PoissonGLMCV": "glm_cv",
}

if TYPE_CHECKING:  # pragma: no cover
    from .cnn import CNNEncoder
    from .cnn_cv import CNNEncoderCV
    from .decoding import BayesianDecoder
    from .glm import PoissonGLM
    from .glm_cv import PoissonGLMCV
    from .ln import LNModel

__all__ = [
    "BayesianDecoder",
    "CNNEncoder",
    "CNNEncoderCV",
    "LNModel",
    "PoissonGLM",
    "PoissonGLMCV",
    "__version__",
]


def __getattr__(name: str):
    if name in _ESTIMATORS:
        value = getattr(importlib.import_module(f".{_ESTIMATORS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
