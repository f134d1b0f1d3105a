"""``jaxpipe.data.sources``, the download driver, against real servers on 127.0.0.1: the
local mirror (``JAXPIPE_MIRROR``) first, each HTTP mirror in turn, a mirror's copy that
is refused, and the one line a user reads when every source fails."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from helpers import (
    BODY,
    IMAGES,
    LABELS,
    dead_url,
    download_config,
    http_server,
    md5,
    odd_server,
    spec_for,
    spec_of,
)

from jaxpipe.core.errors import DownloadError
from jaxpipe.data.sources import _no_source_message, download, mirror_from_env, mirror_problem
from jaxpipe.data.specs import DownloadConfig, FileSpec

OFFLINE_HINT = ". Offline? Set JAXPIPE_MIRROR to a local mirror directory."


def test_timeout_s_reaches_the_http_download(tmp_path: Path) -> None:
    """The download driver passes params' timeout_s on; a timeout reads as offline."""
    started = time.monotonic()
    with odd_server() as base, pytest.raises(DownloadError) as err:
        download(download_config([f"{base}/silent/"], spec_of(BODY), timeout_s=0.5), tmp_path, None)
    assert str(err.value) == (f"{IMAGES}: 1 HTTP mirror(s) failed, first: {base}/silent/{IMAGES}: "
                              f"TimeoutError: timed out{OFFLINE_HINT}")
    assert time.monotonic() - started < 2.5


def test_max_mb_is_decimal_megabytes(tmp_path: Path) -> None:
    """max_mb: 1 allows 1,000,000 bytes: a file one byte longer is refused by its length."""
    data = bytes(1_000_001)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / IMAGES).write_bytes(data)
    with http_server(tmp_path / "srv") as base, pytest.raises(DownloadError) as err:
        download(download_config([f"{base}/good/"], spec_of(data, sized=False), max_mb=1.0),
                 tmp_path, None)
    assert str(err.value) == (f"{IMAGES}: 1 HTTP mirror(s) failed, first: {base}/good/{IMAGES}: "
                              "announces 1000001 bytes, more than the 1000000 allowed; "
                              "local mirror: not set (JAXPIPE_MIRROR)")


def test_a_refused_connection_alone_reads_as_offline(tmp_path: Path) -> None:
    url = dead_url()
    with pytest.raises(DownloadError) as err:
        download(download_config([url + "/"], spec_of(BODY)), tmp_path, None)
    assert str(err.value) == (f"{IMAGES}: 1 HTTP mirror(s) failed, first: {url}/{IMAGES}: "
                              f"ConnectionRefusedError: [Errno 111] Connection refused"
                              f"{OFFLINE_HINT}")


def test_a_proxy_that_cannot_reach_the_internet_reads_as_offline(tmp_path: Path) -> None:
    with odd_server() as base, pytest.raises(DownloadError) as err:
        download(download_config([f"{base}/gateway/"], spec_of(BODY)), tmp_path, None)
    assert str(err.value) == (f"{IMAGES}: 1 HTTP mirror(s) failed, first: {base}/gateway/{IMAGES}: "
                              f"HTTP 504 Gateway Timeout{OFFLINE_HINT}")


def test_one_failure_that_is_not_offline_drops_the_hint(tmp_path: Path) -> None:
    with http_server(tmp_path) as base, pytest.raises(DownloadError) as err:
        download(download_config([dead_url() + "/", f"{base}/missing/"], spec_of(BODY)),
                 tmp_path, None)
    assert str(err.value).startswith(f"{IMAGES}: 2 HTTP mirror(s) failed, first: http://127.0.0.1:")
    assert str(err.value).endswith("Connection refused; local mirror: not set (JAXPIPE_MIRROR)")


@pytest.mark.parametrize("length", [120, 121])
def test_the_first_failure_is_cut_at_120_characters(tmp_path: Path, length: int) -> None:
    with http_server(tmp_path) as base:
        padding = "p" * (length - len(f"{base}/missing//{IMAGES}: HTTP 404 Not Found"))
        failure = f"{base}/missing/{padding}/{IMAGES}: HTTP 404 Not Found"
        assert len(failure) == length
        with pytest.raises(DownloadError) as err:
            download(download_config([f"{base}/missing/{padding}/"], spec_of(BODY)), tmp_path, None)
    shown = failure if length <= 120 else failure[:117] + "..."
    assert str(err.value) == (f"{IMAGES}: 1 HTTP mirror(s) failed, first: {shown}; "
                              "local mirror: not set (JAXPIPE_MIRROR)")


def test_with_a_mirror_set_the_message_says_why_it_did_not_serve(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    url = dead_url()
    with pytest.raises(DownloadError) as err:
        download(download_config([url + "/"], spec_of(BODY)), tmp_path, mirror)
    assert str(err.value) == (f"{IMAGES}: 1 HTTP mirror(s) failed, first: {url}/{IMAGES}: "
                              "ConnectionRefusedError: [Errno 111] Connection refused; "
                              f"local mirror: not in local mirror {mirror / 'mnist'}")


def test_a_mirror_copy_with_another_checksum_names_the_default_key(tmp_path: Path) -> None:
    mirror = tmp_path / "shared data"  # a space in the path: the problem is still whole
    (mirror / "mnist").mkdir(parents=True)
    (mirror / "mnist" / IMAGES).write_bytes(b"a subset")
    spec = spec_of(BODY, sized=False)
    with pytest.raises(DownloadError) as err:
        download(download_config([dead_url() + "/"], spec), tmp_path, mirror)
    assert str(err.value) == (
        f"{IMAGES}: the local mirror's copy fails download.files.f.md5 (checksum mismatch: "
        f"expected MD5 {spec.md5}, got {spec_of(b'a subset').md5}); if the mirror is a "
        f"deliberate subset or an internal one, adopt its checksums with `jaxpipe-mirror "
        f"{mirror}`")


@pytest.mark.parametrize("failure", [
    "http://a.example/f: gaierror: [Errno -2] Name or service not known",
    "http://a.example/f: gaierror: [Errno -3] Temporary failure in name resolution",
    "http://a.example/f: gaierror: [Errno 8] nodename nor servname provided, or not known",
    "http://a.example/f: OSError: [Errno 101] Network is unreachable",
    "http://a.example/f: TimeoutError: [Errno 110] Connection timed out",
])
def test_failures_that_mean_no_network_suggest_the_mirror(failure: str) -> None:
    message = _no_source_message("f", [failure], None, "not set", "download.x.files.f.md5")
    assert message == f"f: 1 HTTP mirror(s) failed, first: {failure}{OFFLINE_HINT}"


def test_mirror_problem_says_why_the_mirror_cannot_serve(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    good = mirror / "mnist" / IMAGES
    good.write_bytes(BODY[:100])
    assert mirror_problem(mirror, "mnist", spec_of(BODY[:100])) is None
    assert mirror_problem(mirror, "mnist", spec_of(BODY[:100], name="other.gz")) == (
        f"not in local mirror {mirror / 'mnist'}")
    wanted = spec_of(BODY[:99], sized=False)
    assert mirror_problem(mirror, "mnist", wanted) == (
        f"{good}: checksum mismatch: expected MD5 {wanted.md5}, got {spec_of(BODY[:100]).md5}")
    link = mirror / "mnist" / "link.gz"
    link.symlink_to(mirror / "mnist" / "gone.gz")  # a link to nothing, inside the mirror
    assert mirror_problem(mirror, "mnist", spec_of(b"", name="link.gz")) == (
        f"{link} is not a regular file inside the mirror {mirror}")
    with pytest.raises(DownloadError, match=r"link\.gz is not a regular file inside the mirror"):
        download(download_config([dead_url() + "/"], spec_of(b"x", name="link.gz")), tmp_path,
                 mirror)


def test_the_mirror_comes_from_jaxpipe_mirror(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAXPIPE_MIRROR", raising=False)
    assert mirror_from_env() is None
    monkeypatch.setenv("JAXPIPE_MIRROR", "")
    assert mirror_from_env() is None
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JAXPIPE_MIRROR", "~/datasets")
    assert mirror_from_env() == tmp_path / "datasets"


def test_a_file_absent_from_the_mirror_is_a_note_a_refused_one_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A mirror may hold only some data sets: absence is INFO; a copy it refuses is WARNING."""
    caplog.set_level(logging.INFO, logger="jaxpipe.data.sources")
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    (mirror / "mnist" / "link.gz").symlink_to(tmp_path)
    for name in (IMAGES, "link.gz"):
        with pytest.raises(DownloadError):
            download(download_config([dead_url() + "/"], spec_of(b"x", name=name)), tmp_path,
                     mirror)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if "local mirror:" in r.msg] == [
        (logging.INFO, f"{IMAGES}: local mirror: not in local mirror {mirror / 'mnist'}"),
        (logging.WARNING, f"link.gz: local mirror: {mirror / 'mnist' / 'link.gz'} is not a "
                          f"regular file inside the mirror {mirror}")]


def test_fetch_success_writes_verified_file(fake_mirror: Path, tmp_path: Path) -> None:
    spec = spec_for(fake_mirror)
    with http_server(fake_mirror / "mnist") as base:
        served = download(download_config([f"{base}/good/"], spec), tmp_path, mirror=None)
    assert served == {LABELS: f"{base}/good/"}
    assert md5(tmp_path / LABELS) == spec.md5
    assert [p.name for p in tmp_path.iterdir()] == [LABELS]


def test_dead_mirror_then_good_one(fake_mirror: Path, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    spec = spec_for(fake_mirror)
    with http_server(fake_mirror / "mnist") as base:
        urls = [dead_url() + "/", f"{base}/missing/", f"{base}/good/"]
        served = download(download_config(urls, spec), tmp_path, mirror=None)
    assert served[LABELS] == f"{base}/good/"
    assert "Connection" in caplog.text and "HTTP 404" in caplog.text


def test_all_sources_fail_offline_names_mirror_variable(fake_mirror: Path,
                                                        tmp_path: Path) -> None:
    spec = spec_for(fake_mirror)
    with pytest.raises(DownloadError, match="JAXPIPE_MIRROR") as err:
        download(download_config([dead_url() + "/"], spec), tmp_path, mirror=None)
    assert LABELS in str(err.value) and "\n" not in str(err.value)


def test_local_mirror_is_tried_first(fake_mirror: Path, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    spec = spec_for(fake_mirror)
    served = download(download_config([dead_url() + "/"], spec), tmp_path, mirror=fake_mirror)
    assert served == {LABELS: str(fake_mirror)}
    assert "served by local mirror" in caplog.text


def test_bad_mirror_copy_falls_back_to_network(fake_mirror: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    good = spec_for(fake_mirror)
    wrong = tmp_path / "wrong"
    (wrong / "mnist").mkdir(parents=True)
    (wrong / "mnist" / LABELS).write_bytes(b"not the file")
    out = tmp_path / "out"
    out.mkdir()
    with http_server(fake_mirror / "mnist") as base:
        served = download(download_config([f"{base}/good/"], good), out, mirror=wrong)
    assert served[LABELS] == f"{base}/good/"
    assert "local mirror rejected" in caplog.text and md5(out / LABELS) == good.md5


def test_a_mirror_with_other_checksums_names_the_key_and_the_fix(fake_mirror: Path,
                                                                  tmp_path: Path) -> None:
    """The shared subset's case: offline, the mirror holds a different file than params say."""
    wrong = tmp_path / "subset"
    (wrong / "mnist").mkdir(parents=True)
    (wrong / "mnist" / LABELS).write_bytes(b"a real subset, say")
    cfg = DownloadConfig(mirror_folder="mnist", urls=[dead_url() + "/"],
                         files={"test_labels": spec_for(fake_mirror)})
    with pytest.raises(DownloadError) as err:
        download(cfg, tmp_path, mirror=wrong, where="params.yaml:download.mnist")
    message = str(err.value)
    assert message.startswith(f"{LABELS}: the local mirror's copy fails "
                              "params.yaml:download.mnist.files.test_labels.md5 (expected 63 bytes")
    assert f"`jaxpipe-mirror {wrong}`" in message and "\n" not in message
    assert len(message) < 250 + len(str(wrong))


def test_a_mirror_symlink_out_of_the_mirror_is_refused(fake_mirror: Path, tmp_path: Path) -> None:
    """Even with a matching checksum, a file outside the mirror never reaches data/raw."""
    outside = tmp_path / "secret" / LABELS
    outside.parent.mkdir()
    outside.write_bytes((fake_mirror / "mnist" / LABELS).read_bytes())
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    (mirror / "mnist" / LABELS).symlink_to(outside)
    (mirror / "mnist" / "inside.gz").write_bytes(outside.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError, match="not a regular file inside the mirror"):
        download(download_config([dead_url() + "/"], spec_for(fake_mirror)), out, mirror=mirror)
    assert list(out.iterdir()) == []
    (mirror / "mnist" / LABELS).unlink()
    (mirror / "mnist" / LABELS).symlink_to(mirror / "mnist" / "inside.gz")  # inside: fine
    assert download(download_config([dead_url() + "/"], spec_for(fake_mirror)), out, mirror=mirror)


def test_a_mirror_entry_that_is_not_a_regular_file_is_refused(fake_mirror: Path,
                                                             tmp_path: Path) -> None:
    real = fake_mirror / "mnist" / LABELS
    spec = FileSpec(name=LABELS, md5=md5(real))
    mirror = tmp_path / "mirror"
    (mirror / "mnist" / LABELS).mkdir(parents=True)  # a folder where the file should be
    cfg = DownloadConfig(mirror_folder="mnist", files={"labels": spec}, urls=[dead_url() + "/"])
    with pytest.raises(DownloadError, match="is not a regular file inside the mirror"):
        download(cfg, tmp_path / "out", mirror=mirror)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
