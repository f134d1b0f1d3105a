"""Data parallelism with JAX's own runtime: a one-axis device mesh, and joining several
processes with ``jax.distributed`` (gloo collectives on CPU, NCCL on GPU).

The batch is split along the mesh's ``data`` axis and the parameters are replicated; the
same jitted step runs on one device or many, and XLA inserts the gradient all-reduce.

A run joins other processes when the environment says so, before JAX starts its backend:

- ``JAXPIPE_NUM_PROCESSES``, ``JAXPIPE_PROCESS_ID`` and ``JAX_COORDINATOR_ADDRESS``
  (``jaxpipe.launch`` sets them for local processes; a Kubernetes Job can set them too);
- or ``JAXPIPE_DISTRIBUTED=auto``: JAX detects Slurm, Open MPI or a Kubernetes indexed Job.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpipe.core.errors import ConfigError, JaxpipeError

log = logging.getLogger(__name__)
AXIS = "data"
Devices = int | Literal["all"]


def join_processes() -> None:
    """Call ``jax.distributed.initialize`` once if the environment asks for several
    processes; a no-op otherwise (one process, as ``dvc repro`` runs a stage)."""
    env = os.environ
    auto = env.get("JAXPIPE_DISTRIBUTED") == "auto"
    if not auto and env.get("JAXPIPE_NUM_PROCESSES", "1") == "1":
        return  # one process (``jaxpipe.launch -n 1``, too) has no one to join
    if jax.distributed.is_initialized():
        return
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise JaxpipeError("a multi-process run must join before JAX computes anything")
    if auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=env.get("JAX_COORDINATOR_ADDRESS"),
            num_processes=int(env["JAXPIPE_NUM_PROCESSES"]),
            process_id=int(env.get("JAXPIPE_PROCESS_ID", "0")),
            initialization_timeout=int(env.get("JAXPIPE_JOIN_TIMEOUT_S", "300")))
    log.info("process %d of %d joined; %d devices in all, %d here", jax.process_index(),
             jax.process_count(), jax.device_count(), jax.local_device_count())


def data_mesh(devices: Devices) -> Mesh:
    """A mesh of ``devices`` devices (``"all"``: every visible one) along the ``data`` axis,
    the same number from each process, in process order."""
    procs, total = jax.process_count(), jax.device_count()
    n = total if devices == "all" else devices
    if n > total:
        raise ConfigError(f"devices: {n} asked, {total} visible (on CPU, force more with "
                          "JAX_NUM_CPU_DEVICES)")
    if n % procs:
        raise ConfigError(f"devices: {n} is not a multiple of the {procs} processes")
    per_process: dict[int, list[jax.Device]] = {}
    for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        per_process.setdefault(d.process_index, []).append(d)
    chosen = [d for p in sorted(per_process) for d in per_process[p][: n // procs]]
    return Mesh(np.array(chosen), (AXIS,))


def pace(out: jax.Array) -> None:
    """Wait until ``out`` (a step's output) is computed, if it spans several CPU devices of
    this process; return at once otherwise. Waiting changes no result.

    XLA:CPU (jaxlib 0.10.2) runs both halves of a multi-device program on one client thread
    pool of max(PJRT_NPROC, devices) threads: the launch of each device's share (its
    launchers wait there for one another, and while their device has 32 programs in
    flight) and each device's execution (which waits at an all-reduce for every other
    device's). A launch dispatched while the previous program still runs can so take the
    thread that one device's execution needs: the other devices wait at the all-reduce
    until XLA aborts the process (SIGABRT, 40 s). A training loop that calls this after
    each step never launches a program while an all-reduce is under way. One device per
    process launches on the calling thread (no such wait), and the GPU client launches in
    its own way (not examined here): no wait there."""
    local = [d for d in out.sharding.device_set if d.process_index == jax.process_index()]
    if len(local) > 1 and local[0].platform == "cpu":
        jax.block_until_ready(out)


def replicated(mesh: Mesh, tree: Any) -> Any:
    """Every leaf (host or device) copied whole onto every device of the mesh."""
    sharding = NamedSharding(mesh, P())

    def put(leaf: Any) -> jax.Array:
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def split_rows(mesh: Mesh, rows: np.ndarray, axis: int = 0) -> jax.Array:
    """A global array from the same host array on every process, cut along ``axis`` over
    the ``data`` axis (each device holds its contiguous share)."""
    spec = P(*([None] * axis), AXIS)
    return jax.make_array_from_callback(rows.shape, NamedSharding(mesh, spec),
                                        lambda index: rows[index])


def from_local_rows(mesh: Mesh, local: np.ndarray, global_rows: int) -> jax.Array:
    """A global batch from this process's contiguous share of its rows."""
    return jax.make_array_from_process_local_data(
        NamedSharding(mesh, P(AXIS)), local, (global_rows, *local.shape[1:]))


def local_rows(mesh: Mesh, global_rows: int) -> slice:
    """The rows of a global batch that this process's devices hold."""
    share = global_rows // jax.process_count()
    start = share * jax.process_index()
    return slice(start, start + share)


def local_copy(tree: Any) -> Any:
    """A replicated tree as fresh arrays on this process's first device of the mesh (for
    validation, and to keep the best epoch's parameters past buffer donation)."""
    return jax.tree.map(lambda a: jax.numpy.copy(a.addressable_shards[0].data), tree)
