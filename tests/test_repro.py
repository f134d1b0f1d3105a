"""``jaxpipe.tools.repro``, the reproducibility checker (``jaxpipe-repro-check``).

End to end (e2e), the real ``dvc repro`` of a tiny DVC project (no JAX, so it runs fast):
the checker passes a deterministic project and names the outputs of a nondeterministic
one.

In-process, how it reads dvc.lock, compares hashes, judges each of its five checks,
reports them, and what its command line does with the workspace it makes: a stand-in for
the dvc CLI plays a small project (its stages, which ones run, the hashes written to
dvc.lock), so the checker's own logic is tested exactly and fast. The workspace, the params
and profile edits, git and the report are real."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools import repro
from jaxpipe.tools.repro import Step, check, compare, format_report, lock_hashes
from jaxpipe.tools.workspace import RunConfig, dvc, git

DVC_YAML = """
stages:
  train:
    foreach: [a, b]
    do:
      cmd: python make.py ${item}
      deps: [make.py]
      params:
        - train.${item}
      outs:
        - out_${item}.txt
  evaluate:
    foreach: [a, b]
    do:
      cmd: python -c "import shutil; shutil.copy('out_${item}.txt', 'eval_${item}.txt')"
      deps:
        - out_${item}.txt
      outs:
        - eval_${item}.txt
"""
MAKE = """
import os, sys, yaml
item = sys.argv[1]
lr = yaml.safe_load(open("params.yaml"))["train"][item]["lr"]
noise = os.urandom(8).hex() if {noisy} == "random" and item == "b" else ""
noise += str(len(os.sched_getaffinity(0))) if {noisy} == "cores" and item == "b" else ""
open(f"out_{{item}}.txt", "w").write(f"{{lr}} {{noise}}")
"""


def tiny_project(root: Path, noisy: str) -> Path:
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("train:\n  a: {lr: 0.1}\n  b: {lr: 0.1}\n")
    (root / "make.py").write_text(MAKE.format(noisy=repr(noisy)))
    git(root, "init", "-q")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tiny")
    return root


@pytest.mark.e2e
def test_deterministic_project_passes(tmp_path: Path) -> None:
    steps = check(tiny_project(tmp_path, noisy=""), None, "a", "lr", 0.5, [RunConfig(cores=1)])
    assert all(s.ok for s in steps), format_report(steps)
    assert "all checks passed" in format_report(steps)


@pytest.mark.e2e
def test_nondeterministic_output_is_named(tmp_path: Path) -> None:
    steps = check(tiny_project(tmp_path, noisy="random"), None, "a", "lr", 0.5)
    forced = next(s for s in steps if "--force" in s.name)
    assert not forced.ok
    assert {p.split(":")[0] for p in forced.problems} == {"out_b.txt", "eval_b.txt"}
    assert "FAILED: repro --force is bitwise identical" in format_report(steps)
    assert steps[-1].ok  # changing train.a.lr re-ran exactly train@a and evaluate@a


@pytest.mark.e2e
def test_output_that_depends_on_the_core_count_is_named(tmp_path: Path) -> None:
    steps = check(tiny_project(tmp_path, noisy="cores"), None, "a", "lr", 0.5,
                  [RunConfig(cores=1)])
    forced, cross = steps[2], steps[3]
    assert forced.ok  # same machine, same core count: identical
    assert cross.name == "repro --force under cores=1 is bitwise identical" and not cross.ok
    assert {p.split(":")[0] for p in cross.problems} == {"out_b.txt", "eval_b.txt"}


class FakeDvc:
    """Stands in for the dvc CLI in a project with a ``prepare`` stage, ``train@<m>`` and
    ``evaluate@<m>`` for each model ``m`` under ``train`` in params.yaml, and a ``report``
    stage without outputs. ``repro`` runs every stage the first time and with ``--force``,
    else those whose model's params changed (plus ``rerun``; less ``stale``), writes their
    output hashes to dvc.lock and prints DVC's "Running stage" lines; ``status --json``
    prints ``status``. An output in ``noisy`` hashes differently each run; one in
    ``by_config`` differs when run under another machine's config."""

    def __init__(self, noisy: tuple[str, ...] = (), by_config: tuple[str, ...] = (),
                 rerun: tuple[str, ...] = (), stale: tuple[str, ...] = (), status: str = "",
                 fail: str | None = None) -> None:
        self.noisy, self.by_config, self.rerun, self.stale = noisy, by_config, rerun, stale
        self.status, self.fail = status, fail
        self.calls: list[tuple[Path, tuple[str, ...], Path | None, RunConfig | None]] = []
        self.locks: list[dict[str, str]] = []
        self.params: list[str] = []  # params.yaml as each repro saw it
        self.local: list[bool] = []  # whether params.local.yaml was there
        self.last: dict[str, str] = {}  # stage -> the params it last ran with

    def __call__(self, cwd: Path, *args: str, mirror: Path | None = None, check: bool = True,
                 config: RunConfig | None = None) -> subprocess.CompletedProcess:
        self.calls.append((cwd, args, mirror, config))
        if self.fail:
            raise JaxpipeError(self.fail)
        if args == ("status", "--json"):
            return subprocess.CompletedProcess(["dvc", *args], 0, self.status, "")
        assert args in (("repro",), ("repro", "--force")), args
        text = (cwd / "params.yaml").read_text()
        self.params.append(text)
        self.local.append((cwd / "params.local.yaml").exists())
        train = yaml.safe_load(text)["train"]
        stages = {"prepare": ("", ["data/prepared"])}
        for model in train:
            stages[f"train@{model}"] = (repr(train[model]), [f"models/{model}.st"])
            stages[f"evaluate@{model}"] = (repr(train[model]), [f"metrics/{model}.json"])
        stages["report"] = ("", [])
        if not self.locks or args == ("repro", "--force"):
            ran = list(stages)
        else:
            ran = [s for s in stages if (s in self.rerun or stages[s][0] != self.last[s])
                   and s not in self.stale]
        lock = {"schema": "2.0", "stages": {}}
        hashes = {}
        for name, (used, outs) in stages.items():
            if name in ran:
                self.last[name] = used
            entry: dict = {"cmd": f"python stages/{name}.py"}
            if outs:
                entry["outs"] = []
            for out in outs:
                salt = (f"{out} {self.last[name]} {len(self.locks) * (out in self.noisy)} "
                        f"{config if out in self.by_config else ''}")
                hashes[out] = hashlib.md5(salt.encode()).hexdigest()  # noqa: S324
                entry["outs"].append({"path": out, "hash": "md5", "md5": hashes[out],
                                      "size": 1})
            lock["stages"][name] = entry
        self.locks.append(hashes)
        (cwd / "dvc.lock").write_text(yaml.safe_dump(lock))
        stdout = "".join(f"Running stage '{s}':\n> python stages/{s}.py\n" for s in ran)
        stdout += "".join(f"Stage '{s}' didn't change, skipping\n" for s in stages if s not in ran)
        return subprocess.CompletedProcess(["dvc", *args], 0, stdout, "")


def project(ws: Path) -> Path:
    (ws / "params.yaml").write_text("train:\n  a: {lr: 0.1}\n  b: {lr: 0.1}\n")
    return ws


def run_check(fake: FakeDvc, ws: Path, monkeypatch: pytest.MonkeyPatch,
              cross: list[RunConfig] | None = None) -> tuple[list[Step], float]:
    """``check`` in ``ws`` with the fake dvc; its steps and how long it took."""
    monkeypatch.setattr(repro, "dvc", fake)
    started = time.perf_counter()
    steps = repro.check(ws, ws / "mirror", "a", "lr", 0.5, cross)
    return steps, time.perf_counter() - started


def untimed(steps: list[Step]) -> list[Step]:
    return [replace(s, seconds=0.0) for s in steps]


def test_dvc_lock_gives_every_stage_output_and_its_hash(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "prepare": {"cmd": "p", "deps": [{"path": "raw", "md5": "0" * 32}],
                    "outs": [{"path": "data/prepared", "hash": "md5", "md5": "1" * 32 + ".dir",
                              "size": 9, "nfiles": 3},
                             {"path": "data/rows.json", "hash": "md5", "md5": "2" * 32}]},
        "report": {"cmd": "r", "deps": [{"path": "data/prepared", "md5": "1" * 32}]},
        "train@a": {"cmd": "t", "outs": [{"path": "models/a.st", "md5": "3" * 32}]}}}))
    assert lock_hashes(tmp_path) == {"data/prepared": "1" * 32 + ".dir",
                                     "data/rows.json": "2" * 32, "models/a.st": "3" * 32}


def test_only_outputs_whose_hash_changed_or_vanished_are_named() -> None:
    first = {"z.txt": "1", "a.txt": "2", "m.txt": "3"}
    assert compare(first, dict(first)) == []
    assert compare(first, {"a.txt": "2", "m.txt": "9", "new.txt": "4"}) == [
        "m.txt: 3 then 9", "z.txt: 1 then None"]


def test_the_report_has_one_line_per_check_then_its_problems() -> None:
    steps = [Step("repro", True, 12.34, "6 stages, 5 outputs"),
             Step("repro --force is bitwise identical", False, 3.05, "3/5 outputs identical",
                  ["m.st: 1 then 2", "n.st: 3 then None"]),
             Step("repro again runs nothing", False, 123.45, "", ["not clean: x"])]
    rule = "-" * 80
    assert format_report(steps) == "\n".join([
        "reproducibility check", rule,
        "ok   " + "repro".ljust(52) + "   12.3 s  6 stages, 5 outputs",
        "FAIL " + "repro --force is bitwise identical".ljust(52) + "    3.0 s  3/5 outputs "
                                                                   "identical",
        "       - m.st: 1 then 2", "       - n.st: 3 then None",
        "FAIL " + "repro again runs nothing".ljust(52) + "  123.5 s  ",
        "       - not clean: x", rule,
        "FAILED: repro --force is bitwise identical, repro again runs nothing"]) + "\n"
    assert format_report(steps[:1]).endswith("6 stages, 5 outputs\n" + rule +
                                              "\nall checks passed\n")


def test_a_deterministic_project_passes_every_check(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake, ws = FakeDvc(), project(tmp_path)
    steps, took = run_check(fake, ws, monkeypatch, [RunConfig(cores=1), RunConfig(isa="AVX")])
    assert untimed(steps) == [
        Step("repro", True, 0.0, "6 stages, 5 outputs"),
        Step("repro again runs nothing", True, 0.0, "no stage ran, status clean"),
        Step("repro --force is bitwise identical", True, 0.0, "5/5 outputs identical"),
        Step("repro --force under cores=1 is bitwise identical", True, 0.0,
             "5/5 outputs identical"),
        Step("repro --force under isa=AVX is bitwise identical", True, 0.0,
             "5/5 outputs identical"),
        Step("train.a.lr=0.5 re-runs only its model", True, 0.0, "evaluate@a, train@a")]
    assert all(0 <= s.seconds <= took for s in steps)
    mirror = ws / "mirror"
    assert fake.calls == [(ws, ("repro",), mirror, None), (ws, ("repro",), mirror, None),
                          (ws, ("status", "--json"), None, None),
                          (ws, ("repro", "--force"), mirror, None),
                          (ws, ("repro", "--force"), mirror, RunConfig(cores=1)),
                          (ws, ("repro", "--force"), mirror, RunConfig(isa="AVX")),
                          (ws, ("repro",), mirror, None)]
    assert yaml.safe_load((ws / "params.yaml").read_text()) == {
        "train": {"a": {"lr": 0.5}, "b": {"lr": 0.1}}}


def test_without_other_configs_there_are_four_checks(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDvc(status="{}")
    steps, _ = run_check(fake, project(tmp_path), monkeypatch)
    assert [(s.name, s.ok) for s in steps] == [
        ("repro", True), ("repro again runs nothing", True),
        ("repro --force is bitwise identical", True),
        ("train.a.lr=0.5 re-runs only its model", True)]
    assert [c[1] for c in fake.calls] == [("repro",), ("repro",), ("status", "--json"),
                                          ("repro", "--force"), ("repro",)]


def test_every_difference_is_named_by_the_check_that_saw_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDvc(noisy=("models/b.st",), by_config=("metrics/a.json",), rerun=("report",),
                   stale=("evaluate@a",), status='{"train@b": [{"changed outs": {}}]}')
    steps, took = run_check(fake, project(tmp_path), monkeypatch, [RunConfig(cores=1)])
    first, forced, cross = fake.locks[0], fake.locks[2], fake.locks[3]
    b, a = "models/b.st", "metrics/a.json"
    assert untimed(steps) == [
        Step("repro", True, 0.0, "6 stages, 5 outputs"),
        Step("repro again runs nothing", False, 0.0, "",
             ["stage ran again: report", "not clean: train@b"]),
        Step("repro --force is bitwise identical", False, 0.0, "4/5 outputs identical",
             [f"{b}: {first[b]} then {forced[b]}"]),
        Step("repro --force under cores=1 is bitwise identical", False, 0.0,
             "3/5 outputs identical",
             [f"{a}: {first[a]} then {cross[a]}", f"{b}: {first[b]} then {cross[b]}"]),
        Step("train.a.lr=0.5 re-runs only its model", False, 0.0, "report, train@a",
             ["also ran: report", "did not run: evaluate@a"])]
    assert all(0 <= s.seconds <= took for s in steps)
    assert len({first[b], forced[b], cross[b]}) == 3


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small project to copy: params.yaml, two profiles, a stage script; a git repo."""
    root = tmp_path / "project"
    (root / "profiles").mkdir(parents=True)
    (root / "params.yaml").write_text(
        "train:\n  logreg_mobile: {lr: 0.1}   # kept\n  cnn_mnist: {lr: 0.001}\n")
    (root / "profiles" / "small.yaml").write_text("train.cnn_mnist.lr: 0.002\n")
    (root / "profiles" / "other.yaml").write_text("train.cnn_mnist.lr: 0.003\n")
    (root / "make.py").write_text("print('hello')\n")
    git(root, "init", "-q")
    return root


@pytest.fixture
def tmpdir_(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the tool makes its workspace (tempfile's directory, set for this test)."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def use(fake: FakeDvc, monkeypatch: pytest.MonkeyPatch) -> FakeDvc:
    monkeypatch.setattr(repro, "dvc", fake)
    return fake


def test_the_command_line_checks_a_copy_of_the_project_and_can_keep_it(
        root: Path, tmpdir_: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake = use(FakeDvc(), monkeypatch)
    (tmp_path / "mirror").mkdir()
    repro.main(["--root", str(root), "--mirror", str(tmp_path / "mirror"), "--keep",
                "--cross", "cores=1", "--cross", "isa=AVX", "--model", "cnn_mnist",
                "--param", "lr", "--value", "0.5"])
    ws = fake.calls[0][0]
    assert ws.parent == tmpdir_ and ws.name.startswith("jaxpipe-repro-") and ws.is_dir()
    assert {c[0] for c in fake.calls} == {ws}
    assert {c[2] for c in fake.calls if c[1] != ("status", "--json")} == {
        (tmp_path / "mirror").resolve()}
    assert [c[3] for c in fake.calls if c[3]] == [RunConfig(cores=1), RunConfig(isa="AVX")]
    assert (ws / "make.py").read_text() == "print('hello')\n"
    assert git(ws, "status", "--porcelain", "--untracked-files=no") != ""  # params edited
    assert fake.params[0] == ("train:\n  logreg_mobile: {lr: 0.1}   # kept\n"
                              "  cnn_mnist: {lr: 0.002}\n")  # the small profile, comments kept
    assert yaml.safe_load(fake.params[-1])["train"]["cnn_mnist"] == {"lr": 0.5}
    assert fake.local == [True] * 6  # the mirror's overrides file
    out = capsys.readouterr().out
    assert out.startswith("reproducibility check\n") and out.endswith("all checks passed\n")
    for name in ("repro --force under cores=1", "repro --force under isa=AVX",
                 "train.cnn_mnist.lr=0.5 re-runs only its model"):
        assert f"\nok   {name}" in out


def test_by_default_the_current_project_small_profile_and_logreg_lr(
        root: Path, tmpdir_: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake = use(FakeDvc(), monkeypatch)
    (tmp_path / "mirror").mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("JAXPIPE_MIRROR", "../mirror")
    repro.main([])
    assert list(tmpdir_.iterdir()) == []  # the workspace is removed
    assert fake.calls[0][2] == (tmp_path / "mirror").resolve() and fake.local[0]
    assert [c[3] for c in fake.calls] == [None] * 5
    assert yaml.safe_load(fake.params[0])["train"]["cnn_mnist"] == {"lr": 0.002}
    last = yaml.safe_load(fake.params[-1])["train"]["logreg_mobile"]["lr"]
    assert last == 0.05 and isinstance(last, float)
    assert "\nok   train.logreg_mobile.lr=0.05 re-runs only its model" in capsys.readouterr().out


def test_without_a_mirror_none_is_applied_and_another_profile_can_be_named(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = use(FakeDvc(), monkeypatch)
    monkeypatch.delenv("JAXPIPE_MIRROR", raising=False)
    repro.main(["--root", str(root), "--profile", str(root / "profiles" / "other.yaml"),
                "--value", "[1, 2]", "--param", "lr"])
    assert {c[2] for c in fake.calls} == {None} and fake.local == [False] * 4
    assert yaml.safe_load(fake.params[0])["train"]["cnn_mnist"] == {"lr": 0.003}
    assert yaml.safe_load(fake.params[-1])["train"]["logreg_mobile"] == {"lr": [1, 2]}


def test_a_failed_check_prints_the_report_then_fails_naming_every_problem(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake = use(FakeDvc(noisy=("models/cnn_mnist.st",), rerun=("report",)), monkeypatch)
    with pytest.raises(JaxpipeError) as err:
        repro.main(["--root", str(root)])
    path = "models/cnn_mnist.st"
    assert str(err.value) == (f"reproducibility check failed: stage ran again: report; "
                              f"{path}: {fake.locks[0][path]} then {fake.locks[2][path]}; "
                              "also ran: report")
    out = capsys.readouterr().out
    assert out.endswith("\nFAILED: repro again runs nothing, repro --force is bitwise "
                        "identical, train.logreg_mobile.lr=0.05 re-runs only its model\n")
    assert list(tmpdir_.iterdir()) == []


@pytest.mark.parametrize("keep", [False, True])
def test_a_dvc_failure_ends_the_check_and_the_workspace_goes_unless_kept(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], keep: bool) -> None:
    use(FakeDvc(fail="dvc repro failed in ws: boom"), monkeypatch)
    with pytest.raises(JaxpipeError, match="^dvc repro failed in ws: boom$"):
        repro.main(["--root", str(root), *(["--keep"] if keep else [])])
    assert len(list(tmpdir_.iterdir())) == int(keep)
    assert capsys.readouterr().out == ""


def test_a_profile_that_cannot_be_applied_leaves_no_workspace_behind(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = use(FakeDvc(), monkeypatch)
    bad = root / "profiles" / "bad.yaml"
    bad.write_text("train.nope.lr: 1\n")
    with pytest.raises(JaxpipeError, match=r"bad\.yaml: train\.nope\.lr: no key 'nope'"):
        repro.main(["--root", str(root), "--profile", str(bad)])
    assert fake.calls == [] and list(tmpdir_.iterdir()) == []


def test_a_workspace_already_gone_does_not_hide_the_result(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Something else (a temp-dir reaper) removed the workspace after the last dvc run: the
    cleanup must not turn a finished check into a crash."""
    fake = FakeDvc()

    def dvc(cwd: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess:
        done = fake(cwd, *args, **kwargs)  # type: ignore[arg-type]
        if len(fake.calls) == 5:
            shutil.rmtree(cwd)
        return done

    monkeypatch.setattr(repro, "dvc", dvc)
    repro.main(["--root", str(root)])
    assert capsys.readouterr().out.endswith("\nall checks passed\n")
    assert list(tmpdir_.iterdir()) == []


def test_a_config_this_machine_cannot_run_is_refused_before_any_copy(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = use(FakeDvc(), monkeypatch)
    with pytest.raises(JaxpipeError, match="run config 'cores=100000'"):
        repro.main(["--root", str(root), "--cross", "cores=100000"])
    assert fake.calls == [] and list(tmpdir_.iterdir()) == []


def test_the_help_says_what_each_option_does(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        repro.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for said in ("Prove that the pipeline reproduces, with the real dvc, in a temporary copy of "
                 "the repo.", "--root ROOT the project to copy (default: the current directory)",
                 "--mirror MIRROR local mirror (default: $JAXPIPE_MIRROR)",
                 "--profile PROFILE params profile (default: <root>/profiles/small.yaml)",
                 "--model MODEL", "--param PARAM train.<model> key to change", "--value VALUE",
                 "--cross CONFIG also run as another machine: cores=N and/or isa=AVX2|AVX|SSE4_2, "
                 "e.g. --cross cores=1 (repeatable)", "--keep keep the workspace for debugging"):
        assert said in text


def test_the_console_script_ends_a_failure_in_one_line(
        root: Path, tmpdir_: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    use(FakeDvc(fail="dvc repro failed in ws: boom"), monkeypatch)
    monkeypatch.setattr(sys, "argv", ["jaxpipe-repro-check", "--root", str(root)])
    with pytest.raises(SystemExit) as stop:
        repro.entry()
    assert stop.value.code == 2
    assert capsys.readouterr().err.endswith("error: dvc repro failed in ws: boom\n")
