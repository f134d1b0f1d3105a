"""Console output shared by stages, tools and the library: logging, progress, one-line errors.

The library uses ``interactive`` and ``progress``; ``run`` is the one error handler every
stage script and tool calls from ``__main__``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

from jaxpipe.core.errors import JaxpipeError

T = TypeVar("T")


def interactive() -> bool:
    """True when a person watches: stderr is a terminal and we are not in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def setup_logging(level: int = logging.INFO) -> None:
    """Quiet, line-based logs on stderr."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" probe noise


def progress(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """A progress bar when a person watches; nothing otherwise (callers log their own lines)."""
    yield from tqdm(items, total=total, desc=desc, leave=False, disable=not interactive())


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; a JaxpipeError becomes one line on stderr and exit code 2."""
    setup_logging()
    try:
        main(argv)
    except JaxpipeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
