"""``jaxpipe.launch``, the multi-process launcher, called in-process: the environment that
joins each process to the others, the exit status it reports (the first failure, 124 on
timeout), that it stops the other processes when one fails, and what its command line
accepts. The processes it starts are real (a tiny Python script that writes down what it
was given)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from helpers import help_text

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.launch import MAX_PROCESSES, free_port, launch, main, process_env, supervise

JOIN_VARS = ("JAXPIPE_NUM_PROCESSES", "JAXPIPE_PROCESS_ID", "JAX_COORDINATOR_ADDRESS",
             "JAX_NUM_CPU_DEVICES", "LAUNCH_TEST_INHERITED")
CHILD = f"""
import json, os, sys, time
out, plan = sys.argv[1], json.loads(sys.argv[2])
rank = os.environ.get("JAXPIPE_PROCESS_ID")
seen = {{k: os.environ.get(k) for k in {JOIN_VARS!r}}}
with open(os.path.join(out, f"{{rank}}.json"), "w") as f:
    json.dump(seen, f)
sleep_s, code = plan.get(rank, [0, 0])
time.sleep(sleep_s)
open(os.path.join(out, f"{{rank}}.done"), "w").close()
sys.exit(code)
"""


@pytest.fixture
def child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The child script; the parent's environment has a marker and no forced device count."""
    monkeypatch.setenv("LAUNCH_TEST_INHERITED", "yes")
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    (tmp_path / "out").mkdir()
    return script


def command(script: Path, plan: dict[str, list[float]] | None = None) -> list[str]:
    """Run ``script``; ``plan`` maps a rank to [seconds to sleep, exit status]."""
    return [sys.executable, "-S", str(script), str(script.parent / "out"), json.dumps(plan or {})]


def seen(script: Path) -> dict[str, dict[str, str | None]]:
    """What each process that started saw, by rank."""
    return {p.stem: json.loads(p.read_text()) for p in (script.parent / "out").glob("*.json")}


def finished(script: Path) -> set[str]:
    return {p.stem for p in (script.parent / "out").glob("*.done")}


def test_the_free_port_is_an_unprivileged_one_that_can_be_bound() -> None:
    port = free_port()
    assert isinstance(port, int) and 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_process_env_is_the_parents_plus_what_joins_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    joined = {"JAXPIPE_NUM_PROCESSES": "4", "JAXPIPE_PROCESS_ID": "2",
              "JAX_COORDINATOR_ADDRESS": "127.0.0.1:5123"}
    assert process_env(2, 4, 5123, None) == {**os.environ, **joined}
    assert process_env(2, 4, 5123, 3) == {**os.environ, **joined, "JAX_NUM_CPU_DEVICES": "3"}


def test_each_process_gets_its_rank_the_count_and_one_coordinator(child: Path) -> None:
    assert launch(command(child), 3) == 0
    envs = seen(child)
    assert sorted(envs) == ["0", "1", "2"] and finished(child) == {"0", "1", "2"}
    address = envs["0"]["JAX_COORDINATOR_ADDRESS"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", address or "")
    for rank, env in envs.items():
        assert env == {"JAXPIPE_NUM_PROCESSES": "3", "JAXPIPE_PROCESS_ID": rank,
                       "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_CPU_DEVICES": None,
                       "LAUNCH_TEST_INHERITED": "yes"}


def test_cpu_devices_reach_every_process(child: Path) -> None:
    assert launch(command(child), 2, cpu_devices=3) == 0
    assert {r: e["JAX_NUM_CPU_DEVICES"] for r, e in seen(child).items()} == {"0": "3", "1": "3"}


def test_it_returns_as_soon_as_every_process_has_finished(child: Path) -> None:
    started = time.monotonic()
    assert launch(command(child, {"1": [0.3, 0]}), 2, timeout_s=20) == 0
    assert time.monotonic() - started < 10  # not at the deadline
    assert finished(child) == {"0", "1"}


def test_one_process_alone_reports_its_own_status(child: Path) -> None:
    assert launch(command(child, {"0": [0, 7]}), 1) == 7
    assert finished(child) == {"0"}


def test_a_failure_stops_the_others_and_its_status_is_returned(child: Path) -> None:
    started = time.monotonic()
    assert launch(command(child, {"0": [10, 0], "1": [0, 1]}), 2) == 1
    assert time.monotonic() - started < 6  # rank 0 was stopped, not waited for
    assert finished(child) == {"1"}


def test_a_process_that_succeeds_early_is_not_taken_for_a_failure(child: Path) -> None:
    assert launch(command(child, {"1": [0.6, 5]}), 2) == 5
    assert finished(child) == {"0", "1"}


def test_past_the_timeout_every_process_is_stopped_with_status_124(child: Path) -> None:
    started = time.monotonic()
    assert launch(command(child, {"0": [10, 0], "1": [10, 0]}), 2, timeout_s=0.5) == 124
    assert time.monotonic() - started < 6
    assert sorted(seen(child)) == ["0", "1"] and finished(child) == set()


@pytest.mark.parametrize("processes", [0, -1, MAX_PROCESSES + 1])
def test_a_process_count_out_of_range_is_refused(processes: int, tmp_path: Path) -> None:
    with pytest.raises(JaxpipeError) as err:
        launch([sys.executable, "-c", f"open({str(tmp_path / 'ran')!r}, 'w')"], processes)
    assert str(err.value) == f"--processes: {processes} is outside [1, 64]"
    assert not (tmp_path / "ran").exists()


def test_as_many_as_64_processes_may_run() -> None:
    true = shutil.which("true")
    assert true is not None
    assert launch([true], MAX_PROCESSES) == 0


def test_the_command_line_runs_the_command_after_the_double_dash(child: Path) -> None:
    main(["--processes", "3", "--cpu-devices", "2", "--timeout-s", "20.5", "--",
          *command(child)])
    envs = seen(child)
    assert sorted(envs) == ["0", "1", "2"]
    assert {e["JAX_NUM_CPU_DEVICES"] for e in envs.values()} == {"2"}


def test_by_default_two_processes_with_the_devices_they_see(child: Path) -> None:
    main(["--", *command(child)])
    envs = seen(child)
    assert sorted(envs) == ["0", "1"]
    assert {e["JAXPIPE_NUM_PROCESSES"] for e in envs.values()} == {"2"}
    assert {e["JAX_NUM_CPU_DEVICES"] for e in envs.values()} == {None}


def test_the_short_option_and_a_command_without_the_double_dash(child: Path) -> None:
    main(["-n", "1", *command(child)])
    assert sorted(seen(child)) == ["0"]


def test_a_failed_process_fails_the_command_line(child: Path) -> None:
    with pytest.raises(JaxpipeError) as err:
        main(["-n", "2", "--", *command(child, {"1": [0, 3], "0": [10, 0]})])
    assert str(err.value) == "2 processes: one exited with status 3"


def test_the_timeout_option_stops_the_processes(child: Path) -> None:
    with pytest.raises(JaxpipeError) as err:
        main(["-n", "1", "--timeout-s", "0.3", "--", *command(child, {"0": [10, 0]})])
    assert str(err.value) == "1 processes: one exited with status 124"


@pytest.mark.parametrize("argv", [[], ["--"], ["-n", "2", "--"]])
def test_no_command_is_an_error(argv: list[str]) -> None:
    with pytest.raises(JaxpipeError) as err:
        main(argv)
    assert str(err.value) == "no command to launch (put it after --)"


@pytest.mark.parametrize(("argv", "said"), [
    (["--processes", "two"], "argument --processes/-n: invalid int value: 'two'"),
    (["--cpu-devices", "1.5"], "argument --cpu-devices: invalid int value: '1.5'"),
    (["--timeout-s", "soon"], "argument --timeout-s: invalid float value: 'soon'")])
def test_numbers_that_are_not_numbers_are_refused(argv: list[str], said: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--", sys.executable, "-c", f"open({str(tmp_path / 'ran')!r}, 'w')"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.endswith(f": error: {said}\n")
    assert not (tmp_path / "ran").exists()


def test_the_help_says_what_each_option_does(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = help_text(main, capsys, monkeypatch)
    for said in ("Start one command as several JAX processes on this machine, joined by "
                 "``jax.distributed``.",
                 "--processes PROCESSES, -n PROCESSES", "--cpu-devices CPU_DEVICES CPU devices "
                 "per process", "--timeout-s TIMEOUT_S", "command -- then the command"):
        assert said in text


RELAYED = ["E1206 19:41:15.123456    4242 coordination_service_agent.cc:332] Coordination "
           "agent failed: UNAVAILABLE: connection refused",
           "W1206 19:41:15.200000    4242 pjrt_client.cc:9] a warning",
           "an ordinary line of the program's own"]
FOLDED = ["E1206 19:41:16.000000    4242 stack_trace.cc:51] ",
          "E1206 19:41:16.000001    4242 stack_trace.cc:52] All thread stack traces:",
          "F1206 19:41:16.000002    4242 collectives.cc:96] [id=0] Termination timeout for "
          "`all reduce` of 2 seconds exceeded. RendezvousKey{run_id=1}",
          "*** Check failure stack trace: ***", "    @     0x7f3c2a1b abort",
          "E1206 19:41:16.000003    4242 after.cc:1] a line of the crash report"]


def test_an_ordinary_error_line_is_relayed_and_only_xla_s_crash_report_is_folded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """absl's ``E...`` lines are a program's errors: the user must see them. Only the lines
    that announce XLA's stack dump, its fatal line and what follows it are left out."""
    script = tmp_path / "crash.py"
    lines = "".join(f"{line}\n" for line in RELAYED + FOLDED)
    script.write_text(f"import os, sys\nsys.stderr.write({lines!r})\nsys.stderr.flush()\n"
                      "os.abort()\n")
    outcome = supervise([sys.executable, "-S", str(script)], 1)
    assert (outcome.status, outcome.rank) == (-6, 0)
    assert outcome.describe(1) == ("1 processes: process 0 was killed by SIGABRT: XLA: "
                                   "Termination timeout for `all reduce` of 2 seconds exceeded.")
    assert capsys.readouterr().err.splitlines() == RELAYED
