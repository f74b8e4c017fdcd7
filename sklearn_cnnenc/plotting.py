"""Figures scientists put in papers (matplotlib, an optional dependency).

Every function returns a :class:`matplotlib.figure.Figure` and never calls
``plt.show()``, so it works with any backend (``Agg`` in scripts and tests).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_filters", "plot_model_comparison", "plot_receptive_fields", "plot_tuning"]


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
    if scatter_axis.get_legend_handles_labels()[0]:  # no other model than the reference
        scatter_axis.legend(frameon=False)
    scatter_axis.set_title("per neuron")
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------ helpers
def _grid(n: int, columns: int | None = None) -> tuple[int, int]:
    columns = int(np.ceil(np.sqrt(n))) if columns is None else min(columns, n)
    return int(np.ceil(n / columns)), columns


def _canvas(figure, n_panels: int, panel_size: float = 1.2, columns: int | None = None):
    """A figure (new, or the given figure / subfigure) and a grid of ``n_panels`` axes."""
    rows, columns = _grid(max(n_panels, 1), columns)
    if figure is None:
        plt = _pyplot()
        figure = plt.figure(
            figsize=(max(3.0, panel_size * columns), max(2.5, panel_size * rows)),
            layout="constrained",
        )
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for axis in axes[n_panels:]:
        axis.remove()
    return figure, axes[:n_panels]


def _show_image(axis, image: np.ndarray) -> None:
    limit = float(np.max(np.abs(image))) or 1.0
    axis.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def _model_filters(model, image_shape):
    """Filters to draw, ``(n, h, w)`` images or ``(n, c, k)`` 1-D kernels, and a label each."""
    import torch

    from .inspection._models import is_cnn_encoder

    if isinstance(model, torch.Tensor):
        model = model.detach().cpu().numpy()
    if is_cnn_encoder(model):
        weight = model.core_.blocks[0].conv.weight.detach().cpu().double().numpy()
        if weight.ndim == 3:  # locally connected: (positions, out, in * kh * kw)
            kh, kw = model.core_.blocks[0].conv.kernel_size
            weight = weight.reshape(weight.shape[0], weight.shape[1], -1, kh, kw)[0]
        out_channels, in_channels = weight.shape[:2]
        if model.input_type_ in ("time_series", "lagged"):
            labels = [f"channel {o}" for o in range(out_channels)]
            kernels = weight[:, :, 0, :]
            # a lagged model's kernels are drawn in the design's lag order (lag 0
            # first), like a GLM's coef_; a windowed one's in time order
            return "lines", kernels[..., ::-1] if model.input_type_ == "lagged" else kernels, labels
        labels = [
            f"{o}" if in_channels == 1 else f"{o}/{c}"
            for o in range(out_channels)
            for c in range(in_channels)
        ]
        return "images", weight.reshape(-1, *weight.shape[2:]), labels
    if hasattr(model, "filters_"):  # LNModel: (neurons, filters, *input_shape)
        filters = np.asarray(model.filters_)
        n_neurons, n_filters = filters.shape[:2]
        labels = [f"n{k} h{j}" for k in range(n_neurons) for j in range(n_filters)]
        filters = filters.reshape(n_neurons * n_filters, *filters.shape[2:])
    elif hasattr(model, "coef_"):  # PoissonGLM
        filters = np.atleast_2d(model.coef_)
        labels = [f"neuron {k}" for k in range(len(filters))]
    else:
        filters = np.asarray(model, dtype=np.float64)
        if filters.ndim not in (2, 3):
            raise ValueError(
                "plot_filters needs a fitted CNNEncoder, LNModel or PoissonGLM, or filters of "
                f"shape (n, height, width) or (n, length); got shape {filters.shape}."
            )
        labels = [str(k) for k in range(len(filters))]
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if int(np.prod(image_shape)) != int(np.prod(filters.shape[1:])):
            raise ValueError(
                f"image_shape {image_shape} holds {int(np.prod(image_shape))} values; the "
                f"filters have {int(np.prod(filters.shape[1:]))}."
            )
        filters = filters.reshape(len(filters), *image_shape)
    if filters.ndim == 2:
        return "lines", filters[:, None, :], labels
    if filters.ndim != 3:
        raise ValueError(
            f"Filters of shape {filters.shape[1:]} are neither images nor 1-D kernels; pass "
            "image_shape=(height, width)."
        )
    return "images", filters, labels


def plot_filters(
    model,
    *,
    image_shape=None,
    max_filters: int = 64,
    n_columns: int | None = None,
    figure=None,
    title=None,
):
    """The filters of a model: first-layer kernels of a CNN, LN filters, a GLM's coefficients.

    Images are drawn with a symmetric blue-white-red colour map (white is
    zero, each filter scaled to its own largest magnitude); 1-D kernels
    (time-series CNNs, GLMs on flat features) as curves, one per input
    channel.

    Parameters
    ----------
    model : fitted CNNEncoder, LNModel or PoissonGLM, or array-like
        An array holds filters ``(n, height, width)`` or ``(n, length)``.
    image_shape : (int, int), optional
        Reshape flat filters (e.g. a GLM fitted on flattened images).
    max_filters : int, default=64
        Draw at most this many (the first ones).
    n_columns : int, optional
        Panels per row; default: a square grid.
    figure : matplotlib Figure or SubFigure, optional
        Draw into it instead of a new figure.
    title : str, optional

    Returns
    -------
    figure : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_cnnenc.plotting import plot_filters
    >>> figure = plot_filters(np.random.default_rng(0).normal(size=(6, 9, 9)))
    >>> len(figure.axes)
    6
    """
    kind, filters, labels = _model_filters(model, image_shape)
    if not isinstance(max_filters, int) or max_filters < 1:
        raise ValueError(f"max_filters must be a positive integer; got {max_filters!r}.")
    if n_columns is not None and (not isinstance(n_columns, int) or n_columns < 1):
        raise ValueError(f"n_columns must be a positive integer; got {n_columns!r}.")
    filters, labels = filters[:max_filters], labels[:max_filters]
    figure, axes = _canvas(figure, len(filters), columns=n_columns)
    for axis, kernel, label in zip(axes, filters, labels, strict=True):
        if kind == "images":
            _show_image(axis, kernel)
        else:
            for channel in kernel:
                axis.plot(channel, linewidth=1.0)
            axis.axhline(0.0, color="0.6", linewidth=0.5)
            axis.set_xticks([])
            axis.set_yticks([])
        axis.set_title(label, fontsize=7)
    if title is not None:
        figure.suptitle(title)
    return figure


def plot_receptive_fields(model, X, *, neurons=None, image_shape=None, figure=None):
    """Sensitivity maps of neurons: the mean absolute gradient of their response.

    For each neuron, :func:`~sklearn_cnnenc.inspection.empirical_receptive_field`
    averages the absolute gradient of its linear predictor over the stimuli
    ``X``: where the model's neuron listens. Unlike a filter, this also
    shows the receptive fields of nonlinear (e.g. complex) cells, whose
    signed average gradient cancels out.

    Parameters
    ----------
    model : fitted CNNEncoder, LNModel or PoissonGLM
    X : array-like
        Stimuli, shaped as for the model's ``fit``.
    neurons : list of int, optional
        Default: the first 16.
    image_shape : (int, int), optional
        Reshape maps of models fitted on flattened images.
    figure : matplotlib Figure or SubFigure, optional

    Returns
    -------
    figure : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_v1_population
    >>> from sklearn_cnnenc.plotting import plot_receptive_fields
    >>> data = make_v1_population(300, n_simple=2, n_complex=0, image_size=10, random_state=0)
    >>> glm = PoissonGLM().fit(data.X.reshape(300, -1), data.y)
    >>> figure = plot_receptive_fields(glm, data.X[:20].reshape(20, -1), image_shape=(10, 10))
    >>> len(figure.axes)
    2
    """
    from .inspection import empirical_receptive_field

    if neurons is None:
        neurons = list(range(min(16, model.n_outputs_)))
    figure, axes = _canvas(figure, len(neurons), panel_size=1.6)
    for axis, neuron in zip(axes, neurons, strict=True):
        sensitivity = empirical_receptive_field(model, X, neuron=neuron).sensitivity
        if image_shape is not None:
            sensitivity = sensitivity.reshape(image_shape)
        if sensitivity.ndim == 2:
            axis.imshow(sensitivity, cmap="magma", interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        else:
            axis.plot(sensitivity)
        axis.set_title(f"neuron {neuron}", fontsize=8)
    return figure


def plot_tuning(curves, *, neurons=None, normalize: bool = False, figure=None):
    """Tuning curves of one or several models, one panel per neuron.

    Parameters
    ----------
    curves : Bunch or dict of str to Bunch
        Output of :func:`~sklearn_cnnenc.inspection.tuning_curve`, or
        several of them (e.g. ``{"truth": ..., "CNN": ..., "GLM": ...}``) to
        overlay, computed on the same stimuli.
    neurons : list of int, optional
        Default: the first 16.
    normalize : bool, default=False
        Divide every curve by its mean (compares modulation depth, e.g.
        the phase modulation of simple and complex cells).
    figure : matplotlib Figure or SubFigure, optional

    Returns
    -------
    figure : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_cnnenc.inspection import tuning_curve
    >>> from sklearn_cnnenc.plotting import plot_tuning
    >>> from sklearn_cnnenc.stimuli import gratings
    >>> probes = gratings(8, orientation=np.linspace(0, np.pi, 6, endpoint=False))
    >>> curve = tuning_curve(lambda X: X[:, :2, 4] ** 2, probes, "orientation")
    >>> len(plot_tuning({"model": curve}).axes)
    2
    """
    if isinstance(curves, dict) and "responses" in curves:
        curves = {"": curves}
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            "curves must be a tuning_curve result or a dict of them; got "
            f"{type(curves).__name__}."
        )
    first = next(iter(curves.values()))
    n_neurons = first.responses.shape[1]
    if neurons is None:
        neurons = list(range(min(16, n_neurons)))
    figure, axes = _canvas(figure, len(neurons), panel_size=2.0)
    for axis, neuron in zip(axes, neurons, strict=True):
        for label, curve in curves.items():
            values = np.asarray(curve.parameter_values)
            response = curve.responses[:, neuron]
            if normalize:
                response = response / np.mean(response)
            axis.plot(values if values.ndim == 1 else np.arange(len(values)), response,
                      marker="o", markersize=2.5, label=label or None)
        axis.set_title(f"neuron {neuron}", fontsize=8)
        axis.tick_params(labelsize=7)
    parameter = first.get("parameter")
    if parameter:
        for axis in axes:
            axis.set_xlabel(parameter, fontsize=7)
    if any(curves):
        axes[0].legend(fontsize=7, frameon=False)
    return figure
