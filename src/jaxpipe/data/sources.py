"""The download driver, written once: the local mirror first, then the data set's own source.

Every file is written to a temp path, verified, then renamed: a failed or corrupt download
leaves nothing behind. Sources are tried in order and the log says which served each file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from jaxpipe.core.errors import DownloadError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.data import http, kaggle
from jaxpipe.data.specs import DownloadConfig, FileSpec, verify

log = logging.getLogger(__name__)
MIRROR_ENV = "JAXPIPE_MIRROR"


class MirrorMismatch(DownloadError):
    """The local mirror holds the file, but not the one params.yaml describes."""


def expand_url(url: str, where: str) -> str:
    """``url`` with each ``${NAME}`` replaced by environment variable NAME: a signed URL's
    secret comes from the environment, so params.yaml and dvc.lock (which records the
    params) keep only its name. One line naming the variable if it is not set."""
    def value(found: re.Match) -> str:
        name = found[1]
        if name not in os.environ:
            raise DownloadError(f"{where}.urls: {http.redact(url)} needs ${{{name}}}, which "
                                "is not set in the environment")
        http.keep_secret(os.environ[name])
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, url)


def mirror_from_env() -> Path | None:
    """The local mirror directory named by JAXPIPE_MIRROR, if set."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def copy_verified(src: Path, dest: Path, spec: FileSpec) -> None:
    """Copy ``src`` to ``dest`` atomically if it passes verification; else DownloadError."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src.resolve(), tmp)
        problem = verify(tmp, spec)
        if problem:
            raise MirrorMismatch(f"{src}: {problem}")


def _locate(mirror: Path, folder: str, spec: FileSpec) -> tuple[Path, str | None]:
    """The mirror's copy of ``spec``, and why it cannot serve (absent, or not a regular
    file inside the mirror: a symlink out of it, or one to nothing, is refused), or None."""
    src = mirror / folder / spec.name
    if not src.exists() and not src.is_symlink():
        return src, f"not in local mirror {src.parent}"
    real = src.resolve()
    if not real.is_relative_to(mirror.resolve()) or not real.is_file():
        return src, f"{src} is not a regular file inside the mirror {mirror}"
    return src, None


def mirror_problem(mirror: Path, folder: str, spec: FileSpec) -> str | None:
    """Why the mirror cannot serve ``spec`` (``_locate``'s reasons, or its checksum fails),
    or None; reads the file, copies nothing."""
    src, problem = _locate(mirror, folder, spec)
    if problem is None and (mismatch := verify(src.resolve(), spec)):
        problem = f"{src}: {mismatch}"
    return problem


def fetch_from_mirror(mirror: Path | None, folder: str, spec: FileSpec, dest: Path
                      ) -> str | None:
    """Try the local mirror first; None if it delivered a verified file, else why not."""
    if mirror is None:
        return f"not set ({MIRROR_ENV})"
    src, problem = _locate(mirror, folder, spec)
    if problem is not None:
        level = logging.INFO if problem.startswith("not in") else logging.WARNING
        log.log(level, "%s: local mirror: %s", spec.name, problem)  # absent: a partial mirror
        return problem
    try:
        copy_verified(src, dest, spec)
    except DownloadError as exc:
        log.warning("local mirror rejected: %s", exc)
        return f"{exc.__class__.__name__}: {exc}"
    log.info("%s: served by local mirror %s", spec.name, src)
    return None


def download(cfg: DownloadConfig, out_dir: Path, mirror: Path | None,
             where: str = "download") -> dict[str, str]:
    """Fetch every file of ``cfg`` into ``out_dir``; return file name -> source that served it.

    ``where`` names the params section (``download.mnist``) in errors."""
    served: dict[str, str] = {}
    pending = {}
    for key, spec in cfg.files.items():
        refused = fetch_from_mirror(mirror, cfg.mirror_folder, spec, out_dir / spec.name)
        if refused is None:
            served[spec.name] = str(mirror)
        else:
            pending[key] = (spec, refused)
    if pending and cfg.kaggle_dataset:
        return served | _from_kaggle(cfg, [s for s, _ in pending.values()], out_dir, mirror)
    urls = [expand_url(url, where) for url in cfg.urls] if pending else []
    for key, (spec, refused) in pending.items():
        base, failures = http.fetch_first(urls, spec, out_dir / spec.name, cfg.timeout_s,
                                          cfg.deadline_s, int(cfg.max_mb * 1e6))
        if base is None:
            raise DownloadError(_no_source_message(spec.name, failures, mirror, refused,
                                                   f"{where}.files.{key}.md5"))
        served[spec.name] = base
    return served


def _from_kaggle(cfg: DownloadConfig, pending: list[FileSpec], out_dir: Path,
                 mirror: Path | None) -> dict[str, str]:
    try:
        return kaggle.download_kaggle(cfg, pending, out_dir)
    except kaggle.KaggleCLIError as exc:
        offline = not mirror and not isinstance(exc, kaggle.KaggleAuthError)
        hint = f" (offline? set {MIRROR_ENV} to a local mirror directory)" if offline else ""
        raise DownloadError(f"{exc}{hint}") from None


def _no_source_message(name: str, failures: list[str], mirror: Path | None, refused: str,
                       md5_key: str) -> str:
    """One short line: why each source failed, and the fix that applies."""
    if refused.startswith(MirrorMismatch.__name__):
        problem = refused.split(": ", 2)[2]
        return (f"{name}: the local mirror's copy fails {md5_key} ({problem}); "
                f"if the mirror is a deliberate subset or an internal one, adopt its checksums "
                f"with `jaxpipe-mirror {mirror}`")
    first = failures[0]  # never empty: DownloadConfig requires urls or kaggle_dataset
    if len(first) > 120:
        first = first[:117] + "..."
    tried = f"{len(failures)} HTTP mirror(s) failed, first: {first}"
    if mirror is None and all(_looks_offline(f) for f in failures):
        return f"{name}: {tried}. Offline? Set {MIRROR_ENV} to a local mirror directory."
    return f"{name}: {tried}; local mirror: {refused}"


def _looks_offline(failure: str) -> bool:
    """Whether ``fetch_url``'s failure line (``url: ErrorClass: reason``) suggests no network:
    a name that does not resolve (gaierror), a timeout (TimeoutError, a proxy's HTTP 504
    Gateway Timeout), a refused connection, an unreachable network."""
    words = ("gaierror", "Timeout", "ConnectionRefused", "unreachable")
    return any(w in failure for w in words)
