"""CNNEncoder training speed and memory, and its accuracy against the oracle.

Part ``speed`` trains the *same* module (CNNEncoder's default architecture on
``make_v1_population`` patches) on the same data, with the same batch size,
learning rate, validation split and number of epochs, three ways:

* ``CNNEncoder.fit`` (skorch underneath, with the library's tensor data path);
* a hand-written PyTorch loop on the same pre-loaded tensors (index gathers
  of a permutation, Adam on the NLL plus the module's penalty, a validation
  pass, ReduceLROnPlateau and a copy of the best weights every epoch: the
  work CNNEncoder does, written by hand);
* skorch's ``NeuralNetRegressor`` with its default data handling (a
  ``Dataset`` indexed per sample and a ``DataLoader`` that collates).

Each variant runs in a fresh subprocess (so peak memory is its own) and
reports the median epoch time (first epoch excluded: warm-up), throughput
(training samples per second), the fit's wall time and peak memory above
the loaded data: resident memory on the CPU, ``max_memory_allocated`` on
CUDA. Target: CNNEncoder's epoch time <= 1.10x the hand-written loop's, and
at most one copy of the training data held as tensors.

Part ``accuracy`` fits a default ``CNNEncoder`` (and a ``PoissonGLM`` for
reference) on a benchmark-sized population and reports held-out bits per
spike as a fraction of the oracle's (the true rates). Target: >= 90%.

Usage::

    python benchmarks/bench_cnn.py                      # both parts, CPU
    python benchmarks/bench_cnn.py --device cuda        # both parts, GPU
    python benchmarks/bench_cnn.py --part speed --n-samples 5000 --epochs 3  # quick check

Results are printed and written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("hand_written", "cnnencoder", "skorch_default")
SEED = 0


# --------------------------------------------------------------------- data
def make_data(n_samples, image_size, n_neurons, random_state=SEED):
    from sklearn_cnnenc.datasets import make_v1_population

    data = make_v1_population(
        n_samples,
        n_simple=n_neurons // 2,
        n_complex=n_neurons - n_neurons // 2,
        image_size=image_size,
        random_state=random_state,
    )
    return data


def model_options(args) -> dict:
    """CNNEncoder's defaults, with early stopping that never triggers (fixed epochs)."""
    return dict(
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.epochs + 1,
        device=args.device,
        random_state=SEED,
    )


def _rss_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------ workers
def build_module(options, X, y):
    """The module CNNEncoder builds (same architecture, initialisation and intercepts)."""
    import torch

    from sklearn_cnnenc import CNNEncoder
    from sklearn_cnnenc.families import get_family
    from sklearn_cnnenc.links import get_link
    from sklearn_cnnenc.nn import EncodingModule

    estimator = CNNEncoder(**options)
    family = get_family(estimator.family)
    link = get_link(estimator._default_link(family))
    X_checked = estimator._validate_X(X, reset=True)
    torch.manual_seed(SEED)
    predictor = estimator._build_predictor(X_checked, y, torch.float32)
    module = EncodingModule(predictor, link, y.shape[1])
    estimator._initialize_module(module, family, link, y, np.ones(len(y)))
    return module, family, link, X_checked, estimator


def run_cnnencoder(args, X, y):
    from sklearn_cnnenc import CNNEncoder

    model = CNNEncoder(**model_options(args))
    start = time.perf_counter()
    model.fit(X, y)
    wall = time.perf_counter() - start
    return list(model.history_[:, "dur"]), wall, int(model.n_parameters_)


def run_hand_written(args, X, y):
    import torch
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    from sklearn_cnnenc.training import ValidationSplit

    device = torch.device(args.device)
    start = time.perf_counter()
    module, family, link, X_checked, estimator = build_module(model_options(args), X, y)
    module.to(device)
    X_all = torch.as_tensor(X_checked, device=device)
    y_all = torch.as_tensor(y, dtype=torch.float32, device=device)
    split = ValidationSplit(estimator.validation_fraction, "random", random_state=SEED)
    n_valid = split.n_valid(len(X))
    order = torch.as_tensor(np.random.default_rng(SEED).permutation(len(X)), device=device)
    train_index, valid_index = order[: len(X) - n_valid], order[len(X) - n_valid :]
    optimizer = torch.optim.Adam(module.parameters(), lr=estimator.lr)
    scheduler = ReduceLROnPlateau(optimizer, patience=max(1, estimator.patience // 3), factor=0.3)
    generator = torch.Generator().manual_seed(SEED)
    batch, valid_batch = args.batch_size, max(args.batch_size, 256)
    best, best_state, durations = np.inf, None, []

    def loss_fn(eta, target):
        return family.negative_log_likelihood(target, eta, link).mean(0).sum()

    for _ in range(args.epochs):
        epoch_start = time.perf_counter()
        module.train()
        permutation = train_index[torch.randperm(len(train_index), generator=generator).to(device)]
        train_total = torch.zeros((), device=device)
        for begin in range(0, len(permutation), batch):
            index = permutation[begin : begin + batch]
            optimizer.zero_grad()
            loss = loss_fn(module(X_all[index]), y_all[index]) + module.regularizer()
            loss.backward()
            optimizer.step()
            train_total += loss.detach() * len(index)
        module.eval()
        valid_total = torch.zeros((), device=device)
        with torch.no_grad():
            for begin in range(0, n_valid, valid_batch):
                index = valid_index[begin : begin + valid_batch]
                valid_total += loss_fn(module(X_all[index]), y_all[index]) * len(index)
        valid_loss = (valid_total / n_valid).item()
        _ = (train_total / len(train_index)).item()
        scheduler.step(valid_loss)
        if valid_loss < best:
            best, best_state = valid_loss, copy.deepcopy(module.state_dict())
        durations.append(time.perf_counter() - epoch_start)
    module.load_state_dict(best_state)
    wall = time.perf_counter() - start
    return durations, wall, sum(p.numel() for p in module.parameters())


def run_skorch_default(args, X, y):
    import torch
    from skorch import NeuralNetRegressor
    from skorch.callbacks import EarlyStopping, LRScheduler
    from skorch.dataset import ValidSplit
    from torch import nn
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    start = time.perf_counter()
    module, family, link, X_checked, estimator = build_module(model_options(args), X, y)

    class PoissonLoss(nn.Module):
        def forward(self, eta, target):
            return family.negative_log_likelihood(target, eta, link).mean(0).sum()

    class PenalisedRegressor(NeuralNetRegressor):
        def get_loss(self, y_pred, y_true, X=None, training=False):
            loss = super().get_loss(y_pred, y_true, X=X, training=training)
            return loss + self.module_.regularizer() if training else loss

    net = PenalisedRegressor(
        module,
        criterion=PoissonLoss,
        optimizer=torch.optim.Adam,
        lr=estimator.lr,
        batch_size=args.batch_size,
        iterator_train__shuffle=True,
        iterator_valid__batch_size=max(args.batch_size, 256),
        max_epochs=args.epochs,
        train_split=ValidSplit(estimator.validation_fraction, random_state=SEED),
        callbacks=[
            ("lr", LRScheduler(ReduceLROnPlateau, monitor="valid_loss", patience=3, factor=0.3)),
            ("stop", EarlyStopping(patience=args.epochs + 1, load_best=True)),
        ],
        device=args.device,
        verbose=0,
    )
    net.fit(np.ascontiguousarray(X_checked), y.astype(np.float32))
    wall = time.perf_counter() - start
    return list(net.history[:, "dur"]), wall, sum(p.numel() for p in module.parameters())


def worker(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    X = np.load(Path(args.data_dir) / "X.npy")
    y = np.load(Path(args.data_dir) / "y.npy")
    runner = {
        "cnnencoder": run_cnnencoder,
        "hand_written": run_hand_written,
        "skorch_default": run_skorch_default,
    }[args.worker]
    # a short run on a few samples first: imports, kernels, allocator pools and
    # the CUDA context are then in place, so the measured run shows only what
    # training on the data costs
    warm_up = argparse.Namespace(**{**vars(args), "epochs": 1})
    runner(warm_up, X[:300], y[:300])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = _rss_bytes()
    durations, wall, n_parameters = runner(args, X, y)
    result = {
        "variant": args.worker,
        "epoch_durations_s": durations,
        "fit_wall_s": wall,
        "n_parameters": n_parameters,
        "data_bytes": int(X.nbytes + y.nbytes),
        "peak_rss_above_data_bytes": _peak_rss_bytes() - baseline,
    }
    if args.device.startswith("cuda"):
        result["cuda_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------- parts
def speed(args) -> dict:
    data = make_data(args.n_samples, args.image_size, args.n_neurons)
    n_train = args.n_samples - int(np.ceil(0.1 * args.n_samples))
    runs: dict[str, list] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "X.npy", data.X.astype(np.float32))
        np.save(Path(folder) / "y.npy", data.y.astype(np.float32))
        for _ in range(args.repeats):
            for name in VARIANTS:
                command = [
                    sys.executable, __file__, "--_worker", name, "--_data-dir", folder,
                    "--device", args.device, "--epochs", str(args.epochs),
                    "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                ]
                output = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
                if output.returncode != 0 or not lines:
                    raise RuntimeError(f"{name} failed:\n{output.stdout}\n{output.stderr}")
                runs[name].append(json.loads(lines[-1][len("RESULT ") :]))

    summary = {}
    for name, results in runs.items():
        # the median epoch (first one excluded: warm-up), best repeat
        epoch = min(statistics.median(r["epoch_durations_s"][1:] or r["epoch_durations_s"])
                    for r in results)
        summary[name] = {
            "epoch_s": epoch,
            "samples_per_s": n_train / epoch,
            "fit_wall_s": min(r["fit_wall_s"] for r in results),
            "peak_rss_above_data_mb": min(r["peak_rss_above_data_bytes"] for r in results) / 2**20,
            "data_mb": results[0]["data_bytes"] / 2**20,
            "n_parameters": results[0]["n_parameters"],
        }
        if "cuda_max_memory_allocated_bytes" in results[0]:
            summary[name]["cuda_peak_mb"] = (
                min(r["cuda_max_memory_allocated_bytes"] for r in results) / 2**20
            )
    hand = summary["hand_written"]["epoch_s"]
    for name in summary:
        summary[name]["ratio_to_hand_written"] = summary[name]["epoch_s"] / hand

    print(
        f"\nspeed on {args.device}: {args.n_samples} patches {args.image_size}x{args.image_size}, "
        f"{args.n_neurons} neurons, batch {args.batch_size}, {args.epochs} epochs, "
        f"{summary['cnnencoder']['n_parameters']} parameters, data "
        f"{summary['cnnencoder']['data_mb']:.1f} MB"
    )
    memory = "cuda peak MB" if args.device.startswith("cuda") else "RSS above data MB"
    print(f"{'variant':16s} {'epoch s':>9s} {'x hand':>7s} {'samples/s':>10s} "
          f"{'fit wall s':>10s} {memory:>18s}")
    for name in VARIANTS:
        row = summary[name]
        mem = row.get("cuda_peak_mb", row["peak_rss_above_data_mb"])
        print(f"{name:16s} {row['epoch_s']:9.3f} {row['ratio_to_hand_written']:7.2f} "
              f"{row['samples_per_s']:10.0f} {row['fit_wall_s']:10.2f} {mem:18.1f}")
    target = summary["cnnencoder"]["ratio_to_hand_written"]
    print(f"CNNEncoder / hand-written epoch time: {target:.3f} (target <= 1.10: "
          f"{'met' if target <= 1.10 else 'NOT met'})")
    return {"config": vars(args), "summary": summary, "runs": runs}


def accuracy(args) -> dict:
    import torch

    from sklearn_cnnenc import CNNEncoder, PoissonGLM
    from sklearn_cnnenc.metrics import bits_per_spike

    if args.threads:
        torch.set_num_threads(args.threads)
    n_train, n_test = args.accuracy_train, args.accuracy_test
    data = make_data(n_train + n_test, args.image_size, args.n_neurons, random_state=1)
    X_train, X_test = data.X[:n_train], data.X[n_train:]
    y_train, y_test = data.y[:n_train], data.y[n_train:]
    null = y_train.mean(axis=0)
    simple = data.cell_type == "simple"

    def bits(prediction):
        per_neuron = bits_per_spike(y_test, prediction, null, multioutput="raw_values")
        return {
            "simple": float(per_neuron[simple].mean()),
            "complex": float(per_neuron[~simple].mean()),
            "all": float(per_neuron.mean()),
        }

    oracle = bits(data.mean[n_train:])
    start = time.perf_counter()
    cnn = CNNEncoder(device=args.device, random_state=SEED).fit(X_train, y_train)
    cnn_time = time.perf_counter() - start
    start = time.perf_counter()
    glm = PoissonGLM().fit(X_train.reshape(n_train, -1), y_train)
    glm_time = time.perf_counter() - start
    results = {
        "oracle": oracle,
        "cnn": bits(cnn.predict(X_test)),
        "glm": bits(glm.predict(X_test.reshape(n_test, -1))),
        "cnn_fit_s": cnn_time,
        "glm_fit_s": glm_time,
        "cnn_epochs": int(cnn.n_iter_),
    }
    print(f"\naccuracy: {n_train} training / {n_test} test patches, {args.n_neurons} neurons "
          f"(half simple, half complex), held-out bits/spike")
    print(f"{'model':8s} {'simple':>8s} {'complex':>8s} {'all':>8s} {'% oracle':>9s} {'fit s':>7s}")
    for name, fit_s in (("oracle", None), ("glm", glm_time), ("cnn", cnn_time)):
        row = results[name]
        fraction = 100 * row["all"] / oracle["all"]
        print(f"{name:8s} {row['simple']:8.3f} {row['complex']:8.3f} {row['all']:8.3f} "
              f"{fraction:8.1f}% {'' if fit_s is None else f'{fit_s:7.1f}'}")
    fraction = results["cnn"]["all"] / oracle["all"]
    results["cnn_fraction_of_oracle"] = fraction
    print(f"CNNEncoder reaches {100 * fraction:.1f}% of the oracle (target >= 90%: "
          f"{'met' if fraction >= 0.9 else 'NOT met'}); {results['cnn_epochs']} epochs")
    return {"config": vars(args), "results": results}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "accuracy", "all"), default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--n-neurons", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--accuracy-train", type=int, default=10000)
    parser.add_argument("--accuracy-test", type=int, default=5000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--_worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--_data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        args.worker, args.data_dir = args._worker, args._data_dir
        worker(args)
        return
    del args._worker, args._data_dir
    report = {}
    if args.part in ("speed", "all"):
        report["speed"] = speed(args)
    if args.part in ("accuracy", "all"):
        report["accuracy"] = accuracy(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_cnn_{args.device.replace(':', '')}_{args.part}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
