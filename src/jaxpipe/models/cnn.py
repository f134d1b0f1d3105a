"""The MNIST CNN of system 4 as a Flax NNX module, trained with Optax Adam.

Conv 32 (3x3) -> ReLU -> avg pool 2 -> Conv 64 (3x3) -> ReLU -> avg pool 2 -> Dense 256 ->
ReLU -> Dense 10 (log-softmax). The data set stays on the device; each jitted step gathers
its batch by index, so the host loop only dispatches. The parameters with the lowest
validation loss are kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpipe.cli import progress
from jaxpipe.config import check
from jaxpipe.errors import JaxpipeError
from jaxpipe.models.guard import check_finite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CNNConfig:
    """params.yaml ``train.<model>`` for kind ``cnn``."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_train_images: int | None = None
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
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
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return nnx.log_softmax(self.fc2(x))


def cnn_template(seed: int = 0) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and freshly initialised parameters."""
    return nnx.split(CNN(nnx.Rngs(seed)), nnx.Param)


def _loss(graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array, y: jax.Array) -> jax.Array:
    logp = nnx.merge(graphdef, params)(x)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


@partial(jax.jit, static_argnames=("graphdef", "tx"), donate_argnames=("params", "opt_state"))
def _train_step(graphdef, tx, params, opt_state, x_all, y_all, idx):
    loss, grads = jax.value_and_grad(_loss, argnums=1)(graphdef, params, x_all[idx], y_all[idx])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@partial(jax.jit, static_argnames=("graphdef",))
def _log_probs(graphdef, params, x):
    return nnx.merge(graphdef, params)(x)


def cnn_predict(graphdef: nnx.GraphDef, params: nnx.State, x: np.ndarray,
                batch_size: int = 1000) -> np.ndarray:
    """Class probabilities for every row of ``x`` (the last partial batch included)."""
    chunks = [_log_probs(graphdef, params, jnp.asarray(x[i:i + batch_size]))
              for i in range(0, len(x), batch_size)]
    return np.exp(np.concatenate([np.asarray(c) for c in chunks]))


def _mean_loss(graphdef, params, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    probs = cnn_predict(graphdef, params, x, batch_size)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-30))))


def cnn_fit(cfg: CNNConfig, x, y, x_val, y_val) -> tuple[nnx.State, dict, dict]:
    """Adam on shuffled minibatches; returns the best-validation parameters and history."""
    if cfg.max_train_images is not None:
        x, y = x[: cfg.max_train_images], y[: cfg.max_train_images]
    n_batches = len(x) // cfg.batch_size
    if n_batches == 0:
        raise JaxpipeError(f"batch_size {cfg.batch_size} exceeds the {len(x)} training images")
    graphdef, params = cnn_template(cfg.seed)
    tx = optax.adam(cfg.lr)
    opt_state = tx.init(params)
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    shuffle_key = jax.random.key(cfg.seed + 1)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": []}
    best = (np.inf, 0, params)
    started = time.perf_counter()
    for epoch in progress(range(1, cfg.epochs + 1), cfg.epochs, "epochs", every=0):
        perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), len(x))
        batches = perm[: n_batches * cfg.batch_size].reshape(n_batches, cfg.batch_size)
        losses = []
        for i in range(n_batches):
            params, opt_state, loss = _train_step(graphdef, tx, params, opt_state,
                                                  x_dev, y_dev, batches[i])
            losses.append(loss)
        batch_losses = np.asarray(jnp.stack(losses))
        check_finite(batch_losses, (epoch - 1) * n_batches)
        val_loss = _mean_loss(graphdef, params, x_val, y_val, cfg.eval_batch_size)
        history["epoch"].append(epoch)
        history["train_loss"].append(float(batch_losses.mean()))
        history["val_loss"].append(val_loss)
        if val_loss < best[0]:
            best = (val_loss, epoch, jax.tree.map(jnp.copy, params))
        log.info("epoch %d: train loss %.4f, val loss %.4f, %.0f images/s", epoch,
                 batch_losses.mean(), val_loss,
                 epoch * n_batches * cfg.batch_size / (time.perf_counter() - started))
    info = {"best_epoch": best[1], "best_val_loss": best[0], "train_images": len(x),
            "train_steps": cfg.epochs * n_batches}
    return best[2], history, info

