"""The layout of tests/ itself (no jaxpipe module): a module's unit and behaviour tests live in
one file, tests/test_<module>.py (<module>: the module's file name, or a package's folder
name for its ``__init__``), so a contributor knows where a new test goes. Tests of the
pipeline as a whole (the real dvc, several stages, several machines) keep files named for
what they check. The module names are read from src/jaxpipe, not listed here."""

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src" / "jaxpipe"


def modules() -> list[str]:
    """The name of each module of src/jaxpipe, a package by its folder's name."""
    return [p.parent.name if p.stem == "__init__" else p.stem for p in sorted(SRC.rglob("*.py"))]


def file_names() -> list[str]:
    """Each tests/test_*.py by its name without ``test_`` and ``.py``."""
    return [p.stem.removeprefix("test_") for p in sorted(TESTS.glob("test_*.py"))]


def imported(path: Path) -> set[str]:
    """The last part of every dotted name that ``path`` imports, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.rsplit(".", 1)[-1] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module.rsplit(".", 1)[-1], *(alias.name for alias in node.names)}
    return names


def test_the_modules_are_read_from_the_source_tree() -> None:
    assert {"jaxpipe", "cli", "console", "http", "mirror", "cnn", "mesh"} <= set(modules())


def test_each_module_name_names_one_module() -> None:
    """Otherwise test_<module>.py would not say which module it tests."""
    assert {name: n for name, n in Counter(modules()).items() if n > 1} == {}


def test_no_test_file_is_split_off_as_behaviour() -> None:
    assert sorted(TESTS.glob("test_behaviour*.py")) == []


def test_no_module_has_two_test_files() -> None:
    """At most one of test_<module>.py, test_<module>_<more>.py and test_<more>_<module>.py
    (a scaffolded family's test_family_<name>.py is its module's one file)."""
    files = file_names()
    found = {m: [f for f in files if f == m or f.startswith(f"{m}_") or f.endswith(f"_{m}")]
             for m in modules()}
    assert {m: fs for m, fs in found.items() if len(fs) > 1} == {}


def test_a_file_named_for_a_module_imports_it() -> None:
    names = set(modules())
    assert [f"test_{f}.py" for f in file_names()
            if f in names and f not in imported(TESTS / f"test_{f}.py")] == []
