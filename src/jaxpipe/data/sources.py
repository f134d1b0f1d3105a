"""The download driver, written once: the local mirror first, then the data set's own source.

Every file is written to a temp path, verified, then renamed: a failed or corrupt download
leaves nothing behind. Sources are tried in order and the log says which served each file.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from jaxpipe.core.errors import DownloadError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.data import http, kaggle
from jaxpipe.data.specs import DownloadConfig, FileSpec, verify

log = logging.getLogger(__name__)
MIRROR_ENV = "JAXPIPE_MIRROR"


def mirror_from_env() -> Path | None:
    """The local mirror directory named by JAXPIPE_MIRROR, if set."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def copy_verified(src: Path, dest: Path, spec: FileSpec) -> None:
    """Copy ``src`` to ``dest`` atomically if it passes verification; else DownloadError."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        problem = verify(tmp, spec)
        if problem:
            raise DownloadError(f"{src}: {problem}")


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


def download(cfg: DownloadConfig, out_dir: Path, mirror: Path | None) -> dict[str, str]:
    """Fetch every file of ``cfg`` into ``out_dir``; return file name -> source that served it."""
    served: dict[str, str] = {}
    pending = []
    for spec in cfg.files.values():
        if fetch_from_mirror(mirror, cfg.mirror_folder, spec, out_dir / spec.name):
            served[spec.name] = str(mirror)
        else:
            pending.append(spec)
    if pending and cfg.kaggle_dataset:
        return served | _from_kaggle(cfg, pending, out_dir, mirror)
    for spec in pending:
        base, failures = http.fetch_first(cfg.urls, spec, out_dir / spec.name, cfg.timeout_s)
        if base is None:
            raise DownloadError(_no_source_message(spec.name, failures, mirror))
        served[spec.name] = base
    return served


def _from_kaggle(cfg: DownloadConfig, pending: list[FileSpec], out_dir: Path,
                 mirror: Path | None) -> dict[str, str]:
    try:
        return kaggle.download_kaggle(cfg, pending, out_dir)
    except kaggle.KaggleCLIError as exc:
        hint = "" if mirror else f" (offline? set {MIRROR_ENV} to a local mirror directory)"
        raise DownloadError(f"{exc}{hint}") from None


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
