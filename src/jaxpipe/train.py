"""Train any model kind on a prepared data set, through the registry of model families."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxpipe import models
from jaxpipe.core.config import load_params, parse
from jaxpipe.core.errors import ConfigError
from jaxpipe.core.fileio import write_csv_rows
from jaxpipe.data.tables import Dataset
from jaxpipe.models import baseline_loss, check_loss


@dataclass(frozen=True)
class TrainConfig:
    """params.yaml ``train.<model>``: the model's kind and that kind's typed config."""

    kind: str
    config: Any


def load_train_config(params_path: str | Path, name: str) -> TrainConfig:
    """Read ``train.<name>``: check that ``kind`` names a model family, parse the rest for it."""
    raw = load_params(params_path, "train", name)
    where = f"{params_path}:train.{name}"
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    try:
        models.module_name(kind)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    rest = {k: v for k, v in raw.items() if k != "kind"}
    return TrainConfig(kind, parse(models.load(kind).Config, rest, where))


def train(cfg: TrainConfig, data: Dataset) -> models.Fit:
    """Fit the model on ``data``; a diverging loss (non-finite, or above ``max_loss_growth``
    times the loss of a constant prediction) stops it before anything is written."""
    module = models.load(cfg.kind)
    fit = module.fit(cfg.config, data)
    history = {k: np.asarray(v) for k, v in fit.history.items()}
    ceiling = cfg.config.max_loss_growth * baseline_loss(module.TASK, data.split("train").y)
    check_loss(history["train_loss"], ceiling)
    if "epoch" not in history:
        history = {"step": np.arange(1, len(history["train_loss"]) + 1), **history}
    return models.Fit(jax.tree.map(np.asarray, fit.params), history, fit.info)


def write_history(path: str | Path, history: dict[str, np.ndarray]) -> None:
    """The history as plot data: one row per step (or epoch), one column per series."""
    columns = list(history)
    rows = [list(r) for r in zip(*(history[c].tolist() for c in columns), strict=True)]
    write_csv_rows(path, columns, rows)
