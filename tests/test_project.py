"""Every jaxpipe command finds the repository from any folder in it, the way git and DVC do
(jaxpipe.project); outside any repository a file it needs is named in one line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxpipe.project import enter_root, find_root
from jaxpipe.tools.workspace import make_workspace

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed project in a fresh git repository."""
    return make_workspace(ROOT, tmp_path_factory.mktemp("repo") / "ws", rev="HEAD")


def jaxpipe(cwd: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    """A console script as a user runs it, on the workspace's own library."""
    env = {**os.environ, "PYTHONPATH": str(find_root(cwd) or ROOT) + "/src"}
    env.pop("JAXPIPE_MIRROR", None)
    return subprocess.run([str(BIN / command), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_root_is_the_nearest_folder_with_dvc_yaml_or_dvc(tmp_path: Path) -> None:
    (tmp_path / "r" / "a" / "b").mkdir(parents=True)
    assert find_root(tmp_path / "r" / "a" / "b") is None
    (tmp_path / "r" / ".dvc").mkdir()
    assert find_root(tmp_path / "r" / "a" / "b") == (tmp_path / "r").resolve()
    (tmp_path / "r" / "a" / "dvc.yaml").write_text("stages: {}\n")
    assert find_root(tmp_path / "r" / "a" / "b") == (tmp_path / "r" / "a").resolve()


def test_defaults_move_to_the_root_and_given_paths_stay_where_meant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--mirror", type=Path)
    args = parser.parse_args(["--mirror", "m"])
    assert enter_root(args, parser) == tmp_path.resolve()
    assert Path.cwd() == tmp_path.resolve() and args.params == Path("params.yaml")
    assert args.mirror == tmp_path.resolve() / "sub" / "m"
    given = parser.parse_args(["--params", "p.yaml"])  # every path given: nothing moves
    assert enter_root(given, parser) is None and given.params == Path("p.yaml")


@pytest.mark.parametrize("command, args, says", [
    ("jaxpipe", ["env"], "stages: all as recorded in environment.yaml"),
    ("jaxpipe", ["check"], "ok: "),
    ("jaxpipe-deps", [], "declare exactly the code they import"),
    ("jaxpipe", ["exp"], "(baseline)"),
])
def test_a_command_from_a_subfolder_reads_the_repositorys_files(
        repo: Path, command: str, args: list[str], says: str) -> None:
    proc = jaxpipe(repo / "docs", command, *args)
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout + proc.stderr


def test_mirror_reset_from_a_subfolder_empties_the_roots_file(repo: Path) -> None:
    local = repo / "params.local.yaml"
    local.write_text(local.read_text() + "download: {mnist: {}}\n")
    proc = jaxpipe(repo / "src" / "jaxpipe", "jaxpipe-mirror", "--reset")
    assert proc.returncode == 0, proc.stderr
    assert local.read_text().splitlines()[-1] == "{}"
    assert not (repo / "src" / "jaxpipe" / "params.local.yaml").exists()


def test_plots_and_repro_check_from_a_subfolder_get_past_the_repositorys_files(
        repo: Path) -> None:
    """Each fails, as at the root, for what the workspace lacks (no outputs; no mirror)."""
    plots = jaxpipe(repo / "docs", "jaxpipe", "plots")
    assert plots.stderr.strip().splitlines()[-1] == (
        "error: no plots to render (run dvc repro first)")
    check = jaxpipe(repo / "docs", "jaxpipe-repro-check", "--mirror", "no-such-mirror")
    assert check.stderr.strip().splitlines()[-1] == (
        f"error: {repo / 'docs' / 'no-such-mirror'}: mirror directory not found")


def test_a_new_model_from_a_subfolder_is_written_at_the_root(repo: Path) -> None:
    proc = jaxpipe(repo / "stages", "jaxpipe", "new", "model", "from_sub", "--like",
                   "logreg_mobile")
    assert proc.returncode == 0, proc.stderr
    assert "from_sub:" in (repo / "params.yaml").read_text()
    assert sorted(p.name for p in (repo / "stages").iterdir() if p.suffix != ".py") == []


@pytest.mark.parametrize("command, args, missing", [
    ("jaxpipe", ["new", "model", "m", "--like", "x"], "dvc.yaml"),
    ("jaxpipe-repro-check", [], "profiles/small.yaml"),
])
def test_outside_any_repository_the_missing_file_is_named_in_one_line(
        tmp_path: Path, command: str, args: list[str], missing: str) -> None:
    proc = jaxpipe(tmp_path, command, *args)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {missing}: not found: run {command if command != 'jaxpipe' else 'jaxpipe new'} "
        "in the repository (the folder holding dvc.yaml) or a folder below it"]
