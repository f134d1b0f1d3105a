"""Stop a run whose loss stopped being a number, before a broken model is written."""

from __future__ import annotations

import numpy as np

from jaxpipe.errors import JaxpipeError


class TrainingError(JaxpipeError):
    """Training produced a NaN or infinite loss."""


def check_finite(losses: np.ndarray, first_step: int = 0) -> None:
    """Raise naming the first step (1-based) whose loss is NaN or infinite."""
    losses = np.asarray(losses)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        raise TrainingError(f"training diverged: loss is {losses[bad[0]]} at step {step}; "
                            "no model written")
