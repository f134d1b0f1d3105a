"""The committed record of what the pipeline's outputs should be (``checks/outputs.yaml``):
every output's hash from one ``dvc repro`` on the small profile and the local mirror's data,
with the CPU that run was on. ``jaxpipe-repro-check`` compares its first run with it, so each
CI run, on whatever CPU CI is given, is a comparison across CPUs;
``jaxpipe-repro-check --record`` rewrites it after a deliberate change.

The downloaded data (the ``download`` stages' outputs) are kept apart: a run on other data
(no mirror, or another one) is not compared, and says so.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxpipe.core.config import read_yaml_file, roundtrip_yaml
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path

RECORD = Path("checks/outputs.yaml")
FLAGS = ("avx2", "avx512f")  # what the CPU's matrix kernels are chosen by (reproducibility.md)
DATA_STAGE = "download"
HEADER = """\
Every output's hash from one `dvc repro` on profiles/small.yaml and the local mirror's data
(JAXPIPE_MIRROR), and the CPU it ran on: `jaxpipe-repro-check` (CI's repro step) compares its
own run with it. Written by `jaxpipe-repro-check --record`; don't edit by hand.
"""


def cpu(cpuinfo: str | None = None) -> dict[str, Any]:
    """This machine's CPU model and which of ``FLAGS`` it has (``/proc/cpuinfo``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    return {"model": model, "flags": [f for f in FLAGS if f in flags]}


def describe(machine: Mapping[str, Any]) -> str:
    """``AMD EPYC (avx2, avx512f)``."""
    return f"{machine.get('model')} ({', '.join(machine.get('flags') or []) or 'no AVX2'})"


def split(hashes: Mapping[str, str], stages: Mapping[str, list[str]]) -> tuple[dict, dict]:
    """The downloaded data's hashes and the rest, by the stage that writes each output."""
    data = {p for stage, outs in stages.items() if stage.split("@")[0] == DATA_STAGE
            for p in outs}
    return ({p: h for p, h in sorted(hashes.items()) if p in data},
            {p: h for p, h in sorted(hashes.items()) if p not in data})


def write(path: Path, hashes: Mapping[str, str], stages: Mapping[str, list[str]],
          profile: str, machine: Mapping[str, Any]) -> None:
    """Write the record of one run (``stages``: each stage's output paths)."""
    from ruamel.yaml.comments import CommentedMap

    data, outputs = split(hashes, stages)
    tree = CommentedMap([("cpu", CommentedMap([("model", machine["model"]),
                                               ("flags", list(machine["flags"]))])),
                         ("profile", profile), ("data", data), ("outputs", outputs)])
    tree.yaml_set_start_comment(HEADER)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w") as out:
        roundtrip_yaml().dump(tree, out)


def read(path: Path) -> dict[str, Any]:
    record = read_yaml_file(path)
    if not isinstance(record, Mapping) or not all(k in record for k in ("cpu", "outputs")):
        raise JaxpipeError(f"{path}: not a record of outputs (rewrite it: "
                           "`jaxpipe-repro-check --record`)")
    return dict(record)


def compare(record: Mapping[str, Any], hashes: Mapping[str, str], profile: str,
            machine: Mapping[str, Any], where: Path = RECORD) -> tuple[str | None, str]:
    """One problem line (or None) and a detail, comparing a run's ``hashes`` with the record.
    Only outputs both have are compared; a run on another profile or other data is not."""
    if str(record.get("profile")) != profile:
        return None, f"not compared: profile {profile}, the record's is {record.get('profile')}"
    other = sorted(p for p, h in (record.get("data") or {}).items() if hashes.get(p) != h)
    if other:
        return None, (f"not compared: {other[0]} is other data than the record's (it was "
                      "made from the local mirror: JAXPIPE_MIRROR)")
    expected = record["outputs"]
    both = [p for p in sorted(expected) if p in hashes]
    differ = [p for p in both if hashes[p] != expected[p]]
    detail = f"{len(both) - len(differ)}/{len(both)} outputs as recorded on " + describe(
        record["cpu"])
    if not differ:
        return None, detail
    first, more = differ[0], (f" and {len(differ) - 1} more" if len(differ) > 1 else "")
    verb = "differ" if more else "differs"
    return (f"{first}{more} {verb} from {where}: {hashes[first]} on {describe(machine)} "
            f"here, {expected[first]} on {describe(record['cpu'])} in the record (after a "
            "deliberate change: `jaxpipe-repro-check --record`)"), detail
