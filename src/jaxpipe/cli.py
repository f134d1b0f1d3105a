"""The ``jaxpipe`` command beside ``dvc``: check, env, exp, new, predict, plots.

Library code never imports this module; it only calls into the library.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.project import enter_root, not_found

log = logging.getLogger("jaxpipe")


def _to_stdout(write: Callable[[], object]) -> None:
    """Run ``write`` (to standard output) and flush; a reader that stops early (``| head``)
    ends the command quietly, as it would any Unix filter's, with exit status 0."""
    import os
    import sys

    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit


def cmd_predict(args: argparse.Namespace) -> None:
    import sys

    from jaxpipe.artifacts import load_trained
    from jaxpipe.predict import as_table, predict_inputs, write_csv

    frame = predict_inputs(load_trained(args.model), args.input)
    if args.out is None:  # a person reads it: aligned columns
        _to_stdout(lambda: sys.stdout.write(as_table(frame)))
    elif args.out == "-":  # a pipe reads it: the CSV
        _to_stdout(lambda: write_csv(frame, sys.stdout))
    else:
        write_csv(frame, Path(args.out))
        log.info("%d predictions written to %s", len(frame), args.out)


def cmd_plots(args: argparse.Namespace) -> None:
    from jaxpipe.report import load_plots_json, render_static

    dvc_bin = shutil.which("dvc")
    if dvc_bin is None:
        raise JaxpipeError("dvc: not found on PATH (activate the project's virtual environment)")
    proc = subprocess.run([dvc_bin, "plots", "show", "--json"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise JaxpipeError(f"dvc plots show --json failed: {lines[-1]}")
    written = render_static(load_plots_json(proc.stdout), args.out, args.format, args.scale)
    log.info("%d plots written to %s", len(written), args.out)


def _output(*command: str) -> str:
    """What a ``dvc`` or ``git`` command prints; its last line as the error if it fails."""
    found = shutil.which(command[0])
    if found is None:
        raise JaxpipeError(f"{command[0]}: not found on PATH (activate the project's virtual "
                           "environment)")
    proc = subprocess.run([found, *command[1:]], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        errors = [line for line in lines if line.startswith("ERROR")]  # not dvc's help footer
        raise JaxpipeError(f"{' '.join(command[:4])} failed: {(errors or lines)[-1]}")
    return proc.stdout


def _commits(names: list[str]) -> dict[str, str]:
    """Each name (a branch, tag or commit) by the commit it names, in order, once each."""
    found: dict[str, str] = {}
    for name in names:
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise JaxpipeError(f"{name}: not a commit of this repository (a branch, tag or "
                               "commit: `git log --oneline` lists them)")
        found.setdefault(proc.stdout.strip(), name)
    return found


def cmd_exp(args: argparse.Namespace) -> None:
    import sys

    from jaxpipe.compare import baselines_from_list, groups_from_json, local_params_note, render

    if subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True,
                      check=False).returncode != 0:
        raise JaxpipeError("no commit to compare with: commit params.yaml and dvc.lock first "
                           "(docs/experiments.md)")
    listing = baselines_from_list(_output("dvc", "exp", "list", "--all-commits"))
    asked = ["HEAD", *listing] if args.all_commits else (args.rev or ["HEAD"])
    shown = _commits(asked)
    text = _output("dvc", "exp", "show", "--json", *(f"--rev={sha}" for sha in shown))
    width = args.width or shutil.get_terminal_size((120, 24)).columns
    lines: list[str] = []
    for baseline, experiments in groups_from_json(text):
        lines += [""] * bool(lines) + render(baseline, experiments, width)
    _to_stdout(lambda: sys.stdout.write("".join(f"{line}\n" for line in lines)))
    note = local_params_note(text)
    if note:
        log.info("%s", note)
    others = _commits(list(listing)) if listing else {}
    hidden = {sha: name for sha, name in others.items() if sha not in shown}
    if hidden:
        log.info("%d more experiment(s) on %d other commit(s) (%s): `jaxpipe exp -A` shows "
                 "every commit's, `jaxpipe exp --rev COMMIT` one's",
                 sum(listing[name] for name in hidden.values()), len(hidden),
                 ", ".join(hidden.values()))


def cmd_check(args: argparse.Namespace) -> None:
    from jaxpipe.data.sources import mirror_from_env
    from jaxpipe.preflight import preflight

    mirror = args.mirror or mirror_from_env()
    problems, summary = preflight(args.params, args.local, args.dvc_yaml, mirror)
    for problem in problems:
        log.error("%s", problem)
    if problems:
        raise JaxpipeError(f"{len(problems)} problem(s) found; nothing was run")
    log.info("ok: %s", summary)


def cmd_env(args: argparse.Namespace) -> None:
    import sys

    from jaxpipe.analysis.env import record, report

    if args.record:
        changed = record(args.root)
        log.info("environment.yaml recorded: %d stage(s) changed%s", len(changed),
                 f" ({', '.join(changed)}); `dvc repro` re-runs them" if changed else "")
        return
    lines, differ = report(args.root, args.verbose)
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    if differ:
        raise JaxpipeError(f"{differ} stage(s) would run on another environment than "
                           "environment.yaml records: `jaxpipe env --record`, then `dvc repro`")


def cmd_new(args: argparse.Namespace) -> None:
    from jaxpipe import scaffold

    for name in ("dvc.yaml", "params.yaml"):  # outside any repository: one line, not a trace
        if not (args.root / name).is_file():
            raise not_found(args.root / name, "jaxpipe new")

    if args.what == "model":
        if not args.like:
            raise JaxpipeError("jaxpipe new model: --like EXISTING is needed (the model whose "
                               "data, evaluation and plots the new one shares)")
        written = scaffold.new_model(args.root, args.name, args.like, args.kind)
        log.info("model %s added (%s); %s", args.name, ", ".join(p.name for p in written),
                 scaffold.next_steps(args.root, args.name))
    else:
        if args.like or args.kind:
            raise JaxpipeError("jaxpipe new family: takes a NAME only")
        written = scaffold.new_family(args.root, args.name)
        log.info("family %s written: %s; next: `jaxpipe new model MY_MODEL --like EXISTING "
                 "--kind %s`", args.name, ", ".join(str(p) for p in written), args.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jaxpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pred = sub.add_parser("predict", help="apply a trained model to new data")
    pred.add_argument("model", type=Path, help="model file (data/models/<model>.safetensors)")
    pred.add_argument("input", type=Path, nargs="+",
                      help="CSV or Parquet tables; for the CNN: PNG files (28x28, a light "
                           "digit on black; colour is read as its luminance), folders of them, "
                           "IDX files or a Parquet image column")
    pred.add_argument("--out", metavar="CSV", help="write the predictions as CSV to this file, "
                      "or to standard output with '-' (default: an aligned table on standard "
                      "output)")
    pred.set_defaults(func=cmd_predict)
    plots = sub.add_parser("plots", help="render every dvc plot to static files, offline")
    plots.add_argument("--out", type=Path, default=Path("dvc_plots/static"))
    plots.add_argument("--format", choices=["svg", "png"], default="svg")
    plots.add_argument("--scale", type=float, default=2.0,
                       help="PNG pixels per CSS pixel (default 2)")
    plots.set_defaults(func=cmd_plots)
    exp = sub.add_parser("exp", help="experiments side by side: changed params and metrics")
    exp.add_argument("--width", type=int, help="columns (default: the terminal's)")
    exp.add_argument("-A", "--all-commits", action="store_true",
                     help="the experiments of every commit, a table per commit")
    exp.add_argument("--rev", action="append", metavar="COMMIT",
                     help="the experiments of COMMIT (a branch, tag or commit; repeatable) "
                          "instead of HEAD's")
    exp.set_defaults(func=cmd_exp)
    check = sub.add_parser("check", help="validate params, schemas and the mirror; run nothing")
    check.add_argument("--params", type=Path, default=Path("params.yaml"))
    check.add_argument("--local", type=Path, default=Path("params.local.yaml"))
    check.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    check.add_argument("--mirror", type=Path, help="local mirror (default: $JAXPIPE_MIRROR)")
    check.set_defaults(func=cmd_check)
    env = sub.add_parser("env", help="each stage's software: recorded against installed")
    env.add_argument("--record", action="store_true",
                     help="write the installed environment to environment.yaml")
    env.add_argument("-v", "--verbose", action="store_true",
                     help="every stage's software, not only the summary and what differs")
    env.add_argument("--root", type=Path, default=Path("."), help="the repository")
    env.set_defaults(func=cmd_env)
    new = sub.add_parser("new", help="add a model (like an existing one) or a model family")
    new.add_argument("what", choices=["model", "family"])
    new.add_argument("name", help="a lower-case identifier (a new model's or family's name)")
    new.add_argument("--like", help="model: the existing model whose data, evaluation and plots "
                                    "it shares (its params are copied)")
    new.add_argument("--kind", help="model: another family than --like's (its defaults)")
    new.add_argument("--root", type=Path, default=Path("."), help="the repository")
    new.set_defaults(func=cmd_new)
    args = parser.parse_args(argv)
    enter_root(args, sub.choices[args.command])  # its defaults are the repository's files
    args.func(args)


def entry() -> None:
    """Console-script entry point."""
    run(main)


if __name__ == "__main__":
    entry()
