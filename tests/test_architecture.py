"""Layering rules of docs/ARCHITECTURE.md, checked by reading the source (no imports run)."""

import ast
import re
from pathlib import Path

import sklearn_cnnenc

PACKAGE = Path(sklearn_cnnenc.__file__).parent
ROOT = PACKAGE.parent


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import in a file, where level counts leading dots."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def _imports_scikit_learn(path: Path) -> bool:
    return any(level == 0 and name.split(".")[0] == "sklearn" for level, name in _imports(path))


def test_nothing_in_nn_imports_scikit_learn():
    # nn/ holds plain torch modules; the one file it reads outside itself
    # (links.py) must not bring scikit-learn in either
    nn_files = sorted((PACKAGE / "nn").rglob("*.py"))
    assert nn_files
    offenders = [str(path.relative_to(PACKAGE)) for path in nn_files if _imports_scikit_learn(path)]
    outside = {
        name.split(".")[0]
        for path in nn_files
        for level, name in _imports(path)
        if level >= 2 or (level == 0 and name.startswith("sklearn_cnnenc"))
    }
    assert outside <= {"links"}, f"nn/ reads {sorted(outside)} outside itself"
    offenders += [name for name in outside if _imports_scikit_learn(PACKAGE / f"{name}.py")]
    assert offenders == []


def test_the_scanner_sees_a_scikit_learn_import(tmp_path):
    path = tmp_path / "module.py"
    path.write_text("import torch\n\ndef f():\n    from sklearn.utils import check_array\n")
    assert _imports_scikit_learn(path)
    path.write_text("import torch\nfrom sklearn_cnnenc.links import Link\n")
    assert not _imports_scikit_learn(path)


def test_architecture_lists_one_existing_file_per_extension_point():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = text[text.index("| to add a … |"):]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    points = {}
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        files = re.findall(r"`(sklearn_cnnenc/[\w/<>.]+\.py)`", cells[1])
        assert len(files) == 1, f"{cells[0]!r} names {files}, not one file to edit"
        points[cells[0]] = files[0]
    for expected in ("family", "link", "readout", "metric"):
        assert expected in points
    for point, file in points.items():
        if "<" not in file:  # a new family is a new file
            assert (ROOT / file).is_file(), f"{point}: {file} does not exist"
    assert (PACKAGE / "distributions").is_dir()
