"""Figures scientists put in papers (matplotlib, an optional dependency).

Every function returns a :class:`matplotlib.figure.Figure` and never calls
``plt.show()``, so it works with any backend (``Agg`` in scripts and tests).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_model_comparison"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "Plotting needs matplotlib: pip install 'sklearn-cnnenc[plot]'."
        ) from error
    return plt


def plot_model_comparison(results, metric: str = "bits_per_spike", reference: str | None = None):
    """Per-model summary and neuron-by-neuron scatter of a model comparison.

    Left: mean +/- s.e.m. over neurons of ``metric`` for every model, with
    each neuron as a dot. Right: every other model against ``reference``,
    one dot per neuron (above the diagonal: the model beats the reference on
    that neuron).

    Parameters
    ----------
    results : ModelComparison
        Output of :func:`sklearn_cnnenc.model_selection.compare_models`.
    metric : str, default="bits_per_spike"
    reference : str, optional
        Model on the x axis of the scatter; default: the first model.

    Returns
    -------
    figure : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.model_selection import KFold
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> from sklearn_cnnenc.model_selection import compare_models
    >>> from sklearn_cnnenc.plotting import plot_model_comparison
    >>> data = make_glm_data(n_samples=600, n_features=3, n_neurons=4, random_state=0)
    >>> results = compare_models({"a": PoissonGLM(alpha=1e-3), "b": PoissonGLM(alpha=3.0)},
    ...                          data.X, data.y, cv=KFold(2), verbose=False)
    >>> figure = plot_model_comparison(results)
    >>> len(figure.axes)
    2
    """
    plt = _pyplot()
    values = results.per_neuron(metric)
    names = [name for name in results.models]
    reference = names[0] if reference is None else reference
    if reference not in values:
        raise ValueError(f"Unknown reference model {reference!r}; models are {names}.")

    figure, (summary_axis, scatter_axis) = plt.subplots(1, 2, figsize=(10, 4))
    rng = np.random.default_rng(0)
    for position, name in enumerate(names):
        finite = values[name][np.isfinite(values[name])]
        mean = finite.mean() if finite.size else np.nan
        sem = finite.std(ddof=1) / np.sqrt(finite.size) if finite.size > 1 else 0.0
        summary_axis.bar(position, mean, yerr=sem, color=f"C{position}", alpha=0.6, capsize=4)
        jitter = rng.uniform(-0.15, 0.15, finite.size)
        summary_axis.scatter(position + jitter, finite, s=10, color="k", zorder=3)
    summary_axis.set_xticks(range(len(names)), names, rotation=20)
    summary_axis.set_ylabel(f"held-out {metric.replace('_', ' ')}")
    summary_axis.axhline(0.0, color="0.5", linewidth=0.8)
    summary_axis.set_title(f"{results.n_neurons} neurons, {results.n_folds} folds")

    x = values[reference]
    for position, name in enumerate(names):
        if name == reference:
            continue
        scatter_axis.scatter(x, values[name], s=14, color=f"C{position}", label=name)
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    if finite.size:
        low, high = finite.min(), finite.max()
        margin = 0.05 * (high - low or 1.0)
        scatter_axis.plot([low - margin, high + margin], [low - margin, high + margin],
                          color="0.5", linewidth=0.8, linestyle="--")
    scatter_axis.set_xlabel(f"{reference}: {metric.replace('_', ' ')}")
    scatter_axis.set_ylabel(f"model: {metric.replace('_', ' ')}")
    scatter_axis.legend(frameon=False)
    scatter_axis.set_title("per neuron")
    figure.tight_layout()
    return figure
