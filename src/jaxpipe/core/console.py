"""Console output shared by stages, tools and the library: logging, progress, one-line errors.

The library uses ``interactive`` and ``bar``; ``run`` is the one error handler every
stage script and tool calls from ``__main__``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jaxpipe.core.errors import JaxpipeError


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


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; a JaxpipeError becomes one line on stderr and exit code 2.

    Log lines are written through tqdm, so they never land on a progress bar's line."""
    setup_logging()
    try:
        with logging_redirect_tqdm():
            main(argv)
    except JaxpipeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
