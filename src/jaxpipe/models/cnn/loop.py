"""One epoch of training, its batches either gathered on the devices from the training set
they hold, or streamed from the Parquet file; both take the same rows in the same order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxpipe.core.console import bar
from jaxpipe.models import phase
from jaxpipe.models.cnn import mesh as meshes
from jaxpipe.models.cnn import net, stream


def batch_order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """The epoch's batches as rows of training-set indices: a permutation keyed by the seed
    and the epoch, cut into whole batches (the last partial one dropped)."""
    perm = jax.random.permutation(jax.random.fold_in(jax.random.key(seed + 1), epoch), n)
    n_batches = n // batch_size
    return np.asarray(perm[: n_batches * batch_size]).reshape(n_batches, batch_size)


STEPS_PER_CALL = 10  # training steps per dispatch of the device-held set's scanned step


class InMemory:
    """The training set copied whole onto every device of the mesh; each step gathers its
    batch by index there, ``STEPS_PER_CALL`` steps a dispatch (one ``lax.scan``, the same
    bytes as one step a call), so the host only dispatches every tenth step."""

    def __init__(self, mesh: Mesh, x: np.ndarray, y: np.ndarray, options: net.Options) -> None:
        self.mesh = mesh
        self.x, self.y = meshes.replicated(mesh, (x, y))
        self.step = net.compiled_steps(options).scanned

    def steps(self, order: np.ndarray) -> Iterator[tuple[jax.Array, ...]]:
        """Per call: the set, and the rows of its steps. The first call takes what is left
        over (n_batches % STEPS_PER_CALL, if any), so the epoch ends on a call of the shape
        compiled first and its wait is timed as training, not as compiling."""
        first = len(order) % STEPS_PER_CALL or STEPS_PER_CALL
        for start in [0, *range(first, len(order), STEPS_PER_CALL)]:
            rows = order[start:first if start == 0 else start + STEPS_PER_CALL]
            yield self.x, self.y, meshes.split_rows(self.mesh, rows, axis=1)


class Streamed:
    """Batches read from the Parquet file, this process's share only, placed as one global
    batch split over the mesh; one step a call."""

    def __init__(self, mesh: Mesh, source: stream.ImageRows, budget_bytes: int,
                 batch_size: int, options: net.Options) -> None:
        self.mesh, self.source, self.batch_size = mesh, source, batch_size
        self.share = meshes.local_rows(mesh, batch_size)
        rows = self.share.stop - self.share.start
        self.window = stream.window_batches(budget_bytes, rows, int(np.prod(source.shape)))
        self.step = net.compiled_steps(options).batch

    def steps(self, order: np.ndarray) -> Iterator[tuple[jax.Array, ...]]:
        for x, y in stream.batches(self.source, order, self.share, self.window):
            yield (meshes.from_local_rows(self.mesh, x, self.batch_size),
                   meshes.from_local_rows(self.mesh, y, self.batch_size))


_called: set[tuple[int, tuple]] = set()  # (step, shapes) already compiled in this process


class RunningMean:
    """The mean of every batch loss so far (batches are of one size, so the epoch's mean
    loss), reading back only the losses not yet read (one array of losses a call)."""

    def __init__(self) -> None:
        self.total, self.read, self.count = 0.0, 0, 0

    def add(self, losses: list[Any]) -> float:
        fresh = [np.asarray(a, np.float64) for a in jax.device_get(losses[self.read:])]
        self.total += float(sum(a.sum() for a in fresh))
        self.count += sum(a.size for a in fresh)
        self.read = len(losses)
        return self.total / max(self.count, 1)


def run_epoch(step: Callable, graphdef: Any, tx: Any, params: Any, opt_state: Any,
              inputs: Iterator[tuple[jax.Array, ...]], n_batches: int, desc: str
              ) -> tuple[Any, Any, np.ndarray]:
    """One pass of ``n_batches`` steps, one or several a call (``inputs`` yields each call's
    arguments); a per-batch bar with the epoch's mean loss so far when a person watches
    (the losses are read back about every 20 batches only then, so a CI run never waits on
    them); over several CPU devices each call is waited for (``mesh.pace``). Timed as each
    call of a new shape (tracing and compiling the step, once per process) and the rest,
    up to the losses read back."""
    losses = []
    running = RunningMean()
    done = shown_at = 0
    with bar(n_batches, desc) as shown:
        for args in inputs:
            key = (id(step), tuple(a.shape for a in args))
            # a call returns once its program is compiled and dispatched: a new shape's call
            # is timed as compiling, the waiting for its work (below) as training
            with phase("compile the step" if key not in _called else "train steps"):
                params, opt_state, loss = step(graphdef, tx, params, opt_state, *args)
            with phase("train steps"):
                losses.append(jnp.atleast_1d(loss.addressable_shards[0].data))
                meshes.pace(loss)  # XLA:CPU deadlocks an all-reduce otherwise
                taken = losses[-1].shape[0]
                if done + taken == n_batches:  # the phase ends when the epoch's work is done
                    jax.block_until_ready(loss)
            _called.add(key)
            done += taken
            if not shown.disable and (done - shown_at >= 20 or done == n_batches):
                shown_at = done
                shown.set_postfix(loss=f"{running.add(losses):.4f}", refresh=False)
            shown.update(taken)
    if done != n_batches:
        raise RuntimeError(f"an epoch ran {done} steps, not {n_batches}")
    return params, opt_state, np.asarray(jnp.concatenate(losses))
