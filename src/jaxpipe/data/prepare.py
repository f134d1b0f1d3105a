"""Prepare: select columns and rows, split train/test, fit a scaler on train only.

Pure functions: a DataFrame (or arrays) in, new tables and their ``Inputs`` out; no paths.
Each data kind (``prepare.<dataset>.kind``) is a function registered with ``data_kind``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from jaxpipe.core.config import SEED_MAX, check, in_range
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.raw import check_images, read_mnist, read_source
from jaxpipe.data.schema import SchemaSpec, validate
from jaxpipe.data.tables import image_table, table_from_frame


@dataclass(frozen=True)
class PrepareConfig:
    """params.yaml ``prepare.<dataset>``."""

    kind: str  # a registered data kind: "table" or "images" (``KINDS``)
    task: Literal["classification", "regression"] = "classification"
    target: str = "y"
    columns_from: str | None = None
    classes: list[int] | None = None
    test_size: float = 0.2
    test_on_train: bool = False  # with test_size 0: score on the training rows, knowingly
    val_size: float = 0.0
    standardize: bool = True
    pixel_scale: float = 255.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.kind in KINDS, "kind", f"{self.kind!r} is not one of {sorted(KINDS)}")
        check(0.0 <= self.test_size < 1.0, "test_size", "must be in [0, 1)")
        check(self.kind == "images" or self.test_size > 0 or self.test_on_train, "test_size",
              "0 leaves no test rows; set test_on_train: true to score on the training rows")
        check(not (self.test_on_train and self.test_size > 0), "test_on_train",
              "needs test_size: 0 (there is a test split)")
        check(0.0 <= self.val_size < 1.0, "val_size", "must be in [0, 1)")
        check(self.pixel_scale > 0, "pixel_scale", "must be positive")
        in_range(self.seed, "seed", 0, SEED_MAX)


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
    if cfg.task == "classification":
        target = out[cfg.target].to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(target) | (target != np.floor(target)) | (target < 0))
        if bad.size:
            raise JaxpipeError(f"{source}: column '{cfg.target}', row {bad[0] + 1}: "
                               f"{target[bad[0]]:g} is not a class label (an integer from 0)")
    if out.empty:
        raise JaxpipeError(f"{source}: no data rows")
    if cfg.classes is not None:
        out = out[out[cfg.target].isin(cfg.classes)]
        if out.empty:
            raise JaxpipeError(f"{source}: no rows with '{cfg.target}' in {cfg.classes}")
    return out.reset_index(drop=True)


def train_test_split(*arrays: object, **options: object) -> list:
    """scikit-learn's splitter, imported when first used (it takes a second to import)."""
    from sklearn.model_selection import train_test_split as split_arrays

    return split_arrays(*arrays, **options)


def split(frame: pd.DataFrame, cfg: PrepareConfig, source: str = "table"
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified for classification; ``test_on_train`` (with
    test_size 0) tests on the training rows."""
    strat = frame[cfg.target] if cfg.task == "classification" else None
    if strat is not None:
        counts = strat.value_counts().sort_index()
        if len(counts) < 2:
            raise JaxpipeError(f"{source}: column '{cfg.target}' holds one class "
                               f"({counts.index[0]}); a classifier needs two or more")
        if cfg.test_size > 0 and counts.min() < 2:
            raise JaxpipeError(f"{source}: class {counts.idxmin()} of '{cfg.target}' has one "
                               "row; a stratified split needs two or more per class")
    if cfg.test_size == 0:
        return frame.copy(), frame.copy()
    try:
        train, test = train_test_split(frame, test_size=cfg.test_size, random_state=cfg.seed,
                                       stratify=strat)
    except ValueError as exc:  # too few rows for the split asked
        raise JaxpipeError(f"{source}: cannot split {len(frame)} rows with test_size "
                           f"{cfg.test_size}: {exc}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def fit_scaler(train: pd.DataFrame, cfg: PrepareConfig, classes: int | None = None
               ) -> Inputs:
    """The table's inputs: per-feature mean and scale fitted on the training rows (identity
    if not standardizing), with the class count when given."""
    features = [c for c in train.columns if c != cfg.target]
    values = train[features].to_numpy(np.float64)
    mean = values.mean(axis=0) if cfg.standardize else np.zeros(len(features))
    std = values.std(axis=0) if cfg.standardize else np.ones(len(features))
    # a constant column stays as it is, as in sklearn: "constant" up to the rounding error of
    # its variance (a column of 0.1s has a std of 1e-17, which would blow its values up)
    n, eps = len(values), np.finfo(np.float64).eps
    constant = std**2 <= n * eps * std**2 + (n * mean * eps) ** 2
    scale = np.where(constant, 1.0, std)
    return Inputs(tuple(features), tuple(mean.tolist()), tuple(scale.tolist()), cfg.target,
                  "scaled", classes)


def apply_scaler(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    """A new frame with the features standardized as ``inputs`` says."""
    out = frame.copy()
    feats = list(inputs.features)
    out[feats] = (frame[feats].to_numpy(np.float64) - np.asarray(inputs.mean)) / np.asarray(
        inputs.scale)
    return out


def class_count(labels: np.ndarray) -> int:
    """How many classes integer labels 0..K-1 name: K (at least 2)."""
    return max(int(np.max(labels)) + 1, 2)


def prepare_table(frame: pd.DataFrame, cfg: PrepareConfig, source: str,
                  schema: SchemaSpec | None = None) -> tuple[dict[str, pa.Table], Inputs]:
    """Check a table against its schema; select, split and scale it; return Parquet-ready
    tables and what the inputs are."""
    if schema is not None:
        validate(frame, schema, source)
    chosen = select(frame, cfg, source)
    train, test = split(chosen, cfg, source)
    classification = cfg.task == "classification"
    inputs = fit_scaler(train, cfg, class_count(chosen[cfg.target]) if classification else None)
    target_type = pa.int64() if classification else pa.float64()
    tables = {name: table_from_frame(apply_scaler(part, inputs), cfg.target, target_type)
              for name, part in (("train", train), ("test", test))}
    return tables, inputs


def prepare_images(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray, cfg: PrepareConfig) -> tuple[dict[str, pa.Table], Inputs]:
    """Hold out a stratified validation part of train; keep the official test set."""
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise JaxpipeError("MNIST images and labels differ in count")
    tables = {"test": image_table(test_x, test_y)}
    if cfg.val_size > 0:
        idx = np.arange(len(train_y))
        try:
            tr, va = train_test_split(idx, test_size=cfg.val_size, random_state=cfg.seed,
                                      stratify=train_y)
        except ValueError as exc:  # a class too rare to stratify, or too few images
            raise JaxpipeError(f"cannot hold out val_size {cfg.val_size} of "
                               f"{len(idx)} training images: {exc}") from None
        tr, va = np.sort(tr), np.sort(va)
        tables["train"], tables["val"] = (image_table(train_x[tr], train_y[tr]),
                                          image_table(train_x[va], train_y[va]))
    else:
        tables["train"] = image_table(train_x, train_y)
    classes = class_count(np.concatenate([train_y, test_y]))
    return tables, Inputs.of_images(train_x.shape[1:3], classes, cfg.pixel_scale)


Preparer = Callable[[Path, PrepareConfig, SchemaSpec | None], tuple[dict[str, pa.Table], Inputs]]
KINDS: dict[str, Preparer] = {}


def data_kind(name: str) -> Callable[[Preparer], Preparer]:
    """Register the function that prepares data sets of ``kind: name`` (params.yaml
    ``prepare.<dataset>.kind``): raw source, config and schema in; tables and inputs out."""
    def register(preparer: Preparer) -> Preparer:
        KINDS[name] = preparer
        return preparer
    return register


@data_kind("table")
def _table(source: Path, cfg: PrepareConfig, schema: SchemaSpec | None
           ) -> tuple[dict[str, pa.Table], Inputs]:
    """A CSV or Parquet table: columns selected, split, standardized."""
    return prepare_table(read_source(source), cfg, str(source), schema)


@data_kind("images")
def _images(source: Path, cfg: PrepareConfig, schema: SchemaSpec | None
            ) -> tuple[dict[str, pa.Table], Inputs]:
    """An MNIST folder (IDX files): a validation part held out of train, pixels kept raw."""
    parts = read_mnist(source)
    for name, (images, labels) in parts.items():
        check_images(images, labels, schema, f"{source} ({name})")
    return prepare_images(*parts["train"], *parts["test"], cfg)


def prepare(source: Path, cfg: PrepareConfig, schema: SchemaSpec | None = None
            ) -> tuple[dict[str, pa.Table], Inputs]:
    """Read the raw ``source`` as its kind says, check it against ``schema`` and prepare it."""
    return KINDS[cfg.kind](source, cfg, schema)
