"""The Kaggle source: credential discovery, a thin CLI call, safe extraction, verification."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from jaxpipe.core.errors import DownloadError, JaxpipeError
from jaxpipe.data.specs import DownloadConfig, FileSpec, verify

log = logging.getLogger(__name__)


class KaggleCLIError(DownloadError):
    """The kaggle CLI could not deliver the archive (offline, no such dataset, refused)."""


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
MAX_BYTES = 1 << 30  # 1 GiB unpacked, in all


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
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                files.append(target)
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: not a readable zip archive ({exc})") from None


def _check_entries(archive: Path, dest: Path, root: Path, infos: list[zipfile.ZipInfo],
                   max_entries: int, max_bytes: int) -> None:
    if len(infos) > max_entries:
        raise DownloadError(f"{archive}: {len(infos)} entries, more than {max_entries}, refused")
    if sum(i.file_size for i in infos) > max_bytes:
        raise DownloadError(f"{archive}: declares more than {max_bytes} unpacked bytes, refused")
    for info in infos:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        target = (root / name).resolve()
        if name.is_absolute() or not target.is_relative_to(root) or target == root:
            raise DownloadError(f"{archive}: unsafe entry {info.filename!r} escapes {dest}")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DownloadError(f"{archive}: symbolic link entry {info.filename!r} refused")


def run_kaggle_cli(dataset: str, dest: Path, timeout: float) -> Path:
    """Download ``dataset``'s zip with the kaggle CLI (anonymous access needs the CLI)."""
    cmd = [sys.executable, "-m", "kaggle", "datasets", "download", dataset, "-p", str(dest), "-q"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise KaggleCLIError(f"kaggle {dataset}: timed out after {timeout:.0f} s") from None
    zips = sorted(dest.glob("*.zip"))
    if proc.returncode != 0 or not zips:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise KaggleCLIError(f"kaggle {dataset}: {reason}")
    return zips[0]


def download_kaggle(cfg: DownloadConfig, pending: list[FileSpec], out_dir: Path
                   ) -> dict[str, str]:
    """Fetch ``pending`` files of a Kaggle dataset into ``out_dir``, verified."""
    assert cfg.kaggle_dataset is not None
    served = {}
    source = credential_source(os.environ, Path.home())
    log.info("kaggle %s: credentials: %s", cfg.kaggle_dataset, source)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        archive = run_kaggle_cli(cfg.kaggle_dataset, Path(tmp), cfg.timeout_s)
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
