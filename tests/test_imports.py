"""The developer tooling's concerns import one way (docs/design.md, "Where things are"): the
repository finder below everything; the code and environment analysis (deps <- env <-
declared) and the workspace and repro checks never import each other or the scaffold."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "jaxpipe"


def imports(path: Path) -> set[str]:
    """Every jaxpipe module ``path`` imports, at any depth (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jaxpipe")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxpipe"):
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


def reaches(place: str, *others: str) -> list[str]:
    """The files under ``place`` (a package or module of jaxpipe) importing any of
    ``others``."""
    files = sorted((SRC / place).rglob("*.py")) if (SRC / place).is_dir() else [
        SRC / f"{place}.py"]
    assert files
    return [f"{f.relative_to(SRC)}: {name}" for f in files for name in sorted(imports(f))
            if any(name == f"jaxpipe.{o}" or name.startswith(f"jaxpipe.{o}.") for o in others)]


def test_the_repository_finder_imports_no_tooling() -> None:
    assert reaches("project", "analysis", "tools", "scaffold", "cli") == []


def test_the_analysis_and_the_checks_stay_apart_and_apart_from_the_scaffold() -> None:
    assert reaches("analysis", "tools", "scaffold", "cli") == []
    assert reaches("tools", "analysis", "scaffold", "cli") == []


def test_within_the_analysis_imports_run_deps_env_declared() -> None:
    assert reaches("analysis/deps", "analysis.env", "analysis.declared") == []
    assert reaches("analysis/env", "analysis.declared") == []
    assert reaches("analysis/env", "analysis.deps")  # it builds on deps
