"""Cross-validated comparison of encoding models, neuron by neuron."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed, parallel_config
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.model_selection import check_cv
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_array, check_consistent_length

from ..glm_cv import PoissonGLMCV
from ..metrics import METRICS, log_likelihood
from ..utils import compute_threads, limit_threads
from ..utils import final_step as _final_step
from ..utils import fitted_model as _fitted_model
from ..utils._estimators import fit_search_with_covariates, search_inside, takes_covariates
from ._likelihood_ratio import likelihood_ratio_test

__all__ = ["compare_models", "ModelComparison", "GridEdgeWarning", "SilentUnitWarning"]


class GridEdgeWarning(UserWarning):
    """A search chose the smallest or largest value of a grid: it may not bracket the optimum.

    Examples
    --------
    >>> from sklearn_cnnenc.model_selection import GridEdgeWarning
    >>> issubclass(GridEdgeWarning, UserWarning)
    True
    """


class SilentUnitWarning(UserWarning):
    """A unit has no spikes in a training fold: its held-out scores are meaningless.

    A model cannot learn the rate of a unit it never saw fire, and its
    held-out bits/spike then reach large negative values that dominate a
    uniform average over units; ``summary(average="spikes")`` weights units
    by their spike counts instead.

    Examples
    --------
    >>> from sklearn_cnnenc.model_selection import SilentUnitWarning
    >>> issubclass(SilentUnitWarning, UserWarning)
    True
    """

DEFAULT_METRICS = ("log_likelihood", "bits_per_spike", "pseudo_r2", "correlation")
DEFAULT_REPEAT_METRICS = ("oracle_correlation", "correlation_to_average", "feve")
ORACLE = "oracle"


@dataclass
class _HeldOut:
    """A fitted model's held-out predictions: means, per-neuron log-likelihood, family."""

    mean: np.ndarray
    log_likelihood: np.ndarray
    family: object  # a Family, or a registered family's name
    dispersion: np.ndarray | None


def _held_out(model, X, y_2d, covariates=None) -> _HeldOut:
    """One pass through the model: its own distribution when it has one, else ``predict``."""
    final = _final_step(model)
    if hasattr(final, "predict_distribution"):
        Xt = model[:-1].transform(X) if isinstance(model, Pipeline) else X
        distribution = final.predict_distribution(Xt, **(covariates or {}))
        missing = np.isnan(y_2d)
        if missing.any():  # a model fitted with missing_responses="mask"
            # 1 is a valid response of every family; those entries are dropped
            log_prob = distribution.log_prob(np.where(missing, 1.0, y_2d))
            count = (~missing).sum(axis=0)
            total = np.where(missing, 0.0, log_prob).sum(axis=0)
            # nan for a neuron with no response in this test fold
            per_neuron = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        else:
            per_neuron = distribution.log_prob(y_2d).mean(axis=0)
        return _HeldOut(distribution.mean, per_neuron,
                        distribution.family, distribution.dispersion)
    mean = np.asarray(model.predict(X), dtype=float).reshape(len(y_2d), -1)
    return _HeldOut(mean, log_likelihood(y_2d, mean, multioutput="raw_values"), "poisson", None)


def _oracle(mean, y_2d, family, dispersion) -> _HeldOut:
    ll = log_likelihood(y_2d, mean, family=family, dispersion=dispersion,
                        multioutput="raw_values")
    return _HeldOut(mean, ll, family, dispersion)


def _score_metric(name, metric, held: _HeldOut, y_2d, train_mean) -> np.ndarray:
    if callable(metric):
        return np.asarray(metric(y_2d, held.mean), dtype=float).reshape(-1)
    if metric == "log_likelihood":
        # the model's own distribution, from its linear predictor
        return held.log_likelihood
    spec = METRICS[metric]
    kwargs = dict(spec.kwargs)
    if np.isnan(y_2d).any():  # only a model fitted with missing_responses="mask" got here
        kwargs["missing"] = "mask"
    if spec.takes_family:
        kwargs.update(family=held.family, dispersion=held.dispersion)
    if spec.takes_null:
        kwargs["y_null"] = train_mean
    return np.asarray(spec.function(y_2d, held.mean, multioutput="raw_values", **kwargs))


def _score_repeats(name, model, metrics, repeats, covariates=None) -> dict[str, np.ndarray]:
    """The repeated-trial metrics of one fitted model (nan for the oracle's predictions).

    With ``covariates`` (each trial's behaviour or eye position, shaped
    (n_repeats, n_stimuli, n_columns)) the model predicts every trial with
    its own, one repeat at a time: predictions shaped like the responses.
    """
    X_repeats, responses = repeats
    y_pred = None
    if name != ORACLE and any(METRICS[metric].takes_prediction for metric in metrics.values()):
        if covariates:
            y_pred = np.stack([
                np.asarray(model.predict(X_repeats, **{key: value[repeat]
                                                       for key, value in covariates.items()}),
                           dtype=float).reshape(responses.shape[1:])
                for repeat in range(len(responses))
            ])
        else:
            y_pred = model.predict(X_repeats)
    scores = {}
    for metric_name, metric in metrics.items():
        spec = METRICS[metric]
        if not spec.takes_prediction:
            values = spec.function(responses, multioutput="raw_values", **spec.kwargs)
        elif y_pred is None:
            values = np.full(responses.shape[-1], np.nan)
        else:
            values = spec.function(responses, y_pred, multioutput="raw_values", **spec.kwargs)
        scores[metric_name] = np.asarray(values, dtype=float).reshape(-1)
    return scores


def _fit_and_score(name, estimator, X, y, groups, train, test, metrics, oracle,
                   return_estimator=False, repeat_metrics=None, repeats=None,
                   covariates=None, repeat_covariates=None):
    """Fit one model on one fold and score it on the held-out part, per neuron.

    ``covariates`` (``behavior``, ``eye_position``) go to the models that
    take them, also through a search object, whose inner folds then score
    with their held-out rows' covariates (:func:`fit_search_with_covariates`);
    those models predict the repeated trials with ``repeat_covariates``.
    """
    if name == ORACLE or not takes_covariates(estimator):
        covariates = repeat_covariates = {}
    covariates = covariates or {}
    y_2d = y.reshape(len(y), -1)
    train_mean = np.nanmean(y_2d[train], axis=0)  # NaN: responses not recorded
    if np.all(np.isnan(y_2d) | (y_2d >= 0)):
        # a unit without training spikes (SilentUnitWarning) gets a null rate of half a
        # spike per training fold, not 0, which would make every held-out spike impossible
        train_mean = np.where(train_mean > 0, train_mean, 0.5 / len(train))
    start = time.perf_counter()
    model = params = None
    if name != ORACLE:
        # a search object's inner folds need the groups of the training fold
        fit_params = {}
        if groups is not None and isinstance(_final_step(estimator), BaseSearchCV | PoissonGLMCV):
            fit_params["groups"] = groups[train]
        training = {key: value[train] for key, value in covariates.items()}
        # a search (also at the end of a pipeline) fitted with covariates runs
        # with metadata routing, which takes them to its inner folds' scores too
        routed = bool(training) and search_inside(estimator) is not None
        if not routed:
            fit_params.update(training)
            if isinstance(estimator, Pipeline):
                prefix = f"{estimator.steps[-1][0]}__"
                fit_params = {prefix + key: value for key, value in fit_params.items()}
        with warnings.catch_warnings(record=True) as caught:
            # collected and summarised per model after the run, instead of
            # interleaving with the progress bar (other warnings are re-emitted)
            warnings.simplefilter("always", ConvergenceWarning)
            if routed:
                model = fit_search_with_covariates(
                    estimator, _safe_indexing(X, train), y[train], training, **fit_params
                )
            else:
                model = estimator.fit(_safe_indexing(X, train), y[train], **fit_params)
        convergence = []
        for warning in caught:
            if issubclass(warning.category, ConvergenceWarning):
                convergence.append(str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
        search = _final_step(model)
        params = getattr(search, "best_params_", None)
        edges = _grid_edges(search, params)
        model = _fitted_model(model)
    else:
        convergence, edges = [], []
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        # undefined per-neuron values (a silent neuron in a fold) are kept as nan
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if name == ORACLE:
            rates, family, dispersion = oracle
            held = _oracle(rates.reshape(len(y), -1)[test], y_2d[test], family, dispersion)
        else:
            held = _held_out(model, _safe_indexing(X, test), y_2d[test],
                             {key: value[test] for key, value in covariates.items()})
        scores = {
            metric_name: _score_metric(metric_name, metric, held, y_2d[test], train_mean)
            for metric_name, metric in metrics.items()
        }
        if repeats is not None:
            scores.update(_score_repeats(name, model, repeat_metrics, repeats,
                                         repeat_covariates if covariates else None))
    return {
        "scores": scores,
        "fit_time": fit_time,
        "score_time": time.perf_counter() - start,
        "params": params,
        "estimator": model if return_estimator else None,
        "convergence": convergence,
        "grid_edges": edges,
    }


def _grid_edges(search, params) -> list[str]:
    """The chosen values that sit on the edge of a numeric grid (``"alpha=1.0"``)."""
    grid = getattr(search, "param_grid", None)
    alphas = getattr(search, "alphas_", None)
    if grid is None and alphas is not None and np.ndim(alphas) == 1:
        grid = {"alpha": [float(a) for a in alphas]}  # a regularisation path (PoissonGLMCV)
        params = {"alpha": float(np.ravel(params["alpha"])[0])} if params and np.ndim(
            params.get("alpha")) == 0 else None
    if not params or grid is None:
        return []
    grids = grid if isinstance(grid, Sequence) else [grid]
    edges = []
    for name, value in params.items():
        for candidates in grids:
            values = list(candidates.get(name, []))
            numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(numeric) < 2 or len(numeric) != len(values) or value not in numeric:
                continue
            if value in (min(numeric), max(numeric)):
                side = "largest" if value == max(numeric) else "smallest"
                edges.append(f"{name}={value!r} ({side} of {sorted(numeric)})")
    return edges


class _Progress:
    """A one-line progress bar on stderr (silent when ``verbose`` is false)."""

    def __init__(self, total: int, verbose: bool) -> None:
        self.total, self.verbose, self.done, self.start = total, verbose, 0, time.perf_counter()

    def update(self, label: str) -> None:
        self.done += 1
        if not self.verbose:
            return
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} fits "
            f"({elapsed:5.1f} s) {label:<30.30}"
        )
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


@dataclass
class ModelComparison:
    """Results of :func:`compare_models`: scores per model, fold, neuron and metric.

    Attributes
    ----------
    models : list of str
        Model names, in the order given (``"oracle"`` last when oracle rates
        were given).
    metrics : list of str
    n_neurons : int
    n_folds : int
    scores : list of dict
        Tidy records ``{"model", "fold", "neuron", "metric", "value"}``.
    fit_times : list of dict
        ``{"model", "fold", "fit_time", "score_time"}`` in seconds.
    best_params : list of dict
        ``{"model", "fold", "params"}`` for models that are searches (the
        hyper-parameters chosen by the inner cross-validation of that fold).
    test_indices : list of ndarray
        The held-out samples of each fold.
    estimators : dict of (str, int) to estimator
        The fitted model (a search's best estimator) per model and fold, when
        ``compare_models(..., return_estimators=True)``.
    likelihood_ratio_tests : dict of (str, str) to Bunch
        For every ``(full, reduced)`` pair of ``compare_models(..., nested=...)``:
        the per-neuron likelihood-ratio test of the two models fitted on all
        the data (``statistic``, ``df``, ``p_value``; see
        :func:`likelihood_ratio_test`).

    Examples
    --------
    >>> from sklearn.model_selection import KFold
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> from sklearn_cnnenc.model_selection import compare_models
    >>> data = make_glm_data(n_samples=600, n_features=4, n_neurons=3, random_state=0)
    >>> results = compare_models({"glm": PoissonGLM(alpha=1e-3)}, data.X, data.y,
    ...                          cv=KFold(3), verbose=False)
    >>> results.per_neuron("bits_per_spike")["glm"].shape
    (3,)
    """

    models: list[str]
    metrics: list[str]
    n_neurons: int
    n_folds: int
    scores: list[dict] = field(default_factory=list)
    fit_times: list[dict] = field(default_factory=list)
    best_params: list[dict] = field(default_factory=list)
    test_indices: list[np.ndarray] = field(default_factory=list)
    estimators: dict = field(default_factory=dict)
    likelihood_ratio_tests: dict = field(default_factory=dict)
    n_spikes: np.ndarray | None = None
    # per-metric tables, built from the records on first use
    _per_neuron: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def per_neuron(self, metric: str) -> dict[str, np.ndarray]:
        """Each model's score per neuron, averaged over folds (nan-aware)."""
        if metric not in self.metrics:
            raise ValueError(f"Unknown metric {metric!r}; results hold {self.metrics}.")
        if not self._per_neuron:
            tables = {(name, m): np.full((self.n_folds, self.n_neurons), np.nan)
                      for name in self.models for m in self.metrics}
            for record in self.scores:
                table = tables[record["model"], record["metric"]]
                table[record["fold"], record["neuron"]] = record["value"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-nan neuron -> nan
                for m in self.metrics:
                    self._per_neuron[m] = {name: np.nanmean(tables[name, m], axis=0)
                                           for name in self.models}
        return {name: values.copy() for name, values in self._per_neuron[metric].items()}

    def fraction_of_oracle(self, metric: str = "bits_per_spike") -> dict[str, np.ndarray]:
        """Per-neuron ratio of each model's score to the oracle's (true rates)."""
        if ORACLE not in self.models:
            raise ValueError("No oracle in these results; pass oracle_rates to compare_models.")
        values = self.per_neuron(metric)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {name: values[name] / values[ORACLE] for name in self.models}

    def summary(self, average: str = "uniform") -> list[dict]:
        """One row per model: mean and s.e.m. over neurons of every metric, fit time.

        ``average="uniform"`` weights every neuron equally; ``"spikes"``
        weights each by its number of spikes (``n_spikes``), so that units
        that hardly fire do not dominate the average.
        """
        if average not in ("uniform", "spikes"):
            raise ValueError(f"average must be 'uniform' or 'spikes'; got {average!r}.")
        weights = None
        if average == "spikes":
            if self.n_spikes is None:
                raise ValueError("These results hold no spike counts (n_spikes).")
            weights = np.asarray(self.n_spikes, dtype=float)
        rows = []
        oracle = self.fraction_of_oracle() if ORACLE in self.models and (
            "bits_per_spike" in self.metrics) else None
        for name in self.models:
            row: dict = {"model": name}
            for metric in self.metrics:
                row[metric], row[f"{metric}_sem"] = _mean_sem(self.per_neuron(metric)[name],
                                                              weights)
            if oracle is not None:
                row["fraction_of_oracle"], row["fraction_of_oracle_sem"] = _mean_sem(
                    oracle[name], weights)
            times = [r["fit_time"] for r in self.fit_times if r["model"] == name]
            row["fit_time"] = float(np.mean(times))
            rows.append(row)
        return rows

    def paired_comparisons(self, metric: str = "log_likelihood") -> list[dict]:
        """Every pair of models compared across neurons.

        Returns, per pair ``(a, b)``: the mean over neurons of ``a - b``, the
        fraction of neurons where ``a`` is better, and the two-sided Wilcoxon
        signed-rank p-value (nan with fewer than two neurons with a difference).
        """
        values = self.per_neuron(metric)
        rows = []
        for i, first in enumerate(self.models):
            for second in self.models[i + 1:]:
                difference = values[first] - values[second]
                difference = difference[np.isfinite(difference)]
                p_value = np.nan
                if np.count_nonzero(difference) >= 2:
                    p_value = float(stats.wilcoxon(difference).pvalue)
                rows.append({
                    "model_a": first,
                    "model_b": second,
                    "metric": metric,
                    "mean_difference": float(np.mean(difference)) if difference.size else np.nan,
                    "fraction_a_better": float(np.mean(difference > 0))
                    if difference.size else np.nan,
                    "wilcoxon_p": p_value,
                    "n_neurons": int(difference.size),
                })
        return rows

    def to_frame(self, table: str = "scores"):
        """A pandas DataFrame of ``"scores"``, ``"fit_times"``, ``"summary"`` or ``"paired"``.

        Requires pandas; the same tables are available as lists of records.
        """
        import pandas as pd

        return pd.DataFrame(self._table(table))

    def _table(self, table: str) -> list[dict]:
        tables = {
            "scores": lambda: self.scores,
            "fit_times": lambda: self.fit_times,
            "summary": self.summary,
            "paired": lambda: [row for metric in self.metrics
                               for row in self.paired_comparisons(metric)],
        }
        if table not in tables:
            raise ValueError(f"Unknown table {table!r}; expected one of {sorted(tables)}.")
        return tables[table]()

    def to_csv(self, directory: str | Path) -> list[Path]:
        """Write scores.csv, fit_times.csv, summary.csv and paired.csv; return the paths."""
        import csv

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for table in ("scores", "fit_times", "summary", "paired"):
            records = self._table(table)
            path = directory / f"{table}.csv"
            with path.open("w", newline="") as handle:
                if records:
                    writer = csv.DictWriter(handle, fieldnames=list(records[0]))
                    writer.writeheader()
                    writer.writerows(records)
            paths.append(path)
        return paths

    def to_json(self, path: str | Path) -> Path:
        """Write everything (records, summary, paired comparisons, best params) as JSON."""
        path = Path(path)
        payload = {
            "models": self.models,
            "metrics": self.metrics,
            "n_neurons": self.n_neurons,
            "n_folds": self.n_folds,
            "summary": self.summary(),
            "paired": self._table("paired"),
            "best_params": self.best_params,
            "fit_times": self.fit_times,
            "scores": self.scores,
        }
        path.write_text(json.dumps(payload, indent=1, default=_json_default,
                                   allow_nan=True))
        return path

    def __repr__(self) -> str:
        lines = [f"ModelComparison({len(self.models)} models, {self.n_folds} folds, "
                 f"{self.n_neurons} neurons)"]
        for row in self.summary():
            metrics = ", ".join(f"{m}={row[m]:.4g}±{row[m + '_sem']:.2g}" for m in self.metrics)
            lines.append(f"  {row['model']}: {metrics}, fit {row['fit_time']:.2f} s")
        return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def _mean_sem(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    if weights is not None:
        keep = np.isfinite(values) & (weights > 0)
        values, weights = values[keep], weights[keep]
        if values.size == 0:
            return np.nan, np.nan
        weights = weights / weights.sum()
        mean = float(weights @ values)
        # standard error of a weighted mean with fixed weights
        sem = float(np.sqrt(weights**2 @ (values - mean) ** 2 * values.size
                            / max(values.size - 1, 1))) if values.size > 1 else np.nan
        return mean, sem
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    sem = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else np.nan
    return float(np.mean(values)), sem


def _resolve_metrics(scoring, repeats) -> tuple[dict[str, str | Callable], dict[str, str]]:
    """The per-sample metrics and the repeated-trial metrics (``takes_repeats``) by name."""
    if scoring is None:
        scoring = DEFAULT_METRICS + (DEFAULT_REPEAT_METRICS if repeats is not None else ())
    if isinstance(scoring, str):
        scoring = (scoring,)
    metrics: dict[str, str | Callable] = {}
    if isinstance(scoring, Mapping):
        items = scoring.items()
    else:
        items = ((name, name) for name in scoring)
    known = set(METRICS)
    for name, metric in items:
        if not callable(metric) and metric not in known:
            raise ValueError(f"Unknown metric {metric!r}; expected one of {sorted(known)} "
                             "or a callable metric(y_true, y_pred) -> one value per neuron.")
        metrics[name] = metric
    if not metrics:
        raise ValueError("scoring names no metric.")
    repeat_metrics = {name: metric for name, metric in metrics.items()
                      if not callable(metric) and METRICS[metric].takes_repeats}
    if repeat_metrics and repeats is None:
        raise ValueError(f"The metrics {list(repeat_metrics)} score repeated trials: pass "
                         "repeats=(X_stimuli, responses) to compare_models.")
    metrics = {name: metric for name, metric in metrics.items() if name not in repeat_metrics}
    return metrics, repeat_metrics


def _check_compare_repeats(repeats, n_neurons):
    """Validate ``repeats=(X_stimuli, responses)``; responses as (n_repeats, n_stimuli, n)."""
    if repeats is None:
        return None
    if not isinstance(repeats, tuple | list) or len(repeats) != 2:
        raise ValueError("repeats must be a pair (X_stimuli, responses); got "
                         f"{type(repeats).__name__}.")
    X_repeats, responses = repeats
    responses = np.asarray(responses, dtype=float)
    if responses.ndim == 2 and n_neurons == 1:
        responses = responses[:, :, None]
    if responses.ndim != 3 or responses.shape[2] != n_neurons:
        raise ValueError(
            "The responses of repeats must have shape (n_repeats, n_stimuli, n_neurons) "
            f"with n_neurons = {n_neurons} (as y); got shape {responses.shape}."
        )
    check_consistent_length(X_repeats, responses[0])
    return X_repeats, responses


def _check_repeat_covariates(repeats, covariates, given, models, repeat_metrics) -> dict:
    """Validate each repeated trial's covariates (``repeats_behavior=`` ...).

    Returned shaped (n_repeats, n_stimuli, n_columns). A model fitted with a
    covariate predicts the repeats only with each trial's own: missing ones
    are an error, not a prediction without them.
    """
    checked = {}
    for name, value in given.items():
        argument = f"repeats_{name}"
        if value is None:
            continue
        if repeats is None:
            raise ValueError(f"{argument} gives the {name} of the trials of repeats=(X_stimuli, "
                             "responses); pass repeats as well.")
        if name not in covariates:
            raise ValueError(f"{argument} is given but {name} is not: the models are fitted "
                             f"without {name} and predict the repeats without it. Pass "
                             f"{name}= for the samples of X as well.")
        responses = repeats[1]
        value = check_array(value, allow_nd=True, dtype=float, input_name=argument)
        if value.ndim == 2:  # one column
            value = value[:, :, None]
        expected = (*responses.shape[:2], covariates[name].shape[1])
        if value.shape != expected:
            raise ValueError(
                f"{argument} must have shape (n_repeats, n_stimuli, n_columns) = {expected}: "
                f"one row per trial of the repeats' responses {responses.shape}, the "
                f"{covariates[name].shape[1]} column(s) of {name}; got {value.shape}."
            )
        checked[name] = value
    predicts = any(METRICS[metric].takes_prediction for metric in repeat_metrics.values())
    missing = [name for name in covariates if name not in checked]
    modelled = [name for name, model in models.items() if takes_covariates(model)]
    if repeats is not None and predicts and missing and modelled:
        needed = ", ".join(
            f"repeats_{name}= of shape (n_repeats, n_stimuli, {covariates[name].shape[1]})"
            for name in missing
        )
        raise ValueError(
            f"The models {modelled} are fitted with {' and '.join(missing)}, so their "
            f"predictions of the repeated trials need each trial's: pass {needed} (or score "
            "the repeats with metrics that take no prediction)."
        )
    return checked


def _warn_after_run(names, tasks, results, splits, y_2d) -> None:
    """One summary warning per model and kind, after the progress bar."""
    for name in names:
        outputs = [out for (task, *_), out in zip(tasks, results, strict=True) if task == name]
        messages = [m for out in outputs for m in out["convergence"]]
        if messages:
            n_fits = sum(1 for out in outputs if out["convergence"])
            warnings.warn(
                f"{name}: {len(messages)} convergence warning(s) in {n_fits} of "
                f"{len(outputs)} outer fold(s); first: {messages[0]}",
                ConvergenceWarning,
                stacklevel=3,
            )
        edges = sorted({edge for out in outputs for edge in out["grid_edges"]})
        if edges:
            warnings.warn(
                f"{name}: the search chose a value on the edge of its grid ({'; '.join(edges)}); "
                "the optimum may lie outside: extend the grid.",
                GridEdgeWarning,
                stacklevel=3,
            )
    if np.all(y_2d >= 0):
        silent = sorted({int(unit) for train, _ in splits
                         for unit in np.flatnonzero(y_2d[train].sum(axis=0) == 0)})
        if silent:
            warnings.warn(
                f"{len(silent)} unit(s) have no spikes in the training part of at least one "
                f"fold (units {silent[:10]}{'...' if len(silent) > 10 else ''}): their "
                "held-out scores are meaningless and dominate a uniform average; use "
                "summary(average='spikes') or drop them.",
                SilentUnitWarning,
                stacklevel=3,
            )


@contextlib.contextmanager
def _backend(scheduler):
    """joblib's dask backend on a running dask scheduler, or joblib's default."""
    if scheduler is None:
        yield
        return
    try:
        from distributed import Client
    except ImportError as error:
        raise ImportError(
            "scheduler= needs dask.distributed: pip install 'sklearn-cnnenc[dask]'."
        ) from error
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        with parallel_config(backend="dask"):
            yield
    finally:
        if client is not scheduler:
            client.close()


def compare_models(
    models: Mapping[str, object],
    X,
    y,
    *,
    cv=None,
    scoring: Sequence[str] | Mapping[str, str | Callable] | None = None,
    n_jobs: int | None = None,
    groups=None,
    oracle_rates=None,
    oracle_family: str = "poisson",
    oracle_dispersion=None,
    scheduler=None,
    verbose: bool = True,
    return_estimators: bool = False,
    nested: Sequence[tuple[str, str]] | None = None,
    repeats: tuple | None = None,
    behavior=None,
    eye_position=None,
    repeats_behavior=None,
    repeats_eye_position=None,
) -> ModelComparison:
    """Fit every model on every training fold and score it on held-out data, per neuron.

    Each model (an estimator, a Pipeline, or a search object such as
    ``GridSearchCV``, alone or as a pipeline's last step, in which case the
    comparison is a *nested* cross-validation: hyper-parameters are chosen
    inside each training fold) is cloned and fitted on each training fold;
    held-out predictions are scored neuron by neuron.

    Parameters
    ----------
    models : dict of str to estimator
        Named models to compare.
    X : array-like
        Stimuli (any shape the models accept; rows are samples).
    y : array-like of shape (n_samples,) or (n_samples, n_neurons)
        Responses.
    cv : int, cross-validation generator or iterable, default=None
        Folds. The default is 5 *contiguous* folds (``KFold`` without
        shuffling), right for time series whose neighbouring bins are
        correlated; an int gives that many contiguous folds.
    scoring : sequence of str, or dict of name to str or callable, default=None
        Metrics among ``"log_likelihood"`` (mean held-out log-likelihood per
        bin, nats, from each model's own family), ``"bits_per_spike"`` (null:
        the *training* fold's mean rate, the stricter convention for held-out
        data), ``"pseudo_r2"`` (McFadden, same null), ``"pseudo_r2_deviance"``
        and ``"correlation"``; a callable ``metric(y_true, y_pred)`` must return
        one value per neuron. With ``repeats``, also the repeated-trial metrics
        of :data:`~sklearn_cnnenc.metrics.METRICS` (``"oracle_correlation"``,
        ``"correlation_to_average"``, ``"fev"``, ``"feve"``,
        ``"explainable_variance"``). None: ``DEFAULT_METRICS`` (log_likelihood,
        bits_per_spike, pseudo_r2, correlation), plus oracle_correlation,
        correlation_to_average and feve when ``repeats`` is given.
    n_jobs : int, default=None
        Fits run in parallel (model x fold) through joblib.
    groups : array-like of shape (n_samples,), optional
        Group labels for group-aware splitters (e.g. trials).
    oracle_rates : array-like shaped like ``y``, optional
        True expected responses (simulations): scored as a model named
        ``"oracle"``, which gives each model's fraction of the oracle.
    oracle_family : str, default="poisson"
        Observation family the oracle's log-likelihood is computed with (use
        the family of the compared models, e.g. ``"gaussian"`` for calcium).
    oracle_dispersion : float or array-like of shape (n_neurons,), optional
        The true dispersion for the oracle (needed for
        ``"negative_binomial"``; a Gaussian oracle without it uses the
        residual variance).
    scheduler : str or distributed.Client, optional
        Address of a dask scheduler (``"tcp://host:8786"``) or a client: the
        fits then run on that cluster through joblib's dask backend.
    verbose : bool, default=True
        Show a progress bar on stderr.
    return_estimators : bool, default=False
        Keep each fold's fitted model in ``results.estimators``.
    nested : sequence of (str, str), optional
        Pairs ``(full, reduced)`` of model names whose GLMs are nested (e.g.
        two pipelines whose column selections are nested, each ending in an
        unpenalised ``PoissonGLM``): both are also fitted on all the data and
        compared by a per-neuron likelihood-ratio test
        (``results.likelihood_ratio_tests``). The in-sample test complements
        the held-out scores; a search object contributes its refitted best
        estimator.
    repeats : tuple (X_stimuli, responses), optional
        A test set of repeated trials, held out of ``X, y``: the distinct
        stimuli ``X_stimuli`` (n_stimuli rows) and the responses to each of
        their presentations, of shape (n_repeats, n_stimuli, n_neurons) (as in
        Sensorium's test set). Every fold's fitted model predicts
        ``X_stimuli`` (a model given ``behavior`` or ``eye_position``: each
        trial, with ``repeats_behavior``, ``repeats_eye_position``) and is
        scored on them with the repeated-trial metrics of ``scoring``, per
        neuron, next to its cross-validated scores. The
        ceilings (``oracle_correlation``, ``explainable_variance``) are the
        same for every model and fold; the ``"oracle"`` model (true rates)
        has no prediction there, its other repeat scores are nan.
    behavior : array-like of shape (n_samples, n_covariates), optional
        Behaviour per sample (running speed, pupil size ...), given (split
        like ``y``) to the fit and held-out predictions of the models that
        model it (an estimator or pipeline ending in ``CNNEncoder``, a
        ``CNNEncoderCV``, or a search object such as ``GridSearchCV`` over
        one of them, also as a pipeline's last step); the other models are
        fitted on the stimulus alone. A search object gets them as fit
        parameters split by its own folds, and each inner fold is scored
        with its held-out rows' behaviour (the search runs with
        scikit-learn's metadata routing, so its ``scoring`` must be None: the
        model's own ``score``); the refitted best model predicts each outer
        test fold with that fold's behaviour.
        ``y`` may hold NaN for models with ``missing_responses="mask"``.
    eye_position : array-like of shape (n_samples, 2), optional
        Eye position per sample, routed as ``behavior`` (to models with a
        shifter, ``CNNEncoder(readout="gaussian")``).
    repeats_behavior : array-like of shape (n_repeats, n_stimuli, n_covariates), optional
        With ``behavior`` and ``repeats``: the behaviour on each repeated
        trial (``(n_repeats, n_stimuli)`` for one covariate), indexed like
        the repeats' responses. The models given ``behavior`` then predict
        every trial with its own behaviour: ``correlation_to_average``
        correlates the repeat average of those predictions with that of the
        responses, ``fev`` and ``feve`` compare each trial's prediction with
        its response (as Sensorium scores behaviour-modulated models). It is
        required when such a model is compared on repeats with a metric that
        takes a prediction (a ValueError otherwise, not a prediction without
        behaviour).
    repeats_eye_position : array-like of shape (n_repeats, n_stimuli, 2), optional
        The eye position on each repeated trial, as ``repeats_behavior``
        (required with ``eye_position`` likewise).

    Returns
    -------
    results : ModelComparison

    Examples
    --------
    >>> from sklearn.model_selection import KFold
    >>> from sklearn_cnnenc import PoissonGLM
    >>> from sklearn_cnnenc.datasets import make_glm_data
    >>> from sklearn_cnnenc.model_selection import compare_models
    >>> data = make_glm_data(n_samples=900, n_features=4, n_neurons=4, random_state=0)
    >>> results = compare_models(
    ...     {"ridge": PoissonGLM(alpha=1e-3), "strong": PoissonGLM(alpha=10.0)},
    ...     data.X, data.y, cv=KFold(3), oracle_rates=data.mean, verbose=False)
    >>> [row["model"] for row in results.summary()]
    ['ridge', 'strong', 'oracle']
    >>> bool(results.per_neuron("log_likelihood")["ridge"].mean()
    ...      > results.per_neuron("log_likelihood")["strong"].mean())
    True

    A held-out test set of 10 stimuli shown 4 times each, scored with the
    repeated-trial metrics as well:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X_stimuli = rng.standard_normal((10, 4))
    >>> rates = np.exp(X_stimuli @ data.coef.T + data.intercept)
    >>> responses = rng.poisson(rates, size=(4, 10, 4)).astype(float)
    >>> results = compare_models({"ridge": PoissonGLM(alpha=1e-3)}, data.X, data.y,
    ...                          cv=KFold(3), repeats=(X_stimuli, responses), verbose=False)
    >>> results.metrics[-3:]
    ['oracle_correlation', 'correlation_to_average', 'feve']

    Behaviour reaches a CNN inside a grid search: its inner folds are fitted
    and scored with their own rows' running speed, the refitted best model
    predicts each held-out fold with that fold's:

    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_cnnenc import CNNEncoder
    >>> images = rng.standard_normal((120, 1, 6, 6)).astype(np.float32)
    >>> running = rng.standard_normal((120, 1))
    >>> counts = rng.poisson(np.exp(0.5 * running)).astype(float)
    >>> search = GridSearchCV(
    ...     CNNEncoder(n_layers=1, channels=2, max_epochs=2, n_ensemble=1, device="cpu"),
    ...     {"activation": ["elu", "softplus"]}, cv=2)
    >>> results = compare_models({"cnn": search}, images, counts, cv=KFold(2),
    ...                          behavior=running, return_estimators=True, verbose=False)
    >>> results.estimators[("cnn", 0)].n_behavior_covariates_
    1

    On repeated trials of a behaving animal each trial has its own running
    speed, with which the CNN fitted with behaviour predicts it:

    >>> cnn = CNNEncoder(n_layers=1, channels=2, max_epochs=2, n_ensemble=1, device="cpu")
    >>> X_test = rng.standard_normal((8, 1, 6, 6)).astype(np.float32)
    >>> running_test = rng.standard_normal((3, 8, 1))  # 3 repeats of 8 images
    >>> responses = rng.poisson(np.exp(0.5 * running_test)).astype(float)
    >>> results = compare_models({"cnn": cnn}, images, counts, cv=KFold(2), behavior=running,
    ...                          repeats=(X_test, responses), repeats_behavior=running_test,
    ...                          verbose=False)
    >>> results.metrics[-2:]
    ['correlation_to_average', 'feve']
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> estimator.")
    if ORACLE in models:
        raise ValueError(f"{ORACLE!r} is reserved for the true rates given as oracle_rates.")
    for name, model in models.items():
        if not hasattr(model, "fit") or not hasattr(model, "predict"):
            raise TypeError(f"Model {name!r} is not an estimator with fit and predict.")
    metrics, repeat_metrics = _resolve_metrics(scoring, repeats)
    y = np.asarray(y, dtype=float)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D (samples x neurons); got shape {y.shape}.")
    repeats = _check_compare_repeats(repeats, 1 if y.ndim == 1 else y.shape[1])
    check_consistent_length(X, y)
    if groups is not None:
        groups = np.asarray(groups)
        check_consistent_length(y, groups)
    nested = [tuple(pair) for pair in (nested or [])]
    for pair in nested:
        if len(pair) != 2 or any(name not in models for name in pair):
            raise ValueError(
                f"nested must hold (full, reduced) pairs of model names among "
                f"{list(models)}; got {pair!r}."
            )
    covariates = {}
    for key, value in (("behavior", behavior), ("eye_position", eye_position)):
        if value is not None:
            # finite: refused before any fit, not in the middle of the run
            value = check_array(value, ensure_2d=False, allow_nd=True, dtype=float,
                                input_name=key)
            covariates[key] = value.reshape(len(value), -1)
            check_consistent_length(y, covariates[key])
    repeat_covariates = _check_repeat_covariates(
        repeats, covariates,
        {"behavior": repeats_behavior, "eye_position": repeats_eye_position},
        models, repeat_metrics,
    )
    if oracle_rates is not None:
        oracle_rates = np.asarray(oracle_rates, dtype=float)
        if oracle_rates.shape != y.shape:
            raise ValueError(f"oracle_rates must be shaped like y {y.shape}; "
                             f"got {oracle_rates.shape}.")
    # check_cv turns None and an int into contiguous (unshuffled) KFold folds
    cv = check_cv(cv, y, classifier=False)
    splits = list(cv.split(X, y, groups))
    names = list(models) + ([ORACLE] if oracle_rates is not None else [])
    tasks = [(name, fold, train, test) for fold, (train, test) in enumerate(splits)
             for name in names]
    progress = _Progress(len(tasks), verbose)

    # each worker runs at most cores // n_jobs torch and BLAS threads (computed where it
    # runs), so workers and their thread pools never oversubscribe the cores
    workers = 1 if scheduler is not None else n_jobs

    def run(name, train, test):
        estimator = None if name == ORACLE else clone(models[name])
        n_threads = min(torch.get_num_threads(), compute_threads(workers, exclude_busy=False))
        with limit_threads(n_threads):
            return _fit_and_score(name, estimator, X, y, groups, train, test, metrics,
                                  (oracle_rates, oracle_family, oracle_dispersion),
                                  return_estimators, repeat_metrics, repeats, covariates,
                                  repeat_covariates)

    with _backend(scheduler):
        outputs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(run)(name, train, test) for name, _, train, test in tasks
        )
        results = []
        for (name, fold, _, _), output in zip(tasks, outputs, strict=True):
            progress.update(f"{name}, fold {fold}")
            results.append(output)

    n_neurons = 1 if y.ndim == 1 else y.shape[1]
    y_2d = y.reshape(len(y), -1)
    comparison = ModelComparison(models=names, metrics=[*metrics, *repeat_metrics],
                                 n_neurons=n_neurons,
                                 n_folds=len(splits), test_indices=[test for _, test in splits],
                                 n_spikes=y_2d.sum(axis=0))
    _warn_after_run(names, tasks, results, splits, y_2d)
    for (name, fold, _, _), output in zip(tasks, results, strict=True):
        for metric, values in output["scores"].items():
            for neuron, value in enumerate(np.asarray(values, dtype=float).reshape(-1)):
                comparison.scores.append({"model": name, "fold": fold, "neuron": neuron,
                                          "metric": metric, "value": float(value)})
        comparison.fit_times.append({"model": name, "fold": fold,
                                     "fit_time": output["fit_time"],
                                     "score_time": output["score_time"]})
        if output["estimator"] is not None:
            comparison.estimators[(name, fold)] = output["estimator"]
        if output["params"] is not None:
            comparison.best_params.append({"model": name, "fold": fold,
                                           "params": output["params"]})
    for full_name, reduced_name in nested:
        comparison.likelihood_ratio_tests[full_name, reduced_name] = _nested_test(
            models[full_name], models[reduced_name], X, y, groups
        )
    return comparison


def _glm_and_design(estimator, X, y, groups):
    """Fit on all the data; return the final GLM and the design it sees."""
    fit_params = {}
    if groups is not None and isinstance(estimator, BaseSearchCV | PoissonGLMCV):
        fit_params["groups"] = groups
    model = _fitted_model(clone(estimator).fit(X, y, **fit_params))
    if isinstance(model, PoissonGLMCV):
        model = model.estimator_
    final = _final_step(model)
    design = model[:-1].transform(X) if isinstance(model, Pipeline) else X
    if not hasattr(final, "log_likelihood"):
        raise TypeError(
            "A likelihood-ratio test needs models with a log-likelihood; got "
            f"{type(final).__name__}."
        )
    return final, design


def _nested_test(full, reduced, X, y, groups):
    full_model, X_full = _glm_and_design(full, X, y, groups)
    reduced_model, X_reduced = _glm_and_design(reduced, X, y, groups)
    return likelihood_ratio_test(full_model, reduced_model, X_full, X_reduced, y)

