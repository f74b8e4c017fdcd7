"""Every script in examples/ runs in its quick mode and writes its figure or table."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def test_the_gallery_is_not_empty():
    assert len(EXAMPLES) >= 8
    assert FAST_EXAMPLE in {path.stem for path in EXAMPLES}


# Each run starts a Python process that imports torch and fits models (5-60 s each):
# the default suite keeps one fast representative, `-m slow` runs them all (and
# .ci/clean_install.py runs every one in a clean install).
FAST_EXAMPLE = "quickstart_glm_pipeline"


@pytest.mark.parametrize("script", [
    pytest.param(path, id=path.stem,
                 marks=() if path.stem == FAST_EXAMPLE else pytest.mark.slow)
    for path in EXAMPLES
])
def test_example_runs_in_quick_mode(script, tmp_path, request):
    source = script.read_text()
    assert re.search(r"def main\(quick(: bool)? ?= ?False\)", source), "examples expose main(quick)"
    env = dict(os.environ, CNNENC_EXAMPLES_OUTPUT=str(tmp_path), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    if "CNNENC_DATA_DIR" in source:  # needs the real recordings
        env["CNNENC_DATA_DIR"] = str(request.getfixturevalue("shared_data_dir"))
    completed = subprocess.run([sys.executable, str(script), "--quick"], env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = [path.name for path in tmp_path.iterdir()]
    assert written, f"{script.name} wrote nothing; it printed:\n{completed.stdout[-2000:]}"
