"""Stimulus sets larger than memory: lazy arrays on disk and streaming mini-batches.

:func:`open_array` wraps an ``np.memmap`` (or ``.npy`` file), an
``h5py.Dataset`` or a zarr array as a :class:`LazyArray`, which reads only
the rows asked for. :class:`~sklearn_cnnenc.CNNEncoder` streams from such
arrays (and from raw memmaps, HDF5 datasets and zarr arrays) in ``fit``,
``predict`` and ``score``: validation reads the data chunk by chunk, the
validation split and cross-validation folds are index lists into the store,
and a background thread reads the next mini-batches (pinned memory and
non-blocking copies on a GPU) while the model trains.
"""

from ._lazy import LazyArray, check_finite_by_chunks, is_lazy, open_array
from ._streaming import (
    StreamingBatchIterator,
    StreamingDataset,
    chunk_shuffled_order,
    make_dataset,
)

__all__ = [
    "LazyArray",
    "StreamingBatchIterator",
    "StreamingDataset",
    "check_finite_by_chunks",
    "chunk_shuffled_order",
    "is_lazy",
    "make_dataset",
    "open_array",
]
