"""scikit-learn plumbing shared by decoding, metrics and model selection."""

from __future__ import annotations

from sklearn.pipeline import Pipeline

__all__ = ["final_step", "fitted_model"]


def final_step(estimator):
    """The last step of a (possibly nested) pipeline, else the estimator itself.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.utils import final_step
    >>> type(final_step(make_pipeline(StandardScaler(), PoissonGLM()))).__name__
    'PoissonGLM'
    """
    while isinstance(estimator, Pipeline):
        estimator = estimator[-1]
    return estimator


def fitted_model(estimator):
    """The fitted model inside a search object (its refitted best estimator).

    Examples
    --------
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.utils import fitted_model
    >>> model = PoissonGLM()
    >>> fitted_model(model) is model
    True
    """
    return getattr(estimator, "best_estimator_", estimator)
