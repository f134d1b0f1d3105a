"""``jaxpipe.tools.mirror``: the mirror tool writes a mirror's differing checksums to the
local overrides file, which the download stages merge over params.yaml; params.yaml stays
as committed, and a commit of the overrides is refused unless meant. In-process, how it
reads a mirror's MD5SUMS, which checksums it writes, and what its command line says and
does."""

from __future__ import annotations

import logging
import stat
import sys
from pathlib import Path

import pytest
import yaml
from helpers import committed, help_text, md5

from jaxpipe.core.config import load_layered
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.specs import DownloadConfig
from jaxpipe.tools.mirror import (
    HOOK_MARK,
    LOCAL_HEADER,
    apply_mirror,
    entry,
    guard_commits,
    main,
    mirror_overrides,
    read_md5sums,
    write_local,
)
from jaxpipe.tools.workspace import git

ROOT = Path(__file__).parents[1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo holding the project's params.yaml and its empty params.local.yaml."""
    (tmp_path / "params.yaml").write_text(committed("params.yaml"))
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


A, B, C = "a" * 32, "b" * 32, "c" * 32


def test_md5sums_read_as_md5sum_writes_them(tmp_path: Path) -> None:
    listing = tmp_path / "MD5SUMS"
    listing.write_text(f"{A}  train.csv\n\n{B.upper()} *test.csv\n   \n{C}  X_last.npy\n")
    assert read_md5sums(listing) == {"train.csv": A, "test.csv": B, "X_last.npy": C}


@pytest.mark.parametrize("line", [f"{A[:-1]}  train.csv", f"{A}0  train.csv", f"{A}",
                                  f"{A}  train  copy.csv"])
def test_a_malformed_md5sums_line_is_named_by_its_number(tmp_path: Path, line: str) -> None:
    listing = tmp_path / "MD5SUMS"
    listing.write_text(f"{A}  ok.csv\n\n{line}\n")
    with pytest.raises(JaxpipeError) as err:
        read_md5sums(listing)
    assert str(err.value) == f"{listing}:3: expected '<md5>  <file name>'"


def dataset(folder: str, **files: str) -> dict:
    return {"mirror_folder": folder,
            "files": {key: {"name": f"{key}.csv", "md5": md5} for key, md5 in files.items()}}


def test_only_checksums_that_differ_are_overridden(tmp_path: Path) -> None:
    """A folder without MD5SUMS is left alone, and the datasets after it are still read."""
    (tmp_path / "with").mkdir()
    (tmp_path / "with" / "MD5SUMS").write_text(f"{A}  same.csv\n{C}  other.csv\n")
    params = {"download": {"first": dataset("without", x=A),
                           "second": dataset("with", same=A, other=B)}}
    assert mirror_overrides(params, tmp_path) == {("second", "other"): C}
    assert mirror_overrides({"generate": {}}, tmp_path) == {}


def test_a_file_missing_from_md5sums_is_named(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MD5SUMS").write_text(f"{A}  train.csv\n")
    with pytest.raises(JaxpipeError) as err:
        mirror_overrides({"download": {"d": dataset("m", train=A, test=B)}}, tmp_path)
    assert str(err.value) == f"{tmp_path / 'm' / 'MD5SUMS'}: no entry for test.csv"


def write_params(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"download": {"zeta": dataset("z", t=A, u=A),
                                                 "alpha": dataset("a", t=A)}}))
    return path


def test_the_overrides_file_holds_each_differing_file_sorted_with_no_size(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml")
    mirror = tmp_path / "mirror"
    for folder in ("z", "a"):
        (mirror / folder).mkdir(parents=True)
    (mirror / "z" / "MD5SUMS").write_text(f"{B}  u.csv\n{C}  t.csv\n")
    (mirror / "a" / "MD5SUMS").write_text(f"{B}  t.csv\n")
    local = tmp_path / "params.local.yaml"
    changes = apply_mirror(params, mirror, local)
    assert changes == {("zeta", "u"): B, ("zeta", "t"): C, ("alpha", "t"): B}
    text = local.read_text()
    assert text.startswith(LOCAL_HEADER)
    assert text[len(LOCAL_HEADER):] == (
        "download:\n"
        "  alpha:\n"
        "    files:\n"
        f"      t:\n        md5: {B}\n        size: null\n"
        "  zeta:\n"
        "    files:\n"
        f"      t:\n        md5: {C}\n        size: null\n"
        f"      u:\n        md5: {B}\n        size: null\n")


def test_a_mirror_that_matches_leaves_an_empty_overrides_file(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml")
    (tmp_path / "mirror").mkdir()
    local = tmp_path / "params.local.yaml"
    assert apply_mirror(params, tmp_path / "mirror", local) == {}
    assert local.read_text() == LOCAL_HEADER + "{}\n"


def test_the_command_line_writes_and_resets_the_overrides(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml")
    (tmp_path / "mirror" / "a").mkdir(parents=True)
    (tmp_path / "mirror" / "a" / "MD5SUMS").write_text(f"{B}  t.csv\n")
    caplog.set_level(logging.INFO, logger="jaxpipe.tools.mirror")
    main(["mirror"])
    local = yaml.safe_load((tmp_path / "params.local.yaml").read_text())
    assert local == {"download": {"alpha": {"files": {"t": {"md5": B, "size": None}}}}}
    assert caplog.messages[-1] == (
        "1 checksum(s) overridden in params.local.yaml (params.yaml unchanged; `--reset` "
        "undoes it); now run: JAXPIPE_MIRROR=mirror dvc repro")
    main(["--reset"])
    assert (tmp_path / "params.local.yaml").read_text() == LOCAL_HEADER + "{}\n"
    assert caplog.messages[-1] == (
        "params.local.yaml emptied: the download stages use params.yaml's checksums")


def test_other_params_and_overrides_files_can_be_named(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "other.yaml")
    (tmp_path / "m" / "z").mkdir(parents=True)
    (tmp_path / "m" / "z" / "MD5SUMS").write_text(f"{A}  t.csv\n{C}  u.csv\n")
    main([str(tmp_path / "m"), "--params", str(params), "--local", "mine.yaml"])
    assert yaml.safe_load((tmp_path / "mine.yaml").read_text()) == {
        "download": {"zeta": {"files": {"u": {"md5": C, "size": None}}}}}
    main(["--reset", "--local", "mine.yaml"])
    assert (tmp_path / "mine.yaml").read_text() == LOCAL_HEADER + "{}\n"
    assert not (tmp_path / "params.local.yaml").exists()


def test_the_command_line_needs_a_mirror_or_reset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2
    assert capsys.readouterr().err.endswith(": error: give a mirror directory, or --reset\n")


def test_the_help_says_what_each_option_does(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = help_text(main, capsys, monkeypatch)
    for said in ("Point the pipeline at a local mirror whose files differ from the official ones.",
                 "mirror mirror directory (a folder per data set, each with its MD5SUMS)",
                 "--reset drop every local override",
                 "--params PARAMS", "--local LOCAL the local overrides file the download stages "
                                    "read"):
        assert said in text


def test_the_console_script_ends_a_failure_in_one_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-mirror"
    monkeypatch.setattr(sys, "argv", ["jaxpipe-mirror", str(missing)])
    with pytest.raises(SystemExit) as stop:
        entry()
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {missing}: mirror directory not found\n"
