"""``jaxpipe.tools.workspace`` in-process: which files a workspace copies, params overrides
(comments kept, a one-line error naming the key at fault), the git repo it makes, run
configs of another machine, and what ``dvc`` is run with."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import committed_tree

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools.mirror import apply_mirror
from jaxpipe.tools.workspace import (
    GIT_ENV,
    RunConfig,
    _cpus,
    apply_profile,
    changed,
    committed_copy,
    dvc,
    git,
    make_workspace,
    project_files,
    ran_stages,
    set_params,
)

ROOT = Path(__file__).parents[1]
PARAMS = """\
# the project's parameters
train:
  mlp:
    lr: 0.1        # learning rate
    hidden: [3]
    seed:
  lr: 0.5
prepare:
  test_size: 0.2
"""
ISAS = "AVX512|AVX2|AVX|SSE4_2"


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True,
                          capture_output=True, text=True).stdout


def repo(root: Path) -> Path:
    """A git repo with tracked, untracked, ignored and deleted files."""
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".gitignore").write_text("*.log\ndata/\n")
    (root / "README.md").write_text("readme\n")
    (root / "src" / "pkg" / "a.py").write_text("A = 1\n")
    (root / "src" / "pkg" / "b.py").write_text("B = 2\n")
    (root / "gone.txt").write_text("deleted after adding\n")
    run_git(root, "init", "-q")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "first")
    (root / "gone.txt").unlink()
    (root / "new file.txt").write_text("untracked, not ignored\n")
    (root / "run.log").write_text("ignored\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"ignored")
    return root


def test_project_files_are_what_git_tracks_or_would_track(tmp_path: Path) -> None:
    files = project_files(repo(tmp_path))
    assert sorted(files) == [".gitignore", "README.md", "new file.txt", "src/pkg/a.py",
                             "src/pkg/b.py"]


def test_project_files_outside_git_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        project_files(tmp_path)


def test_set_params_keeps_comments_and_layout(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    set_params(params, {"train.mlp.lr": 0.25, "train.mlp.hidden": [8, 4],
                        "train.mlp.seed": None, "prepare.test_size": 0.3, "train.lr": 1})
    assert params.read_text() == (
        "# the project's parameters\ntrain:\n  mlp:\n    lr: 0.25       # learning rate\n"
        "    hidden:\n    - 8\n    - 4\n    seed:\n  lr: 1\nprepare:\n"
        "  test_size: 0.3\n")  # as DVC's own writer puts it (dvc exp run -S)


def test_set_params_writes_what_dvc_exp_run_writes(tmp_path: Path) -> None:
    from dvc.utils.serialize import modify_yaml

    text = "a:\n  kind: 'cnn'\n  devices: \"all\"\n  urls: [x, y]\n  lr: 1\n"
    (tmp_path / "ours.yaml").write_text(text)
    (tmp_path / "dvcs.yaml").write_text(text)
    set_params(tmp_path / "ours.yaml", {"a.lr": 2})
    with modify_yaml(tmp_path / "dvcs.yaml") as data:
        data["a"]["lr"] = 2
    assert (tmp_path / "ours.yaml").read_text() == (tmp_path / "dvcs.yaml").read_text()
    assert (tmp_path / "ours.yaml").read_text() == "a:\n  kind: cnn\n  devices: all\n" \
        "  urls: [x, y]\n  lr: 2\n"


def test_set_params_descends_by_position_not_by_name(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("a:\n  a: 1  # inner\n  b: 2\nb: 3\n")
    set_params(params, {"a.a": 5})
    assert params.read_text() == "a:\n  a: 5  # inner\n  b: 2\nb: 3\n"


@pytest.mark.parametrize(("dotted", "missing"), [
    ("train.mlp.steps", "steps"), ("train.cnn.lr", "cnn"), ("evaluate", "evaluate"),
    ("train.lr.value", "value"), ("train.mlp.hidden.0", "0"), ("train..lr", "")])
def test_an_unknown_key_is_named_with_its_source_and_nothing_is_written(
        tmp_path: Path, dotted: str, missing: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    with pytest.raises(JaxpipeError) as caught:
        set_params(params, {"train.mlp.lr": 9, dotted: 1})
    assert str(caught.value) == f"override: {dotted}: no key '{missing}' in {params}"
    assert params.read_text() == PARAMS


def test_a_profile_sets_its_dotted_keys(tmp_path: Path) -> None:
    params, profile = tmp_path / "params.yaml", tmp_path / "fast.yaml"
    params.write_text(PARAMS)
    profile.write_text("# fast\ntrain.mlp.lr: 0.5\nprepare.test_size: 0.5\n")
    apply_profile(params, profile)
    assert params.read_text() == PARAMS.replace("lr: 0.1 ", "lr: 0.5 ").replace(
        "test_size: 0.2", "test_size: 0.5")
    profile.write_text("# nothing to change\n")
    apply_profile(params, profile)
    assert params.read_text() == PARAMS.replace("lr: 0.1 ", "lr: 0.5 ").replace(
        "test_size: 0.2", "test_size: 0.5")
    profile.write_text("train.mlp.epochs: 3\n")
    with pytest.raises(JaxpipeError) as caught:
        apply_profile(params, profile)
    assert str(caught.value) == f"{profile}: train.mlp.epochs: no key 'epochs' in {params}"


def test_a_workspace_is_a_fresh_repo_of_the_project_files(tmp_path: Path) -> None:
    root = repo(tmp_path / "root")
    os.utime(root / "src" / "pkg" / "a.py", (1_000_000, 1_000_000))
    dest = tmp_path / "ws"
    assert make_workspace(root, dest) == dest
    assert run_git(dest, "ls-files").splitlines() == [
        ".gitignore", "README.md", "new file.txt", "src/pkg/a.py", "src/pkg/b.py"]
    assert not (dest / "run.log").exists() and not (dest / "data").exists()
    assert (dest / "src" / "pkg" / "b.py").read_text() == "B = 2\n"
    assert (dest / "src" / "pkg" / "a.py").stat().st_mtime == 1_000_000  # copied with metadata
    assert run_git(dest, "log", "--format=%s|%an <%ae>|%cn <%ce>") == (
        "workspace|jaxpipe <jaxpipe@localhost>|jaxpipe <jaxpipe@localhost>\n")
    assert run_git(dest, "rev-parse", "--abbrev-ref", "HEAD") == "main\n"
    assert run_git(dest, "status", "--porcelain") == ""


def test_a_workspace_from_a_commit_has_none_of_the_working_trees_changes(
        tmp_path: Path) -> None:
    """The tests' workspaces: a team's own edits, models and untracked files never reach
    them, and what the working tree deleted is there as committed."""
    root = repo(tmp_path / "root")
    (root / "src" / "pkg" / "b.py").write_text("B = 'edited'\n")
    dest = make_workspace(root, tmp_path / "ws", rev="HEAD")
    assert run_git(dest, "ls-files").splitlines() == [
        ".gitignore", "README.md", "gone.txt", "src/pkg/a.py", "src/pkg/b.py"]
    assert (dest / "src" / "pkg" / "b.py").read_text() == "B = 2\n"
    assert run_git(dest, "status", "--porcelain") == ""
    assert committed_copy(root, tmp_path / "two", "src/pkg/b.py", "gone.txt") == tmp_path / "two"
    assert sorted(str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*")
                  if p.is_file()) == ["gone.txt", "src/pkg/b.py"]
    with pytest.raises(JaxpipeError, match=r"^git archive HEAD failed in .*: fatal: "):
        committed_copy(root, tmp_path / "three", "no-such-file")


def test_a_workspace_gets_the_profile_and_the_mirror_committed(tmp_path: Path,
                                                               fake_mirror: Path) -> None:
    root = repo(tmp_path / "root")
    (root / "params.yaml").write_text((committed_tree() / "params.yaml").read_text())
    profile = tmp_path / "small.yaml"
    profile.write_text("train.cnn_mnist.epochs: 7\n")
    dest = make_workspace(root, tmp_path / "ws", mirror=fake_mirror, profile=profile)
    expected = tmp_path / "expected"
    expected.mkdir()
    (expected / "params.yaml").write_text((committed_tree() / "params.yaml").read_text())
    set_params(expected / "params.yaml", {"train.cnn_mnist.epochs": 7})
    assert (dest / "params.yaml").read_text() == (expected / "params.yaml").read_text()
    changes = apply_mirror(expected / "params.yaml", fake_mirror, expected / "local.yaml")
    assert changes  # the fake mirror's files differ from the official ones
    assert (dest / "params.local.yaml").read_text() == (expected / "local.yaml").read_text()
    assert "params.local.yaml" in run_git(dest, "ls-files").split()
    assert run_git(dest, "status", "--porcelain") == ""


def test_git_returns_stdout_or_names_the_command_and_folder(tmp_path: Path) -> None:
    root = repo(tmp_path / "r")
    assert git(root, "rev-parse", "--is-inside-work-tree") == "true\n"
    git(root, "commit", "-q", "--allow-empty", "-m", "second")
    assert git(root, "log", "-1", "--format=%an <%ae> %cn <%ce>") == (
        "jaxpipe <jaxpipe@localhost> jaxpipe <jaxpipe@localhost>\n")
    with pytest.raises(JaxpipeError) as caught:
        git(root, "checkout", "-q", "no-such-branch")
    assert str(caught.value) == (
        f"git checkout -q no-such-branch failed in {root}: error: pathspec 'no-such-branch' "
        "did not match any file(s) known to git")


def test_run_configs_parse_and_print() -> None:
    cpus = len(_cpus())
    assert RunConfig.parse("cores=1") == RunConfig(cores=1)
    assert RunConfig.parse("isa=AVX") == RunConfig(isa="AVX")
    assert RunConfig.parse(f"isa=SSE4_2,cores={cpus}") == RunConfig(cores=cpus, isa="SSE4_2")
    assert RunConfig.parse("") == RunConfig() and RunConfig.parse(",cores=1,") == RunConfig(1)
    assert str(RunConfig(cores=1, isa="AVX")) == "cores=1,isa=AVX"
    assert str(RunConfig(cores=2)) == "cores=2"
    assert str(RunConfig(isa="AVX512")) == "isa=AVX512"
    assert str(RunConfig()) == "as is"


@pytest.mark.parametrize(("text", "part"), [
    ("cores=0", "cores=0"), ("cores=-1", "cores=-1"), ("cores=x", "cores=x"), ("cores", "cores"),
    ("isa=AVX9", "isa=AVX9"), ("isa=avx", "isa=avx"), ("cores=1,gpu=1", "gpu=1"),
    ("threads=1", "threads=1"), ("=1", "=1")])
def test_a_bad_run_config_names_the_part_and_what_is_allowed(text: str, part: str) -> None:
    with pytest.raises(JaxpipeError) as caught:
        RunConfig.parse(text)
    assert str(caught.value) == (f"run config {text!r}: expected cores=1..{len(_cpus())} "
                                 f"and/or isa={ISAS}, got {part!r}")


def test_more_cores_than_this_machine_has_are_refused() -> None:
    too_many = len(_cpus()) + 1
    with pytest.raises(JaxpipeError, match=f"got 'cores={too_many}'$"):
        RunConfig.parse(f"cores={too_many}")


def test_the_isa_cap_is_added_to_xla_flags() -> None:
    base = {"XLA_FLAGS": "--xla_a=1", "HOME": "/h"}
    assert RunConfig(isa="AVX2").env(base) == {"XLA_FLAGS": "--xla_a=1 --xla_cpu_max_isa=AVX2",
                                               "HOME": "/h"}
    assert base == {"XLA_FLAGS": "--xla_a=1", "HOME": "/h"}
    assert RunConfig(isa="AVX").env({}) == {"XLA_FLAGS": "--xla_cpu_max_isa=AVX"}
    assert RunConfig(cores=1).env(base) is base


@pytest.fixture
def affinity() -> Iterator[set[int]]:
    """This process's CPUs, restored afterwards."""
    before = os.sched_getaffinity(0)
    yield before
    os.sched_setaffinity(0, before)


def test_limit_cpus_pins_to_the_first_cores(affinity: set[int]) -> None:
    assert _cpus() == sorted(affinity)
    RunConfig(isa="AVX").limit_cpus()
    assert os.sched_getaffinity(0) == affinity
    RunConfig(cores=1).limit_cpus()
    assert os.sched_getaffinity(0) == {min(affinity)}
    assert _cpus() == [min(affinity)]


def test_ran_stages_reads_dvc_repro_output() -> None:
    output = ("Stage 'download@mnist' didn't change, skipping\n"
              "Running stage 'prepare@xor':\n"
              "> python stages/prepare.py xor\n"
              "Updating lock file 'dvc.lock'\n"
              "  Running stage 'indented':\n"
              "Running stage 'train@xor_mlp':\n"
              "> python stages/train.py xor_mlp 'Running stage'\n")
    assert ran_stages(output) == ["prepare@xor", "train@xor_mlp"]
    assert ran_stages("") == []
    # the environment check is left out by its address: a team's own stage of that name is not
    checks = "Running stage 'checks/dvc.yaml:environment':\nRunning stage 'environment':\n"
    assert ran_stages(checks) == ["environment"]
    status = ('{"checks/dvc.yaml:environment": [{"changed outs": {}}], "environment": '
              '[{"changed deps": {}}], "train@x": ["always changed"]}')
    assert changed(status) == {"environment": [{"changed deps": {}}]}


def test_dvc_failure_names_the_command_folder_and_dvcs_words(tmp_path: Path) -> None:
    with pytest.raises(JaxpipeError) as caught:
        dvc(tmp_path, "status")
    message = str(caught.value)  # dvc's own line ends with the mount point it checked up to
    assert message.startswith(f"dvc status failed in {tmp_path}:\nERROR: you are not inside of "
                              "a DVC repository (checked up to mount point '")
    assert len(message.splitlines()) == 2
    proc = dvc(tmp_path, "status", check=False)
    assert proc.returncode != 0 and "not inside of a DVC repository" in proc.stderr


STAND_IN = """#!{python}
import json, os, sys
if sys.argv[1] == "fail":
    stream = sys.stderr if sys.argv[2] == "stderr" else sys.stdout
    stream.write("".join(f"line {{i}}\\n" for i in range(25)))
    sys.exit(1)
names = ["PYTHONPATH", "JAXPIPE_MIRROR", "XLA_FLAGS", "GIT_AUTHOR_NAME", "GIT_COMMITTER_EMAIL"]
print(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                  "env": {{k: os.environ.get(k) for k in names}},
                  "cpus": sorted(os.sched_getaffinity(0))}}))
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``dvc`` first on PATH that reports what it was run with (a stand-in: real dvc does
    not show its environment); no PYTHONPATH, JAXPIPE_MIRROR or XLA_FLAGS of our own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(STAND_IN.format(python=sys.executable))
    (bin_dir / "dvc").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name in ("PYTHONPATH", "JAXPIPE_MIRROR", "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    return bin_dir


def test_dvc_runs_with_the_workspace_library_and_git_identity(
        stand_in: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ws").mkdir()
    monkeypatch.chdir(tmp_path)
    seen = json.loads(dvc(Path("ws"), "repro", "-s", "x").stdout)
    assert seen == {"argv": ["repro", "-s", "x"], "cwd": str(tmp_path / "ws"),
                    "env": {"PYTHONPATH": str(tmp_path / "ws" / "src"), "JAXPIPE_MIRROR": None,
                            "XLA_FLAGS": None, "GIT_AUTHOR_NAME": "jaxpipe",
                            "GIT_COMMITTER_EMAIL": "jaxpipe@localhost"},
                    "cpus": _cpus()}
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    seen = json.loads(dvc(Path("ws"), "status").stdout)
    assert seen["env"]["PYTHONPATH"] == f"{tmp_path / 'ws' / 'src'}{os.pathsep}/elsewhere"


def test_dvc_gets_the_mirror_and_the_machine_config(stand_in: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    affinity: set[int]) -> None:
    monkeypatch.chdir(tmp_path)
    seen = json.loads(dvc(tmp_path, "repro", mirror=Path("mirror"),
                          config=RunConfig(cores=1, isa="AVX")).stdout)
    assert seen["env"]["JAXPIPE_MIRROR"] == str(tmp_path / "mirror")
    assert seen["env"]["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX"
    assert seen["cpus"] == [min(affinity)]
    assert os.sched_getaffinity(0) == affinity  # only the child is pinned


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_dvc_failure_shows_the_last_20_lines(stand_in: Path, tmp_path: Path,
                                             stream: str) -> None:
    with pytest.raises(JaxpipeError) as caught:
        dvc(tmp_path, "fail", stream)
    assert str(caught.value) == (f"dvc fail {stream} failed in {tmp_path}:\n"
                                 + "\n".join(f"line {i}" for i in range(5, 25)))
    proc = dvc(tmp_path, "fail", stream, check=False)
    assert proc.returncode == 1 and getattr(proc, stream).startswith("line 0\n")


def test_without_dvc_on_the_path_the_program_is_named(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError) as caught:
        dvc(tmp_path, "status")
    assert caught.value.filename == "dvc"


def test_run_configs_parse_and_refuse_what_this_machine_cannot_do() -> None:
    assert RunConfig.parse("cores=1,isa=AVX") == RunConfig(cores=1, isa="AVX")
    assert str(RunConfig(cores=1, isa="AVX")) == "cores=1,isa=AVX"
    assert RunConfig(isa="AVX2").env({"XLA_FLAGS": "--a"})["XLA_FLAGS"] == (
        "--a --xla_cpu_max_isa=AVX2")
    with pytest.raises(JaxpipeError, match="cores=1000"):
        RunConfig.parse("cores=1000")
    with pytest.raises(JaxpipeError, match="isa=AVX9"):
        RunConfig.parse("isa=AVX9")
