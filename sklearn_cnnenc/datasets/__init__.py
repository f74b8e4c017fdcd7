"""Simulated neurons with known ground truth, and loaders for real recordings."""

from ._simulated import make_glm_data
from ._v1 import make_v1_population

__all__ = ["make_glm_data", "make_v1_population"]
