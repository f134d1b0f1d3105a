"""Prove that the pipeline reproduces, with the real dvc, in a temporary copy of the repo.

1. ``dvc repro``; record every output's hash from dvc.lock.
2. ``dvc repro`` again: no stage may run, and ``dvc status`` must be clean.
3. ``dvc repro --force``: every output hash must equal the first run's (bitwise).
4. Cross-configuration: ``dvc repro --force`` again as another machine would run it (fewer
   cores, a lower ISA cap: ``--cross cores=1``); every output hash must equal the first run's.
5. Change one model's param: exactly that model's train and evaluate stages may run.
Prints a short report; exits non-zero naming whatever differed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxpipe.core.config import read_yaml
from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.project import enter_root, not_found
from jaxpipe.tools import expected as outputs_record
from jaxpipe.tools.workspace import RunConfig, changed, dvc, make_workspace, ran_stages, set_params

log = logging.getLogger("jaxpipe.tools.repro")


@dataclass(frozen=True)
class Record:
    """The committed record of every output's hash (``jaxpipe.tools.expected``): what the
    first run is compared with (None: nothing), and where to write it (None: nowhere)."""

    expected: Mapping[str, Any] | None
    write_to: Path | None
    profile: str
    cpu: Mapping[str, Any]


@dataclass
class Step:
    """One check's outcome."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def lock_hashes(ws: Path) -> dict[str, str]:
    """Every stage output's path -> hash, read from dvc.lock."""
    lock = read_yaml((ws / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values()
            for out in stage.get("outs", [])}


def lock_outputs(ws: Path) -> dict[str, list[str]]:
    """Each stage of dvc.lock -> the paths of its outputs."""
    lock = read_yaml((ws / "dvc.lock").read_text())
    return {name: [out["path"] for out in stage.get("outs", [])]
            for name, stage in lock["stages"].items()}


def compare(first: dict[str, str], again: dict[str, str]) -> list[str]:
    """One problem line per output whose hash differs from the first run's."""
    return [f"{path}: {first[path]} then {again.get(path)}" for path in sorted(first)
            if again.get(path) != first[path]]


def check(ws: Path, mirror: Path | None, model: str, param: str, value: object,
          cross: list[RunConfig] | None = None, record: Record | None = None) -> list[Step]:
    """Run the checks in workspace ``ws``; return their outcomes. With ``record``, the first
    run is compared with ``record.expected`` and, if every check passes, written to
    ``record.write_to``."""
    steps = []
    started = time.perf_counter()
    log.info("1. dvc repro (the whole pipeline, small profile)")
    first = dvc(ws, "repro", mirror=mirror)
    hashes, outputs = lock_hashes(ws), lock_outputs(ws)
    steps.append(Step("repro", True, time.perf_counter() - started,
                      f"{len(ran_stages(first.stdout))} stages, {len(hashes)} outputs"))
    if record is not None and record.expected is not None:
        problem, detail = outputs_record.compare(record.expected, hashes, record.profile,
                                                 record.cpu)
        steps.append(Step(f"outputs as {outputs_record.RECORD} records", problem is None, 0.0,
                          detail, [problem] if problem else []))

    started = time.perf_counter()
    log.info("2. dvc repro again: no stage may run")
    again = ran_stages(dvc(ws, "repro", mirror=mirror).stdout)
    status = changed(dvc(ws, "status", "--json").stdout)
    problems = [f"stage ran again: {s}" for s in again] + [f"not clean: {s}" for s in status]
    steps.append(Step("repro again runs nothing", not problems, time.perf_counter() - started,
                      "no stage ran, status clean" if not problems else "", problems))

    started = time.perf_counter()
    log.info("3. dvc repro --force: every output must be bitwise identical")
    dvc(ws, "repro", "--force", mirror=mirror)
    problems = compare(hashes, lock_hashes(ws))
    steps.append(Step("repro --force is bitwise identical", not problems,
                      time.perf_counter() - started,
                      f"{len(hashes) - len(problems)}/{len(hashes)} outputs identical", problems))

    for config in cross or []:
        started = time.perf_counter()
        log.info("4. dvc repro --force under %s: every output must be bitwise identical", config)
        dvc(ws, "repro", "--force", mirror=mirror, config=config)
        problems = compare(hashes, lock_hashes(ws))
        steps.append(Step(f"repro --force under {config} is bitwise identical", not problems,
                          time.perf_counter() - started,
                          f"{len(hashes) - len(problems)}/{len(hashes)} outputs identical",
                          problems))

    started = time.perf_counter()
    log.info("5. change train.%s.%s: only its model may re-run", model, param)
    set_params(ws / "params.yaml", {f"train.{model}.{param}": value})
    ran = set(ran_stages(dvc(ws, "repro", mirror=mirror).stdout))
    expected = {f"train@{model}", f"evaluate@{model}"}
    problems = [f"also ran: {s}" for s in sorted(ran - expected)]
    problems += [f"did not run: {s}" for s in sorted(expected - ran)]
    steps.append(Step(f"train.{model}.{param}={value} re-runs only its model", not problems,
                      time.perf_counter() - started, ", ".join(sorted(ran)), problems))
    if record is not None and record.write_to is not None and all(s.ok for s in steps):
        outputs_record.write(record.write_to, hashes, outputs, record.profile, record.cpu)
        log.info("%s recorded: %d outputs on %s", record.write_to, len(hashes),
                 outputs_record.describe(record.cpu))
    return steps


def format_report(steps: list[Step]) -> str:
    """A short table: one line per check, then every problem."""
    lines = ["reproducibility check", "-" * 80]
    for step in steps:
        mark = "ok  " if step.ok else "FAIL"
        lines.append(f"{mark} {step.name:<52} {step.seconds:6.1f} s  {step.detail}")
        lines.extend(f"       - {p}" for p in step.problems)
    lines.append("-" * 80)
    failed = [s.name for s in steps if not s.ok]
    lines.append("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the project to copy (default: the current directory)")
    parser.add_argument("--mirror", type=Path, default=os.environ.get("JAXPIPE_MIRROR"),
                        help="local mirror (default: $JAXPIPE_MIRROR)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="params profile (default: <root>/profiles/small.yaml)")
    parser.add_argument("--model", default="logreg_mobile")
    parser.add_argument("--param", default="lr", help="train.<model> key to change")
    parser.add_argument("--value", type=read_yaml, default="0.05")
    parser.add_argument("--cross", action="append", type=RunConfig.parse, default=[],
                        metavar="CONFIG", help="also run as another machine: cores=N and/or "
                        "isa=AVX2|AVX|SSE4_2, e.g. --cross cores=1 (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace for debugging")
    parser.add_argument("--record", action="store_true",
                        help=f"after every check passes, rewrite {outputs_record.RECORD} from "
                        "the first run (after a deliberate change of outputs), not compare")
    args = parser.parse_args(argv)
    enter_root(args, parser)  # its defaults are the repository's files
    profile = args.profile or args.root / "profiles" / "small.yaml"
    if not profile.is_file():
        raise not_found(profile, "jaxpipe-repro-check")
    mirror = Path(args.mirror).resolve() if args.mirror else None
    committed = args.root / outputs_record.RECORD
    known = None if args.record or not committed.is_file() else outputs_record.read(committed)
    record = Record(known, committed if args.record else None, profile.as_posix(),
                    outputs_record.cpu())
    tmp = tempfile.mkdtemp(prefix="jaxpipe-repro-")
    log.info("workspace %s (mirror %s, profile %s)", tmp, mirror, profile)
    try:
        ws = make_workspace(args.root.resolve(), Path(tmp), mirror=mirror, profile=profile)
        steps = check(ws, mirror, args.model, args.param, args.value, args.cross, record)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(format_report(steps))
    if not all(s.ok for s in steps):
        raise JaxpipeError("reproducibility check failed: " + "; ".join(
            p for s in steps for p in s.problems))


def entry() -> None:
    """Console-script entry point."""
    run(main)


if __name__ == "__main__":
    entry()
