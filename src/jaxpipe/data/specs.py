"""What a raw data set must be: its files with checksums, where they come from, verification."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from jaxpipe.core.config import check
from jaxpipe.core.fileio import md5sum


@dataclass(frozen=True)
class FileSpec:
    """One expected file: its official name, MD5 and (optionally) size in bytes."""

    name: str
    md5: str
    size: int | None = None

    def __post_init__(self) -> None:
        check(len(self.md5) == 32 and all(c in "0123456789abcdef" for c in self.md5),
              "md5", f"{self.md5!r} is not a 32-digit lowercase hex MD5")
        check("/" not in self.name and "\\" not in self.name
              and self.name not in ("", ".", ".."), "name",
              f"{self.name!r} must be a plain file name")


@dataclass(frozen=True)
class DownloadConfig:
    """params.yaml ``download.<dataset>``: where a dataset comes from and what it must be."""

    mirror_folder: str
    files: dict[str, FileSpec]
    urls: list[str] = field(default_factory=list)
    kaggle_dataset: str | None = None
    timeout_s: float = 60.0  # per read: a silent server fails after this long
    deadline_s: float = 900.0  # per file: a server that trickles bytes fails after this long
    max_mb: float = 200.0  # per file: a response that grows past this is cut off and refused

    def __post_init__(self) -> None:
        folder = PurePosixPath(self.mirror_folder.replace("\\", "/"))
        check(bool(self.mirror_folder.strip()) and not folder.is_absolute()
              and ".." not in folder.parts and ":" not in self.mirror_folder,
              "mirror_folder", f"{self.mirror_folder!r} must be a folder inside the mirror "
              "(a relative path without '..')")
        check(bool(self.files), "files", "at least one file is required")
        check(bool(self.urls) != bool(self.kaggle_dataset), "urls",
              "give either urls (HTTP mirrors) or kaggle_dataset, not both or neither")
        check(self.timeout_s > 0, "timeout_s", "must be positive")
        check(self.deadline_s >= self.timeout_s, "deadline_s", "must be at least timeout_s")
        check(0 < self.max_mb <= 100_000, "max_mb", "must be in (0, 100000]")


def verify(path: Path, spec: FileSpec) -> str | None:
    """Return why ``path`` does not match ``spec`` (size, then MD5), or None if it does."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"expected {spec.size} bytes, got {size}"
    actual = md5sum(path)
    if actual != spec.md5:
        return f"checksum mismatch: expected MD5 {spec.md5}, got {actual}"
    return None
