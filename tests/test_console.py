"""Every failure of a stage is one line and exit code 2; a stage dies with its parent."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STAGE = """
import sys, time
from jaxpipe.core.console import run
from jaxpipe.core.errors import JaxpipeError

def main(argv):
    if sys.argv[1] == "expected":
        raise JaxpipeError("data/x.csv: column 'ram' is missing")
    if sys.argv[1] == "full":
        import errno
        raise OSError(errno.ENOSPC, "No space left on device", "metrics/x.json.tmp")
    if sys.argv[1] == "sleep":
        time.sleep(30)
        open(sys.argv[2], "w").write("late")
    open("/nonexistent/dir/out.json", "w")

run(main)
"""


def _stage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "evaluate.py"
    script.write_text(STAGE)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_expected_and_unexpected_failures_are_one_line_exit_2(tmp_path: Path) -> None:
    expected = _stage(tmp_path, "expected")
    assert expected.returncode == 2
    assert expected.stderr.strip().splitlines()[-1] == "error: data/x.csv: column 'ram' is missing"
    unexpected = _stage(tmp_path, "cnn_mnist")
    assert unexpected.returncode == 2
    assert unexpected.stderr.strip().splitlines() == [
        "error: evaluate@cnn_mnist: unexpected FileNotFoundError: [Errno 2] No such file or "
        "directory: '/nonexistent/dir/out.json'"]
    shown = _stage(tmp_path, "cnn_mnist", JAXPIPE_TRACEBACK="1")
    assert "Traceback (most recent call last)" in shown.stderr and shown.returncode == 2


def test_a_full_disk_or_read_only_folder_has_its_own_line(tmp_path: Path) -> None:
    full = _stage(tmp_path, "full")
    assert full.returncode == 2
    assert full.stderr.strip().splitlines() == [
        "error: evaluate@full: cannot write metrics/x.json.tmp: no space left on device; "
        "earlier outputs are untouched"]


def test_a_stage_exits_when_its_parent_dies(tmp_path: Path) -> None:
    """`kill -9` of `dvc repro` must not leave the stage running to write outputs later."""
    script = tmp_path / "evaluate.py"
    script.write_text(STAGE)
    late = tmp_path / "late.txt"
    spawn = (f"import subprocess, sys, time\n"
             f"p = subprocess.Popen([sys.executable, {str(script)!r}, 'sleep', {str(late)!r}])\n"
             "print(p.pid, flush=True)\n"
             "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", spawn], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(2)  # the child is up and has asked for the parent-death signal
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as stat:
            if stat.read().split()[2] == "Z":  # exited, awaiting its (re-)parent's wait
                break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the stage outlived its parent")
    assert not late.exists()
