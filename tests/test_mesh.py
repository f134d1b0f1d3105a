"""``jaxpipe.models.cnn.mesh`` in-process: the device mesh, how a run joins the processes
its environment names, and each process's share of a batch (runs on several devices and
processes are tests/test_distributed.py's)."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import jax
import pytest
from jax._src import xla_bridge

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.models.cnn import mesh
from jaxpipe.models.cnn.mesh import data_mesh, join_processes


def test_a_mesh_of_all_devices_holds_every_visible_one() -> None:
    assert data_mesh("all").devices.size == jax.device_count()
    assert data_mesh(1).devices.size == 1


JOIN_ENV = ("JAXPIPE_DISTRIBUTED", "JAXPIPE_NUM_PROCESSES", "JAXPIPE_PROCESS_ID",
            "JAX_COORDINATOR_ADDRESS", "JAXPIPE_JOIN_TIMEOUT_S")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"JAXPIPE_NUM_PROCESSES": "3", "JAXPIPE_PROCESS_ID": "2", "JAXPIPE_JOIN_TIMEOUT_S": "9",
      "JAX_COORDINATOR_ADDRESS": "127.0.0.1:7001"},
     {"coordinator_address": "127.0.0.1:7001", "num_processes": 3, "process_id": 2,
      "initialization_timeout": 9}),
    ({"JAXPIPE_NUM_PROCESSES": "2"},
     {"coordinator_address": None, "num_processes": 2, "process_id": 0,
      "initialization_timeout": 300}),
    ({"JAXPIPE_DISTRIBUTED": "auto"}, {}),
])
def test_a_run_joins_with_the_processes_its_environment_names(
        monkeypatch: pytest.MonkeyPatch, env: dict, expected: dict | None) -> None:
    """What the environment hands ``jax.distributed.initialize`` (the join itself, two real
    processes on 127.0.0.1, is tests/test_distributed.py's; this process's JAX has started,
    so the initialisation is recorded here, not run)."""
    calls: list[dict] = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    for name in JOIN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    join_processes()
    assert calls == ([] if expected is None else [expected])


def test_a_join_after_jax_started_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    jax.numpy.zeros(1).block_until_ready()  # JAX's backend is up
    monkeypatch.setenv("JAXPIPE_NUM_PROCESSES", "2")
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    with pytest.raises(JaxpipeError, match="must join before JAX computes anything"):
        join_processes()
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    join_processes()  # already joined: nothing to do


@pytest.mark.parametrize(("index", "rows"), [(0, (0, 16)), (1, (16, 32)), (3, (48, 64))])
def test_each_process_streams_its_own_quarter_of_a_batch(monkeypatch: pytest.MonkeyPatch,
                                                         index: int, rows: tuple) -> None:
    """Four processes share a 64-image batch in process order (the four-process run itself
    is tests/test_distributed.py's; one process here plays each rank in turn)."""
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    monkeypatch.setattr(jax, "process_index", lambda: index)
    assert mesh.local_rows(None, 64) == slice(*rows)


PACED = """
import json
import jax, jax.numpy as jnp, numpy as np
from jaxpipe.models.cnn import mesh

def step(a, w):  # ~0.3 s a call here, its mean an all-reduce over the mesh, as a loss is
    return jnp.mean(jax.lax.fori_loop(0, 60, lambda i, b: jnp.tanh(b @ w), a))

seen = {}
for devices in (2, 1):
    grid = mesh.data_mesh(devices)
    x = mesh.split_rows(grid, np.random.default_rng(0).normal(size=(512, 512)).astype("f4"))
    w = mesh.replicated(grid, np.eye(512, dtype="f4") * 0.5)
    f = jax.jit(step)
    jax.block_until_ready(f(x, w))  # compiled
    out = f(x, w)
    mesh.pace(out)
    seen[devices] = [len(out.sharding.device_set), out.is_ready()]
print(json.dumps(seen))
"""


def test_pace_waits_for_a_step_over_several_cpu_devices_and_not_over_one() -> None:
    """Two real CPU devices in a process of their own (this one's JAX has started): after
    ``pace`` the step's all-reduced output is computed; on one device ``pace`` returns at
    once, the step still running."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", PACED], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen == {"2": [2, True], "1": [1, False]}


@dataclass(frozen=True)
class _Device:
    id: int
    platform: str
    process_index: int = 0


@pytest.mark.parametrize(("devices", "waits"), [
    ((_Device(0, "cpu"), _Device(1, "cpu", 1)), False),  # one here: launched on this thread
    ((_Device(0, "gpu"), _Device(1, "gpu")), False),
    ((_Device(0, "cpu"),), False),
    ((_Device(0, "cpu"), _Device(1, "cpu"), _Device(2, "cpu", 1)), True),
])
def test_pace_waits_only_over_several_cpu_devices_of_this_process(
        monkeypatch: pytest.MonkeyPatch, devices: tuple, waits: bool) -> None:
    """The devices this test machine lacks (GPUs, another process's), as the array names
    them; whether ``pace`` waits is whether it blocks on the array."""
    waited: list = []
    monkeypatch.setattr(jax, "block_until_ready", waited.append)
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    out = SimpleNamespace(sharding=SimpleNamespace(device_set=set(devices)))
    mesh.pace(out)
    assert waited == ([out] if waits else [])
