"""Stage environment (checks/dvc.yaml; ``always_changed``, and every first stage of dvc.yaml
depends on its output, so every ``dvc repro`` runs it first): refuse in one line while an
installed version differs from ``environment.yaml``, so an upgrade is never met with "up to
date" (docs/reproducibility.md, "An upgrade is never silent"). Else write ``--out``, the same
bytes every time, so nothing after it re-runs.

Fast on purpose, since every ``dvc repro`` pays for it: it reads the recorded package names
from ``environment.yaml`` and asks ``importlib.metadata`` for their versions (no JAX, no walk
of the code), and it writes its one line itself (``jaxpipe.core.console`` loads pyarrow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxpipe.core.environment import CHECK_STAGE, FILE, check_all
from jaxpipe.core.errors import JaxpipeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=Path(FILE), help="default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="written when all is as recorded")
    args = parser.parse_args(argv)
    try:
        problem = check_all(args.record)
    except JaxpipeError as exc:
        problem = str(exc)
    if problem is None:
        args.out.write_text(f"installed as {FILE} records\n")
        return 0
    sys.stderr.write(f"error: {CHECK_STAGE}: {problem}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
