"""``jaxpipe.models.cnn.mesh`` in-process: the device mesh, how a run joins the processes
its environment names, and each process's share of a batch (runs on several devices and
processes are tests/test_distributed.py's)."""

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
