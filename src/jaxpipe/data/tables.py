"""Parquet layouts of prepared data sets, and loading them back into NumPy.

A prepared data set is a folder: ``train.parquet``, ``test.parquet``, optionally
``val.parquet``, ``inputs.json`` (``data.inputs.Inputs``: the features, their scaling fitted
on train, the classes, the image shape) and ``manifest.json`` (the
SHA-256 of each of those files as prepare wrote them: train and evaluate refuse a folder
whose files were edited, replaced or added since). Tables hold numeric feature columns and a
target; images are one fixed-size binary column of raw pixels.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import write_json, write_parquet
from jaxpipe.data.inputs import FILE as INPUTS_FILE
from jaxpipe.data.inputs import IMAGE_COLUMN, LABEL_COLUMN, Inputs

if TYPE_CHECKING:  # pandas is slow to import, and train and evaluate never need it
    import pandas as pd

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """Model-ready arrays of one split: float32 features (scaled) and targets. The features
    may be given as a loader, called on first use of ``x``: image splits decode their pixels
    only if a model asks (a streamed CNN reads the labels alone)."""

    source: np.ndarray | Callable[[], np.ndarray]
    y: np.ndarray
    features: list[str]

    @functools.cached_property
    def x(self) -> np.ndarray:
        return self.source() if callable(self.source) else self.source


@dataclass(frozen=True)
class Dataset:
    """A prepared data set, loaded once: its model-ready splits and what its inputs are."""

    path: Path
    splits: dict[str, Split]
    inputs: Inputs

    def split(self, name: str) -> Split:
        """One split by name, with an error naming the folder if the data set lacks it."""
        if name not in self.splits:
            raise JaxpipeError(f"{self.path}: no '{name}' split (has {sorted(self.splits)})")
        return self.splits[name]


def table_from_frame(frame: pd.DataFrame, target: str, target_type: pa.DataType) -> pa.Table:
    """An explicit-schema table: float64 features, then the target column."""
    features = [c for c in frame.columns if c != target]
    schema = pa.schema([pa.field(c, pa.float64(), nullable=False) for c in features]
                       + [pa.field(target, target_type, nullable=False)])
    arrays = [pa.array(frame[c].to_numpy(np.float64)) for c in features]
    arrays.append(pa.array(frame[target].to_numpy(), type=target_type))
    return pa.Table.from_arrays(arrays, schema=schema)


def image_table(images: np.ndarray, labels: np.ndarray) -> pa.Table:
    """Images (n, h, w) uint8 as one fixed-size binary column (a raw pixel block per row).

    Lossless, and it reads back as one data buffer, with none of the per-value levels
    Parquet stores and decodes for a list column.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    size = int(np.prod(images.shape[1:]))
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), len(images),
                                                  [None, pa.py_buffer(images.tobytes())])
    schema = pa.schema([pa.field(IMAGE_COLUMN, pa.binary(size), nullable=False),
                        pa.field(LABEL_COLUMN, pa.uint8(), nullable=False)],
                       metadata={"image_shape": json.dumps(list(images.shape[1:]))})
    return pa.Table.from_arrays([column, pa.array(labels.astype(np.uint8))], schema=schema)


MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_dataset(out_dir: Path, splits: dict[str, pa.Table], inputs: Inputs) -> None:
    """Write every split's Parquet file, ``inputs.json`` and their manifest into ``out_dir``."""
    for name, table in splits.items():
        write_parquet(out_dir / f"{name}.parquet", table)
    inputs.write(out_dir / INPUTS_FILE)
    files = sorted(p.name for p in out_dir.iterdir() if p.name != MANIFEST)
    write_json(out_dir / MANIFEST, {"sha256": {name: _sha256(out_dir / name) for name in files}})


def verify_dataset(data_dir: Path) -> None:
    """Refuse, in one line, a prepared folder whose files are not those prepare wrote."""
    redo = f"re-run `dvc repro prepare@{data_dir.name}` (or `dvc checkout {data_dir}`)"
    try:
        listed = json.loads((data_dir / MANIFEST).read_text())["sha256"]
        assert isinstance(listed, dict)
    except FileNotFoundError:
        if not data_dir.is_dir():
            raise JaxpipeError(f"{data_dir}: not found (run the prepare stage first)") from None
        raise JaxpipeError(f"{data_dir / MANIFEST}: not found: not a folder prepare wrote; "
                           f"{redo}") from None
    except (ValueError, KeyError, TypeError, AssertionError, OSError) as exc:
        raise JaxpipeError(f"{data_dir / MANIFEST}: cannot read ({exc.__class__.__name__}); "
                           f"{redo}") from None
    for path in sorted(data_dir.iterdir()):
        if path.name != MANIFEST and path.name not in listed:
            raise JaxpipeError(f"{path}: not written by prepare (not in {MANIFEST}); {redo}")
    for name, expected in sorted(listed.items()):
        path = data_dir / name
        if not path.is_file() or path.is_symlink() and not path.resolve().is_file():
            raise JaxpipeError(f"{path}: missing (listed in {MANIFEST}); {redo}")
        if _sha256(path) != expected:
            raise JaxpipeError(f"{path}: changed since prepare wrote it (its SHA-256 is not "
                               f"the one in {MANIFEST}); {redo}")


def load_dataset(data_dir: str | Path) -> Dataset:
    """Read what the inputs are and every split a prepared folder holds (train, val, test)."""
    data_dir = Path(data_dir)
    verify_dataset(data_dir)
    inputs = Inputs.read(data_dir / INPUTS_FILE)
    splits = {name: load_split(data_dir / f"{name}.parquet", inputs)
              for name in SPLITS if (data_dir / f"{name}.parquet").exists()}
    if "train" not in splits:
        raise JaxpipeError(f"{data_dir / 'train.parquet'}: not found (run the prepare stage)")
    return Dataset(data_dir, splits, inputs)


def load_split(path: Path, inputs: Inputs) -> Split:
    """Load one split's Parquet file as float32 model inputs and targets."""
    try:
        if IMAGE_COLUMN in pq.read_schema(path).names:
            labels = pq.read_table(path, columns=[LABEL_COLUMN])[LABEL_COLUMN].to_numpy()
            return Split(lambda: _scaled_images(path, inputs), labels.astype(np.int32),
                         [IMAGE_COLUMN])
        table = pq.read_table(path)
    except (FileNotFoundError, pa.ArrowInvalid, KeyError) as exc:
        raise JaxpipeError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    target = inputs.target
    features = [c for c in table.column_names if c != target]
    if target not in table.column_names or not features:
        raise JaxpipeError(f"{path}: needs feature columns and the target '{target}'")
    try:
        x = np.column_stack([table[c].to_numpy(zero_copy_only=False) for c in features])
        y = table[target].to_numpy(zero_copy_only=False)
        x = x.astype(np.float32)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise JaxpipeError(f"{path}: columns are not all numbers ({exc.__class__.__name__})"
                           ) from None
    _check_finite(path, x, features, y.astype(np.float64) if y.dtype.kind in "iuf" else None,
                  target)
    return Split(x, y.astype(np.int32) if y.dtype.kind in "iu" else y.astype(np.float32), features)


def _check_finite(path: Path, x: np.ndarray, features: list[str], y: np.ndarray | None,
                  target: str) -> None:
    """Every feature and target cell a finite number, or one line naming column and row."""
    if y is None:
        raise JaxpipeError(f"{path}: column '{target}' is not numeric")
    bad_rows, bad_cols = np.nonzero(~np.isfinite(x))
    if bad_rows.size:
        raise JaxpipeError(f"{path}: column '{features[bad_cols[0]]}', row {bad_rows[0] + 1}: "
                           f"{x[bad_rows[0], bad_cols[0]]} is not finite")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise JaxpipeError(f"{path}: column '{target}', row {bad[0] + 1}: {y[bad[0]]} is not "
                           "finite")


def _scaled_images(path: Path, inputs: Inputs) -> np.ndarray:
    """An image split's pixels as model input: (n, h, w, 1) float32, scaled."""
    try:
        images = load_images(pq.read_table(path))
    except (FileNotFoundError, pa.ArrowInvalid, KeyError) as exc:
        raise JaxpipeError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return inputs.scale_images(images)


def load_images(table: pa.Table) -> np.ndarray:
    """The image column as a (n, h, w) uint8 array, straight from its data buffer."""
    shape = json.loads(table.schema.metadata[b"image_shape"])
    return decode_images(table[IMAGE_COLUMN].combine_chunks(), shape)


def decode_images(column: pa.FixedSizeBinaryArray, shape: list[int] | tuple[int, ...]
                  ) -> np.ndarray:
    """An image column (one chunk) as (n, h, w) uint8, a view of its data buffer."""
    size = column.type.byte_width
    flat = np.frombuffer(column.buffers()[1], dtype=np.uint8, count=len(column) * size,
                         offset=column.offset * size)
    return flat.reshape(len(column), *shape)
