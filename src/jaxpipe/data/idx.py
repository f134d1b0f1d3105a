"""Read and write IDX files (the MNIST format), gzip-compressed or not."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from jaxpipe.core.errors import JaxpipeError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


MAX_BYTES = 1 << 30  # 1 GiB of payload: far above MNIST's 47 MB, far below a bomb


def read_idx(path: str | Path, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Parse an IDX file into an array, streaming it (gzip or not): the header is checked
    first and the payload read only up to the size it declares, never past ``max_bytes``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
                raise JaxpipeError(f"{path}: not an IDX file (bad magic number)")
            dtype, ndim = np.dtype(_DTYPES[head[2]]), head[3]
            dims = handle.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise JaxpipeError(f"{path}: truncated IDX header")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
            size = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            if size == 0:
                raise JaxpipeError(f"{path}: header says {shape}: no data")
            if size > max_bytes:
                raise JaxpipeError(f"{path}: header says {shape}, {size} bytes, more than the "
                                   f"{max_bytes} allowed")
            payload = handle.read(size)
            extra = handle.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise JaxpipeError(f"{path}: cannot read ({exc})") from None
    if len(payload) != size or extra:
        have = f"{len(payload)}" if not extra else f"more than {size}"
        raise JaxpipeError(f"{path}: header says {shape} ({size} payload bytes), file has {have}")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8/int8 array as IDX (gzip if the name ends in .gz); used by tests and tools."""
    array = np.ascontiguousarray(array)
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())
