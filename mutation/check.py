"""Run mutmut on chosen modules of src/jaxpipe and check the score has not dropped.

Each module's score is killed / (mutants - judged equivalent), with the equivalent mutants
listed by name in mutation/EQUIVALENT.md. The recorded scores are in mutation/score.json;
a module measured below its recorded score, or a download/archive/mirror module below 100%,
fails the check. ``--record`` writes the scores measured now into score.json instead.

    python mutation/check.py --modules data/http.py tools/mirror.py   # run, then check
    python mutation/check.py --no-run --modules data/http.py          # check the last run
    python mutation/check.py --modules all --record                   # everything (hours)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCORES = ROOT / "mutation" / "score.json"
EQUIVALENT = ROOT / "mutation" / "EQUIVALENT.md"
PACKAGE = ROOT / "src" / "jaxpipe"
MUST_BE_COMPLETE = ["data/specs.py", "data/sources.py", "data/http.py", "data/kaggle.py",
                    "data/idx.py", "tools/mirror.py"]
KILLED = {1, 3, 24, -24, 152, 255, 36}  # a failing test, or a timeout (the mutant hangs)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def all_modules() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def pattern(module: str) -> str:
    """mutmut's name pattern for the functions and methods of ``module`` (not submodules)."""
    dotted = "jaxpipe." + module.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__") + ".x*"


def run_mutmut(modules: list[str]) -> float:
    """``mutmut run`` on ``modules`` with one worker (mutants/ is a git repo: some tests ask
    dvc, which needs one); returns the seconds it took."""
    mutants = ROOT / "mutants"
    mutants.mkdir(exist_ok=True)
    if not (mutants / ".git").exists():
        subprocess.run(["git", "init", "-q", str(mutants)], check=True)
    started = time.monotonic()
    cmd = ["mutmut", "run", "--max-children", "1", *[pattern(m) for m in modules]]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def equivalent_names() -> set[str]:
    """Mutant names listed in EQUIVALENT.md (`` `jaxpipe....__mutmut_N` `` at a line start)."""
    return set(re.findall(r"^- `([\w.ǁ]+__mutmut_\d+)`", EQUIVALENT.read_text(), re.M))


def measure(module: str, equivalent: set[str]) -> dict:
    """Counts of the last run for ``module``, from mutmut's meta file."""
    meta = ROOT / "mutants" / "src" / "jaxpipe" / f"{module}.meta"
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    killed = [k for k, c in codes.items() if c in KILLED]
    unchecked = [k for k, c in codes.items() if c is None]
    equiv = [k for k, c in codes.items() if k in equivalent and c not in KILLED]
    survived = sorted(set(codes) - set(killed) - set(unchecked) - set(equiv))
    judged = len(codes) - len(equiv)
    return {"killed": len(killed), "total": len(codes), "equivalent": len(equiv),
            "unchecked": len(unchecked), "survived": survived,
            "score": round(len(killed) / judged, 4) if judged else 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=MUST_BE_COMPLETE,
                        help="paths under src/jaxpipe, or 'all' (default: the download, "
                             "archive and mirror modules)")
    parser.add_argument("--no-run", action="store_true", help="check the last run's results")
    parser.add_argument("--record", action="store_true", help="write the scores to score.json")
    args = parser.parse_args()
    modules = all_modules() if args.modules == ["all"] else args.modules
    seconds = None if args.no_run else run_mutmut(modules)
    recorded = json.loads(SCORES.read_text()) if SCORES.exists() else {"modules": {}}
    equivalent, failures = equivalent_names(), []
    for module in modules:
        now = measure(module, equivalent)
        if now["total"] == 0:
            continue
        before = recorded["modules"].get(module, {}).get("score", 0.0)
        floor = 1.0 if module in MUST_BE_COMPLETE else before
        say(f"{module}: {now['killed']}/{now['total'] - now['equivalent']} killed "
            f"({now['score']:.1%}; recorded {before:.1%}; {now['equivalent']} equivalent)")
        for name in now["survived"]:
            say(f"    survived: {name}")
        if now["unchecked"]:
            failures.append(f"{module}: {now['unchecked']} mutants not checked (run it)")
        elif now["score"] < floor:
            failures.append(f"{module}: {now['score']:.1%} is below {floor:.1%}")
        if args.record:
            recorded["modules"][module] = {k: now[k] for k in ("killed", "total",
                                                                "equivalent", "score")}
    if args.record:
        mods = recorded["modules"].values()
        killed, judged = (sum(m["killed"] for m in mods),
                          sum(m["total"] - m["equivalent"] for m in mods))
        recorded["overall"] = {"killed": killed, "judged": judged,
                               "score": round(killed / judged, 4) if judged else None}
        if seconds is not None:
            recorded.setdefault("seconds", {})[" ".join(args.modules)] = round(seconds)
        SCORES.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    for failure in failures:
        say(f"FAIL {failure}")
    return 1 if failures and not args.record else 0


if __name__ == "__main__":
    sys.exit(main())
