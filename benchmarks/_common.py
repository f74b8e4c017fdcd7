"""Small helpers shared by the benchmark scripts (timing, tables)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch


def best_time(function: Callable[[], object], repeats: int = 3) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls, and the result of the last call."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def machine_line() -> str:
    """One line naming the machine the figures were measured on."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{device}, torch {torch.__version__}"
    )


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print rows as a Markdown table (pasteable into the README)."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row.get(column, "")) for column in columns) + " |")
