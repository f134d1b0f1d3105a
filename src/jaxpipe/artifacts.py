"""Model files: safetensors (no pickle), deterministic bytes, metadata as one JSON string.

safetensors keeps its metadata in a hash map, so several keys may be written in any order;
one key holding sorted JSON keeps the same parameters and metadata byte-identical. A file is
checked on load: its kind is known, and its tensors have the names and shapes its kind's
template gives.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from jaxpipe import models
from jaxpipe.core.config import parse
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import atomic_path
from jaxpipe.data.inputs import Inputs

META_KEY = "jaxpipe"


@dataclass(frozen=True)
class Trained:
    """A model loaded from its file: its family's module, config, parameters, what its inputs
    are (the data set's ``Inputs`` it was trained on) and the rest of its metadata."""

    kind: str
    module: ModuleType
    config: Any
    params: Any
    inputs: Inputs
    meta: dict

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values (regression) for model-ready ``x``."""
        return self.module.predict(self.config, self.params, x)


def _name(path: tuple) -> str:
    parts = []
    for entry in path:
        key = getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry)))
        parts.append(str(key))
    if len(parts) > 1 and parts[-1] == "value":  # an nnx Variable's payload
        parts.pop()
    return ".".join(parts)


def flatten(params: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays as ``{"conv1.kernel": array, ...}`` (host NumPy arrays)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {_name(path): np.asarray(leaf) for path, leaf in leaves}


def unflatten(flat: dict[str, np.ndarray], template: Any, source: str = "model file") -> Any:
    """Put ``flat``'s arrays into a pytree shaped like ``template``, checking every shape."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_name(path) for path, _ in leaves]
    missing, extra = sorted(set(names) - set(flat)), sorted(set(flat) - set(names))
    if missing:
        raise JaxpipeError(f"{source}: lacks parameter '{missing[0]}'")
    if extra:
        raise JaxpipeError(f"{source}: unexpected parameter '{extra[0]}'")
    arrays = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        stored, expected = tuple(flat[name].shape), tuple(leaf.shape)
        if stored != expected and not (expected == () and stored == (1,)):
            raise JaxpipeError(f"{source}: parameter '{name}' has shape {stored}, "
                               f"expected {expected}")
        if flat[name].dtype != leaf.dtype:
            raise JaxpipeError(f"{source}: parameter '{name}' is {flat[name].dtype}, "
                               f"expected {leaf.dtype}")
        if not np.isfinite(flat[name]).all():
            raise JaxpipeError(f"{source}: parameter '{name}' holds non-finite values")
        arrays.append(flat[name].reshape(expected))  # scalars are stored with shape (1,)
    return jax.tree_util.tree_unflatten(treedef, arrays)


def save_model(path: str | Path, params: Any, meta: dict) -> None:
    """Write parameters and metadata atomically."""
    tensors = {k: np.ascontiguousarray(v) for k, v in flatten(params).items()}
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={META_KEY: text})
        except SafetensorError as exc:  # a full disk, a quota: safetensors' own error type
            raise JaxpipeError(f"{path}: cannot write the model file ({exc}); nothing was "
                               "replaced") from None


def load_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a model file: flat parameters and metadata; a clear error if it is not one."""
    path = Path(path)
    try:
        flat = load_file(str(path))
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        meta = json.loads(header["__metadata__"][META_KEY])
    except FileNotFoundError:
        raise JaxpipeError(f"{path}: model file not found (run the train stage first)") from None
    except (SafetensorError, KeyError, TypeError, ValueError, OSError) as exc:
        raise JaxpipeError(f"{path}: not a jaxpipe model file ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise JaxpipeError(f"{path}: not a jaxpipe model file (metadata is not a mapping)")
    return flat, meta


def save_trained(path: str | Path, name: str, kind: str, config: Any, fit: models.Fit,
                 inputs: Inputs) -> None:
    """Write a model file whose metadata carries kind, task, config, facts and its inputs."""
    meta = {"model": name, "kind": kind, "task": models.load(kind).TASK,
            "config": dataclasses.asdict(config), "info": fit.info, "inputs": inputs.to_json()}
    save_model(path, fit.params, meta)


def load_trained(path: str | Path) -> Trained:
    """A model file's parameters in its kind's pytree shape, with its parsed config."""
    flat, meta = load_model(path)
    kind = meta.get("kind")
    try:
        module = models.load(kind)
    except JaxpipeError:
        raise JaxpipeError(f"{path}: unknown model kind {kind!r}") from None
    if meta.get("task") != module.TASK:
        raise JaxpipeError(f"{path}: task {meta.get('task')!r} does not match kind {kind!r} "
                           f"({module.TASK!r})")
    config = parse(module.Config, meta.get("config"), f"{path}:config")
    if "inputs" not in meta and "scaler" in meta:
        raise JaxpipeError(f"{path}: written by an older jaxpipe (a 'scaler', no 'inputs'); "
                           f"train it again: dvc repro train@{meta.get('model', '<model>')}")
    inputs = Inputs.from_json(meta.get("inputs"), f"{path}: inputs")
    params = unflatten(flat, models.template(module, config, inputs), str(path))
    return Trained(kind, module, config, params, inputs, meta)

