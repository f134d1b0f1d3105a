"""Stage download@<dataset>: fetch and verify a raw data set into a folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from jaxpipe.core.config import load_layered
from jaxpipe.core.console import run
from jaxpipe.core.fileio import atomic_dir
from jaxpipe.data.sources import download, mirror_from_env
from jaxpipe.data.specs import DownloadConfig

log = logging.getLogger("download")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="key under download: in params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--local-params", type=Path,
                        help="local overrides, merged over --params (jaxpipe-mirror writes it)")
    args = parser.parse_args(argv)
    cfg = load_layered(DownloadConfig, args.params, args.local_params, "download", args.dataset)
    with atomic_dir(args.out) as tmp:
        served = download(cfg, tmp, mirror_from_env(), f"{args.params}:download.{args.dataset}")
    log.info("%s: %d files in %s (sources: %s)", args.dataset, len(served), args.out,
             ", ".join(sorted(set(served.values()))))


if __name__ == "__main__":
    run(main)
