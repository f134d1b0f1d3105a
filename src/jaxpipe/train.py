"""Train any model kind on a prepared data set: one entry point, a registry of kinds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np

from jaxpipe.config import parse
from jaxpipe.errors import ConfigError
from jaxpipe.models import cnn, linear, logistic, mlp
from jaxpipe.models.guard import check_finite
from jaxpipe.serialize import load_model, save_model, unflatten
from jaxpipe.tables import load_split, read_scaler

Task = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Kind:
    """How to configure, fit and apply one kind of model."""

    config: type
    fit: Callable[..., tuple]
    predict: Callable[[Any, np.ndarray], Any]
    task: Task
    fit_on: str = "test"  # the second split handed to fit (tracked accuracy, validation)
    template: Callable[[], Any] | None = None  # parameter pytree shape, if not a flat dict


def _cnn_predict(params: Any, x: np.ndarray) -> np.ndarray:
    return cnn.cnn_predict(cnn.cnn_template()[0], params, x)


KINDS: dict[str, Kind] = {
    "logreg": Kind(logistic.LogRegConfig, logistic.logreg_fit, logistic.logreg_predict, "binary"),
    "softmax": Kind(logistic.SoftmaxConfig, logistic.softmax_fit, logistic.softmax_predict,
                    "multiclass"),
    "mlp": Kind(mlp.MLPConfig, mlp.mlp_fit, mlp.mlp_predict, "binary"),
    "linreg": Kind(linear.LinRegConfig, linear.linreg_fit, linear.linreg_predict, "regression"),
    "cnn": Kind(cnn.CNNConfig, cnn.cnn_fit, _cnn_predict, "multiclass", fit_on="val",
                template=lambda: cnn.cnn_template()[1]),
}


@dataclass
class Trained:
    """A fitted model: parameters, per-step (or per-epoch) history, facts for evaluation."""

    kind: str
    config: Any
    params: Any
    history: dict[str, np.ndarray]
    info: dict


def parse_train_config(raw: Any, where: str) -> tuple[str, Any]:
    """Split ``kind`` off a ``train.<model>`` section and parse the rest for that kind."""
    if not isinstance(raw, Mapping) or raw.get("kind") not in KINDS:
        kind = raw.get("kind") if isinstance(raw, Mapping) else None
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {sorted(KINDS)}")
    rest = {k: v for k, v in raw.items() if k != "kind"}
    return raw["kind"], parse(KINDS[raw["kind"]].config, rest, where)


def train(kind: str, cfg: Any, data_dir: str | Path) -> Trained:
    """Fit a model of ``kind`` on ``data_dir``'s train split; NaN losses stop it."""
    spec = KINDS[kind]
    data = load_split(data_dir, "train")
    other = load_split(data_dir, spec.fit_on)
    out = spec.fit(cfg, data.x, data.y, other.x, other.y)
    params, history, info = out if len(out) == 3 else (*out, {})
    history = {k: np.asarray(v) for k, v in history.items()}
    check_finite(history["train_loss"])
    if "epoch" not in history:
        history = {"step": np.arange(1, len(history["train_loss"]) + 1), **history}
    params = jax.tree.map(np.asarray, params)
    return Trained(kind, cfg, params, history, info)


def save_trained(path: str | Path, name: str, trained: Trained, data_dir: str | Path) -> None:
    """Write the model file; its metadata carries kind, config, facts and the scaler."""
    meta = {"model": name, "kind": trained.kind, "task": KINDS[trained.kind].task,
            "config": dataclasses.asdict(trained.config), "info": trained.info,
            "scaler": read_scaler(Path(data_dir))}
    save_model(path, trained.params, meta)


def load_trained(path: str | Path) -> tuple[Any, dict]:
    """Parameters (in the kind's pytree shape) and metadata of a model file."""
    flat, meta = load_model(path)
    spec = KINDS[meta["kind"]]
    params = unflatten(flat, spec.template(), str(path)) if spec.template else flat
    return params, meta


def predict(meta: dict, params: Any, x: np.ndarray) -> np.ndarray:
    """Probabilities (classification) or values (regression) as a NumPy array."""
    return np.asarray(KINDS[meta["kind"]].predict(params, x))
