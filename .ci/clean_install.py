#!/usr/bin/env python3
"""Install sklearn-cnnenc as a newcomer would and run what the README promises.

1. A fresh virtual environment (no system site-packages) gets ``torch`` and the
   **core** install only (``pip install -e .``, no extras); ``cnnenc demo --quick``
   must run in it.
2. Every script in ``examples/`` declares the install it needs on a header line,
   ``# Requires: sklearn-cnnenc`` or ``# Requires: sklearn-cnnenc[plot,dask]``.
   Each script runs in an environment holding exactly those extras (one
   environment per distinct set of extras, the core one reused), with
   ``--quick`` when the script accepts it.

Any failure exits with status 1 after every step has run. ``--plan`` only
prints the environments and scripts, without installing anything.

Run: ``python3 .ci/clean_install.py [--torch torch==2.13.0] [--keep] [--plan]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sklearn-cnnenc"
_HEADER = re.compile(r"^#\s*Requires:\s*(?P<spec>\S.*?)\s*$")
_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*(?:\[(?P<extras>[^\]]*)\])?$")
HEADER_LINES = 5  # the header must be among a script's first lines


def parse_requires(text: str, source: str = "<script>") -> tuple[str, ...]:
    """Return the sorted extras that a script's ``# Requires:`` header names.

    Parameters
    ----------
    text : str
        The script's source.
    source : str
        Name used in error messages.

    Returns
    -------
    extras : tuple of str
        ``()`` for ``# Requires: sklearn-cnnenc`` (the core install).

    Raises
    ------
    ValueError
        When the header is missing from the first lines, names another package,
        or is malformed.

    Examples
    --------
    >>> parse_requires("# Requires: sklearn-cnnenc[plot, dask]\\nimport os\\n")
    ('dask', 'plot')
    >>> parse_requires("#!/usr/bin/env python\\n# Requires: sklearn-cnnenc\\n")
    ()
    """
    for line in text.splitlines()[:HEADER_LINES]:
        header = _HEADER.match(line)
        if header is None:
            continue
        spec = _SPEC.match(header["spec"])
        if spec is None:
            raise ValueError(f"{source}: malformed header {line!r}; write "
                             f"'# Requires: {PACKAGE}' or '# Requires: {PACKAGE}[extra,...]'.")
        name = spec["name"].lower().replace("_", "-")
        if name != PACKAGE:
            raise ValueError(f"{source}: the header must name {PACKAGE}, not {spec['name']!r}.")
        listed = (spec["extras"] or "").strip()
        extras = [extra.strip() for extra in listed.split(",")] if listed else []
        if not all(extras):
            raise ValueError(f"{source}: empty extra in {line!r}.")
        return tuple(sorted(set(extras) - {""}))
    raise ValueError(f"{source}: no '# Requires: {PACKAGE}[...]' line among the first "
                     f"{HEADER_LINES} lines.")


def accepts_quick(text: str) -> bool:
    """Whether a script understands ``--quick``.

    Examples
    --------
    >>> accepts_quick('main(quick="--quick" in sys.argv)')
    True
    >>> accepts_quick("main()")
    False
    """
    return "--quick" in text


def plan(examples: list[Path]) -> dict[tuple[str, ...], list[Path]]:
    """Group scripts by the extras they need; the core group comes first.

    Examples
    --------
    >>> plan([])
    {(): []}
    """
    groups: dict[tuple[str, ...], list[Path]] = {(): []}
    for script in examples:
        extras = parse_requires(script.read_text(), script.name)
        groups.setdefault(extras, []).append(script)
    return groups


def _run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 1800) -> bool:
    print("$", " ".join(map(str, command)), flush=True)
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, env=env, cwd=cwd, timeout=timeout,
                                   capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        print(f"  TIMEOUT after {timeout:.0f} s", flush=True)
        return False
    status = "ok" if completed.returncode == 0 else f"FAILED (exit {completed.returncode})"
    print(f"  {status} in {time.perf_counter() - start:.0f} s", flush=True)
    if completed.returncode != 0:
        print(completed.stdout[-3000:], completed.stderr[-3000:], sep="\n", flush=True)
    return completed.returncode == 0


def _make_venv(root: Path, extras: tuple[str, ...], torch_spec: str) -> Path | None:
    """Create a venv with torch and ``pip install -e REPO[extras]``; return its python."""
    folder = root / ("venv-core" if not extras else "venv-" + "-".join(extras))
    if not _run([sys.executable, "-m", "venv", str(folder)]):  # no system site-packages
        return None
    python = folder / ("Scripts" if os.name == "nt" else "bin") / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    target = str(REPO) + (f"[{','.join(extras)}]" if extras else "")
    if not (_run(pip + [torch_spec]) and _run(pip + ["-e", target])):
        return None
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", default="torch==2.13.0", help="torch requirement to install")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--plan", action="store_true", help="print the plan; install nothing")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per script")
    args = parser.parse_args(argv)

    examples = sorted((REPO / "examples").glob("*.py"))
    groups = plan(examples)
    for extras, scripts in groups.items():
        label = PACKAGE + (f"[{','.join(extras)}]" if extras else " (core)")
        print(f"{label}: {', '.join(s.name for s in scripts) or 'cnnenc demo --quick only'}")
    if args.plan:
        return 0

    root = Path(tempfile.mkdtemp(prefix="cnnenc-clean-install-"))
    failures: list[str] = []
    base_env = {key: value for key, value in os.environ.items()
                if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    base_env.update(MPLBACKEND="Agg", PYTHONNOUSERSITE="1")
    data_dir = REPO.parent / "shared" / "data"
    if "CNNENC_DATA_DIR" not in base_env and data_dir.is_dir():
        base_env["CNNENC_DATA_DIR"] = str(data_dir)
    try:
        for extras, scripts in groups.items():
            python = _make_venv(root, extras, args.torch)
            if python is None:
                failures.append(f"install of {PACKAGE}{list(extras) or ''}")
                continue
            env = dict(base_env, PATH=f"{python.parent}{os.pathsep}{base_env.get('PATH', '')}")
            if not extras:
                cnnenc = python.parent / "cnnenc"
                out = root / "demo"
                # run outside the checkout so that only the installed package is seen
                if not _run([str(cnnenc), "demo", "--quick", "--out", str(out)], env=env,
                            cwd=root, timeout=args.timeout):
                    failures.append("cnnenc demo --quick (core install)")
            for script in scripts:
                output = root / "examples" / script.stem
                output.mkdir(parents=True, exist_ok=True)
                command = [str(python), str(script)]
                if accepts_quick(script.read_text()):
                    command.append("--quick")
                if not _run(command, env=dict(env, CNNENC_EXAMPLES_OUTPUT=str(output)),
                            cwd=root, timeout=args.timeout):
                    failures.append(f"examples/{script.name}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("clean install FAILED: " + "; ".join(failures))
        return 1
    print("clean install ok: core install runs the demo; every example runs with its extras")
    return 0


if __name__ == "__main__":
    sys.exit(main())
