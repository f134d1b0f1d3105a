"""Stage train@<model>: fit one model; write the model file and its training history."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import jax

from jaxpipe import live
from jaxpipe.artifacts import save_trained
from jaxpipe.core.console import run
from jaxpipe.core.fileio import output_set, write_json
from jaxpipe.data.tables import load_dataset
from jaxpipe.models import phase, phase_times, watching_epochs
from jaxpipe.train import load_train_config, train, write_history

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="key under train: in params.yaml")
    parser.add_argument("--data", type=Path, required=True, help="prepared data folder")
    parser.add_argument("--out", type=Path, required=True, help="model file (.safetensors)")
    parser.add_argument("--history", type=Path, required=True, help="history CSV (plot data)")
    parser.add_argument("--timing", type=Path,
                        help="wall time, in all and per phase, as JSON (not reproducible, not "
                             "an out)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    cfg = load_train_config(args.params, args.model)
    with phase("load the prepared data"):
        data = load_dataset(args.data)
    started, epoch_ends = time.perf_counter(), []
    with (live.session(args.model),  # JAXPIPE_LIVE=1: per-epoch figures for VS Code, Studio
          watching_epochs(lambda epoch, **_: epoch_ends.append(time.perf_counter() - started))):
        fit = train(cfg, data)
    seconds = time.perf_counter() - started
    if jax.process_index() != 0:  # several processes trained one model: process 0 writes it
        return
    with phase("write the outputs"), output_set(args.out, args.history) as (
            model_tmp, history_tmp):
        save_trained(model_tmp, args.model, cfg.kind, cfg.config, fit, data.inputs)
        write_history(history_tmp, fit.history)
    if args.timing:
        write_json(args.timing, {"train_seconds": round(seconds, 3), "phases": phase_times(),
                                 "epoch_end_seconds": [round(s, 3) for s in epoch_ends]})
    log.info("%s (%s): %d history rows, final train loss %.6g, %.2f s", args.model, cfg.kind,
             len(fit.history["train_loss"]), fit.history["train_loss"][-1], seconds)


if __name__ == "__main__":
    run(main)
