"""Stage train@<model>: fit one model; write the model file and its training history."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from jaxpipe.cli import run
from jaxpipe.config import load_params
from jaxpipe.fileio import write_csv_rows, write_json
from jaxpipe.train import parse_train_config, save_trained, train

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="key under train: in params.yaml")
    parser.add_argument("--data", type=Path, required=True, help="prepared data folder")
    parser.add_argument("--out", type=Path, required=True, help="model file (.safetensors)")
    parser.add_argument("--history", type=Path, required=True, help="history CSV (plot data)")
    parser.add_argument("--timing", type=Path, help="wall-time JSON (not reproducible, not an out)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    raw = load_params(args.params, "train", args.model)
    kind, cfg = parse_train_config(raw, f"{args.params}:train.{args.model}")
    started = time.perf_counter()
    trained = train(kind, cfg, args.data)
    seconds = time.perf_counter() - started
    columns = list(trained.history)
    rows = [list(r) for r in zip(*(trained.history[c].tolist() for c in columns), strict=True)]
    write_csv_rows(args.history, columns, rows)
    save_trained(args.out, args.model, trained, args.data)
    if args.timing:
        write_json(args.timing, {"train_seconds": round(seconds, 3)})
    log.info("%s (%s): %d history rows, final train loss %.6g, %.2f s", args.model, kind,
             len(rows), trained.history["train_loss"][-1], seconds)


if __name__ == "__main__":
    run(main)
