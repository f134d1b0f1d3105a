"""The MNIST CNN of system 4 as a Flax NNX module, trained with Optax Adam.

Conv 32 (3x3) -> ReLU -> avg pool 2 -> Conv 64 (3x3) -> ReLU -> avg pool 2 -> Dense 256 ->
ReLU -> Dense 10 (log-softmax). The data set stays on the device; each jitted step gathers
its batch by index, so the host loop only dispatches. The parameters with the lowest
validation loss are kept.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpipe.core.config import check
from jaxpipe.core.console import bar
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Guarded, Task, baseline_loss, check_loss

log = logging.getLogger(__name__)
TASK: Task = "multiclass"
IMAGE_SHAPE = (28, 28)  # (height, width) of the grayscale images it takes


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
    # (benchmarks/run.py measures the effect). They change kernels, so they are params.
    compiler_options: dict[str, str | bool | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.epochs > 0, "epochs", "must be positive")
        check(self.batch_size > 0, "batch_size", "must be positive")
        check(self.lr > 0, "lr", "must be positive")
        check(self.max_train_images is None or self.max_train_images > 0,
              "max_train_images", "must be positive or null")


class CNN(nnx.Module):
    """The write-up's network; input (n, 28, 28, 1), output log-probabilities (n, 10)."""

    def __init__(self, rngs: nnx.Rngs, n_classes: int = 10) -> None:
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.fc1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
        self.fc2 = nnx.Linear(256, n_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = conv3x3_shifted(x, self.conv1.kernel[...], self.conv1.bias[...])
        x = nnx.avg_pool(nnx.relu(x), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return nnx.log_softmax(self.fc2(x))


def conv3x3_shifted(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """A 3x3 SAME convolution as nine shifted matrix products, the same function as nnx.Conv.

    With one input channel, XLA's CPU convolution (and above all its weight gradient) is
    several times slower than these products, whose gradients are plain matmuls.
    """
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(padded[:, i:i + h, j:j + w, :].reshape(-1, c) @ kernel[i, j]
              for i in range(3) for j in range(3))
    return (out + bias).reshape(n, h, w, -1)


def init(seed: int) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and freshly initialised parameters."""
    return nnx.split(CNN(nnx.Rngs(seed)), nnx.Param)


@functools.cache
def _abstract() -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and parameter shapes, traced without initialising anything."""
    return nnx.split(nnx.eval_shape(lambda: CNN(nnx.Rngs(0))), nnx.Param)


def _loss(graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array, y: jax.Array) -> jax.Array:
    logp = nnx.merge(graphdef, params)(x)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _train_step(graphdef, tx, params, opt_state, x_all, y_all, idx):
    loss, grads = jax.value_and_grad(_loss, argnums=1)(graphdef, params, x_all[idx], y_all[idx])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def _log_probs(graphdef, params, x):
    return nnx.merge(graphdef, params)(x)


@functools.cache
def compiled_steps(options: tuple[tuple[str, str | bool | int], ...] = ()
                   ) -> tuple[Callable, Callable]:
    """The jitted training step (buffers donated) and forward pass, with compiler options."""
    opts = dict(options) or None
    step = jax.jit(_train_step, static_argnames=("graphdef", "tx"),
                   donate_argnames=("params", "opt_state"), compiler_options=opts)
    forward = jax.jit(_log_probs, static_argnames=("graphdef",), compiler_options=opts)
    return step, forward


def _options(cfg: Config) -> tuple[tuple[str, str | bool | int], ...]:
    return tuple(sorted(cfg.compiler_options.items()))


def _probs(graphdef: nnx.GraphDef, params: nnx.State, x: np.ndarray, batch_size: int,
           forward: Callable) -> np.ndarray:
    """Class probabilities for every row of ``x`` (the last partial batch included)."""
    chunks = [forward(graphdef, params, jnp.asarray(x[i:i + batch_size]))
              for i in range(0, len(x), batch_size)]
    return np.exp(np.concatenate([np.asarray(c) for c in chunks]))


def _mean_loss(graphdef, params, x: np.ndarray, y: np.ndarray, batch_size: int,
               forward: Callable) -> float:
    probs = _probs(graphdef, params, x, batch_size, forward)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-30))))


def _epoch(train_step: Callable, graphdef, tx, params, opt_state, x_dev, y_dev,
           batches: jax.Array, desc: str) -> tuple[nnx.State, optax.OptState, np.ndarray]:
    """One pass over ``batches``; a per-batch bar with the running loss when a person watches
    (the loss is read back every 20 batches only then, so a CI run never waits on it)."""
    losses = []
    with bar(len(batches), desc) as shown:
        for i in range(len(batches)):
            params, opt_state, loss = train_step(graphdef, tx, params, opt_state,
                                                 x_dev, y_dev, batches[i])
            losses.append(loss)
            if not shown.disable and i % 20 == 0:
                shown.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            shown.update()
    return params, opt_state, np.asarray(jnp.stack(losses))


def _check_inputs(data: Dataset, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Images of the network's shape and labels among its 10 classes, or one clear line."""
    where = f"{data.path}/{split}"
    if x.ndim != 4 or x.shape[1:3] != IMAGE_SHAPE or len(x) == 0:
        raise JaxpipeError(f"{where}: expected (n > 0) images of {IMAGE_SHAPE}, got {x.shape[:3]}")
    bad = np.flatnonzero((y < 0) | (y >= 10))
    if bad.size:
        raise JaxpipeError(f"{where}: row {int(bad[0]) + 1}: label {int(y[bad[0]])} is not one "
                           "of the network's 10 classes (0-9)")


def fit(cfg: Config, data: Dataset) -> Fit:
    """Adam on shuffled minibatches; returns the best-validation parameters and history."""
    train, val = data.split("train"), data.split("val")
    for name, part in (("train", train), ("val", val)):
        _check_inputs(data, name, part.x, part.y)
    x, y = train.x, train.y
    if cfg.max_train_images is not None:
        x, y = x[: cfg.max_train_images], y[: cfg.max_train_images]
    n_batches = len(x) // cfg.batch_size
    if n_batches == 0:
        raise JaxpipeError(f"batch_size {cfg.batch_size} exceeds the {len(x)} training images")
    log.info("%d training images, %d batches of %d per epoch, %d epochs; compiling", len(x),
             n_batches, cfg.batch_size, cfg.epochs)
    graphdef, params = init(cfg.seed)
    tx = optax.adam(cfg.lr)
    opt_state = tx.init(params)
    train_step, forward = compiled_steps(_options(cfg))
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    try:  # compile once up front, so a bad compiler option fails here, clearly
        forward(graphdef, params, x_dev[:1])
    except jax.errors.JaxRuntimeError as exc:
        raise JaxpipeError(f"compiler_options: {str(exc).splitlines()[0]}") from None
    shuffle_key = jax.random.key(cfg.seed + 1)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": []}
    best = (np.inf, 0, params)
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), len(x))
        batches = perm[: n_batches * cfg.batch_size].reshape(n_batches, cfg.batch_size)
        params, opt_state, batch_losses = _epoch(train_step, graphdef, tx, params, opt_state,
                                                 x_dev, y_dev, batches,
                                                 f"epoch {epoch}/{cfg.epochs}")
        check_loss(batch_losses, cfg.max_loss_growth * baseline_loss(TASK, y),
                   (epoch - 1) * n_batches)
        val_loss = _mean_loss(graphdef, params, val.x, val.y, cfg.eval_batch_size, forward)
        history["epoch"].append(epoch)
        history["train_loss"].append(float(batch_losses.mean()))
        history["val_loss"].append(val_loss)
        if val_loss < best[0]:
            best = (val_loss, epoch, jax.tree.map(jnp.copy, params))
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, %.0f images/s", epoch,
                 cfg.epochs, batch_losses.mean(), val_loss,
                 epoch * n_batches * cfg.batch_size / (time.perf_counter() - started))
    info = {"best_epoch": best[1], "best_val_loss": best[0], "train_images": len(x),
            "train_steps": cfg.epochs * n_batches}
    return Fit(best[2], history, info)


def predict(cfg: Config, params: nnx.State, x: np.ndarray) -> np.ndarray:
    """Class probabilities, compiled with the same options as training."""
    forward = compiled_steps(_options(cfg))[1]
    return _probs(_abstract()[0], params, x, cfg.eval_batch_size, forward)


def template(cfg: Config, meta: dict) -> nnx.State:
    """Parameter shapes of the network (``nnx.eval_shape``: nothing is initialised)."""
    return _abstract()[1]


def metrics(cfg: Config, params: nnx.State, info: dict) -> dict:
    """The kept epoch, its validation loss, and how much training it took."""
    return {"best_epoch": info["best_epoch"], "best_val_loss": round(info["best_val_loss"], 6),
            "train_images": info["train_images"], "train_steps": info["train_steps"]}

