"""The Kaggle path: credential discovery, safe extraction, verification, offline error."""

import json
import zipfile
from pathlib import Path

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
