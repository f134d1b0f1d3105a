"""Data-parallel training on a mesh of forced CPU devices, and two processes joined by
jax.distributed on 127.0.0.1 training one model (each run in subprocesses: the device
count is fixed once JAX starts).

Declared tolerance, N devices against one: the gradient's batch mean is summed in another
order (per-device partial sums, then an all-reduce), so float32 results differ in the last
bits, and Adam, which divides by the gradient's running RMS, carries that on. Over these 16
steps the parameters stay within ATOL (a tenth of one Adam step, lr = 1e-3; 1.5e-5 is
typical), validation losses within 1e-5 relative, and every validation prediction agrees.
(XLA sizes its CPU thread pool max(PJRT_NPROC, devices): past 2 forced devices even a one-
device mesh splits some reductions differently, so it too is held to the tolerance.)

A mesh also trains to the end while other processes keep every core busy: XLA:CPU deadlocked
an all-reduce when the host dispatched far ahead of the devices (``mesh.pace`` says how),
which tiny streamed steps do at once. And a device that really never reaches an all-reduce
ends, under ``jaxpipe.launch``, as one error line, not XLA's stack dump.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_stream import write_images

from jaxpipe.artifacts import load_model, load_trained
from jaxpipe.data.tables import load_dataset
from jaxpipe.models import cnn

ATOL = 1e-4
SCRIPT = r"""
import json, sys
import jaxpipe
import jax
from jaxpipe.artifacts import save_trained
from jaxpipe.data.tables import load_dataset
from jaxpipe.models import cnn
data_dir, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
data = load_dataset(data_dir)
for name, kw in runs.items():
    cfg = cnn.Config(**{"epochs": 2, "batch_size": 32, "eval_batch_size": 100, **kw})
    fit = cnn.fit(cfg, data)
    if jax.process_index() == 0:
        save_trained(f"{out}/{name}.safetensors", "cnn_mnist", "cnn", cfg, fit, data.inputs)
"""


# one device's share of an all-reduce held back past XLA's termination timeout
LATE = r"""
import time
import jaxpipe
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P

def late(i):
    if int(i[0]) == 1:
        time.sleep(60)
    return i

def body(i):
    return jax.lax.psum(jax.pure_callback(late, jax.ShapeDtypeStruct(i.shape, i.dtype), i), "d")

mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P("d"), out_specs=P()))(jnp.arange(2))
"""
BUSY = "import time\nend = time.monotonic() + 300\nwhile time.monotonic() < end:\n    pass\n"


def _run(prefix: list[str], data: Path, out: Path, runs: dict, **env: str) -> None:
    proc = subprocess.run([*prefix, sys.executable, "-c", SCRIPT, str(data), str(out),
                           json.dumps(runs)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]


def _launch(devices: int) -> list[str]:
    """One process under jaxpipe.launch, with ``devices`` forced CPU devices."""
    return [sys.executable, "-m", "jaxpipe.launch", "--processes", "1", "--cpu-devices",
            str(devices), "--timeout-s", "200", "--"]


def _assert_within_tolerance(got: Path, base: Path, val_x: np.ndarray) -> None:
    (a, meta_a), (b, meta_b) = load_model(got), load_model(base)
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=ATOL, err_msg=name)
    assert meta_a["info"]["best_epoch"] == meta_b["info"]["best_epoch"]
    np.testing.assert_allclose(meta_a["info"]["best_val_loss"], meta_b["info"]["best_val_loss"],
                               rtol=1e-5)
    classes = [cnn.predict(cnn.Config(), load_trained(f).params, val_x).argmax(1)
               for f in (got, base)]
    np.testing.assert_array_equal(*classes)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Another process per core, each busy until it is killed (or 300 s at most)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(max(2, cores or 2))]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


@pytest.fixture(scope="module")
def alone(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the default devices: 1 in a process that sees one CPU device."""
    out = tmp_path_factory.mktemp("alone")
    _run([], data, out, {"d1": {}}, JAX_NUM_CPU_DEVICES="1")
    return out / "d1.safetensors"


def test_mesh_of_2_and_4_forced_devices_trains_the_one_device_model(
        data: Path, alone: Path, tmp_path: Path) -> None:
    _run([], data, tmp_path, {f"d{n}": {"devices": n} for n in (2, 4)},
         JAX_NUM_CPU_DEVICES="4")
    val_x = load_dataset(data).split("val").x
    for n in (2, 4):
        _assert_within_tolerance(tmp_path / f"d{n}.safetensors", alone, val_x)


@pytest.mark.e2e  # three training processes, two joined by jax.distributed
def test_two_processes_train_one_model_and_process_0_writes_it(
        data: Path, alone: Path, tmp_path: Path) -> None:
    launch = [sys.executable, "-m", "jaxpipe.launch", "--processes", "2", "--cpu-devices",
              "1", "--timeout-s", "200", "--"]
    runs = {"held": {"devices": 2}, "streamed": {"devices": "all", "memory_budget_mb": 0.1}}
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    _run(launch, data, two, runs)
    _run([], data, one, {"d2": {"devices": 2}, "d1": {}}, JAX_NUM_CPU_DEVICES="2")
    reference = load_model(one / "d2.safetensors")[0]
    for name in reference:  # a two-way all-reduce adds the same two numbers either way
        for run in ("held", "streamed"):
            np.testing.assert_array_equal(load_model(two / f"{run}.safetensors")[0][name],
                                          reference[name], err_msg=f"{run} {name}")
    _assert_within_tolerance(two / "held.safetensors", alone, load_dataset(data).split("val").x)
    d1, d1_alone = load_model(one / "d1.safetensors")[0], load_model(alone)[0]
    for name in d1:  # devices: 1 keeps its bytes with up to PJRT_NPROC (2) CPU devices seen
        np.testing.assert_array_equal(d1[name], d1_alone[name], err_msg=name)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("many"), n_train=2048)


@pytest.mark.e2e  # a training process against a busy process per core, 15-35 s
@pytest.mark.parametrize("devices", [2, 4])
def test_a_mesh_trains_to_the_end_while_other_processes_keep_every_core_busy(
        devices: int, many: Path, busy_cores: None, tmp_path: Path) -> None:
    """One image per device per step, streamed: unpaced, the host ran 32 programs ahead of
    the devices within a few steps, and XLA aborted the process (SIGABRT, 40 s after an
    all-reduce lost a device's thread) in every run measured: 10 of 10 with 2 devices, 6 of
    6 with 4. Paced, about 15-35 s each here."""
    run = {"devices": devices, "epochs": 1, "batch_size": devices, "memory_budget_mb": 1}
    _run(_launch(devices), many, tmp_path, {"busy": run})
    info = load_model(tmp_path / "busy.safetensors")[1]["info"]
    assert info["train_steps"] == 2048 // devices


def test_a_device_that_never_reaches_the_all_reduce_ends_in_one_error_line() -> None:
    flags = ("--xla_cpu_collective_call_warn_stuck_timeout_seconds=1 "
             "--xla_cpu_collective_call_terminate_timeout_seconds=2")
    proc = subprocess.run([*_launch(2), sys.executable, "-c", LATE], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "XLA_FLAGS": flags})
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [proc.stderr.splitlines()[-1]]
    assert errors[0].startswith("error: 1 processes: process 0 was killed by SIGABRT: XLA: "
                                "Termination timeout for `all reduce` of 2 seconds exceeded.")
    assert "Expected 2 threads to join the rendezvous, but only 1 of them" in errors[0]
    assert "stack trace" not in proc.stderr and " @ " not in proc.stderr
