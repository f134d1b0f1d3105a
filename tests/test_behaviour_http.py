"""HTTP downloads and the one-line errors of the download driver, against real servers on
127.0.0.1: files larger than one read, bodies without a length or with a bogus one, a server
that goes silent (the per-read timeout), a chunked body cut short, and the exact text a user
reads when every source fails."""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from helpers import dead_url, http_server, serving

from jaxpipe.core.errors import DownloadError
from jaxpipe.data import http as http_module
from jaxpipe.data.http import fetch_first, fetch_url
from jaxpipe.data.sources import _no_source_message, download, mirror_from_env, mirror_problem
from jaxpipe.data.specs import DownloadConfig, FileSpec

NAME = "train-images-idx3-ubyte.gz"
BODY = np.random.default_rng(0).integers(0, 256, 100 << 10, dtype=np.uint8).tobytes()  # 100 KiB
OFFLINE_HINT = ". Offline? Set JAXPIPE_MIRROR to a local mirror directory."


def spec_of(data: bytes, sized: bool = True, name: str = NAME) -> FileSpec:
    return FileSpec(name=name, md5=hashlib.md5(data).hexdigest(),  # noqa: S324
                    size=len(data) if sized else None)


class _Odd(http.server.BaseHTTPRequestHandler):
    """``/endless/``: 64 MiB with no length; ``/nolength/``: BODY with no Content-Length;
    ``/bogus/``: a Content-Length that is not a number; ``/silent/``: a length, 10 bytes, then
    silence (2 s); ``/chunked/``: BODY in 10 kB chunks, cut off after 7 of them;
    ``/gateway/``: what a proxy says when it cannot reach the internet (HTTP 504)."""

    protocol_version = "HTTP/1.1"
    sent: list[int] = []  # bytes each ``/endless/`` response got out before the client left
    done = threading.Event()

    def do_GET(self) -> None:  # noqa: N802
        mode = self.path.strip("/").split("/")[0]
        if mode == "endless":
            self._endless()
            return
        if mode == "gateway":
            self.send_error(504)
            return
        self.send_response(200)
        if mode == "nolength":
            self.send_header("Connection", "close")
        elif mode == "bogus":
            self.send_header("Content-Length", "lots")
            self.send_header("Connection", "close")
        elif mode == "silent":
            self.send_header("Content-Length", str(len(BODY)))
        elif mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if mode == "silent":
                self.wfile.write(BODY[:10])
                self.wfile.flush()
                time.sleep(2)
            elif mode == "chunked":
                for start in range(0, 70_000, 10_000):
                    self.wfile.write(b"%x\r\n" % 10_000 + BODY[start: start + 10_000] + b"\r\n")
                self.wfile.write(b"2710\r\n" + BODY[70_000: 70_100])  # a chunk cut short
            else:
                self.wfile.write(BODY)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _endless(self) -> None:
        """No length, 64 KiB blocks up to 64 MiB: counts what it got out."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        try:
            for _ in range(1024):
                self.wfile.write(b"x" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            _Odd.sent.append(sent)
            _Odd.done.set()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def odd_server() -> AbstractContextManager[str]:
    return serving(_Odd, wait_for_handlers=False)


def config(urls: list[str], spec: FileSpec, **limits: float) -> DownloadConfig:
    return DownloadConfig(mirror_folder="mnist", files={"f": spec}, urls=urls,
                          **{"timeout_s": 5.0, **limits})


def test_a_file_larger_than_one_read_streams_whole_and_verifies(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        fetch_url(f"{base}/good/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
    assert (tmp_path / NAME).read_bytes() == BODY


@pytest.mark.parametrize("mode", ["nolength", "bogus"])
def test_a_body_without_a_usable_length_is_read_to_its_end(tmp_path: Path, mode: str) -> None:
    with odd_server() as base:
        fetch_url(f"{base}/{mode}/{NAME}", tmp_path / NAME, spec_of(BODY, sized=False),
                  timeout=5, deadline=30, max_bytes=len(BODY))
    assert (tmp_path / NAME).read_bytes() == BODY


def test_a_server_that_goes_silent_fails_after_the_per_read_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    with odd_server() as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/silent/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=0.5,
                  deadline=30, max_bytes=len(BODY))
    assert str(err.value) == f"{base}/silent/{NAME}: TimeoutError: timed out"
    assert time.monotonic() - started < 2.5 and list(tmp_path.iterdir()) == []


def test_a_growing_response_is_cut_off_at_max_bytes_not_read_to_its_end(tmp_path: Path) -> None:
    _Odd.sent.clear()
    _Odd.done.clear()
    with odd_server() as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/endless/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=1000)
    assert str(err.value) == f"{base}/endless/{NAME}: more than 1000 bytes, refused"
    assert _Odd.done.wait(10) and _Odd.sent[0] < 32 << 20  # of 64 MiB: the client hung up
    assert list(tmp_path.iterdir()) == []


def test_timeout_s_reaches_the_http_download(tmp_path: Path) -> None:
    """The download driver passes params' timeout_s on; a timeout reads as offline."""
    started = time.monotonic()
    with odd_server() as base, pytest.raises(DownloadError) as err:
        download(config([f"{base}/silent/"], spec_of(BODY), timeout_s=0.5), tmp_path, None)
    assert str(err.value) == (f"{NAME}: 1 HTTP mirror(s) failed, first: {base}/silent/{NAME}: "
                              f"TimeoutError: timed out{OFFLINE_HINT}")
    assert time.monotonic() - started < 2.5


def test_a_chunked_body_cut_short_is_a_truncated_transfer(tmp_path: Path) -> None:
    with odd_server() as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/chunked/{NAME}", tmp_path / NAME, spec_of(BODY, sized=False),
                  timeout=5, deadline=30, max_bytes=len(BODY))
    assert str(err.value) == (f"{base}/chunked/{NAME}: truncated transfer, the connection "
                              "closed after 70100 bytes")  # 7 chunks and 100 bytes of the 8th
    assert list(tmp_path.iterdir()) == []


def test_a_length_cut_short_names_both_counts(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base, pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/truncate/{NAME}", tmp_path / NAME, spec_of(BODY, sized=False),
                  timeout=5, deadline=30, max_bytes=len(BODY))
    assert str(err.value) == (f"{base}/truncate/{NAME}: truncated transfer, got "
                              f"{len(BODY) // 2} of {len(BODY)} bytes")


def test_max_mb_is_decimal_megabytes(tmp_path: Path) -> None:
    """max_mb: 1 allows 1,000,000 bytes: a file one byte longer is refused by its length."""
    data = bytes(1_000_001)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(data)
    with http_server(tmp_path / "srv") as base, pytest.raises(DownloadError) as err:
        download(config([f"{base}/good/"], spec_of(data, sized=False), max_mb=1.0),
                 tmp_path, None)
    assert str(err.value) == (f"{NAME}: 1 HTTP mirror(s) failed, first: {base}/good/{NAME}: "
                              "announces 1000001 bytes, more than the 1000000 allowed; "
                              "local mirror: not set (JAXPIPE_MIRROR)")


def test_base_urls_are_joined_with_one_slash(tmp_path: Path) -> None:
    (tmp_path / "EMNIST-X").mkdir()
    (tmp_path / "EMNIST-X" / NAME).write_bytes(BODY[:100])
    spec = spec_of(BODY[:100])
    with http_server(tmp_path) as base:
        for folder in ("EMNIST-X", "EMNIST-X/", "EMNIST-X//"):
            served, failures = fetch_first([f"{base}/good/{folder}"], spec, tmp_path / NAME,
                                           timeout=5, deadline=30, max_bytes=1000)
            assert served == f"{base}/good/{folder}" and failures == []


def test_a_refused_connection_is_named_by_its_error(tmp_path: Path) -> None:
    url = dead_url()
    with pytest.raises(DownloadError) as err:
        fetch_url(f"{url}/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=5, deadline=30,
                  max_bytes=len(BODY))
    assert str(err.value) == f"{url}/{NAME}: ConnectionRefusedError: [Errno 111] Connection refused"


def test_a_refused_connection_alone_reads_as_offline(tmp_path: Path) -> None:
    url = dead_url()
    with pytest.raises(DownloadError) as err:
        download(config([url + "/"], spec_of(BODY)), tmp_path, None)
    assert str(err.value) == (f"{NAME}: 1 HTTP mirror(s) failed, first: {url}/{NAME}: "
                              f"ConnectionRefusedError: [Errno 111] Connection refused"
                              f"{OFFLINE_HINT}")


def test_a_proxy_that_cannot_reach_the_internet_reads_as_offline(tmp_path: Path) -> None:
    with odd_server() as base, pytest.raises(DownloadError) as err:
        download(config([f"{base}/gateway/"], spec_of(BODY)), tmp_path, None)
    assert str(err.value) == (f"{NAME}: 1 HTTP mirror(s) failed, first: {base}/gateway/{NAME}: "
                              f"HTTP 504 Gateway Timeout{OFFLINE_HINT}")


def test_one_failure_that_is_not_offline_drops_the_hint(tmp_path: Path) -> None:
    with http_server(tmp_path) as base, pytest.raises(DownloadError) as err:
        download(config([dead_url() + "/", f"{base}/missing/"], spec_of(BODY)), tmp_path, None)
    assert str(err.value).startswith(f"{NAME}: 2 HTTP mirror(s) failed, first: http://127.0.0.1:")
    assert str(err.value).endswith("Connection refused; local mirror: not set (JAXPIPE_MIRROR)")


@pytest.mark.parametrize("length", [120, 121])
def test_the_first_failure_is_cut_at_120_characters(tmp_path: Path, length: int) -> None:
    with http_server(tmp_path) as base:
        padding = "p" * (length - len(f"{base}/missing//{NAME}: HTTP 404 Not Found"))
        failure = f"{base}/missing/{padding}/{NAME}: HTTP 404 Not Found"
        assert len(failure) == length
        with pytest.raises(DownloadError) as err:
            download(config([f"{base}/missing/{padding}/"], spec_of(BODY)), tmp_path, None)
    shown = failure if length <= 120 else failure[:117] + "..."
    assert str(err.value) == (f"{NAME}: 1 HTTP mirror(s) failed, first: {shown}; "
                              "local mirror: not set (JAXPIPE_MIRROR)")


def test_with_a_mirror_set_the_message_says_why_it_did_not_serve(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    url = dead_url()
    with pytest.raises(DownloadError) as err:
        download(config([url + "/"], spec_of(BODY)), tmp_path, mirror)
    assert str(err.value) == (f"{NAME}: 1 HTTP mirror(s) failed, first: {url}/{NAME}: "
                              "ConnectionRefusedError: [Errno 111] Connection refused; "
                              f"local mirror: not in local mirror {mirror / 'mnist'}")


def test_a_mirror_copy_with_another_checksum_names_the_default_key(tmp_path: Path) -> None:
    mirror = tmp_path / "shared data"  # a space in the path: the problem is still whole
    (mirror / "mnist").mkdir(parents=True)
    (mirror / "mnist" / NAME).write_bytes(b"a subset")
    spec = spec_of(BODY, sized=False)
    with pytest.raises(DownloadError) as err:
        download(config([dead_url() + "/"], spec), tmp_path, mirror)
    assert str(err.value) == (
        f"{NAME}: the local mirror's copy fails download.files.f.md5 (checksum mismatch: "
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
    good = mirror / "mnist" / NAME
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
        download(config([dead_url() + "/"], spec_of(b"x", name="link.gz")), tmp_path, mirror)


def test_the_mirror_comes_from_jaxpipe_mirror(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAXPIPE_MIRROR", raising=False)
    assert mirror_from_env() is None
    monkeypatch.setenv("JAXPIPE_MIRROR", "")
    assert mirror_from_env() is None
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JAXPIPE_MIRROR", "~/datasets")
    assert mirror_from_env() == tmp_path / "datasets"


def test_the_log_says_what_came_from_where_and_how_fast(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jaxpipe.data.http")
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        started = time.perf_counter()
        fetch_url(f"{base}/good/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
        slowest = len(BODY) / (time.perf_counter() - started) / 1e6  # MB/s, seen from outside
    said = re.fullmatch(rf"{NAME}: {len(BODY)} bytes from {base}/good/{NAME} \((\S+) MB/s\)",
                        caplog.messages[-1])
    assert said is not None and slowest - 0.05 <= float(said[1]) < 1e5


def test_a_file_absent_from_the_mirror_is_a_note_a_refused_one_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A mirror may hold only some data sets: absence is INFO; a copy it refuses is WARNING."""
    caplog.set_level(logging.INFO, logger="jaxpipe.data.sources")
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    (mirror / "mnist" / "link.gz").symlink_to(tmp_path)
    for name in (NAME, "link.gz"):
        with pytest.raises(DownloadError):
            download(config([dead_url() + "/"], spec_of(b"x", name=name)), tmp_path, mirror)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if "local mirror:" in r.msg] == [
        (logging.INFO, f"{NAME}: local mirror: not in local mirror {mirror / 'mnist'}"),
        (logging.WARNING, f"link.gz: local mirror: {mirror / 'mnist' / 'link.gz'} is not a "
                          f"regular file inside the mirror {mirror}")]


def test_outside_a_terminal_a_download_draws_no_progress_bar(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Logs of `dvc repro` in CI or a file stay free of progress-bar lines."""
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        fetch_url(f"{base}/good/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
    assert capsys.readouterr().err == ""



def test_in_a_terminal_a_download_draws_its_progress_bar(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """When a person watches, a bar counts the bytes as they arrive (bytes, scaled), under the
    file's name, and goes away when the file is done."""
    monkeypatch.setattr(http_module, "interactive", lambda: True)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(BODY)
    with http_server(tmp_path / "srv") as base:
        fetch_url(f"{base}/good/{NAME}", tmp_path / NAME, spec_of(BODY), timeout=5,
                  deadline=30, max_bytes=len(BODY))
    drawn = capsys.readouterr().err
    assert (tmp_path / NAME).read_bytes() == BODY
    assert drawn.startswith(f"\r{NAME}:") and f"/{len(BODY) / 1000:.0f}k [" in drawn
    assert "B/s]" in drawn and drawn.endswith("\r")


SECRET = "s3cr3t-T0KEN-value"


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
        try:
            for i in range(200):  # bounded: 40 s at most
                self.wfile.write(BODY[i:i + 1])
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("mode", ["trickle", "trickle-nolength"])
def test_a_trickling_server_cannot_outlast_the_deadline(tmp_path: Path, mode: str) -> None:
    """Each read gets a byte well within timeout_s, yet the download ends at deadline_s,
    whether or not the server announced a Content-Length."""
    _ends_at_the_deadline(_Hostile, f"/{mode}/{NAME}", spec_of(BODY, mode == "trickle"),
                          tmp_path)


def _ends_at_the_deadline(handler: type, path: str, spec: FileSpec, tmp_path: Path) -> None:
    """A download from ``handler``'s server, every read within its 2 s timeout: it ends at
    the 3 s deadline with that one line, and leaves no file."""
    with serving(handler, wait_for_handlers=False) as base:
        started = time.monotonic()
        with pytest.raises(DownloadError) as err:
            fetch_url(f"{base}{path}", tmp_path / NAME, spec, timeout=2, deadline=3,
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
            download(config(urls, spec_of(BODY)), tmp_path / "out", None, "params.yaml:d")
    text = str(err.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text and "HTTP 401 Unauthorized" in text
    assert "http://***@" in text and "token=***" in text  # the URL is still named
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert all(SECRET.encode() not in f.read_bytes() for f in files)


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
        try:
            for i in range(len(head)):  # bounded: 44 s at most
                self.wfile.write(head[i:i + 1])
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_a_server_slow_to_send_its_headers_cannot_outlast_the_deadline(tmp_path: Path) -> None:
    """Each header byte comes well within timeout_s; the deadline still ends the download,
    before the body's reads (which bound themselves) even start."""
    _ends_at_the_deadline(_SlowHeaders, f"/{NAME}", spec_of(BODY), tmp_path)
