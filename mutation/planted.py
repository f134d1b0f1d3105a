"""Plant the realistic bugs of issues 15 and 33 one at a time and check a fast test catches each.

Each bug is a one-line edit of a copy of ``src/`` (the tree itself is never touched); the
named fast test files run against that copy (PYTHONPATH first) and must fail. Prints a
Markdown table; exits 1 if any bug got through, or if an edit no longer applies.

    python mutation/planted.py            # every bug
    python mutation/planted.py cnn-lr     # some, by id
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T = "tests/"


@dataclass(frozen=True)
class Bug:
    id: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = [
    Bug("cnn-lr", "CNN ignores its configured learning rate", "models/cnn/__init__.py",
        "net.optimizer_state(params, cfg.lr)", "net.optimizer_state(params, 1e-3)",
        (T + "test_models.py",)),
    Bug("cnn-last-epoch", "CNN returns the last epoch's parameters, not the best-validation",
        "models/cnn/__init__.py", "return Fit(best.params, history, info)",
        "return Fit(here, history, info)", (T + "test_models.py",)),
    Bug("split-seed", "train/test split ignores its seed", "data/prepare.py",
        "train_test_split(frame, test_size=cfg.test_size, random_state=cfg.seed",
        "train_test_split(frame, test_size=cfg.test_size, random_state=0",
        (T + "test_prepare.py",)),
    Bug("val-seed", "MNIST validation hold-out ignores its seed", "data/prepare.py",
        "test_size=cfg.val_size, random_state=cfg.seed", "test_size=cfg.val_size, random_state=0",
        (T + "test_prepare.py",)),
    Bug("val-stratify", "MNIST validation hold-out loses its stratification", "data/prepare.py",
        "stratify=train_y", "stratify=None", (T + "test_prepare.py",)),
    Bug("split-stratify", "table split loses its stratification", "data/prepare.py",
        "stratify=strat)", "stratify=None)", (T + "test_prepare.py",)),
    Bug("ref-on-train", "scikit-learn reference scored on the training split", "evaluate.py",
        'reference(task, data.split("train"), scored, cfg)',
        'reference(task, data.split("train"), data.split("train"), cfg)',
        (T + "test_evaluate.py",)),
    Bug("model-on-train", "the model scored on the training split", "evaluate.py",
        "scored = data.split(cfg.split)", 'scored = data.split("train")',
        (T + "test_evaluate.py",)),
    Bug("zip-symlink", "zip extraction's symbolic-link check removed", "data/kaggle.py",
        "if (info.external_attr >> 16) & 0o170000 == 0o120000:", "if False:",
        (T + "test_kaggle.py",)),
    Bug("json-nan", "JSON written with NaN allowed", "core/fileio.py",
        "indent=2, sort_keys=True, allow_nan=False", "indent=2, sort_keys=True, allow_nan=True",
        (T + "test_fileio.py",)),
    Bug("json-order", "JSON written without sorted keys", "core/fileio.py",
        "indent=2, sort_keys=True, allow_nan=False", "indent=2, sort_keys=False, allow_nan=False",
        (T + "test_fileio.py",)),
    Bug("meta-order", "model-file metadata without a fixed key order", "artifacts.py",
        'sort_keys=True, separators=(",", ":")', 'sort_keys=False, separators=(",", ":")',
        (T + "test_artifacts.py",)),
    Bug("meta-nan", "model-file metadata written with NaN allowed", "artifacts.py",
        'separators=(",", ":"), allow_nan=False', 'separators=(",", ":"), allow_nan=True',
        (T + "test_artifacts.py",)),
    Bug("xor-check-steps", "off-by-one in XOR's check-every-10 rule (9 steps a chunk)",
        "models/mlp.py", "jax.lax.fori_loop(0, check_every, step",
        "jax.lax.fori_loop(0, check_every - 1, step", (T + "test_models.py",)),
    Bug("xor-count", "off-by-one in XOR's reported step", "models/mlp.py",
        "return params, losses, n * check_every, done",
        "return params, losses, n * check_every + 1, done", (T + "test_models.py",)),
    Bug("xor-max", "off-by-one in XOR's last chunk", "models/mlp.py",
        "return (n < chunks) & ~done", "return (n <= chunks) & ~done",
        (T + "test_models.py",)),
    Bug("lr-range", "the learning-rate range check removed (every family)",
        "models/__init__.py", 'check(self.lr > 0, "lr", "must be positive")', "pass",
        (T + "test_models.py",)),
    Bug("seed-range", "the seed range check removed (every family)", "models/__init__.py",
        'in_range(self.seed, "seed", 0, self.seed_max)', "pass", (T + "test_models.py",)),
    # issue 33: each passed every fast test before its test was written
    Bug("env-minor", "a stage's recorded versions compared by major.minor only",
        "core/environment.py", "elif version != str(recorded):",
        'elif version.split(".")[:2] != str(recorded).split(".")[:2]:',
        (T + "test_env.py::test_a_record_one_patch_release_apart_is_refused_like_any_other",)),
    Bug("env-python-prefix", "a stage's recorded python compared as a prefix (3.1 passes 3.11)",
        "core/environment.py", "if fact in entry and str(entry[fact]) != value:",
        "if fact in entry and not value.startswith(str(entry[fact])):",
        (T + "test_env.py::test_a_record_of_another_python_is_refused",)),
    Bug("source-token", "the download's sources: line names a working URL with its token",
        "data/http.py", "return redact(base, base), failures", "return base, failures",
        (T + "test_http.py::test_a_signed_url_that_serves_keeps_its_token_out_of_every_line"
         "_and_file",)),
    Bug("fetch-log-token", "a served file's log line names its URL with the token",
        "data/http.py", '"%s: %d bytes from %s (%.1f MB/s)", spec.name, received, shown,',
        '"%s: %d bytes from %s (%.1f MB/s)", spec.name, received, url,',
        (T + "test_http.py::test_a_signed_url_that_serves_keeps_its_token_out_of_every_line"
         "_and_file",)),
    Bug("env-url-unmasked", "a URL's value from the environment not masked in the logs",
        "data/sources.py", "http.keep_secret(os.environ[name])", "None",
        (T + "test_http.py::test_a_value_a_url_takes_from_the_environment_is_masked_wherever"
         "_it_stands",)),
    Bug("pace-gpu", "mesh.pace waits on GPUs instead of CPU devices", "models/cnn/mesh.py",
        'if len(local) > 1 and local[0].platform == "cpu":',
        'if len(local) > 1 and local[0].platform == "gpu":',
        (T + "test_mesh.py::test_pace_waits_for_a_step_over_several_cpu_devices_and_not_over"
         "_one",)),
    Bug("pace-count", "mesh.pace counts every process's devices", "models/cnn/mesh.py",
        "if d.process_index == jax.process_index()]", "]",
        (T + "test_mesh.py::test_pace_waits_only_over_several_cpu_devices_of_this_process",)),
    Bug("relay-error", "the launcher folds every absl E line, not only the dump's preamble",
        "launch.py", 'r"(All thread stack traces.*)?")', 'r".*")',
        (T + "test_launch.py::test_an_ordinary_error_line_is_relayed_and_only_xla_s_crash"
         "_report_is_folded",)),
    Bug("relay-prefix", "the launcher matches the dump's preamble by its prefix", "launch.py",
        'DUMP_PREAMBLE.fullmatch(line.rstrip("\\n"))', "DUMP_PREAMBLE.match(line)",
        (T + "test_launch.py::test_an_ordinary_error_line_is_relayed_and_only_xla_s_crash"
         "_report_is_folded",)),
    Bug("live-every-process", "every launched process opens DVCLive and posts to Studio",
        "live.py", 'if not wanted() or os.environ.get("JAXPIPE_PROCESS_ID", "0") != "0":',
        "if not wanted():",
        (T + "test_live.py::test_in_a_launched_run_only_process_0_reports",)),
    Bug("budget-bytes", "the memory budget counts a byte a pixel, not float32's four",
        "models/cnn/__init__.py", "held = len(labels) * (4 * int(np.prod(IMAGE_SHAPE)) + 4)",
        "held = len(labels) * (int(np.prod(IMAGE_SHAPE)) + 4)",
        (T + "test_stream.py::test_the_budget_holds_float32_images_on_each_local_device_up_to"
         "_its_edge",)),
    Bug("budget-window", "the streaming window sized in decimal MB, not the budget's MiB",
        "models/cnn/__init__.py", "int(cfg.memory_budget_mb * MB)",
        "int(cfg.memory_budget_mb * 1e6)",
        (T + "test_stream.py::test_a_streamed_run_reads_windows_sized_by_its_budget",)),
]


def plant(bug: Bug, src: Path) -> str:
    """Run the bug's tests against a copy of ``src`` with the bug in; the outcome in words."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        path = copy / "jaxpipe" / bug.file
        text = path.read_text()
        if text.count(bug.old) != 1:
            return f"NOT PLANTED ({bug.old!r} found {text.count(bug.old)} times)"
        path.write_text(text.replace(bug.old, bug.new))
        env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        cmd = [sys.executable, "-m", "pytest", "-n", "0", "-x", "-q", "-p", "no:cacheprovider",
               "-m", "not e2e", *bug.tests]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    failed = [line.split("::", 1)[1].split(" ")[0] for line in proc.stdout.splitlines()
              if line.startswith("FAILED ")]
    if proc.returncode == 1 and failed:
        return f"caught by {failed[0]}"
    return f"NOT CAUGHT (pytest exit {proc.returncode})"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="bug ids (default: all)")
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    args = parser.parse_args()
    chosen = [b for b in BUGS if not args.ids or b.id in args.ids]
    say("| bug | planted in | outcome | s |\n| --- | --- | --- | --- |")
    ok = True
    for bug in chosen:
        started = time.monotonic()
        outcome = plant(bug, args.src)
        ok &= outcome.startswith("caught")
        say(f"| {bug.what} | `{bug.file}` | {outcome} | {time.monotonic() - started:.0f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
