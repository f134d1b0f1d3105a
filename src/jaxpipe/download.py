"""Fetch dataset files from a local mirror or HTTP mirrors, verified by checksum.

Every file is written to a temp path, verified, then renamed: a failed or corrupt
download leaves nothing behind. Sources are tried in order and the log says which served.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from jaxpipe.cli import interactive
from jaxpipe.config import check
from jaxpipe.errors import DownloadError
from jaxpipe.fileio import atomic_path, md5sum

log = logging.getLogger(__name__)
MIRROR_ENV = "JAXPIPE_MIRROR"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FileSpec:
    """One expected file: its official name, MD5 and (optionally) size in bytes."""

    name: str
    md5: str
    size: int | None = None

    def __post_init__(self) -> None:
        check(len(self.md5) == 32 and all(c in "0123456789abcdef" for c in self.md5),
              "md5", f"{self.md5!r} is not a 32-digit lowercase hex MD5")
        check("/" not in self.name and self.name not in ("", ".", ".."), "name",
              f"{self.name!r} must be a plain file name")


@dataclass(frozen=True)
class DownloadConfig:
    """params.yaml ``download.<dataset>``: where a dataset comes from and what it must be."""

    mirror_folder: str
    files: dict[str, FileSpec]
    urls: list[str] = field(default_factory=list)
    kaggle_dataset: str | None = None
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        check(bool(self.files), "files", "at least one file is required")
        check(bool(self.urls) != bool(self.kaggle_dataset), "urls",
              "give either urls (HTTP mirrors) or kaggle_dataset, not both or neither")
        check(self.timeout_s > 0, "timeout_s", "must be positive")


def mirror_from_env() -> Path | None:
    """The local mirror directory named by JAXPIPE_MIRROR, if set."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def verify(path: Path, spec: FileSpec) -> str | None:
    """Return why ``path`` does not match ``spec`` (size, then MD5), or None if it does."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"expected {spec.size} bytes, got {size}"
    actual = md5sum(path)
    if actual != spec.md5:
        return f"checksum mismatch: expected MD5 {spec.md5}, got {actual}"
    return None


def copy_verified(src: Path, dest: Path, spec: FileSpec) -> None:
    """Copy ``src`` to ``dest`` atomically if it passes verification; else DownloadError."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        problem = verify(tmp, spec)
        if problem:
            raise DownloadError(f"{src}: {problem}")


def fetch_url(url: str, dest: Path, spec: FileSpec, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically, verifying length and checksum."""
    started = time.perf_counter()
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:  # noqa: S310
                expected = resp.headers.get("Content-Length")
                total = int(expected) if expected and expected.isdigit() else None
                received = _stream(resp, out, total, spec.name)
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
    elapsed = max(time.perf_counter() - started, 1e-9)
    log.info("%s: %d bytes from %s (%.1f MB/s)", spec.name, received, url,
             received / elapsed / 1e6)


def _stream(resp: http.client.HTTPResponse, out, total: int | None, name: str) -> int:
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False,
               disable=not interactive())
    received = 0
    with bar:
        while True:
            try:
                block = resp.read(_CHUNK)
            except http.client.IncompleteRead as exc:
                received += len(exc.partial)
                break
            if not block:
                break
            out.write(block)
            received += len(block)
            bar.update(len(block))
    return received


def fetch_from_mirror(mirror: Path | None, folder: str, spec: FileSpec, dest: Path) -> bool:
    """Try the local mirror first; True if it delivered a verified file."""
    if mirror is None:
        return False
    src = mirror / folder / spec.name
    if not src.is_file():
        log.info("%s: not in local mirror %s", spec.name, src.parent)
        return False
    try:
        copy_verified(src, dest, spec)
    except DownloadError as exc:
        log.warning("local mirror rejected: %s", exc)
        return False
    log.info("%s: served by local mirror %s", spec.name, src)
    return True


def download_http(cfg: DownloadConfig, out_dir: Path, mirror: Path | None) -> dict[str, str]:
    """Fetch every file of ``cfg`` into ``out_dir``; return file name -> source that served it."""
    served = {}
    for spec in cfg.files.values():
        dest = out_dir / spec.name
        if fetch_from_mirror(mirror, cfg.mirror_folder, spec, dest):
            served[spec.name] = str(mirror)
            continue
        failures = []
        for base in cfg.urls:
            url = base.rstrip("/") + "/" + spec.name
            try:
                fetch_url(url, dest, spec, cfg.timeout_s)
            except DownloadError as exc:
                log.warning("mirror failed: %s", exc)
                failures.append(str(exc))
                continue
            served[spec.name] = base
            break
        else:
            raise DownloadError(_no_source_message(spec.name, failures, mirror))
    return served


def _no_source_message(name: str, failures: list[str], mirror: Path | None) -> str:
    offline = failures and all(_looks_offline(f) for f in failures)
    hint = ""
    if offline and mirror is None:
        hint = f" The network looks unreachable: set {MIRROR_ENV} to a local mirror directory."
    elif mirror is not None:
        hint = f" (local mirror {mirror} had no valid copy)"
    return f"{name}: no source delivered a verified file: " + "; ".join(failures) + hint


def _looks_offline(failure: str) -> bool:
    words = ("gaierror", "Name or service", "unreachable", "timed out", "Timeout",
             "ConnectionRefused", "Temporary failure")
    return any(w in failure for w in words)
