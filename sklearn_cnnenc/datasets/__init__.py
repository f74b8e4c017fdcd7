"""Simulated neurons with known ground truth, and loaders for real recordings."""

from ._recordings import load_grasshopper_auditory, load_hippocampus_linear_track
from ._shared_filter import make_shared_filter_population
from ._simulated import make_glm_data
from ._temporal import make_energy_model_data, make_ln_data
from ._v1 import make_v1_population
from ._video import make_direction_selective_cells

__all__ = [
    "load_grasshopper_auditory",
    "load_hippocampus_linear_track",
    "make_direction_selective_cells",
    "make_energy_model_data",
    "make_glm_data",
    "make_shared_filter_population",
    "make_ln_data",
    "make_v1_population",
]
