"""The mirror tool writes a mirror's differing checksums to the local overrides file, which
the download stages merge over params.yaml; params.yaml stays as committed."""

import stat
from pathlib import Path

import pytest
import yaml
from helpers import md5

from jaxpipe.core.config import load_layered
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.specs import DownloadConfig
from jaxpipe.tools.mirror import HOOK_MARK, apply_mirror, guard_commits, main, write_local
from jaxpipe.tools.workspace import git

ROOT = Path(__file__).parents[1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo holding the project's params.yaml and its empty params.local.yaml."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    write_local(tmp_path / "params.local.yaml", {})  # as committed (this checkout's may not be)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_overrides_differing_checksums_only(fake_mirror: Path, repo: Path) -> None:
    before = (repo / "params.yaml").read_text()
    changes = apply_mirror(repo / "params.yaml", fake_mirror, repo / "params.local.yaml")
    assert (repo / "params.yaml").read_text() == before
    local = yaml.safe_load((repo / "params.local.yaml").read_text())
    files = local["download"]["mnist"]["files"]
    assert files["test_labels"]["md5"] == md5(fake_mirror / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert ("mnist", "test_labels") in changes
    cfg = load_layered(DownloadConfig, repo / "params.yaml", repo / "params.local.yaml",
                       "download", "mobile_price")
    assert cfg.files["train"].size is None  # the mirror's file differs: its size is unknown
    assert cfg.files["train"].md5 == md5(fake_mirror / "mobile-price" / "train.csv")
    assert cfg.kaggle_dataset  # everything else still comes from params.yaml
    assert "# Local overrides of params.yaml" in (repo / "params.local.yaml").read_text()
    assert git(repo, "status", "--porcelain").split() == ["M", "params.local.yaml"]
    assert apply_mirror(repo / "params.yaml", fake_mirror, repo / "params.local.yaml") == changes


def test_reset_restores_the_committed_file(fake_mirror: Path, repo: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    committed = (repo / "params.local.yaml").read_text()
    monkeypatch.chdir(repo)
    main([str(fake_mirror)])
    assert (repo / "params.local.yaml").read_text() != committed
    main(["--reset"])
    assert (repo / "params.local.yaml").read_text() == committed
    assert git(repo, "status", "--porcelain") == ""


def test_a_malformed_local_file_names_itself(repo: Path) -> None:
    (repo / "params.local.yaml").write_text("download:\n  mnist: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"params.local.yaml:download.mnist: expected a map"):
        load_layered(DownloadConfig, repo / "params.yaml", repo / "params.local.yaml",
                     "download", "mnist")


def _commit_refused(repo: Path, *args: str) -> str:
    with pytest.raises(JaxpipeError) as err:
        git(repo, "commit", "-q", *args)
    return str(err.value)


def test_a_commit_of_the_mirror_checksums_is_refused_unless_meant(
        fake_mirror: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    main([str(fake_mirror)])
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert HOOK_MARK in hook.read_text() and stat.S_IMODE(hook.stat().st_mode) == 0o755
    (repo / "notes.txt").write_text("x\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "another file")  # the overrides not staged: allowed
    git(repo, "add", "params.local.yaml")
    message = _commit_refused(repo, "-m", "oops")
    assert "error: params.local.yaml holds a local mirror's checksums (jaxpipe-mirror)" in message
    assert "git restore --staged params.local.yaml" in message and "--no-verify" in message
    git(repo, "commit", "-q", "--no-verify", "-m", "our mirror is the source of truth")
    assert git(repo, "status", "--porcelain") == ""
    assert "download:" in git(repo, "show", "HEAD:params.local.yaml")


def test_the_guard_lets_a_local_file_without_overrides_through(
        fake_mirror: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    main([str(fake_mirror)])
    main(["--reset"])
    with (repo / "params.local.yaml").open("a") as handle:
        handle.write("# a comment of our own\n")
    git(repo, "add", "params.local.yaml")
    git(repo, "commit", "-q", "-m", "a comment")
    assert git(repo, "status", "--porcelain") == ""


def test_no_overrides_install_no_guard(repo: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bare-mirror").mkdir()  # no MD5SUMS: nothing to override
    monkeypatch.chdir(repo)
    main([str(tmp_path / "bare-mirror")])
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


def test_the_guard_leaves_another_hook_alone_and_rewrites_its_own(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    foreign = b"#!/bin/sh\n# \xff another tool\nexit 0\n"
    hook.write_bytes(foreign)
    assert guard_commits(repo / "params.local.yaml") is None
    assert hook.read_bytes() == foreign
    hook.unlink()
    assert guard_commits(repo / "params.local.yaml") == hook
    first = hook.read_text()
    assert guard_commits(repo / "params.local.yaml") == hook and hook.read_text() == first


def test_the_guard_follows_hooks_path_and_a_file_in_a_subfolder(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", "tools/git/hooks")  # a folder not there yet
    (repo / "conf").mkdir()
    local = repo / "conf" / "it's.local.yaml"
    write_local(local, {"download": {"mnist": {"files": {}}}})
    hook = guard_commits(local)
    assert hook == repo / "tools" / "git" / "hooks" / "pre-commit"
    git(repo, "add", "conf")
    message = _commit_refused(repo, "-m", "oops")
    assert "conf/it's.local.yaml holds a local mirror's checksums" in message


def test_outside_a_git_repo_there_is_no_guard(tmp_path: Path) -> None:
    local = tmp_path / "params.local.yaml"
    write_local(local, {})
    assert guard_commits(local) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.local.yaml"]
