"""Estimate the fast tests' mutation score over the whole of src/jaxpipe from a random sample.

Running every mutant takes hours on two cores; a seeded random sample of ``--n`` mutants
(the download, archive and mirror modules excluded by default: ``check.py`` runs those whole)
gives the score with a 95% Wilson interval. The sample is stratified: each module gets its
share of ``--n`` (by its count of mutants), drawn with a seed of its own, so that editing one
module re-draws only that module's mutants. Survivors judged equivalent (EQUIVALENT.md) are
left out of the score, as in ``check.py``; every other survivor is listed.

    python mutation/sample.py --n 300 --seed 0            # generate, sample, run, report
    python mutation/sample.py --n 300 --seed 0 --run-only cli.py launch.py   # re-run two
    python mutation/sample.py --n 300 --seed 0 --no-run   # report the last run's results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check import KILLED, MUST_BE_COMPLETE, PACKAGE, ROOT, equivalent_names, say  # noqa: E402

METAS = ROOT / "mutants" / "src" / "jaxpipe"
RESULT = ROOT / "mutation" / "sample.json"
NO_TESTS = 33  # mutmut's exit code for a mutant no fast test reaches (in-process)
# mutmut's CPU-time limit (SIGXCPU): a forked child can also spin in JAX's thread pool, so a
# timeout is not taken as a kill until the mutant's tests are re-run in a fresh process: a
# failure there, or a hang past the wall limit again, is a kill
TIMEOUTS = {-24, 24, 152, 255, 36}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def mutants_by_module() -> dict[str, list[str]]:
    """Every generated mutant's name, by module path under src/jaxpipe."""
    out: dict[str, list[str]] = {}
    for meta in sorted(METAS.rglob("*.py.meta")):
        module = meta.relative_to(METAS).as_posix().removesuffix(".meta")
        names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
        if names and (PACKAGE / module).exists():
            out[module] = names
    return out


def exit_codes() -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in METAS.rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def stratified(population: dict[str, list[str]], n: int, seed: int) -> list[str]:
    """About ``n`` names: each module's share (at least one), drawn with its own seed."""
    total = sum(len(names) for names in population.values())
    sample: list[str] = []
    for module, names in sorted(population.items()):
        k = min(len(names), max(1, round(n * len(names) / total)))
        sample += random.Random(f"{seed}:{module}").sample(sorted(names), k)
    return sorted(sample)


def mutmut(names: list[str], check: bool = True, children: int = 1) -> None:
    mutants = ROOT / "mutants"
    mutants.mkdir(exist_ok=True)
    if not (mutants / ".git").exists():  # some tests ask dvc, which needs a git repo
        subprocess.run(["git", "init", "-q", str(mutants)], check=True)
    subprocess.run(["mutmut", "run", "--max-children", str(children), *names], cwd=ROOT,
                   check=check, stdout=subprocess.DEVNULL,
                   stderr=None if check else subprocess.DEVNULL)


def pytest_args() -> list[str]:
    """The fast-test options mutmut runs with (pyproject.toml [tool.mutmut])."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"][
        "pytest_add_cli_args"]


def verify_timeouts(names: list[str], wall_s: int, extra: tuple[str, ...] = ()
                    ) -> dict[str, str]:
    """Re-run each mutant's tests (those that reached it, and the ``extra`` test files) in a
    fresh python (no fork, no CPU limit, a wall limit): "killed" if one fails, "survived" if
    all pass, "hangs" if they run past it."""
    mutants = ROOT / "mutants"
    stats = json.loads((mutants / "mutmut-stats.json").read_text())
    tests_of = stats["tests_by_mangled_function_name"]
    out: dict[str, str] = {}
    for name in names:
        tests = sorted(tests_of.get(name.rsplit("__mutmut_", 1)[0], [])) + list(extra)
        if not tests:
            continue
        env = {**os.environ, "MUTANT_UNDER_TEST": name,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(mutants / "src"),
                                                           os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", *pytest_args(), *tests]
        try:
            proc = subprocess.run(cmd, cwd=mutants, env=env, capture_output=True,
                                  timeout=wall_s)
            out[name] = "killed" if proc.returncode == 1 else (
                "survived" if proc.returncode == 0 else f"exit {proc.returncode}")
        except subprocess.TimeoutExpired:
            out[name] = "hangs"
        say(f"  {name}: {out[name]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="mutants to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", nargs="*", default=MUST_BE_COMPLETE,
                        help="modules left out of the sample (default: those check.py runs "
                             "whole)")
    parser.add_argument("--no-run", action="store_true", help="report the last run's results")
    parser.add_argument("--run-only", nargs="*", metavar="MODULE",
                        help="run only these modules' sampled mutants (others keep their "
                             "last results)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants run at once")
    parser.add_argument("--resume", action="store_true",
                        help="run only the sampled mutants that have no result yet")
    parser.add_argument("--verify-timeouts", type=int, metavar="SECONDS", default=0,
                        help="re-run each timed-out sampled mutant's tests in a fresh process "
                             "with this wall limit, and score it by that run")
    parser.add_argument("--recheck", nargs="*", metavar="TEST_FILE", default=[],
                        help="re-run each sampled survivor against its tests and these test "
                             "files (tests added since the run; copied into mutants/ first), "
                             "and score it by that run")
    parser.add_argument("--min-score", type=float, default=0.85,
                        help="fail (exit 1) when the estimate is below this (issue 15's goal)")
    args = parser.parse_args()
    started = time.monotonic()
    if not args.no_run:  # generate every module's mutants; a filter matching none runs none
        mutmut(["jaxpipe.no_such_module.*"], check=False)
    population = {m: n for m, n in mutants_by_module().items() if m not in args.exclude}
    names = [n for group in population.values() for n in group]
    if not names:
        sys.exit(f"error: no mutants under {METAS}: did mutmut generate them?")
    sample = stratified(population, args.n, args.seed)
    if not args.no_run:
        module_of = {n: m for m, group in population.items() for n in group}
        chosen = [n for n in sample if not args.run_only or module_of[n] in args.run_only]
        if args.resume:
            done = exit_codes()
            chosen = [n for n in chosen if done.get(n) is None]
        if chosen:
            mutmut(chosen, children=args.max_children)
    codes, equivalent = exit_codes(), equivalent_names()
    # a re-run is only good for the mutants it ran: kept when reporting, dropped after a run
    previous = (json.loads(RESULT.read_text()).get("timeouts", {})
                if args.no_run and RESULT.exists() else {})
    timed_out = [n for n in sample if codes.get(n) in TIMEOUTS]
    if args.verify_timeouts:
        previous.update(verify_timeouts([n for n in timed_out if n not in previous],
                                        args.verify_timeouts))
    verified = {n: previous[n] for n in timed_out if n in previous}
    for name in timed_out:  # scored by the re-run; not scored (unchecked) without one
        codes[name] = {"killed": 1, "hangs": 1, "survived": 0}.get(verified.get(name, ""))
    rechecked = (json.loads(RESULT.read_text()).get("rechecked", {})
                 if args.no_run and RESULT.exists() else {})
    if args.recheck:
        for test_file in args.recheck:
            shutil.copy(ROOT / test_file, ROOT / "mutants" / test_file)
        todo = [n for n in sample if codes.get(n) in (0, NO_TESTS) and n not in rechecked
                and n not in equivalent]
        rechecked.update(verify_timeouts(todo, max(args.verify_timeouts, 300),
                                         tuple(args.recheck)))
    rechecked = {n: r for n, r in rechecked.items() if n in sample}
    for name, outcome in rechecked.items():  # a survivor's whole test list may run long:
        if outcome == "killed":               # only a failure counts
            codes[name] = 1
    unchecked = [n for n in sample if codes.get(n) is None]
    killed = [n for n in sample if codes.get(n) in KILLED]
    equiv = [n for n in sample if n in equivalent and n not in killed]
    survived = sorted(set(sample) - set(killed) - set(unchecked) - set(equiv))
    no_tests = [n for n in survived if codes.get(n) == NO_TESTS]
    module_of = {n: m for m, group in population.items() for n in group}
    by_module: dict[str, dict[str, int]] = {}
    for n in sample:
        row = by_module.setdefault(module_of[n], {"sampled": 0, "checked": 0, "killed": 0,
                                                  "no_tests": 0})
        row["sampled"] += 1
        row["checked"] += n not in unchecked
        row["killed"] += n in killed
        row["no_tests"] += codes.get(n) == NO_TESTS
    judged = len(sample) - len(equiv) - len(unchecked)
    low, high = wilson(len(killed), judged)
    score = len(killed) / judged if judged else 0.0
    result = {"population": len(names), "modules": len(population), "sample": len(sample),
              "seed": args.seed, "killed": len(killed), "equivalent": len(equiv),
              "unchecked": len(unchecked), "no_tests": len(no_tests), "survived": survived,
              "by_module": dict(sorted(by_module.items())),
              "score": round(score, 4) if judged else None,
              "wilson_95": [round(low, 4), round(high, 4)],
              "excluded": sorted(args.exclude),
              "timeouts": verified,
              "rechecked": rechecked,
              "timeouts_unverified": sorted(set(timed_out) - set(verified))}
    if not args.no_run:
        result["seconds"] = round(time.monotonic() - started)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    say(f"{len(killed)}/{judged} sampled mutants killed ({score:.1%}; "
        f"95% interval "
        f"{low:.1%}-{high:.1%}) of {len(names)} in {len(population)} modules; "
        f"{len(equiv)} judged equivalent, {len(unchecked)} not checked (of them "
        f"{len(timed_out) - len(verified)} timed out, not re-run); {len(verified)} timeouts "
        f"re-run in a fresh process; {len(no_tests)} of the survivors are in code no fast test "
        f"reaches in-process")
    for module, row in sorted(by_module.items(),
                              key=lambda kv: kv[1]["killed"] / max(kv[1]["checked"], 1)):
        say(f"  {module}: {row['killed']}/{row['checked']} checked mutants killed "
            f"({row['no_tests']} unreached; {row['sampled'] - row['checked']} not checked)")
    for name in survived:
        say(f"    survived: {name}")
    if score < args.min_score:
        say(f"FAIL the estimate {score:.1%} is below --min-score {args.min_score:.0%}")
    return 1 if unchecked or score < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
