"""`jaxpipe exp` (jaxpipe.compare): experiments side by side in a terminal's width."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxpipe.compare import (
    baselines_from_list,
    groups_from_json,
    local_params_note,
    render,
    rows_from_json,
)
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools.workspace import GIT_ENV


def commit(name: str, lr: float, l2: float, metrics: dict[str, dict]) -> dict:
    return {"rev": name, "name": name, "data": {
        "params": {"params.yaml": {"data": {"train": {"m": {"lr": lr, "l2": l2}}}},
                   "environment.yaml": {"data": {"train": {"m": {"python": "3.11"}}}}},
        "metrics": {f"metrics/{k}.json": {"data": v} for k, v in metrics.items()}
                   | {"metrics/details/m.json": {"data": {"rows": 3}}}}}


def show_json(base_metrics: dict | None = None) -> str:
    same = {"acc_model": {"accuracy": 0.5}}
    base = commit("main", 0.1, 0.1, base_metrics if base_metrics is not None else
                  {"m": {"accuracy": 0.905, "log_loss": 0.3671, "roc_auc": 0.97}, **same})
    exps = [commit(f"lr-{lr}", lr, 0.1, {"m": {"accuracy": acc, "log_loss": 0.35,
                                               "roc_auc": 0.98}, **same})
            for lr, acc in ((0.2, 0.915), (0.05, 0.885))]
    exps.append(commit("a-very-long-experiment-name", 0.1, 0.01,
                       {"m": {"accuracy": 0.9, "log_loss": 0.3, "roc_auc": 0.97}, **same}))
    base["experiments"] = [{"name": e["name"], "revs": [e]} for e in exps]
    return json.dumps([{"rev": "workspace", "name": None, "data": base["data"]}, base])


def test_one_row_per_experiment_with_what_it_changed() -> None:
    lines = render(*rows_from_json(show_json()), width=120)
    assert lines == [
        "experiment         changed params   m",
        "main               (baseline)       acc 0.905 loss 0.3671 auc 0.97",
        "lr-0.2             train.m.lr=0.2   acc 0.915 loss 0.35 auc 0.98",
        "lr-0.05            train.m.lr=0.05  acc 0.885 loss 0.35 auc 0.98",
        "a-very-long-exper~ train.m.l2=0.01  acc 0.9 loss 0.3 auc 0.97"]


def test_a_narrow_terminal_gets_indented_continuations() -> None:
    lines = render(*rows_from_json(show_json()), width=40)
    assert all(len(line) <= 40 for line in lines)
    assert lines[:2] == ["main               (baseline)",
                         "                   m: acc 0.905 loss 0.~"]


def test_a_baseline_without_metrics_says_to_commit_the_lock() -> None:
    with pytest.raises(JaxpipeError, match=r"^the baseline main has no metrics: commit "
                                           r"dvc.lock after `dvc repro`"):
        render(*rows_from_json(show_json(base_metrics={})))


def test_bad_json_and_no_commit_are_one_line() -> None:
    with pytest.raises(JaxpipeError, match=r"dvc exp show --json: not JSON"):
        rows_from_json("oops")
    with pytest.raises(JaxpipeError, match=r"no commit to compare with"):
        rows_from_json(json.dumps([{"rev": "workspace", "data": {}}]))


def test_every_baseline_with_experiments_is_a_group_the_first_always() -> None:
    head = json.loads(show_json())
    old = commit("old", 0.1, 0.1, {"m": {"accuracy": 0.8}})
    old["experiments"] = [{"name": "x", "revs": [commit("x", 0.3, 0.1, {"m": {
        "accuracy": 0.85}})]}]
    bare = commit("bare", 0.1, 0.1, {"m": {"accuracy": 0.7}})  # no experiments: left out
    groups = groups_from_json(json.dumps([*head, bare, old]))
    assert [(b.name, [e.name for e in exps]) for b, exps in groups] == [
        ("main", ["lr-0.2", "lr-0.05", "a-very-long-experiment-name"]), ("old", ["x"])]
    lone = groups_from_json(json.dumps([head[0], bare]))
    assert [(b.name, exps) for b, exps in lone] == [("bare", [])]


def test_the_all_commits_listing_counts_each_baselines_experiments() -> None:
    listing = "c9bc52b:\n\t09e42df [xor-lr-b]\nmain:\n\te7fd283 [a]\n\t1234567 [b]\n"
    assert baselines_from_list(listing) == {"c9bc52b": 1, "main": 2}
    assert baselines_from_list("") == {}


def test_mirror_checksums_in_an_experiment_get_one_line() -> None:
    shown = json.loads(show_json())
    assert local_params_note(json.dumps(shown)) is None  # no overrides anywhere
    md5 = {"download": {"mnist": {"files": {"train_images": {"md5": "c3" * 16}}}}}
    base = shown[1]
    base["data"]["params"]["params.local.yaml"] = {"data": {}}
    for exp in base["experiments"][:2]:
        exp["revs"][0]["data"]["params"]["params.local.yaml"] = {"data": md5}
    assert local_params_note(json.dumps(shown)) == (
        "2 experiment(s) ran with other params.local.yaml overrides than their baseline "
        "commit (a mirror's checksums, from jaxpipe-mirror): they name the data files "
        "verified, not a change to the experiment; `dvc exp show` lists them as "
        "params.local.yaml:download... columns (`--drop 'params.local.yaml:'` hides them)")


STAGE = ("import json, pathlib, yaml; p = yaml.safe_load(open('params.yaml'))['train']['m']; "
         "pathlib.Path('metrics').mkdir(exist_ok=True); "
         "json.dump({'accuracy': p['lr']}, open('metrics/m.json', 'w'))")


def test_exp_shows_other_commits_on_request_and_says_when_it_hides_them(tmp_path: Path) -> None:
    """The real git and dvc: an experiment on a first commit, another on a second; `jaxpipe
    exp` shows the second and says one more exists, -A shows both, --rev the first."""
    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ['PATH']}"}

    def run(*command: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    (tmp_path / "params.yaml").write_text("train:\n  m:\n    lr: 0.1\n")
    (tmp_path / "params.local.yaml").write_text("{}\n")
    (tmp_path / "dvc.yaml").write_text(json.dumps({
        "stages": {"train": {"cmd": f"{sys.executable} -c \"{STAGE}\"",
                             "params": ["train.m", {"params.local.yaml": []}],
                             "metrics": [{"metrics/m.json": {"cache": False}}]}}}))
    run("git", "init", "-q", "-b", "main")
    run("dvc", "init", "-q")
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "first")
    first = run("git", "rev-parse", "--short", "HEAD").stdout.strip()
    run("dvc", "exp", "run", "--temp", "-q", "-n", "early", "-S", "train.m.lr=0.2")
    (tmp_path / "notes.txt").write_text("a later commit\n")
    run("git", "add", "notes.txt")
    run("git", "commit", "-q", "-m", "second")
    (tmp_path / "params.local.yaml").write_text("download: {d: {files: {f: {md5: x}}}}\n")
    run("dvc", "exp", "run", "--temp", "-q", "-n", "late", "-S", "train.m.lr=0.3")

    def exp(*args: str) -> tuple[list[str], list[str]]:
        proc = run(sys.executable, "-m", "jaxpipe.cli", "exp", "--width", "80", *args)
        return proc.stdout.splitlines(), [line.split(": ", 1)[1] for line in
                                          proc.stderr.splitlines()]

    table, notes = exp()
    assert [line.split()[0] for line in table[1:]] == ["main", "late"]
    assert notes[0].startswith("1 experiment(s) ran with other params.local.yaml overrides")
    assert notes[1] == (f"1 more experiment(s) on 1 other commit(s) ({first}): `jaxpipe exp "
                        "-A` shows every commit's, `jaxpipe exp --rev COMMIT` one's")
    table, notes = exp("-A")
    assert [line.split()[0] for line in table if line and not line.startswith("exp")] == [
        "main", "late", first, "early"]
    assert table[table.index("") + 3].split()[:2] == ["early", "train.m.lr=0.2"]
    assert len(notes) == 1  # every commit's shown
    table, notes = exp("--rev", "HEAD~1")
    assert [line.split()[0] for line in table[1:]] == [first, "early"]
    assert notes[-1].startswith("1 more experiment(s) on 1 other commit(s) (main)")
    proc = subprocess.run([sys.executable, "-m", "jaxpipe.cli", "exp", "--rev", "nope"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["error: nope: not a commit of this repository (a "
                                        "branch, tag or commit: `git log --oneline` lists them)"]


def test_exp_before_the_first_commit_says_what_to_commit(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run([sys.executable, "-m", "jaxpipe.cli", "exp"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["error: no commit to compare with: commit params.yaml "
                                        "and dvc.lock first (docs/experiments.md)"]
