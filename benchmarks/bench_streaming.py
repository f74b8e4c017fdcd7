"""Streaming benchmark: epoch time and peak RSS from memory vs memmap vs HDF5 vs zarr.

Writes a synthetic image stimulus set of ``--size-gb`` gigabytes (float32,
``--image-size`` square images, Poisson responses of a few linear-nonlinear
neurons) to ``.npy``, HDF5 and zarr files, then trains the same
``CNNEncoder`` (same seed) from each source, each in a fresh process, and
reports the median epoch time and the process's peak resident memory
(``ru_maxrss``: library, torch and data included). ``memory`` loads the
whole array first; the others stream it (``sklearn_cnnenc.data``).

A second table times one epoch of the movie core (``input_type="video"``)
against the number of frames and the frame size.

Targets (issue 14): a 1 GB HDF5 set trains in < 700 MB peak RSS at <= 1.3x
the in-memory epoch time::

    python benchmarks/bench_streaming.py --size-gb 1 --skip-video     # a few minutes
    python benchmarks/bench_streaming.py --size-gb 0.1 --skip-video   # quick check

The defaults (one epoch, a one-layer CNN of 4 channels) keep the 1 GB run
short on two cores; ``--epochs 2 --channels 8 --n-layers 2`` is heavier.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, print_table  # noqa: E402

SOURCES = ("memory", "memmap", "hdf5", "zarr")
_ROWS_PER_WRITE = 2048


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: ``ru_maxrss``
    survives ``exec``, so a child started by a parent that held the data set
    would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_data(folder: Path, size_gb: float, image_size: int, n_neurons: int, seed: int):
    """Write X (n, H, W) float32 to X.npy, X.h5 and X.zarr, chunk by chunk; return y."""
    import h5py

    row_bytes = image_size * image_size * 4
    n_samples = max(256, int(size_gb * 1e9 // row_bytes))
    rng = np.random.default_rng(seed)
    filters = rng.standard_normal((n_neurons, image_size, image_size)).astype(np.float32)
    # smooth, local filters: a Gaussian window times noise
    grid = np.arange(image_size) - image_size / 2
    window = np.exp(-(grid[:, None] ** 2 + grid[None] ** 2) / (2 * (image_size / 8) ** 2))
    filters *= window.astype(np.float32)
    filters /= np.linalg.norm(filters.reshape(n_neurons, -1), axis=1)[:, None, None]
    npy = np.lib.format.open_memmap(
        folder / "X.npy", mode="w+", dtype=np.float32, shape=(n_samples, image_size, image_size)
    )
    h5 = h5py.File(folder / "X.h5", "w")
    h5_X = h5.create_dataset(
        "X", shape=npy.shape, dtype=np.float32, chunks=(64, image_size, image_size)
    )
    try:
        import zarr

        zarr_X = zarr.create_array(
            store=str(folder / "X.zarr"), shape=npy.shape, dtype=np.float32,
            chunks=(64, image_size, image_size), overwrite=True,
        )
    except ImportError:
        zarr_X = None
    y = np.empty((n_samples, n_neurons))
    for start in range(0, n_samples, _ROWS_PER_WRITE):
        stop = min(start + _ROWS_PER_WRITE, n_samples)
        block = rng.standard_normal((stop - start, image_size, image_size)).astype(np.float32)
        npy[start:stop] = block
        h5_X[start:stop] = block
        if zarr_X is not None:
            zarr_X[start:stop] = block
        drive = np.einsum("nhw,khw->nk", block, filters)
        y[start:stop] = rng.poisson(np.log1p(np.exp(2.0 * drive - 1.0)))
    npy.flush()
    del npy
    h5.close()
    np.save(folder / "y.npy", y)
    return n_samples


def child(source: str, folder: Path, args) -> dict:
    """Train from one source in this (fresh) process; report epoch times and peak RSS."""
    import torch

    from sklearn_cnnenc import CNNEncoder

    torch.set_num_threads(args.threads)
    baseline = _peak_rss_mb()  # python + torch + library, before any data
    y = np.load(folder / "y.npy")
    if source == "memory":
        X = np.load(folder / "X.npy")
    elif source == "memmap":
        X = np.load(folder / "X.npy", mmap_mode="r")
    elif source == "hdf5":
        import h5py

        X = h5py.File(folder / "X.h5", "r")["X"]
    else:
        import zarr

        X = zarr.open_array(str(folder / "X.zarr"), mode="r")
    model = CNNEncoder(
        n_layers=args.n_layers, channels=args.channels, max_epochs=args.epochs,
        batch_size=args.batch_size, early_stopping=True, patience=100, device=args.device,
        random_state=0,
    )
    start = time.perf_counter()
    model.fit(X, y)
    total = time.perf_counter() - start
    epochs = [row["dur"] for row in model.history_]
    return {
        "source": source,
        "epoch_s": float(np.median(epochs)),
        "fit_s": total,
        "peak_rss_mb": _peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "valid_loss": float(model.history_[-1, "valid_loss"]),
    }


def video_timings(args) -> list[dict]:
    """One epoch of the movie core vs frames and frame size (in-memory data)."""
    import torch

    from sklearn_cnnenc import CNNEncoder

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for n_frames, size in [(8, 16), (16, 16), (32, 16), (8, 32), (8, 64)]:
        X = rng.standard_normal((args.video_samples, n_frames, size, size)).astype(np.float32)
        y = rng.poisson(1.0, (args.video_samples, 4)).astype(float)
        model = CNNEncoder(
            input_type="video", channels=args.channels, kernel_size=(9, 5),
            temporal_kernel_size=[n_frames // 2, n_frames - n_frames // 2 + 1],
            max_epochs=2, early_stopping=False,
            batch_size=args.batch_size, device=args.device, random_state=0,
        ).fit(X, y)
        rows.append({
            "frames": n_frames, "frame": f"{size}x{size}", "samples": args.video_samples,
            "epoch_s": f"{np.median([r['dur'] for r in model.history_]):.2f}",
            "receptive_field": model.receptive_field_,
        })
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--n-layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--video-samples", type=int, default=512)
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--skip-streaming", action="store_true")
    parser.add_argument("--folder", help="where to write the data (default: a temp folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, Path(args.folder), args)))
        return
    print(machine_line())
    if not args.skip_streaming:
        with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
            folder = Path(tmp)
            start = time.perf_counter()
            n_samples = write_data(folder, args.size_gb, args.image_size, 8, seed=0)
            print(f"\nwrote {n_samples} images of {args.image_size}x{args.image_size} "
                  f"({n_samples * args.image_size**2 * 4 / 1e9:.2f} GB) in "
                  f"{time.perf_counter() - start:.0f} s")
            rows = []
            passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in [
                ("channels", args.channels), ("n_layers", args.n_layers),
                ("batch_size", args.batch_size),
                ("epochs", args.epochs), ("threads", args.threads), ("device", args.device)]]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            for source in args.sources.split(","):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", source, "--folder", str(folder),
                     *passthrough],
                    capture_output=True, text=True, env=env, check=False,
                )
                if out.returncode:
                    print(f"{source}: failed\n{out.stderr[-2000:]}")
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            memory = next((r for r in rows if r["source"] == "memory"), None)
            for row in rows:
                ratio = row["epoch_s"] / memory["epoch_s"] if memory else float("nan")
                row["epoch_vs_memory"] = f"{ratio:.2f}x"
            for row in rows:
                for key in ("epoch_s", "fit_s"):
                    row[key] = f"{row[key]:.2f}"
                for key in ("peak_rss_mb", "baseline_rss_mb"):
                    row[key] = f"{row[key]:.0f}"
            print()
            print_table(rows, ["source", "epoch_s", "epoch_vs_memory", "fit_s", "peak_rss_mb",
                               "baseline_rss_mb", "valid_loss"])
    if not args.skip_video:
        print("\nmovie core (CausalCore3d), one epoch:")
        print_table(video_timings(args), ["frames", "frame", "samples", "epoch_s",
                                          "receptive_field"])


if __name__ == "__main__":
    main()
