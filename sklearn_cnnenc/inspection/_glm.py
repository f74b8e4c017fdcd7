"""The GLM hidden in a model whose hidden nonlinearity is the identity."""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

__all__ = ["equivalent_glm"]


def equivalent_glm(model) -> Bunch:
    """The GLM filter and intercept of a fitted model that is a GLM in disguise.

    An :class:`~sklearn_cnnenc.LNModel` with ``nonlinearity="identity"``
    computes ``g^-1(b + sum_j h_j . x)``: a GLM with filter ``sum_j h_j``
    (its ``linear_filter_``), whatever the number of filters or their rank.
    A :class:`~sklearn_cnnenc.PoissonGLM` is returned as it is.

    Parameters
    ----------
    model : fitted PoissonGLM or LNModel

    Returns
    -------
    glm : Bunch
        ``coef`` (n_neurons, n_features), the flattened filter;
        ``filter`` (n_neurons, *input_shape); ``intercept`` (n_neurons,);
        ``link`` and ``family``, the model's. Predictions are
        ``link.inverse(X @ coef.T + intercept)``.

    Raises
    ------
    ValueError
        If the model has a hidden nonlinearity other than the identity (it
        is then not a GLM of its input).

    Examples
    --------
    >>> from sklearn_cnnenc import LNModel
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> from sklearn_cnnenc.inspection import equivalent_glm
    >>> data = make_glm_data(n_samples=1000, n_features=6, random_state=0)
    >>> model = LNModel(n_filters=2, nonlinearity="identity").fit(data.X, data.y)
    >>> equivalent_glm(model).coef.shape
    (1, 6)
    """
    check_is_fitted(model)
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        coef = np.atleast_2d(model.coef_)
        return Bunch(
            coef=coef,
            filter=coef,
            intercept=np.atleast_1d(np.asarray(model.intercept_, dtype=float)),
            link=model.link_,
            family=model.family_,
        )
    nonlinearity = getattr(model, "nonlinearity", None)
    if not hasattr(model, "linear_filter_"):
        raise ValueError(
            f"{type(model).__name__} with nonlinearity={nonlinearity!r} is not a GLM of its "
            "input; only the identity nonlinearity has a GLM-equivalent filter."
        )
    filters = model.linear_filter_
    return Bunch(
        coef=filters.reshape(len(filters), -1),
        filter=filters,
        intercept=np.asarray(model.intercept_, dtype=float),
        link=model.link_,
        family=model.family_,
    )
