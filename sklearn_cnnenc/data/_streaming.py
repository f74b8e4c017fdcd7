"""Streaming mini-batches from lazy arrays: a dataset and a prefetching iterator."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from ..training import TensorBatchIterator, TensorDataset
from ._lazy import LazyArray

__all__ = ["StreamingDataset", "StreamingBatchIterator", "make_dataset"]


def _to_device(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    if value.device == device:
        return value
    if device.type == "cuda" and value.device.type == "cpu":
        # page-locked memory lets the copy run asynchronously to the GPU's work
        return value.pin_memory().to(device, non_blocking=True)
    return value.to(device)


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

    def take_stored(self, index):
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        positions = index if isinstance(index, slice) else torch.as_tensor(index)

        def take(value):
            if isinstance(value, LazyArray):
                rows = torch.from_numpy(np.ascontiguousarray(value.read(index)))
                return _to_device(rows.to(self.dtype), self.target_device)
            where = positions if isinstance(positions, slice) else positions.to(value.device)
            return _to_device(value[where], self.target_device)

        X = {key: take(value) for key, value in self._X.items()}
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

    Parameters
    ----------
    dataset : TensorDataset or StreamingDataset
    batch_size : int, default=128
    shuffle : bool, default=False
    generator : torch.Generator, optional
    prefetch : int, default=2
        Batches read ahead (0 reads in the calling thread).

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
    ) -> None:
        super().__init__(dataset, batch_size, shuffle, generator)
        self.prefetch = prefetch

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
