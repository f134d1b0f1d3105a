"""Fetch one file from HTTP mirrors, streamed to a temp file and verified before renaming."""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from tqdm import tqdm

from jaxpipe.core.console import interactive
from jaxpipe.core.errors import DownloadError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.data.specs import FileSpec, verify

log = logging.getLogger(__name__)
_CHUNK = 1 << 16


def fetch_url(url: str, dest: Path, spec: FileSpec, timeout: float, deadline: float,
              max_bytes: int) -> None:
    """Download ``url`` to ``dest`` atomically, verifying length and checksum; bounded by a
    per-read ``timeout``, an overall ``deadline`` (s) and ``max_bytes``."""
    started = time.perf_counter()
    shown = redact(url, url)  # every line names the URL without its credentials
    limits = _Limits(time.monotonic() + deadline, deadline,
                     min(max_bytes, spec.size) if spec.size else max_bytes)
    late = _late(shown, deadline)
    with atomic_path(dest) as tmp, _Watchdog(limits.ends) as watchdog:
        try:
            with watchdog.opener.open(url, timeout=_read_timeout(timeout, limits)) as resp, \
                    open(tmp, "wb") as out:
                expected = resp.headers.get("Content-Length")
                total = int(expected) if expected and expected.isdigit() else None
                if total is not None and total > limits.max_bytes:
                    raise DownloadError(f"{shown}: announces {total} bytes, more than the "
                                        f"{limits.max_bytes} allowed")
                received = _stream(resp, out, total, spec.name, limits, shown, timeout)
        except urllib.error.HTTPError as exc:  # the standard phrase: never the server's words
            raise DownloadError(f"{shown}: HTTP {exc.code} {_phrase(exc.code)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if watchdog.fired:  # the deadline cut the connection (headers still coming)
                raise DownloadError(late) from None
            reason = getattr(exc, "reason", exc)
            text = redact(str(reason), url)
            raise DownloadError(f"{shown}: {reason.__class__.__name__}: {text}") from None
        if watchdog.fired:  # the cut may read as the body's end: never take it for one
            raise DownloadError(late)
        if total is not None and received != total:
            raise DownloadError(f"{shown}: truncated transfer, got {received} of {total} bytes")
        problem = verify(tmp, spec)
        if problem:
            raise DownloadError(f"{shown}: {problem}")
    rate = received / max(time.perf_counter() - started, 1e-9) / 1e6
    log.info("%s: %d bytes from %s (%.1f MB/s)", spec.name, received, shown, rate)


_SECRETS: set[str] = set()  # values a URL took from the environment (``${NAME}``)


def keep_secret(value: str) -> None:
    """Mask ``value`` (4 characters or more) in every line ``redact`` returns from now on."""
    if len(value) >= 4:
        _SECRETS.add(value)


SECRET_QUERY = re.compile(r"(?i)([?&](?:[^=&]*(?:token|key|sig|signature|secret|password|"
                          r"auth|credential)[^=&]*)=)[^&#]*")


def redact(text: str, url: str | None = None) -> str:
    """``text`` without credentials: a URL's user and password, secret-looking query values
    (``?token=...``, ``X-Amz-Signature=...``), anything after ``Bearer``/``Basic``, and
    every value a URL took from the environment, wherever it stands."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    if url:
        parts = urllib.parse.urlsplit(url)
        for secret in (parts.password, parts.username):
            if secret:
                text = text.replace(secret, "***")
    text = re.sub(r"(?i)(\w+://)[^/@\s]*@", r"\1***@", text)
    text = SECRET_QUERY.sub(r"\1***", text)
    return re.sub(r"(?i)\b(bearer|basic|token)\s+[^\s,;]+", r"\1 ***", text)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "(a status HTTP does not define)"


def _read_timeout(timeout: float, limits: _Limits) -> float:
    """One read's limit: the per-read timeout, or what is left of the deadline if less."""
    return max(min(timeout, limits.ends - time.monotonic()), 0.001)


def fetch_first(urls: list[str], spec: FileSpec, dest: Path, timeout: float, deadline: float,
                max_bytes: int) -> tuple[str | None, list[str]]:
    """Try each base URL in order; return the one that served a verified file (or None)
    and the failures met on the way."""
    failures = []
    for base in urls:
        url = file_url(base, spec.name)
        try:
            fetch_url(url, dest, spec, timeout, deadline, max_bytes)
        except DownloadError as exc:
            log.warning("mirror failed: %s", exc)
            failures.append(str(exc))
            continue
        return redact(base, base), failures  # a label for logs: no credentials
    return None, failures


def file_url(base: str, name: str) -> str:
    """``name`` appended to the path of ``base``; a query string (a signed URL's
    ``?token=...``) stays at the end, where a server reads it."""
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name))


def _late(url: str, seconds: float) -> str:
    return f"{url}: not finished after the {seconds:.0f} s deadline (deadline_s)"


class _Watchdog:
    """Cuts the connection when the deadline passes, whatever phase it is in: a server that
    sends its status line and headers a byte at a time, each within ``timeout_s``, is held
    to ``deadline_s`` too (``_stream`` bounds the body's reads itself)."""

    def __init__(self, ends: float) -> None:
        self.ends, self.fired, self.sock = ends, False, None
        watch = self

        def watched(base: type[http.client.HTTPConnection]) -> type:
            class Connection(base):  # type: ignore[valid-type, misc]
                def connect(self) -> None:
                    super().connect()
                    watch.sock = self.sock

            return Connection

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(watched(http.client.HTTPSConnection), req,
                                    context=self._context)

        self.opener = urllib.request.build_opener(HTTP, HTTPS)
        self._timer = threading.Timer(max(ends - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


@dataclass(frozen=True)
class _Limits:
    ends: float  # time.monotonic() deadline
    seconds: float
    max_bytes: int


def _stream(resp: http.client.HTTPResponse, out, total: int | None, name: str,
            limits: _Limits, url: str, timeout: float) -> int:
    """The body into ``out``; each read returns what one receive got (``read1``) and waits
    at most the per-read timeout or what is left of the deadline, so a server that trickles
    bytes cannot outlast ``deadline_s``."""
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False,
               disable=not interactive())
    sock = _socket_of(resp)
    received = 0
    with bar:
        while True:
            if time.monotonic() > limits.ends:
                raise DownloadError(_late(url, limits.seconds))
            if sock is not None:
                sock.settimeout(_read_timeout(timeout, limits))
            try:
                block = resp.read1(_CHUNK)
            except TimeoutError:
                if time.monotonic() >= limits.ends - 0.01:
                    raise DownloadError(_late(url, limits.seconds)) from None
                raise
            except http.client.IncompleteRead as exc:  # a chunked body cut short
                raise DownloadError(f"{url}: truncated transfer, the connection closed after "
                                    f"{received + len(exc.partial)} bytes") from None
            if not block:
                break
            out.write(block)
            received += len(block)
            bar.update(len(block))
            if received > limits.max_bytes:
                raise DownloadError(f"{url}: more than {limits.max_bytes} bytes, refused")
    return received


def _socket_of(resp: http.client.HTTPResponse) -> socket.socket | None:
    """The response's socket, to bound each read by the time left (None if not reachable)."""
    raw = getattr(resp.fp, "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
