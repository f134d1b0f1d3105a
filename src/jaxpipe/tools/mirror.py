"""Point the pipeline at a local mirror whose files differ from the official ones.

A team's internal mirror (or ``../shared/datasets``, whose MNIST training files are a real
subset) lists each file's MD5 in ``<mirror>/<folder>/MD5SUMS``. This rewrites the
``download`` checksums in params.yaml for the files whose mirror MD5 differs, keeping the
file's comments, and says which keys changed. Sizes of changed files are dropped.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from jaxpipe.core.config import roundtrip_yaml
from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path

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


def apply_mirror(params_path: Path, mirror: Path) -> dict[tuple[str, str], str]:
    """Rewrite params.yaml's download checksums to match ``mirror``; return what changed."""
    if not mirror.is_dir():
        raise JaxpipeError(f"{mirror}: mirror directory not found")
    yaml = roundtrip_yaml()
    params = yaml.load(params_path.read_text())
    changes = mirror_overrides(params, mirror)
    for (dataset, key), md5 in changes.items():
        spec = params["download"][dataset]["files"][key]
        spec["md5"] = md5
        spec.pop("size", None)
        log.info("download.%s.files.%s.md5 -> %s (from the mirror)", dataset, key, md5)
    if changes:
        with atomic_path(params_path) as tmp, open(tmp, "w") as handle:
            yaml.dump(params, handle)
    return changes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirror", type=Path, help="mirror directory (e.g. ../shared/datasets)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    changes = apply_mirror(args.params, args.mirror)
    log.info("%d checksum(s) overridden in %s; now run: JAXPIPE_MIRROR=%s dvc repro",
             len(changes), args.params, args.mirror)


def entry() -> None:
    """Console-script entry point."""
    run(main)


if __name__ == "__main__":
    entry()
