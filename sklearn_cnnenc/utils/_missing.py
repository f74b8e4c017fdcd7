"""Missing responses (NaN in a response matrix): neurons grouped by what they observed."""

from __future__ import annotations

import numpy as np

__all__ = ["observation_groups"]


def observation_groups(observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Columns grouped by their pattern of observed rows: ``[(rows, columns), ...]``.

    ``rows`` is a boolean mask of the samples, ``columns`` the indices of the
    neurons observed exactly there. Neurons of one session share a pattern,
    so there are about as many groups as sessions (at most one per neuron).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.utils._missing import observation_groups
    >>> observed = np.array([[True, True, False], [False, False, True]])
    >>> [(rows.tolist(), columns.tolist()) for rows, columns in observation_groups(observed)]
    [([False, True], [2]), ([True, False], [0, 1])]
    """
    packed = np.packbits(observed, axis=0).T
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(first)))[:-1]
    return [
        (observed[:, columns[0]], columns) for columns in np.split(order, bounds)
    ]
