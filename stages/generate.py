"""Stage generate@<name>: write a seeded synthetic data set as Parquet."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa

from jaxpipe.cli import run
from jaxpipe.config import load_config
from jaxpipe.fileio import write_parquet
from jaxpipe.generate import GenerateConfig, generate
from jaxpipe.tables import table_from_frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="key under generate: in params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="output Parquet file")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(GenerateConfig, args.params, "generate", args.name)
    frame = generate(cfg)
    target_type = pa.float64() if cfg.kind == "linear" else pa.int64()
    write_parquet(args.out, table_from_frame(frame, "y", target_type))


if __name__ == "__main__":
    run(main)
