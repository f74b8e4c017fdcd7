"""Streaming from disk: memmap, HDF5 and zarr fits equal in-memory fits, without loading X."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_cnnenc import CNNEncoder
from sklearn_cnnenc.data import (
    LazyArray,
    StreamingBatchIterator,
    StreamingDataset,
    check_finite_by_chunks,
    is_lazy,
    open_array,
)
from sklearn_cnnenc.datasets import make_v1_population

h5py = pytest.importorskip("h5py")

N_SAMPLES = 600
# no single read may cover more rows than this (half the data)
MAX_ROWS = N_SAMPLES // 2


class GuardedStore:
    """An on-"disk" array that counts reads and refuses any read of too many rows."""

    def __init__(self, array, max_rows=MAX_ROWS):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.max_rows = max_rows
        self.rows_read = 0

    def __getitem__(self, key):
        rows = np.arange(len(self.array))[key if not isinstance(key, tuple) else key[0]]
        n = np.size(rows)
        if n > self.max_rows:
            raise AssertionError(f"read of {n} rows: the store would be materialised")
        self.rows_read += n
        return self.array[key]

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole store was converted to an array")


@pytest.fixture(scope="module")
def data():
    d = make_v1_population(n_samples=N_SAMPLES, n_simple=2, n_complex=1, image_size=12,
                           random_state=0)
    return d.X.astype(np.float32), d.y


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # validation reads chunks of ~100 rows here (32 MB in real use)
    monkeypatch.setattr("sklearn_cnnenc.data._lazy._CHUNK_BYTES", 100 * 12 * 12 * 8)
    # a shuffled pass reads windows of ~280 rows (8 MB in real use): the
    # training part of a 300-sample fit (270) is one window (the in-memory order)
    monkeypatch.setattr("sklearn_cnnenc.data._streaming._WINDOW_BYTES", 280 * 12 * 12 * 4)
    monkeypatch.setattr("sklearn_cnnenc.data._streaming._BLOCK_BYTES", 16 * 12 * 12 * 4)


def _model(**params):
    # one model and a 10% validation split (the windows above are sized for
    # it), not the small-data defaults
    settings = dict(channels=3, kernel_size=(5, 3), max_epochs=3, batch_size=64,
                    n_ensemble=1, validation_fraction=0.1, device="cpu", random_state=0)
    return CNNEncoder(**{**settings, **params})


def _stores(X, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    h5 = h5py.File(tmp_path / "stim.h5", "w")
    h5.create_dataset("X", data=X, chunks=(16, *X.shape[1:]))
    stores = {"memmap": np.load(path, mmap_mode="r"), "hdf5": h5["X"]}
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, dtype=X.dtype,
                          chunks=(16, *X.shape[1:]))
    z[:] = X
    stores["zarr"] = z
    return stores


def test_fits_from_memmap_hdf5_and_zarr_equal_the_in_memory_fit(data, tmp_path, monkeypatch):
    # a training set that fits one shuffle window is read in the
    # in-memory order: the same random permutation for the same seed
    monkeypatch.setattr("sklearn_cnnenc.data._streaming._WINDOW_BYTES", 32 * 2**20)
    X, y = data[0][:300], data[1][:300]
    reference = _model(max_epochs=2).fit(X, y)
    expected = reference.predict(X)
    for name, store in _stores(X, tmp_path).items():
        assert is_lazy(store), name
        model = _model(max_epochs=2).fit(store, y)
        # same seed, same batches, same float32 values: the same fit
        np.testing.assert_array_equal(model.predict(X), expected, err_msg=name)
        np.testing.assert_array_equal(model.predict(store), expected, err_msg=name)
        assert model.score(store, y) == pytest.approx(reference.score(X, y), rel=1e-12)
        assert model.history_[:, "valid_loss"] == reference.history_[:, "valid_loss"]


def test_video_fit_streams_and_equals_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr("sklearn_cnnenc.data._streaming._WINDOW_BYTES", 32 * 2**20)
    from sklearn_cnnenc.datasets import make_direction_selective_cells

    d = make_direction_selective_cells(n_samples=200, n_cells=2, image_size=8, random_state=0)
    params = dict(n_layers=1, channels=2, kernel_size=3, temporal_kernel_size=3,
                  input_type="video", max_epochs=2, device="cpu", random_state=0)
    with h5py.File(tmp_path / "movies.h5", "w") as f:
        f["X"] = d.X
    with h5py.File(tmp_path / "movies.h5", "r") as f:
        streamed = CNNEncoder(**params).fit(f["X"], d.y)
        np.testing.assert_array_equal(
            streamed.predict(f["X"]), CNNEncoder(**params).fit(d.X, d.y).predict(d.X)
        )


def test_training_never_materialises_the_store(data):
    X, y = data
    store = GuardedStore(X)
    model = _model().fit(open_array(store), y)
    model.predict(open_array(store))
    model.score(open_array(store), y)
    # fit: one and two layers (below 1,500 images n_layers="auto" fits both), each
    # validation by chunks + 3 epochs; predict and score: validation + one pass each
    assert model.n_layers == "auto" and set(model.depth_scores_) == {1, 2}
    assert store.rows_read <= N_SAMPLES * (2 * (1 + 3) + 2 * 2)
    with pytest.raises(AssertionError, match="materialised"):
        store[:]


def test_cross_validation_folds_index_the_store_without_copying(data):
    X, y = data
    store = GuardedStore(X)
    lazy = open_array(store)
    search = GridSearchCV(_model(max_epochs=1), {"channels": [2, 3]}, cv=KFold(2))
    search.fit(lazy, y)
    in_memory = GridSearchCV(_model(max_epochs=1), {"channels": [2, 3]}, cv=KFold(2)).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  in_memory.cv_results_["mean_test_score"])
    fold = lazy[np.arange(100, 400)]
    assert isinstance(fold, LazyArray) and fold.shape == (300, 12, 12)


def test_lazy_array_reads_in_any_order_with_repeats(tmp_path):
    X = np.arange(60.0).reshape(20, 3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["X"] = X
    with h5py.File(tmp_path / "a.h5", "r") as f:
        lazy = open_array(f["X"])
        index = np.array([7, 2, 2, 19, 0, 8, 9, 10])
        np.testing.assert_array_equal(lazy.read(index), X[index])
        part = lazy[5:15][np.array([3, 1])]
        np.testing.assert_array_equal(np.asarray(part), X[[8, 6]])
        np.testing.assert_array_equal(lazy[np.arange(20) % 2 == 0].read(), X[::2])
        np.testing.assert_array_equal(lazy[3], X[3])
        # pickles as a reference to the file (for dask / joblib workers)
        clone = pickle.loads(pickle.dumps(lazy[np.array([4, 1])]))
        np.testing.assert_array_equal(clone.read(), X[[4, 1]])
        assert len(pickle.dumps(lazy)) < 1000


def test_memmap_rows_are_read_without_mapping(tmp_path):
    X = np.random.default_rng(0).standard_normal((50, 4, 5)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    lazy = open_array(tmp_path / "X.npy")
    assert type(lazy.source).__name__ == "_MemmapFile"
    np.testing.assert_array_equal(lazy.read(np.array([49, 0, 13])), X[[49, 0, 13]])
    np.testing.assert_array_equal(lazy[10:20].read(), X[10:20])
    assert len(pickle.dumps(lazy)) < 1000


def test_bad_values_are_found_by_chunks(data, tmp_path):
    X, y = data
    X = X.copy()
    X[450, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity.*sample 450"):
        check_finite_by_chunks(open_array(X))
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(ValueError, match="NaN or infinity"):
        _model().fit(np.load(tmp_path / "bad.npy", mmap_mode="r"), y)
    with pytest.raises(ValueError, match="key="):
        open_array(_h5(tmp_path))
    with pytest.raises(FileNotFoundError):
        open_array(tmp_path / "missing.h5", "X")
    with pytest.raises(ValueError, match="sample axis"):
        open_array(X).reshape(10, -1)


def _h5(tmp_path):
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f["X"] = np.zeros((2, 2))
    return path


def test_prefetch_iterator_matches_plain_batches_and_propagates_errors():
    lazy = LazyArray(np.arange(40.0)[:, None])
    dataset = StreamingDataset({"X": lazy}, torch.arange(40.0)[:, None])
    gen = torch.Generator().manual_seed(0)
    batches = [X["X"].ravel().tolist() for X, _ in
               StreamingBatchIterator(dataset, batch_size=8, shuffle=True, generator=gen)]
    gen = torch.Generator().manual_seed(0)
    plain = [X["X"].ravel().tolist() for X, _ in
             StreamingBatchIterator(dataset, batch_size=8, shuffle=True, generator=gen,
                                    prefetch=0)]
    assert batches == plain and sorted(sum(batches, [])) == list(range(40))
    # stopping early ends the reader thread
    iterator = iter(StreamingBatchIterator(dataset, batch_size=4))
    next(iterator)
    iterator.close()

    class Broken:
        shape, dtype = (40, 1), np.dtype("float64")

        def __getitem__(self, key):
            raise OSError("disk gone")

    broken = StreamingDataset({"X": LazyArray(Broken())}, torch.zeros(40, 1))
    with pytest.raises(OSError, match="disk gone"):
        list(StreamingBatchIterator(broken, batch_size=8))


@pytest.mark.parametrize(
    "processes", [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["threads", "processes"],
)
def test_grid_search_on_dask_reads_the_same_hdf5_store_from_every_worker(
    data, tmp_path, processes
):
    # worker processes reopen the file from the pickled LazyArray (file and
    # dataset name), threads share it
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    X, y = data
    with h5py.File(tmp_path / "stim.h5", "w") as f:
        f["X"] = X
    grid = {"channels": [2, 3]}
    serial = GridSearchCV(_model(max_epochs=1), grid, cv=KFold(2)).fit(X, y)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                 dashboard_address=None, silence_logs=40,
                                 **({"host": "127.0.0.1"} if processes else {})) as cluster,
        distributed.Client(cluster) as client,
        h5py.File(tmp_path / "stim.h5", "r") as f,
    ):
        lazy = open_array(f["X"])
        with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
            on_dask = GridSearchCV(_model(max_epochs=1), grid, cv=KFold(2), n_jobs=-1)
            on_dask.fit(lazy, y)
        workers = {task["worker"] for task in stream.data}
    assert len(workers) >= 1
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-4)


def test_gaussian_family_weights_and_restarts_stream_identically(data, tmp_path):
    X, y = data[0][:300], np.sqrt(data[1][:300])
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["X"] = X
    params = dict(family="gaussian", max_epochs=2, n_init=2)
    reference = _model(**params).fit(X, y, sample_weight=weights)
    with h5py.File(tmp_path / "g.h5", "r") as f:
        streamed = _model(**params).fit(f["X"], y, sample_weight=weights)
        # the dispersion is estimated from a streamed prediction pass
        np.testing.assert_array_equal(streamed.dispersion_, reference.dispersion_)
        np.testing.assert_array_equal(streamed.predict(f["X"]), reference.predict(X))


def test_compare_models_streams_every_fold_from_the_store(data):
    from sklearn_cnnenc.model_selection import compare_models

    X, y = data
    store = GuardedStore(X)
    results = compare_models({"cnn": _model(max_epochs=1)}, open_array(store), y, cv=KFold(2),
                             verbose=False)
    expected = compare_models({"cnn": _model(max_epochs=1)}, X, y, cv=KFold(2), verbose=False)
    assert store.rows_read > 0
    def scores(result):
        return [{k: v for k, v in row.items() if "time" not in k} for row in result.summary()]

    assert scores(results) == scores(expected)


class ChunkedStore(GuardedStore):
    """A guarded store that says it is stored in chunks of ``chunk`` rows, and logs reads."""

    def __init__(self, array, chunk, max_rows=MAX_ROWS):
        super().__init__(array, max_rows)
        self.chunks = (chunk, *array.shape[1:])
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(np.arange(len(self.array))[key if not isinstance(key, tuple)
                                                     else key[0]])
        return super().__getitem__(key)


def test_a_shuffled_pass_reads_each_chunk_once_window_by_window():
    from sklearn_cnnenc.data import chunk_shuffled_order

    X = np.arange(400.0).reshape(200, 2)
    store = ChunkedStore(X, chunk=10)
    lazy = open_array(store)
    assert lazy.chunk_length == 10 and lazy[50:].stored_positions([0]).tolist() == [50]
    dataset = StreamingDataset({"X": lazy}, torch.arange(200.0)[:, None])

    def one_pass(seed, **params):
        iterator = StreamingBatchIterator(dataset, batch_size=16, shuffle=True,
                                          generator=torch.Generator().manual_seed(seed),
                                          shuffle_window=40, **params)
        return [(X["X"][:, 0] / 2).long().tolist() for X, _ in iterator]

    batches = one_pass(0)
    order = sum(batches, [])
    assert sorted(order) == list(range(200))
    # every row read exactly once, in whole runs of chunks
    assert sum(len(rows) for rows in store.reads) == 200
    assert all(np.all(rows // 10 == rows[0] // 10) or len(rows) % 10 == 0
               for rows in store.reads)
    # each chunk's samples sit inside one window of 40 rows of the pass
    position = np.argsort(order)
    for chunk in range(20):
        where = position[chunk * 10:(chunk + 1) * 10]
        assert len(set(where // 40)) == 1
    # deterministic for a seed, the same with or without the reader thread, and shuffled
    assert one_pass(0, prefetch=0) == batches and one_pass(1) != batches
    assert order != sorted(order)
    # the batch targets follow the same order as the inputs
    for X, y in StreamingBatchIterator(dataset, batch_size=16, shuffle=True,
                                       generator=torch.Generator().manual_seed(0),
                                       shuffle_window=40):
        np.testing.assert_array_equal(X["X"][:, 0].numpy() / 2, y[:, 0].numpy())
    # the order function itself: windows of whole chunks
    ids = np.repeat(np.arange(6), 5)
    order, starts = chunk_shuffled_order(ids, 10, torch.Generator().manual_seed(3))
    assert starts.tolist() == [0, 10, 20, 30]
    assert all(len(set(ids[order[a:b]])) == 2 for a, b in zip(starts[:-1], starts[1:], strict=True))


def test_chunk_aware_fit_from_stores_equals_in_memory_fit_with_the_same_order(
    data, tmp_path, monkeypatch
):
    # windows of 100 rows over chunks of 16: the training part (270 rows) spans
    # several windows, so the order is chunk-aware, not a plain permutation;
    # the in-memory fit is given the same order
    from sklearn_cnnenc.data import chunk_shuffled_order
    from sklearn_cnnenc.training import TensorBatchIterator

    monkeypatch.setattr("sklearn_cnnenc.data._streaming._WINDOW_BYTES", 100 * 12 * 12 * 4)

    X, y = data[0][:300], data[1][:300]
    stores = _stores(X, tmp_path)
    streamed = {name: _model(max_epochs=2).fit(stores[name], y) for name in ("hdf5", "zarr")}

    def same_order(self, n_samples):
        index = self.dataset.indices
        stored = np.arange(n_samples) if index is None else index.cpu().numpy()
        assert n_samples > 100
        return torch.from_numpy(chunk_shuffled_order(stored // 16, 100, self.generator)[0])

    plain = _model(max_epochs=2).fit(X, y)
    monkeypatch.setattr(TensorBatchIterator, "_permutation", same_order)
    reference = _model(max_epochs=2).fit(X, y)
    assert reference.history_[:, "train_loss"] != plain.history_[:, "train_loss"]
    for name, model in streamed.items():
        np.testing.assert_array_equal(model.predict(X), reference.predict(X), err_msg=name)
        assert model.history_[:, "valid_loss"] == reference.history_[:, "valid_loss"]


def test_cli_fit_compare_and_predict_stream_an_h5_stimulus_set(data, tmp_path, monkeypatch):
    # the CLI opens the .h5 file itself: its X is wrapped in the guard, which
    # refuses any read of more than half the samples
    import sklearn_cnnenc.data
    from sklearn_cnnenc.cli import main

    X, y = data
    path = tmp_path / "stim.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = X, y
    guards = []

    def guarded_open(dataset, *args, **kwargs):
        guards.append(GuardedStore(dataset))
        return LazyArray(guards[-1])

    monkeypatch.setattr(sklearn_cnnenc.data, "open_array", guarded_open)
    params = ["--param", "channels=2", "--param", "max_epochs=1", "--param", "device='cpu'",
              "--param", "n_ensemble=1"]
    model = tmp_path / "cnn.joblib"
    assert main(["fit", "--data", str(path), "--model", "cnn", "--out", str(model),
                 *params]) == 0
    assert main(["predict", "--data", str(path), "--model", str(model),
                 "--out", str(tmp_path / "p.npz")]) == 0
    # one-value grids are settings: one small model per fold, as fit above
    assert main(["compare", "--data", str(path), "--models", "cnn", "--cv", "2",
                 "--device", "cpu", "--grid", "cnn:channels=2", "--grid", "cnn:max_epochs=1",
                 "--grid", "cnn:n_ensemble=1", "--out", str(tmp_path / "cmp")]) == 0
    assert len(guards) == 3 and all(guard.rows_read > 0 for guard in guards)
    predicted = np.load(tmp_path / "p.npz")["y_pred"]
    assert predicted.shape == y.shape and np.all(np.isfinite(predicted))


def test_grid_search_on_dask_reads_the_same_zarr_store_from_every_worker(data, tmp_path):
    distributed = pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    from joblib import parallel_config

    X, y = data
    store = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, dtype=X.dtype,
                              chunks=(16, *X.shape[1:]))
    store[:] = X
    grid = {"channels": [2, 3]}
    serial = GridSearchCV(_model(max_epochs=1), grid, cv=KFold(2)).fit(X, y)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                 dashboard_address=None, silence_logs=40) as cluster,
        distributed.Client(cluster) as client,
    ):
        lazy = open_array(tmp_path / "X.zarr")
        assert lazy.chunk_length == 16
        with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
            on_dask = GridSearchCV(_model(max_epochs=1), grid, cv=KFold(2), n_jobs=-1)
            on_dask.fit(lazy, y)
        assert {task["worker"] for task in stream.data}
    # each fold's training part (270 rows) is one shuffle window: the in-memory order
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-4)


_MEMORY_CHILD = """
import resource, sys
import numpy as np, h5py, torch
torch.set_num_threads(1)
import sklearn_cnnenc.data._lazy as lazy, sklearn_cnnenc.data._streaming as streaming
from sklearn_cnnenc import CNNEncoder

# reads of 4 MB (validation) and shuffle windows of 2 MB, for a 50 MB store
lazy._CHUNK_BYTES, streaming._WINDOW_BYTES = 4 * 2**20, 2 * 2**20
params = dict(n_layers=1, channels=2, kernel_size=5, max_epochs=1, batch_size=64, n_ensemble=1,
              device="cpu", random_state=0)
with h5py.File(sys.argv[1], "r") as f:
    X, y = f["X"], f["y"][:]
    # the same fit on 300 in-memory samples, and a prediction in one batch of
    # 256 (the evaluation batch size), load torch's kernels and buffers first
    CNNEncoder(**params).fit(X[:300], y[:300]).predict(X[:256])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    CNNEncoder(**params).fit(X, y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024)
"""


@pytest.mark.slow
def test_training_from_a_store_raises_peak_memory_far_less_than_the_store_size(tmp_path):
    # a 50 MB HDF5 store (3200 images of 64 x 64, chunks of 1 MB), trained on
    # in a fresh process: the peak resident memory grows by reads, windows,
    # batches and torch's buffers (about 28 MB here, the same with 1 or 4 MB
    # windows), not by the store
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        X = f.create_dataset("X", shape=(3200, 64, 64), dtype=np.float32,
                             chunks=(64, 64, 64))
        for start in range(0, 3200, 640):
            X[start:start + 640] = rng.standard_normal((640, 64, 64), dtype=np.float32)
        f["y"] = rng.poisson(1.0, (3200, 2)).astype(float)
    store_mb = 3200 * 64 * 64 * 4 / 2**20
    # one malloc arena: glibc's per-thread arenas (the prefetch thread's) keep
    # freed batch buffers resident for a while, which would blur the measure
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path)], capture_output=True,
                         text=True, check=True, env=env)
    increase_mb = float(out.stdout.strip().splitlines()[-1])
    assert increase_mb < 0.75 * store_mb, (increase_mb, store_mb)
