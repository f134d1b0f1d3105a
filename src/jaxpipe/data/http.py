"""Fetch one file from HTTP mirrors, streamed to a temp file and verified before renaming."""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
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
    limits = _Limits(time.monotonic() + deadline, deadline,
                     min(max_bytes, spec.size) if spec.size else max_bytes)
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:  # noqa: S310
                expected = resp.headers.get("Content-Length")
                total = int(expected) if expected and expected.isdigit() else None
                if total is not None and total > limits.max_bytes:
                    raise DownloadError(f"{url}: announces {total} bytes, more than the "
                                        f"{limits.max_bytes} allowed")
                received = _stream(resp, out, total, spec.name, limits, url)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"{url}: {reason.__class__.__name__}: {reason}") from None
        if total is not None and received != total:
            raise DownloadError(f"{url}: truncated transfer, got {received} of {total} bytes")
        problem = verify(tmp, spec)
        if problem:
            raise DownloadError(f"{url}: {problem}")
    rate = received / max(time.perf_counter() - started, 1e-9) / 1e6
    log.info("%s: %d bytes from %s (%.1f MB/s)", spec.name, received, url, rate)


def fetch_first(urls: list[str], spec: FileSpec, dest: Path, timeout: float, deadline: float,
                max_bytes: int) -> tuple[str | None, list[str]]:
    """Try each base URL in order; return the one that served a verified file (or None)
    and the failures met on the way."""
    failures = []
    for base in urls:
        url = base.rstrip("/") + "/" + spec.name
        try:
            fetch_url(url, dest, spec, timeout, deadline, max_bytes)
        except DownloadError as exc:
            log.warning("mirror failed: %s", exc)
            failures.append(str(exc))
            continue
        return base, failures
    return None, failures


@dataclass(frozen=True)
class _Limits:
    ends: float  # time.monotonic() deadline
    seconds: float
    max_bytes: int


def _stream(resp: http.client.HTTPResponse, out, total: int | None, name: str,
            limits: _Limits, url: str) -> int:
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False,
               disable=not interactive())
    received = 0
    with bar:
        while True:
            try:
                block = resp.read(_CHUNK)
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
            if time.monotonic() > limits.ends:
                raise DownloadError(f"{url}: not finished after the {limits.seconds:.0f} s "
                                    "deadline (deadline_s)")
    return received
