"""Check that every stage in dvc.yaml declares the project code it runs, and nothing else.

A stage's code is its script plus every project module the script imports, transitively
(read with ``ast``, so nothing is executed), package ``__init__`` files included. The model
registry imports a family's module by kind at run time; for a stage whose code reaches the
registry, the family of ``train.<model>.kind`` in params.yaml is added (``<model>`` is the
stage script's first argument). A folder dep covers every module under it, and counts as
exact only if the stage imports all of them.

``jaxpipe-deps`` (``jaxpipe.analysis.declared``) prints each stage's missing and extra code
deps, and what its environment entry (``jaxpipe.analysis.env``, which builds on this module)
misses or names in excess.
"""

from __future__ import annotations

import ast
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jaxpipe import models
from jaxpipe.core.config import read_yaml_file
from jaxpipe.core.errors import JaxpipeError

PACKAGE = "jaxpipe"


@dataclass(frozen=True)
class StageCode:
    """One stage's declared code deps against the code it really runs (repo-relative)."""

    stage: str
    imported: frozenset[str]
    missing: tuple[str, ...]
    extra: tuple[str, ...]


def module_file(src: Path, name: str) -> Path | None:
    """The file of project module ``name`` under ``src`` (a package's ``__init__.py``)."""
    base = src / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_names(path: Path) -> Iterable[str]:
    """Every module name an import statement in ``path`` may bind (``from a import b``
    yields ``a`` and ``a.b``: ``b`` may be a submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_closure(script: Path, src: Path, extra_roots: Iterable[str] = ()) -> set[Path]:
    """Project module files that ``script`` (and the ``extra_roots`` modules) import."""
    seen: set[Path] = set()
    todo = [script] + [f for f in (module_file(src, n) for n in extra_roots) if f]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            if name != PACKAGE and not name.startswith(PACKAGE + "."):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/ and a/b/ __init__
                found = module_file(src, ".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    seen.discard(script)
    return seen


def stage_closure(root: Path, stage: str, cmd: str, params: dict) -> tuple[str, set[Path]]:
    """One stage's script (repo-relative) and the project module files it runs."""
    src = root / "src"
    argv = shlex.split(cmd)
    script = next((a for a in argv if a.endswith(".py")), None)
    if script is None:
        raise JaxpipeError(f"{stage}: no Python script in its cmd {cmd!r}")
    closure = import_closure(root / script, src)
    registry = module_file(src, "jaxpipe.models")
    if registry in closure:
        rest = argv[argv.index(script) + 1:]
        name = rest[0] if rest else "<model>"
        kind = params.get("train", {}).get(name, {}).get("kind")
        if kind is None:
            raise JaxpipeError(f"{stage}: its code reaches the model registry, so params.yaml "
                               f"needs train.{name}.kind (the family it trains)")
        closure |= import_closure(root / script, src, [models.module_name(kind)])
    return script, closure


def stage_code(root: Path, stage: str, cmd: str, deps: list[str], params: dict) -> StageCode:
    """Compare one stage's declared code deps with its script's import closure."""
    script, closure = stage_closure(root, stage, cmd, params)
    code = {p.relative_to(root).as_posix() for p in closure} | {script}
    declared = [d.rstrip("/") for d in deps if d.startswith(("src/", "stages/"))]
    covered = {c for c in code for d in declared if c == d or c.startswith(d + "/")}
    extra = []
    for dep in declared:
        under = {p.relative_to(root).as_posix() for p in (root / dep).rglob("*.py")} \
            if (root / dep).is_dir() else {dep}
        if not under <= code:
            extra.append(dep)
    return StageCode(stage, frozenset(code), tuple(sorted(code - covered)), tuple(extra))


@dataclass(frozen=True)
class DvcStage:
    """One stage as DVC reads it from dvc.yaml (foreach expanded)."""

    name: str
    cmd: str
    deps: tuple[str, ...]
    params: dict[str, tuple[str, ...]]  # params file -> the keys the stage declares


def dvc_stages(root: Path) -> list[DvcStage]:
    """Every stage of ``root``'s dvc.yaml, in its order, as DVC itself expands it (files
    tracked with ``dvc add`` are stages to DVC too, with no name and no command: not ours)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(root)) as repo:
        return [DvcStage(s.name, s.cmd, tuple(str(d.def_path) for d in s.deps),
                         {str(d.def_path): tuple(d.params or ()) for d in s.deps
                          if isinstance(d, ParamsDependency)})
                for s in repo.index.stages if isinstance(s, PipelineStage)]


def check_project(root: Path) -> list[StageCode]:
    """Every stage of ``root``'s dvc.yaml (foreach expanded by DVC itself)."""
    params = read_yaml_file(root / "params.yaml")
    return [stage_code(root, s.name, s.cmd, list(s.deps), params) for s in dvc_stages(root)]
