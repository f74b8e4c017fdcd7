"""Lazy, row-indexable views of arrays on disk (memmap, HDF5, zarr)."""

from __future__ import annotations

import mmap
import os
from numbers import Integral
from pathlib import Path

import numpy as np

__all__ = ["LazyArray", "open_array", "is_lazy", "check_finite_by_chunks"]

# rows read per chunk when a whole array is scanned (validation, prediction)
_CHUNK_BYTES = 32 * 2**20


def _is_h5py_dataset(obj) -> bool:
    module = type(obj).__module__
    return module.startswith("h5py") and type(obj).__name__ == "Dataset"


def _is_zarr_array(obj) -> bool:
    return type(obj).__module__.startswith("zarr") and type(obj).__name__ == "Array"


def is_lazy(X) -> bool:
    """Whether ``X`` is an array that :class:`~sklearn_cnnenc.CNNEncoder` streams from disk.

    True for :class:`LazyArray`, ``np.memmap``, ``h5py.Dataset`` and zarr
    arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.data import is_lazy
    >>> is_lazy(np.zeros(3))
    False
    """
    return (
        isinstance(X, LazyArray | np.memmap) or _is_h5py_dataset(X) or _is_zarr_array(X)
    )


class _MemmapFile:
    """Rows of a C-ordered ``.npy``/raw file read with ``pread``, never mapped.

    Mapping the file would make every page read count as resident memory of
    this process until the kernel evicts it; plain reads into a batch buffer
    keep the resident set at one batch.
    """

    def __init__(self, filename, dtype, shape, offset: int) -> None:
        self.filename = str(filename)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.offset = int(offset)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.filename, os.O_RDONLY)
        return self._fd

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        position, done = self.offset + start * self._row_bytes, 0
        while done < len(view):
            n = os.preadv(self._file(), [view[done:]], position + done)
            if n <= 0:
                raise OSError(f"Unexpected end of file in {self.filename}.")
            done += n
        return out

    def __getstate__(self):
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


class _H5Reopen:
    """Pickles an h5py dataset as (file name, dataset name) and reopens it read-only."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __getstate__(self):
        return {"filename": self.dataset.file.filename, "name": self.dataset.name}

    def __setstate__(self, state) -> None:
        import h5py

        self.dataset = h5py.File(state["filename"], "r")[state["name"]]


class LazyArray:
    """A row-indexable view of an array on disk that reads only what is asked.

    Wraps an ``np.memmap``, an ``h5py.Dataset``, a zarr array or any object
    with ``shape``, ``dtype`` and ``__getitem__``. Indexing the first axis
    with a slice, an integer array or a boolean mask gives another
    ``LazyArray`` (nothing is read: this is how validation splits and
    cross-validation folds index the store without copying it); :meth:`read`
    returns rows as an in-memory array, reading sorted and de-duplicated
    positions in contiguous runs (HDF5 and zarr need increasing indices) and
    restoring the requested order.

    A ``LazyArray`` pickles as a reference to its file (HDF5 by file and
    dataset name, memmaps by file, offset and shape), so that dask or joblib
    workers reopen the same store instead of receiving a copy.

    Parameters
    ----------
    source : np.memmap, h5py.Dataset, zarr array or array-like
    rows : ndarray of int, optional
        Positions of this view's rows in ``source`` (all rows if None).
    dtype : numpy dtype, optional
        Rows are converted to this type when read (default: the source's).
    sample_shape : tuple of int, optional
        Shape each row is given when read (same number of values).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.data import LazyArray
    >>> X = LazyArray(np.arange(20.0).reshape(10, 2))
    >>> part = X[np.array([7, 2])]
    >>> part.shape, part.read().tolist()
    ((2, 2), [[14.0, 15.0], [4.0, 5.0]])
    """

    def __init__(self, source, rows=None, *, dtype=None, sample_shape=None) -> None:
        if isinstance(source, LazyArray):
            if rows is None:
                rows = source.rows
            elif source.rows is not None:
                rows = source.rows[rows]
            dtype = source.dtype if dtype is None else dtype
            sample_shape = source.sample_shape if sample_shape is None else sample_shape
            source = source.source
        if (
            isinstance(source, np.memmap)
            and isinstance(source.base, mmap.mmap)  # the mapping itself, not a view of it
            and source.flags.c_contiguous
            and source.filename
        ):
            offset = getattr(source, "offset", 0)
            base = source
            # a memmap opened by np.load or np.memmap knows its file and offset
            source = _MemmapFile(base.filename, base.dtype, base.shape, offset)
        elif _is_h5py_dataset(source):
            source = _H5Reopen(source)
        self._source = source
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        shape = self._stored.shape
        n_rows = shape[0] if self.rows is None else len(self.rows)
        self.sample_shape = tuple(shape[1:]) if sample_shape is None else tuple(sample_shape)
        if int(np.prod(self.sample_shape)) != int(np.prod(shape[1:])):
            raise ValueError(
                f"sample_shape {self.sample_shape} does not hold the {int(np.prod(shape[1:]))} "
                "values of a stored row."
            )
        self.dtype = np.dtype(self._stored.dtype if dtype is None else dtype)
        self.shape = (int(n_rows), *self.sample_shape)

    # ------------------------------------------------------------ basics
    @property
    def source(self):
        """The wrapped store (memmaps are wrapped in a file reader)."""
        return self._source

    @property
    def _stored(self):
        return self._source.dataset if isinstance(self._source, _H5Reopen) else self._source

    @property
    def chunk_length(self) -> int | None:
        """Rows per storage chunk of a chunked HDF5 dataset or zarr array, else None.

        A chunk is the unit a store reads (and decompresses): the streaming
        order (:class:`~sklearn_cnnenc.data.StreamingBatchIterator`) visits
        chunks, not single rows, so that each is read once per epoch.
        """
        chunks = getattr(self._stored, "chunks", None)
        if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], Integral):
            return int(chunks[0])
        return None

    def stored_positions(self, index=None) -> np.ndarray:
        """Positions in the store of this view's rows ``index`` (all if None).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_cnnenc.data import LazyArray
        >>> LazyArray(np.zeros((10, 2)))[5:].stored_positions([0, 2]).tolist()
        [5, 7]
        """
        return self._positions(index)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype={self.dtype}, source={type(self._stored)})"

    def astype(self, dtype) -> LazyArray:
        """A view whose rows are converted to ``dtype`` when read."""
        return LazyArray(self, dtype=dtype)

    def reshape_samples(self, sample_shape) -> LazyArray:
        """A view whose rows are reshaped to ``sample_shape`` when read."""
        return LazyArray(self, sample_shape=tuple(sample_shape))

    def reshape(self, *shape) -> LazyArray:
        """A view with the same samples reshaped: ``shape[0]`` must be ``len(self)`` (or -1)."""
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        if shape[0] not in (-1, len(self)):
            raise ValueError("A LazyArray reshapes its samples only, not the sample axis.")
        sample = [int(s) for s in shape[1:]]
        if sample.count(-1) == 1:
            known = int(np.prod([s for s in sample if s != -1]))
            sample[sample.index(-1)] = int(np.prod(self.sample_shape)) // max(known, 1)
        return self.reshape_samples(tuple(sample))

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], tuple(k for k in key[1:] if k is not Ellipsis)
        if isinstance(key, Integral):
            row = self.read(np.array([key]))[0]
            return row[rest] if rest else row
        if isinstance(key, slice):
            rows = np.arange(len(self))[key]
        else:
            key = np.asarray(key)
            if key.dtype == bool:
                if key.shape != (len(self),):
                    raise IndexError(f"A boolean mask must have shape ({len(self)},).")
                rows = np.flatnonzero(key)
            elif np.issubdtype(key.dtype, np.integer):
                rows = key.astype(np.int64)
                rows = np.where(rows < 0, rows + len(self), rows)
                if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
                    raise IndexError(f"Row index out of range for {len(self)} rows.")
            else:
                raise IndexError(f"Cannot index rows with an array of dtype {key.dtype}.")
        view = LazyArray(self, rows)
        if rest:
            # indexing within samples needs the values: read the selected rows
            return view.read()[(slice(None), *rest)]
        return view

    def __array__(self, dtype=None, copy=None):
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)

    # ------------------------------------------------------------ reading
    def _positions(self, index) -> np.ndarray:
        """Positions in the store of this view's rows ``index`` (all if None)."""
        if index is None:
            index = np.arange(len(self))
        index = np.asarray(index, dtype=np.int64)
        return index if self.rows is None else self.rows[index]

    def _read_run(self, start: int, stop: int) -> np.ndarray:
        source = self._source
        if isinstance(source, _MemmapFile):
            return source.read_rows(start, stop)
        return np.asarray(self._stored[start:stop])

    def _read_sorted(self, positions: np.ndarray) -> np.ndarray:
        """Rows at increasing, unique ``positions``, in contiguous runs."""
        if len(positions) == 0:
            return np.empty((0, *self._stored.shape[1:]), dtype=self._stored.dtype)
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(positions)]])
        span = int(positions[-1] - positions[0] + 1)
        if len(starts) == 1:
            return self._read_run(int(positions[0]), int(positions[-1]) + 1)
        if _is_zarr_array(self._stored):
            # zarr groups the positions by chunk itself, in one call
            return np.asarray(self._stored.oindex[positions])
        chunk = self.chunk_length
        if chunk is not None:
            # a chunked store reads (and decompresses) whole chunks: read each
            # group of consecutive chunks holding wanted rows in one call,
            # never a chunk holding none
            ids = positions // chunk
            breaks = np.flatnonzero(np.diff(ids) > 1) + 1
            starts = np.concatenate([[0], breaks])
            stops = np.concatenate([breaks, [len(positions)]])
            out = np.empty((len(positions), *self._stored.shape[1:]), dtype=self._stored.dtype)
            for a, b in zip(starts, stops, strict=True):
                first = int(positions[a])
                block = self._read_run(first, int(positions[b - 1]) + 1)
                out[a:b] = block[positions[a:b] - first]
            return out
        if span <= 2 * len(positions) and span <= self.chunk_rows():
            # dense enough (and not too long): one read of the span is cheaper
            # than many small ones
            block = self._read_run(int(positions[0]), int(positions[-1]) + 1)
            return block[positions - positions[0]]
        out = np.empty((len(positions), *self._stored.shape[1:]), dtype=self._stored.dtype)
        for a, b in zip(starts, stops, strict=True):
            out[a:b] = self._read_run(int(positions[a]), int(positions[b - 1]) + 1)
        return out

    def read(self, index=None) -> np.ndarray:
        """Rows ``index`` of this view (all if None) as an in-memory array.

        Parameters
        ----------
        index : array of int or slice, optional
            Positions within this view, in any order (repeats allowed).

        Returns
        -------
        rows : ndarray of shape (len(index), *sample_shape)
        """
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        positions = self._positions(index)
        if len(positions) > 1 and np.all(np.diff(positions) == 1):
            rows = self._read_run(int(positions[0]), int(positions[-1]) + 1)
        else:
            unique, inverse = np.unique(positions, return_inverse=True)
            rows = self._read_sorted(unique)
            if len(unique) != len(positions) or np.any(unique != positions):
                rows = rows[inverse]
        rows = rows.reshape(len(positions), *self.sample_shape)
        return rows.astype(self.dtype, copy=False)

    def chunk_rows(self, max_bytes: int | None = None) -> int:
        """Rows per chunk so that one chunk holds about ``max_bytes`` (32 MB) as float64."""
        max_bytes = _CHUNK_BYTES if max_bytes is None else max_bytes
        row_bytes = max(1, int(np.prod(self.sample_shape, dtype=np.int64)) * 8)
        return max(1, max_bytes // row_bytes)

    def iter_chunks(self, chunk_rows: int | None = None):
        """Yield ``(start, stop, rows)`` over this view in order, ``chunk_rows`` at a time."""
        step = self.chunk_rows() if chunk_rows is None else int(chunk_rows)
        for start in range(0, len(self), step):
            stop = min(start + step, len(self))
            yield start, stop, self.read(slice(start, stop))


def check_finite_by_chunks(X: LazyArray, name: str = "X") -> None:
    """Raise ``ValueError`` if ``X`` holds NaN or infinity, reading it chunk by chunk.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.data import LazyArray, check_finite_by_chunks
    >>> check_finite_by_chunks(LazyArray(np.ones((4, 2))))
    """
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name} must hold numbers; got dtype {X.dtype}.")
    for start, _, rows in X.iter_chunks():
        bad = ~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)
        if bad.any():
            raise ValueError(
                f"Input {name} contains NaN or infinity (first at sample "
                f"{start + int(np.argmax(bad))})."
            )


def open_array(path_or_array, key: str | None = None, *, dtype=None) -> LazyArray:
    """Open an array on disk (or wrap one) as a :class:`LazyArray`, reading nothing.

    Parameters
    ----------
    path_or_array : str, Path, np.memmap, h5py.Dataset, zarr array or LazyArray
        A path to a ``.npy`` file (memory-mapped read-only), an HDF5 file
        (``.h5``, ``.hdf5``; needs ``key``) or a zarr store (``.zarr``; a
        group needs ``key``), or an array object to wrap.
    key : str, optional
        Dataset name inside an HDF5 file or zarr group.
    dtype : numpy dtype, optional
        Convert rows to this type when they are read.

    Returns
    -------
    array : LazyArray

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_cnnenc.data import open_array
    >>> path = os.path.join(tempfile.mkdtemp(), "X.npy")
    >>> np.save(path, np.zeros((100, 8, 8), dtype=np.float32))
    >>> open_array(path).shape
    (100, 8, 8)
    """
    obj = path_or_array
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"No such file or store: {path}")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            obj = np.load(path, mmap_mode="r")
        elif suffix in (".h5", ".hdf5", ".hdf"):
            import h5py

            if key is None:
                raise ValueError(f"Name the dataset inside {path.name} with key=...")
            obj = h5py.File(path, "r")[key]
        elif suffix == ".zarr" or path.is_dir():
            import zarr

            obj = zarr.open(str(path), mode="r")
            if key is not None:
                obj = obj[key]
            elif not hasattr(obj, "shape"):
                raise ValueError(f"{path.name} is a zarr group; name the array with key=...")
        else:
            raise ValueError(
                f"Cannot open {path.name}: use a .npy, .h5/.hdf5 or .zarr store."
            )
    if not (hasattr(obj, "shape") and hasattr(obj, "dtype") and hasattr(obj, "__getitem__")):
        raise TypeError(
            f"open_array needs an array-like with shape, dtype and indexing; got {type(obj)}."
        )
    if len(obj.shape) < 1:
        raise ValueError("open_array needs an array with at least one axis (samples).")
    return LazyArray(obj, dtype=dtype)
