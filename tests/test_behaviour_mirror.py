"""The mirror tool, called in-process: how it reads a mirror's MD5SUMS, which checksums it
writes to the overrides file, and what its command line says and does."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import yaml
from helpers import help_text

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.tools.mirror import (
    LOCAL_HEADER,
    apply_mirror,
    entry,
    main,
    mirror_overrides,
    read_md5sums,
)

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
