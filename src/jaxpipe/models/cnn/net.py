"""The network of system 4 as a Flax NNX module, its loss, and its compiled steps.

Conv 32 (3x3) -> ReLU -> avg pool 2 -> Conv 64 (3x3) -> ReLU -> avg pool 2 -> Dense 256 ->
ReLU -> Dense 10 (log-softmax). The same jitted step runs on one device or data-parallel
over a mesh: the inputs' shardings (batch split, parameters replicated) decide, and XLA's
partitioner adds the gradient all-reduce.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

Options = tuple[tuple[str, str | bool | int], ...]


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
        x = conv3x3(x, self.conv2.kernel[...]) + self.conv2.bias[...]
        x = nnx.avg_pool(nnx.relu(x), window_shape=(2, 2), strides=(2, 2))
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


_NHWC = ("NHWC", "HWIO", "NHWC")
_SAME = ((1, 1), (1, 1))


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 SAME convolution (no bias) whose gradients are written out as two more
    convolutions in XLA's canonical NHWC/HWIO form: the same values as autodiff's (bit for
    bit: tested), and YNNPACK runs them inside a ``lax.scan`` too. Autodiff's own backward
    convolutions are rewritten for YNNPACK only outside loops: inside one, XLA's generic
    convolution ran them and several steps per dispatch were 14x slower."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), _SAME, dimension_numbers=_NHWC)


def _conv3x3_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple]:
    return conv3x3(x, kernel), (x, kernel)


def _conv3x3_bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = res
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # (3, 3, out, in)
    dx = jax.lax.conv_general_dilated(g, flipped, (1, 1), _SAME, dimension_numbers=_NHWC)
    # the weight gradient as a convolution over the batch: input channels as its batch,
    # images as its input channels, the output gradient as its (h x w) window
    dk = jax.lax.conv_general_dilated(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3),
                                      (1, 1), _SAME, dimension_numbers=_NHWC)
    return dx, dk.transpose(1, 2, 0, 3)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def init(seed: int) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and freshly initialised parameters."""
    return nnx.split(CNN(nnx.Rngs(seed)), nnx.Param)


@functools.cache
def abstract() -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and parameter shapes, traced without initialising anything."""
    return nnx.split(nnx.eval_shape(lambda: CNN(nnx.Rngs(0))), nnx.Param)


def _loss(graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array, y: jax.Array) -> jax.Array:
    logp = nnx.merge(graphdef, params)(x)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _batch_step(graphdef, tx, params, opt_state, x, y):
    """One Adam step on the batch ``(x, y)``: the whole batch's mean loss and gradient."""
    loss, grads = jax.value_and_grad(_loss, argnums=1)(graphdef, params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def _indexed_step(graphdef, tx, params, opt_state, x_all, y_all, idx):
    """One step on rows ``idx`` of the training set held on the device(s)."""
    return _batch_step(graphdef, tx, params, opt_state, x_all[idx], y_all[idx])


def _indexed_steps(graphdef, tx, params, opt_state, x_all, y_all, idx):
    """``len(idx)`` steps in one dispatch (a ``lax.scan``), step ``i`` on rows ``idx[i]``;
    the same bytes as as many ``_indexed_step`` calls (tested), and their losses."""
    def one(state, rows):
        params, opt_state, loss = _indexed_step(graphdef, tx, *state, x_all, y_all, rows)
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), idx)
    return params, opt_state, losses


def _log_probs(graphdef, params, x):
    return nnx.merge(graphdef, params)(x)


class Compiled(NamedTuple):
    """The jitted functions of one set of compiler options."""

    indexed: Callable  # a training step on rows gathered from the device-held set
    scanned: Callable  # several such steps in one dispatch (rows: steps x batch)
    forward: Callable  # log-probabilities of a batch
    batch: Callable  # a training step on a batch given as an input (the streaming path)


@functools.cache
def optimizer() -> optax.GradientTransformation:
    """Adam whose learning rate lives in its state, as an array, instead of being a constant
    of the compiled step: every lr runs the same compiled step (an lr sweep compiles once,
    and its later runs hit the persistent compilation cache). One object per process, so
    the step's static arguments stay the same too."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=0.0)


def optimizer_state(params: nnx.State, lr: float) -> optax.OptState:
    """Adam's initial state for ``params``, holding the learning rate ``lr`` (float32)."""
    state = optimizer().init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    return state


def compiled_steps(options: Options = ()) -> Compiled:
    """The jitted training steps (buffers donated) and forward pass, with compiler options."""
    return _compiled(options)


@functools.cache
def _compiled(options: Options) -> Compiled:
    cpu = jax.default_backend() == "cpu"  # a GPU run skips CPU-only (xla_cpu_*) options
    opts = {k: v for k, v in options if cpu or not k.startswith("xla_cpu_")} or None
    donate = ("params", "opt_state")
    indexed = jax.jit(_indexed_step, static_argnames=("graphdef", "tx"),
                      donate_argnames=donate, compiler_options=opts)
    scanned = jax.jit(_indexed_steps, static_argnames=("graphdef", "tx"),
                      donate_argnames=donate, compiler_options=opts)
    forward = jax.jit(_log_probs, static_argnames=("graphdef",), compiler_options=opts)
    batch = jax.jit(_batch_step, static_argnames=("graphdef", "tx"),
                    donate_argnames=donate, compiler_options=opts)
    return Compiled(indexed, scanned, forward, batch)


def probs(graphdef: nnx.GraphDef, params: nnx.State, x: np.ndarray, batch_size: int,
          forward: Callable) -> np.ndarray:
    """Class probabilities for every row of ``x`` (the last partial batch included)."""
    chunks = [forward(graphdef, params, jnp.asarray(x[i:i + batch_size]))
              for i in range(0, len(x), batch_size)]
    return np.exp(np.concatenate([np.asarray(c) for c in chunks]))


def mean_loss(graphdef, params, x: np.ndarray, y: np.ndarray, batch_size: int,
              forward: Callable) -> float:
    """Mean cross-entropy over ``x`` (the validation loss)."""
    p = probs(graphdef, params, x, batch_size, forward)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-30))))
