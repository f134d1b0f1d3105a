"""Throw-away copies of the project for end-to-end runs: copy, profile, mirror, run dvc."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxpipe.core.config import read_yaml
from jaxpipe.core.environment import CHECK_STAGE
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools.mirror import apply_mirror

CHECK = f"checks/dvc.yaml:{CHECK_STAGE}"  # the environment check's address in DVC's output

log = logging.getLogger(__name__)
ISAS = ("AVX512", "AVX2", "AVX", "SSE4_2")
GIT_ENV = {"GIT_AUTHOR_NAME": "jaxpipe", "GIT_AUTHOR_EMAIL": "jaxpipe@localhost",
           "GIT_COMMITTER_NAME": "jaxpipe", "GIT_COMMITTER_EMAIL": "jaxpipe@localhost"}


def project_files(root: Path) -> list[str]:
    """Files git tracks or would track (not ignored) in ``root``."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (root / f).exists()]


def apply_profile(params_path: Path, profile_path: Path) -> None:
    """Apply a profile YAML of ``dotted.key: value`` overrides to params.yaml."""
    set_params(params_path, read_yaml(profile_path.read_text()) or {}, str(profile_path))


def set_params(params_path: Path, overrides: dict, source: str = "override") -> None:
    """Set each existing ``dotted.key`` of params.yaml to its value, written by DVC's own
    YAML writer (comments kept), as ``dvc exp run -S`` writes it: a later ``-S`` then
    changes only its own line."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(params_path) as params:  # written back only if every key exists
        _set_each(params, overrides, params_path, source)


def _set_each(params: Any, overrides: dict, params_path: Path, source: str) -> None:
    for dotted, value in overrides.items():
        *keys, last = dotted.split(".")
        node = params
        for depth, key in enumerate([*keys, last]):
            if not hasattr(node, "get") or key not in node:
                raise JaxpipeError(f"{source}: {dotted}: no key '{key}' in {params_path}")
            if depth < len(keys):  # not by name: ``a.a`` sets the inner ``a``
                node = node[key]
        node[last] = value


def committed_copy(root: Path, dest: Path, *paths: str, rev: str = "HEAD") -> Path:
    """``paths`` of the repository at ``root`` (files or folders; all of it if none) as
    committed at ``rev``, written under ``dest``: none of the working tree's own edits,
    models, experiments or untracked files."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "--", *paths], cwd=root,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise JaxpipeError(f"git archive {rev} failed in {root}: "
                           f"{archive.stderr.decode(errors='replace').strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def make_workspace(root: Path, dest: Path, mirror: Path | None = None,
                   profile: Path | None = None, rev: str | None = None) -> Path:
    """Copy the project into ``dest`` as a fresh git repo, profile and mirror applied: its
    files as committed at ``rev`` (the tests' workspaces: ``HEAD``), or, without ``rev``,
    as the working tree has them (what git tracks or would track)."""
    if rev is not None:
        committed_copy(root, dest, rev=rev)
    for name in project_files(root) if rev is None else ():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    if profile is not None:
        apply_profile(dest / "params.yaml", profile)
    if mirror is not None:  # committed, as a team whose mirror is its source of truth does
        apply_mirror(dest / "params.yaml", mirror, dest / "params.local.yaml")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "workspace")
    return dest


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity; return stdout."""
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise JaxpipeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class RunConfig:
    """Run the pipeline as another machine would: on ``cores`` CPUs, with an ISA cap asked for
    in ``XLA_FLAGS`` (jaxpipe pins its own, so that checks the pin holds)."""

    cores: int | None = None
    isa: str | None = None

    @classmethod
    def parse(cls, text: str) -> RunConfig:
        """``cores=1``, ``isa=AVX``, or both: ``cores=1,isa=AVX``."""
        fields: dict = {}
        for part in filter(None, text.split(",")):
            key, _, value = part.partition("=")
            if key == "cores" and value.isdigit() and 0 < int(value) <= len(_cpus()):
                fields["cores"] = int(value)
            elif key == "isa" and value in ISAS:
                fields["isa"] = value
            else:
                raise JaxpipeError(f"run config {text!r}: expected cores=1..{len(_cpus())} "
                                   f"and/or isa={'|'.join(ISAS)}, got {part!r}")
        return cls(**fields)

    def __str__(self) -> str:
        parts = [f"cores={self.cores}"] * bool(self.cores) + [f"isa={self.isa}"] * bool(self.isa)
        return ",".join(parts) or "as is"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with XLA's ISA cap added to ``XLA_FLAGS``."""
        if not self.isa:
            return base
        flags = f"{base.get('XLA_FLAGS', '')} --xla_cpu_max_isa={self.isa}".strip()
        return {**base, "XLA_FLAGS": flags}

    def limit_cpus(self) -> None:
        """Pin this process (and so the children it starts) to the first ``cores`` CPUs."""
        if self.cores:
            os.sched_setaffinity(0, _cpus()[: self.cores])


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def dvc(cwd: Path, *args: str, mirror: Path | None = None, check: bool = True,
        config: RunConfig | None = None) -> subprocess.CompletedProcess:
    """Run the real ``dvc`` CLI in ``cwd`` (with JAXPIPE_MIRROR set if given), optionally
    under another machine's ``config``."""
    env = {**os.environ, **GIT_ENV}
    # the workspace's own copy of the library, not the checkout an editable install points to
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(cwd).resolve() / "src"),
                                                      os.environ.get("PYTHONPATH")]))
    if mirror is not None:
        env["JAXPIPE_MIRROR"] = str(mirror.resolve())
    config = config or RunConfig()
    dvc_bin = shutil.which("dvc") or "dvc"
    proc = subprocess.run([dvc_bin, *args], cwd=cwd, env=config.env(env), capture_output=True,
                          text=True, preexec_fn=config.limit_cpus)  # noqa: PLW1509
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-20:]
        raise JaxpipeError(f"dvc {' '.join(args)} failed in {cwd}:\n" + "\n".join(tail))
    return proc


def ran_stages(output: str) -> list[str]:
    """Stage names that a ``dvc repro`` output says it ran, but for the environment check
    (``checks/dvc.yaml:environment``, ``always_changed``: every ``dvc repro`` runs it)."""
    prefix = "Running stage '"
    return [name for line in output.splitlines() if line.startswith(prefix)
            and (name := line.split("'")[1]) != CHECK]


def changed(status_json: str) -> dict[str, list]:
    """The stages ``dvc status --json`` (its stdout) lists as out of date, but for those DVC
    reports as only "always changed", and the environment check (``checks/dvc.yaml``), which
    every ``dvc repro`` runs first whatever its status: in a fresh clone its own lock
    (``checks/dvc.lock``, not committed with ``dvc.lock``) is missing or older."""
    status = json.loads(status_json or "{}")
    return {stage: why for stage, why in status.items()
            if why != ["always changed"] and stage != CHECK}
