"""How many compute threads a fit may use, and keeping to it.

OpenMP thread pools (torch's intra-op pool, OpenBLAS, MKL) that run more
threads than there are free cores do not just share the cores: their threads
wait for each other at every barrier, so one busy core can slow every small
operation many times over. A fit therefore runs at most as many torch and BLAS
threads as the cores this process may use (CPU affinity, cgroup quota), divided
among ``n_jobs`` workers, minus the cores other processes keep busy, and puts
the user's settings back afterwards.

``CNNENC_NUM_THREADS=n`` in the environment fixes the count (no measurement).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["available_cpu_count", "busy_cpu_count", "compute_threads", "limit_threads",
           "limits_threads"]

_F = TypeVar("_F", bound=Callable[..., Any])
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_cpu_quota(root: Path = _CGROUP_ROOT,
                      proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs granted by a cgroup quota (v2 ``cpu.max``, v1 CFS), or None when unlimited."""
    paths = [""]
    try:
        for line in proc_self_cgroup.read_text().splitlines():
            hierarchy, _, path = line.partition(":")[2].partition(":")
            if hierarchy == "" or "cpu" in hierarchy.split(","):
                paths.insert(0, path.lstrip("/"))
    except OSError:
        pass
    for path in paths:
        cpu_max = root / path / "cpu.max"  # v2: "<quota|max> <period>"
        try:
            quota, period = cpu_max.read_text().split()[:2]
        except (OSError, ValueError):
            pass
        else:
            return None if quota == "max" else int(quota) / int(period)
        for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # v1
            folder = root / controller / path
            try:
                quota_us = int((folder / "cpu.cfs_quota_us").read_text())
                period_us = int((folder / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def available_cpu_count() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

    Returns
    -------
    n_cores : int
        At least 1. A fractional quota is rounded up (1.5 CPUs -> 2).

    Examples
    --------
    >>> from sklearn_cnnenc.utils import available_cpu_count
    >>> available_cpu_count() >= 1
    True
    """
    try:
        n_cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        n_cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n_cores = min(n_cores, math.ceil(quota))
    return max(1, n_cores)


_busy_cache: dict[str, float] = {}
_BUSY_TTL_S = 10.0
_BUSY_WINDOW_S = 0.05


def _cpu_jiffies(cpus: set[int] | None) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over ``cpus`` (all when None), from /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(value) for value in fields[:8]]  # user .. steal
        idle = values[3] + values[4]  # idle + iowait
        busy += sum(values) - idle
        total += sum(values)
    return busy, total


def busy_cpu_count() -> int:
    """Cores that *other* processes keep busy right now (Linux; 0 elsewhere).

    The busy time of this process's cores over a 50 ms window, minus the CPU
    time this process used in it, rounded to whole cores. The value is cached
    for 10 s, so many short fits pay the window once.

    Examples
    --------
    >>> from sklearn_cnnenc.utils import busy_cpu_count
    >>> busy_cpu_count() >= 0
    True
    """
    now = time.monotonic()
    if now - _busy_cache.get("time", -math.inf) < _BUSY_TTL_S:
        return int(_busy_cache["value"])
    try:
        cpus: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    start = _cpu_jiffies(cpus)
    if start is None:
        return 0
    own_start = sum(os.times()[:4])
    time.sleep(_BUSY_WINDOW_S)
    end = _cpu_jiffies(cpus)
    own = sum(os.times()[:4]) - own_start
    if end is None or end[1] <= start[1]:
        return 0
    n_cpus = len(cpus) if cpus is not None else (os.cpu_count() or 1)
    busy_cores = n_cpus * (end[0] - start[0]) / (end[1] - start[1])
    elapsed = _BUSY_WINDOW_S  # own CPU time over the window, in cores
    value = max(0, math.floor(busy_cores - own / elapsed + 0.5))
    _busy_cache.update(time=now, value=value)
    return value


def compute_threads(n_jobs: int | None = 1, *, exclude_busy: bool = True) -> int:
    """Compute threads each of ``n_jobs`` parallel workers may run.

    Parameters
    ----------
    n_jobs : int or None, default=1
        Number of workers sharing the cores, as joblib counts them: None means
        1, -1 all cores, -2 all but one, and so on.
    exclude_busy : bool, default=True
        Leave out the cores that other processes keep busy
        (:func:`busy_cpu_count`).

    Returns
    -------
    n_threads : int
        ``(available cores - busy cores) // workers``, at least 1, or
        ``$CNNENC_NUM_THREADS`` when it is set.

    Examples
    --------
    >>> from sklearn_cnnenc.utils import available_cpu_count, compute_threads
    >>> compute_threads(n_jobs=2, exclude_busy=False) == max(1, available_cpu_count() // 2)
    True
    """
    fixed = os.environ.get("CNNENC_NUM_THREADS")
    if fixed:
        try:
            value = int(fixed)
        except ValueError:
            raise ValueError(f"CNNENC_NUM_THREADS must be an integer; got {fixed!r}.") from None
        if value < 1:
            raise ValueError(f"CNNENC_NUM_THREADS must be >= 1; got {value}.")
        return value
    if n_jobs is None:
        n_jobs = 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer or None; got {n_jobs!r}.")
    n_cores = available_cpu_count()
    n_workers = n_jobs if n_jobs > 0 else max(1, n_cores + 1 + n_jobs)
    if exclude_busy:
        n_cores = max(1, n_cores - busy_cpu_count())
    return max(1, n_cores // n_workers)


# Thread limits are process-wide settings, so concurrent limits (fits in joblib
# threads) are kept in one table: the tightest active limit applies, and the
# user's settings come back when the last one ends.
_lock = threading.RLock()
_active: dict[int, int] = {}
_saved: dict[str, Any] = {}
_pool_cache: dict[str, Any] = {"n_modules": -1, "pools": []}


def _thread_pools() -> list:
    """threadpoolctl's controllers of the loaded BLAS/OpenMP libraries.

    Scanning the loaded libraries takes milliseconds, too long for every
    ``predict``; the scan is redone only when Python modules were imported since
    (an import is how a new BLAS or OpenMP library gets loaded).
    """
    if len(sys.modules) != _pool_cache["n_modules"]:
        from threadpoolctl import ThreadpoolController

        _pool_cache.update(n_modules=len(sys.modules),
                           pools=list(ThreadpoolController().lib_controllers))
    return _pool_cache["pools"]


def _key(pool: Any) -> tuple[str, str]:
    # the pool objects are rebuilt after imports; the library they control is not
    return pool.internal_api, pool.filepath


def _set(n_threads: int | None) -> None:
    """Apply ``n_threads`` (never above the saved settings), or restore them (None)."""
    torch_threads = _saved["torch"] if n_threads is None else min(n_threads, _saved["torch"])
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    for pool in _thread_pools():
        original = _saved["pools"].get(_key(pool), pool.num_threads)
        target = original if n_threads is None else min(n_threads, original)
        if pool.num_threads != target:
            pool.set_num_threads(target)


@contextmanager
def limit_threads(n_threads: int) -> Iterator[int]:
    """Run torch and BLAS on at most ``n_threads`` threads inside the block.

    Lowers ``torch.set_num_threads`` and, through threadpoolctl, the OpenBLAS,
    MKL and OpenMP pools to ``n_threads`` (never raises a lower setting), and
    restores the values found on entry when the last active limit ends. Limits
    entered concurrently from several threads combine: the smallest applies.

    Parameters
    ----------
    n_threads : int
        At least 1.

    Yields
    ------
    n_threads : int
        The limit in force (the smallest active one).

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.utils import limit_threads
    >>> before = torch.get_num_threads()
    >>> with limit_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be an integer >= 1; got {n_threads!r}.")
    token = object()
    with _lock:
        if not _active:
            _saved.update(torch=torch.get_num_threads(),
                          pools={_key(pool): pool.num_threads for pool in _thread_pools()})
        _active[id(token)] = n_threads
        limit = min(_active.values())
        _set(limit)
    try:
        yield limit
    finally:
        with _lock:
            del _active[id(token)]
            _set(min(_active.values()) if _active else None)
            if not _active:
                _saved.clear()


def limits_threads(method: _F) -> _F:
    """Decorate an estimator method to run under :func:`limit_threads`.

    The limit is the smaller of torch's current thread count (the user's or
    joblib's setting) and :func:`compute_threads`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.utils import limits_threads
    >>> class Model:
    ...     @limits_threads
    ...     def fit(self):
    ...         return torch.get_num_threads()
    >>> Model().fit() <= torch.get_num_threads()
    True
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        n_threads = min(torch.get_num_threads(), compute_threads())
        with limit_threads(n_threads):
            return method(*args, **kwargs)

    wrapper.__limits_threads__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
