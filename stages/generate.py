"""Stage generate@<name>: write a seeded synthetic data set as Parquet."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxpipe.core.config import load_config
from jaxpipe.core.console import run
from jaxpipe.core.fileio import write_parquet
from jaxpipe.data.generate import GenerateConfig, generate_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="key under generate: in params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="output Parquet file")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(GenerateConfig, args.params, "generate", args.name)
    write_parquet(args.out, generate_table(cfg))


if __name__ == "__main__":
    run(main)
