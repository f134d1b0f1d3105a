"""The Kaggle source: credential discovery, a thin CLI call, safe extraction, verification."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from jaxpipe.core.errors import DownloadError, JaxpipeError
from jaxpipe.data.http import redact
from jaxpipe.data.specs import DownloadConfig, FileSpec, verify

log = logging.getLogger(__name__)


class KaggleCLIError(DownloadError):
    """The kaggle CLI could not deliver the archive (offline, no such dataset, refused)."""


class KaggleAuthError(KaggleCLIError):
    """Kaggle wants credentials: none were found, or it refused those given."""


def credential_source(env: Mapping[str, str], home: Path) -> str:
    """Name the credentials the kaggle package will use, in its own order, or 'anonymous'."""
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):  # kagglesdk reads these in ~/.kaggle
        token = home / ".kaggle" / name
        if token.is_file() and token.read_text().strip():
            return str(token)
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    config = Path(env.get("KAGGLE_CONFIG_DIR") or home / ".kaggle") / "kaggle.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except json.JSONDecodeError:
            raise JaxpipeError(f"{config}: not valid JSON") from None
        missing = [k for k in ("username", "key") if not isinstance(data, dict) or k not in data]
        if missing:
            raise JaxpipeError(f"{config}: missing key '{missing[0]}'")
        return str(config)
    return "anonymous"


MAX_ENTRIES = 1000
MAX_BYTES = 1 << 30  # 1 GiB unpacked, in all; and the archive the CLI downloads
MAX_NAME_BYTES = 255  # a file name (one path part) on ext4, XFS, APFS, NTFS


def safe_extract(archive: Path, dest: Path, max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES) -> list[Path]:
    """Extract a zip into ``dest``, refusing entries that would land outside it, symbolic
    links, more than ``max_entries`` entries, and more than ``max_bytes`` unpacked. The
    declared sizes are what is checked: zipfile never yields more bytes than an entry
    declares (an entry that holds more fails its CRC check: not a readable zip archive)."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_entries(archive, dest, root, infos, max_entries, max_bytes)
            files = []
            for info in infos:
                target = root / info.filename
                try:
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                except OSError as exc:  # a full disk, a name this file system refuses
                    raise DownloadError(f"{archive}: entry {_shown(info.filename)}: cannot "
                                        f"extract into {dest} ({exc.strerror or exc})") from None
                files.append(target)
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: not a readable zip archive ({exc})") from None


def _shown(name: str, limit: int = 80) -> str:
    """An entry name for an error line: quoted, and cut to ``limit`` characters."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def _check_entries(archive: Path, dest: Path, root: Path, infos: list[zipfile.ZipInfo],
                   max_entries: int, max_bytes: int) -> None:
    if len(infos) > max_entries:
        raise DownloadError(f"{archive}: {len(infos)} entries, more than {max_entries}, refused")
    if sum(i.file_size for i in infos) > max_bytes:
        raise DownloadError(f"{archive}: declares more than {max_bytes} unpacked bytes, refused")
    files: dict[PurePosixPath, str] = {}
    folders: dict[PurePosixPath, str] = {}
    for info in infos:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        shown = _shown(info.filename)
        too_long = [p for p in name.parts if len(p.encode()) > MAX_NAME_BYTES]
        if too_long:
            raise DownloadError(f"{archive}: entry {shown}: a name part of "
                                f"{len(too_long[0].encode())} bytes (at most {MAX_NAME_BYTES})")
        target = (root / name).resolve()
        if name.is_absolute() or not target.is_relative_to(root) or target == root:
            raise DownloadError(f"{archive}: unsafe entry {shown} escapes {dest}")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DownloadError(f"{archive}: symbolic link entry {shown} refused")
        key = PurePosixPath(*target.relative_to(root).parts)
        if key in files and not info.is_dir():
            raise DownloadError(f"{archive}: entry {shown} appears twice")
        (folders if info.is_dir() else files)[key] = info.filename
        for parent in key.parents:
            folders.setdefault(parent, info.filename)
    clash = sorted(set(files) & set(folders))
    if clash:
        raise DownloadError(f"{archive}: entry {_shown(files[clash[0]])} is both a file and "
                            "a folder")


AUTH_REFUSED = "Authentication required to call the Kaggle API"  # its 401 help's first line


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_kaggle_cli(dataset: str, dest: Path, timeout: float, source: str = "anonymous",
                   max_bytes: int = MAX_BYTES) -> Path:
    """Download ``dataset``'s zip with the kaggle CLI (anonymous access needs the CLI),
    stopped once ``timeout`` seconds pass or ``dest`` holds more than ``max_bytes``."""
    cmd = [sys.executable, "-m", "kaggle", "datasets", "download", dataset, "-p", str(dest), "-q"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)  # noqa: S603
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise KaggleCLIError(f"kaggle {dataset}: timed out after {timeout:.0f} s")
                if _size(dest) > max_bytes:
                    raise KaggleCLIError(f"kaggle {dataset}: the download passed {max_bytes} "
                                         "bytes, refused")
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    zips = sorted(dest.glob("*.zip"))
    if AUTH_REFUSED in stdout + stderr:
        who = ("no credentials were found (docs/add-a-dataset.md: Kaggle credentials)"
               if source == "anonymous" else f"Kaggle refused the credentials from {source}")
        raise KaggleAuthError(f"kaggle {dataset}: {who}; or serve the files from a mirror "
                              "(JAXPIPE_MIRROR)")
    if proc.returncode != 0 or not zips:
        lines = (stderr or stdout).strip().splitlines()
        reason = redact(lines[-1]) if lines else f"exit code {proc.returncode}"
        raise KaggleCLIError(f"kaggle {dataset}: {reason}")
    if zips[0].stat().st_size > max_bytes:
        raise KaggleCLIError(f"kaggle {dataset}: the download passed {max_bytes} bytes, refused")
    return zips[0]


def download_kaggle(cfg: DownloadConfig, pending: list[FileSpec], out_dir: Path
                   ) -> dict[str, str]:
    """Fetch ``pending`` files of a Kaggle dataset into ``out_dir``, verified."""
    assert cfg.kaggle_dataset is not None
    served = {}
    source = credential_source(os.environ, Path.home())
    log.info("kaggle %s: credentials: %s", cfg.kaggle_dataset, source)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        archive = run_kaggle_cli(cfg.kaggle_dataset, Path(tmp), cfg.timeout_s, source)
        extracted = Path(tmp) / "extracted"
        safe_extract(archive, extracted)
        for spec in pending:
            found = extracted / spec.name
            if not found.is_file():
                raise DownloadError(f"kaggle {cfg.kaggle_dataset}: archive has no {spec.name}")
            problem = verify(found, spec)
            if problem:
                raise DownloadError(f"kaggle {cfg.kaggle_dataset}: {spec.name}: {problem}")
            os.replace(found, out_dir / spec.name)
            served[spec.name] = f"kaggle:{cfg.kaggle_dataset}"
            log.info("%s: served by kaggle %s", spec.name, cfg.kaggle_dataset)
    return served
