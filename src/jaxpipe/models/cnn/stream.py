"""Training batches read from the prepared Parquet file, for a training set over the memory
budget: the same batches, in the same order, as the in-memory path for the same seed.

Each epoch's permutation is drawn as in memory. Its batches are read a window at a time:
the window's rows (this process's share of each global batch only) are gathered in one
sequential scan of the file, decoded a few thousand rows at a time, and the next window is
read by a background thread while the devices train on this one. At most two windows of
raw pixels are held, so memory is bounded by the window, whatever the file's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.tables import IMAGE_COLUMN, LABEL_COLUMN, decode_images

SCAN_ROWS = 4096  # rows decoded at a time while scanning the file


class ImageRows:
    """Rows of an image Parquet file (``data.tables.image_table``), read on demand; the
    labels (one byte a row) are read whole."""

    def __init__(self, path: Path, inputs: Inputs, limit: int | None = None) -> None:
        self.path = path
        try:
            self.file = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
            meta = self.file.schema_arrow.metadata or {}
            self.shape = tuple(json.loads(meta[b"image_shape"]))
            labels = pq.read_table(path, columns=[LABEL_COLUMN])[LABEL_COLUMN]
        except (FileNotFoundError, KeyError, pa.ArrowInvalid) as exc:
            raise JaxpipeError(f"{path}: cannot stream images ({exc.__class__.__name__})"
                               ) from None
        self.n = min(self.file.metadata.num_rows, limit or self.file.metadata.num_rows)
        self.labels = labels.to_numpy()[: self.n].astype(np.int32)
        self.inputs = inputs

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Raw images (uint8) of the sorted, distinct ``rows``, in one scan of the file."""
        out = np.empty((len(rows), *self.shape), np.uint8)
        filled, start = 0, 0
        for batch in self.file.iter_batches(SCAN_ROWS, columns=[IMAGE_COLUMN],
                                            use_threads=False):
            stop = start + batch.num_rows
            upto = int(np.searchsorted(rows, stop))
            if upto > filled:
                images = decode_images(batch.column(0), self.shape)
                out[filled:upto] = images[rows[filled:upto] - start]
                filled = upto
            start = stop
            if filled == len(rows):
                break
        if filled != len(rows):
            raise JaxpipeError(f"{self.path}: ends at row {start}, row {rows[filled]} asked")
        return out

    def scaled(self, images: np.ndarray) -> np.ndarray:
        """Model inputs, scaled as ``data.tables.load_split`` scales them."""
        return self.inputs.scale_images(images)


def window_batches(budget_bytes: int, rows_per_batch: int, row_bytes: int) -> int:
    """How many batches a window holds so that two windows of raw rows fit the budget."""
    return max(1, budget_bytes // (2 * rows_per_batch * row_bytes))


def batches(source: ImageRows, order: np.ndarray, share: slice, window: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This process's ``share`` of each global batch (a row of ``order``), as model-ready
    ``(x, y)``, ``window`` batches read at a time, one window read ahead."""
    def read(first: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.unique(order[first:first + window, share])
        return rows, source.read(rows)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxpipe-stream") as pool:
        pending = pool.submit(read, 0)
        for first in range(0, len(order), window):
            rows, images = pending.result()
            if first + window < len(order):
                pending = pool.submit(read, first + window)
            for batch in order[first:first + window, share]:
                yield source.scaled(images[np.searchsorted(rows, batch)]), source.labels[batch]
