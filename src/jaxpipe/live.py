"""Live progress for the tools people watch training with, opt-in and out of the outputs.

With ``JAXPIPE_LIVE=1`` in the environment, a train stage opens a DVCLive logger in
``dvclive/<model>/`` (git-ignored; no stage declares it) and logs there the figures of
every epoch a family reports (``jaxpipe.models.epoch_done``: the CNN). DVCLive then tells DVC's VS
Code extension that a step completed (it refreshes the running experiment) and, when a DVC
Studio token is configured (``dvc studio login`` or ``DVC_STUDIO_TOKEN``), posts the epoch's
figures to Studio's live view. Nothing here feeds back into training: the tracked outputs
are the same bytes with or without it, and ``JAXPIPE_LIVE`` is not a param, so the lock
does not change either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.models import watching_epochs

log = logging.getLogger(__name__)

ENV = "JAXPIPE_LIVE"
FOLDER = "dvclive"

_live: Any = None  # the open dvclive.Live of this process, if any


def wanted() -> bool:
    """Whether the environment asks for live progress (``JAXPIPE_LIVE=1``)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise JaxpipeError(f"{ENV}={os.environ[ENV]!r}: expected 1 (on) or 0 (off)")


@contextmanager
def session(name: str) -> Iterator[None]:
    """Log live progress of model ``name`` while the block runs, if asked for."""
    global _live
    if not wanted() or os.environ.get("JAXPIPE_PROCESS_ID", "0") != "0":  # process 0 reports
        yield
        return
    try:
        from dvclive import Live
    except ImportError:
        raise JaxpipeError(f"{ENV}=1 needs DVCLive: pip install -c constraints.txt "
                           "-e '.[live]'") from None
    # no dvc.yaml of its own (its metrics would join every `dvc exp show`), no experiment of
    # its own (`dvc exp run` makes that), no report: the figures and the signals only
    _live = Live(dir=os.path.join(FOLDER, name), save_dvc_exp=False, dvcyaml=None, report=None)
    log.info("live progress in %s/%s (%s=1)", FOLDER, name, ENV)
    try:
        with watching_epochs(epoch):
            yield
    finally:
        live, _live = _live, None
        live.end()


def epoch(step: int, **figures: float) -> None:
    """Log one finished epoch (``step`` counts from 1); nothing unless a session is open."""
    if _live is None:
        return
    _live.step = step - 1
    for name, value in figures.items():
        _live.log_metric(name, float(value))
    _live.next_step()
