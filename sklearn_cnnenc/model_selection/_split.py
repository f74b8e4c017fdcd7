"""Contiguous-block cross-validation that drops bins around every boundary."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import _num_samples

__all__ = ["BlockedKFold"]


class BlockedKFold(BaseCrossValidator):
    """K-fold cross-validation over contiguous blocks of time, with a gap.

    The samples (time bins, in recording order) are cut into ``n_splits``
    contiguous blocks of nearly equal size (those of an unshuffled
    ``KFold``); each block is the test set once.
    The ``gap`` bins on either side of the test block are left out of the
    training set, so that no training row shares a lag window with a test
    row: with ``gap >= n_lags`` (the longest lag of a
    :class:`~sklearn_cnnenc.preprocessing.TimeLagger`), lagged stimulus or
    spike-history features of the training set never contain test bins and
    vice versa. Nothing is shuffled.

    Compared with ``sklearn.model_selection.TimeSeriesSplit(gap=...)``, which
    trains on the past only, every bin is tested once and the training sets
    are larger; use ``TimeSeriesSplit`` when the model must forecast.

    Parameters
    ----------
    n_splits : int, default=5
        Number of blocks (folds), at least 2.
    gap : int, default=0
        Bins dropped from training on each side of the test block.

    See Also
    --------
    sklearn.model_selection.TimeSeriesSplit : forward-chaining splits.
    sklearn.model_selection.GroupKFold : whole trials as groups.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.model_selection import BlockedKFold
    >>> for train, test in BlockedKFold(n_splits=3, gap=1).split(np.zeros(9)):
    ...     print(train, test)
    [4 5 6 7 8] [0 1 2]
    [0 1 7 8] [3 4 5]
    [0 1 2 3 4] [6 7 8]
    """

    @validate_params(
        {"n_splits": [Interval(Integral, 2, None, closed="left")],
         "gap": [Interval(Integral, 0, None, closed="left")]},
        prefer_skip_nested_validation=True,
    )
    def __init__(self, n_splits: int = 5, *, gap: int = 0) -> None:
        self.n_splits = n_splits
        self.gap = gap

    def split(self, X, y=None, groups=None):
        """Generate indices of the training and test sets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in time order.
        y : array-like, optional
            Ignored.
        groups : array-like, optional
            Ignored.

        Yields
        ------
        train : ndarray
            Training indices (all bins farther than ``gap`` from the test block).
        test : ndarray
            Indices of one contiguous block.
        """
        n_samples = _num_samples(X)
        if self.n_splits > n_samples:
            raise ValueError(
                f"Cannot have n_splits={self.n_splits} greater than the number of "
                f"samples n_samples={n_samples}."
            )
        indices = np.arange(n_samples)
        # KFold's fold sizes: the first n_samples % n_splits blocks get one more
        sizes = np.full(self.n_splits, n_samples // self.n_splits)
        sizes[: n_samples % self.n_splits] += 1
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            keep = (indices < start - self.gap) | (indices >= stop + self.gap)
            train = indices[keep]
            if len(train) == 0:
                raise ValueError(
                    f"gap={self.gap} leaves no training samples for the test block "
                    f"[{start}, {stop}) of {n_samples} samples; use a smaller gap or "
                    "fewer splits."
                )
            yield train, indices[start:stop]

    def _iter_test_indices(self, X=None, y=None, groups=None):
        for _, test in self.split(X, y, groups):
            yield test

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of splits.

        Parameters
        ----------
        X, y, groups : ignored

        Returns
        -------
        n_splits : int
        """
        return self.n_splits
