"""Simulated neurons with known ground truth, and loaders for real recordings."""

from ._simulated import make_glm_data

__all__ = ["make_glm_data"]
