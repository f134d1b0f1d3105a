"""Reading raw inputs (a CSV or Parquet table, the MNIST IDX files) and checking them.

Every error is one line naming the file; the schema checks are in ``data.schema``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.idx import read_idx
from jaxpipe.data.schema import SchemaSpec, validate
from jaxpipe.data.tables import LABEL_COLUMN

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_source(path: Path) -> pd.DataFrame:
    """Read a raw table (CSV or Parquet), with an error naming the file; a CSV header that
    names a column twice is refused (pandas would rename the second silently)."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        repeated = [c for i, c in enumerate(header) if c in header[:i]]
        if repeated:
            raise JaxpipeError(f"{path}: column '{repeated[0]}' appears more than once")
        return pd.read_csv(path)
    except FileNotFoundError:
        raise JaxpipeError(f"{path}: not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowInvalid,
            UnicodeDecodeError) as exc:
        raise JaxpipeError(f"{path}: cannot parse ({exc.__class__.__name__})") from None



def read_mnist(raw_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official MNIST IDX files of ``raw_dir`` as (images, labels) per split."""
    return {split_name: (read_idx(raw_dir / images), read_idx(raw_dir / labels))
            for split_name, (images, labels) in MNIST_FILES.items()}



def check_images(images: np.ndarray, labels: np.ndarray, schema: SchemaSpec | None,
                 source: str) -> None:
    """Images and labels agree in count, and match the schema's image shape and labels."""
    if len(images) != len(labels):
        raise JaxpipeError(f"{source}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise JaxpipeError(f"{source}: no images")
    if schema is None:
        return
    if schema.image_shape is not None and list(images.shape[1:]) != schema.image_shape:
        raise JaxpipeError(f"{source}: images are {list(images.shape[1:])}, the schema "
                           f"declares {schema.image_shape}")
    validate(pd.DataFrame({LABEL_COLUMN: labels}), schema, f"{source} labels")
