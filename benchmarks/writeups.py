"""The write-ups' own training loops (un-jitted, as published), to time jaxpipe against."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def logreg_loop(x: np.ndarray, y: np.ndarray, steps: int = 100, lr: float = 0.1,
                lam: float = 0.1) -> list[float]:
    """System 1 as written: two separate un-jitted ``grad`` calls per step, loss recorded."""
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.float32)

    def loss(c, w, xs, ys):
        p = jax.nn.sigmoid(xs @ w + c)
        return -jnp.mean(ys * jnp.log(p) + (1 - ys) * jnp.log(1 - p)) + 0.5 * lam * (
            w @ w + c * c)

    w, c = jnp.full(x.shape[1], 1e-5), 1.0
    losses = []
    for _ in range(steps):
        grad_c = jax.grad(loss, argnums=0)(c, w, x, y)
        grad_w = jax.grad(loss, argnums=1)(c, w, x, y)
        c, w = c - lr * grad_c, w - lr * grad_w
        losses.append(float(loss(c, w, x, y)))
    return losses


def _xor_params(seed: int = 9) -> dict:
    key = jax.random.key(seed)
    subkey, key = jax.random.split(key)
    k1, k2, k3, k4 = jax.random.split(subkey, 4)
    return {"W1": jax.random.normal(k1, (2, 3)), "b1": jax.random.normal(k2, (3,)),
            "w2": jax.random.normal(k3, (3,)), "b2": jax.random.normal(k4, ())}


def _xor_loss(p, x, y):
    out = jax.nn.sigmoid(jnp.tanh(x @ p["W1"] + p["b1"]) @ p["w2"] + p["b2"])
    return -jnp.mean(y * jnp.log(out + 1e-10) + (1 - y) * jnp.log(1 - out + 1e-10))


def xor_step(p, x, y, lr: float = 1.0):
    """One plain gradient-descent step (jit it or not)."""
    g = jax.grad(_xor_loss)(p, x, y)
    return jax.tree.map(lambda a, b: a - lr * b, p, g)


def xor_loop(step, max_steps: int = 10_000) -> int:
    """The write-up's loop: a step at a time, checking every 10 steps; returns steps taken."""
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.array([0, 1, 1, 0], jnp.float32)
    p = _xor_params()
    for i in range(1, max_steps + 1):
        p = step(p, x, y)
        if i % 10 == 0:
            out = jax.nn.sigmoid(jnp.tanh(x @ p["W1"] + p["b1"]) @ p["w2"] + p["b2"])
            if bool(jnp.all((out > 0.5) == (y > 0.5))):
                return i
    return max_steps


def linreg_loop(x: np.ndarray, y: np.ndarray, steps: int, lr: float = 0.01,
                batch: int = 100, seed: int = 0) -> np.ndarray:
    """System 3 as written: an un-jitted grad per step on a bootstrap minibatch."""
    rng = np.random.default_rng(seed)

    def rmse(params, xs, ys):
        return jnp.sqrt(jnp.mean((xs @ params["w"] + params["b"] - ys) ** 2))

    params = {"w": jnp.asarray(rng.normal(size=x.shape[1]), jnp.float32), "b": jnp.float32(0)}
    for _ in range(steps):
        idx = rng.integers(0, len(x), size=batch)
        g = jax.grad(rmse)(params, x[idx], y[idx])
        params = jax.tree.map(lambda a, b: a - lr * b, params, g)
    return np.asarray(params["w"])
