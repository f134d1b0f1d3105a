"""Console output shared by stages, tools and the library: logging, progress, one-line errors.

The library uses ``interactive`` and ``bar``; ``run`` is the one error handler every
stage script and tool calls from ``__main__``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jaxpipe.core import fileio
from jaxpipe.core.environment import guard_stage
from jaxpipe.core.errors import ConfigError, JaxpipeError

TRACEBACK_ENV = "JAXPIPE_TRACEBACK"  # set to 1 to see the traceback of an unexpected error
_PR_SET_PDEATHSIG = 1


def interactive() -> bool:
    """True when a person watches: stderr is a terminal and we are not in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def setup_logging(level: int = logging.INFO) -> None:
    """Quiet, line-based logs on stderr."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" probe noise


def bar(total: int, desc: str) -> tqdm:
    """A progress bar to update by hand (``bar.update``, ``bar.set_postfix``); inert unless
    a person watches."""
    return tqdm(total=total, desc=desc, leave=False, disable=not interactive())


def exit_with_parent() -> None:
    """Ask Linux to end this process when its parent (``dvc repro``) dies, so an orphaned
    stage cannot overwrite newer outputs later. A no-op elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


def _name(argv: list[str] | None) -> str:
    """``train@cnn_mnist`` for ``stages/train.py cnn_mnist ...``, else the program name."""
    args = sys.argv if argv is None else [sys.argv[0], *argv]
    stem = Path(args[0]).stem
    item = next((a for a in args[1:2] if not a.startswith("-")), None)
    return f"{stem}@{item}" if item else stem


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``: every failure ends as one line on stderr and exit code 2.

    A JaxpipeError is an expected failure and says what is wrong; anything else is reported
    as ``error: <stage>: unexpected <Type>: <message>`` (the traceback only when
    ``JAXPIPE_TRACEBACK=1``). Log lines are written through tqdm, so they never land on a
    progress bar's line."""
    setup_logging()
    exit_with_parent()
    previous = _terminate_as_interrupt()
    try:
        guard_stage()  # under dvc repro: the installed software is the one recorded
        with logging_redirect_tqdm():
            main(argv)
        if fileio.was_interrupted():  # the interrupt was swallowed on the way; nothing written
            raise KeyboardInterrupt
    except JaxpipeError as exc:
        sys.stderr.write(f"error: {exc}{_restore_hint(exc)}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the temp outputs were removed on the way
        sys.stderr.write(f"error: {_name(argv)}: interrupted; earlier outputs are untouched\n")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRORS:
            _unexpected(exc, argv)
        sys.stderr.write(f"error: {_name(argv)}: cannot write {exc.filename or 'an output'}: "
                         f"{_STORAGE_ERRORS[exc.errno]}; earlier outputs are untouched\n")
        raise SystemExit(2) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 2
        _unexpected(exc, argv)
    finally:
        for signum, handler in (previous or {}).items():
            signal.signal(signum, handler)


def _restore_hint(exc: JaxpipeError) -> str:
    """Under ``dvc repro``, a params error ends after DVC has removed the stage's outputs
    (it does before running a stage): say how to get the last ones back."""
    stage = os.environ.get("DVC_STAGE")
    if not stage or not isinstance(exc, ConfigError):
        return ""
    return (f"; DVC removed {stage}'s outputs before running it: `dvc checkout {stage}` "
            "restores the last ones")


def _on_terminate(signum: int, frame: object) -> None:
    fileio.mark_interrupted()
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> dict[int, Any] | None:
    """Ctrl-C and SIGTERM (a killed ``dvc repro``, a CI timeout) unwind the stage, so every
    atomic writer removes its temp file, and no output is renamed into place afterwards;
    returns the handlers it replaced (None off the main thread, where Python allows none)."""
    try:
        return {s: signal.signal(s, _on_terminate) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        return None


_STORAGE_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted"}


def _unexpected(exc: BaseException, argv: list[str] | None) -> None:
    if os.environ.get(TRACEBACK_ENV) == "1":
        traceback.print_exception(exc)
    message = " ".join(str(exc).split()) or "(no message)"
    sys.stderr.write(f"error: {_name(argv)}: unexpected {type(exc).__name__}: "
                     f"{message[:300]}\n")
    raise SystemExit(2) from None
