"""Streaming mini-batches from lazy arrays: a dataset and a prefetching iterator."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from ..training import TensorBatchIterator, TensorDataset
from ._lazy import LazyArray

__all__ = ["StreamingDataset", "StreamingBatchIterator", "chunk_shuffled_order", "make_dataset"]

# a shuffled pass reads windows of about this many bytes (as float32 rows)
_WINDOW_BYTES = 8 * 2**20
# rows of a contiguous store (memmap, unchunked HDF5) are visited in blocks of this size
_BLOCK_BYTES = 2**20


def _to_device(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    if value.device == device:
        return value
    if device.type == "cuda" and value.device.type == "cpu":
        # page-locked memory lets the copy run asynchronously to the GPU's work
        return value.pin_memory().to(device, non_blocking=True)
    return value.to(device)


def chunk_shuffled_order(
    chunk_ids, window_rows: int, generator: torch.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A shuffled order that visits storage chunks window by window.

    The chunks are put in random order and grouped, in that order, into
    windows of about ``window_rows`` samples (whole chunks); the samples of
    a window are shuffled together (a shuffle buffer). A pass in this order
    reads every chunk once, one window at a time, instead of touching most
    chunks in every random mini-batch. Deterministic for a given generator
    state (two ``torch.randperm`` draws).

    Parameters
    ----------
    chunk_ids : array of int of shape (n_samples,)
        The storage chunk of each sample.
    window_rows : int
        Samples per window (at least one chunk).
    generator : torch.Generator, optional

    Returns
    -------
    order : ndarray of int64 of shape (n_samples,)
        A permutation of ``range(n_samples)``.
    window_starts : ndarray of int64 of shape (n_windows + 1,)
        Where each window starts in ``order`` (and the end, ``n_samples``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_cnnenc.data import chunk_shuffled_order
    >>> generator = torch.Generator().manual_seed(0)
    >>> order, starts = chunk_shuffled_order(np.arange(12) // 3, 6, generator)
    >>> sorted(order.tolist()) == list(range(12)), starts.tolist()
    (True, [0, 6, 12])
    """
    chunk_ids = np.asarray(chunk_ids)
    n_samples = len(chunk_ids)
    _, inverse, counts = np.unique(chunk_ids, return_inverse=True, return_counts=True)
    # rank[c]: place of chunk c in the shuffled chunk order
    rank = torch.randperm(len(counts), generator=generator).numpy()
    shuffled_counts = np.empty_like(counts)
    shuffled_counts[rank] = counts
    first_row = np.cumsum(shuffled_counts) - shuffled_counts
    window_of_rank = first_row // max(int(window_rows), 1)
    _, window_of_rank = np.unique(window_of_rank, return_inverse=True)  # 0, 1, 2, ...
    sample_window = window_of_rank[rank[inverse]]
    keys = torch.randperm(n_samples, generator=generator).numpy()
    order = np.lexsort((keys, sample_window)).astype(np.int64)
    sizes = np.bincount(sample_window)
    return order, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class StreamingDataset(TensorDataset):
    """A :class:`~sklearn_cnnenc.training.TensorDataset` whose inputs may live on disk.

    Entries of ``X`` that are :class:`LazyArray` are read batch by batch
    (sorted contiguous runs, see :meth:`LazyArray.read`); the others (sample
    weights, offsets, responses) are small tensors held in memory. Subsets
    (validation splits) are index lists into the same store, never copies.
    Every batch is moved to ``device``, through pinned memory and
    non-blocking copies on CUDA.

    Parameters
    ----------
    X : dict of str to LazyArray or tensor
    y : tensor or None
    indices : tensor of int64, optional
        Positions of this dataset's samples in the stored arrays.
    device : str or torch.device, default="cpu"
        Where batches go.
    dtype : torch.dtype, default=torch.float32
        Type of the tensors made from lazy arrays.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_cnnenc.data import LazyArray, StreamingDataset
    >>> data = StreamingDataset({"X": LazyArray(np.arange(10.0)[:, None])}, torch.zeros(10, 1))
    >>> train, valid = data.subset(slice(0, 8)), data.subset(slice(8, None))
    >>> valid.take(slice(None))[0]["X"].ravel().tolist()
    [8.0, 9.0]
    """

    def __init__(
        self,
        X: Mapping,
        y=None,
        indices: torch.Tensor | None = None,
        *,
        device="cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(X, y, indices)
        self.target_device = torch.device(device)
        self.dtype = dtype

    @property
    def device(self) -> torch.device:
        # where the sample indices live (the CPU: the store is read from there)
        return torch.device("cpu")

    @property
    def lazy_keys(self) -> list[str]:
        """Names of the inputs read from disk."""
        return [key for key, value in self._X.items() if isinstance(value, LazyArray)]

    def read_lazy(self, index) -> dict[str, np.ndarray]:
        """The rows at stored positions ``index`` of every input on disk, in memory."""
        return {key: self._X[key].read(index) for key in self.lazy_keys}

    def take_stored(self, index, rows: Mapping | None = None):
        """Batch at stored positions ``index``; ``rows`` holds inputs already read."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        positions = index if isinstance(index, slice) else torch.as_tensor(index)

        def take(value, read=None):
            if isinstance(value, LazyArray):
                read = value.read(index) if read is None else read
                rows = torch.from_numpy(np.ascontiguousarray(read))
                return _to_device(rows.to(self.dtype), self.target_device)
            where = positions if isinstance(positions, slice) else positions.to(value.device)
            return _to_device(value[where], self.target_device)

        rows = {} if rows is None else rows
        X = {key: take(value, rows.get(key)) for key, value in self._X.items()}
        return X, (None if self._y is None else take(self._y))

    def subset(self, index) -> StreamingDataset:
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index).cpu()
        if self.indices is not None:
            index = self.indices[index]
        return StreamingDataset(
            self._X, self._y, indices=index, device=self.target_device, dtype=self.dtype
        )


class StreamingBatchIterator(TensorBatchIterator):
    """:class:`~sklearn_cnnenc.training.TensorBatchIterator` reading ahead in a thread.

    A background thread reads the next ``prefetch`` batches (from disk, and
    onto the GPU through pinned memory) while the model trains on the
    current one; HDF5, zarr and file reads release the GIL.

    A shuffled pass over a store is chunk-aware (see
    :func:`chunk_shuffled_order`): storage chunks (HDF5/zarr chunks, or
    blocks of about 1 MB of consecutive rows of a contiguous store) are
    visited in random order, grouped into windows of about
    ``shuffle_window`` samples, and the samples of each window are shuffled
    together. Each window is read once, in sorted runs, so each chunk is
    read and decompressed once per epoch. When the whole pass fits one
    window, the order is the plain random permutation of
    :class:`~sklearn_cnnenc.training.TensorBatchIterator` (the same as for
    data in memory with the same generator).

    Parameters
    ----------
    dataset : TensorDataset or StreamingDataset
    batch_size : int, default=128
    shuffle : bool, default=False
    generator : torch.Generator, optional
    prefetch : int, default=2
        Batches read ahead (0 reads in the calling thread).
    shuffle_window : int, optional
        Samples per window of a shuffled pass (default: about 8 MB of
        float32 rows, and at least one batch and one chunk).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_cnnenc.data import LazyArray, StreamingBatchIterator, StreamingDataset
    >>> data = StreamingDataset({"X": LazyArray(np.arange(10.0)[:, None])}, torch.zeros(10, 1))
    >>> [len(y) for X, y in StreamingBatchIterator(data, batch_size=4)]
    [4, 4, 2]
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int = 128,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        prefetch: int = 2,
        shuffle_window: int | None = None,
    ) -> None:
        super().__init__(dataset, batch_size, shuffle, generator)
        self.prefetch = prefetch
        self.shuffle_window = shuffle_window

    def _chunked(self) -> bool:
        return (
            self.shuffle
            and len(self) > 1
            and isinstance(self.dataset, StreamingDataset)
            and bool(self.dataset.lazy_keys)
        )

    def window_order(self) -> tuple[np.ndarray, np.ndarray]:
        """One shuffled pass: positions in the dataset, and where each window starts.

        Draws from ``generator``; see :func:`chunk_shuffled_order`.
        """
        dataset = self.dataset
        n_samples = len(dataset)
        lazy = dataset._X[dataset.lazy_keys[0]]
        row_bytes = int(np.prod(lazy.sample_shape, dtype=np.int64)) * dataset.dtype.itemsize
        block = lazy.chunk_length or max(1, _BLOCK_BYTES // max(row_bytes, 1))
        window = self.shuffle_window
        if window is None:
            window = _WINDOW_BYTES // max(row_bytes, 1)
        window = max(int(window), self.batch_size, block)
        if n_samples <= window:
            order = self._permutation(n_samples).numpy().astype(np.int64)
            return order, np.array([0, n_samples], dtype=np.int64)
        index = None if dataset.indices is None else dataset.indices.numpy()
        stored = lazy.stored_positions(index)
        return chunk_shuffled_order(stored // block, window, self.generator)

    def _batches(self) -> Iterator:
        if not self._chunked():
            yield from super()._batches()
            return
        dataset = self.dataset
        order, starts = self.window_order()
        stored = order if dataset.indices is None else dataset.indices.numpy()[order]
        bounds = self._bounds()
        windows: dict[int, dict] = {}  # window number -> its rows, in pass order
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            first = int(np.searchsorted(starts, start, side="right")) - 1
            last = int(np.searchsorted(starts, stop - 1, side="right")) - 1
            for done in [w for w in windows if w < first]:
                del windows[done]
            parts = []
            for w in range(first, last + 1):
                if w not in windows:
                    # one sorted read of the whole window: each chunk once
                    windows[w] = dataset.read_lazy(stored[starts[w]:starts[w + 1]])
                a, b = max(start, starts[w]) - starts[w], min(stop, starts[w + 1]) - starts[w]
                parts.append({key: rows[a:b] for key, rows in windows[w].items()})
            rows = parts[0] if len(parts) == 1 else {
                key: np.concatenate([part[key] for part in parts]) for key in parts[0]
            }
            yield dataset.take_stored(torch.from_numpy(stored[start:stop]), rows=rows)

    def __iter__(self) -> Iterator:
        if self.prefetch < 1 or len(self) < 2:
            yield from super().__iter__()
            return
        batches: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for batch in TensorBatchIterator.__iter__(self):
                    while not stop.is_set():
                        try:
                            batches.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                batches.put(done)
            except BaseException as error:  # handed to the consumer
                batches.put(error)

        worker = threading.Thread(target=produce, name="cnnenc-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = batches.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()


def make_dataset(inputs: dict, targets, device, dtype=torch.float32) -> TensorDataset:
    """A :class:`StreamingDataset` if an input is a :class:`LazyArray`, else a TensorDataset.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cnnenc.data import make_dataset
    >>> type(make_dataset({"X": torch.zeros(3, 2)}, torch.zeros(3, 1), "cpu")).__name__
    'TensorDataset'
    """
    if any(isinstance(value, LazyArray) for value in inputs.values()):
        return StreamingDataset(inputs, targets, device=device, dtype=dtype)
    return TensorDataset(inputs, targets)
