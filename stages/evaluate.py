"""Stage evaluate@<model>: score a model and its scikit-learn reference on the test split."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from jaxpipe.cli import run
from jaxpipe.config import load_config
from jaxpipe.evaluate import EvalConfig, model_metrics, plot_rows, reference
from jaxpipe.fileio import atomic_dir, write_csv_rows, write_json
from jaxpipe.tables import load_split
from jaxpipe.train import load_trained, predict

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="key under evaluate: in params.yaml")
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared data folder")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON")
    parser.add_argument("--plots", type=Path, required=True, help="plot data folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(EvalConfig, args.params, "evaluate", args.model)
    params, meta = load_trained(args.model_file)
    test = load_split(args.data, "test")
    out = predict(meta, params, test.x)
    task = meta["task"]
    metrics = model_metrics(task, meta["kind"], test.y, out, params, meta, cfg)
    if cfg.reference and meta["kind"] != "cnn":
        metrics.update(reference(task, load_split(args.data, "train"), test, cfg))
        if task == "regression":
            coefs = [k for k in metrics if k.startswith("coef_")] + ["intercept"]
            metrics["max_abs_coef_diff"] = round(max(
                abs(metrics[k] - metrics[f"sklearn_{k}"]) for k in coefs), 6)
    with atomic_dir(args.plots) as tmp:
        for name, (header, rows) in plot_rows(task, test.y, out, cfg.threshold).items():
            write_csv_rows(tmp / f"{name}.csv", header, rows)
    write_json(args.metrics, metrics)
    headline = next(k for k in ("accuracy", "r2") if k in metrics)
    log.info("%s: %s %.4f on %d test rows", args.model, headline, metrics[headline],
             len(np.asarray(test.y)))


if __name__ == "__main__":
    run(main)
