"""sklearn-cnnenc: neural encoding models with a scikit-learn API.

Estimators predict a neuron's (or a population's) response from a stimulus
and are fitted by maximum likelihood on PyTorch through skorch:

* :class:`PoissonGLM`: generalised linear model (ridge / elastic net).
* :class:`CNNEncoder`: convolutional core + per-neuron readout (images or
  causal time series).

Submodules: ``families`` (observation models), ``links`` (inverse links),
``stimuli`` (natural image patches, pink noise), ``metrics`` (log-likelihood,
bits per spike, pseudo-R2, correlation, FEVE and scikit-learn scorers),
``datasets`` (simulated neurons, real recordings), ``nn`` (the torch modules),
``training`` (the skorch net).
"""

from .cnn import CNNEncoder
from .glm import PoissonGLM

__version__ = "0.1.0.dev0"

__all__ = ["CNNEncoder", "PoissonGLM", "__version__"]
