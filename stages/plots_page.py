"""Stage plots_page: the offline HTML template that `dvc plots show` fills (see .dvc/config)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxpipe.core.console import run
from jaxpipe.report import write_template


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="HTML template to write")
    args = parser.parse_args(argv)
    write_template(args.out)


if __name__ == "__main__":
    run(main)
