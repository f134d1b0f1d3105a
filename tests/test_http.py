"""``jaxpipe.data.http``: HTTP downloads against real servers on 127.0.0.1 (no mocks): files
larger than one read, bodies without a length or with a bogus one, a corrupt file, a
transfer cut short (by its length or its chunks), a server that goes silent (the per-read
timeout) or trickles (the deadline), the size caps (announced, declared, max_bytes), the
log and progress bar of a download, and credentials kept out of every line, log and
file."""

from __future__ import annotations

import http.server
import logging
import os
import re
import subprocess
import sys
import time
import urllib.parse
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import yaml
from helpers import (
    BODY,
    IMAGES,
    LABELS,
    OddHandler,
    dead_url,
    download_config,
    http_server,
    md5,
    odd_server,
    serving,
    spec_for,
    spec_of,
)

from jaxpipe.core.config import load_layered
from jaxpipe.core.errors import DownloadError
from jaxpipe.data import http as http_module
from jaxpipe.data.http import fetch_first, fetch_url
from jaxpipe.data.sources import download
from jaxpipe.data.specs import DownloadConfig, FileSpec
from jaxpipe.tools.workspace import committed_copy, dvc, git

ROOT = Path(__file__).parents[1]


def test_a_file_larger_than_one_read_streams_whole_and_verifies(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / IMAGES).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        fetch_url(f"{base}/good/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
    assert (tmp_path / IMAGES).read_bytes() == BODY


@pytest.mark.parametrize("mode", ["nolength", "bogus"])
def test_a_body_without_a_usable_length_is_read_to_its_end(tmp_path: Path, mode: str) -> None:
    with odd_server() as base:
        fetch_url(f"{base}/{mode}/{IMAGES}", tmp_path / IMAGES, spec_of(BODY, sized=False),
                  timeout=5, deadline=30, max_bytes=len(BODY))
    assert (tmp_path / IMAGES).read_bytes() == BODY


def test_a_server_that_goes_silent_fails_after_the_per_read_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    with odd_server() as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/silent/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=0.5,
                  deadline=30, max_bytes=len(BODY))
    assert str(err.value) == f"{base}/silent/{IMAGES}: TimeoutError: timed out"
    assert time.monotonic() - started < 2.5 and list(tmp_path.iterdir()) == []


def test_a_growing_response_is_cut_off_at_max_bytes_not_read_to_its_end(tmp_path: Path) -> None:
    OddHandler.sent.clear()
    OddHandler.done.clear()
    with odd_server() as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/endless/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=1000)
    assert str(err.value) == f"{base}/endless/{IMAGES}: more than 1000 bytes, refused"
    assert OddHandler.done.wait(10)
    assert OddHandler.sent[0] < 32 << 20  # of 64 MiB: the client hung up
    assert list(tmp_path.iterdir()) == []


def test_a_chunked_body_cut_short_is_a_truncated_transfer(tmp_path: Path) -> None:
    with odd_server() as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/chunked/{IMAGES}", tmp_path / IMAGES, spec_of(BODY, sized=False),
                  timeout=5, deadline=30, max_bytes=len(BODY))
    assert str(err.value) == (f"{base}/chunked/{IMAGES}: truncated transfer, the connection "
                              "closed after 70100 bytes")  # 7 chunks and 100 bytes of the 8th
    assert list(tmp_path.iterdir()) == []


def test_a_length_cut_short_names_both_counts(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / IMAGES).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/truncate/{IMAGES}", tmp_path / IMAGES, spec_of(BODY, sized=False),
                  timeout=5, deadline=30, max_bytes=len(BODY))
    assert str(err.value) == (f"{base}/truncate/{IMAGES}: truncated transfer, got "
                              f"{len(BODY) // 2} of {len(BODY)} bytes")


def test_base_urls_are_joined_with_one_slash(tmp_path: Path) -> None:
    (tmp_path / "EMNIST-X").mkdir()
    (tmp_path / "EMNIST-X" / IMAGES).write_bytes(BODY[:100])
    spec = spec_of(BODY[:100])
    with http_server(tmp_path) as base:
        for folder in ("EMNIST-X", "EMNIST-X/", "EMNIST-X//"):
            served, failures = fetch_first([f"{base}/good/{folder}"], spec, tmp_path / IMAGES,
                                           timeout=5, deadline=30, max_bytes=1000)
            assert served == f"{base}/good/{folder}" and failures == []


def test_a_refused_connection_is_named_by_its_error(tmp_path: Path) -> None:
    url = dead_url()
    with pytest.raises(DownloadError) as err:
        fetch_url(f"{url}/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=5, deadline=30,
                  max_bytes=len(BODY))
    assert str(err.value) == (f"{url}/{IMAGES}: ConnectionRefusedError: [Errno 111] "
                              "Connection refused")


def test_the_log_says_what_came_from_where_and_how_fast(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jaxpipe.data.http")
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / IMAGES).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        started = time.perf_counter()
        fetch_url(f"{base}/good/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
        slowest = len(BODY) / (time.perf_counter() - started) / 1e6  # MB/s, seen from outside
    said = re.fullmatch(rf"{IMAGES}: {len(BODY)} bytes from {base}/good/{IMAGES} \((\S+) MB/s\)",
                        caplog.messages[-1])
    assert said is not None and slowest - 0.05 <= float(said[1]) < 1e5


def test_outside_a_terminal_a_download_draws_no_progress_bar(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Logs of `dvc repro` in CI or a file stay free of progress-bar lines."""
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / IMAGES).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        fetch_url(f"{base}/good/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
    assert capsys.readouterr().err == ""


def test_in_a_terminal_a_download_draws_its_progress_bar(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """When a person watches, a bar counts the bytes as they arrive (bytes, scaled), under the
    file's name, and goes away when the file is done."""
    monkeypatch.setattr(http_module, "interactive", lambda: True)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / IMAGES).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        fetch_url(f"{base}/good/{IMAGES}", tmp_path / IMAGES, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
    drawn = capsys.readouterr().err
    assert (tmp_path / IMAGES).read_bytes() == BODY
    assert drawn.startswith(f"\r{IMAGES}:") and f"/{len(BODY) / 1000:.0f}k [" in drawn
    assert "B/s]" in drawn and drawn.endswith("\r")


SECRET = "s3cr3t-T0KEN-value"


def _trickle(handler: http.server.BaseHTTPRequestHandler, data: bytes) -> None:
    """Write ``data`` one byte every 0.2 s (until the client hangs up), then close."""
    try:
        for i in range(len(data)):
            handler.wfile.write(data[i:i + 1])
            handler.wfile.flush()
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True


class _Hostile(http.server.BaseHTTPRequestHandler):
    """``/trickle/``: BODY's length announced (or not, ``/trickle-nolength/``), then one byte
    every 0.2 s; ``/echo/``: 401 with a reason phrase and a body that echo the request's
    credentials, as a misconfigured proxy does."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        mode = self.path.strip("/").split("/")[0]
        if mode == "echo":
            auth = self.headers.get("Authorization", f"Bearer {SECRET}")
            body = f"denied: {auth} for {self.path}".encode()
            self.send_response(401, f"Unauthorized {auth}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        if mode == "trickle":
            self.send_header("Content-Length", str(len(BODY)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        _trickle(self, BODY[:200])  # bounded: 40 s at most

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("mode", ["trickle", "trickle-nolength"])
def test_a_trickling_server_cannot_outlast_the_deadline(tmp_path: Path, mode: str) -> None:
    """Each read gets a byte well within timeout_s, yet the download ends at deadline_s,
    whether or not the server announced a Content-Length."""
    _ends_at_the_deadline(_Hostile, f"/{mode}/{IMAGES}", spec_of(BODY, mode == "trickle"),
                          tmp_path)


def _ends_at_the_deadline(handler: type, path: str, spec: FileSpec, tmp_path: Path) -> None:
    """A download from ``handler``'s server, every read within its 2 s timeout: it ends at
    the 3 s deadline with that one line, and leaves no file."""
    with serving(handler, wait_for_handlers=False) as base:
        started = time.monotonic()
        with pytest.raises(DownloadError) as err:
            fetch_url(f"{base}{path}", tmp_path / IMAGES, spec, timeout=2, deadline=3,
                      max_bytes=len(BODY))
        took = time.monotonic() - started
    assert str(err.value) == f"{base}{path}: not finished after the 3 s deadline (deadline_s)"
    assert 2.9 < took < 4.5
    assert list(tmp_path.iterdir()) == []


def test_no_credential_reaches_an_error_line_a_log_or_a_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with serving(_Hostile, wait_for_handlers=False) as base:
        host = base.split("://", 1)[1]
        urls = [f"http://user:{SECRET}@{host}/echo/", f"{base}/echo/?token={SECRET}&x=1"]
        with caplog.at_level(logging.DEBUG), pytest.raises(DownloadError) as err:
            download(download_config(urls, spec_of(BODY)), tmp_path / "out", None, "params.yaml:d")
    text = str(err.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text and "HTTP 401 Unauthorized" in text
    assert "http://***@" in text and "token=***" in text  # the URL is still named
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert all(SECRET.encode() not in f.read_bytes() for f in files)


class _Signed(http.server.BaseHTTPRequestHandler):
    """Serves BODY at ``/signed/<IMAGES>`` (or, with ``root``, the files there) only with
    ``token=SECRET`` and ``sig=SECRET`` in its query string, as a signed URL's server does;
    403 otherwise."""

    root: Path | None = None

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        name = url.path.removeprefix("/signed/")
        path = self.root / name if self.root and "/" not in name else None
        body = path.read_bytes() if path and path.is_file() else BODY if name == IMAGES else None
        if body is None or query.get("token") != [SECRET] or query.get("sig") != [SECRET]:
            self.send_error(403)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_signed_url_that_serves_keeps_its_token_out_of_every_line_and_file(
        tmp_path: Path) -> None:
    """The download stage itself, from a base URL whose query string carries the secret:
    the file arrives, and the ``sources:`` line names the URL without the secret."""
    spec = spec_of(BODY)
    with serving(_Signed) as base:
        url = f"{base}/signed/?token={SECRET}&sig={SECRET}&v=1"
        params = {"download": {"d": {"mirror_folder": "mnist", "urls": [url], "files": {
            "f": {"name": spec.name, "md5": spec.md5, "size": spec.size}}}}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        env = {k: v for k, v in os.environ.items() if k not in ("JAXPIPE_MIRROR", "DVC_STAGE")}
        proc = subprocess.run([sys.executable, str(ROOT / "stages/download.py"), "d",
                               "--out", "out", "--params", "params.yaml"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / IMAGES).read_bytes() == BODY
    assert f"(sources: {base}/signed/?token=***&sig=***&v=1)" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    files = [f for f in tmp_path.rglob("*") if f.is_file() and f.name != "params.yaml"]
    assert files and all(SECRET.encode() not in f.read_bytes() for f in files)


def test_a_token_from_the_environment_stays_out_of_dvc_lock_and_every_file(
        tmp_path: Path, fake_mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``dvc repro download@mnist`` in a committed copy of the project, its URL's
    secret written ``${NAME}`` in params.local.yaml: the lock records the name, no line or
    file the value."""
    ws = committed_copy(ROOT, tmp_path / "ws", "src", "stages", ".dvc", "dvc.yaml",
                        "params.yaml", "environment.yaml", "checks")
    folder = fake_mirror / "mnist"
    files = {key: {"md5": md5(folder / name), "size": (folder / name).stat().st_size}
             for key, name in _mnist_files(ws).items()}
    monkeypatch.delenv("JAXPIPE_MIRROR", raising=False)
    monkeypatch.setenv("JAXPIPE_TEST_TOKEN", SECRET)
    with serving(type("Folder", (_Signed,), {"root": folder})) as base:
        url = (f"{base}/signed/?token=${{JAXPIPE_TEST_TOKEN}}&sig=${{JAXPIPE_TEST_TOKEN}}"
               "&v=${JAXPIPE_TEST_TOKEN}")  # v=: a name that does not look secret
        (ws / "params.local.yaml").write_text(yaml.safe_dump(
            {"download": {"mnist": {"urls": [url], "files": files}}}))
        git(ws, "init", "-q")
        git(ws, "add", "-A")
        git(ws, "commit", "-q", "-m", "a signed mirror")
        out = dvc(ws, "repro", "download@mnist")
    assert "${JAXPIPE_TEST_TOKEN}" in (ws / "dvc.lock").read_text()
    assert SECRET not in out.stdout + out.stderr
    assert all(SECRET.encode() not in f.read_bytes() for f in ws.rglob("*") if f.is_file())
    for key, name in _mnist_files(ws).items():
        assert md5(ws / "data/raw/mnist" / name) == files[key]["md5"]
    monkeypatch.delenv("JAXPIPE_TEST_TOKEN")
    with pytest.raises(DownloadError) as err:
        download(load_layered(DownloadConfig, ws / "params.yaml", ws / "params.local.yaml",
                              "download", "mnist"), tmp_path / "out", None, "params.yaml:d")
    assert str(err.value) == (
        f"params.yaml:d.urls: {base}/signed/?token=***&sig=***&v=${{JAXPIPE_TEST_TOKEN}} needs "
        "${JAXPIPE_TEST_TOKEN}, which is not set in the environment")


def test_a_value_a_url_takes_from_the_environment_is_masked_wherever_it_stands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    monkeypatch.setenv("JAXPIPE_TEST_TOKEN", SECRET)
    with serving(_Signed) as base, caplog.at_level(logging.DEBUG):
        url = f"{base}/signed/?token=${{JAXPIPE_TEST_TOKEN}}&sig=${{JAXPIPE_TEST_TOKEN}}&v=" \
              "${JAXPIPE_TEST_TOKEN}"
        served = download(download_config([url], spec_of(BODY)), tmp_path, None, "p:d")
    assert (tmp_path / IMAGES).read_bytes() == BODY
    assert served == {IMAGES: f"{base}/signed/?token=***&sig=***&v=***"}
    assert caplog.records and SECRET not in caplog.text


def _mnist_files(ws: Path) -> dict[str, str]:
    """download.mnist's files, by key: their names."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    return {key: spec["name"] for key, spec in params["download"]["mnist"]["files"].items()}


def test_redact_removes_every_kind_of_credential() -> None:
    from jaxpipe.data.http import redact

    assert redact("https://me:pw@host/x?X-Amz-Signature=abc&a=1") == \
        "https://***@host/x?X-Amz-Signature=***&a=1"
    assert redact("401 Unauthorized Bearer abc.def, Basic dXNlcg==") == \
        "401 Unauthorized Bearer ***, Basic ***"
    assert redact("reason pw here", "https://me:pw@host/") == "reason *** here"


class _SlowHeaders(http.server.BaseHTTPRequestHandler):
    """The status line, then its headers one byte every 0.2 s, for as long as asked."""

    def do_GET(self) -> None:  # noqa: N802
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 200 + b"\r\n"
        _trickle(self, head)  # bounded: 44 s at most

    def log_message(self, *args) -> None:
        pass


def test_a_server_slow_to_send_its_headers_cannot_outlast_the_deadline(tmp_path: Path) -> None:
    """Each header byte comes well within timeout_s; the deadline still ends the download,
    before the body's reads (which bound themselves) even start."""
    _ends_at_the_deadline(_SlowHeaders, f"/{IMAGES}", spec_of(BODY), tmp_path)


def test_corrupt_file_names_url_and_checksums_and_leaves_nothing(
        fake_mirror: Path, tmp_path: Path) -> None:
    spec = spec_for(fake_mirror)
    with http_server(fake_mirror / "mnist") as base:
        with pytest.raises(DownloadError) as err:
            fetch_url(f"{base}/corrupt/{LABELS}", tmp_path / LABELS, spec, timeout=5, deadline=30,
                      max_bytes=1 << 20)
    message = str(err.value)
    assert f"{base}/corrupt/{LABELS}" in message and spec.md5 in message and "got" in message
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_rejected(fake_mirror: Path, tmp_path: Path) -> None:
    spec = FileSpec(name=LABELS, md5=spec_for(fake_mirror).md5)  # no size: length check must fire
    with http_server(fake_mirror / "mnist") as base:
        with pytest.raises(DownloadError, match="truncated transfer"):
            fetch_url(f"{base}/truncate/{LABELS}", tmp_path / LABELS, spec, timeout=5, deadline=30,
                      max_bytes=1 << 20)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("mode", "message"), [
    ("trickle", r"not finished after the 2 s deadline \(deadline_s\)"),
    ("endless", r"more than 1000 bytes, refused"),
])
def test_downloads_are_bounded_in_time_and_size(tmp_path: Path, mode: str, message: str) -> None:
    spec = FileSpec(name=LABELS, md5="0" * 32)
    started = time.monotonic()
    with http_server(tmp_path) as base, pytest.raises(DownloadError, match=message):
        fetch_url(f"{base}/{mode}/{LABELS}", tmp_path / LABELS, spec, timeout=1, deadline=2,
                  max_bytes=1000)
    assert time.monotonic() - started < 10 and not (tmp_path / LABELS).exists()


class _Announcing(http.server.BaseHTTPRequestHandler):
    """Announces a huge Content-Length and sends a few bytes; counts the bytes it sent."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()
        self.wfile.write(b"x" * 100)

    def log_message(self, *args) -> None:
        pass


def announcing_server() -> AbstractContextManager[str]:
    return serving(_Announcing)


def test_an_announced_length_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    spec = FileSpec(name="f.bin", md5="0" * 32)
    with announcing_server() as base, pytest.raises(
            DownloadError, match=rf"^{base}/f\.bin: announces 1000000000000 bytes, more than "
                                 r"the 5000 allowed$"):
        fetch_url(f"{base}/f.bin", tmp_path / "f.bin", spec, timeout=5, deadline=30,
                  max_bytes=5000)
    assert list(tmp_path.iterdir()) == []


def test_the_declared_size_of_a_file_caps_its_download(fake_mirror: Path, tmp_path: Path) -> None:
    """A file whose size params know is cut off at that size, below max_bytes."""
    real = fake_mirror / "mnist" / LABELS
    spec = FileSpec(name=LABELS, md5=md5(real), size=real.stat().st_size - 1)
    with http_server(fake_mirror / "mnist") as base, pytest.raises(
            DownloadError, match=rf"announces {real.stat().st_size} bytes, more than the "
                                 rf"{real.stat().st_size - 1} allowed"):
        fetch_url(f"{base}/good/{LABELS}", tmp_path / LABELS, spec, timeout=5, deadline=30,
                  max_bytes=1 << 20)
    exact = FileSpec(name=LABELS, md5=md5(real), size=real.stat().st_size)
    with http_server(fake_mirror / "mnist") as base:
        fetch_url(f"{base}/good/{LABELS}", tmp_path / LABELS, exact, timeout=5, deadline=30,
                  max_bytes=real.stat().st_size)
    assert md5(tmp_path / LABELS) == exact.md5


def test_fetch_first_returns_the_base_that_served_and_every_failure(fake_mirror: Path,
                                                                    tmp_path: Path) -> None:
    real = fake_mirror / "mnist" / LABELS
    spec = FileSpec(name=LABELS, md5=md5(real))
    with http_server(fake_mirror / "mnist") as base:
        served, failures = fetch_first([f"{base}/missing", f"{base}/good///"], spec,
                                       tmp_path / LABELS, timeout=5, deadline=30, max_bytes=1 << 20)
        assert served == f"{base}/good///" and failures == [
            f"{base}/missing/{LABELS}: HTTP 404 Not Found"]
        none, failures = fetch_first([f"{base}/corrupt/"], spec, tmp_path / "x", timeout=5,
                                     deadline=30, max_bytes=1 << 20)
    assert none is None and len(failures) == 1 and "checksum mismatch" in failures[0]
