"""The software a stage runs on, as ``environment.yaml`` records it for ``dvc.lock``.

Every stage declares its own entry of ``environment.yaml`` as a params dep
(``environment.yaml: [train.cnn_mnist]``), so ``dvc.lock`` records, per stage, the Python
version, the version of every third-party distribution its code imports and the platform
facts its output bytes depend on; ``jaxpipe env --record`` writes the file
(``jaxpipe.analysis.env``). Under ``dvc repro`` (DVC sets ``DVC_STAGE``), a stage whose installed
environment differs from its entry refuses to start, naming the package, both versions and
the command that records the new environment, so a lock never names results made with other
software than it records. JAX's backend is only known once JAX has started, so it is checked
before the first output is renamed into place.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from jaxpipe.core.errors import JaxpipeError

FILE = "environment.yaml"
RECORD = "jaxpipe env --record"
# checks/dvc.yaml's stage, ``always_changed`` and upstream of every stage of dvc.yaml: every
# ``dvc repro`` runs it first, and it refuses while an installed version differs from the record
CHECK_STAGE = "environment"
_MACHINES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_pending_backend: tuple[str, str] | None = None  # (stage, recorded backend) to confirm


def python_version() -> str:
    """``3.11``: wheels, and so every compiled package, are chosen per minor version."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def machine() -> str:
    """The instruction-set family (``x86_64``, ``aarch64``): XLA and NumPy compile for it."""
    name = platform.machine().lower()
    return _MACHINES.get(name, name)


def installed(dist: str) -> str | None:
    """The version of distribution ``dist`` that Python would import now, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def running_jax_backend() -> str | None:
    """The platform JAX computes on (``cpu``, ``gpu``, ``tpu``) if this process loaded JAX
    (looked up, not imported: only stages that use JAX depend on it)."""
    jax = sys.modules.get("jax")
    return None if jax is None else str(jax.default_backend())


def entry_key(stage: str) -> tuple[str, ...]:
    """``train@cnn_mnist`` -> ``("train", "cnn_mnist")``; ``plots_page`` -> ``("plots_page",)``
    (a DVC address such as ``sub/dvc.yaml:train@x`` counts by its stage name)."""
    name = stage.rsplit(":", 1)[-1]
    return tuple(name.split("@", 1))


def read_entries(path: Path) -> dict[str, Any]:
    """The whole of ``environment.yaml`` (an empty mapping if the file does not exist)."""
    from jaxpipe.core.config import load_params

    if not path.exists():
        return {}
    data = load_params(path)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise JaxpipeError(f"{path}: expected a mapping of stages")
    return dict(data)


def entry_of(entries: Mapping[str, Any], stage: str) -> Mapping[str, Any] | None:
    """The recorded entry of ``stage``, or None."""
    value: Any = entries
    for part in entry_key(stage):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, Mapping) else None


def differences(entry: Mapping[str, Any], backend: str | None = None,
                version_of: Callable[[str], str | None] = installed) -> list[str]:
    """What differs between a recorded entry and this installation, one phrase each
    (``jax 0.10.3 is installed, the record says 0.10.2``); JAX's backend only if given.
    ``version_of`` looks up a distribution's installed version (``check_all``: once each)."""
    found = []
    now = {"python": python_version(), "machine": machine()}
    if backend is not None:
        now["jax_backend"] = backend
    for fact, value in now.items():
        if fact in entry and str(entry[fact]) != value:
            found.append(f"{fact} is {value} here, the record says {entry[fact]}")
    packages = entry.get("packages") or {}
    for dist, recorded in packages.items():
        version = version_of(str(dist))
        if version is None:
            found.append(f"{dist} is not installed, the record says {recorded}")
        elif version != str(recorded):
            found.append(f"{dist} {version} is installed, the record says {recorded}")
    return found


def recorded_entries(entries: Mapping[str, Any], prefix: str = "") -> dict[str, Mapping]:
    """Every stage's entry in ``environment.yaml``'s tree, by stage name (``train@x``)."""
    found: dict[str, Mapping] = {}
    for key, value in entries.items():
        name = f"{prefix}@{key}" if prefix else str(key)
        if isinstance(value, Mapping) and "python" in value:
            found[name] = value
        elif isinstance(value, Mapping) and not prefix:
            found |= recorded_entries(value, name)
    return found


def check_all(path: Path) -> str | None:
    """One line if this installation differs from any stage's entry in ``path``: the first
    difference and the stages that record it (``dvc repro``'s first stage, so fast: libyaml's
    parser, each distribution's version looked up once, no JAX)."""
    from ruamel.yaml import YAML

    try:
        tree = YAML(typ="safe").load(path.read_text()) if path.exists() else None
    except Exception as exc:  # noqa: BLE001 - any parser failure is one line naming the file
        raise JaxpipeError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(tree, Mapping):
        raise JaxpipeError(f"{path}: no stage recorded: run `{RECORD}`")
    version_of = functools.cache(installed)  # each distribution looked up once
    by_difference: dict[str, list[str]] = {}
    for stage, entry in recorded_entries(tree).items():
        for phrase in differences(entry, version_of=version_of):
            by_difference.setdefault(phrase, []).append(stage)
    if not by_difference:
        return None
    found, stages = next(iter(by_difference.items()))
    named = ", ".join(stages[:3]) + (f" and {len(stages) - 3} more" if len(stages) > 3 else "")
    return (f"{found} ({FILE}: {named}){_more(list(by_difference))}: run `{RECORD}` to record "
            "the installed environment, then `dvc repro` re-runs the stages it changes")


def guard_stage() -> None:
    """Refuse to run a DVC stage whose installed environment is not the one recorded."""
    global _pending_backend
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return
    path = Path(os.environ.get("DVC_ROOT", ".")) / FILE
    entry = entry_of(read_entries(path), stage)
    where = f"{FILE}:{'.'.join(entry_key(stage))}"
    if entry is None:
        raise JaxpipeError(f"{stage}: {where} is missing: record this stage's environment "
                           f"with `{RECORD}`")
    found = differences(entry)
    if found:
        raise JaxpipeError(f"{stage}: {found[0]} ({where}){_more(found)}: run `{RECORD}` to "
                           "record the installed environment, then `dvc repro`")
    if "jax_backend" in entry:
        _pending_backend = (stage, str(entry["jax_backend"]))


def confirm_before_output() -> None:
    """Called before an output is renamed into place: JAX's backend is the recorded one."""
    global _pending_backend
    if _pending_backend is None:
        return
    stage, recorded = _pending_backend
    backend = running_jax_backend()
    if backend is not None and backend != recorded:
        raise JaxpipeError(f"{stage}: jax_backend is {backend} here, the record says "
                           f"{recorded} ({FILE}): run `{RECORD}`, then `dvc repro`")
    _pending_backend = None


def _more(found: list[str]) -> str:
    return f" and {len(found) - 1} more" if len(found) > 1 else ""
