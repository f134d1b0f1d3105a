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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import jax
import numpy as np
from flax import nnx

from jaxpipe.core.config import SEED_MAX, check, in_range
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.tables import Dataset, Split
from jaxpipe.models import Fit, Task, TrainConfig, baseline_loss, check_loss, epoch_done, phase
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
class Config(TrainConfig):
    """params.yaml ``train.<model>`` for kind ``cnn``."""

    seed_max: ClassVar[int] = SEED_MAX - 1  # the shuffle key is seed + 1

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
    return stream.ImageRows(data.path / "train.parquet", data.inputs, cfg.max_train_images)


def xla_options(options: Mapping[str, str | bool | int | list[str]]) -> net.Options:
    """``compiler_options`` as XLA takes them (a list joined by commas), sorted and hashable."""
    return tuple(sorted((k, ",".join(v) if isinstance(v, list) else v)
                        for k, v in options.items()))


@dataclass(frozen=True)
class TrainingSet:
    """The images a run trains on (held in memory, or a reader of the Parquet file), their
    labels, and the validation split."""

    source: Split | stream.ImageRows
    labels: np.ndarray
    val: Split

    @property
    def streamed(self) -> bool:
        return isinstance(self.source, stream.ImageRows)


@dataclass
class Best:
    """The epoch with the lowest validation loss so far, and its parameters (on the host)."""

    val_loss: float = np.inf
    epoch: int = 0
    params: nnx.State | None = None


def _read(cfg: Config, data: Dataset, mesh_size: int) -> TrainingSet:
    """The training and validation images, checked against the network's shape and classes."""
    source, val = _source(cfg, data, mesh_size), data.split("val")
    if isinstance(source, stream.ImageRows):
        labels, shape = source.labels, (len(source.labels), *source.shape, 1)
    else:
        labels = source.y[: cfg.max_train_images]
        shape = (len(labels), *source.x.shape[1:])
    _check_inputs(data, "train", shape, labels)
    _check_inputs(data, "val", val.x.shape, val.y)
    return TrainingSet(source, labels, val)


def _batches_per_epoch(cfg: Config, n_images: int, mesh_size: int) -> int:
    """Whole batches per epoch, or one line if the batch does not fit the data or the mesh."""
    if n_images < cfg.batch_size:
        raise JaxpipeError(f"batch_size {cfg.batch_size} exceeds the {n_images} training images")
    if cfg.batch_size % mesh_size:
        raise ConfigError(f"batch_size: {cfg.batch_size} does not split over {mesh_size} devices")
    return n_images // cfg.batch_size


def _compile_forward(forward: Callable, graphdef: nnx.GraphDef, params: nnx.State,
                     val: Split) -> None:
    """Compile the forward pass up front, so a bad compiler option fails here, clearly."""
    try:
        forward(graphdef, params, val.x[:1])
    except jax.errors.JaxRuntimeError as exc:
        raise JaxpipeError(f"compiler_options: {str(exc).splitlines()[0]}") from None


def _runner(cfg: Config, grid: Any, training: TrainingSet, options: net.Options
            ) -> loop.InMemory | loop.Streamed:
    """What feeds the steps: batches gathered on the devices, or streamed from the file."""
    if isinstance(training.source, stream.ImageRows):
        return loop.Streamed(grid, training.source, int(cfg.memory_budget_mb * MB),
                             cfg.batch_size, options)
    return loop.InMemory(grid, training.source.x[: cfg.max_train_images], training.labels,
                         options)


def fit(cfg: Config, data: Dataset) -> Fit:
    """Adam on shuffled minibatches; returns the best-validation parameters and history."""
    mesh.join_processes()
    grid = mesh.data_mesh(cfg.devices)
    with phase("read and check the images"):
        training = _read(cfg, data, len(grid.local_devices))
    n_images, options = len(training.labels), xla_options(cfg.compiler_options)
    n_batches = _batches_per_epoch(cfg, n_images, grid.size)
    log.info("%d training images, %d batches of %d per epoch over %d device(s), %d epochs; "
             "compiling", n_images, n_batches, cfg.batch_size, grid.size, cfg.epochs)
    with phase("initialise the parameters"):
        graphdef, params = init(cfg.seed)
        opt_state = net.optimizer_state(params, cfg.lr)
    forward = compiled_steps(options).forward
    with phase("compile the forward pass"):
        _compile_forward(forward, graphdef, params, training.val)
    with phase("place the data on the device(s)"):
        params, opt_state = mesh.replicated(grid, (params, opt_state))
        runner = _runner(cfg, grid, training, options)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": []}
    best, ceiling = Best(), cfg.max_loss_growth * baseline_loss(TASK, training.labels)
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        with phase("shuffle"):
            order = loop.batch_order(cfg.seed, epoch, n_images, cfg.batch_size)
        params, opt_state, losses = loop.run_epoch(
            runner.step, graphdef, net.optimizer(), params, opt_state, runner.steps(order),
            n_batches, f"epoch {epoch}/{cfg.epochs}")
        check_loss(losses, ceiling, (epoch - 1) * n_batches)
        with phase("copy the parameters"):
            here = jax.block_until_ready(mesh.local_copy(params))
        with phase("validate"):
            val_loss = net.mean_loss(graphdef, here, training.val.x, training.val.y,
                                     cfg.eval_batch_size, forward)
        history["epoch"].append(epoch)
        history["train_loss"].append(float(losses.mean()))
        history["val_loss"].append(val_loss)
        if val_loss < best.val_loss:
            best = Best(val_loss, epoch, here)
        epoch_done(epoch, train_loss=history["train_loss"][-1], val_loss=val_loss)
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, %.0f images/s", epoch,
                 cfg.epochs, losses.mean(), val_loss,
                 epoch * n_batches * cfg.batch_size / (time.perf_counter() - started))
    info = {"best_epoch": best.epoch, "best_val_loss": best.val_loss, "train_images": n_images,
            "train_steps": cfg.epochs * n_batches}
    return Fit(best.params, history, info)


def predict(cfg: Config, params: nnx.State, x: np.ndarray) -> np.ndarray:
    """Class probabilities, compiled with the same options as training."""
    forward = compiled_steps(xla_options(cfg.compiler_options)).forward
    return net.probs(net.abstract()[0], params, x, cfg.eval_batch_size, forward)


def template(cfg: Config, inputs: Inputs) -> nnx.State:
    """Parameter shapes of the network (``nnx.eval_shape``: nothing is initialised)."""
    return net.abstract()[1]


def metrics(cfg: Config, params: nnx.State, info: dict) -> dict:
    """The kept epoch, its validation loss, and how much training it took."""
    return {"best_epoch": info["best_epoch"], "best_val_loss": round(info["best_val_loss"], 6),
            "train_images": info["train_images"], "train_steps": info["train_steps"]}
