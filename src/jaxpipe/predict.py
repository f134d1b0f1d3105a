"""Use a trained model on new data: raw tables or images in, one row of predictions each out.

The model file carries what its inputs need: the feature names and the scaler fitted at
prepare time (or the pixel scale), so raw rows are scaled exactly as in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jaxpipe.artifacts import Trained
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.data.idx import read_idx
from jaxpipe.data.tables import IMAGE_COLUMN, load_images

MAX_PNG_FILES = 100_000


def model_inputs(trained: Trained, data: pd.DataFrame | np.ndarray, source: str = "input"
                 ) -> np.ndarray:
    """Model-ready features: table columns matched by name and scaled, or pixels scaled."""
    scaler = trained.meta["scaler"]
    shape = getattr(trained.module, "IMAGE_SHAPE", None)
    if shape is not None:
        images = np.asarray(data)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1:] != tuple(shape):
            raise JaxpipeError(f"{source}: expected images of shape (n, {shape[0]}, {shape[1]}), "
                               f"got {images.shape}")
        x = (images.astype(np.float32) - scaler["mean"][0]) / scaler["scale"][0]
        return x[..., None]
    if not isinstance(data, pd.DataFrame):
        raise JaxpipeError(f"{source}: expected a table with columns {scaler['features']}")
    missing = [c for c in scaler["features"] if c not in data.columns]
    if missing:
        raise JaxpipeError(f"{source}: missing column '{missing[0]}' (the model needs "
                           f"{len(scaler['features'])}: {', '.join(scaler['features'])})")
    for column in scaler["features"]:
        values = pd.to_numeric(data[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(np.float64)))
        if bad.size:
            raise JaxpipeError(f"{source}: column '{column}', row {int(bad[0]) + 1}: "
                               f"{data[column].iloc[bad[0]]!r} is not a finite number")
    raw = data[scaler["features"]].to_numpy(np.float64)
    return ((raw - scaler["mean"]) / scaler["scale"]).astype(np.float32)


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


def read_input(path: Path) -> tuple[pd.DataFrame | np.ndarray, list[str]]:
    """Read a CSV/Parquet table, an IDX file, a Parquet image column or a PNG folder;
    also return a name per row (file names for PNG folders, else row numbers)."""
    if path.is_dir():
        files = sorted(path.glob("*.png"))[: MAX_PNG_FILES + 1]
        if not files or len(files) > MAX_PNG_FILES:
            raise JaxpipeError(f"{path}: expected 1 to {MAX_PNG_FILES} .png files")
        return np.stack([_read_png(f) for f in files]), [f.name for f in files]
    if not path.is_file():
        raise JaxpipeError(f"{path}: not found")
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
            raise JaxpipeError(f"{path}: cannot parse ({exc.__class__.__name__})") from None
    return data, [str(i) for i in range(1, len(data) + 1)]


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise JaxpipeError(f"{path}: not a readable PNG ({exc.__class__.__name__})") from None


def predict_file(trained: Trained, source: Path, out: Path) -> int:
    """Predict every row (or image) of ``source`` into the CSV ``out``; return the row count."""
    data, names = read_input(source)
    frame = predict(trained, data, str(source))
    frame.insert(0, "input", names)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return len(frame)
