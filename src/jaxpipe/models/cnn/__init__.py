"""The MNIST CNN of system 4 (Flax NNX, ``net``), trained with Optax Adam, data-parallel.

The training step runs over a mesh of ``devices`` devices (``mesh``): the batch split along
its ``data`` axis, the parameters replicated, one process or several (``jax.distributed``).
A training set within ``memory_budget_mb`` is held on the devices and each step gathers its
batch there; a larger one is streamed from the Parquet file (``stream``), with the same
batches. The parameters with the lowest validation loss are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import jax
import numpy as np
import optax
from flax import nnx

from jaxpipe.core.config import SEED_MAX, check, in_range
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Guarded, Task, baseline_loss, check_loss, epoch_done, phase
from jaxpipe.models.cnn import loop, mesh, net, stream
from jaxpipe.models.cnn.net import CNN, compiled_steps, conv3x3_shifted, init

__all__ = ["CNN", "Config", "TASK", "compiled_steps", "conv3x3_shifted", "fit", "init",
           "metrics", "predict", "template"]
log = logging.getLogger(__name__)
TASK: Task = "multiclass"
IMAGE_SHAPE = (28, 28)  # (height, width) of the grayscale images it takes
MB = 1 << 20


MAX_EPOCHS = 10_000
MAX_BATCH = 65_536  # images per step: 200 MB of float32 input, far above the write-up's 64


@dataclass(frozen=True)
class Config(Guarded):
    """params.yaml ``train.<model>`` for kind ``cnn``."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_train_images: int | None = None
    eval_batch_size: int = 1000
    # XLA compiler options for the jitted steps, e.g. YNNPACK matmuls on the CPU backend
    # (benchmarks/run.py measures the effect). They change kernels, so they are params. A
    # list is XLA's comma-separated list (one item a line: `dvc exp run -S` changes one).
    compiler_options: dict[str, str | bool | int | list[str]] = field(default_factory=dict)
    # devices of the data-parallel mesh, over all processes ("all": every visible one)
    devices: int | Literal["all"] = 1
    # training set held on the devices up to this size (MB, float32, per device); over it,
    # batches are streamed from the Parquet file. null: always held.
    memory_budget_mb: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.epochs, "epochs", 1, MAX_EPOCHS)
        in_range(self.batch_size, "batch_size", 1, MAX_BATCH)
        in_range(self.eval_batch_size, "eval_batch_size", 1, MAX_BATCH)
        in_range(self.seed, "seed", 0, SEED_MAX - 1)  # the shuffle key is seed + 1
        check(self.lr > 0, "lr", "must be positive")
        check(self.max_train_images is None or self.max_train_images > 0,
              "max_train_images", "must be positive or null")
        check(self.devices == "all" or (isinstance(self.devices, int) and self.devices > 0),
              "devices", "must be a positive number or 'all'")
        check(self.memory_budget_mb is None or self.memory_budget_mb > 0,
              "memory_budget_mb", "must be positive or null")


def _check_inputs(data: Dataset, split: str, shape: tuple[int, ...], y: np.ndarray) -> None:
    """Images of the network's shape and labels among its 10 classes, or one clear line."""
    where = f"{data.path}/{split}"
    if len(shape) != 4 or tuple(shape[1:3]) != IMAGE_SHAPE or shape[0] == 0:
        raise JaxpipeError(f"{where}: expected (n > 0) images of {IMAGE_SHAPE}, got {shape[:3]}")
    bad = np.flatnonzero((y < 0) | (y >= 10))
    if bad.size:
        raise JaxpipeError(f"{where}: row {int(bad[0]) + 1}: label {int(y[bad[0]])} is not one "
                           "of the network's 10 classes (0-9)")


def _source(cfg: Config, data: Dataset, mesh_size: int) -> loop.InMemory | stream.ImageRows:
    """The training rows: in memory if they fit the budget, else a Parquet reader."""
    labels = data.split("train").y[: cfg.max_train_images]
    held = len(labels) * (4 * int(np.prod(IMAGE_SHAPE)) + 4) * mesh_size
    if cfg.memory_budget_mb is None or held <= cfg.memory_budget_mb * MB:
        return data.split("train")
    log.info("training set (%.0f MB on %d devices) over memory_budget_mb %g: streaming it",
             held / MB, mesh_size, cfg.memory_budget_mb)
    return stream.ImageRows(data.path / "train.parquet", data.scaler, cfg.max_train_images)


def xla_options(options: Mapping[str, str | bool | int | list[str]]) -> net.Options:
    """``compiler_options`` as XLA takes them (a list joined by commas), sorted and hashable."""
    return tuple(sorted((k, ",".join(v) if isinstance(v, list) else v)
                        for k, v in options.items()))


def fit(cfg: Config, data: Dataset) -> Fit:
    """Adam on shuffled minibatches; returns the best-validation parameters and history."""
    mesh.join_processes()
    grid = mesh.data_mesh(cfg.devices)
    with phase("read and check the images"):
        source, val = _source(cfg, data, len(grid.local_devices)), data.split("val")
        streamed = isinstance(source, stream.ImageRows)
        y = source.labels if streamed else source.y[: cfg.max_train_images]
        _check_inputs(data, "train", (len(y), *source.shape, 1) if streamed else source.x.shape, y)
        _check_inputs(data, "val", val.x.shape, val.y)
    n_batches, options = len(y) // cfg.batch_size, xla_options(cfg.compiler_options)
    if n_batches == 0:
        raise JaxpipeError(f"batch_size {cfg.batch_size} exceeds the {len(y)} training images")
    if cfg.batch_size % grid.size:
        raise ConfigError(f"batch_size: {cfg.batch_size} does not split over {grid.size} devices")
    log.info("%d training images, %d batches of %d per epoch over %d device(s), %d epochs; "
             "compiling", len(y), n_batches, cfg.batch_size, grid.size, cfg.epochs)
    with phase("initialise the parameters"):
        graphdef, params = init(cfg.seed)
        tx = optax.adam(cfg.lr)
    forward = compiled_steps(options)[1]
    with phase("compile the forward pass"):
        try:  # compile once up front, so a bad compiler option fails here, clearly
            forward(graphdef, params, val.x[:1])
        except jax.errors.JaxRuntimeError as exc:
            raise JaxpipeError(f"compiler_options: {str(exc).splitlines()[0]}") from None
    with phase("place the data on the device(s)"):
        params, opt_state = mesh.replicated(grid, (params, tx.init(params)))
        runner = (loop.Streamed(grid, source, int(cfg.memory_budget_mb * MB), cfg.batch_size,
                                options) if streamed
                  else loop.InMemory(grid, source.x[: cfg.max_train_images], y, options))
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": []}
    best = (np.inf, 0, None)
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        with phase("shuffle"):
            order = loop.batch_order(cfg.seed, epoch, len(y), cfg.batch_size)
        params, opt_state, losses = loop.run_epoch(runner.step, graphdef, tx, params, opt_state,
                                                   runner.steps(order), n_batches,
                                                   f"epoch {epoch}/{cfg.epochs}")
        check_loss(losses, cfg.max_loss_growth * baseline_loss(TASK, y), (epoch - 1) * n_batches)
        with phase("copy the parameters"):
            here = jax.block_until_ready(mesh.local_copy(params))
        with phase("validate"):
            val_loss = net.mean_loss(graphdef, here, val.x, val.y, cfg.eval_batch_size, forward)
        history["epoch"].append(epoch)
        history["train_loss"].append(float(losses.mean()))
        history["val_loss"].append(val_loss)
        if val_loss < best[0]:
            best = (val_loss, epoch, here)
        epoch_done(epoch, train_loss=history["train_loss"][-1], val_loss=val_loss)
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, %.0f images/s", epoch,
                 cfg.epochs, losses.mean(), val_loss,
                 epoch * n_batches * cfg.batch_size / (time.perf_counter() - started))
    info = {"best_epoch": best[1], "best_val_loss": best[0], "train_images": len(y),
            "train_steps": cfg.epochs * n_batches}
    return Fit(best[2], history, info)


def predict(cfg: Config, params: nnx.State, x: np.ndarray) -> np.ndarray:
    """Class probabilities, compiled with the same options as training."""
    forward = compiled_steps(xla_options(cfg.compiler_options))[1]
    return net.probs(net.abstract()[0], params, x, cfg.eval_batch_size, forward)


def template(cfg: Config, meta: dict) -> nnx.State:
    """Parameter shapes of the network (``nnx.eval_shape``: nothing is initialised)."""
    return net.abstract()[1]


def metrics(cfg: Config, params: nnx.State, info: dict) -> dict:
    """The kept epoch, its validation loss, and how much training it took."""
    return {"best_epoch": info["best_epoch"], "best_val_loss": round(info["best_val_loss"], 6),
            "train_images": info["train_images"], "train_steps": info["train_steps"]}
