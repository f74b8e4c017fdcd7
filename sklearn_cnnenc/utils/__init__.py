"""Utilities shared across the package.

* :mod:`._threads`: compute-thread limits for busy and shared machines;
* :mod:`._estimators`: scikit-learn plumbing (pipeline unwrapping, fitted
  models inside search objects);
* :mod:`._torch`: torch helpers (evaluation-mode context, constants).
"""

from ._estimators import final_step, fitted_model
from ._threads import (
    available_cpu_count,
    busy_cpu_count,
    compute_threads,
    limit_threads,
    limits_threads,
)
from ._torch import LOG_2PI, evaluating

__all__ = [
    "available_cpu_count",
    "busy_cpu_count",
    "compute_threads",
    "limit_threads",
    "limits_threads",
    "LOG_2PI",
    "evaluating",
    "final_step",
    "fitted_model",
]
