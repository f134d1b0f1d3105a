"""``jaxpipe-deps``: every stage of dvc.yaml declares exactly the code it runs
(``jaxpipe.analysis.deps``) and its own environment entry naming exactly the packages that
code imports (``jaxpipe.analysis.env``); prints each stage that does not and exits 2 if any.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxpipe.analysis.deps import check_project
from jaxpipe.analysis.env import declared_problems
from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.project import enter_root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    enter_root(args, parser)  # its defaults are the repository's files
    results = check_project(args.root.resolve())
    bad = [r for r in results if r.missing or r.extra]
    for r in bad:
        for path in r.missing:
            sys.stdout.write(f"{r.stage}: imports {path}, not in its deps\n")
        for path in r.extra:
            sys.stdout.write(f"{r.stage}: declares {path}, which it does not import (wholly)\n")
    env_problems = declared_problems(args.root.resolve())
    for line in env_problems:
        sys.stdout.write(f"{line}\n")
    sys.stdout.flush()
    if bad:
        raise JaxpipeError(f"{len(bad)} of {len(results)} stages' code deps are wrong")
    if env_problems:
        raise JaxpipeError(f"{len(env_problems)} stage environment declaration(s) are wrong: "
                           "`jaxpipe env --record` rewrites environment.yaml")
    sys.stdout.write(f"all {len(results)} stages declare exactly the code they import and "
                     "the packages it imports\n")


def entry() -> None:
    """Console-script entry point."""
    run(main)


if __name__ == "__main__":
    entry()
