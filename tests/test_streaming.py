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


def _model(**params):
    settings = dict(channels=3, kernel_size=(5, 3), max_epochs=3, batch_size=64,
                    device="cpu", random_state=0)
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


def test_fits_from_memmap_hdf5_and_zarr_equal_the_in_memory_fit(data, tmp_path):
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


def test_video_fit_streams_and_equals_in_memory(tmp_path):
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
    # fit: validation by chunks + 3 epochs; predict and score: validation + one pass each
    assert store.rows_read <= N_SAMPLES * (1 + 3 + 2 * 2)
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
