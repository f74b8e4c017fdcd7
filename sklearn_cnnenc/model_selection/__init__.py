"""Model selection for encoding models: cross-validated, neuron-by-neuron comparison."""

from ._compare import ModelComparison, compare_models

__all__ = ["ModelComparison", "compare_models"]
