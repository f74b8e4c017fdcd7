"""The clean-install check of .ci/run: example headers and their parsing (no install here)."""

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
# import name -> the extra of pyproject.toml that brings it
OPTIONAL_IMPORTS = {"matplotlib": "plot", "pandas": "pandas", "dask": "dask",
                    "distributed": "dask", "pynwb": "nwb"}


@pytest.fixture(scope="module")
def clean_install():
    path = REPO / ".ci" / "clean_install.py"
    spec = importlib.util.spec_from_file_location("clean_install", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("text", "extras"), [
    ("# Requires: sklearn-cnnenc\n", ()),
    ("#Requires:   sklearn-cnnenc[plot]  \n", ("plot",)),
    ("#!/usr/bin/env python3\n# Requires: sklearn-cnnenc[plot, dask,plot]\n", ("dask", "plot")),
    ("# Requires: sklearn_cnnenc[nwb]\n", ("nwb",)),
    ('"""Doc."""\n# Requires: sklearn-cnnenc[]\n', ()),
])
def test_parse_requires(clean_install, text, extras):
    assert clean_install.parse_requires(text) == extras


@pytest.mark.parametrize(("text", "message"), [
    ("import os\n", "no '# Requires"),
    ("\n\n\n\n\n# Requires: sklearn-cnnenc\n", "no '# Requires"),  # not among the first lines
    ("# Requires: numpy\n", "must name sklearn-cnnenc"),
    ("# Requires: sklearn-cnnenc[plot\n", "malformed"),
    ("# Requires: sklearn-cnnenc[plot,,dask]\n", "empty extra"),
])
def test_parse_requires_rejects_bad_headers(clean_install, text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        clean_install.parse_requires(text, "x.py")


def test_plan_groups_scripts_by_extras(clean_install, tmp_path):
    for name, header in [("a", "sklearn-cnnenc[plot]"), ("b", "sklearn-cnnenc"),
                         ("c", "sklearn-cnnenc[plot]")]:
        (tmp_path / f"{name}.py").write_text(f"# Requires: {header}\nmain(quick='--quick' in a)\n")
    scripts = sorted(tmp_path.glob("*.py"))
    groups = clean_install.plan(scripts)
    assert list(groups) == [(), ("plot",)]  # the core environment first
    assert [s.name for s in groups[()]] == ["b.py"]
    assert [s.name for s in groups[("plot",)]] == ["a.py", "c.py"]
    assert all(clean_install.accepts_quick(s.read_text()) for s in scripts)


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_example_declares_the_extras_it_imports(clean_install, script):
    # An extra may also be needed through the library (a table returned as a DataFrame),
    # which no static check sees: the clean install is the judge of those.
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    source = script.read_text()
    declared = set(clean_install.parse_requires(source, script.name))
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert declared <= set(extras), f"unknown extras {declared - set(extras)}"
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", source, flags=re.MULTILINE))
    needed = {OPTIONAL_IMPORTS[name] for name in imported if name in OPTIONAL_IMPORTS}
    assert needed <= declared, f"imports need {needed - declared}; declare them in the header"
    assert clean_install.accepts_quick(source), "every example has a --quick mode"


def test_ci_runs_the_clean_install():
    run = (REPO / ".ci" / "run").read_text()
    assert "python3 .ci/clean_install.py" in run
    assert run.index("python3 -m pytest") < run.index("python3 .ci/clean_install.py")
