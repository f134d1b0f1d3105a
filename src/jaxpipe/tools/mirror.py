"""Point the pipeline at a local mirror whose files differ from the official ones.

A team's internal mirror (or a local copy holding a subset, such as a few MNIST training
files) lists each file's MD5 in ``<mirror>/<folder>/MD5SUMS``. This writes the checksums
that differ from params.yaml's into ``params.local.yaml``, the overrides file the download
stages read (dvc.yaml lists it as their params file, so dvc.lock records it): params.yaml
keeps the official checksums, and the one file that differs says what it is for.

DVC needs that file to exist, so it is tracked (empty); to keep a mirror's checksums out of
commits made by accident, this also installs a git pre-commit hook that refuses a commit
staging the file with overrides in it (``git commit --no-verify`` commits them on purpose).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
from pathlib import Path

from jaxpipe.core.config import read_yaml_file, roundtrip_yaml
from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.project import enter_root

log = logging.getLogger("jaxpipe.tools.mirror")


def read_md5sums(path: Path) -> dict[str, str]:
    """Parse an ``md5sum``-style listing: ``<hex>  <name>`` per line."""
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 32:
            raise JaxpipeError(f"{path}:{number}: expected '<md5>  <file name>'")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def mirror_overrides(params: dict, mirror: Path) -> dict[tuple[str, str], str]:
    """(dataset, file key) -> mirror MD5, for every file whose mirror MD5 differs."""
    changes = {}
    for dataset, cfg in params.get("download", {}).items():
        listing = mirror / cfg["mirror_folder"] / "MD5SUMS"
        if not listing.is_file():
            log.info("%s: no %s, nothing to override", dataset, listing)
            continue
        sums = read_md5sums(listing)
        for key, spec in cfg["files"].items():
            mirror_md5 = sums.get(spec["name"])
            if mirror_md5 is None:
                raise JaxpipeError(f"{listing}: no entry for {spec['name']}")
            if mirror_md5 != spec["md5"]:
                changes[(dataset, key)] = mirror_md5
    return changes


LOCAL_HEADER = """\
# Local overrides of params.yaml (deep-merged over it by the download stages, and recorded
# in dvc.lock as their params). `jaxpipe-mirror DIR` writes a mirror's checksums here;
# `jaxpipe-mirror --reset` empties it again. Commit it only if your team's mirror is the
# source of truth; params.yaml keeps the official checksums either way.
"""


def local_overrides(changes: dict[tuple[str, str], str]) -> dict:
    """The ``download`` overrides for ``changes``: each file's mirror MD5, its size unknown."""
    download: dict = {}
    for (dataset, key), md5 in sorted(changes.items()):
        files = download.setdefault(dataset, {}).setdefault("files", {})
        files[key] = {"md5": md5, "size": None}
    return {"download": download} if download else {}


def write_local(local_path: Path, overrides: dict) -> None:
    """Write the overrides file (header, then YAML), atomically."""
    yaml = roundtrip_yaml()
    with atomic_path(local_path) as tmp, open(tmp, "w") as handle:
        handle.write(LOCAL_HEADER)
        yaml.dump(overrides, handle)


def apply_mirror(params_path: Path, mirror: Path, local_path: Path
                 ) -> dict[tuple[str, str], str]:
    """Write into ``local_path`` the download checksums that ``mirror`` needs, where they
    differ from ``params_path``'s; return what is overridden. params.yaml is not touched."""
    if not mirror.is_dir():
        raise JaxpipeError(f"{mirror}: mirror directory not found")
    changes = mirror_overrides(read_yaml_file(params_path), mirror)
    for (dataset, key), md5 in sorted(changes.items()):
        log.info("download.%s.files.%s.md5 -> %s (from the mirror)", dataset, key, md5)
    write_local(local_path, local_overrides(changes))
    return changes


HOOK_MARK = "# jaxpipe-mirror: keeps a local mirror's checksums out of commits"
HOOK = """#!/bin/sh
{mark}
file={path}
if git diff --cached --name-only | grep -qxF "$file" &&
    git show ":$file" | grep -q '^download:'; then
  echo "error: $file holds a local mirror's checksums (jaxpipe-mirror): unstage it" \
    "(git restore --staged $file), or commit with --no-verify if your team's mirror is" \
    "the source of truth" >&2
  exit 1
fi
"""


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def guard_commits(local_path: Path) -> Path | None:
    """Install the pre-commit hook that refuses to commit ``local_path`` with overrides in
    it; return its path. None, and nothing written, outside a git repo or where another
    pre-commit hook is installed (it is left as it is)."""
    folder = local_path.resolve().parent
    try:
        top = Path(_git(folder, "rev-parse", "--show-toplevel"))
        hooks = (folder / _git(folder, "rev-parse", "--git-path", "hooks")).resolve()
    except (OSError, subprocess.CalledProcessError):
        log.info("%s is not in a git repo: no commit guard installed", local_path)
        return None
    hook = hooks / "pre-commit"
    if hook.exists() and HOOK_MARK not in hook.read_text(errors="replace"):
        log.warning("%s is another tool's hook: left as it is, so nothing stops a commit of "
                    "%s with the mirror's checksums", hook, local_path)
        return None
    relative = local_path.resolve().relative_to(top.resolve()).as_posix()
    hooks.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK.format(mark=HOOK_MARK, path=shlex.quote(relative)))
    hook.chmod(0o755)
    return hook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirror", type=Path, nargs="?",
                        help="mirror directory (a folder per data set, each with its MD5SUMS)")
    parser.add_argument("--reset", action="store_true", help="drop every local override")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--local", type=Path, default=Path("params.local.yaml"),
                        help="the local overrides file the download stages read")
    args = parser.parse_args(argv)
    enter_root(args, parser)  # its defaults are the repository's files
    if args.reset:
        write_local(args.local, {})
        log.info("%s emptied: the download stages use params.yaml's checksums", args.local)
        return
    if args.mirror is None:
        parser.error("give a mirror directory, or --reset")
    changes = apply_mirror(args.params, args.mirror, args.local)
    if changes and guard_commits(args.local):
        log.info("a git pre-commit hook now refuses commits of %s with these checksums "
                 "(--no-verify commits them on purpose)", args.local)
    log.info("%d checksum(s) overridden in %s (params.yaml unchanged; `--reset` undoes it); "
             "now run: JAXPIPE_MIRROR=%s dvc repro", len(changes), args.local, args.mirror)


def entry() -> None:
    """Console-script entry point."""
    run(main)


if __name__ == "__main__":
    entry()
