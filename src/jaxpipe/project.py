"""The repository a command works on, found the way git and DVC find theirs: from the folder
it runs in, walking up to the first folder that holds ``.dvc`` or ``dvc.yaml``.

Every jaxpipe command that reads the repository's files by default (params.yaml, dvc.yaml,
environment.yaml, profiles/, the code) calls ``enter_root`` after parsing its arguments: the
paths the user gave stay where the user meant them (made absolute from the folder the command
runs in), and the command then runs in the repository's root, so each default is the
repository's own file whichever of its folders the command runs from.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jaxpipe.core.errors import JaxpipeError

MARKERS = (".dvc", "dvc.yaml")


def find_root(start: Path) -> Path | None:
    """The nearest folder, ``start`` or above it, that holds ``.dvc`` or ``dvc.yaml``."""
    start = start.resolve()
    return next((folder for folder in (start, *start.parents)
                 if any((folder / marker).exists() for marker in MARKERS)), None)


def not_found(path: str | Path, command: str) -> JaxpipeError:
    """The one line for a repository file a command needs and cannot find."""
    return JaxpipeError(f"{path}: not found: run {command} in the repository (the folder "
                        "holding dvc.yaml) or a folder below it")


def enter_root(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path | None:
    """If the command has a ``--root`` or a path argument left at its default (a file of the
    repository), find the root (from ``--root`` when given, as ``git -C`` does), make the
    user's own path arguments absolute, move into the root and return it; else change
    nothing and return None (``jaxpipe predict``, a command given every path, and one run
    outside any repository: its files are then looked for where it runs, and a missing one
    is named in one line)."""
    paths = {name: value for name, value in vars(args).items() if isinstance(value, Path)}
    defaults = {name for name, value in paths.items() if value is parser.get_default(name)}
    if not defaults and "root" not in paths:
        return None
    given = {name: value for name, value in paths.items() if name not in defaults}
    root = find_root(given.get("root", Path.cwd()))
    if root is None:  # not in a repository: the folder given (or this one), as it is
        return None
    for name, value in given.items():
        setattr(args, name, value.absolute())
    os.chdir(root)
    if "root" in paths:
        args.root = Path(".")
    return root
