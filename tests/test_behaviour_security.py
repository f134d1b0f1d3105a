"""Every check that guards a download, an archive or the mirror fails its test when removed:
symbolic links in a zip, entries that resolve onto the destination, an announced size over
the cap, a mirror entry that is not a regular file, IDX headers that lie."""

import gzip
import http.server
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from helpers import dead_url, http_server, md5, serving

from jaxpipe.core.errors import DownloadError, JaxpipeError
from jaxpipe.data.http import fetch_first, fetch_url
from jaxpipe.data.idx import read_idx
from jaxpipe.data.kaggle import safe_extract
from jaxpipe.data.sources import download
from jaxpipe.data.specs import DownloadConfig, FileSpec

NAME = "t10k-labels-idx1-ubyte.gz"


def zip_with(path: Path, entries: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if link is not None:  # a symbolic link entry, as `zip --symlinks` stores one
            info = zipfile.ZipInfo(link)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return path


def test_a_symbolic_link_entry_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "a.zip", {"ok.csv": b"x"}, link="train.csv")
    with pytest.raises(DownloadError, match=r"a\.zip: symbolic link entry 'train.csv' refused"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_regular_file_with_link_like_permissions_is_still_a_file(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("train.csv")
        info.external_attr = (0o100755 << 16)
        zf.writestr(info, "a\n1\n")
    assert [p.name for p in safe_extract(archive, tmp_path / "out")] == ["train.csv"]


@pytest.mark.parametrize("entry", ["sub/..", "./", "a/../.."])
def test_an_entry_that_resolves_onto_or_above_the_destination_is_refused(tmp_path: Path,
                                                                         entry: str) -> None:
    archive = zip_with(tmp_path / "a.zip", {"ok.csv": b"x", entry: b"y"})
    with pytest.raises(DownloadError, match="unsafe entry"):
        safe_extract(archive, tmp_path / "out")


def test_an_archive_exactly_at_its_limits_is_extracted_whole(tmp_path: Path) -> None:
    """The caps are upper bounds that include the limit itself (entries and bytes)."""
    archive = zip_with(tmp_path / "a.zip", {"sub/": b"", "sub/a.csv": b"12345",
                                            "b.csv": b"67890" * 3})
    files = safe_extract(archive, tmp_path / "out", max_entries=3, max_bytes=20)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["b.csv",
                                                                               "sub/a.csv"]
    assert (tmp_path / "out" / "b.csv").read_bytes() == b"67890" * 3
    with pytest.raises(DownloadError, match="declares more than 19 unpacked bytes"):
        safe_extract(archive, tmp_path / "again", max_entries=3, max_bytes=19)
    with pytest.raises(DownloadError, match="3 entries, more than 2, refused"):
        safe_extract(archive, tmp_path / "again", max_entries=2)


def test_a_large_entry_is_copied_whole_in_blocks(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    archive = zip_with(tmp_path / "a.zip", {"big.bin": data})
    safe_extract(archive, tmp_path / "out", max_bytes=len(data))
    assert (tmp_path / "out" / "big.bin").read_bytes() == data


def test_a_corrupt_member_is_one_download_error(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "a.zip", {"train.csv": b"a,b\n" * 50})
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"a,b\n")
    raw[at: at + 4] = b"XXXX"  # stored bytes changed: the CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        safe_extract(archive, tmp_path / "out")


class _Announcing(http.server.BaseHTTPRequestHandler):
    """Announces a huge Content-Length and sends a few bytes; counts the bytes it sent."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()
        self.wfile.write(b"x" * 100)

    def log_message(self, *args) -> None:
        pass


def announcing_server() -> AbstractContextManager[str]:
    return serving(_Announcing)


def test_an_announced_length_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    spec = FileSpec(name="f.bin", md5="0" * 32)
    with announcing_server() as base, pytest.raises(
            DownloadError, match=rf"^{base}/f\.bin: announces 1000000000000 bytes, more than "
                                 r"the 5000 allowed$"):
        fetch_url(f"{base}/f.bin", tmp_path / "f.bin", spec, timeout=5, deadline=30,
                  max_bytes=5000)
    assert list(tmp_path.iterdir()) == []


def test_the_declared_size_of_a_file_caps_its_download(fake_mirror: Path, tmp_path: Path) -> None:
    """A file whose size params know is cut off at that size, below max_bytes."""
    real = fake_mirror / "mnist" / NAME
    spec = FileSpec(name=NAME, md5=md5(real), size=real.stat().st_size - 1)
    with http_server(fake_mirror / "mnist") as base, pytest.raises(
            DownloadError, match=rf"announces {real.stat().st_size} bytes, more than the "
                                 rf"{real.stat().st_size - 1} allowed"):
        fetch_url(f"{base}/good/{NAME}", tmp_path / NAME, spec, timeout=5, deadline=30,
                  max_bytes=1 << 20)
    exact = FileSpec(name=NAME, md5=md5(real), size=real.stat().st_size)
    with http_server(fake_mirror / "mnist") as base:
        fetch_url(f"{base}/good/{NAME}", tmp_path / NAME, exact, timeout=5, deadline=30,
                  max_bytes=real.stat().st_size)
    assert md5(tmp_path / NAME) == exact.md5


def test_fetch_first_returns_the_base_that_served_and_every_failure(fake_mirror: Path,
                                                                    tmp_path: Path) -> None:
    real = fake_mirror / "mnist" / NAME
    spec = FileSpec(name=NAME, md5=md5(real))
    with http_server(fake_mirror / "mnist") as base:
        served, failures = fetch_first([f"{base}/missing", f"{base}/good///"], spec,
                                       tmp_path / NAME, timeout=5, deadline=30, max_bytes=1 << 20)
        assert served == f"{base}/good///" and failures == [
            f"{base}/missing/{NAME}: HTTP 404 Not Found"]
        none, failures = fetch_first([f"{base}/corrupt/"], spec, tmp_path / "x", timeout=5,
                                     deadline=30, max_bytes=1 << 20)
    assert none is None and len(failures) == 1 and "checksum mismatch" in failures[0]


def test_a_mirror_entry_that_is_not_a_regular_file_is_refused(fake_mirror: Path,
                                                             tmp_path: Path) -> None:
    real = fake_mirror / "mnist" / NAME
    spec = FileSpec(name=NAME, md5=md5(real))
    mirror = tmp_path / "mirror"
    (mirror / "mnist" / NAME).mkdir(parents=True)  # a folder where the file should be
    cfg = DownloadConfig(mirror_folder="mnist", files={"labels": spec}, urls=[dead_url() + "/"])
    with pytest.raises(DownloadError, match="is not a regular file inside the mirror"):
        download(cfg, tmp_path / "out", mirror=mirror)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def _idx_bytes(head: bytes, dims: list[int], payload: bytes) -> bytes:
    return head + np.asarray(dims, ">u4").tobytes() + payload


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x01\x08\x01", b"\x00\x00\x07\x01",
                                  b"\x00\x00"])
def test_every_byte_of_the_idx_magic_is_checked(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(_idx_bytes(head, [3] if len(head) == 4 else [], b"abc"))
    with pytest.raises(JaxpipeError, match=r"x\.idx: not an IDX file \(bad magic number\)"):
        read_idx(path)


def test_a_truncated_idx_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.idx.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x00\x00\x08\x03" + np.asarray([2, 2], ">u4").tobytes())  # 3 dims, 2 given
    with pytest.raises(JaxpipeError, match=r"x\.idx\.gz: truncated IDX header"):
        read_idx(path)


def test_an_idx_payload_exactly_at_the_cap_is_read_in_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(_idx_bytes(b"\x00\x00\x0b\x02", [2, 3], np.arange(6, dtype=">i2").tobytes()))
    array = read_idx(path, max_bytes=12)
    assert array.dtype == np.dtype("int16") and array.dtype.byteorder in "=<"
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(JaxpipeError, match=r"header says \(2, 3\), 12 bytes, more than the 11 "):
        read_idx(path, max_bytes=11)
