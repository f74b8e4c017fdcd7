"""The ``cnnenc`` command: compare encoding models, fit one, predict with it.

``cnnenc demo``
    The main job on built-in data: a simulated V1 population (Gabor simple
    cells and energy-model complex cells responding to natural image patches)
    fitted by a Poisson GLM, an LN model and a CNN, each with a small grid
    search, compared by nested cross-validation neuron by neuron.
``cnnenc compare --data FILE``
    The same on your data (``.npz`` with ``X``, ``y``, optional ``groups``, or
    an NWB file).
``cnnenc fit`` / ``cnnenc predict``
    Fit one model and save it (versions recorded); predict on new stimuli.

Every error is reported on one line (``cnnenc: error: ...``, exit status 2).
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main"]

MODEL_NAMES = ("glm", "ln", "cnn")


def _build_models(names, input_shape, device, quick, random_state=0,
                  glm_alphas=(0.3, 1.0, 3.0), input_type="auto", grouped=False) -> dict:
    """Each named model wrapped in a small search (nested CV in compare_models); the GLM
    searches its alphas with PoissonGLMCV's batched path."""
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

    from . import CNNEncoder, LNModel, PoissonGLMCV

    # with groups (trials, sessions) the inner folds keep each group together too
    inner = GroupKFold(2) if grouped else KFold(2)
    # Grids sized for a few thousand samples of a few hundred pixels: stimulus
    # pixels are many and natural images heavy-tailed, so the GLM needs a strong
    # ridge, and softplus links keep held-out rates of the LN model finite.
    factories = {
        # one batched, warm-started path over the alphas instead of a grid search
        "glm": lambda: PoissonGLMCV(
            alphas=list(glm_alphas[-2:] if quick else glm_alphas), cv=inner, device=device),
        "ln": lambda: GridSearchCV(
            LNModel(n_filters=2, link="softplus", alpha=0.1, n_init=2, max_iter=300,
                    device=device, random_state=random_state),
            {"nonlinearity": ["softplus", "square"]}, cv=inner),
        "cnn": lambda: GridSearchCV(
            CNNEncoder(input_shape=input_shape, input_type=input_type, device=device,
                       random_state=random_state, max_epochs=15 if quick else 30),
            {"channels": [8] if quick else [8, 16]}, cv=inner),
    }
    unknown = [name for name in names if name not in factories]
    if unknown:
        raise ValueError(f"Unknown model(s) {unknown}; choose among {list(MODEL_NAMES)}.")
    return {name: factories[name]() for name in names}


def _print_table(results, out=None) -> None:
    out = out or sys.stdout
    rows = results.summary()
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


def _demo(args) -> int:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold

    from .datasets import make_v1_population
    from .model_selection import compare_models

    n_samples = 900 if args.quick else 3000
    data = make_v1_population(n_samples=n_samples, n_simple=4, n_complex=4, image_size=16,
                              random_state=args.seed)
    X = data.X.reshape(len(data.X), -1)
    input_shape = (1, *data.X.shape[1:])
    models = _build_models(MODEL_NAMES, input_shape, args.device, args.quick, args.seed)
    print(f"Simulated V1 population: {data.y.shape[1]} neurons (4 simple, 4 complex cells), "
          f"{n_samples} natural image patches of {data.X.shape[1]}x{data.X.shape[2]} pixels; "
          "3-fold cross-validation, each model grid-searched inside every training fold.")
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the demo caps the non-convex LN fits at 300 iterations on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
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


def _load_data(path: str, stimulus: str | None, bin_s: float | None):
    from .io import load_hdf5, load_npz, load_nwb

    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix in (".h5", ".hdf5"):
        return load_hdf5(path)
    if suffix == ".nwb":
        return load_nwb(path, stimulus=stimulus, bin_s=bin_s)
    raise ValueError(f"{path}: expected a .npz or .nwb file, or an .h5 file.")


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

    from .data import LazyArray
    from .model_selection import compare_models

    data = _load_data(args.data, args.stimulus, args.bin_s)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    # a CNN alone streams an HDF5 stimulus set; GLM and LN models read it in
    X = data.X if isinstance(data.X, LazyArray) and names == ["cnn"] else np.asarray(
        data.X, dtype=float)
    input_shape = _input_shape(X, args.input_shape, args.input_type)
    X_flat = X.reshape(len(X), -1)
    if "cnn" in names and input_shape is None:
        raise ValueError("cnn needs --input-shape (e.g. 1,32,32) for flat X.")
    grouped = data.groups is not None
    models = _build_models(names, input_shape, args.device, quick=False,
                           glm_alphas=(1e-3, 1e-2, 0.1, 1.0), input_type=args.input_type,
                           grouped=grouped)
    cv = GroupKFold(args.cv) if grouped else KFold(args.cv)
    results = compare_models(models, X_flat, data.y, cv=cv, n_jobs=args.n_jobs,
                             groups=data.groups, scheduler=args.scheduler, verbose=True)
    print()
    _print_table(results)
    paths = _write_outputs(results, Path(args.out))
    print(f"\nWrote {len(paths)} files to {args.out}/")
    return 0


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
    data = _load_data(args.data, args.stimulus, args.bin_s)
    params = _parse_params(args.param)
    if args.input_type is not None:
        if args.model != "cnn":
            raise ValueError("--input-type applies to --model cnn only.")
        params.setdefault("input_type", args.input_type)
    model = classes[args.model](**params)
    model.fit(data.X, data.y)
    path = save_model(model, args.out)
    print(f"Fitted {model!r}; training log-likelihood {model.score(data.X, data.y):.4f} "
          f"nats/bin; saved to {path}")
    return 0


def _predict(args) -> int:
    from .io import load_model

    model = load_model(args.model)
    data = _load_data(args.data, args.stimulus, args.bin_s)
    prediction = model.predict(data.X)
    np.savez(args.out, y_pred=prediction)
    print(f"Predicted {prediction.shape} responses; saved y_pred to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnenc", description=__doc__.split("\n\n")[0])
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
                             help=".npz or .h5 (X, y, groups; .h5 X is streamed) or .nwb file")
        command.add_argument("--stimulus", help="NWB: name of the stimulus time series")
        command.add_argument("--bin-s", type=float, help="NWB: bin width in seconds")

    compare = commands.add_parser("compare", help="compare models on your data")
    data_arguments(compare)
    compare.add_argument("--models", default="glm,ln,cnn", help="comma-separated: glm,ln,cnn")
    compare.add_argument("--cv", type=int, default=5, help="number of contiguous folds")
    compare.add_argument("--out", default="cnnenc-compare")
    compare.add_argument("--n-jobs", type=int, default=None)
    compare.add_argument("--scheduler", help="dask scheduler address, e.g. tcp://host:8786")
    compare.add_argument("--device", default="auto", help="cpu, cuda or auto")
    compare.add_argument("--input-shape", help="CNN input shape for flat X, e.g. 1,32,32")
    compare.add_argument("--input-type", default="auto",
                         choices=("auto", "image", "time_series", "video"),
                         help="CNN input: 3-D X is read as images unless time_series; "
                              "video: X is (n, frames, H, W) or (n, frames, C, H, W)")
    compare.set_defaults(run=_compare)

    fit = commands.add_parser("fit", help="fit one model and save it")
    data_arguments(fit)
    fit.add_argument("--model", default="glm", help="glm, ln or cnn")
    fit.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a constructor parameter (repeatable), e.g. alpha=0.01")
    fit.add_argument("--input-type", default=None,
                     choices=("auto", "image", "time_series", "video"),
                     help="cnn: how to read X (same as --param input_type=...)")
    fit.add_argument("--out", default="model.joblib")
    fit.set_defaults(run=_fit)

    predict = commands.add_parser("predict", help="predict with a saved model")
    data_arguments(predict)
    predict.add_argument("--model", required=True, help="a file written by cnnenc fit")
    predict.add_argument("--out", default="predictions.npz")
    predict.set_defaults(run=_predict)
    return parser


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
