"""Stage prepare@<dataset>: split, standardize on train only, write Parquet + inputs.json."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from jaxpipe.core.config import load_config
from jaxpipe.core.console import run
from jaxpipe.core.fileio import atomic_dir
from jaxpipe.data.prepare import PrepareConfig, prepare
from jaxpipe.data.schema import load_schema
from jaxpipe.data.tables import write_dataset

log = logging.getLogger("prepare")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="key under prepare: in params.yaml")
    parser.add_argument("--input", type=Path, required=True, help="raw file or folder")
    parser.add_argument("--schema", type=Path, help="declared schema of the input (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(PrepareConfig, args.params, "prepare", args.dataset)
    schema = load_schema(args.schema) if args.schema else None
    tables, inputs = prepare(args.input, cfg, schema)
    with atomic_dir(args.out) as tmp:
        write_dataset(tmp, tables, inputs)
    log.info("%s: %s", args.dataset, ", ".join(f"{k} {v.num_rows} rows" for k, v in tables.items()))


if __name__ == "__main__":
    run(main)
