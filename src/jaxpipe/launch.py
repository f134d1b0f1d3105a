"""Start one command as several JAX processes on this machine, joined by ``jax.distributed``.

    python -m jaxpipe.launch --processes 2 -- python stages/train.py cnn_mnist ...

Each process gets ``JAXPIPE_NUM_PROCESSES``, ``JAXPIPE_PROCESS_ID`` and
``JAX_COORDINATOR_ADDRESS`` (127.0.0.1 and a free port; process 0 serves it), which
``jaxpipe.models.cnn.mesh.join_processes`` reads before JAX starts. With
``--cpu-devices K`` each process also gets K CPU devices (``JAX_NUM_CPU_DEVICES``). On a
cluster, the scheduler starts the processes instead (docs/DISTRIBUTED.md). If one process
fails, the others are stopped; the exit status is the first failure's.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import time

from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError

log = logging.getLogger("launch")
MAX_PROCESSES = 64
POLL_S = 0.2


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the coordinator binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(rank: int, processes: int, port: int, cpu_devices: int | None) -> dict[str, str]:
    """The environment of process ``rank``: the parent's plus what joins it to the others."""
    env = {**os.environ, "JAXPIPE_NUM_PROCESSES": str(processes),
           "JAXPIPE_PROCESS_ID": str(rank), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}"}
    if cpu_devices is not None:
        env["JAX_NUM_CPU_DEVICES"] = str(cpu_devices)
    return env


def launch(command: list[str], processes: int, cpu_devices: int | None = None,
           timeout_s: float = 3600.0) -> int:
    """Run ``command`` as ``processes`` joined processes; the first nonzero status, or 0."""
    if not 1 <= processes <= MAX_PROCESSES:
        raise JaxpipeError(f"--processes: {processes} is outside [1, {MAX_PROCESSES}]")
    port = free_port()
    procs = [subprocess.Popen(command, env=process_env(r, processes, port, cpu_devices))
             for r in range(processes)]
    deadline = time.monotonic() + timeout_s
    status = 0
    try:
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            failed = [code for p in procs if (code := p.poll()) not in (None, 0)]
            if failed:
                status = failed[0]
                break
            time.sleep(POLL_S)
        else:
            status = next((p.returncode for p in procs if p.returncode), 0)
            if any(p.poll() is None for p in procs):
                status = 124
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)
    return status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", "-n", type=int, default=2)
    parser.add_argument("--cpu-devices", type=int, help="CPU devices per process")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise JaxpipeError("no command to launch (put it after --)")
    status = launch(command, args.processes, args.cpu_devices, args.timeout_s)
    if status:
        raise JaxpipeError(f"{args.processes} processes: one exited with status {status}")
    log.info("%d processes finished", args.processes)


if __name__ == "__main__":
    run(main)
