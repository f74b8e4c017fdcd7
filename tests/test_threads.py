"""Compute-thread limits (sklearn_cnnenc.utils) and fits in joblib threads."""

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed
from threadpoolctl import threadpool_info

from sklearn_cnnenc import CNNEncoder, LNModel, PoissonGLM
from sklearn_cnnenc._base import BaseEncoder
from sklearn_cnnenc.datasets import make_v1_population
from sklearn_cnnenc.utils import _threads, compute_threads, limit_threads


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("CNNENC_NUM_THREADS", raising=False)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"user.slice/cpu.max": "200000 100000\n"}, 2.0),  # the process's own cgroup (v2)
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     0.5),
    ({}, None),
    ({"cpu.max": "garbage\n"}, None),
])
def test_cgroup_quota_from_fake_files(tmp_path, files, expected):
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in files.items():
        _write(root / name, text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/user.slice\n" if "user.slice/cpu.max" in files else "0::/\n")
    assert _threads._cgroup_cpu_quota(root, proc) == expected


def test_available_cpu_count_honours_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(_threads, "_cgroup_cpu_quota", lambda: None)
    assert _threads.available_cpu_count() == 4
    monkeypatch.setattr(_threads, "_cgroup_cpu_quota", lambda: 1.5)
    assert _threads.available_cpu_count() == 2  # a fractional quota rounds up
    monkeypatch.setattr(_threads, "_cgroup_cpu_quota", lambda: 0.2)
    assert _threads.available_cpu_count() == 1


@pytest.mark.parametrize(("n_jobs", "busy", "expected"), [
    (1, 0, 8), (None, 0, 8), (2, 0, 4), (3, 0, 2), (16, 0, 1), (-1, 0, 1), (-2, 0, 1),
    (-8, 0, 8), (-7, 0, 4), (1, 3, 5), (2, 3, 2), (1, 8, 1), (4, 7, 1),
])
def test_compute_threads_divides_free_cores_among_jobs(monkeypatch, no_env, n_jobs, busy,
                                                       expected):
    monkeypatch.setattr(_threads, "available_cpu_count", lambda: 8)
    monkeypatch.setattr(_threads, "busy_cpu_count", lambda: busy)
    assert compute_threads(n_jobs) == expected
    assert compute_threads(n_jobs, exclude_busy=False) == compute_threads(n_jobs) if busy == 0 \
        else True


def test_compute_threads_environment_and_bad_n_jobs(monkeypatch):
    monkeypatch.setenv("CNNENC_NUM_THREADS", "3")
    assert compute_threads(8) == 3
    monkeypatch.setenv("CNNENC_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="CNNENC_NUM_THREADS"):
        compute_threads()
    monkeypatch.delenv("CNNENC_NUM_THREADS")
    for bad in (0, 1.5, "2", True):
        with pytest.raises(ValueError, match="n_jobs"):
            compute_threads(bad)


def test_busy_cpu_count_is_cached_and_non_negative(monkeypatch):
    _threads._busy_cache.clear()
    first = _threads.busy_cpu_count()
    assert 0 <= first <= _threads.available_cpu_count() or first >= 0
    monkeypatch.setattr(_threads, "_cpu_jiffies", lambda cpus: pytest.fail("not cached"))
    assert _threads.busy_cpu_count() == first


def _blas_threads():
    return {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}


def test_limit_threads_restores_settings():
    np.ones(3) @ np.ones(3)  # BLAS loaded
    original = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        before = _blas_threads()
        with limit_threads(1) as n:
            assert n == 1 and torch.get_num_threads() == 1
            assert set(_blas_threads().values()) == {1}
            with limit_threads(2) as inner:  # the tighter active limit applies
                assert inner == 1 and torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        assert _blas_threads() == before
        with pytest.raises(RuntimeError), limit_threads(1):
            raise RuntimeError("restored on errors too")
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="n_threads"):
            with limit_threads(0):
                pass
    finally:
        torch.set_num_threads(original)


@pytest.mark.parametrize("method", ["fit", "predict", "score"])
def test_estimator_methods_are_limited(method):
    assert getattr(getattr(BaseEncoder, method), "__limits_threads__", False)
    for estimator in (PoissonGLM, LNModel, CNNEncoder):
        # inherited, or overridden and limited in its own right
        assert getattr(getattr(estimator, method), "__limits_threads__", False), estimator


def test_fit_never_runs_more_threads_than_allowed(monkeypatch):
    seen = []
    monkeypatch.setattr(_threads, "compute_threads", lambda n_jobs=1: 1)
    original_fit = PoissonGLM._starting_values

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(PoissonGLM, "_starting_values", spy)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rng = np.random.default_rng(0)
        PoissonGLM().fit(rng.normal(size=(50, 3)), rng.poisson(1.0, size=50))
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("readout", ["gaussian", "factorized"])
def test_cnn_fits_in_threads_equal_serial_fits(readout):
    # The global torch RNG used to be shared by fits in joblib threads, so two fits
    # with different random_state drew each other's numbers (initial weights, the
    # Gaussian readout's sampled positions): predictions differed from serial fits.
    data = make_v1_population(120, n_simple=1, n_complex=1, image_size=10, random_state=0)

    def fit_predict(seed):
        model = CNNEncoder(readout=readout, channels=3, kernel_size=[3, 3], max_epochs=2,
                           batch_size=16, device="cpu", random_state=seed)
        return model.fit(data.X, data.y).predict(data.X)

    serial = [fit_predict(seed) for seed in (0, 1)]
    for _ in range(3):
        threaded = Parallel(n_jobs=2, backend="threading")(
            delayed(fit_predict)(seed) for seed in (0, 1))
        for a, b in zip(serial, threaded, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


class _ThreadRecorder:
    """A mean-rate model that records the torch threads its fit may use."""

    seen: list = []

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        type(self).seen.append(torch.get_num_threads())
        self.mean_ = np.mean(y, axis=0)
        return self

    def predict(self, X):
        return np.tile(self.mean_, (len(X), 1))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_compare_models_workers_share_the_cores(monkeypatch, n_jobs):
    from sklearn_cnnenc.model_selection import compare_models

    monkeypatch.setattr(_threads, "available_cpu_count", lambda: 4)
    _ThreadRecorder.seen = []
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 2)), rng.poisson(2.0, size=(60, 2)).astype(float)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        from joblib import parallel_config

        with parallel_config(backend="threading"):
            compare_models({"mean": _ThreadRecorder()}, X, y, cv=3, n_jobs=n_jobs)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(previous)
    assert _ThreadRecorder.seen == [4 // n_jobs] * 3


def test_limit_threads_restores_pools_rescanned_after_an_import(monkeypatch):
    np.ones(3) @ np.ones(3)
    before = _blas_threads()
    with limit_threads(1):
        _threads._pool_cache["n_modules"] = -1  # as if a module was imported inside the fit
        assert set(_blas_threads().values()) == {1}
    assert _blas_threads() == before


def test_limit_threads_never_raises_a_lower_setting():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with limit_threads(4):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_iterative_inspection_and_decoding_tools_are_limited():
    # gradient ascent of many tiny steps: on busy cores, threads waiting on each
    # other made one MEI take 39 s instead of 1.4 s (measured on a loaded 2-core box)
    from sklearn_cnnenc.decoding import reconstruct
    from sklearn_cnnenc.inspection import most_exciting_input

    for tool in (most_exciting_input, reconstruct):
        assert getattr(tool, "__limits_threads__", False), tool.__name__
