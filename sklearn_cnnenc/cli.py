"""The ``cnnenc`` command: compare encoding models, fit one, predict with it.

``cnnenc demo``
    The main job on built-in data: a simulated V1 population (Gabor simple
    cells and energy-model complex cells responding to natural image patches)
    fitted by a Poisson GLM (its penalty path searched), an LN model (a small
    grid search) and a CNN (its data-dependent defaults), compared by nested
    cross-validation neuron by neuron. ``--quick``: fewer patches, epochs and
    iterations, and one softplus LN model instead of its search.
``cnnenc compare --data FILE``
    The same on your data (``.npz`` with ``X``, ``y``, optional ``groups``,
    ``behavior`` and ``eye_position``; ``--missing mask`` for NaN-padded
    sessions; or an NWB file). The CNN models the behaviour (a gain) and the
    eye position (a shifter of its Gaussian readout, which it then uses);
    the GLM and LN model are stimulus-only baselines.
``cnnenc fit`` / ``cnnenc predict``
    Fit one model and save it (versions recorded); predict on new stimuli.

All commands read data the same way (``--input-shape``, ``--input-type``,
``--n-lags``). Every error is reported on one line (``cnnenc: error: ...``,
exit status 2).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["glm_alpha_grid", "main"]

MODEL_NAMES = ("glm", "ln", "cnn")


def glm_alpha_grid(X, y, *, l1_ratio: float = 0.0, n_alphas: int = 9,
                   decades: float = 4.0) -> list[float]:
    """A penalty grid for :class:`~sklearn_cnnenc.PoissonGLM` scaled to the data.

    From ``alpha_max``, the smallest penalty that sets every coefficient of
    every neuron to zero (for ridge, ``l1_ratio=0``, that of an elastic net
    with ``l1_ratio=1e-3``, as glmnet does), down ``decades`` decades in
    ``n_alphas`` log-spaced steps. At the zero-coefficient solution the
    gradient of the mean negative log-likelihood is ``X_c.T (y - ybar) / n``
    for the canonical link, so ``alpha_max = max |X_c.T (y - ybar)| / (n rho)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_neurons)
    l1_ratio : float, default=0.0
    n_alphas : int, default=9
    decades : float, default=4.0

    Returns
    -------
    alphas : list of float
        Decreasing, ``alphas[0] = alpha_max``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cnnenc.cli import glm_alpha_grid
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5))
    >>> y = rng.poisson(np.exp(X[:, 0] * 0.5))
    >>> alphas = glm_alpha_grid(X, y)
    >>> len(alphas), round(alphas[0] / alphas[-1])
    (9, 10000)
    """
    from sklearn.utils.validation import check_array

    X = check_array(X, dtype=float, input_name="X")
    y = check_array(np.asarray(y, dtype=float).reshape(len(X), -1), input_name="y")
    if not (isinstance(n_alphas, int) and n_alphas >= 1):
        raise ValueError(f"n_alphas must be an integer >= 1; got {n_alphas!r}.")
    if not decades > 0:
        raise ValueError(f"decades must be positive; got {decades!r}.")
    gradient = np.abs((X - X.mean(axis=0)).T @ (y - y.mean(axis=0))) / len(X)
    alpha_max = float(np.max(gradient)) / max(l1_ratio, 1e-3)
    if not alpha_max > 0:
        raise ValueError("X and y are uncorrelated or constant: no penalty grid can be scaled.")
    return [float(a) for a in alpha_max * np.logspace(0, -decades, n_alphas)]


def _build_models(names, input_shape, device, quick, random_state=0,
                  glm_alphas=(0.3, 1.0, 3.0), input_type="auto", grouped=False,
                  n_lags=None, grids=None) -> dict:
    """Each named model wrapped in a small search (nested CV in compare_models); the GLM
    searches its alphas with PoissonGLMCV's batched path."""
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

    from . import CNNEncoder, LNModel, PoissonGLMCV
    from .model_selection import BlockedKFold

    # with groups (trials, sessions) the inner folds keep each group together too;
    # lagged designs keep the lag window between inner training and test blocks
    if grouped:
        inner = GroupKFold(2)
    elif n_lags:
        inner = BlockedKFold(2, gap=n_lags)
    else:
        inner = KFold(2)
    # every search reports the first failed fit (bad data, a bad device), not
    # "All the 8 fits failed"
    search = {"cv": inner, "error_score": "raise"}
    # Grids sized for a few thousand samples of a few hundred pixels: stimulus
    # pixels are many and natural images heavy-tailed, so the GLM needs a strong
    # ridge, and softplus links keep held-out rates of the LN model finite.
    alphas = list(glm_alphas[-2:] if quick else glm_alphas) if glm_alphas is not None else None
    models = {
        # one batched, warm-started path over the alphas instead of a grid search
        "glm": (PoissonGLMCV(alphas=alphas, cv=inner, device=device), None),
        # Quick mode: one softplus model (the search chose it in every fold of the
        # demo, at five fits per fold instead of one, the square candidates running to
        # the iteration cap), stopped at 100 L-BFGS iterations (it converges in about
        # as many on the demo's 600 training patches).
        "ln": (LNModel(n_filters=2, nonlinearity="softplus", link="softplus", alpha=0.1,
                       n_init=2, max_iter=100 if quick else 300, device=device,
                       random_state=random_state),
               None if quick else {"nonlinearity": ["softplus", "square"]}),
        # no inner search: the CNN's defaults follow the data (CNNEncoder's
        # "Defaults that follow the data"); a search of a few architectures, each
        # fitted twice more per fold, tripled its cost for no gain in the demo.
        # Quick mode trains one model instead of the small-data ensemble.
        "cnn": (CNNEncoder(input_shape=input_shape, input_type=input_type, device=device,
                           random_state=random_state, max_epochs=15 if quick else 30,
                           n_ensemble=1 if quick else "auto"),
                None),
    }
    unknown = [name for name in names if name not in models]
    if unknown:
        raise ValueError(f"Unknown model(s) {unknown}; choose among {list(MODEL_NAMES)}.")
    for name, overrides in (grids or {}).items():
        if name not in names:
            raise ValueError(f"--grid {name}:...: {name!r} is not among the compared models "
                             f"{names}.")
        estimator, grid = models[name]
        if name == "glm":  # the GLM's path: its alphas (and l1_ratios) are the grid
            renamed = {"alpha": "alphas", "l1_ratio": "l1_ratio"}
            for param in overrides:
                if param not in renamed:
                    raise ValueError(f"--grid glm:{param}=...: the GLM's path searches alpha "
                                     "and l1_ratio only; has no parameter "
                                     f"{param!r} to search.")
            estimator.set_params(**{renamed[k]: v for k, v in overrides.items()})
            continue
        valid = estimator.get_params()
        for param in overrides:
            if param not in valid:
                raise ValueError(f"--grid {name}:{param}=...: {type(estimator).__name__} "
                                 f"has no parameter {param!r}.")
        # a one-value "grid" is a setting: fitted once, not searched
        estimator.set_params(**{k: v[0] for k, v in overrides.items() if len(v) == 1})
        grid = {k: v for k, v in (grid or {}).items() if k not in overrides}
        grid.update({k: v for k, v in overrides.items() if len(v) > 1})
        models[name] = (estimator, grid or None)
    return {name: estimator if grid is None else GridSearchCV(estimator, grid, **search)
            for name, (estimator, grid) in models.items() if name in names}


def _parse_grids(items: list[str]) -> dict:
    """``["glm:alpha=1e-2,1,100"]`` -> ``{"glm": {"alpha": [0.01, 1, 100]}}``."""
    grids: dict = {}
    for item in items:
        name, colon, rest = item.partition(":")
        param, equals, values = rest.partition("=")
        if not (colon and equals and name.strip() and param.strip() and values.strip()):
            raise ValueError(f"--grid {item!r}: expected MODEL:PARAM=V1,V2,... "
                             "(e.g. glm:alpha=1e-2,1,100).")
        parsed = []
        for value in values.split(","):
            try:
                parsed.append(ast.literal_eval(value.strip()))
            except (ValueError, SyntaxError):
                parsed.append(value.strip())
        grids.setdefault(name.strip(), {})[param.strip()] = parsed
    return grids


def _print_table(results, out=None, average="uniform") -> None:
    out = out or sys.stdout
    rows = results.summary(average=average)
    has_oracle = "fraction_of_oracle" in rows[0]
    header = f"{'model':<10} {'held-out LL/bin':>16} {'bits/spike (mean ± sem)':>25}"
    if has_oracle:
        header += f" {'fraction of oracle':>19}"
    header += f" {'fit time/fold':>14}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in rows:
        line = (f"{row['model']:<10} {row['log_likelihood']:>16.4f} "
                f"{row['bits_per_spike']:>15.3f} ± {row['bits_per_spike_sem']:<7.3f}")
        if has_oracle:
            line += f" {row['fraction_of_oracle']:>19.2f}"
        line += f" {row['fit_time']:>12.1f} s"
        print(line, file=out)


def _print_cell_types(results, cell_type, out=None) -> None:
    """Held-out bits/spike of each model for each simulated cell type."""
    out = out or sys.stdout
    values = results.per_neuron("bits_per_spike")
    types = sorted(set(cell_type))
    print(f"\n{'bits/spike':<10} " + " ".join(f"{t + ' cells':>15}" for t in types), file=out)
    for name in results.models:
        cells = " ".join(f"{np.nanmean(values[name][cell_type == t]):>15.3f}" for t in types)
        print(f"{name:<10} {cells}", file=out)


def _write_outputs(results, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = results.to_csv(out_dir)
    paths.append(results.to_json(out_dir / "results.json"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        from .plotting import plot_model_comparison

        reference = "glm" if "glm" in results.models else None
        figure = plot_model_comparison(results, reference=reference)
        figure.savefig(out_dir / "model_comparison.png", dpi=120)
        paths.append(out_dir / "model_comparison.png")
    except ImportError:
        print("matplotlib not installed: figures skipped", file=sys.stderr)
    return paths


def _check_device(device: str) -> None:
    """A bad ``--device`` fails before any data are simulated, read or fitted."""
    from ._base import resolve_device

    resolve_device(device)


def _demo(args) -> int:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold

    from .datasets import make_v1_population
    from .model_selection import GridEdgeWarning, compare_models

    _check_device(args.device)
    n_samples = 900 if args.quick else 3000
    data = make_v1_population(n_samples=n_samples, n_simple=4, n_complex=4, image_size=16,
                              random_state=args.seed)
    X = data.X.reshape(len(data.X), -1)
    input_shape = (1, *data.X.shape[1:])
    models = _build_models(MODEL_NAMES, input_shape, args.device, args.quick, args.seed)
    print(f"Simulated V1 population: {data.y.shape[1]} neurons (4 simple, 4 complex cells), "
          f"{n_samples} natural image patches of {data.X.shape[1]}x{data.X.shape[2]} pixels; "
          "3-fold cross-validation; "
          + ("the GLM's penalty is searched inside every training fold, the LN model "
             "is a softplus one (searched in the full demo), "
             if args.quick else
             "the GLM and the LN model are searched inside every training fold, ")
          + "the CNN runs on its data-dependent defaults.")
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the demo caps the non-convex LN fits (300 iterations, quick: 100) on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        # and its grids are two values around known-good settings (quick) on purpose
        warnings.simplefilter("ignore", GridEdgeWarning)
        results = compare_models(models, X, data.y, cv=KFold(3), n_jobs=args.n_jobs,
                                 oracle_rates=data.mean, verbose=True, return_estimators=True)
    print(f"\nHeld-out comparison ({time.perf_counter() - start:.0f} s):\n")
    _print_table(results)
    _print_cell_types(results, data.cell_type)
    out_dir = Path(args.out)
    paths = _write_outputs(results, out_dir)
    paths += _demo_figures(results, data, X, out_dir)
    print(f"\nWrote {len(paths)} files to {out_dir}/")
    return 0


def _demo_figures(results, data, X, out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from .plotting import plot_filters

    paths = []
    cnn = results.estimators[("cnn", 0)]
    figure = plot_filters(cnn)
    figure.savefig(out_dir / "cnn_first_layer_filters.png", dpi=120)
    paths.append(out_dir / "cnn_first_layer_filters.png")

    test = results.test_indices[0]
    names = [name for name in results.models if name != "oracle"]
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        prediction = results.estimators[(name, 0)].predict(X[test])
        axis.scatter(data.mean[test].ravel(), prediction.ravel(), s=3, alpha=0.3)
        top = float(np.percentile(data.mean[test], 99.5))
        axis.plot([0, top], [0, top], color="0.4", linestyle="--", linewidth=0.8)
        axis.set(xlim=(0, top), ylim=(0, top), xlabel="true rate (spikes/bin)",
                 ylabel="predicted rate", title=name)
    figure.tight_layout()
    figure.savefig(out_dir / "predicted_vs_true_rates.png", dpi=120)
    paths.append(out_dir / "predicted_vs_true_rates.png")
    return paths


def _load_data(path: str, stimulus: str | None, bin_s: float | None, require_y: bool = True,
               behavior: str | None = None):
    from .io import load_hdf5, load_npz, load_nwb

    suffix = Path(path).suffix.lower()
    if suffix in (".npz", ".h5", ".hdf5"):
        given = [flag for flag, value in (("--stimulus", stimulus), ("--bin-s", bin_s))
                 if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} apply to NWB files only; {path} is a "
                             f"{suffix} whose X and y are used as they are.")
    if suffix == ".npz":
        return load_npz(path, require_y=require_y)
    if suffix in (".h5", ".hdf5"):
        return load_hdf5(path)
    if suffix == ".nwb":
        return load_nwb(path, stimulus=stimulus, bin_s=bin_s, behavior=behavior)
    raise ValueError(f"{path}: expected a .npz or .nwb file, or an .h5 file.")


def _design(args, require_y: bool = True, lazy: bool = False):
    """The one reading of a data file shared by fit, compare and predict.

    Returns the flat design ``X`` (lagged with ``--n-lags``), ``y`` (None for
    predict without responses), ``groups``, and the CNN's input shape, input
    type and flat input (``X_cnn``; with lags the same lagged design as ``X``, which
    the CNN reads with ``input_type="lagged"``: one design for every model).
    """
    from sklearn.utils import Bunch

    from .data import LazyArray
    from .preprocessing import TimeLagger

    data = _load_data(args.data, args.stimulus, args.bin_s, require_y=require_y,
                      behavior=getattr(args, "behavior", None))
    n_lags = getattr(args, "n_lags", None)
    # a CNN alone streams an HDF5 stimulus set; GLM and LN models read it in
    X = data.X if lazy and n_lags is None and isinstance(data.X, LazyArray) else np.asarray(
        data.X, dtype=float)
    input_type = args.input_type
    if n_lags is not None:
        if n_lags < 1:
            raise ValueError(f"--n-lags must be a positive integer; got {n_lags}.")
        if X.ndim > 2:
            raise ValueError(f"--n-lags needs a 1-D stimulus (one or a few signals per time "
                             f"bin); X has shape {X.shape}.")
        signals = X.reshape(len(X), -1)
        X_flat = TimeLagger(n_lags=n_lags).fit_transform(signals)
        if input_type in ("image", "video"):
            raise ValueError(f"--n-lags builds a time series; --input-type {input_type} does "
                             "not apply.")
        # the CNN reads TimeLagger's design itself (lag-major, lag 0 first)
        input_type = "lagged"
        input_shape = (n_lags, signals.shape[1])
        if args.input_shape and _input_shape(X, args.input_shape, input_type) != input_shape:
            raise ValueError(f"--input-shape {args.input_shape} does not match --n-lags "
                             f"{n_lags} on {signals.shape[1]} signal(s): expected "
                             f"{','.join(map(str, input_shape))} (lags, signals).")
        X_cnn = X_flat
    else:
        input_shape = _input_shape(X, args.input_shape, input_type)
        X_flat = X.reshape(len(X), -1)
        if input_shape is not None and int(np.prod(input_shape)) != X_flat.shape[1]:
            raise ValueError(f"--input-shape {','.join(map(str, input_shape))} has "
                             f"{int(np.prod(input_shape))} values but each sample of X has "
                             f"{X_flat.shape[1]}.")
        X_cnn = X_flat
    y = None if data.get("y") is None else np.asarray(data.y, dtype=float)
    return Bunch(X=X_flat, X_cnn=X_cnn, y=y, groups=data.get("groups"),
                 input_shape=input_shape, input_type=input_type, n_lags=n_lags,
                 behavior=data.get("behavior"), eye_position=data.get("eye_position"))


def _input_shape(X: np.ndarray, given: str | None, input_type: str):
    """The CNN's input shape: given, or read off >2-D stimuli (3-D: images unless told)."""
    if given:
        try:
            return tuple(int(size) for size in given.split(","))
        except ValueError:
            raise ValueError(f"--input-shape {given!r}: expected integers like 1,32,32.") from None
    if input_type == "video" and X.ndim in (4, 5):
        return tuple(X.shape[1:])
    if X.ndim == 3:
        return X.shape[1:] if input_type == "time_series" else (1, *X.shape[1:])
    if X.ndim == 4:
        return X.shape[1:]
    return None


def _compare(args) -> int:
    from sklearn.model_selection import GroupKFold, KFold

    from .model_selection import BlockedKFold, compare_models

    names = [name.strip() for name in args.models.split(",") if name.strip()]
    _check_device(args.device)
    data = _design(args, lazy=names == ["cnn"])
    if "cnn" in names and data.input_shape is None:
        raise ValueError("cnn needs --input-shape (e.g. 1,32,32) for flat X.")
    grouped = data.groups is not None
    grids = _parse_grids(args.grid)
    if data.get("eye_position") is not None and "cnn" in names:
        # a one-value grid is a setting: the CNN reads out with a shifted Gaussian
        _eye_readout(grids.setdefault("cnn", {}).setdefault("readout", ["gaussian"]),
                     "--grid cnn:readout=")
    # the GLM's built-in grid is scaled to the data, so that it brackets the optimum
    y_grid = data.y
    if args.missing == "mask":  # missing entries at their neuron's mean: no gradient
        y_grid = np.where(np.isnan(data.y), np.nanmean(data.y, axis=0), data.y)
    alphas = glm_alpha_grid(data.X, y_grid) if "glm" in names else None
    models = _build_models(names, data.input_shape, args.device, quick=False,
                           glm_alphas=alphas, input_type=data.input_type,
                           grouped=grouped, n_lags=data.n_lags, grids=grids)
    behavior = data.get("behavior")
    models = _for_sessions(models, args.missing)
    if grouped:
        cv = GroupKFold(args.cv)
    elif data.n_lags:
        cv = BlockedKFold(args.cv, gap=data.n_lags)
    else:
        cv = KFold(args.cv)
    # a CNN alone may stream its stimuli from disk; with other models (or lags) every
    # model reads the same in-memory design
    X = data.X_cnn if names == ["cnn"] else data.X
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = compare_models(models, X, data.y, cv=cv, n_jobs=args.n_jobs,
                                 groups=data.groups, scheduler=args.scheduler, verbose=True,
                                 behavior=behavior, eye_position=data.get("eye_position"))
    # compare_models summarises convergence, grid-edge and silent-unit problems per
    # model after its progress bar: one line each here
    notes = []
    for warning in caught:
        if _is_summary(warning):
            notes.append(f"note: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    print()
    for note in notes:
        print(note, file=sys.stderr)
    _print_table(results, average=args.average)
    paths = _write_outputs(results, Path(args.out))
    print(f"\nWrote {len(paths)} files to {args.out}/")
    return 0


def _is_summary(warning) -> bool:
    from sklearn.exceptions import ConvergenceWarning

    from .model_selection import GridEdgeWarning, SilentUnitWarning

    return issubclass(warning.category, ConvergenceWarning | GridEdgeWarning | SilentUnitWarning)


def _for_sessions(models: dict, missing: str) -> dict:
    """Adapt the compared models to NaN-padded responses and to behaviour.

    ``missing="mask"``: every model masks NaN responses (the GLM's
    ``PoissonGLMCV`` path too). With behaviour or eye position,
    compare_models passes them to the CNN, also through its search
    (``--grid cnn:...``), whose inner folds are scored with their own
    behaviour and eye position (the CNN then has ``readout="gaussian"``, set
    by ``_compare``); the GLM and LN model stay stimulus-only baselines.
    """
    adapted = dict(models)
    if missing == "mask":
        for name, model in models.items():
            if name == "glm":  # PoissonGLMCV: its own path
                model.set_params(missing_responses="mask")
            else:
                getattr(model, "estimator", model).set_params(missing_responses="mask")
    return adapted


def _eye_readout(readouts: list, flag: str) -> None:
    """Eye positions shift a Gaussian readout: refuse another readout for the CNN."""
    if list(readouts) != ["gaussian"]:
        raise ValueError(f"The data's eye_position shifts the read-out positions of a Gaussian "
                         f"readout: the CNN needs readout='gaussian' (the default with eye "
                         f"positions); {flag} gives {list(readouts)}.")


def _fitted_covariates(model, data) -> dict:
    """The data's behaviour and eye position for ``predict``: exactly those of the fit."""
    fitted = {"behavior": getattr(model, "n_behavior_covariates_", 0) > 0,
              "eye_position": getattr(model, "uses_eye_position_", False)}
    covariates = {}
    for name, label in (("behavior", "behaviour"), ("eye_position", "eye position")):
        given = data.get(name) is not None
        article = "an" if name[0] in "aeiou" else "a"
        if fitted[name] and not given:
            raise ValueError(f"The model was fitted with {label}: the data need {article} "
                             f"{name} array.")
        if given and not fitted[name]:
            raise ValueError(f"The data have {article} {name} array but the model was fitted "
                             f"without {label}, so it cannot use it: refit on data with {name} "
                             "(cnnenc fit), or predict from a file without it.")
        if given:
            covariates[name] = data[name]
    return covariates


def _parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE.")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _fit(args) -> int:
    from . import CNNEncoder, LNModel, PoissonGLM
    from .io import save_model

    classes = {"glm": PoissonGLM, "ln": LNModel, "cnn": CNNEncoder}
    if args.model not in classes:
        raise ValueError(f"Unknown model {args.model!r}; choose among {list(classes)}.")
    # a CNN streams an .h5 stimulus set (never loaded); GLM and LN models read it in
    data = _design(args, lazy=args.model == "cnn")
    params = _parse_params(args.param)
    X = data.X
    if args.model == "cnn":
        if data.input_shape is None and "input_shape" not in params:
            raise ValueError("cnn needs --input-shape (e.g. 1,32,32) for flat X.")
        params.setdefault("input_shape", data.input_shape)
        params.setdefault("input_type", data.input_type)
        if data.get("eye_position") is not None:
            _eye_readout([params.setdefault("readout", "gaussian")], "--param readout=")
        X = data.X_cnn
    model = classes[args.model](**params)
    # a GLM or LN model refuses them (one line: it does not model them)
    covariates = {name: data[name] for name in ("behavior", "eye_position")
                  if data.get(name) is not None}
    model.fit(X, data.y, **covariates)
    path = save_model(model, args.out)
    score = model.score(X, data.y, **covariates)
    print(f"Fitted {model!r}; training log-likelihood {score:.4f} "
          f"nats/bin; saved to {path}")
    return 0


def _predict(args) -> int:
    from . import CNNEncoder
    from .io import load_model

    model = load_model(args.model)
    data = _design(args, require_y=False, lazy=isinstance(model, CNNEncoder))
    X = data.X_cnn if isinstance(model, CNNEncoder) else data.X
    covariates = _fitted_covariates(model, data)
    prediction = model.predict(X, **covariates)
    np.savez(args.out, y_pred=prediction)
    print(f"Predicted {prediction.shape} responses; saved y_pred to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cnnenc",
                                     description=_plain(__doc__.split("\n\n")[0]))
    parser.add_argument("--version", action="version", version=f"cnnenc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="compare GLM, LN and CNN on simulated V1 data")
    demo.add_argument("--quick", action="store_true", help="a sub-minute version")
    demo.add_argument("--out", default="cnnenc-demo", help="output folder")
    demo.add_argument("--n-jobs", type=int, default=None)
    demo.add_argument("--device", default="auto", help="cpu, cuda or auto")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    def data_arguments(command):
        command.add_argument("--data", required=True,
                             help=".npz (X, y, groups, behavior, eye_position: n x 2, "
                                  "for a CNN with a Gaussian readout) or .h5 (X, y, "
                                  "groups; .h5 X is streamed) or .nwb file")
        command.add_argument("--stimulus", help="NWB only: name of the stimulus time series")
        command.add_argument("--bin-s", type=float, help="NWB only: bin width in seconds")
        command.add_argument("--behavior",
                             help="NWB only: name of a behaviour time series (an .npz "
                                  "gives it as its behavior array)")
        command.add_argument("--input-shape", help="CNN input shape for flat X, e.g. 1,32,32")
        command.add_argument("--input-type", default="auto",
                             choices=("auto", "image", "time_series", "video"),
                             help="CNN input: 3-D X is read as images unless time_series; "
                                  "video: X is (n, frames, H, W) or (n, frames, C, H, W)")
        command.add_argument("--n-lags", type=int,
                             help="1-D stimulus: use its last N bins (TimeLagger; "
                                  "contiguous folds with a gap of N bins)")

    compare = commands.add_parser("compare", help="compare models on your data")
    data_arguments(compare)
    compare.add_argument("--models", default="glm,ln,cnn", help="comma-separated: glm,ln,cnn")
    compare.add_argument("--cv", type=int, default=5, help="number of contiguous folds")
    compare.add_argument("--missing", default="raise", choices=("raise", "mask"),
                         help="mask: NaN in y marks neurons not recorded (several sessions)")
    compare.add_argument("--out", default="cnnenc-compare")
    compare.add_argument("--n-jobs", type=int, default=None)
    compare.add_argument("--scheduler", help="dask scheduler address, e.g. tcp://host:8786")
    compare.add_argument("--device", default="auto", help="cpu, cuda or auto")
    compare.add_argument("--grid", action="append", default=[], metavar="MODEL:PARAM=V1,V2",
                         help="replace a model's grid, e.g. glm:alpha=1e-2,1,100 or "
                              "cnn:channels=16,32 (repeatable; one value sets it, no search)")
    compare.add_argument("--average", default="uniform", choices=("uniform", "spikes"),
                         help="average over neurons: uniform, or weighted by spike counts")
    compare.set_defaults(run=_compare)

    fit = commands.add_parser("fit", help="fit one model and save it")
    data_arguments(fit)
    fit.add_argument("--model", default="glm", help="glm, ln or cnn")
    fit.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a constructor parameter (repeatable), e.g. alpha=0.01")
    fit.add_argument("--out", default="model.joblib")
    fit.set_defaults(run=_fit)

    predict = commands.add_parser("predict", help="predict with a saved model")
    data_arguments(predict)
    predict.add_argument("--model", required=True, help="a file written by cnnenc fit")
    predict.add_argument("--out", default="predictions.npz")
    predict.set_defaults(run=_predict)
    return parser


def _plain(text: str) -> str:
    """Docstring text without reStructuredText markup, for --help."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def main(argv: list[str] | None = None) -> int:
    """Run the ``cnnenc`` command line; return its exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on an error (reported on one line).

    Examples
    --------
    >>> from sklearn_cnnenc.cli import main
    >>> main(["predict", "--data", "missing.npz", "--model", "missing.joblib"])
    2
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, ImportError, KeyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"cnnenc: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
