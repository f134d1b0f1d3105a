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


class InMemory:
    """The training set copied whole onto every device of the mesh; each step gathers its
    batch by index there, so the host loop only dispatches."""

    def __init__(self, mesh: Mesh, x: np.ndarray, y: np.ndarray, options: net.Options) -> None:
        self.mesh = mesh
        self.x, self.y = meshes.replicated(mesh, (x, y))
        self.step = net.compiled_steps(options).indexed

    def steps(self, order: np.ndarray) -> Iterator[tuple[jax.Array, ...]]:
        batches = meshes.split_rows(self.mesh, order, axis=1)
        for i in range(len(order)):
            yield self.x, self.y, batches[i]


class Streamed:
    """Batches read from the Parquet file, this process's share only, placed as one global
    batch split over the mesh."""

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


_called: set[int] = set()  # steps already called (compiled) in this process


class RunningMean:
    """The mean of every batch loss so far (batches are of one size, so the epoch's mean
    loss), reading back only the losses not yet read."""

    def __init__(self) -> None:
        self.total, self.read = 0.0, 0

    def add(self, losses: list[Any]) -> float:
        fresh = np.asarray(jax.device_get(losses[self.read:]), np.float64)
        self.total += float(fresh.sum())
        self.read = len(losses)
        return self.total / max(self.read, 1)


def run_epoch(step: Callable, graphdef: Any, tx: Any, params: Any, opt_state: Any,
              inputs: Iterator[tuple[jax.Array, ...]], n_batches: int, desc: str
              ) -> tuple[Any, Any, np.ndarray]:
    """One pass; a per-batch bar with the epoch's mean loss so far when a person watches
    (the losses are read back every 20 batches only then, so a CI run never waits on them);
    over several CPU devices each step is waited for (``mesh.pace``). Timed as the
    first call (tracing and compiling the step, once per process) and the rest, up to the
    losses read back."""
    losses = []
    running = RunningMean()
    batches = iter(inputs)
    with bar(n_batches, desc) as shown:
        for i in range(n_batches):
            first = id(step) not in _called
            with phase("compile the step" if first else "train steps"):
                params, opt_state, loss = step(graphdef, tx, params, opt_state, *next(batches))
                losses.append(loss.addressable_shards[0].data)
                meshes.pace(loss)  # XLA:CPU deadlocks an all-reduce otherwise
                if i + 1 == n_batches:  # the phase ends when the epoch's work is done
                    jax.block_until_ready(loss)
            _called.add(id(step))
            if not shown.disable and (i % 20 == 0 or i + 1 == n_batches):
                shown.set_postfix(loss=f"{running.add(losses):.4f}", refresh=False)
            shown.update()
    return params, opt_state, np.asarray(jnp.stack(losses))
