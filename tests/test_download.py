"""Download code against a real HTTP server on 127.0.0.1 (no mocks)."""

import logging
import time
from pathlib import Path

import pytest
from helpers import dead_url, http_server, md5

from jaxpipe.core.errors import DownloadError
from jaxpipe.data.http import fetch_url
from jaxpipe.data.sources import download
from jaxpipe.data.specs import DownloadConfig, FileSpec

NAME = "t10k-labels-idx1-ubyte.gz"


def spec_for(mirror: Path) -> FileSpec:
    path = mirror / "mnist" / NAME
    return FileSpec(name=NAME, md5=md5(path), size=path.stat().st_size)


def config(urls: list[str], spec: FileSpec) -> DownloadConfig:
    return DownloadConfig(mirror_folder="mnist", files={"f": spec}, urls=urls, timeout_s=5)


def test_fetch_success_writes_verified_file(fake_mirror: Path, tmp_path: Path) -> None:
    spec = spec_for(fake_mirror)
    with http_server(fake_mirror / "mnist") as base:
        served = download(config([f"{base}/good/"], spec), tmp_path, mirror=None)
    assert served == {NAME: f"{base}/good/"}
    assert md5(tmp_path / NAME) == spec.md5
    assert [p.name for p in tmp_path.iterdir()] == [NAME]


def test_dead_mirror_then_good_one(fake_mirror: Path, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    spec = spec_for(fake_mirror)
    with http_server(fake_mirror / "mnist") as base:
        urls = [dead_url() + "/", f"{base}/missing/", f"{base}/good/"]
        served = download(config(urls, spec), tmp_path, mirror=None)
    assert served[NAME] == f"{base}/good/"
    assert "Connection" in caplog.text and "HTTP 404" in caplog.text


def test_corrupt_file_names_url_and_checksums_and_leaves_nothing(
        fake_mirror: Path, tmp_path: Path) -> None:
    spec = spec_for(fake_mirror)
    with http_server(fake_mirror / "mnist") as base:
        with pytest.raises(DownloadError) as err:
            fetch_url(f"{base}/corrupt/{NAME}", tmp_path / NAME, spec, timeout=5, deadline=30,
                      max_bytes=1 << 20)
    message = str(err.value)
    assert f"{base}/corrupt/{NAME}" in message and spec.md5 in message and "got" in message
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_rejected(fake_mirror: Path, tmp_path: Path) -> None:
    spec = FileSpec(name=NAME, md5=spec_for(fake_mirror).md5)  # no size: length check must fire
    with http_server(fake_mirror / "mnist") as base:
        with pytest.raises(DownloadError, match="truncated transfer"):
            fetch_url(f"{base}/truncate/{NAME}", tmp_path / NAME, spec, timeout=5, deadline=30,
                      max_bytes=1 << 20)
    assert list(tmp_path.iterdir()) == []


def test_all_sources_fail_offline_names_mirror_variable(fake_mirror: Path,
                                                        tmp_path: Path) -> None:
    spec = spec_for(fake_mirror)
    with pytest.raises(DownloadError, match="JAXPIPE_MIRROR") as err:
        download(config([dead_url() + "/"], spec), tmp_path, mirror=None)
    assert NAME in str(err.value) and "\n" not in str(err.value)


def test_local_mirror_is_tried_first(fake_mirror: Path, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    spec = spec_for(fake_mirror)
    served = download(config([dead_url() + "/"], spec), tmp_path, mirror=fake_mirror)
    assert served == {NAME: str(fake_mirror)}
    assert "served by local mirror" in caplog.text


def test_bad_mirror_copy_falls_back_to_network(fake_mirror: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    good = spec_for(fake_mirror)
    wrong = tmp_path / "wrong"
    (wrong / "mnist").mkdir(parents=True)
    (wrong / "mnist" / NAME).write_bytes(b"not the file")
    out = tmp_path / "out"
    out.mkdir()
    with http_server(fake_mirror / "mnist") as base:
        served = download(config([f"{base}/good/"], good), out, mirror=wrong)
    assert served[NAME] == f"{base}/good/"
    assert "local mirror rejected" in caplog.text and md5(out / NAME) == good.md5


def test_filespec_rejects_bad_md5() -> None:
    with pytest.raises(ValueError, match="md5"):
        FileSpec(name="x", md5="nothex")


def test_a_mirror_with_other_checksums_names_the_key_and_the_fix(fake_mirror: Path,
                                                                  tmp_path: Path) -> None:
    """The shared subset's case: offline, the mirror holds a different file than params say."""
    wrong = tmp_path / "subset"
    (wrong / "mnist").mkdir(parents=True)
    (wrong / "mnist" / NAME).write_bytes(b"a real subset, say")
    cfg = DownloadConfig(mirror_folder="mnist", urls=[dead_url() + "/"],
                         files={"test_labels": spec_for(fake_mirror)})
    with pytest.raises(DownloadError) as err:
        download(cfg, tmp_path, mirror=wrong, where="params.yaml:download.mnist")
    message = str(err.value)
    assert message.startswith(f"{NAME}: the local mirror's copy fails "
                              "params.yaml:download.mnist.files.test_labels.md5 (expected 63 bytes")
    assert f"`jaxpipe-mirror {wrong}`" in message and "\n" not in message
    assert len(message) < 250 + len(str(wrong))


def test_a_mirror_symlink_out_of_the_mirror_is_refused(fake_mirror: Path, tmp_path: Path) -> None:
    """Even with a matching checksum, a file outside the mirror never reaches data/raw."""
    outside = tmp_path / "secret" / NAME
    outside.parent.mkdir()
    outside.write_bytes((fake_mirror / "mnist" / NAME).read_bytes())
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    (mirror / "mnist" / NAME).symlink_to(outside)
    (mirror / "mnist" / "inside.gz").write_bytes(outside.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError, match="not a regular file inside the mirror"):
        download(config([dead_url() + "/"], spec_for(fake_mirror)), out, mirror=mirror)
    assert list(out.iterdir()) == []
    (mirror / "mnist" / NAME).unlink()
    (mirror / "mnist" / NAME).symlink_to(mirror / "mnist" / "inside.gz")  # inside: fine
    assert download(config([dead_url() + "/"], spec_for(fake_mirror)), out, mirror=mirror)


@pytest.mark.parametrize(("mode", "message"), [
    ("trickle", r"not finished after the 2 s deadline \(deadline_s\)"),
    ("endless", r"more than 1000 bytes, refused"),
])
def test_downloads_are_bounded_in_time_and_size(tmp_path: Path, mode: str, message: str) -> None:
    spec = FileSpec(name=NAME, md5="0" * 32)
    started = time.monotonic()
    with http_server(tmp_path) as base, pytest.raises(DownloadError, match=message):
        fetch_url(f"{base}/{mode}/{NAME}", tmp_path / NAME, spec, timeout=1, deadline=2,
                  max_bytes=1000)
    assert time.monotonic() - started < 10 and not (tmp_path / NAME).exists()
