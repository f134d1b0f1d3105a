"""``jaxpipe.data.idx``: IDX parsing on small files the tests write, and every check of an
IDX header (magic number, dimensions, the size cap)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.idx import read_idx, write_idx


@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, images)


def test_labels_are_one_dimensional(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels.gz", np.array([7, 2, 1], dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), [7, 2, 1])


def test_bad_magic_names_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x1f\x8bnot idx at all")
    with pytest.raises(JaxpipeError, match=r"x\.gz: not an IDX file"):
        read_idx(path)


def test_header_count_must_match_payload(tmp_path: Path) -> None:
    path = tmp_path / "short.idx"
    write_idx(path, np.zeros((4, 2, 2), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(JaxpipeError, match=r"header says \(4, 2, 2\)"):
        read_idx(path)


def test_not_gzip_is_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.gz"
    path.write_bytes(b"plain bytes")
    with pytest.raises(JaxpipeError, match="fake.gz: cannot read"):
        read_idx(path)


def test_a_gzip_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A 2 GiB payload announced by a tiny file is refused before anything is inflated."""
    import gzip

    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    header = bytes([0, 0, 0x08, 3]) + np.asarray([2_000_000, 28, 28], ">u4").tobytes()
    with gzip.open(bomb, "wb") as handle:
        handle.write(header + bytes(1 << 20))  # 1 MiB of zeros: it packs to about 1 kB
    with pytest.raises(JaxpipeError, match=r"header says \(2000000, 28, 28\), 1568000000 bytes, "
                                           r"more than the 1073741824 allowed"):
        read_idx(bomb)
    with pytest.raises(JaxpipeError, match=r"file has 1048576"):
        read_idx(bomb, max_bytes=2_000_000_000)  # allowed, but the payload is short


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((2, 2), np.uint8))
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(JaxpipeError, match=r"header says \(2, 2\) \(4 payload bytes\), file has "
                                           r"more than 4"):
        read_idx(path)


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
