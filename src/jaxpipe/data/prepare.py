"""Prepare: select columns and rows, split train/test, fit a scaler on train only.

Pure functions: a DataFrame (or arrays) in, new tables and the scaler out; no paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.model_selection import train_test_split

from jaxpipe.core.config import check
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.idx import read_idx
from jaxpipe.data.tables import image_table, table_from_frame

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class PrepareConfig:
    """params.yaml ``prepare.<dataset>``."""

    kind: Literal["table", "images"]
    task: Literal["classification", "regression"] = "classification"
    target: str = "y"
    columns_from: str | None = None
    classes: list[int] | None = None
    test_size: float = 0.2
    val_size: float = 0.0
    standardize: bool = True
    pixel_scale: float = 255.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(0.0 <= self.test_size < 1.0, "test_size", "must be in [0, 1)")
        check(0.0 <= self.val_size < 1.0, "val_size", "must be in [0, 1)")
        check(self.pixel_scale > 0, "pixel_scale", "must be positive")


def select(frame: pd.DataFrame, cfg: PrepareConfig, source: str) -> pd.DataFrame:
    """Keep the feature columns from ``columns_from`` on plus the target; filter classes."""
    if cfg.target not in frame.columns:
        raise JaxpipeError(f"{source}: missing target column '{cfg.target}'")
    columns = list(frame.columns)
    if cfg.columns_from is not None:
        if cfg.columns_from not in columns:
            raise JaxpipeError(f"{source}: missing column '{cfg.columns_from}' (columns_from)")
        columns = columns[columns.index(cfg.columns_from):]
    features = [c for c in columns if c != cfg.target]
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise JaxpipeError(f"{source}: column '{bad[0]}' is not numeric")
    if frame[features + [cfg.target]].isna().any().any():
        raise JaxpipeError(f"{source}: missing values in the selected columns")
    out = frame[features + [cfg.target]]
    if cfg.classes is not None:
        out = out[out[cfg.target].isin(cfg.classes)]
        if out.empty:
            raise JaxpipeError(f"{source}: no rows with '{cfg.target}' in {cfg.classes}")
    return out.reset_index(drop=True)


def split(frame: pd.DataFrame, cfg: PrepareConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified for classification; test_size 0 tests on train."""
    if cfg.test_size == 0:
        return frame.copy(), frame.copy()
    strat = frame[cfg.target] if cfg.task == "classification" else None
    train, test = train_test_split(frame, test_size=cfg.test_size, random_state=cfg.seed,
                                   stratify=strat)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def fit_scaler(train: pd.DataFrame, cfg: PrepareConfig) -> dict:
    """Per-feature mean and scale fitted on the training rows (identity if not standardizing)."""
    features = [c for c in train.columns if c != cfg.target]
    values = train[features].to_numpy(np.float64)
    mean = values.mean(axis=0) if cfg.standardize else np.zeros(len(features))
    std = values.std(axis=0) if cfg.standardize else np.ones(len(features))
    scale = np.where(std == 0, 1.0, std)  # a constant column stays as it is, as in sklearn
    return {"features": features, "mean": mean.tolist(), "scale": scale.tolist(),
            "target": cfg.target, "stored": "scaled"}


def apply_scaler(frame: pd.DataFrame, scaler: dict) -> pd.DataFrame:
    """A new frame with the features standardized by ``scaler``."""
    out = frame.copy()
    feats = scaler["features"]
    out[feats] = (frame[feats].to_numpy(np.float64) - scaler["mean"]) / scaler["scale"]
    return out


def prepare_table(frame: pd.DataFrame, cfg: PrepareConfig, source: str
                  ) -> tuple[dict[str, pa.Table], dict]:
    """Select, split and scale a table; return Parquet-ready tables and the scaler."""
    chosen = select(frame, cfg, source)
    train, test = split(chosen, cfg)
    scaler = fit_scaler(train, cfg)
    target_type = pa.int64() if cfg.task == "classification" else pa.float64()
    tables = {name: table_from_frame(apply_scaler(part, scaler), cfg.target, target_type)
              for name, part in (("train", train), ("test", test))}
    return tables, scaler


def prepare_images(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray, cfg: PrepareConfig) -> tuple[dict[str, pa.Table], dict]:
    """Hold out a stratified validation part of train; keep the official test set."""
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise JaxpipeError("MNIST images and labels differ in count")
    tables = {"test": image_table(test_x, test_y)}
    if cfg.val_size > 0:
        idx = np.arange(len(train_y))
        tr, va = train_test_split(idx, test_size=cfg.val_size, random_state=cfg.seed,
                                  stratify=train_y)
        tr, va = np.sort(tr), np.sort(va)
        tables["train"], tables["val"] = (image_table(train_x[tr], train_y[tr]),
                                          image_table(train_x[va], train_y[va]))
    else:
        tables["train"] = image_table(train_x, train_y)
    scaler = {"features": ["image"], "mean": [0.0], "scale": [cfg.pixel_scale],
              "target": "label", "stored": "raw"}
    return tables, scaler


def read_source(path: Path) -> pd.DataFrame:
    """Read a raw table (CSV or Parquet), with an error naming the file."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError:
        raise JaxpipeError(f"{path}: not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowInvalid) as exc:
        raise JaxpipeError(f"{path}: cannot parse ({exc.__class__.__name__})") from None


def read_mnist(raw_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official MNIST IDX files of ``raw_dir`` as (images, labels) per split."""
    return {split_name: (read_idx(raw_dir / images), read_idx(raw_dir / labels))
            for split_name, (images, labels) in MNIST_FILES.items()}


def prepare(source: Path, cfg: PrepareConfig) -> tuple[dict[str, pa.Table], dict]:
    """Read the raw ``source`` (an MNIST folder, or a CSV/Parquet table) and prepare it."""
    if cfg.kind == "images":
        parts = read_mnist(source)
        return prepare_images(*parts["train"], *parts["test"], cfg)
    return prepare_table(read_source(source), cfg, str(source))
