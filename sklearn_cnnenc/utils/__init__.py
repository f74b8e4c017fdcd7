"""Utilities: compute-thread limits for busy and shared machines."""

from ._threads import (
    available_cpu_count,
    busy_cpu_count,
    compute_threads,
    limit_threads,
    limits_threads,
)

__all__ = [
    "available_cpu_count",
    "busy_cpu_count",
    "compute_threads",
    "limit_threads",
    "limits_threads",
]
