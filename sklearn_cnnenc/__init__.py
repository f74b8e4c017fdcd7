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

from .cnn import CNNEncoder
from .cnn_cv import CNNEncoderCV
from .decoding import BayesianDecoder
from .glm import PoissonGLM
from .glm_cv import PoissonGLMCV
from .ln import LNModel

__version__ = "0.1.0.dev0"

__all__ = [
    "BayesianDecoder",
    "CNNEncoder",
    "CNNEncoderCV",
    "LNModel",
    "PoissonGLM",
    "PoissonGLMCV",
    "__version__",
]
