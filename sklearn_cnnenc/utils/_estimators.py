"""scikit-learn plumbing shared by decoding, metrics and model selection."""

from __future__ import annotations

import inspect

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

    A pipeline whose last step is a search becomes the same pipeline with
    that step replaced by the search's best estimator (the fitted earlier
    steps are kept), so that ``predict`` can pass per-sample covariates to
    the model, which a search's own ``predict`` does not take.

    Examples
    --------
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.utils import fitted_model
    >>> model = PoissonGLM()
    >>> fitted_model(model) is model
    True
    """
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        model = fitted_model(last)
        if model is last:
            return estimator
        return Pipeline([*estimator.steps[:-1], (name, model)], memory=estimator.memory)
    return getattr(estimator, "best_estimator_", estimator)


def search_inside(estimator):
    """The search object at the end of (possibly nested) pipelines, or None.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.utils._estimators import search_inside
    >>> search = GridSearchCV(PoissonGLM(), {"alpha": [0.1, 1.0]})
    >>> search_inside(make_pipeline(StandardScaler(), search)) is search
    True
    """
    from sklearn.model_selection._search import BaseSearchCV

    last = final_step(estimator)
    return last if isinstance(last, BaseSearchCV) else None


# the per-sample covariates a model may take next to its stimulus
COVARIATES = ("behavior", "eye_position")


def _model_inside(estimator):
    """The model at the end of pipelines and search objects (a search's ``estimator``)."""
    from sklearn.model_selection._search import BaseSearchCV

    while True:
        if isinstance(estimator, Pipeline):
            estimator = estimator[-1]
        elif isinstance(estimator, BaseSearchCV):
            estimator = estimator.estimator
        else:
            return estimator


def takes_covariates(estimator) -> bool:
    """Whether the model inside pipelines and searches takes ``behavior``/``eye_position``."""
    return bool(getattr(_model_inside(estimator), "_takes_behavior", False))


def fit_search_with_covariates(estimator, X, y, covariates: dict, **fit_params):
    """Fit a search object whose model needs per-sample covariates at fit *and* score.

    Without metadata routing, a scikit-learn search gives ``fit`` parameters
    to the candidates' ``fit`` only: each inner fold would be scored without
    its held-out behaviour. Here the search runs with metadata routing: the
    model (the search's estimator, or its pipeline's last step) requests
    every given parameter at ``fit`` and the ``covariates`` at ``score``, so
    each inner fold's held-out rows bring their own covariates to the
    model's ``score``, and the refit gets those of all the rows. The search's
    ``scoring`` must be None (the model's own ``score``), as the scorers do
    not take covariates. ``groups`` in ``fit_params`` goes to the splitter.
    ``estimator`` is the search, or a pipeline whose last step is the search
    (routing then takes the parameters through the pipeline to it).

    The search is modified (its estimator's requests set) and ``estimator``
    is returned fitted.
    """
    from sklearn import config_context

    search = search_inside(estimator)
    if search is None:
        raise TypeError(
            f"Expected a search object or a pipeline ending in one; got {type(estimator).__name__}."
        )
    if getattr(search, "scoring", None) is not None:
        raise ValueError(
            f"{type(search).__name__}(scoring={search.scoring!r}) cannot score its inner "
            f"folds with {sorted(covariates)}: the scorers do not pass them to the model. "
            "Use scoring=None (the model's own score, which takes them)."
        )
    with config_context(enable_metadata_routing=True):
        model = final_step(search.estimator)
        fit_names = inspect.signature(model.fit).parameters
        score_names = inspect.signature(model.score).parameters
        given = {**covariates, **fit_params}
        model.set_fit_request(**{name: True for name in given if name in fit_names})
        # as without routing, only the covariates reach score (no weights, no offset)
        model.set_score_request(
            **{name: name in covariates for name in given if name in score_names}
        )
        return estimator.fit(X, y, **given)
