"""Use a trained model on new data: raw tables or images in, one row of predictions each out.

The model file carries what its inputs are (``data.inputs.Inputs``): the feature names and
the scaling fitted at prepare time (or the pixel scale and image shape), so raw rows are
scaled exactly as in training, by the same code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jaxpipe.artifacts import Trained
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.data.idx import read_idx
from jaxpipe.data.tables import IMAGE_COLUMN, load_images
from jaxpipe.images import IMAGE_SUFFIXES, read_pngs, unlike_training

log = logging.getLogger(__name__)
MAX_PNG_FILES = 100_000
FLOAT_FORMAT = "%.6g"


def model_inputs(trained: Trained, data: pd.DataFrame | np.ndarray, source: str = "input"
                 ) -> np.ndarray:
    """Model-ready features: table columns matched by name and scaled, or pixels scaled."""
    inputs = trained.inputs
    shape, features = inputs.image_shape, list(inputs.features)
    if shape is not None:
        images = np.asarray(data)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1:] != tuple(shape):
            raise JaxpipeError(f"{source}: expected images of shape (n, {shape[0]}, {shape[1]}), "
                               f"got {images.shape}")
        return inputs.scale_images(images)
    if not isinstance(data, pd.DataFrame):
        raise JaxpipeError(f"{source}: expected a table with columns {features}")
    missing = [c for c in features if c not in data.columns]
    if missing:
        raise JaxpipeError(f"{source}: missing column '{missing[0]}' (the model needs "
                           f"{len(features)}: {', '.join(features)})")
    for column in features:
        values = pd.to_numeric(data[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(np.float64)))
        if bad.size:
            raise JaxpipeError(f"{source}: column '{column}', row {int(bad[0]) + 1}: "
                               f"{data[column].iloc[bad[0]]!r} is not a finite number")
    return inputs.scale_rows(data[features].to_numpy(np.float64))


def predict(trained: Trained, data: pd.DataFrame | np.ndarray, source: str = "input"
            ) -> pd.DataFrame:
    """One row per input: the predicted class and each class's probability, or the value."""
    out = np.asarray(trained.predict(model_inputs(trained, data, source)), np.float64)
    if trained.module.TASK == "regression":
        return pd.DataFrame({"predicted": out})
    probs = np.column_stack([1 - out, out]) if out.ndim == 1 else out
    frame = pd.DataFrame({"predicted": probs.argmax(axis=1)})
    for k in range(probs.shape[1]):
        frame[f"p_{k}"] = probs[:, k]
    return frame




def read_input(path: Path, image_shape: tuple[int, int] | None = None
               ) -> tuple[pd.DataFrame | np.ndarray, list[str]]:
    """Read a CSV/Parquet table, an IDX file, a Parquet image column, a PNG file or a
    folder of PNG files (each checked against ``image_shape`` when given); also return a
    name per row (file names for PNGs, else row numbers)."""
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files or len(files) > MAX_PNG_FILES:
            raise JaxpipeError(f"{path}: expected 1 to {MAX_PNG_FILES} .png files, found "
                               f"{len(files)}")
        return read_pngs(files, image_shape), [f.name for f in files]
    if not path.is_file():
        raise JaxpipeError(f"{path}: not found")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_pngs([path], image_shape), [path.name]
    if path.name.endswith((".gz", "-ubyte")) or path.suffix == ".idx":
        data = read_idx(path)
    elif path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise JaxpipeError(f"{path}: cannot read ({exc.__class__.__name__})") from None
        data = load_images(table) if IMAGE_COLUMN in table.column_names else table.to_pandas()
    else:
        try:
            data = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise JaxpipeError(f"{path}: cannot parse as CSV ({exc.__class__.__name__}); "
                               "inputs are CSV or Parquet tables, IDX files, PNG images or "
                               "folders of them") from None
    return data, [f"{path.name}:{i}" for i in range(1, len(data) + 1)]


def read_inputs(paths: list[Path], image_shape: tuple[int, int] | None = None
                ) -> tuple[pd.DataFrame | np.ndarray, list[str]]:
    """Several inputs as one: tables stacked by row, images by image (all of one kind),
    with each row's name (``read_input``)."""
    if len(paths) == 1:
        return read_input(paths[0], image_shape)
    parts = [(path, *read_input(path, image_shape)) for path in paths]
    tables = [p for p in parts if isinstance(p[1], pd.DataFrame)]
    if tables and len(tables) != len(parts):
        raise JaxpipeError(f"{tables[0][0]}: a table, while other inputs are images: give "
                           "one kind at a time")
    names = [name for _, _, got in parts for name in got]
    if tables:
        return pd.concat([p[1] for p in parts], ignore_index=True), names
    shapes = {np.asarray(p[1]).shape[1:] for p in parts}
    if len(shapes) > 1:
        raise JaxpipeError(f"{paths[0]}: images of {len(shapes)} sizes across the inputs "
                           f"({', '.join(sorted(str(s) for s in shapes))}): give one size")
    return np.concatenate([np.asarray(p[1]) for p in parts]), names


def predict_inputs(trained: Trained, source: Path | list[Path]) -> pd.DataFrame:
    """The predictions for every row (or image) of ``source`` (one input or several), each
    named in an ``input`` column first (``read_input``)."""
    sources = [source] if isinstance(source, Path) else list(source)
    shape = trained.inputs.image_shape
    data, names = read_inputs(sources, shape)
    where = str(sources[0]) if len(sources) == 1 else f"{sources[0]} (and {len(sources) - 1} more)"
    if shape is not None:
        warning = unlike_training(np.asarray(data), where)
        if warning:
            log.warning("%s", warning)
    frame = predict(trained, data, where)
    frame.insert(0, "input", names)
    return frame


def write_csv(frame: pd.DataFrame, out: Path | TextIO) -> None:
    """The predictions as CSV: into a file (whole or not at all) or an open text stream."""
    if isinstance(out, Path):
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
    else:
        frame.to_csv(out, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def as_table(frame: pd.DataFrame) -> str:
    """The predictions aligned for a terminal: probabilities to 4 decimals."""
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n"


def predict_file(trained: Trained, source: Path | list[Path], out: Path) -> int:
    """Predict every row (or image) of ``source`` into the CSV ``out``; the row count."""
    frame = predict_inputs(trained, source)
    write_csv(frame, out)
    return len(frame)
