"""``jaxpipe.data.kaggle``: credential discovery, safe extraction of an archive, and the
Kaggle path of a download end to end, against a stand-in for the kaggle CLI (Kaggle
cannot be reached from here): a ``kaggle`` package first on PYTHONPATH, so ``python -m
kaggle`` runs it. It parses ``datasets download`` as the real CLI does and writes
``<path>/<slug>.zip`` as the real one does; what it serves and how it fails is set per
test. The library code runs in-process."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import md5

from jaxpipe.core.errors import DownloadError, JaxpipeError
from jaxpipe.data.kaggle import credential_source, safe_extract
from jaxpipe.data.sources import download
from jaxpipe.data.specs import DownloadConfig, FileSpec


def test_credentials_in_the_packages_order(tmp_path: Path) -> None:
    home = tmp_path
    assert credential_source({}, home) == "anonymous"
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    assert credential_source({}, home).endswith("kaggle.json")
    env = {"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    assert credential_source(env, home) == "KAGGLE_USERNAME/KAGGLE_KEY"
    (home / ".kaggle" / "access_token").write_text("tok\n")
    assert credential_source(env, home).endswith("access_token")
    assert credential_source({**env, "KAGGLE_API_TOKEN": "t"}, home) == "KAGGLE_API_TOKEN"


def test_broken_kaggle_json_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / ".kaggle").mkdir()
    config = tmp_path / ".kaggle" / "kaggle.json"
    config.write_text("{not json")
    with pytest.raises(JaxpipeError, match="kaggle.json: not valid JSON"):
        credential_source({}, tmp_path)
    config.write_text(json.dumps({"username": "u"}))
    with pytest.raises(JaxpipeError, match="missing key 'key'"):
        credential_source({}, tmp_path)


def test_safe_extract_accepts_normal_archive(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.csv", "a,b\n1,2\n")
        zf.writestr("sub/test.csv", "a\n")
    files = safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in files) == ["test.csv", "train.csv"]
    assert (tmp_path / "out" / "train.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("entry", ["../evil", "/abs/evil", "sub/../../evil", "..\\evil"])
def test_safe_extract_rejects_escaping_entry(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.csv", "x")
        zf.writestr(entry, "pwned")
    with pytest.raises(DownloadError, match="unsafe entry"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "ok.csv").exists()


def kaggle_config(spec: FileSpec) -> DownloadConfig:
    return DownloadConfig(mirror_folder="mobile-price", files={"train": spec},
                          kaggle_dataset="owner/does-not-exist", timeout_s=60)


def test_kaggle_source_verifies_mirror_copy(fake_mirror: Path, tmp_path: Path) -> None:
    path = fake_mirror / "mobile-price" / "train.csv"
    spec = FileSpec(name="train.csv", md5=md5(path), size=path.stat().st_size)
    served = download(kaggle_config(spec), tmp_path, fake_mirror)
    assert served == {"train.csv": str(fake_mirror)} and md5(tmp_path / "train.csv") == spec.md5


def test_offline_kaggle_error_is_one_line_and_names_mirror(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no credentials: the anonymous path
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    spec = FileSpec(name="train.csv", md5="0" * 32)
    with pytest.raises(DownloadError, match="JAXPIPE_MIRROR") as err:
        download(kaggle_config(spec), out, mirror=None)
    assert "\n" not in str(err.value) and list(out.iterdir()) == []


def test_archives_are_bounded_in_entries_and_unpacked_size(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train.csv", b"0" * 200_000)  # 200 kB that packs into a few hundred bytes
    assert bomb.stat().st_size < 2_000
    with pytest.raises(DownloadError, match="declares more than 100000 unpacked bytes"):
        safe_extract(bomb, tmp_path / "out", max_bytes=100_000)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(11):
            zf.writestr(f"f{i}.csv", b"x")
    with pytest.raises(DownloadError, match="11 entries, more than 10"):
        safe_extract(many, tmp_path / "out", max_entries=10)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    html = tmp_path / "login.zip"
    html.write_text("<html>please log in</html>")  # what a proxy may serve instead of a zip
    with pytest.raises(DownloadError, match="login.zip: not a readable zip archive"):
        safe_extract(html, tmp_path / "out")


STAND_IN = '''\
"""A stand-in for the kaggle CLI's `datasets download` (see test_kaggle.py)."""
import argparse, json, os, sys, time, zipfile
from pathlib import Path

plan = json.loads(Path(os.environ["STAND_IN_PLAN"]).read_text())
parser = argparse.ArgumentParser(prog="kaggle")
commands = parser.add_subparsers(dest="group", required=True)
datasets = commands.add_parser("datasets", aliases=["d"]).add_subparsers(dest="command",
                                                                          required=True)
down = datasets.add_parser("download")
down.add_argument("dataset", nargs="?")
down.add_argument("-f", "--file", dest="file_name")
down.add_argument("-p", "--path", dest="path")
down.add_argument("--unzip", action="store_true")
down.add_argument("-o", "--force", action="store_true")
down.add_argument("-q", "--quiet", action="store_true")
args = parser.parse_args()
with open(plan["calls"], "a") as calls:
    calls.write(json.dumps({"argv": sys.argv[1:], "path": args.path}) + "\\n")
time.sleep(plan.get("sleep", 0))
out = Path(args.path or ".")
if plan.get("files") is not None:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / (args.dataset.split("/")[1] + ".zip"), "w") as zf:
        for name, text in plan["files"].items():
            zf.writestr(name, text)
sys.stdout.write(plan.get("stdout", ""))
sys.stderr.write(plan.get("stderr", ""))
sys.exit(plan.get("exit", 0))
'''

DATASET = "owner/phone-prices"


@dataclass
class StandIn:
    """Sets what the stand-in CLI does; ``calls`` are the command lines it was given."""

    plan_file: Path
    calls_file: Path

    def plan(self, **plan: object) -> None:
        self.plan_file.write_text(json.dumps({"calls": str(self.calls_file), **plan}))

    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """The stand-in CLI first on PYTHONPATH, no credentials (the anonymous path), and a
    working directory of its own (a command that lost ``-p`` would write there)."""
    package = tmp_path / "stand-in" / "kaggle"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    stand_in = StandIn(tmp_path / "plan.json", tmp_path / "calls.jsonl")
    monkeypatch.setenv("STAND_IN_PLAN", str(stand_in.plan_file))
    stand_in.plan(files={})
    return stand_in


TRAIN = "battery_power,price_range\n842,1\n1021,2\n"


def spec(text: str = TRAIN, name: str = "train.csv", sized: bool = True) -> FileSpec:
    data = text.encode()
    return FileSpec(name=name, md5=hashlib.md5(data).hexdigest(),  # noqa: S324
                    size=len(data) if sized else None)


def config(*specs: FileSpec, timeout_s: float = 30.0) -> DownloadConfig:
    return DownloadConfig(mirror_folder="mobile-price", kaggle_dataset=DATASET,
                          files={s.name.split(".")[0]: s for s in specs}, timeout_s=timeout_s)


def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_the_cli_is_asked_for_the_dataset_into_a_folder_inside_the_output(
        cli: StandIn, tmp_path: Path) -> None:
    cli.plan(files={"train.csv": TRAIN, "test.csv": "battery_power\n1\n"})
    out = out_dir(tmp_path)
    served = download(config(spec()), out, mirror=None)
    assert served == {"train.csv": f"kaggle:{DATASET}"}
    assert (out / "train.csv").read_text() == TRAIN
    assert sorted(p.name for p in out.iterdir()) == ["train.csv"]  # the rest is cleaned up
    [call] = cli.calls()
    assert call["argv"] == ["datasets", "download", DATASET, "-p", call["path"], "-q"]
    assert Path(call["path"]).parent == out  # same filesystem: the final rename is atomic
    assert list(Path.cwd().iterdir()) == []


def test_every_file_the_params_name_is_taken_from_the_one_archive(cli: StandIn,
                                                                  tmp_path: Path) -> None:
    test_text = "battery_power\n1\n"
    cli.plan(files={"train.csv": TRAIN, "test.csv": test_text})
    out = out_dir(tmp_path)
    served = download(config(spec(), spec(test_text, "test.csv")), out, mirror=None)
    assert served == {"train.csv": f"kaggle:{DATASET}", "test.csv": f"kaggle:{DATASET}"}
    assert (out / "test.csv").read_text() == test_text and len(cli.calls()) == 1


def test_files_the_mirror_serves_are_not_asked_of_kaggle(cli: StandIn, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "mobile-price").mkdir(parents=True)
    (mirror / "mobile-price" / "train.csv").write_text(TRAIN)
    cli.plan(exit=1, stderr="must not be called\n")
    out = out_dir(tmp_path)
    assert download(config(spec()), out, mirror=mirror) == {"train.csv": str(mirror)}
    assert cli.calls() == []


def test_a_file_missing_from_the_archive_is_named(cli: StandIn, tmp_path: Path) -> None:
    cli.plan(files={"train.csv": TRAIN})
    out = out_dir(tmp_path)
    with pytest.raises(DownloadError) as err:
        download(config(spec(), spec("x\n", "test.csv")), out, mirror=None)
    assert str(err.value) == f"kaggle {DATASET}: archive has no test.csv"


def test_a_file_that_fails_its_checksum_is_named_and_not_kept(cli: StandIn,
                                                             tmp_path: Path) -> None:
    changed = TRAIN.replace("842", "843")
    cli.plan(files={"train.csv": changed})
    out = out_dir(tmp_path)
    expected = spec()
    with pytest.raises(DownloadError) as err:
        download(config(spec(sized=False)), out, mirror=None)
    assert str(err.value) == (f"kaggle {DATASET}: train.csv: checksum mismatch: expected MD5 "
                              f"{expected.md5}, got {spec(changed).md5}")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("plan", "reason"), [
    ({"exit": 1, "stderr": "Warning: Looks like you're using an outdated API Version\n"
                           "Traceback (most recent call last):\n"
                           "403 Client Error: Forbidden for url: https://www.kaggle.com/x\n",
      "stdout": "ignored when stderr says why\n"},
     "403 Client Error: Forbidden for url: https://www.kaggle.com/x"),
    ({"exit": 1, "stdout": "404 - Not Found - Dataset not found\n"},
     "404 - Not Found - Dataset not found"),
    ({"exit": 3}, "exit code 3"),
    ({"exit": 0, "stdout": "Dataset URL: https://www.kaggle.com/datasets/x\nno files\n"},
     "no files"),
    ({"exit": 1, "files": {"train.csv": TRAIN}, "stderr": "Connection reset by peer\n"},
     "Connection reset by peer"),
])
def test_a_failing_cli_is_one_line_naming_the_dataset_and_its_last_word(
        cli: StandIn, tmp_path: Path, plan: dict, reason: str) -> None:
    cli.plan(**{"files": None, **plan})
    out = out_dir(tmp_path)
    with pytest.raises(DownloadError) as err:
        download(config(spec()), out, mirror=None)
    assert str(err.value) == (f"kaggle {DATASET}: {reason} (offline? set JAXPIPE_MIRROR to a "
                              "local mirror directory)")
    assert list(out.iterdir()) == []
    mirror = tmp_path / "empty-mirror"
    mirror.mkdir()
    with pytest.raises(DownloadError) as err:
        download(config(spec()), out, mirror=mirror)
    assert str(err.value) == f"kaggle {DATASET}: {reason}"  # a mirror is set: no hint


def test_the_cli_is_stopped_at_timeout_s(cli: StandIn, tmp_path: Path) -> None:
    cli.plan(files={"train.csv": TRAIN}, sleep=30)
    out = out_dir(tmp_path)
    with pytest.raises(DownloadError) as err:
        download(config(spec(), timeout_s=1.0), out, mirror=None)
    assert str(err.value) == (f"kaggle {DATASET}: timed out after 1 s (offline? set "
                              "JAXPIPE_MIRROR to a local mirror directory)")
    assert list(out.iterdir()) == []


def test_broken_credentials_are_named_before_the_cli_runs(cli: StandIn, tmp_path: Path) -> None:
    (Path.home() / ".kaggle").mkdir()
    (Path.home() / ".kaggle" / "kaggle.json").write_text("{not json")
    out = out_dir(tmp_path)
    with pytest.raises(JaxpipeError, match=r"\.kaggle/kaggle\.json: not valid JSON"):
        download(config(spec()), out, mirror=None)
    assert cli.calls() == []


def test_credentials_are_found_where_the_kaggle_package_looks(tmp_path: Path) -> None:
    home = tmp_path
    kaggle_dir = home / ".kaggle"
    kaggle_dir.mkdir()
    (kaggle_dir / "access_token").write_text("  \n")  # blank: not a token
    assert credential_source({"KAGGLE_USERNAME": "u"}, home) == "anonymous"
    assert credential_source({"KAGGLE_KEY": "k"}, home) == "anonymous"
    assert credential_source({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"},
                             home) == "KAGGLE_USERNAME/KAGGLE_KEY"
    (kaggle_dir / "access_token.txt").write_text("tok")
    assert credential_source({}, home) == str(kaggle_dir / "access_token.txt")
    assert credential_source({"KAGGLE_API_TOKEN": "t"}, home) == "KAGGLE_API_TOKEN"
    (kaggle_dir / "access_token.txt").unlink()
    elsewhere = tmp_path / "config"
    elsewhere.mkdir()
    (elsewhere / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    assert credential_source({"KAGGLE_CONFIG_DIR": str(elsewhere)},
                             home) == str(elsewhere / "kaggle.json")
    (kaggle_dir / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    assert credential_source({}, home) == str(kaggle_dir / "kaggle.json")


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "missing key 'username'"),
    ('{"key": "k"}', "missing key 'username'"),
    ('{"username": "u"}', "missing key 'key'"),
    ("{}", "missing key 'username'"),
])
def test_an_incomplete_kaggle_json_names_the_first_missing_key(tmp_path: Path, content: str,
                                                               message: str) -> None:
    (tmp_path / "kaggle.json").write_text(content)
    with pytest.raises(JaxpipeError) as err:
        credential_source({"KAGGLE_CONFIG_DIR": str(tmp_path)}, tmp_path / "home")
    assert str(err.value) == f"{tmp_path / 'kaggle.json'}: {message}"


def test_nested_entries_and_late_folder_entries_are_extracted(tmp_path: Path) -> None:
    """Folders are made as needed, whatever the order the archive lists them in."""
    archive = zip_with(tmp_path / "a.zip", {"a/b/one.csv": b"1", "a/b/two.csv": b"2",
                                          "a/b/": b"", "a/": b""})
    files = safe_extract(archive, tmp_path / "new" / "out")
    assert [p.relative_to(tmp_path / "new" / "out").as_posix() for p in files] == [
        "a/b/one.csv", "a/b/two.csv"]
    assert (tmp_path / "new" / "out" / "a" / "b" / "two.csv").read_bytes() == b"2"


def test_an_unsafe_entry_names_the_archive_the_entry_and_the_destination(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "a.zip", {"../evil": b"x"})
    with pytest.raises(DownloadError) as err:
        safe_extract(archive, tmp_path / "out")
    assert str(err.value) == f"{archive}: unsafe entry '../evil' escapes {tmp_path / 'out'}"


def test_an_entry_holding_more_than_it_declares_is_refused(tmp_path: Path) -> None:
    """The declared sizes are what the caps check; an entry that holds more than it declares
    fails its CRC, and no more than the declared bytes reach the disk."""
    archive = zip_with(tmp_path / "a.zip", {"train.csv": b"x" * 5000})
    raw = bytearray(archive.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24: central + 28] = (10).to_bytes(4, "little")  # declared: 10 bytes
    raw[22:26] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(DownloadError) as err:
        safe_extract(archive, tmp_path / "out", max_bytes=10)
    assert str(err.value) == (f"{archive}: not a readable zip archive "
                              "(Bad CRC-32 for file 'train.csv')")
    assert (tmp_path / "out" / "train.csv").stat().st_size <= 10


@pytest.mark.parametrize(("entries", "message"), [
    ({"a" * 256 + ".csv": b"x"}, "a name part of 260 bytes (at most 255)"),
    ({"d/" + "é" * 128: b"x"}, "a name part of 256 bytes (at most 255)"),
    ({"a": b"file", "a/b.csv": b"x"}, "entry 'a' is both a file and a folder"),
    ({"a/b.csv": b"x", "a": b"file"}, "entry 'a' is both a file and a folder"),
    ({"a/": b"", "a": b"file"}, "entry 'a' is both a file and a folder"),
    ({"train.csv": b"1", "./train.csv": b"2"}, "entry './train.csv' appears twice"),
])
def test_an_entry_no_file_system_can_hold_is_named_in_one_line_and_nothing_is_written(
        tmp_path: Path, entries: dict[str, bytes], message: str) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(DownloadError) as err:
        safe_extract(archive, tmp_path / "out")
    assert str(err.value).startswith(f"{archive}: ") and message in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
    assert not (tmp_path / "out").exists()


def test_a_duplicate_name_zipfile_warns_about_is_refused_too(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("train.csv", b"1")
        zf.writestr("train.csv", b"2")
    with pytest.raises(DownloadError, match=r": entry 'train.csv' appears twice$"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


EXTRACT_WITH_A_SMALL_DISK = """
import resource, signal, sys
from pathlib import Path
from jaxpipe.core.errors import DownloadError
from jaxpipe.data.kaggle import safe_extract
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    safe_extract(Path(sys.argv[1]), Path(sys.argv[2]))
except DownloadError as exc:
    print(exc)
"""


def test_a_disk_that_fills_while_extracting_names_the_archive_and_entry(tmp_path: Path) -> None:
    import subprocess
    import sys

    archive = zip_with(tmp_path / "a.zip", {"small.csv": b"1", "train.csv": b"x" * 5000})
    proc = subprocess.run([sys.executable, "-c", EXTRACT_WITH_A_SMALL_DISK, str(archive),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                          check=True)
    assert proc.stdout.strip() == (f"{archive}: entry 'train.csv': cannot extract into "
                                   f"{tmp_path / 'out'} (File too large)")


def test_refused_credentials_say_so_in_one_line(cli: StandIn, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI answers a 401 with 16 lines of help, the last about saving a token."""
    help_text = ("Authentication required to call the Kaggle API.\n\nFirst, you will need a "
                 "Kaggle account.\n" + "...\n" * 12 + "    Save the token to "
                 "~/.kaggle/access_token\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_secret_value")
    cli.plan(files=None, stdout=help_text, exit=1)
    with pytest.raises(JaxpipeError) as err:
        download(config(spec()), out_dir(tmp_path), mirror=None)
    assert str(err.value) == (f"kaggle {DATASET}: Kaggle refused the credentials from "
                              "KAGGLE_API_TOKEN; or serve the files from a mirror "
                              "(JAXPIPE_MIRROR)")
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    (tmp_path / "again").mkdir()
    with pytest.raises(JaxpipeError, match="no credentials were found"):
        download(config(spec()), out_dir(tmp_path / "again"), mirror=None)


def test_an_archive_past_the_cap_is_refused(cli: StandIn, tmp_path: Path) -> None:
    from jaxpipe.data.kaggle import run_kaggle_cli

    cli.plan(files={"train.csv": "x" * 50_000})
    dest = tmp_path / "dl"
    dest.mkdir()
    with pytest.raises(JaxpipeError) as err:
        run_kaggle_cli(DATASET, dest, 30, max_bytes=10_000)
    assert str(err.value) == f"kaggle {DATASET}: the download passed 10000 bytes, refused"


def zip_with(path: Path, entries: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if link is not None:  # a symbolic link entry, as `zip --symlinks` stores one
            info = zipfile.ZipInfo(link)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return path


def test_a_symbolic_link_entry_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "a.zip", {"ok.csv": b"x"}, link="train.csv")
    with pytest.raises(DownloadError, match=r"a\.zip: symbolic link entry 'train.csv' refused"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_regular_file_with_link_like_permissions_is_still_a_file(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("train.csv")
        info.external_attr = (0o100755 << 16)
        zf.writestr(info, "a\n1\n")
    assert [p.name for p in safe_extract(archive, tmp_path / "out")] == ["train.csv"]


@pytest.mark.parametrize("entry", ["sub/..", "./", "a/../.."])
def test_an_entry_that_resolves_onto_or_above_the_destination_is_refused(tmp_path: Path,
                                                                         entry: str) -> None:
    archive = zip_with(tmp_path / "a.zip", {"ok.csv": b"x", entry: b"y"})
    with pytest.raises(DownloadError, match="unsafe entry"):
        safe_extract(archive, tmp_path / "out")


def test_an_archive_exactly_at_its_limits_is_extracted_whole(tmp_path: Path) -> None:
    """The caps are upper bounds that include the limit itself (entries and bytes)."""
    archive = zip_with(tmp_path / "a.zip", {"sub/": b"", "sub/a.csv": b"12345",
                                            "b.csv": b"67890" * 3})
    files = safe_extract(archive, tmp_path / "out", max_entries=3, max_bytes=20)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["b.csv",
                                                                               "sub/a.csv"]
    assert (tmp_path / "out" / "b.csv").read_bytes() == b"67890" * 3
    with pytest.raises(DownloadError, match="declares more than 19 unpacked bytes"):
        safe_extract(archive, tmp_path / "again", max_entries=3, max_bytes=19)
    with pytest.raises(DownloadError, match="3 entries, more than 2, refused"):
        safe_extract(archive, tmp_path / "again", max_entries=2)


def test_a_large_entry_is_copied_whole_in_blocks(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    archive = zip_with(tmp_path / "a.zip", {"big.bin": data})
    safe_extract(archive, tmp_path / "out", max_bytes=len(data))
    assert (tmp_path / "out" / "big.bin").read_bytes() == data


def test_a_corrupt_member_is_one_download_error(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "a.zip", {"train.csv": b"a,b\n" * 50})
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"a,b\n")
    raw[at: at + 4] = b"XXXX"  # stored bytes changed: the CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        safe_extract(archive, tmp_path / "out")
