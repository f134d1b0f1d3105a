"""``jaxpipe.core.console``: every failure of a stage is one line and exit code 2, naming the
stage; a stage dies with its parent. Real stage scripts in child processes, and ``run``
in-process: the one-line errors, the stage name in them, the log format, progress bars
only for a person at a terminal, and the parent-death signal a stage asks for."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jaxpipe.core import console
from jaxpipe.core.console import (
    _name,
    _on_terminate,
    bar,
    exit_with_parent,
    interactive,
    run,
    setup_logging,
)
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.tools.workspace import committed_copy

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


_PR_GET_PDEATHSIG = 2


def parent_death_signal() -> int:
    sig = ctypes.c_int(-1)
    assert ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_PDEATHSIG, ctypes.byref(sig)) == 0
    return sig.value


@pytest.fixture(autouse=True)
def keep_the_test_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``run`` asks for a parent-death signal; undo it afterwards, and name the process as a
    stage would be named."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 0)
    monkeypatch.setattr(sys, "argv", ["/project/stages/evaluate.py"])
    monkeypatch.delenv(console.TRACEBACK_ENV, raising=False)
    yield
    libc.prctl(1, 0)


@contextmanager
def bare_logging() -> Iterator[None]:
    """The root logger without handlers (pytest's own removed), as in a fresh process, so that
    ``basicConfig`` installs its handler; everything restored afterwards."""
    root, xla = logging.getLogger(), logging.getLogger("jax._src.xla_bridge")
    handlers, levels = root.handlers, (root.level, xla.level)
    root.handlers = []
    xla.setLevel(logging.NOTSET)  # as before any stage set it up
    try:
        yield
    finally:
        root.handlers = handlers
        root.setLevel(levels[0])
        xla.setLevel(levels[1])


def failing(exc: BaseException) -> Callable[[list[str] | None], None]:
    def main(argv: list[str] | None) -> None:
        raise exc
    return main


def run_fails(main: Callable[[list[str] | None], None], argv: list[str] | None,
              capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    """Run ``main`` through ``run``; assert its exit code and return what went to stderr."""
    with pytest.raises(SystemExit) as caught:
        run(main, argv)
    assert caught.value.code == code
    assert caught.value.__suppress_context__ and caught.value.__cause__ is None
    return capsys.readouterr().err


def test_a_stage_that_succeeds_gets_its_argv_and_returns(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    seen = []
    assert run(seen.append, ["cnn_mnist", "--x"]) is None
    assert run(seen.append) is None
    assert seen == [["cnn_mnist", "--x"], None]
    assert capsys.readouterr().err == ""


def test_an_expected_error_is_its_message_on_one_line(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    err = run_fails(failing(JaxpipeError("data/x.csv: column 'ram' is missing")), ["a"], capsys)
    assert err == "error: data/x.csv: column 'ram' is missing\n"
    err = run_fails(failing(ConfigError("train.lr: must be positive")), None, capsys)
    assert err == "error: train.lr: must be positive\n"


def test_an_interrupt_is_one_line_and_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_fails(failing(KeyboardInterrupt()), ["a"], capsys, code=130)
    assert err == f"error: {_name(['a'])}: interrupted; earlier outputs are untouched\n"
    assert signal.getsignal(signal.SIGTERM) is not _on_terminate  # restored
    assert signal.getsignal(signal.SIGINT) is not _on_terminate


def test_exits_pass_through_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run(failing(SystemExit(0)), ["--help"])
    assert caught.value.code == 0
    with pytest.raises(SystemExit) as caught:
        run(failing(SystemExit(3)), None)
    assert caught.value.code == 3
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("code", "said"), [
    (errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded"),
    (errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied"),
    (errno.EPERM, "operation not permitted")])
def test_a_storage_error_says_what_and_where_and_that_outputs_are_safe(
        code: int, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    exc = OSError(code, os.strerror(code), "metrics/x.json.tmp")
    err = run_fails(failing(exc), ["cnn_mnist"], capsys)
    assert err == (f"error: evaluate@cnn_mnist: cannot write metrics/x.json.tmp: {said}; "
                   "earlier outputs are untouched\n")


def test_a_storage_error_without_a_file_name_says_an_output(capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    err = run_fails(failing(OSError(errno.ENOSPC, "No space left on device")), None, capsys)
    assert err == ("error: evaluate: cannot write an output: no space left on device; "
                   "earlier outputs are untouched\n")


def test_any_other_os_error_is_unexpected(capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: list[str] | None) -> None:
        open("/nonexistent/dir/out.json", "w")  # noqa: SIM115
    err = run_fails(main, ["cnn_mnist"], capsys)
    assert err == ("error: evaluate@cnn_mnist: unexpected FileNotFoundError: [Errno 2] No such "
                   "file or directory: '/nonexistent/dir/out.json'\n")


def test_an_unexpected_error_is_one_line_of_at_most_300_characters(
        capsys: pytest.CaptureFixture[str]) -> None:
    err = run_fails(failing(ValueError("bad\n   value\tfor  x ")), ["xor_mlp"], capsys)
    assert err == "error: evaluate@xor_mlp: unexpected ValueError: bad value for x\n"
    err = run_fails(failing(RuntimeError()), None, capsys)
    assert err == "error: evaluate: unexpected RuntimeError: (no message)\n"
    err = run_fails(failing(KeyError("w" * 400)), None, capsys)
    assert err == f"error: evaluate: unexpected KeyError: '{'w' * 299}\n"


def test_the_traceback_is_shown_only_when_asked(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(console.TRACEBACK_ENV, "0")
    assert run_fails(failing(ZeroDivisionError("boom")), None, capsys) == (
        "error: evaluate: unexpected ZeroDivisionError: boom\n")
    monkeypatch.setenv(console.TRACEBACK_ENV, "1")
    err = run_fails(failing(ZeroDivisionError("boom")), None, capsys)
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-2:] == ["ZeroDivisionError: boom",
                          "error: evaluate: unexpected ZeroDivisionError: boom"]
    assert any("in main" in line for line in lines)


def test_a_stage_is_named_by_its_script_and_first_argument(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(sys, "argv", ["/p/stages/train.py", "cnn_mnist", "--seed", "1"])
    assert _name(None) == "train@cnn_mnist"
    assert _name(["xor_mlp", "extra"]) == "train@xor_mlp"
    assert _name(["--help", "xor_mlp"]) == "train"
    assert _name([]) == "train"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/jaxpipe", "-v", "check"])
    assert _name(None) == "jaxpipe"
    monkeypatch.setattr(sys, "argv", ["jaxpipe"])
    assert _name(None) == "jaxpipe"


def test_logs_are_timestamped_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with bare_logging():
        setup_logging()
        root = logging.getLogger()
        assert root.level == logging.INFO
        assert logging.getLogger("jax._src.xla_bridge").level == logging.WARNING
        (handler,) = root.handlers
        assert handler.stream is sys.stderr
        logging.getLogger("jaxpipe").info("%d rows", 3)
        logging.getLogger("jaxpipe").debug("not shown")
    err = capsys.readouterr().err
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO jaxpipe: 3 rows\n", err), err


def test_the_log_level_can_be_lowered(capsys: pytest.CaptureFixture[str]) -> None:
    with bare_logging():
        setup_logging(logging.DEBUG)
        assert logging.getLogger().level == logging.DEBUG
        assert logging.getLogger("jax._src.xla_bridge").level == logging.WARNING
        logging.getLogger("jaxpipe.x").debug("shown")
    assert capsys.readouterr().err.endswith(" DEBUG jaxpipe.x: shown\n")


def test_a_stage_logs_through_run_and_asks_to_die_with_its_parent(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert parent_death_signal() == 0

    def main(argv: list[str] | None) -> None:
        logging.getLogger("jaxpipe").info("training %s", argv[0])
    with bare_logging():
        run(main, ["xor_mlp"])
    assert capsys.readouterr().err.endswith(" INFO jaxpipe: training xor_mlp\n")
    assert parent_death_signal() == signal.SIGTERM


def test_exit_with_parent_asks_linux_for_sigterm() -> None:
    assert parent_death_signal() == 0
    exit_with_parent()
    assert parent_death_signal() == signal.SIGTERM


@contextmanager
def terminal() -> Iterator[int]:
    """stderr is a real terminal (a pseudo-terminal) outside CI; yield the reading end."""
    reader, writer = os.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 24 x 80
    stream, ci = open(writer, "w"), os.environ.pop("CI", None)  # noqa: SIM115
    stderr, sys.stderr = sys.stderr, stream
    try:
        yield reader
    finally:
        sys.stderr = stderr
        stream.close()
        os.close(reader)
        if ci is not None:
            os.environ["CI"] = ci


def test_a_person_watches_only_at_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    with terminal():
        assert interactive() is True
        monkeypatch.setenv("CI", "")
        assert interactive() is True
        monkeypatch.setenv("CI", "true")
        assert interactive() is False


def test_nobody_watches_a_pipe(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert interactive() is False
    progress = bar(7, "train")
    assert (progress.total, progress.disable, progress.leave) == (7, True, False)
    progress.update(3)
    progress.close()
    assert capsys.readouterr().err == ""


def test_a_bar_shows_at_a_terminal_and_leaves_no_line() -> None:
    from tqdm import tqdm

    if tqdm._instances:  # tqdm draws a new bar under open ones, and clears it another way
        pytest.skip("a tqdm bar another test left open changes where this one is drawn")
    with terminal() as reader:
        progress = bar(7, "train")
        assert (progress.total, progress.disable, progress.leave) == (7, False, False)
        assert progress.desc == "train"
        progress.update(3)
        progress.refresh()
        progress.close()
        sys.stderr.flush()
        chunks = []  # a pseudo-terminal hands over a write at a time: read until it is quiet
        while select.select([reader], [], [], 0.5)[0]:
            chunks.append(os.read(reader, 65536))
        shown = b"".join(chunks).decode()
    assert "train:  43%" in shown and "3/7" in shown
    assert shown.endswith("\r" + " " * len(shown.split("\r")[-2]) + "\r")  # line cleared


def test_a_params_typo_under_dvc_repro_says_dvc_checkout_restores_the_output(
        tmp_path: Path) -> None:
    """The real dvc removes a stage's output before running it; the stage's one line then
    says how to get it back, and the command it names does."""
    root = Path(__file__).parents[1]
    committed_copy(root, tmp_path, "params.yaml", "environment.yaml")  # its software, recorded
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  generate:\n    foreach: [xor]\n    do:\n"
        f"      cmd: {sys.executable} {root / 'stages/generate.py'} ${{item}} --out xor.parquet\n"
        "      params: ['generate.${item}']\n      outs: [xor.parquet]\n")
    env = {**os.environ, "PYTHONPATH": str(root / "src")}

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    assert dvc("init", "--no-scm", "-q").returncode == 0
    assert dvc("repro", "-q").returncode == 0
    good = (tmp_path / "xor.parquet").read_bytes()
    params = (tmp_path / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(params.replace("    kind: xor\n",
                                                         "    kind: xor\n    n_sampels: 8\n", 1))
    failed = dvc("repro")
    assert failed.returncode != 0 and not (tmp_path / "xor.parquet").exists()
    lines = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert lines == [
        "error: params.yaml:generate.xor.n_sampels: unknown key (expected one of "
        f"{lines[0].split('(expected one of ')[1].split(')')[0]}); DVC removed "
        "generate@xor's outputs before running it: `dvc checkout generate@xor` restores the "
        "last ones"], failed.stderr
    assert dvc("checkout", "generate@xor").returncode == 0
    assert (tmp_path / "xor.parquet").read_bytes() == good
