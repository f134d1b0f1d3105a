"""Each stage's software environment: found from its code, recorded for ``dvc.lock``.

A stage's environment is found the way ``jaxpipe-deps`` finds its code: every project module
its script imports, transitively, the model family its params choose included. The
third-party modules those files import map to the installed distributions that provide them
(``importlib.metadata``); a distribution whose computations run in another that the code never
imports by name brings that one too (``COMPANIONS``: jax's kernels are in jaxlib, its number
types in ml_dtypes). The facts:

- ``python`` (major.minor) for every stage;
- ``machine`` for every stage whose code imports NumPy or JAX: their compiled kernels differ
  between instruction-set families (x86_64, aarch64);
- ``jax_backend`` for every stage whose code imports JAX (cpu, gpu and tpu round differently).

``jaxpipe env`` says in one line whether each stage's installed environment is the one
``environment.yaml`` records, then how any that differ do (``-v``: every stage's software);
``jaxpipe env --record`` rewrites ``environment.yaml``. Each stage declares its entry as a
params dep, so ``dvc repro`` re-runs exactly the stages whose entry changed
(``jaxpipe.core.environment`` refuses a stage that would run on other versions).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from jaxpipe.analysis.deps import PACKAGE, DvcStage, dvc_stages, stage_closure
from jaxpipe.core import environment
from jaxpipe.core.config import read_yaml_file, roundtrip_yaml
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path

# distribution -> what its computations run in: JAX's kernels are jaxlib's, its number types
# (bfloat16, the float8s, and the promotion rules around them) are ml_dtypes'
COMPANIONS = {"jax": ("jaxlib", "ml-dtypes")}
NUMERIC = frozenset({"numpy", "jax"})
# modules that only watch a run and never feed back into it (jaxpipe.core.live: DVCLive, an
# optional extra): no output depends on their version, nor on whether they are installed
OBSERVERS = frozenset({"dvclive"})
HEADER = """\
The software each stage of dvc.yaml runs on, written by `jaxpipe env --record`.
Each stage declares its own entry as a params dep, so dvc.lock records it, and an upgrade
re-runs exactly the stages whose code imports the upgraded package. Don't edit by hand:
after installing other versions, run `jaxpipe env --record`, then `dvc repro`.
"""


@dataclass(frozen=True)
class StageEnv:
    """What one stage's outputs depend on besides its files and params."""

    stage: str
    packages: tuple[str, ...]  # canonical distribution names, sorted
    facts: tuple[str, ...]  # of "python", "machine", "jax_backend"

    @property
    def key(self) -> tuple[str, ...]:
        return environment.entry_key(self.stage)


def canonical(dist: str) -> str:
    """PEP 503's normal form: ``ruamel.yaml`` -> ``ruamel-yaml``, ``Pillow`` -> ``pillow``."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def third_party_modules(files: Iterable[Path]) -> set[str]:
    """Top-level names of the modules ``files`` import that are neither the standard library,
    this package nor an observer (every import statement, those inside functions included)."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names
            and n not in (PACKAGE, "__future__") and n not in OBSERVERS}


@cache
def _providers() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def distributions(modules: Iterable[str], stage: str) -> set[str]:
    """The installed distributions that provide ``modules``, with their companions."""
    dists: set[str] = set()
    for module in sorted(modules):
        found = _providers().get(module)
        if not found:
            raise JaxpipeError(f"{stage}: its code imports '{module}', which no installed "
                               "distribution provides")
        dists |= {canonical(d) for d in found}
    for dist in sorted(dists):
        dists |= set(COMPANIONS.get(dist, ()))
    return dists


def stage_env(root: Path, stage: DvcStage, params: Mapping[str, Any]) -> StageEnv:
    """The environment of one stage, found from its code."""
    script, closure = stage_closure(root, stage.name, stage.cmd, dict(params))
    dists = distributions(third_party_modules([root / script, *closure]), stage.name)
    facts = ["python"]
    if dists & NUMERIC:
        facts.append("machine")
    if "jax" in dists:
        facts.append("jax_backend")
    return StageEnv(stage.name, tuple(sorted(dists)), tuple(facts))


def project_envs(root: Path) -> list[StageEnv]:
    """Every stage of ``root``'s dvc.yaml, its environment found from its code."""
    params = read_yaml_file(root / "params.yaml") or {}
    return [stage_env(root, s, params) for s in dvc_stages(root)]


def installed_entry(env: StageEnv, backend: str | None) -> dict[str, Any]:
    """The entry ``--record`` writes for ``env``: facts and package versions installed now."""
    facts = {"python": environment.python_version(), "machine": environment.machine(),
             "jax_backend": backend}
    entry: dict[str, Any] = {fact: facts[fact] for fact in env.facts}
    packages = {}
    for dist in env.packages:
        version = environment.installed(dist)
        if version is None:
            raise JaxpipeError(f"{env.stage}: needs {dist}, which is not installed")
        packages[dist] = version
    entry["packages"] = packages
    return entry


def shape_problems(env: StageEnv, recorded: Mapping[str, Any] | None) -> list[str]:
    """Where the recorded entry names other distributions or facts than the code needs."""
    if recorded is None:
        return ["not recorded"]
    found = []
    packages = recorded.get("packages") or {}
    found += [f"imports {d}, not recorded" for d in env.packages if d not in packages]
    found += [f"records {d}, which its code does not import" for d in packages
              if d not in env.packages]
    found += [f"records no {f}" for f in env.facts if f not in recorded]
    found += [f"records {f}, which it does not depend on" for f in
              ("python", "machine", "jax_backend") if f in recorded and f not in env.facts]
    return found


def compare(env: StageEnv, recorded: Mapping[str, Any] | None, backend: str | None
            ) -> list[str]:
    """How the recorded entry differs from the stage's code and this installation."""
    found = shape_problems(env, recorded)
    if recorded is not None:
        found += environment.differences(recorded,
                                         backend if "jax_backend" in env.facts else None)
    return found


def _backend_if_needed(envs: list[StageEnv]) -> str | None:
    """JAX's backend here (started for the purpose) if a stage depends on it."""
    if not any("jax_backend" in e.facts for e in envs):
        return None
    import jax

    return str(jax.default_backend())


def record(root: Path) -> list[str]:
    """Rewrite ``environment.yaml`` from the installed environment; the stages whose entry
    changed (a stage dropped from dvc.yaml loses its entry)."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import SingleQuotedScalarString as Quoted

    path = root / environment.FILE
    envs = project_envs(root)
    backend = _backend_if_needed(envs)
    old = environment.read_entries(path)
    tree = CommentedMap()
    changed = []
    for env in envs:
        entry = installed_entry(env, backend)
        if environment.entry_of(old, env.stage) != entry:
            changed.append(env.stage)
        node = tree
        for part in env.key[:-1]:
            node = node.setdefault(part, CommentedMap())
        quoted = CommentedMap((k, Quoted(v)) for k, v in entry.items() if k != "packages")
        quoted["packages"] = CommentedMap((d, Quoted(v)) for d, v in entry["packages"].items())
        node[env.key[-1]] = quoted
    tree.yaml_set_start_comment(HEADER)
    with atomic_path(path) as tmp, tmp.open("w") as out:
        roundtrip_yaml().dump(tree, out)
    return changed


SHOWN = 5  # differing stages named in the summary line; the rest are counted


def report(root: Path, verbose: bool = False) -> tuple[list[str], int]:
    """Lines of ``jaxpipe env`` and how many stages differ from the record. First one summary
    line; then each differing stage and how; with ``verbose``, every stage and its software."""
    envs = project_envs(root)
    backend = _backend_if_needed(envs)
    recorded = environment.read_entries(root / environment.FILE)
    details, differing = [], []
    for env in envs:
        now = installed_entry(env, backend)
        problems = compare(env, environment.entry_of(recorded, env.stage), backend)
        if problems:
            differing.append(env.stage)
        if problems or verbose:
            status = "as recorded" if not problems else "DIFFERS: " + "; ".join(problems)
            details.append(f"{env.stage}: {status}")
        if verbose:
            details.append("    " + ", ".join(f"{f} {now[f]}" for f in env.facts))
            details.append("    " + ", ".join(f"{d} {v}" for d, v in now["packages"].items()))
    if not differing:
        summary = f"{len(envs)} stages: all as recorded in {environment.FILE}"
    else:
        named = ", ".join(differing[:SHOWN]) + (f" and {len(differing) - SHOWN} more"
                                                if len(differing) > SHOWN else "")
        summary = (f"{len(envs)} stages: {len(envs) - len(differing)} as recorded in "
                   f"{environment.FILE}, {len(differing)} differ: {named}")
    if not verbose:
        summary += " (-v: each stage's software)"
    return [summary, *details], len(differing)


def declared_problems(root: Path) -> list[str]:
    """``jaxpipe-deps``'s check: each stage declares its own ``environment.yaml`` entry as a
    params dep, and that entry names exactly the distributions and facts its code needs."""
    path = root / environment.FILE
    recorded = environment.read_entries(path)
    params = read_yaml_file(root / "params.yaml") or {}
    problems = []
    for stage in dvc_stages(root):
        key = ".".join(environment.entry_key(stage.name))
        if key not in stage.params.get(environment.FILE, ()):
            problems.append(f"{stage.name}: declares no params dep {environment.FILE}: [{key}]")
        env = stage_env(root, stage, params)
        problems += [f"{stage.name}: {p} in {environment.FILE}:{key}"
                     for p in shape_problems(env, environment.entry_of(recorded, stage.name))]
    return problems
