"""Experiment fan-out on one machine: two queued CNN experiments run side by side under
``dvc queue start -j 2``, each in its own temporary copy, and both land in ``dvc exp show``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from jaxpipe.tools.workspace import GIT_ENV, dvc

pytestmark = pytest.mark.e2e
DEADLINE_S = 900
RATES = {"q-slow": "5e-4", "q-fast": "2e-3"}


def _states(output: str, names: dict[str, str]) -> dict[str, str]:
    """Each experiment's status word in a ``dvc queue status`` table."""
    states = {}
    for line in output.splitlines():
        words = line.split()
        for name in names:
            if name in words:
                states[name] = next((w for w in words if w in
                                     ("Queued", "Running", "Success", "Failed")), "?")
    return states


def _named(node: object, name: str) -> dict:
    """The data of experiment ``name`` in ``dvc exp show --json``."""
    todo = [node]
    for _ in range(100_000):  # a bounded walk of the JSON tree
        if not todo:
            break
        item = todo.pop()
        if isinstance(item, dict):
            if item.get("name") == name and "data" in item:
                return item["data"]
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    raise AssertionError(f"experiment {name} not in dvc exp show")


def test_queue_runs_two_cnn_experiments_at_once(pipeline) -> None:
    ws, mirror = pipeline.root, pipeline.mirror
    for name, lr in RATES.items():
        dvc(ws, "exp", "run", "--queue", "-n", name, "-S", f"train.cnn_mnist.lr={lr}",
            mirror=mirror)
    # the workers hold on to the starter's output pipes, so run it with no pipes to wait on
    env = {**os.environ, **GIT_ENV, "JAXPIPE_MIRROR": str(mirror.resolve())}
    subprocess.run([shutil.which("dvc") or "dvc", "queue", "start", "-j", "2"], cwd=ws, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60)
    most_at_once, deadline = 0, time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            states = _states(dvc(ws, "queue", "status").stdout, RATES)
            most_at_once = max(most_at_once, list(states.values()).count("Running"))
            if states and all(s in ("Success", "Failed") for s in states.values()):
                break
            time.sleep(1)
    finally:
        dvc(ws, "queue", "stop", check=False)
    assert states == {name: "Success" for name in RATES}, states
    assert most_at_once == 2
    shown = json.loads(dvc(ws, "exp", "show", "--json").stdout)
    losses = {name: _named(shown, name)["metrics"]["metrics/cnn_mnist.json"]["data"]
              ["log_loss"] for name in RATES}
    assert losses["q-slow"] != losses["q-fast"]  # each ran with its own learning rate
    assert ws.joinpath("params.yaml").read_text().count("lr: 1.0e-3") == 1  # workspace untouched
