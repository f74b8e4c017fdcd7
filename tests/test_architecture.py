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


# ------------------------------------------------- fitted state is public
# Private fitted state that a module outside its class still reads, with why;
# the list may only shrink.
_KNOWN_OUTSIDE_READS: set[tuple[str, str]] = set()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _estimator_classes(trees: dict) -> list[ast.ClassDef]:
    """Every class of the package that derives, at any depth, from BaseEstimator."""
    classes = [
        node for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
    ]
    names, grown = {"BaseEstimator"}, True
    while grown:
        grown = False
        for node in classes:
            bases = {getattr(base, "id", getattr(base, "attr", "")) for base in node.bases}
            if node.name not in names and bases & names:
                names.add(node.name)
                grown = True
    return [node for node in classes if node.name in names]


def _private_state(estimators: list[ast.ClassDef]) -> dict[str, set[str]]:
    """Private attributes (``self._x = ...``, not methods) of each estimator class."""
    methods = {
        node.name
        for cls in estimators
        for node in ast.walk(cls)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    owners: dict[str, set[str]] = {}
    for cls in estimators:
        for node in ast.walk(cls):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            else:
                continue
            for target in targets:
                for sub in ast.walk(target):
                    if (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id == "self"
                        and _is_private(sub.attr)
                        and sub.attr not in methods
                    ):
                        owners.setdefault(sub.attr, set()).add(cls.name)
    return owners


def _outside_reads(tree: ast.AST, owners: dict[str, set[str]]):
    """(line, name) of every ``obj._x`` / ``getattr(obj, "_x")`` outside x's owning class."""

    def visit(node, enclosing):
        if isinstance(node, ast.ClassDef):
            enclosing = enclosing | {node.name}
        name, obj = None, None
        if isinstance(node, ast.Attribute):
            name, obj = node.attr, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name, obj = node.args[1].value, node.args[0]
        on_self = isinstance(obj, ast.Name) and obj.id in ("self", "cls")
        if name in owners and not on_self and not owners[name] & enclosing:
            yield node.lineno, name
        for child in ast.iter_child_nodes(node):
            yield from visit(child, enclosing)

    yield from visit(tree, frozenset())


def _reads_of_private_state(trees: dict) -> set[tuple[str, str]]:
    owners = _private_state(_estimator_classes(trees))
    return {
        (file, name) for file, tree in trees.items() for _, name in _outside_reads(tree, owners)
    }


def test_no_module_reads_an_estimators_private_fitted_state():
    # inspection, decoding, the metrics and the movie branch use the public
    # fitted surface (module_, sample_shape_, as_tensor, input_layout_ ...)
    trees = {
        str(path.relative_to(PACKAGE)): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    found = _reads_of_private_state(trees)
    assert found <= _KNOWN_OUTSIDE_READS, sorted(found - _KNOWN_OUTSIDE_READS)


def test_the_scanner_sees_a_read_of_private_fitted_state():
    estimator = ast.parse(
        "class Model(BaseEstimator):\n"
        "    def fit(self, X):\n"
        "        self._layout = X.shape\n"
        "        self.coef_ = self._layout\n"
        "    def _hook(self):\n"
        "        return self._layout\n"
    )
    outside = ast.parse(
        "def f(model):\n"
        "    model._hook()\n"  # a private method: not state
        "    return model._layout, getattr(model, '_layout', None), model.coef_\n"
    )
    trees = {"model.py": estimator, "tool.py": outside}
    assert _reads_of_private_state(trees) == {("tool.py", "_layout")}
    assert list(_outside_reads(outside, _private_state(_estimator_classes(trees)))) == [
        (3, "_layout"), (3, "_layout"),
    ]
