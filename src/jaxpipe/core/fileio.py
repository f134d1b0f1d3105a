"""Atomic, deterministic writers: a failed write never leaves a partial file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxpipe.core.environment import confirm_before_output
from jaxpipe.core.errors import JaxpipeError

if TYPE_CHECKING:
    import pyarrow as pa

_UMASK = os.umask(0)
os.umask(_UMASK)
_interrupted = False  # set by a stage's Ctrl-C/SIGTERM handler (jaxpipe.core.console)


def mark_interrupted() -> None:
    """From now on no output is renamed into place: an interrupt that surfaced where Python
    swallows exceptions (a garbage-collector callback) still stops every write."""
    global _interrupted
    _interrupted = True


def was_interrupted() -> bool:
    """Whether a stage's interrupt handler ran in this process."""
    return _interrupted


def _before_rename() -> None:
    if _interrupted:
        raise KeyboardInterrupt
    confirm_before_output()


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO}


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            raise JaxpipeError(f"{dest}: cannot write ({exc.strerror}); nothing was replaced"
                               ) from None
        _before_rename()
        tmp_path.chmod(0o666 & ~_UMASK)
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def sweep_stale(dest: Path) -> None:
    """Remove temp files or folders a killed run left beside ``dest`` (``.<name>.*.tmp``)."""
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(True)


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _swap_all(staged: list[Path], targets: list[Path]) -> None:
    """Rename each staged output onto its target, in two passes: every existing target is
    first renamed aside (to a temp name that the next run sweeps), then every staged output
    is renamed in; the old outputs are removed last. So a kill at any moment (SIGKILL, which
    no handler sees) leaves part of the old set or part of the new one in place, never old
    and new outputs side by side; a rename that fails puts the old set back."""
    moved: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for dest in targets:
            if dest.exists() or dest.is_symlink():
                old = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"
                os.replace(dest, old)
                moved.append((dest, old))
        for tmp, dest in zip(staged, targets, strict=True):
            os.replace(tmp, dest)
            placed.append(dest)
    except BaseException:
        for dest in placed:
            _remove(dest)
        for dest, old in moved:
            os.replace(old, dest)
        raise
    for _, old in moved:
        _remove(old)


def check_inside(dest: Path) -> None:
    """Refuse an output given by a relative path whose folder is (or passes through) a link
    out of the working directory: a stage writes into the repository, never through a link
    to elsewhere (DVC would then hash and cache another place's files)."""
    if dest.is_absolute():
        return  # an explicit place: the caller's choice
    here = Path.cwd().resolve()
    target = (Path.cwd() / dest).parent.resolve()
    if not target.is_relative_to(here):
        link = next((p for p in [*reversed(dest.parents)] if (Path.cwd() / p).is_symlink()),
                    dest.parent)
        raise JaxpipeError(f"{dest}: {link} is a link to {target}, outside the repository; "
                           "outputs must live in it: refused")


@contextlib.contextmanager
def output_set(*dests: str | Path) -> Iterator[list[Path]]:
    """All or nothing for a stage's outputs: yield a staging path beside each of ``dests``
    (write a file or a folder there); only if the block succeeds are they all renamed onto
    ``dests`` (``_swap_all``: a kill midway never leaves old and new outputs side by side).
    A failure leaves the old set untouched, and the stale temps of a killed run are swept
    first."""
    targets = [Path(d) for d in dests]
    staged = []
    for dest in targets:
        check_inside(dest)
    for dest in targets:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(dest)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        os.unlink(tmp)  # a name only: the writer makes a file or a folder there
        staged.append(Path(tmp))
    try:
        try:
            yield staged
        except (JaxpipeError, OSError) as exc:  # name the outputs, not their staging paths
            if isinstance(exc, OSError) and exc.errno not in _DISK_ERRORS:
                raise
            text = str(exc) if isinstance(exc, JaxpipeError) else (
                f"{exc.filename}: cannot write ({exc.strerror}); nothing was replaced")
            for tmp, dest in zip(staged, targets, strict=True):
                text = text.replace(str(tmp), str(dest))
            raise type(exc)(text) if isinstance(exc, JaxpipeError) else JaxpipeError(text
                                                                                      ) from None
        for tmp, dest in zip(staged, targets, strict=True):
            if not tmp.exists():
                raise FileNotFoundError(f"{dest}: the stage wrote no output")
        _before_rename()
        _swap_all(staged, targets)
    finally:
        for tmp in staged:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(True)


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside ``dest``; swap it in for ``dest`` only on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        _before_rename()
        tmp.chmod(0o777 & ~_UMASK)
        _swap_all([tmp], [dest])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | Path, table: pa.Table) -> None:
    """Write a Parquet file deterministically (same table, same bytes), atomically."""
    import pyarrow.parquet as pq  # here: the writers of other files need no pyarrow

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=False, write_statistics=True)


def write_csv_rows(path: str | Path, header: list[str], rows: list[list[Any]]) -> None:
    """Write a small CSV (plot data) atomically; floats in repr form so they round-trip."""
    lines = [",".join(header)] + [",".join(_cell(v) for v in row) for row in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _cell(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()  # noqa: S324 - a checksum, not security
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
