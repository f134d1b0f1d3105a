"""Start one command as several JAX processes on this machine, joined by ``jax.distributed``.

    python -m jaxpipe.launch --processes 2 -- python stages/train.py cnn_mnist ...

Each process gets ``JAXPIPE_NUM_PROCESSES``, ``JAXPIPE_PROCESS_ID`` and
``JAX_COORDINATOR_ADDRESS`` (127.0.0.1 and a free port; process 0 serves it), which
``jaxpipe.models.cnn.mesh.join_processes`` reads before JAX starts. With
``--cpu-devices K`` each process also gets K CPU devices (``JAX_NUM_CPU_DEVICES``). On a
cluster, the scheduler starts the processes instead (docs/DISTRIBUTED.md). If one process
fails, the others are stopped; the exit status is the first failure's.

The processes' stderr passes through the launcher line by line, except the crash report of
a process that XLA ends (a ``F...`` fatal log line, then a C++ stack dump, then SIGABRT):
that report is left out and the failure ends as one line, ``error: ...: process R was
killed by SIGABRT: XLA: <the fatal message>``. ``--processes 1`` runs the command alone
(no joining) under that same watch: ``-n 1 --cpu-devices 2`` for a forced-device mesh.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError

log = logging.getLogger("launch")
MAX_PROCESSES = 64
POLL_S = 0.2
RELAY_JOIN_S = 5.0  # a grandchild may keep a process's stderr open: stop relaying after this
# absl/glog lines: a FATAL one (XLA's CHECK failures, its rendezvous termination timeout),
# after which the process prints a stack dump and aborts; and the lines that announce the
# dump of every thread's stack before it
FATAL_LINE = re.compile(r"F\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]+\] ?(?P<message>.*)")
DUMP_PREAMBLE = re.compile(r"E\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]+\] ?"
                           r"(All thread stack traces.*)?")


class Relay(threading.Thread):
    """Copies one process's stderr to ours, line by line, until the process writes a fatal
    XLA log line; from there on (its crash report) it only reads, and keeps the message."""

    def __init__(self, stream: Any, lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.stream, self.lock = stream, lock
        self.fatal: str | None = None

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            if self.fatal is None and (found := FATAL_LINE.match(line.rstrip("\n"))):
                self.fatal = found["message"].strip() or "(no message)"
            if self.fatal is not None or DUMP_PREAMBLE.fullmatch(line.rstrip("\n")):
                continue
            with self.lock:
                sys.stderr.write(line)
                sys.stderr.flush()
        self.stream.close()


@dataclass(frozen=True)
class Outcome:
    """How a launch ended: the status (the first failure's, 124 past the timeout, else 0),
    which process failed first, and the fatal XLA message it wrote, if any."""

    status: int
    rank: int | None = None
    fatal: str | None = None

    def describe(self, processes: int) -> str:
        """The failure in one line."""
        if self.status >= 0:
            return f"{processes} processes: one exited with status {self.status}"
        try:
            name = signal.Signals(-self.status).name
        except ValueError:
            name = f"signal {-self.status}"
        said = f": XLA: {short(self.fatal)}" if self.fatal else ""
        return f"{processes} processes: process {self.rank} was killed by {name}{said}"


def short(message: str) -> str:
    """XLA's fatal message without its thread tag and rendezvous key, on one line."""
    message = re.sub(r"^\[id=\d+\]\s*", "", message)
    message = re.sub(r"\s*RendezvousKey\{[^}]*\}", "", message)
    return " ".join(message.split())[:400]


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
    return supervise(command, processes, cpu_devices, timeout_s).status


def supervise(command: list[str], processes: int, cpu_devices: int | None = None,
              timeout_s: float = 3600.0) -> Outcome:
    """``launch``, telling also which process failed first and XLA's fatal message."""
    if not 1 <= processes <= MAX_PROCESSES:
        raise JaxpipeError(f"--processes: {processes} is outside [1, {MAX_PROCESSES}]")
    port = free_port()
    lock = threading.Lock()
    procs, relays = [], []
    try:
        for r in range(processes):
            procs.append(subprocess.Popen(command, env=process_env(r, processes, port,
                                                                    cpu_devices),
                                          stderr=subprocess.PIPE))
            relays.append(Relay(procs[-1].stderr, lock))
            relays[-1].start()
        return _wait(procs, relays, time.monotonic() + timeout_s)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)
        for relay in relays:
            relay.join(timeout=RELAY_JOIN_S)


def _wait(procs: list[subprocess.Popen], relays: list[Relay], deadline: float) -> Outcome:
    """Until every process has ended, one has failed, or the deadline."""
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        failed = [(r, code) for r, p in enumerate(procs) if (code := p.poll()) not in (None, 0)]
        if failed:
            return _failure(*failed[0], relays)
        time.sleep(POLL_S)
    if any(p.poll() is None for p in procs):
        return Outcome(124)
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode]
    return _failure(*failed[0], relays) if failed else Outcome(0)


def _failure(rank: int, status: int, relays: list[Relay]) -> Outcome:
    if status < 0:  # killed by a signal: its crash report may still be on the way
        relays[rank].join(timeout=RELAY_JOIN_S)
    return Outcome(status, rank, relays[rank].fatal)


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
    outcome = supervise(command, args.processes, args.cpu_devices, args.timeout_s)
    if outcome.status:
        raise JaxpipeError(outcome.describe(args.processes))
    log.info("%d processes finished", args.processes)


if __name__ == "__main__":
    run(main)
