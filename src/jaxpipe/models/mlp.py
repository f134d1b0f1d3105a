"""The XOR network of system 2: ``y = sigmoid(tanh(x.W1 + b1).w2 + b2)``.

Init exactly as the write-up: ``key = key(seed)``; ``subkey, key = split(key)``; split
``subkey`` into four and draw W1, b1, w2, b2 from ``normal`` in that order. Plain gradient
descent; every ``check_every`` steps stop if all four outputs are right. The whole loop,
stopping rule included, is one compiled ``lax.while_loop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxpipe.core.config import MAX_STEPS, check, in_range
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Task, TrainConfig, data_product

MAX_HIDDEN = 4096  # hidden units: far above XOR's 3, far below what exhausts memory

Params = dict[str, jax.Array]
TASK: Task = "binary"


@dataclass(frozen=True)
class Config(TrainConfig):
    """params.yaml ``train.<model>`` for kind ``mlp``."""

    seed: int = 9
    hidden: int = 3
    lr: float = 1.0
    eps: float = 1e-10
    check_every: int = 10
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.check_every > 0, "check_every", "must be positive")
        check(self.max_steps >= self.check_every, "max_steps", "must be >= check_every")
        in_range(self.max_steps, "max_steps", 1, MAX_STEPS)
        in_range(self.hidden, "hidden", 1, MAX_HIDDEN)
        check(self.eps > 0, "eps", "must be positive")


def init(cfg: Config, n_features: int) -> Params:
    key = jax.random.key(cfg.seed)
    subkey, key = jax.random.split(key)
    k1, k2, k3, k4 = jax.random.split(subkey, 4)
    return {"W1": jax.random.normal(k1, (n_features, cfg.hidden)),
            "b1": jax.random.normal(k2, (cfg.hidden,)),
            "w2": jax.random.normal(k3, (cfg.hidden,)),
            "b2": jax.random.normal(k4, ())}


def forward(params: Params, x: jax.Array, x_t: jax.Array | None = None) -> jax.Array:
    """Probability of class 1 (``x_t``: ``x`` transposed, for a CPU-independent gradient)."""
    first = x @ params["W1"] if x_t is None else data_product(x, x_t, params["W1"])
    z = jnp.tanh(first + params["b1"])
    return jax.nn.sigmoid(z @ params["w2"] + params["b2"])


def loss(params: Params, x: jax.Array, y: jax.Array, eps: float,
         x_t: jax.Array | None = None) -> jax.Array:
    p = forward(params, x, x_t)
    return -jnp.mean(y * jnp.log(p + eps) + (1 - y) * jnp.log(1 - p + eps))


@partial(jax.jit, static_argnames=("check_every", "max_steps"))
def _loop(params: Params, x, x_t, y, lr, eps, check_every: int, max_steps: int):
    grad = jax.value_and_grad(loss)
    chunks = max_steps // check_every
    losses = jnp.full((chunks * check_every,), jnp.nan)

    def step(i, carry):
        p, losses, base = carry
        loss, g = grad(p, x, y, eps, x_t)
        p = jax.tree.map(lambda a, b: a - lr * b, p, g)
        return p, losses.at[base + i].set(loss), base

    def chunk(state):
        n, p, losses, _ = state
        p, losses, _ = jax.lax.fori_loop(0, check_every, step, (p, losses, n * check_every))
        done = jnp.all((forward(p, x) > 0.5) == (y > 0.5))
        return n + 1, p, losses, done

    def more(state):
        n, _, _, done = state
        return (n < chunks) & ~done

    n, params, losses, done = jax.lax.while_loop(more, chunk, (0, params, losses, False))
    return params, losses, n * check_every, done


def fit(cfg: Config, data: Dataset) -> Fit:
    """Train until all four are right (checked every ``check_every`` steps) or ``max_steps``."""
    train = data.split("train")
    params = init(cfg, train.x.shape[1])
    y = jnp.asarray(train.y, jnp.float32)
    params, losses, steps, done = _loop(params, train.x, np.ascontiguousarray(train.x.T), y,
                                        cfg.lr, cfg.eps, cfg.check_every, cfg.max_steps)
    steps = int(steps)
    info = {"steps": steps, "converged": bool(done), "final_loss": float(losses[steps - 1])}
    return Fit(params, {"train_loss": losses[:steps]}, info)


def predict(cfg: Config, params: Params, x: np.ndarray) -> np.ndarray:
    """Probability of class 1, computed by XLA as in training."""
    return np.asarray(forward(params, jnp.asarray(x)))


def metrics(cfg: Config, params: Params, info: dict) -> dict:
    """Steps to converge (a multiple of ``check_every``), whether it did, the final loss."""
    return {"steps_to_converge": info["steps"], "converged": int(info["converged"]),
            "final_loss": round(float(info["final_loss"]), 6)}
