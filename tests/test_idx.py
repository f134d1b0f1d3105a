"""IDX parsing on small files the tests write."""

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
