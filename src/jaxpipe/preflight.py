"""Preflight (``jaxpipe check``): every params section, schema and mirror file, and each
stage's recorded software environment, checked in a second or two, without running a
stage, so a bad value is found before ``dvc repro`` deletes the outputs of the stage that
would fail.

Each check returns problems as one line each (file, key, the fix); nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jaxpipe.core import environment
from jaxpipe.core.config import load_layered, load_params, parse, read_yaml_file
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.generate import GenerateConfig
from jaxpipe.data.prepare import PrepareConfig
from jaxpipe.data.schema import load_schema
from jaxpipe.data.sources import mirror_problem
from jaxpipe.data.specs import DownloadConfig
from jaxpipe.evaluate import EvalConfig
from jaxpipe.train import load_train_config

log = logging.getLogger(__name__)
SECTIONS = ("download", "generate", "prepare", "train", "evaluate")


def stage_items(dvc_yaml: Path) -> dict[str, dict[str, Any]]:
    """Each ``foreach`` stage of dvc.yaml: its items by key (a list's items are their own
    keys), e.g. ``{"prepare": {"xor": {"input": ..., "schema": ...}}}``."""
    try:
        stages = read_yaml_file(dvc_yaml).get("stages", {})
    except (OSError, AttributeError) as exc:
        raise JaxpipeError(f"{dvc_yaml}: cannot read its stages ({exc.__class__.__name__})"
                           ) from None
    items = {}
    for name, stage in stages.items():
        each = stage.get("foreach") if isinstance(stage, Mapping) else None
        if isinstance(each, list):
            items[name] = {str(k): {} for k in each}
        elif isinstance(each, Mapping):
            items[name] = {str(k): dict(v or {}) for k, v in each.items()}
    return items


def _attempt(problems: list[str], action: Callable[[], Any]) -> Any:
    """Run one check; a JaxpipeError becomes a problem line instead of stopping the rest."""
    try:
        return action()
    except JaxpipeError as exc:
        problems.append(str(exc))
        return None


def check_params(params: Path, local: Path | None, items: dict[str, dict]) -> list[str]:
    """Parse every entry of every section; each stage item must have its params entry."""
    problems: list[str] = []
    data = _attempt(problems, lambda: load_params(params))
    if not isinstance(data, Mapping):
        return problems or [f"{params}: expected a mapping of sections"]
    loaders: dict[str, Callable[[str], Any]] = {
        "download": lambda k: load_layered(DownloadConfig, params, local, "download", k),
        "generate": lambda k: _section(GenerateConfig, data, params, "generate", k),
        "prepare": lambda k: _section(PrepareConfig, data, params, "prepare", k),
        "train": lambda k: load_train_config(params, k),
        "evaluate": lambda k: _section(EvalConfig, data, params, "evaluate", k),
    }
    for section in SECTIONS:
        entries = data.get(section)
        if not isinstance(entries, Mapping):
            problems.append(f"{params}: missing section '{section}'")
            continue
        for key in entries:
            _attempt(problems, lambda k=key, load=loaders[section]: load(k))
        needed = set(items.get(section, {})) | (
            set(items.get("train", {})) if section == "evaluate" else set())
        problems += [f"{params}:{section}: missing key '{k}' (dvc.yaml has a stage for it)"
                     for k in sorted(needed - set(entries))]
    return problems


def _section(cls: type, data: Mapping, params: Path, section: str, key: str) -> Any:
    return parse(cls, data[section][key], f"{params}:{section}.{key}")


def check_schemas(items: dict[str, dict], root: Path) -> list[str]:
    """Every schema file the prepare stages name in dvc.yaml (paths from ``root``) parses."""
    problems: list[str] = []
    paths = sorted({item["schema"] for item in items.get("prepare", {}).values()
                    if "schema" in item})
    for path in paths:
        _attempt(problems, lambda p=path: load_schema(root / p))
    return problems


def check_mirror(params: Path, local: Path | None, mirror: Path) -> tuple[list[str], int]:
    """Every download file present in ``mirror``, confined to it, and matching its checksum;
    returns the problems and how many files were verified."""
    if not mirror.is_dir():
        return [f"{mirror}: mirror directory not found (JAXPIPE_MIRROR)"], 0
    problems: list[str] = []
    verified = 0
    for key in load_params(params, "download"):
        cfg = _attempt(problems, lambda k=key: load_layered(DownloadConfig, params, local,
                                                            "download", k))
        if cfg is None:
            continue
        for file_key, spec in cfg.files.items():
            problem = mirror_problem(mirror, cfg.mirror_folder, spec)
            if problem is None:
                verified += 1
            else:
                problems.append(f"download.{key}.files.{file_key}: {problem}")
    if any(": expected " in p or "mismatch" in p for p in problems):
        problems.append(f"if the mirror is a deliberate subset, adopt its checksums with "
                        f"`jaxpipe-mirror {mirror}` (params.yaml stays unchanged)")
    return problems, verified


def stage_names(dvc_yaml: Path) -> list[str]:
    """Every stage of dvc.yaml by DVC's name (``train@cnn_mnist``, ``plots_page``)."""
    items = stage_items(dvc_yaml)
    stages = read_yaml_file(dvc_yaml).get("stages", {})
    return [f"{name}@{key}" if name in items else name
            for name in stages for key in items.get(name, [None])]


def check_environment(dvc_yaml: Path) -> tuple[list[str], int]:
    """Each stage's recorded software (environment.yaml beside dvc.yaml) is the installed
    one; returns the problems and how many stages were checked."""
    path = dvc_yaml.parent / environment.FILE
    problems: list[str] = []
    entries = _attempt(problems, lambda: environment.read_entries(path))
    if entries is None:
        return problems, 0
    names = stage_names(dvc_yaml)
    backend = None
    if any("jax_backend" in (environment.entry_of(entries, n) or {}) for n in names):
        import jax

        backend = str(jax.default_backend())
    for name in names:
        entry = environment.entry_of(entries, name)
        where = f"{path}:{'.'.join(environment.entry_key(name))}"
        found = ["not recorded"] if entry is None else environment.differences(entry, backend)
        problems += [f"{where}: {line}" for line in found]
    if problems:
        problems.append(f"`{environment.RECORD}` records the installed environment; "
                        "`dvc repro` then re-runs the stages it changes")
    return problems, len(names)


def preflight(params: Path, local: Path | None, dvc_yaml: Path, mirror: Path | None
              ) -> tuple[list[str], str]:
    """Every check; the problems (one line each) and a summary of what was checked."""
    items = stage_items(dvc_yaml)
    problems = check_params(params, local, items) + check_schemas(items, dvc_yaml.parent)
    names = stage_names(dvc_yaml)
    without = [n for n in names if n.split("@")[0] not in items]  # plots_page: no params
    summary = (f"{len(names)} stages of {dvc_yaml.name}: the params of the "
               f"{len(names) - len(without)} that take params"
               + (f" (not {', '.join(without)})" if without else ""))
    env_problems, checked = check_environment(dvc_yaml)
    problems += env_problems
    summary += f", the software of {'all ' if checked == len(names) else ''}{checked} as recorded"
    if mirror is not None:
        mirror_problems, verified = check_mirror(params, local, mirror)
        problems += mirror_problems
        summary += f", {verified} mirror file(s) verified in {mirror}"
    return problems, summary
